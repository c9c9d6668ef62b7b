//! Reconciles `Promotion` in named steps, one condition each: `validate` (guards, revision,
//! plan), `stage` (deploy changes, stage and verify objects), `swap` (swap in, succeed; or
//! roll back). One-shot: a finished Promotion waits for a new generation or requestedAt.
//! Holds no SQL.

mod approve;
mod guards;
mod stage;
mod swap;
mod validate;

pub use guards::{GUARDS, Guard, Input, check};

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{instrument, warn};

use super::fetch::Fetched;
use super::status::{self, Outcome, apply_status, mark_progressing, summarize};
use super::{Context, Error, Result, bluegreen, requested_at};
use crate::api::FINALIZER;
use crate::api::conditions::{reasons, types};
use crate::api::environment::Environment;
use crate::api::promotion::{Promotion, PromotionPhase, PromotionStatus};
use crate::engine::Deployer;
use crate::engine::bluegreen::{Error as BgError, PromoteOptions};
use crate::project::objects::Objects;

/// The kind's name, for metrics and logs.
pub const KIND: &str = "Promotion";

/// Entry point from the Controller.
#[instrument(skip_all, fields(kind = KIND, name = %promo.name_any(), namespace = promo.namespace().unwrap_or_default()))]
pub async fn reconcile(promo: Arc<Promotion>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let ns = promo
        .namespace()
        .ok_or(Error::MissingObjectKey(".metadata.namespace"))?;
    let api: Api<Promotion> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, promo, |event| async {
        match event {
            Finalizer::Apply(p) => apply(&p, &api, &ctx).await,
            // A promotion holds nothing once its reconcile ends.
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply(promo: &Promotion, api: &Api<Promotion>, ctx: &Context) -> Result<Action> {
    let name = promo.name_any();
    // NB: a cached in-flight phase is our own snapshot: the cache is behind our final
    // write. Read fresh so a finished promotion never runs twice.
    let fresh;
    let promo = if promo
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(PromotionPhase::in_flight)
    {
        fresh = api.get(&name).await?;
        &fresh
    } else {
        promo
    };
    let now = status::now();
    let generation = promo.metadata.generation;
    let old = promo.status.clone().unwrap_or_default();
    let requested = requested_at(promo);
    let rerun = requested.is_some() && requested != old.last_handled_reconcile_at;
    // One-shot: a finished promotion waits for a new generation or a requestedAt;
    // Environment events must not run it again.
    let finished = old.phase.is_some_and(PromotionPhase::finished);
    if finished && old.observed_generation == generation && !rerun {
        return Ok(Action::await_change());
    }
    let mut new = old.clone();
    if mark_progressing(
        &mut new.conditions,
        old.observed_generation,
        generation,
        &now,
    ) || rerun
    {
        // A new attempt: forget the last one's steps.
        for t in [
            types::VALIDATED,
            types::STAGED,
            types::VERIFIED,
            types::PROMOTED,
            types::BLOCKED,
            types::ROLLED_BACK,
        ] {
            status::remove_condition(&mut new.conditions, t);
        }
        new.step_durations_ms.clear();
        new.diff = None;
        new.approval = None;
        new.deployment = None;
        new.observed_generation = generation;
        new.phase = Some(PromotionPhase::Pending);
        apply_status(api, &name, &new).await?;
    }
    let run = Run {
        promo,
        api,
        ctx,
        name: name.clone(),
        generation,
        now: now.clone(),
    };
    let outcome = steps(&run, &mut new).await;
    summarize(&mut new.conditions, &outcome, generation, &now);
    new.observed_generation = generation;
    new.last_handled_reconcile_at = requested.or(old.last_handled_reconcile_at.clone());

    let key = super::object_key(promo);
    let action = match &outcome {
        Outcome::Ready { .. } => {
            ctx.reset_backoff(&key);
            Action::await_change()
        }
        // A plan waiting for approval is looked at again now and then: a hand edit in the
        // target changes its digest, and no watch sees that.
        Outcome::Waiting { .. } => Action::requeue(Duration::from_secs(300)),
        Outcome::Progressing { .. } | Outcome::Transient { .. } => {
            if let Outcome::Transient { reason, .. } = &outcome {
                ctx.metrics.failure(KIND, reason);
            }
            Action::requeue(ctx.backoff(&key, Duration::from_secs(5), Duration::from_secs(300)))
        }
        Outcome::Terminal { reason, .. } => {
            ctx.metrics.failure(KIND, reason);
            Action::await_change()
        }
    };
    if !status::same_ignoring_time(&old, &new) {
        events(ctx, promo, &old, &new).await;
        apply_status(api, &name, &new).await?;
    }
    Ok(action)
}

/// One reconcile of one Promotion: what every step needs to write its status.
struct Run<'a> {
    promo: &'a Promotion,
    api: &'a Api<Promotion>,
    ctx: &'a Context,
    name: String,
    generation: Option<i64>,
    now: Time,
}

impl Run<'_> {
    fn set(&self, new: &mut PromotionStatus, type_: &str, ok: bool, reason: &str, message: &str) {
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

    /// A step finished: its condition, with the duration in the message and in
    /// `stepDurationsMs`.
    fn done(
        &self,
        new: &mut PromotionStatus,
        type_: &str,
        ok: bool,
        reason: &str,
        message: &str,
        ms: u64,
    ) {
        self.set(new, type_, ok, reason, &format!("{message} ({ms} ms)"));
        new.step_durations_ms
            .insert(type_.to_lowercase(), ms as i64);
    }

    /// Enters `phase` and shows it (with `message` on Reconciling) while the step runs.
    async fn enter(&self, new: &mut PromotionStatus, phase: PromotionPhase, message: String) {
        new.phase = Some(phase);
        let mut shown = new.clone();
        summarize(
            &mut shown.conditions,
            &Outcome::Progressing {
                reason: reasons::PROGRESSING,
                message,
            },
            self.generation,
            &self.now,
        );
        if let Err(error) = apply_status(self.api, &self.name, &shown).await {
            warn!(%error, "Showing the phase failed");
        }
    }

    /// A guard refused: Blocked with its reason; nothing changed. Guards wait on the
    /// Environments and the database, which change by themselves: transient.
    fn block(&self, new: &mut PromotionStatus, reason: &'static str, message: String) -> Outcome {
        new.phase = Some(PromotionPhase::Blocked);
        self.set(new, types::BLOCKED, true, reason, &message);
        self.set(new, types::VALIDATED, false, reason, &message);
        Outcome::Transient { reason, message }
    }

    /// A step failed for good: Failed, with the failing step's condition.
    fn fail(
        &self,
        new: &mut PromotionStatus,
        step: &str,
        reason: &'static str,
        message: String,
    ) -> Outcome {
        new.phase = Some(PromotionPhase::Failed);
        self.set(new, step, false, reason, &message);
        Outcome::Terminal { reason, message }
    }

    /// A blue/green failure of `step`: blocked, failed or to be retried.
    fn bg_failed(
        &self,
        new: &mut PromotionStatus,
        step: &str,
        error: &BgError,
        fetched: &Fetched,
    ) -> Outcome {
        match (error, bluegreen::outcome(error, fetched)) {
            (BgError::Blocked { blocked }, _) => {
                self.block(new, blocked.reason, blocked.message.clone())
            }
            (_, Outcome::Terminal { reason, message }) => self.fail(new, step, reason, message),
            (_, other) => other,
        }
    }

    /// The source Environment's name, when `from.environment` is set.
    fn source_name(&self) -> Option<&str> {
        self.promo
            .spec
            .from
            .as_ref()
            .and_then(|f| f.environment.as_deref())
    }

    fn count(&self, result: &str) {
        self.ctx
            .metrics
            .promotions
            .get_or_create(&crate::metrics::ResultLabels {
                result: result.into(),
            })
            .inc();
    }
}

/// What the promotion will do, once validated: the revision and how far, the target's
/// engine, the pending changes, where the objects come from, and how to promote them.
struct Plan {
    target: Environment,
    fetched: Fetched,
    objects: Objects,
    /// The revision promoted.
    wanted: String,
    /// The id of the last change to deploy (the source's); all pending when `None`.
    to: Option<String>,
    engine: Deployer,
    /// The pending changes that will be deployed.
    changes: Vec<String>,
    /// The source's schema suffix when both Environments serve layers in one database.
    shared_from: Option<String>,
    options: PromoteOptions,
    /// How many changes the deploy applied.
    deployed: usize,
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// The steps of one reconcile, each a condition: Validated, Staged, Verified, Promoted.
async fn steps(run: &Run<'_>, new: &mut PromotionStatus) -> Outcome {
    match try_steps(run, new).await {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

async fn try_steps(
    run: &Run<'_>,
    new: &mut PromotionStatus,
) -> std::result::Result<Outcome, Outcome> {
    let started = Instant::now();
    // A Blocked promotion re-checks its guards whenever its Environments change; showing
    // Validating each time would flap its phase for watchers.
    if !matches!(
        new.phase,
        Some(PromotionPhase::Blocked | PromotionPhase::AwaitingApproval)
    ) {
        run.enter(
            new,
            PromotionPhase::Validating,
            "checking the guards".into(),
        )
        .await;
    }
    let validated = validate::objects(run, new).await?;
    if run.promo.spec.rollback {
        let v = &validated;
        return Ok(swap::rollback(run, new, &v.target, &v.fetched, &v.objects, started).await);
    }
    let plan = validate::plan(run, new, validated, started).await?;
    let plan = approve::review_plan(run, new, plan).await?;

    let acting = Instant::now();
    let plan = stage::deploy_changes(run, new, plan).await?;
    new.changes_applied = Some(plan.deployed as i64);
    let staged = stage::stage_objects(run, new, &plan, acting).await?;
    stage::report_staged(run, new, &plan, staged.as_ref(), acting);

    let swapping = Instant::now();
    let swap = swap::swap_in(run, new, &plan, staged).await?;
    Ok(swap::succeed(run, new, &plan, swap, acting, swapping).await)
}

fn kube_failed(e: kube::Error) -> Outcome {
    Outcome::Transient {
        reason: reasons::KUBE_ERROR,
        message: e.to_string(),
    }
}

/// One event per transition: Promoted, Blocked, the failure's reason, RolledBack.
async fn events(ctx: &Context, promo: &Promotion, old: &PromotionStatus, new: &PromotionStatus) {
    // NB: waiting, the Ready condition names the digest and whether an approval is stale:
    // ApprovalPending → ApprovalStale keeps the phase and the digest (issue #16).
    let waiting = |s: &PromotionStatus| {
        status::condition(&s.conditions, types::READY)
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    if old.phase == new.phase
        && status::condition(&old.conditions, types::BLOCKED).map(|c| &c.reason)
            == status::condition(&new.conditions, types::BLOCKED).map(|c| &c.reason)
        && (new.phase != Some(PromotionPhase::AwaitingApproval) || waiting(old) == waiting(new))
    {
        return;
    }
    match new.phase {
        Some(PromotionPhase::AwaitingApproval) => {
            // The message carries the digest to approve.
            if let Some(c) = status::condition(&new.conditions, types::READY)
                .filter(|c| approve::WAITING.contains(&c.reason.as_str()))
            {
                let stale = c.reason == reasons::APPROVAL_STALE;
                ctx.event(promo, stale, &c.reason, "Review", c.message.clone())
                    .await;
            }
        }
        Some(PromotionPhase::Succeeded) => {
            let msg = status::condition(&new.conditions, types::PROMOTED)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            ctx.event(promo, false, reasons::PROMOTED, "Promote", msg)
                .await;
        }
        Some(PromotionPhase::Blocked) => {
            // NB: the event's reason is the guard's, as the condition's is: the recorder
            // folds events of one reason into a series and keeps the first note, so a
            // shared "Blocked" reason hid every guard after the first.
            if let Some(c) = status::condition(&new.conditions, types::BLOCKED) {
                ctx.event(promo, true, &c.reason, "Promote", c.message.clone())
                    .await;
            }
        }
        Some(PromotionPhase::Failed | PromotionPhase::RolledBack) => {
            if let Some(c) = status::condition(&new.conditions, types::READY) {
                ctx.event(promo, true, &c.reason, "Promote", c.message.clone())
                    .await;
            }
            if let Some(c) = status::condition(&new.conditions, types::ROLLED_BACK)
                .filter(|c| c.status == "True")
            {
                ctx.event(
                    promo,
                    true,
                    reasons::ROLLED_BACK,
                    "Revert",
                    c.message.clone(),
                )
                .await;
            }
        }
        _ => {}
    }
}

/// Promotions that name `env` as source or target.
pub fn promotions_for_environment(
    promotions: &[Arc<Promotion>],
    env: &Environment,
) -> Vec<ObjectRef<Promotion>> {
    let ns = env.namespace();
    let name = env.name_any();
    promotions
        .iter()
        .filter(|p| {
            p.namespace() == ns
                && (p.spec.to.environment == name
                    || p.spec.from.as_ref().and_then(|f| f.environment.as_deref())
                        == Some(name.as_str()))
        })
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}
