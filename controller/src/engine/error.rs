use std::fmt;
use std::path::PathBuf;

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
    #[error("cannot connect to {target}: {message}")]
    Connect {
        /// The redacted target.
        target: String,
        /// Why.
        message: String,
    },
    /// A query the engine runs itself failed.
    #[error("{context}: {}", db_error_message(source))]
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
    Refused(#[from] super::workflow::Refusal),
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

/// A database error as psql would print it: severity, message, SQLSTATE, detail, hint.
pub fn db_error_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; DETAIL: {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; HINT: {hint}"));
            }
            if let Some(r#where) = db.where_() {
                text.push_str(&format!("; CONTEXT: {}", r#where.replace('\n', " / ")));
            }
            text
        }
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}

/// A connection string safe to show: `postgres://***@host:port/db` for URLs, and
/// `password=***` for key/value strings.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority_and_path, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let redacted = match authority_and_path.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => format!("{scheme}://{authority_and_path}"),
        };
        match query {
            Some(q) => {
                let params: Vec<String> = q
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => kv.to_string(),
                    })
                    .collect();
                format!("{redacted}?{}", params.join("&"))
            }
            None => redacted,
        }
    } else {
        url.split_whitespace()
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_user_info_and_password_params() {
        let cases = [
            (
                "postgres://alice:s3cret@db:5432/app",
                "postgres://***@db:5432/app",
            ),
            (
                "postgresql://alice@db/app?password=s3cret&sslmode=require",
                "postgresql://***@db/app?password=***&sslmode=require",
            ),
            (
                "host=db user=alice password=s3cret dbname=app",
                "host=db user=alice password=*** dbname=app",
            ),
            ("postgres://db/app", "postgres://db/app"),
        ];
        for (input, want) in cases {
            let got = redact_url(input);
            assert_eq!(got, want);
            assert!(!got.contains("s3cret"));
        }
    }
}
