//! Reconciles `Environment`: compares the project's plan with the database's registry,
//! deploys pending changes when `autoDeploy` is on, and reports what the database holds.
//!
//! Decisions are pure ([`decide`]); the engine does every database operation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use tracing::{debug, info, instrument, warn};

use super::database_project::{self, Fetched};
use super::status::{self, Outcome, apply_status, mark_progressing, summarize};
use super::{Context, Error, Result, Stores, bluegreen, parse_duration, requested_at};
use crate::api::FINALIZER;
use crate::api::conditions::{reasons, types};
use crate::api::environment::{
    DeployFailure, DeploymentRecord, Environment, EnvironmentStatus, FailureMode, PendingChanges,
    WorkflowChange, WorkflowState,
};
use crate::engine::workflow::Refusal;
use crate::engine::{self, DeployOptions, PgEngine};
use crate::registry::Registry;
use crate::registry::workflow as records;

/// The kind's name, for metrics and logs.
pub const KIND: &str = "Environment";

/// Entry point from the Controller.
#[instrument(skip_all, fields(kind = KIND, name = %env.name_any(), namespace = env.namespace().unwrap_or_default()))]
pub async fn reconcile(env: Arc<Environment>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let ns = env
        .namespace()
        .ok_or(Error::MissingObjectKey(".metadata.namespace"))?;
    let api: Api<Environment> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, env, |event| async {
        match event {
            Finalizer::Apply(env) => apply(&env, &api, &ctx).await,
            Finalizer::Cleanup(env) => cleanup(&env, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// What a deleted Environment releases: its backoff state. The database is left as it is
/// (deleting an Environment never reverts a database), and the project lock is a session
/// lock that ends with the reconcile that took it; reconciles of one object never overlap.
async fn cleanup(env: &Environment, ctx: &Context) -> Result<Action> {
    ctx.reset_backoff(&super::object_key(env));
    info!("Environment deleted; the database keeps its changes");
    ctx.event(
        env,
        false,
        "Deleted",
        "Cleanup",
        "released; the database keeps what it has deployed".into(),
    )
    .await;
    Ok(Action::await_change())
}

/// What to do about the database, decided from gathered facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Deploy the pending changes.
    Deploy,
    /// Nothing pending.
    UpToDate,
    /// Pending changes wait for a Promotion (autoDeploy is off).
    AwaitPromotion,
    /// This revision already failed for this generation; wait for a new revision, a new
    /// generation, or a requestedAt.
    KeepFailed,
}

/// Facts [`decide`] looks at.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// `spec.autoDeploy`.
    pub auto_deploy: bool,
    /// Pending change count.
    pub pending: usize,
    /// The revision at hand.
    pub revision: String,
    /// The revision of the last failure, if the last attempt failed.
    pub failed_revision: Option<String>,
    /// The generation or the requestedAt annotation changed since the failure.
    pub retry_requested: bool,
}

/// Decides what to do with the database.
pub fn decide(f: &Facts) -> Decision {
    if f.pending == 0 {
        Decision::UpToDate
    } else if !f.auto_deploy {
        Decision::AwaitPromotion
    } else if f.failed_revision.as_deref() == Some(f.revision.as_str()) && !f.retry_requested {
        Decision::KeepFailed
    } else {
        Decision::Deploy
    }
}

/// Builds the connection config from the Secret: a `url` key, or host/port/user/password/dbname.
/// Returns the config and a redacted description. Errors never contain the password.
pub fn connection(
    data: &BTreeMap<String, Vec<u8>>,
    statement_timeout: Option<Duration>,
    lock_timeout: Option<Duration>,
) -> Result<(tokio_postgres::Config, String), String> {
    let get = |k: &str| {
        data.get(k)
            .map(|v| String::from_utf8_lossy(v).trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let (mut config, shown) = if let Some(url) = get("url").or_else(|| get("uri")) {
        let shown = engine::redact_url(&url);
        let config: tokio_postgres::Config = url.parse().map_err(|_| {
            format!("the Secret's url key is not a valid connection string ({shown})")
        })?;
        (config, shown)
    } else {
        let host = get("host").ok_or("the Secret has neither a url key nor a host key")?;
        let port: u16 = match get("port") {
            Some(p) => p
                .parse()
                .map_err(|_| format!("the Secret's port key is not a port: {p:?}"))?,
            None => 5432,
        };
        let user = get("user")
            .or_else(|| get("username"))
            .ok_or("the Secret has no user key")?;
        let dbname = get("dbname")
            .or_else(|| get("database"))
            .unwrap_or_else(|| user.clone());
        let mut config = tokio_postgres::Config::new();
        config.host(&host).port(port).user(&user).dbname(&dbname);
        if let Some(password) = get("password") {
            config.password(password);
        }
        (config, format!("postgres://***@{host}:{port}/{dbname}"))
    };
    // NB: set through startup options so they survive the engine's per-change RESET ALL.
    let mut options = config.get_options().unwrap_or_default().to_string();
    if let Some(t) = statement_timeout {
        options.push_str(&format!(" -c statement_timeout={}", t.as_millis()));
    }
    if let Some(t) = lock_timeout {
        options.push_str(&format!(" -c lock_timeout={}", t.as_millis()));
    }
    if !options.trim().is_empty() {
        config.options(options.trim());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    Ok((config, shown))
}

/// Maps an engine error to the outcome to report, and the failure details for status.
pub fn engine_outcome(
    error: &engine::Error,
    fetched: &Fetched,
    revision: &str,
) -> (Outcome, Option<DeployFailure>) {
    use engine::Error as E;
    let message = database_project::relative(&error.to_string(), &fetched.dir);
    let failure = |f: &engine::Failure, reverted: &[String]| DeployFailure {
        revision: Some(revision.to_string()),
        change: Some(f.change.clone()),
        file: Some(database_project::relative(
            &f.path.display().to_string(),
            &fetched.dir,
        )),
        line: Some(f.line as i64),
        message: f.message.clone(),
        reverted: reverted.to_vec(),
    };
    match error {
        E::ChangeFailed {
            failure: f,
            reverted,
            ..
        } => (
            Outcome::Terminal {
                reason: reasons::DEPLOY_FAILED,
                message,
            },
            Some(failure(f, reverted)),
        ),
        E::RevertFailed {
            failure: f,
            reverted,
        } => (
            Outcome::Terminal {
                reason: reasons::DEPLOY_FAILED,
                message,
            },
            Some(failure(f, reverted)),
        ),
        E::VerifyFailed { failures } => {
            let detail = failures.first().map(|f| failure(f, &[]));
            (
                Outcome::Terminal {
                    reason: reasons::VERIFY_FAILED,
                    message,
                },
                detail,
            )
        }
        E::Project(_) | E::Io { .. } | E::Script { .. } | E::Target { .. } => (
            Outcome::Terminal {
                reason: reasons::INVALID_PROJECT,
                message: message.clone(),
            },
            Some(DeployFailure {
                revision: Some(revision.into()),
                message,
                ..Default::default()
            }),
        ),
        E::Refused(refusal) => (
            Outcome::Terminal {
                reason: match refusal {
                    Refusal::ReworkNotAllowed { .. } => reasons::REWORK_NOT_ALLOWED,
                    _ => reasons::INVALID_WORKFLOW,
                },
                message: message.clone(),
            },
            Some(DeployFailure {
                revision: Some(revision.into()),
                change: Some(refusal.change().to_string()),
                file: Some(refusal.file().to_string()),
                message,
                ..Default::default()
            }),
        ),
        E::Dependency { .. } => (
            Outcome::Terminal {
                reason: reasons::DEPENDENCY_FAILED,
                message: message.clone(),
            },
            Some(DeployFailure {
                revision: Some(revision.into()),
                message,
                ..Default::default()
            }),
        ),
        E::Diverged { .. } => (
            Outcome::Terminal {
                reason: reasons::DIVERGED,
                message,
            },
            None,
        ),
        E::Locked { .. } => (
            Outcome::Transient {
                reason: reasons::LOCKED,
                message,
            },
            None,
        ),
        E::Connect { .. } => (
            Outcome::Transient {
                reason: reasons::CONNECT_FAILED,
                message,
            },
            None,
        ),
        E::Db { .. } | E::Registry(_) => (
            Outcome::Transient {
                reason: reasons::DATABASE_ERROR,
                message,
            },
            None,
        ),
    }
}

/// Reads the Secret and connects.
pub async fn connect(ctx: &Context, env: &Environment) -> Result<PgEngine, Outcome> {
    let (config, shown) = target(ctx, env)?;
    let started = Instant::now();
    let result = PgEngine::connect_config(
        &config,
        &shown,
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

/// The Environment's connection from its Secret, and the database it names with the
/// credentials redacted (`postgres://***@host:port/db`): two Environments whose redacted
/// targets are equal share a database.
pub fn target(
    ctx: &Context,
    env: &Environment,
) -> Result<(tokio_postgres::Config, String), Outcome> {
    let ns = env.namespace().unwrap_or_default();
    let secret_name = &env.spec.database.secret_ref.name;
    let Some(secret) = Stores::get(&ctx.stores.secrets, &ns, secret_name) else {
        return Err(Outcome::Transient {
            reason: reasons::NOT_FOUND,
            message: format!("Secret {secret_name} not found"),
        });
    };
    let secret: &Secret = &secret;
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    let statement_timeout = env
        .spec
        .statement_timeout
        .as_deref()
        .and_then(parse_duration);
    let lock_timeout = env.spec.lock_timeout.as_deref().and_then(parse_duration);
    connection(&data, statement_timeout, lock_timeout).map_err(|message| Outcome::Transient {
        reason: reasons::INVALID_SECRET,
        message: format!("Secret {secret_name}: {message}"),
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
    engine: PgEngine,
    project: crate::project::Project,
    options: DeployOptions,
    api: &Api<K>,
    name: &str,
    base: S,
    set_progress: fn(&mut S, String),
) -> (
    PgEngine,
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

/// True when the status is the snapshot a deploy shows while it runs. Reconciles of one
/// object never overlap, so seeing it means the watch cache is behind our own final write.
fn deploying_snapshot(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> bool {
    status::condition(conditions, types::RECONCILING)
        .is_some_and(|c| c.reason == reasons::DEPLOYING)
}

async fn apply(env: &Environment, api: &Api<Environment>, ctx: &Context) -> Result<Action> {
    let name = env.name_any();
    // NB: decide on fresh status, or a failed revision would be deployed a second time.
    let fresh;
    let env = if env
        .status
        .as_ref()
        .is_some_and(|s| deploying_snapshot(&s.conditions))
    {
        fresh = api.get(&name).await?;
        &fresh
    } else {
        env
    };
    let ns = env.namespace().unwrap_or_default();
    let now = status::now();
    let generation = env.metadata.generation;
    let old = env.status.clone().unwrap_or_default();
    let mut new = old.clone();
    new.progress = None;
    let interval = parse_duration(&env.spec.interval).unwrap_or(Duration::from_secs(300));
    let retry = parse_duration(&env.spec.retry_interval).unwrap_or(Duration::from_secs(10));
    let requested = requested_at(env);
    let retry_requested = old.observed_generation != generation
        || (requested.is_some() && requested != old.last_handled_reconcile_at);

    if env.spec.suspend {
        status::set_condition(
            &mut new.conditions,
            types::RECONCILING,
            false,
            reasons::SUSPENDED,
            "suspended: nothing is deployed until spec.suspend is false",
            generation,
            &now,
        );
        new.observed_generation = generation;
        if !status::same_ignoring_time(&old, &new) {
            info!("Suspended");
            apply_status(api, &name, &new).await?;
        }
        return Ok(Action::await_change());
    }
    if status::condition(&new.conditions, types::RECONCILING)
        .is_some_and(|c| c.reason == reasons::SUSPENDED)
    {
        status::remove_condition(&mut new.conditions, types::RECONCILING);
    }
    if mark_progressing(
        &mut new.conditions,
        old.observed_generation,
        generation,
        &now,
    ) {
        new.observed_generation = generation;
        apply_status(api, &name, &new).await?;
    }

    let outcome = steps(
        env,
        api,
        ctx,
        &ns,
        &name,
        &mut new,
        retry_requested,
        generation,
        &now,
    )
    .await;
    summarize(&mut new.conditions, &outcome, generation, &now);
    new.observed_generation = generation;
    new.last_handled_reconcile_at = requested.or(old.last_handled_reconcile_at.clone());

    let key = super::object_key(env);
    let action = match &outcome {
        Outcome::Ready { .. } => {
            ctx.reset_backoff(&key);
            Action::requeue(interval)
        }
        Outcome::Progressing { .. } => Action::requeue(retry.min(interval)),
        Outcome::Transient { reason, message } => {
            ctx.metrics.failure(KIND, reason);
            if *reason == reasons::LOCKED {
                ctx.metrics.lock_waits.inc();
            }
            let wait = ctx.backoff(&key, retry, interval.max(retry));
            debug!(
                reason,
                message,
                wait_ms = wait.as_millis() as u64,
                "Retrying"
            );
            Action::requeue(wait)
        }
        Outcome::Terminal { reason, .. } => {
            ctx.metrics.failure(KIND, reason);
            // Waits for a spec or project change (both reach us by watch); a slow requeue
            // keeps status fresh without redeploying (decide() keeps a failed revision).
            Action::requeue(interval)
        }
    };
    if !status::same_ignoring_time(&old, &new) {
        debug!(changed = ?status::changed_fields(&old, &new), "Status changed");
        events(ctx, env, &old, &new).await;
        apply_status(api, &name, &new).await?;
    }
    Ok(action)
}

#[allow(clippy::too_many_arguments)]
async fn steps(
    env: &Environment,
    api: &Api<Environment>,
    ctx: &Context,
    ns: &str,
    name: &str,
    new: &mut EnvironmentStatus,
    retry_requested: bool,
    generation: Option<i64>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Outcome {
    // Gather: the project, its files, the database.
    let project_name = &env.spec.project_ref.name;
    let Some(dp) = Stores::get(&ctx.stores.projects, ns, project_name) else {
        return Outcome::Transient {
            reason: reasons::NOT_FOUND,
            message: format!("DatabaseProject {project_name} not found"),
        };
    };
    let mut fetched =
        match database_project::fetch(ctx, &dp, database_project::Want::Reported).await {
            Ok(f) => f,
            Err((Outcome::Terminal { reason, message }, _)) => {
                return Outcome::Terminal {
                    reason,
                    message: format!("DatabaseProject {project_name}: {message}"),
                };
            }
            Err((outcome, _)) => return outcome,
        };
    let revision = fetched.revision.clone();
    if let Some(seen) = dp
        .status
        .as_ref()
        .and_then(|s| s.revision.as_ref())
        .filter(|seen| **seen != revision)
    {
        // NB: the ConfigMap cache and the DatabaseProject's status come from different
        // watches; when they disagree, look again shortly rather than act on old files.
        return Outcome::Progressing {
            reason: reasons::PROGRESSING,
            message: format!("waiting for the project files of {seen} (have {revision})"),
        };
    }
    if let Some(refused) =
        super::shared_database::refuse_if_claimed(ctx, env, &fetched.project).await
    {
        return refused;
    }
    let mut engine = match connect(ctx, env).await {
        Ok(e) => e,
        Err(outcome) => return outcome,
    };
    let state = match engine
        .status_with(&fetched.project, env.spec.allow_rework)
        .await
    {
        Ok(s) => s,
        Err(e) => return engine_outcome(&e, &fetched, &revision).0,
    };
    if !state.diverged.is_empty() {
        let message = format!(
            "the database has changes the plan lacks at their position: {}",
            state.diverged.join(", ")
        );
        return Outcome::Terminal {
            reason: reasons::DIVERGED,
            message,
        };
    }

    // Decide.
    let facts = Facts {
        auto_deploy: env.spec.auto_deploy,
        pending: state.pending.len(),
        revision: revision.clone(),
        failed_revision: new.last_failure.as_ref().and_then(|f| f.revision.clone()),
        retry_requested,
    };
    let decision = decide(&facts);
    debug!(?decision, pending = facts.pending, %revision, "Decided");

    // Act.
    let mut outcome = match decision {
        Decision::UpToDate => Outcome::Ready {
            reason: reasons::UP_TO_DATE,
            message: format!("up to date with {revision}"),
        },
        Decision::AwaitPromotion => Outcome::Ready {
            reason: reasons::AWAITING_PROMOTION,
            message: format!(
                "{} changes pending; this Environment moves only by Promotion",
                facts.pending
            ),
        },
        Decision::KeepFailed => {
            let message = new
                .last_failure
                .as_ref()
                .map(|f| f.message.clone())
                .unwrap_or_default();
            let reason = status::condition(&new.conditions, types::READY)
                .map(|c| c.reason.clone())
                .unwrap_or_default();
            // Keep the reason the failure was reported with.
            let reason = [
                reasons::VERIFY_FAILED,
                reasons::REWORK_NOT_ALLOWED,
                reasons::INVALID_WORKFLOW,
            ]
            .into_iter()
            .find(|r| *r == reason)
            .unwrap_or(reasons::DEPLOY_FAILED);
            let message = status::condition(&new.conditions, types::READY)
                .map(|c| c.message.clone())
                .unwrap_or(message);
            Outcome::Terminal { reason, message }
        }
        Decision::Deploy => {
            new.last_attempted_revision = Some(revision.clone());
            let mut base = new.clone();
            summarize(
                &mut base.conditions,
                &Outcome::Progressing {
                    reason: reasons::DEPLOYING,
                    message: format!("deploying {} changes of {revision}", facts.pending),
                },
                generation,
                now,
            );
            let _ = apply_status(api, name, &base).await;
            let options = deploy_options(env, &revision, None);
            let started = Instant::now();
            let (e, project, result) = deploy_with_progress(
                engine,
                fetched.project,
                options,
                api,
                name,
                base,
                |s: &mut EnvironmentStatus, p| s.progress = Some(p),
            )
            .await;
            engine = e;
            fetched.project = project;
            match result {
                Ok(report) => {
                    ctx.metrics
                        .changes_applied
                        .inc_by(report.deployed.len() as u64);
                    info!(%revision, changes = report.deployed.len(), ms = started.elapsed().as_millis() as u64, "Deployed");
                    new.last_failure = None;
                    status::set_condition(
                        &mut new.conditions,
                        types::DEPLOYED,
                        true,
                        reasons::DEPLOYED,
                        &format!("deployed {} changes of {revision}", report.deployed.len()),
                        generation,
                        now,
                    );
                    status::remove_condition(&mut new.conditions, types::ROLLED_BACK);
                    if env.spec.verify {
                        status::set_condition(
                            &mut new.conditions,
                            types::VERIFIED,
                            true,
                            reasons::SUCCEEDED,
                            "verify scripts passed",
                            generation,
                            now,
                        );
                    }
                    Outcome::Ready {
                        reason: reasons::DEPLOYED,
                        message: format!(
                            "deployed {revision}: {} changes, last {}",
                            report.deployed.len(),
                            report.deployed.last().map(String::as_str).unwrap_or("-")
                        ),
                    }
                }
                Err(error) => {
                    warn!(%revision, error = %database_project::relative(&error.to_string(), &fetched.dir), "Deploy failed");
                    let (outcome, failure) = engine_outcome(&error, &fetched, &revision);
                    if let Outcome::Terminal { reason, message } = &outcome {
                        status::set_condition(
                            &mut new.conditions,
                            types::DEPLOYED,
                            false,
                            reason,
                            message,
                            generation,
                            now,
                        );
                        if *reason == reasons::VERIFY_FAILED {
                            status::set_condition(
                                &mut new.conditions,
                                types::VERIFIED,
                                false,
                                reason,
                                message,
                                generation,
                                now,
                            );
                        }
                    }
                    match failure
                        .as_ref()
                        .map(|f| f.reverted.clone())
                        .unwrap_or_default()
                    {
                        reverted if !reverted.is_empty() => status::set_condition(
                            &mut new.conditions,
                            types::ROLLED_BACK,
                            true,
                            reasons::ROLLED_BACK,
                            &format!(
                                "reverted {} ({:?} failure mode)",
                                reverted.join(", "),
                                env.spec.failure_mode
                            )
                            .to_lowercase(),
                            generation,
                            now,
                        ),
                        _ => status::remove_condition(&mut new.conditions, types::ROLLED_BACK),
                    }
                    if failure.is_some() {
                        new.last_failure = failure;
                    }
                    outcome
                }
            }
        }
    };

    // Blue-green schemas: an autoDeploy Environment swaps in what changed at once.
    if env.spec.auto_deploy && matches!(outcome, Outcome::Ready { .. }) {
        outcome = follow_objects(env, ctx, &engine, &fetched, &revision, new, generation, now)
            .await
            .unwrap_or(outcome);
    }

    // Report what the database holds now.
    let bg = bluegreen::engine(ctx, env, &engine);
    bluegreen::report_sets(&bg, &fetched, new).await;
    let differing = bluegreen::differing(&bg, &fetched).await.ok();
    if !env.spec.auto_deploy
        && let Some(schemas) = differing.as_ref().filter(|d| !d.is_empty())
        && matches!(&outcome, Outcome::Ready { reason, .. } if *reason == reasons::UP_TO_DATE)
    {
        outcome = Outcome::Ready {
            reason: reasons::AWAITING_PROMOTION,
            message: format!(
                "blue-green schemas {} differ from {revision}; this Environment moves only by Promotion",
                schemas.join(", ")
            ),
        };
    }
    match engine
        .status_with(&fetched.project, env.spec.allow_rework)
        .await
    {
        Ok(state) => {
            new.workflow = workflow_changes(&state);
            new.last_change = state.last_change.as_ref().map(|c| c.name.clone());
            new.last_change_id = state.last_change.as_ref().map(|c| c.id.clone());
            new.pending = Some(PendingChanges {
                count: state.pending.len() as i64,
                first: state.pending.iter().take(5).cloned().collect(),
            });
            new.locked_by = state.locked_by.as_ref().map(|h| {
                format!(
                    "{} on {} ({} since {})",
                    h.holder, h.host, h.operation, h.started_at
                )
            });
            if state.pending.is_empty() && !matches!(outcome, Outcome::Terminal { .. }) {
                status::set_condition(
                    &mut new.conditions,
                    types::DEPLOYED,
                    true,
                    reasons::UP_TO_DATE,
                    &format!("every change of {revision} is deployed"),
                    generation,
                    now,
                );
            }
        }
        Err(e) => {
            if matches!(outcome, Outcome::Ready { .. }) {
                outcome = engine_outcome(&e, &fetched, &revision).0;
            }
        }
    }
    if let Ok(runs) = engine.deployments(&fetched.project, 5).await {
        if let Some(rev) = runs
            .iter()
            .find(|r| r.operation == "deploy" && r.result == "succeeded")
            .and_then(|r| r.revision.clone())
        {
            new.last_applied_revision = Some(rev);
        }
        new.deployments = runs
            .into_iter()
            .map(|r| DeploymentRecord {
                operation: r.operation,
                revision: r.revision,
                result: r.result,
                started_at: r.started_at,
                duration_ms: r.duration_ms,
                changes: r.changes as i64,
            })
            .collect();
    }
    if new.pending.as_ref().is_some_and(|p| p.count == 0)
        && differing.is_some_and(|d| d.is_empty())
        && !matches!(outcome, Outcome::Terminal { .. })
    {
        // The database holds every change and object of this revision, however they got
        // there (a revision without changes, Sqitch, the CLI, a swap).
        new.last_applied_revision = Some(revision.clone());
    }
    outcome
}

/// Stages and swaps in the blue-green schemas that changed. `None` when they already
/// match the revision; else the outcome to report instead of the deploy's.
#[allow(clippy::too_many_arguments)]
async fn follow_objects(
    env: &Environment,
    ctx: &Context,
    engine: &PgEngine,
    fetched: &Fetched,
    revision: &str,
    new: &mut EnvironmentStatus,
    generation: Option<i64>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Option<Outcome> {
    let objects = match bluegreen::objects(fetched) {
        Ok(o) => o,
        Err(outcome) => return Some(outcome),
    };
    let bg = bluegreen::engine(ctx, env, engine);
    match bluegreen::follow(&bg, fetched, &objects, env).await {
        Ok(bluegreen::Followed::UpToDate) => None,
        Ok(bluegreen::Followed::Swapped {
            deployment,
            schemas,
        }) => {
            info!(%revision, %deployment, schemas = ?schemas, "Swapped in blue-green schemas");
            Some(Outcome::Ready {
                reason: reasons::SWAP_COMPLETED,
                message: format!(
                    "deployed {revision}; swapped in {} (deployment {deployment})",
                    schemas.join(", ")
                ),
            })
        }
        Err(error) => {
            warn!(%revision, error = %database_project::relative(&error.to_string(), &fetched.dir), "Blue-green swap failed");
            let outcome = bluegreen::outcome(&error, fetched);
            if let Outcome::Terminal { reason, message } = &outcome {
                status::set_condition(
                    &mut new.conditions,
                    types::DEPLOYED,
                    false,
                    reason,
                    message,
                    generation,
                    now,
                );
            }
            Some(outcome)
        }
    }
}

/// The changes the development workflow files acted on in this database, for status.
fn workflow_changes(state: &engine::Status) -> Vec<WorkflowChange> {
    state
        .reworked()
        .filter_map(|c| {
            Some(WorkflowChange {
                change: c.name.clone(),
                state: match c.workflow? {
                    records::State::Deployed => WorkflowState::Deployed,
                    records::State::Ignored => WorkflowState::Ignored,
                    records::State::Cleaned => WorkflowState::Cleaned,
                    records::State::Replaced => WorkflowState::Replaced,
                },
                file: c.file.clone().unwrap_or_default(),
                reason: Some(c.reason.clone()).filter(|r| !r.is_empty()),
                revision: c.revision.clone(),
                since: c.since.clone(),
            })
        })
        .collect()
}

/// One event per transition: Deployed, DeployFailed, RolledBack.
async fn events(
    ctx: &Context,
    env: &Environment,
    old: &EnvironmentStatus,
    new: &EnvironmentStatus,
) {
    let ready = |s: &EnvironmentStatus| {
        status::condition(&s.conditions, types::READY)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let (was, now) = (ready(old), ready(new));
    if was == now {
        return;
    }
    let Some((state, reason, message)) = now else {
        return;
    };
    if state == "True" && reason == reasons::DEPLOYED {
        ctx.event(env, false, reasons::DEPLOYED, "Deploy", message)
            .await;
    } else if state == "False"
        && (reason == reasons::DEPLOY_FAILED || reason == reasons::VERIFY_FAILED)
    {
        let note = match &new.last_failure {
            Some(f) => format!(
                "{} failed at {}:{} deploying {}: {}",
                f.change.as_deref().unwrap_or("?"),
                f.file.as_deref().unwrap_or("?"),
                f.line.unwrap_or(0),
                f.revision.as_deref().unwrap_or("?"),
                f.message
            ),
            None => message,
        };
        ctx.event(env, true, &reason, "Deploy", note).await;
        if let Some(rb) =
            status::condition(&new.conditions, types::ROLLED_BACK).filter(|c| c.status == "True")
        {
            ctx.event(
                env,
                true,
                reasons::ROLLED_BACK,
                "Revert",
                rb.message.clone(),
            )
            .await;
        }
    } else if status::is_true(&new.conditions, types::STALLED) {
        ctx.event(env, true, &reason, "Reconcile", message).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_table() {
        struct Case {
            name: &'static str,
            facts: Facts,
            want: Decision,
        }
        let base = Facts {
            auto_deploy: true,
            pending: 3,
            revision: "r2".into(),
            failed_revision: None,
            retry_requested: false,
        };
        let cases = [
            Case {
                name: "nothing pending",
                facts: Facts {
                    pending: 0,
                    ..base.clone()
                },
                want: Decision::UpToDate,
            },
            Case {
                name: "auto deploy deploys",
                facts: base.clone(),
                want: Decision::Deploy,
            },
            Case {
                name: "promotion-only waits",
                facts: Facts {
                    auto_deploy: false,
                    ..base.clone()
                },
                want: Decision::AwaitPromotion,
            },
            Case {
                name: "failed revision is not retried (no hot loop)",
                facts: Facts {
                    failed_revision: Some("r2".into()),
                    ..base.clone()
                },
                want: Decision::KeepFailed,
            },
            Case {
                name: "a new revision heals",
                facts: Facts {
                    failed_revision: Some("r1".into()),
                    ..base.clone()
                },
                want: Decision::Deploy,
            },
            Case {
                name: "requestedAt retries a failed revision",
                facts: Facts {
                    failed_revision: Some("r2".into()),
                    retry_requested: true,
                    ..base.clone()
                },
                want: Decision::Deploy,
            },
        ];
        for case in cases {
            assert_eq!(decide(&case.facts), case.want, "{}", case.name);
        }
    }

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
        let error = engine::Error::Refused(Refusal::ReworkNotAllowed {
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
            engine::workflow::REWORK_NOT_ALLOWED,
            "the engine and the API agree on the word"
        );
        assert_eq!(
            reasons::INVALID_WORKFLOW,
            engine::workflow::INVALID_WORKFLOW
        );
    }

    #[test]
    fn environment_status_lists_the_changes_the_workflow_acted_on() {
        let change = |name: &str, workflow, file: Option<&str>| engine::ChangeStatus {
            name: name.into(),
            id: format!("{name}-id"),
            deployed: workflow != Some(records::State::Cleaned),
            workflow,
            file: file.map(str::to_owned),
            reason: if name == "b" {
                "wrong types".into()
            } else {
                String::new()
            },
            revision: Some("r2".into()),
            since: Some("2026-01-01T00:00:00Z".into()),
            next: None,
        };
        let state = engine::Status {
            changes: vec![
                change("a", Some(records::State::Deployed), None),
                change(
                    "b",
                    Some(records::State::Ignored),
                    Some("deploy/b-ignore.sql"),
                ),
                change(
                    "c",
                    Some(records::State::Cleaned),
                    Some("deploy/c-cleanup.sql"),
                ),
                change(
                    "d",
                    Some(records::State::Replaced),
                    Some("deploy/d-replace.sql"),
                ),
            ],
            ..Default::default()
        };
        let listed = workflow_changes(&state);
        let got: Vec<(&str, WorkflowState, &str)> = listed
            .iter()
            .map(|w| (w.change.as_str(), w.state, w.file.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("b", WorkflowState::Ignored, "deploy/b-ignore.sql"),
                ("c", WorkflowState::Cleaned, "deploy/c-cleanup.sql"),
                ("d", WorkflowState::Replaced, "deploy/d-replace.sql"),
            ],
            "plainly deployed changes are not listed"
        );
        assert_eq!(listed[0].reason.as_deref(), Some("wrong types"));
        assert_eq!(listed[1].reason, None);
    }

    #[test]
    fn connection_from_keys_redacts_and_sets_timeouts() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("host", "db"),
            ("port", "6543"),
            ("user", "app"),
            ("password", "hunter2"),
            ("dbname", "shop"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
        let (config, shown) = connection(
            &data,
            Some(Duration::from_secs(5)),
            Some(Duration::from_millis(250)),
        )
        .expect("valid");
        assert_eq!(shown, "postgres://***@db:6543/shop");
        assert_eq!(
            config.get_options(),
            Some("-c statement_timeout=5000 -c lock_timeout=250")
        );
        assert_eq!(config.get_password(), Some(&b"hunter2"[..]));
    }

    #[test]
    fn connection_from_url_never_shows_the_password() {
        let data: BTreeMap<String, Vec<u8>> = [(
            "url".to_string(),
            b"postgres://app:hunter2@db:5432/shop".to_vec(),
        )]
        .into();
        let (_, shown) = connection(&data, None, None).expect("valid");
        assert!(!shown.contains("hunter2"));
        let bad: BTreeMap<String, Vec<u8>> = [(
            "url".to_string(),
            b"postgres://app:hunter2@db:notaport/shop".to_vec(),
        )]
        .into();
        let error = connection(&bad, None, None).expect_err("invalid");
        assert!(!error.contains("hunter2"), "{error}");
        let none: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        assert!(connection(&none, None, None).is_err());
    }
}
