//! What the Environment and Promotion reconcilers share about the database an
//! Environment points at: the connection from its Secret, a deploy that reports its
//! progress in status, and the engine's outcomes mapped to conditions. Holds no SQL.

use std::time::{Duration, Instant};

use kube::{Api, ResourceExt};
use tracing::debug;

use super::fetch::{self, Fetched};
use super::status::{Outcome, apply_status};
use super::{Context, Stores, parse_duration};
use crate::api::conditions::reasons;
use crate::api::environment::{
    DatabaseConnection, DeployFailure, Environment, FailureMode, SslMode, TargetSessionAttrs,
};
use crate::engine::{self, DeployOptions, Deployer};
use crate::pg::{Keys, Override, Target};
use crate::registry::Registry;

/// The connection target from the Secret's keys, the TLS Secret's and the connection
/// parameters in the Environment's spec (see [`Target::from_keys`]), with the
/// Environment's session timeouts and a 10 s connect timeout unless the target sets one.
/// Errors name keys and fields, never a value of the Secret.
pub fn connection(
    secret: &Keys,
    tls_secret: Option<&Keys>,
    database: &DatabaseConnection,
    statement_timeout: Option<Duration>,
    lock_timeout: Option<Duration>,
) -> Result<Target, String> {
    let mut overrides: Vec<Override<'_>> = Vec::new();
    if let Some(host) = &database.host {
        overrides.push(("host", host.clone(), "spec.database.host"));
    }
    if let Some(port) = database.port {
        overrides.push(("port", port.to_string(), "spec.database.port"));
    }
    if let Some(dbname) = &database.dbname {
        overrides.push(("dbname", dbname.clone(), "spec.database.dbname"));
    }
    if let Some(mode) = database.ssl_mode {
        overrides.push(("sslmode", ssl_mode(mode).into(), "spec.database.sslMode"));
    }
    if let Some(attrs) = database.target_session_attrs {
        let value = match attrs {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
        };
        overrides.push((
            "target_session_attrs",
            value.into(),
            "spec.database.targetSessionAttrs",
        ));
    }
    let target = Target::from_keys(secret, tls_secret, &overrides).map_err(|e| e.0)?;
    Ok(target
        .with_session_timeouts(statement_timeout, lock_timeout)
        .with_default_connect_timeout(Duration::from_secs(10)))
}

fn ssl_mode(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Allow => "allow",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

/// Maps an engine error to the outcome to report, and the failure details for status.
pub fn engine_outcome(
    error: &engine::Error,
    fetched: &Fetched,
    revision: &str,
) -> (Outcome, Option<DeployFailure>) {
    let message = fetch::relative(&error.to_string(), &fetched.dir);
    let details = failure_details(error, fetched, revision, &message);
    let outcome = Outcome::failed(error.is_terminal(), error.reason(), message);
    (outcome, details)
}

/// What status records of a failure: the change, file and line where a script failed,
/// the workflow file a refusal names, or just the message for an invalid project.
fn failure_details(
    error: &engine::Error,
    fetched: &Fetched,
    revision: &str,
    message: &str,
) -> Option<DeployFailure> {
    use engine::Error as E;
    let plain = || DeployFailure {
        revision: Some(revision.to_string()),
        message: message.to_string(),
        ..Default::default()
    };
    let at = |f: &engine::Failure, reverted: &[String]| DeployFailure {
        change: Some(f.change.clone()),
        file: Some(fetch::relative(&f.path.display().to_string(), &fetched.dir)),
        line: Some(f.line as i64),
        message: f.message.clone(),
        reverted: reverted.to_vec(),
        ..plain()
    };
    match error {
        E::ChangeFailed {
            failure, reverted, ..
        }
        | E::RevertFailed { failure, reverted } => Some(at(failure, reverted)),
        E::VerifyFailed { failures } => failures.first().map(|f| at(f, &[])),
        E::Refused(refusal) => Some(DeployFailure {
            change: Some(refusal.change().to_string()),
            file: Some(refusal.file().to_string()),
            ..plain()
        }),
        E::Project(_)
        | E::Io { .. }
        | E::Script { .. }
        | E::Target { .. }
        | E::Dependency { .. } => Some(plain()),
        E::Diverged { .. } | E::Locked { .. } | E::Connect(_) | E::Db { .. } | E::Registry(_) => {
            None
        }
    }
}

/// Reads the Secret and connects.
pub async fn connect(ctx: &Context, env: &Environment) -> Result<Deployer, Outcome> {
    let target = target(ctx, env)?;
    let started = Instant::now();
    let result = Deployer::connect(
        &target,
        Registry::new(&env.spec.database.registry),
        ctx.committer.clone(),
    )
    .await;
    ctx.metrics
        .registry_lock_wait
        .observe(started.elapsed().as_secs_f64());
    result.map_err(|e| Outcome::Transient {
        reason: reasons::CONNECT_FAILED,
        message: e.to_string(),
    })
}

/// The Environment's connection from its Secrets and spec, and the database it names
/// with the credentials redacted (`postgres://***@host:port/db`): two Environments whose
/// redacted targets are equal share a database.
pub fn target(ctx: &Context, env: &Environment) -> Result<Target, Outcome> {
    let ns = env.namespace().unwrap_or_default();
    let database = &env.spec.database;
    let keys = |name: &str| match Stores::get(&ctx.stores.secrets, &ns, name) {
        Some(secret) => Ok(Keys::new(name, fetch::secret_data(&secret))),
        None => Err(Outcome::Transient {
            reason: reasons::NOT_FOUND,
            message: format!("Secret {name} not found"),
        }),
    };
    let secret = keys(&database.secret_ref.name)?;
    let tls_secret = match &database.tls_secret_ref {
        Some(r) => Some(keys(&r.name)?),
        None => None,
    };
    let statement_timeout = env
        .spec
        .statement_timeout
        .as_deref()
        .and_then(parse_duration);
    let lock_timeout = env.spec.lock_timeout.as_deref().and_then(parse_duration);
    connection(
        &secret,
        tls_secret.as_ref(),
        database,
        statement_timeout,
        lock_timeout,
    )
    .map_err(|message| Outcome::Transient {
        reason: reasons::INVALID_SECRET,
        message,
    })
}

fn engine_mode(mode: FailureMode) -> engine::FailureMode {
    match mode {
        FailureMode::All => engine::FailureMode::All,
        FailureMode::Tag => engine::FailureMode::Tag,
        FailureMode::Change => engine::FailureMode::Change,
    }
}

/// Deploy options for an Environment's spec.
pub fn deploy_options(env: &Environment, revision: &str, to: Option<String>) -> DeployOptions {
    DeployOptions {
        to,
        verify: env.spec.verify,
        mode: engine_mode(env.spec.failure_mode),
        log_only: false,
        variables: env.spec.variables.clone(),
        revision: Some(revision.to_string()),
        allow_rework: env.spec.allow_rework,
    }
}

/// Runs a deploy while a background task reports progress in status at most once a second.
/// `base` is the status to show while deploying. Takes and gives back the engine and project.
///
/// NB: the engine's progress callback is not `Send`, so its future cannot cross threads;
/// it runs on a blocking thread that drives it with the runtime's handle.
pub async fn deploy_with_progress<K, S>(
    engine: Deployer,
    project: crate::project::Project,
    options: DeployOptions,
    api: &Api<K>,
    name: &str,
    base: S,
    set_progress: fn(&mut S, String),
) -> (
    Deployer,
    crate::project::Project,
    engine::Result<engine::DeployReport>,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    S: serde::Serialize + Clone + Send + Sync + 'static,
{
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<String>>(None);
    let api = api.clone();
    let name = name.to_string();
    let reporter = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let text = rx.borrow_and_update().clone();
            if let Some(text) = text {
                let mut s = base.clone();
                set_progress(&mut s, text);
                if let Err(error) = apply_status(&api, &name, &s).await {
                    debug!(%error, "Progress update failed");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let handle = tokio::runtime::Handle::current();
    let joined = tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            let mut engine = engine;
            let result = engine
                .deploy(&project, &options, &mut |p| {
                    let verb = if p.operation == "revert" {
                        "reverting"
                    } else {
                        "deploying"
                    };
                    let _ = tx.send(Some(format!(
                        "{verb} change {}/{}: {}",
                        p.index, p.total, p.change
                    )));
                })
                .await;
            (engine, project, result)
        })
    })
    .await;
    reporter.abort();
    let _ = reporter.await;
    match joined {
        Ok(out) => out,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rework_refusal_stalls_naming_the_change_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("sqitch.conf"), "[core]\n\tengine = pg\n").expect("w");
        std::fs::write(
            dir.path().join("sqitch.plan"),
            "%project=shop\n\nusers 2024-01-01T00:00:00Z Ann <ann@example.com>\n",
        )
        .expect("w");
        std::fs::create_dir(dir.path().join("deploy")).expect("mkdir");
        std::fs::write(dir.path().join("deploy/users.sql"), "select 1;\n").expect("w");
        let fetched = Fetched {
            revision: "cm:shop@sha1:1".into(),
            digest: "sha1:1".into(),
            dir: dir.path().to_owned(),
            project: crate::project::Project::load(dir.path()).expect("project"),
        };
        let error = engine::Error::Refused(engine::changes::schedule::Refusal::ReworkNotAllowed {
            change: "users".into(),
            file: "deploy/users-ignore.sql".into(),
        });
        let (outcome, failure) = engine_outcome(&error, &fetched, "cm:shop@sha1:1");
        match outcome {
            Outcome::Terminal { reason, message } => {
                assert_eq!(reason, reasons::REWORK_NOT_ALLOWED);
                assert!(message.contains("deploy/users-ignore.sql"), "{message}");
            }
            other => panic!("want terminal, got {other:?}"),
        }
        let failure = failure.expect("failure details");
        assert_eq!(failure.change.as_deref(), Some("users"));
        assert_eq!(failure.file.as_deref(), Some("deploy/users-ignore.sql"));
        assert_eq!(
            reasons::REWORK_NOT_ALLOWED,
            reasons::REWORK_NOT_ALLOWED,
            "the engine and the API agree on the word"
        );
        assert_eq!(reasons::INVALID_WORKFLOW, reasons::INVALID_WORKFLOW);
    }

    #[test]
    fn connection_from_keys_redacts_and_sets_timeouts() {
        let secret = Keys::of_text(
            "db",
            &[
                ("host", "db"),
                ("port", "6543"),
                ("user", "app"),
                ("password", "hunter2"),
                ("dbname", "shop"),
            ],
        );
        let target = connection(
            &secret,
            None,
            &DatabaseConnection::default(),
            Some(Duration::from_secs(5)),
            Some(Duration::from_millis(250)),
        )
        .expect("valid");
        assert_eq!(target.shown(), "postgres://***@db:6543/shop");
        assert_eq!(
            target.options(),
            Some("-c statement_timeout=5000 -c lock_timeout=250")
        );
    }

    #[test]
    fn the_spec_completes_a_zalando_secret_and_wins_over_any_secret() {
        let zalando = Keys::of_text(
            "app.acid.credentials",
            &[("username", "app"), ("password", "pw")],
        );
        let database = DatabaseConnection {
            host: Some("acid-minimal-cluster".into()),
            dbname: Some("shop".into()),
            ssl_mode: Some(SslMode::Require),
            ..Default::default()
        };
        let target = connection(&zalando, None, &database, None, None).expect("valid");
        assert_eq!(
            target.shown(),
            "postgres://***@acid-minimal-cluster:5432/shop"
        );
        let cnpg = Keys::of_text(
            "shop-app",
            &[
                ("uri", "postgresql://app:pw@shop-rw.db:5432/app"),
                ("host", "shop-rw"),
            ],
        );
        let database = DatabaseConnection {
            port: Some(6432),
            ..Default::default()
        };
        let target = connection(&cnpg, None, &database, None, None).expect("valid");
        assert_eq!(target.shown(), "postgres://***@shop-rw.db:6432/app");
    }

    #[test]
    fn connection_errors_name_keys_and_fields_never_the_password() {
        let bad_url = Keys::of_text("db", &[("url", "postgres://app:hunter2@db:notaport/shop")]);
        let error = connection(&bad_url, None, &DatabaseConnection::default(), None, None)
            .expect_err("invalid");
        assert!(error.contains("key url of Secret db"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let only_password = Keys::of_text("db", &[("password", "hunter2"), ("pgpass", "x")]);
        let error = connection(
            &only_password,
            None,
            &DatabaseConnection::default(),
            None,
            None,
        )
        .expect_err("invalid");
        assert!(error.contains("found keys: password, pgpass"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
