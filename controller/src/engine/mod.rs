//! Everything Switchyard does to a target database's own schemas: [`changes`] (deploy,
//! revert and verify a plan's changes as Sqitch does) and [`bluegreen`] (stage, swap and
//! roll back stateless objects), both reading scripts with [`script`]; [`drift`] compares
//! what they left with what the database holds now.
//! Knows nothing of git or Kubernetes; callers report its outcomes.

pub mod bluegreen;
pub mod changes;
pub mod drift;
mod error;
pub mod review;
pub mod script;

pub use changes::{
    ChangeStatus, DeployOptions, DeployReport, Deployer, FailureMode, Progress, RevertOptions,
    RevertReport, Status, VerifyReport, VerifyResult,
};
pub use error::{Error, Failure, Result};
pub use script::{Script, Statement, StatementKind};
