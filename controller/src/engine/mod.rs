//! What a database can do: deploy, revert and verify a project's changes, the way Sqitch
//! does, with Sqitch's registry.
//!
//! The engine takes a [`Project`](crate::project::Project) already read from disk and a
//! connection, and owns every statement run against the target's own schemas. It knows
//! nothing of git or Kubernetes; callers report its outcomes. What a deploy does, with the
//! development workflow files and Sqitch's rework, is decided purely in [`workflow`].

pub mod bluegreen;
pub mod bluegreen_guards;
pub mod bluegreen_layer;
mod bluegreen_layered;
pub mod bluegreen_materialize;
pub mod bluegreen_sql;
mod error;
mod postgres;
pub mod script;
pub mod workflow;

pub use error::{Error, Failure, Result};
pub use postgres::{
    ChangeStatus, DeployOptions, DeployReport, FailureMode, PgEngine, Progress, RevertOptions,
    RevertReport, Status, VerifyReport, VerifyResult,
};
pub use script::{Script, Statement, StatementKind};
