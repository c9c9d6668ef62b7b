//! What deploying, reverting and verifying changes fails with ([`Error`]), each failure
//! knowing its condition reason and whether a retry can help, and where a script failed
//! ([`Failure`], shared with blue/green staging).

use std::fmt;
use std::path::PathBuf;

use crate::api::conditions::reasons;
use crate::registry::LockHolder;

/// Where and why a change failed: the file and line of the statement, and the database's
/// own message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// The change that failed.
    pub change: String,
    /// The script (or included file) holding the failing statement.
    pub path: PathBuf,
    /// 1-based line of the failing statement (or of the error position inside it).
    pub line: usize,
    /// The database's message, with SQLSTATE, detail and hint.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "change {} failed at {}:{}: {}",
            self.change,
            self.path.display(),
            self.line,
            self.message
        )
    }
}

/// Everything that can go wrong deploying, reverting or verifying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The project on disk is invalid.
    #[error(transparent)]
    Project(#[from] crate::project::Error),
    /// A script file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A script is invalid (syntax, unsupported meta-command, transaction misuse).
    #[error("{}:{line}: {message}", path.display())]
    Script {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Connecting failed. The target is shown redacted.
    #[error(transparent)]
    Connect(#[from] crate::pg::ConnectError),
    /// A query the engine runs itself failed.
    #[error("{context}: {}", crate::pg::db_error_message(source))]
    Db {
        /// What we were doing.
        context: &'static str,
        /// The database error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The registry could not be read or written.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    /// Another deployer holds the project's lock.
    #[error("project {project} is locked{}", match holder {
        Some(h) => format!(" by {} on {} (pid {}, {} since {})", h.holder, h.host, h.pid, h.operation, h.started_at),
        None => " by another session".to_string(),
    })]
    Locked {
        /// The project.
        project: String,
        /// Who holds it, when recorded.
        holder: Option<LockHolder>,
    },
    /// The registry holds a change the plan doesn't have at that position.
    #[error("{}: deployed change {name} ({id}) is not at position {position} of the plan; the plan and the database have diverged", plan.display())]
    Diverged {
        /// The plan file.
        plan: PathBuf,
        /// The deployed change's name.
        name: String,
        /// Its id.
        id: String,
        /// Its 1-based position among deployed changes.
        position: usize,
    },
    /// A `--to` target names nothing in the plan or nothing deployed.
    #[error("{}: {message}", plan.display())]
    Target {
        /// The plan file.
        plan: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A requires or conflicts check failed before anything ran.
    #[error("{}:{line}: {message}", plan.display())]
    Dependency {
        /// The plan file.
        plan: PathBuf,
        /// The change's line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A change failed while deploying; the failure mode's reverts ran.
    #[error("{failure}{}", reverted_suffix(reverted))]
    ChangeFailed {
        /// Where and why.
        failure: Failure,
        /// Changes reverted afterwards by the failure mode, in revert order.
        reverted: Vec<String>,
        /// Changes that stayed deployed from this run.
        kept: Vec<String>,
    },
    /// Reverting a change failed; changes reverted before it stay reverted.
    #[error("revert stopped: {failure}")]
    RevertFailed {
        /// Where and why.
        failure: Failure,
        /// Changes reverted before the failure.
        reverted: Vec<String>,
    },
    /// The deploy was refused before anything ran: workflow files where rework is not
    /// allowed, or workflow files that contradict what the database recorded.
    #[error(transparent)]
    Refused(#[from] super::changes::schedule::Refusal),
    /// One or more changes failed verification.
    #[error("verify failed for {}", failures.iter().map(|f| f.change.as_str()).collect::<Vec<_>>().join(", "))]
    VerifyFailed {
        /// Each failing change.
        failures: Vec<Failure>,
    },
}

fn reverted_suffix(reverted: &[String]) -> String {
    if reverted.is_empty() {
        String::new()
    } else {
        format!("; reverted {}", reverted.join(", "))
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The condition and event reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::ChangeFailed { .. } | Error::RevertFailed { .. } => reasons::DEPLOY_FAILED,
            Error::VerifyFailed { .. } => reasons::VERIFY_FAILED,
            Error::Project(_) | Error::Io { .. } | Error::Script { .. } | Error::Target { .. } => {
                reasons::INVALID_PROJECT
            }
            Error::Refused(refusal) => refusal.reason(),
            Error::Dependency { .. } => reasons::DEPENDENCY_FAILED,
            Error::Diverged { .. } => reasons::DIVERGED,
            Error::Locked { .. } => reasons::LOCKED,
            Error::Connect(_) => reasons::CONNECT_FAILED,
            Error::Db { .. } | Error::Registry(_) => reasons::DATABASE_ERROR,
        }
    }

    /// Terminal failures need new input (a fixed script, plan or spec); the rest (a lock
    /// held, a database down) may pass on retry.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            Error::Locked { .. } | Error::Connect(_) | Error::Db { .. } | Error::Registry(_)
        )
    }
}
