//! How a database error reads in a message, and which errors are worth a retry.

/// A database error as one line: severity, message, SQLSTATE, then DETAIL, HINT and
/// CONTEXT when the server sent them; for errors that never reached the server, the
/// error and its causes.
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

/// True for the errors a statement meets when it races another session, which the next
/// attempt can win: `lock_timeout` expiring (55P03), a deadlock (40P01), a serialization
/// failure (40001), and "tuple concurrently updated" (XX000), which PostgreSQL raises
/// instead of waiting when a catalog row it waited for was changed by a transaction that
/// committed meanwhile (a GRANT on the live schema, say).
pub fn is_retryable(error: &tokio_postgres::Error) -> bool {
    let Some(db) = error.as_db_error() else {
        return false;
    };
    match db.code().code() {
        "55P03" | "40P01" | "40001" => true,
        "XX000" => db.message() == "tuple concurrently updated",
        _ => false,
    }
}

/// A target that cannot be read; the message names the parameter, key or variable and
/// where it came from, never a password or a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTarget(pub String);

/// Connecting failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot connect to {target}: {message}")]
pub struct ConnectError {
    /// The target, redacted.
    pub target: String,
    /// Why, for each host tried, as the server, the network or the TLS check said it.
    pub message: String,
}
