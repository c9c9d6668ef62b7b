//! One transaction helper for code that holds a shared `&Client` (so cannot take
//! tokio-postgres's `&mut` transaction): `begin`, the body, then COMMIT, or ROLLBACK when
//! the body fails.

use std::future::Future;

use tokio_postgres::Client;

/// Runs `body` between `begin` (`BEGIN`, `BEGIN READ ONLY`, …) and `COMMIT`. When the body
/// fails the transaction is rolled back and the body's error returned; when BEGIN or
/// COMMIT fails, `db` turns the error into the caller's, with what was being done.
pub async fn transaction<T, E>(
    client: &Client,
    begin: &str,
    db: impl Fn(&'static str, tokio_postgres::Error) -> E,
    body: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    client
        .batch_execute(begin)
        .await
        .map_err(|e| db("starting a transaction", e))?;
    match body.await {
        Ok(value) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| db("committing", e))?;
            Ok(value)
        }
        Err(error) => {
            // NB: the body's error is the one to report; a failed ROLLBACK means the
            // connection is gone, and the server rolls back on its own.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(error)
        }
    }
}

/// Runs `body` between `begin` and `ROLLBACK`, whatever it returns: for reads that want
/// one snapshot (`BEGIN READ ONLY`) and for checks that must leave nothing behind (a
/// verify script). A failed `begin` is turned into the caller's error by `db`.
pub async fn rolled_back<T, E>(
    client: &Client,
    begin: &str,
    db: impl Fn(&'static str, tokio_postgres::Error) -> E,
    body: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    client
        .batch_execute(begin)
        .await
        .map_err(|e| db("starting a transaction", e))?;
    let result = body.await;
    let _ = client.batch_execute("ROLLBACK").await;
    result
}
