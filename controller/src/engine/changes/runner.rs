//! Running one script: inside the change's transaction (its own `BEGIN` / `COMMIT`
//! absorbed), or replayed in autocommit when it cannot run in a transaction; the session
//! reset between changes; where a failing statement sits in its file.

use tokio_postgres::Client;

use super::*;
use crate::engine::script::{Script, Statement, StatementKind};
use crate::engine::{Error, Failure, Result};
use crate::pg::db_error_message;

/// The outcome of one step: the change failed (a script error, reported), or the engine
/// itself could not go on.
pub(super) enum RunError {
    Failed(Failure),
    Fatal(Error),
}

impl From<Failure> for RunError {
    fn from(f: Failure) -> Self {
        RunError::Failed(f)
    }
}

pub(super) fn fatal(context: &'static str) -> impl Fn(tokio_postgres::Error) -> RunError {
    move |source| RunError::Fatal(Error::Db { context, source })
}

/// Runs a script's statements inside the caller's transaction. The script's own `BEGIN` /
/// `COMMIT` are absorbed; in verify scripts a `ROLLBACK` is too (the caller rolls back).
pub(super) async fn run_in_transaction(
    tx: &tokio_postgres::Transaction<'_>,
    script: &Script,
    change: &str,
    verify: bool,
) -> Result<(), RunError> {
    for statement in &script.statements {
        match statement.kind {
            StatementKind::Begin | StatementKind::Commit => continue,
            StatementKind::Rollback if verify => continue,
            _ => {}
        }
        if let Err(error) = tx.batch_execute(&statement.sql).await {
            return Err(RunError::Failed(statement_failure(
                change, statement, &error,
            )));
        }
    }
    Ok(())
}

/// Replays a script as psql would, statement by statement in autocommit, honouring its
/// own `BEGIN` / `COMMIT`. Used only for scripts that cannot run in one transaction.
pub(super) async fn run_autocommit(
    client: &Client,
    script: &Script,
    change: &str,
) -> Result<(), RunError> {
    let mut open = false;
    for statement in &script.statements {
        let result = client.batch_execute(&statement.sql).await;
        match statement.kind {
            StatementKind::Begin => open = true,
            StatementKind::Commit | StatementKind::Rollback => open = false,
            _ => {}
        }
        if let Err(error) = result {
            if open {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            return Err(RunError::Failed(statement_failure(
                change, statement, &error,
            )));
        }
    }
    if open {
        let _ = client.batch_execute("COMMIT").await;
    }
    Ok(())
}

/// A script may `SET ROLE` inside the change's transaction; the registry rows that commit
/// with it are written as the deployer.
pub(super) async fn as_deployer(tx: &tokio_postgres::Transaction<'_>) -> Result<(), RunError> {
    tx.batch_execute("RESET ROLE")
        .await
        .map_err(fatal("resetting the role"))
}

/// psql starts each script in a fresh session; settings a script changes must not leak
/// into the next change.
pub(super) async fn reset_session(client: &Client) -> Result<()> {
    client
        .batch_execute("RESET ALL")
        .await
        .map_err(db("resetting the session"))
}

pub(super) fn statement_failure(
    change: &str,
    statement: &Statement,
    error: &tokio_postgres::Error,
) -> Failure {
    // Point at the exact line inside a multi-line statement when the server says where.
    let mut line = statement.line;
    if let Some(tokio_postgres::error::ErrorPosition::Original(position)) =
        error.as_db_error().and_then(|db| db.position())
    {
        let upto: String = statement
            .sql
            .chars()
            .take((*position as usize).saturating_sub(1))
            .collect();
        line += upto.matches('\n').count();
    }
    Failure {
        change: change.to_string(),
        path: statement.path.clone(),
        line,
        message: db_error_message(error),
    }
}

/// A change that ends its own transaction with `ROLLBACK`, or uses two-phase commit,
/// cannot be recorded atomically with its registry rows: refuse it up front.
pub(super) fn check_transaction_control(script: &Script) -> Result<()> {
    if let Some(s) = script.first(StatementKind::TwoPhase) {
        return Err(Error::Script {
            path: s.path.clone(),
            line: s.line,
            message: "two-phase commit statements are not allowed in a change script".into(),
        });
    }
    if let Some(s) = script.first(StatementKind::Rollback) {
        return Err(Error::Script {
            path: s.path.clone(),
            line: s.line,
            message: "ROLLBACK in a deploy or revert script would discard the change; only verify scripts may roll back".into(),
        });
    }
    Ok(())
}
