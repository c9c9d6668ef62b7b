//! Blue/green failures, each knowing its condition reason and whether a retry can help.

use super::guards::Blocked;
use crate::api::conditions::reasons;
use crate::engine::Failure;
use crate::pg::db_error_message;

/// Blue/green failures. Each maps to a condition reason with [`Error::reason`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The project's `objects/` is invalid.
    #[error(transparent)]
    Project(#[from] crate::project::Error),
    /// The registry could not be read or written.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    /// A query the engine runs itself failed.
    #[error("{context}: {}", db_error_message(source))]
    Db {
        /// What we were doing.
        context: &'static str,
        /// The database error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A guard blocked the promotion; nothing changed.
    #[error("blocked by {}: {}", blocked.reason, blocked.message)]
    Blocked {
        /// The guard and why.
        blocked: Blocked,
    },
    /// Building or verifying the staging schemas failed; what this stage created was
    /// dropped unless `keep_failed`.
    #[error("stage {deployment} failed{}: {failure}{}", if *verifying { " verifying" } else { "" }, if *kept { " (staging kept)" } else { "" })]
    StageFailed {
        /// The deployment id.
        deployment: String,
        /// Where and why.
        failure: Failure,
        /// True when the objects built and the verify SQL failed.
        verifying: bool,
        /// True when the staging schemas were kept (`--keep-failed`).
        kept: bool,
    },
    /// The swap could not take its locks within the retries.
    #[error("swap gave up after {attempts} attempts: {message}")]
    SwapTimeout {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// Verify failed after the swap; the previous set was swapped back in.
    #[error("verify failed after the swap, rolled back to deployment {restored}: {failure}")]
    RolledBack {
        /// The deployment live again.
        restored: String,
        /// The verify failure.
        failure: Failure,
    },
    /// Nothing to roll back to.
    #[error("nothing to roll back to: {0}")]
    NoRetained(String),
    /// A schema name would exceed PostgreSQL's identifier limit.
    #[error("staging schema name {0} is longer than 63 bytes; use a shorter schema name")]
    NameTooLong(String),
    /// A layer's name is taken by a schema switchyard does not serve as a layer.
    #[error("schema {0} exists and is not a layer switchyard serves; rename or drop it first")]
    NotALayer(String),
    /// A physical set holds an object a layer cannot serve.
    #[error("{schema}.{object} cannot be served through a layer: {why}")]
    Unservable {
        /// The logical schema.
        schema: String,
        /// The object.
        object: String,
        /// Why.
        why: String,
    },
}

impl Error {
    /// The condition / event reason for this outcome (UpperCamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Project(_) | Error::NameTooLong(_) | Error::Unservable { .. } => {
                reasons::INVALID_OBJECTS
            }
            Error::NotALayer(_) => reasons::SCHEMA_CONFLICT,
            Error::Registry(_) | Error::Db { .. } => reasons::DATABASE_ERROR,
            Error::Blocked { blocked } => blocked.reason,
            Error::StageFailed { .. } => reasons::STAGE_FAILED,
            Error::SwapTimeout { .. } => reasons::SWAP_TIMEOUT,
            Error::RolledBack { .. } => reasons::VERIFY_FAILED,
            Error::NoRetained(_) => reasons::NOTHING_TO_ROLL_BACK,
        }
    }

    /// Terminal errors need a change of input; the rest may pass on retry.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            Error::Db { .. }
                | Error::Registry(_)
                | Error::SwapTimeout { .. }
                | Error::Blocked { .. }
        )
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
