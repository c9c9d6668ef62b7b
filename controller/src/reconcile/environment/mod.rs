//! Reconciles `Environment` in named steps: `gather` the project and the database's
//! state, [`decide`] (pure), `act` (deploy, follow objects), `report` what the database
//! holds. Holds no SQL.

mod act;
mod approve;
mod decide;
mod drift;
mod report;

pub use decide::{Decision, Facts, decide};

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use tracing::{debug, info, instrument};

use super::database::{connect, engine_outcome};
use super::fetch::{self, Fetched};
use super::status::{self, Outcome, apply_status, mark_progressing, summarize};
use super::{Context, Error, Result, Stores, parse_duration, requested_at};
use crate::api::FINALIZER;
use crate::api::conditions::{reasons, types};
use crate::api::environment::{Environment, EnvironmentStatus};
use crate::engine::{self, Deployer};

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
    let now = status::now();
    let generation = env.metadata.generation;
    let old = env.status.clone().unwrap_or_default();
    let mut new = old.clone();
    new.progress = None;
    let requested = requested_at(env);
    let retry_requested = old.observed_generation != generation
        || (requested.is_some() && requested != old.last_handled_reconcile_at);

    if env.spec.suspend {
        return suspended(api, &name, &old, new, generation, &now).await;
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

    let scope = Scope {
        env,
        api,
        ctx,
        ns: env.namespace().unwrap_or_default(),
        name: name.clone(),
        generation,
        now: now.clone(),
        retry_requested,
    };
    let outcome = steps(&scope, &mut new).await;
    summarize(&mut new.conditions, &outcome, generation, &now);
    new.observed_generation = generation;
    new.last_handled_reconcile_at = requested.or(old.last_handled_reconcile_at.clone());

    let action = next_action(ctx, env, &outcome);
    if !status::same_ignoring_time(&old, &new) {
        debug!(changed = ?status::changed_fields(&old, &new), "Status changed");
        events(ctx, env, &old, &new).await;
        drift::events(ctx, env, &old, &new).await;
        apply_status(api, &name, &new).await?;
    }
    Ok(action)
}

/// One reconcile of one Environment: what every step needs.
struct Scope<'a> {
    env: &'a Environment,
    api: &'a Api<Environment>,
    ctx: &'a Context,
    ns: String,
    name: String,
    generation: Option<i64>,
    now: Time,
    /// The generation or the requestedAt annotation changed since the last attempt.
    retry_requested: bool,
}

impl Scope<'_> {
    /// Sets a condition for this reconcile's generation and time.
    fn set(&self, new: &mut EnvironmentStatus, type_: &str, ok: bool, reason: &str, message: &str) {
        status::set_condition(
            &mut new.conditions,
            type_,
            ok,
            reason,
            message,
            self.generation,
            &self.now,
        );
    }
}

/// What [`gather`] found: the project at the revision to deploy, a connection to the
/// database, and the registry's view of the plan there.
struct Gathered {
    fetched: Fetched,
    revision: String,
    engine: Deployer,
    state: engine::Status,
}

/// The steps of one reconcile: gather, decide, act, report.
async fn steps(scope: &Scope<'_>, new: &mut EnvironmentStatus) -> Outcome {
    let db = match gather(scope).await {
        Ok(db) => db,
        Err(outcome) => return outcome,
    };
    let facts = Facts {
        auto_deploy: scope.env.spec.auto_deploy,
        pending: db.state.pending.len(),
        revision: db.revision.clone(),
        failed_revision: new.last_failure.as_ref().and_then(|f| f.revision.clone()),
        retry_requested: scope.retry_requested,
    };
    let decision = decide(&facts);
    debug!(?decision, pending = facts.pending, revision = %db.revision, "Decided");
    let mut db = db;
    if let Some(waiting) = approve::review_deploy(scope, &decision, &mut db, new).await {
        drift::check_drift(scope, &db, new).await;
        return report::report(scope, &db, new, waiting).await;
    }
    let (db, mut outcome) = act::act(scope, decision, db, new).await;
    // Blue-green schemas: an autoDeploy Environment swaps in what changed at once.
    if scope.env.spec.auto_deploy && matches!(outcome, Outcome::Ready { .. }) {
        outcome = act::follow_objects(scope, &db, new)
            .await
            .unwrap_or(outcome);
    }
    if matches!(outcome, Outcome::Ready { .. }) {
        // The plan that waited for approval has run.
        new.plan = None;
    }
    drift::check_drift(scope, &db, new).await;
    report::report(scope, &db, new, outcome).await
}

/// The project the Environment names, its files at the reported revision, a connection
/// to the database and the registry's view of the plan there; or the outcome that stops
/// the reconcile (a missing project, files not yet caught up, a diverged database).
async fn gather(scope: &Scope<'_>) -> std::result::Result<Gathered, Outcome> {
    let project_name = &scope.env.spec.project_ref.name;
    let Some(dp) = Stores::get(&scope.ctx.stores.projects, &scope.ns, project_name) else {
        return Err(Outcome::Transient {
            reason: reasons::NOT_FOUND,
            message: format!("DatabaseProject {project_name} not found"),
        });
    };
    let fetched = match fetch::fetch(scope.ctx, &dp, fetch::Want::Reported).await {
        Ok(f) => f,
        Err((Outcome::Terminal { reason, message }, _)) => {
            return Err(Outcome::Terminal {
                reason,
                message: format!("DatabaseProject {project_name}: {message}"),
            });
        }
        Err((outcome, _)) => return Err(outcome),
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
        return Err(Outcome::Progressing {
            reason: reasons::PROGRESSING,
            message: format!("waiting for the project files of {seen} (have {revision})"),
        });
    }
    if let Some(refused) =
        super::shared_database::refuse_if_claimed(scope.ctx, scope.env, &fetched.project)
    {
        return Err(refused);
    }
    let engine = connect(scope.ctx, scope.env).await?;
    let state = engine
        .status_with(&fetched.project, scope.env.spec.allow_rework)
        .await
        .map_err(|e| engine_outcome(&e, &fetched, &revision).0)?;
    if !state.diverged.is_empty() {
        return Err(Outcome::Terminal {
            reason: reasons::DIVERGED,
            message: format!(
                "the database has changes the plan lacks at their position: {}",
                state.diverged.join(", ")
            ),
        });
    }
    Ok(Gathered {
        fetched,
        revision,
        engine,
        state,
    })
}

/// `spec.suspend`: Reconciling=False with reason Suspended, nothing deployed.
async fn suspended(
    api: &Api<Environment>,
    name: &str,
    old: &EnvironmentStatus,
    mut new: EnvironmentStatus,
    generation: Option<i64>,
    now: &Time,
) -> Result<Action> {
    status::set_condition(
        &mut new.conditions,
        types::RECONCILING,
        false,
        reasons::SUSPENDED,
        "suspended: nothing is deployed until spec.suspend is false",
        generation,
        now,
    );
    new.observed_generation = generation;
    if !status::same_ignoring_time(old, &new) {
        info!("Suspended");
        apply_status(api, name, &new).await?;
    }
    Ok(Action::await_change())
}

/// What to do after the reconcile: requeue at the interval when Ready, retry with capped
/// backoff on a transient failure, look again slowly when stalled.
fn next_action(ctx: &Context, env: &Environment, outcome: &Outcome) -> Action {
    let interval = parse_duration(&env.spec.interval).unwrap_or(Duration::from_secs(300));
    let retry = parse_duration(&env.spec.retry_interval).unwrap_or(Duration::from_secs(10));
    let key = super::object_key(env);
    match outcome {
        Outcome::Ready { .. } => {
            ctx.reset_backoff(&key);
            Action::requeue(interval)
        }
        Outcome::Progressing { .. } => Action::requeue(retry.min(interval)),
        // Waits for a person; the approval (a spec change) comes by watch.
        Outcome::Waiting { .. } => Action::requeue(interval),
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
    }
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
    if reason == reasons::APPROVAL_PENDING || reason == reasons::APPROVAL_STALE {
        // The message carries the digest to approve.
        let stale = reason == reasons::APPROVAL_STALE;
        ctx.event(env, stale, &reason, "Review", message).await;
    } else if state == "True" && reason == reasons::DEPLOYED {
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
