//! Everything Switchyard does to a target database's own schemas, in two halves:
//! - [`changes`]: deploy, revert and verify a plan's changes the way Sqitch does, with
//!   Sqitch's registry, each change atomic with its registry rows; what a deploy does is
//!   decided purely in [`changes::schedule`].
//! - [`bluegreen`]: stage a project's stateless objects into renamed schemas, verify them,
//!   promote by an atomic swap (or a layer repoint, for Environments sharing a database),
//!   and roll back to a retained set.
//!
//! Both read scripts with [`script`], psql's way. The engine takes a
//! [`Project`](crate::project::Project) already read from disk and a connection; it knows
//! nothing of git or Kubernetes, and callers report its outcomes.

pub mod bluegreen;
pub mod changes;
mod error;
pub mod script;

pub use changes::{
    ChangeStatus, DeployOptions, DeployReport, Deployer, FailureMode, Progress, RevertOptions,
    RevertReport, Status, VerifyReport, VerifyResult,
};
pub use error::{Error, Failure, Result};
pub use script::{Script, Statement, StatementKind};
