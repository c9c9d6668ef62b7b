//! Reconciles `Promotion`: checks the guards, works out what would change, then deploys
//! the source's revision into the target Environment's database, stages its blue-green
//! schemas, verifies them and swaps them in (or, with `rollback: true`, swaps the newest
//! retained set back). Each step is a condition with its reason and duration; the phase
//! says where it is.
//!
//! One-shot: once Succeeded, Failed or RolledBack, a Promotion does nothing more until its
//! spec changes or `switchyard.dev/requestedAt` asks again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{info, instrument, warn};

use super::status::{self, Outcome, apply_status, mark_progressing, summarize};
use super::{Context, Error, Result, Stores, bluegreen, database, fetch, requested_at};
use crate::api::FINALIZER;
use crate::api::conditions::{reasons, types};
use crate::api::environment::Environment;
use crate::api::promotion::{Promotion, PromotionPhase, PromotionStatus};
use crate::engine::bluegreen::guards::GuardInput;
use crate::engine::bluegreen::{Error as BgError, PromoteOptions, StageOptions, StageStep};

/// The kind's name, for metrics and logs.
pub const KIND: &str = "Promotion";

/// What the guards look at.
#[derive(Clone, Debug, Default)]
pub struct Input<'a> {
    /// The source Environment, when `from.environment` is set and it exists.
    pub source: Option<&'a Environment>,
    /// True when `from.environment` is set.
    pub from_environment: bool,
    /// The source Environment's name, when set.
    pub source_name: Option<&'a str>,
    /// The target Environment, when it exists.
    pub target: Option<&'a Environment>,
    /// The target's name.
    pub target_name: &'a str,
    /// The project's newest valid revision, when known.
    pub project_revision: Option<&'a str>,
}

/// A guard: `Some((reason, message))` refuses the promotion.
pub type Guard = fn(&Input) -> Option<(&'static str, String)>;

fn source_revision(source: &Environment) -> Option<&str> {
    source
        .status
        .as_ref()
        .and_then(|st| st.last_applied_revision.as_deref())
}

/// The guards that need only the Kubernetes objects, in order; the first refusal wins.
/// The engine adds those that need the target database ([`bg_guards::Chain`]): its lock,
/// a partial selection, stale upstreams.
pub const GUARDS: &[Guard] = &[
    |i| {
        i.target.is_none().then(|| {
            (
                reasons::GUARD_TARGET_NOT_FOUND,
                format!("target Environment {} not found", i.target_name),
            )
        })
    },
    |i| {
        (i.from_environment && i.source.is_none()).then(|| {
            (
                reasons::GUARD_SOURCE_NOT_FOUND,
                format!(
                    "source Environment {} not found",
                    i.source_name.unwrap_or_default()
                ),
            )
        })
    },
    |i| {
        (i.source_name == Some(i.target_name)).then(|| {
            (
                reasons::GUARD_PROJECT_MISMATCH,
                "source and target are the same Environment".to_string(),
            )
        })
    },
    |i| match (i.source, i.target) {
        (Some(s), Some(t)) if s.spec.project_ref != t.spec.project_ref => Some((
            reasons::GUARD_PROJECT_MISMATCH,
            format!(
                "source deploys DatabaseProject {} but target deploys {}",
                s.spec.project_ref.name, t.spec.project_ref.name
            ),
        )),
        _ => None,
    },
    |i| {
        i.target
            .and_then(|t| t.status.as_ref().and_then(|st| st.locked_by.clone()))
            .map(|holder| {
                (
                    reasons::GUARD_TARGET_LOCKED,
                    format!("target Environment {} is locked by {holder}", i.target_name),
                )
            })
    },
    |i| {
        i.target.filter(|t| t.spec.suspend).map(|_| {
            (
                reasons::GUARD_TARGET_SUSPENDED,
                format!(
                    "target Environment {} is suspended (detached)",
                    i.target_name
                ),
            )
        })
    },
    |i| {
        i.source
            .filter(|s| {
                source_revision(s).is_none()
                    || !s
                        .status
                        .as_ref()
                        .is_some_and(|st| status::is_true(&st.conditions, types::READY))
            })
            .map(|s| {
                let why = match source_revision(s) {
                    None => "has deployed nothing yet",
                    Some(_) => "is not Ready at its revision",
                };
                (
                    reasons::GUARD_SOURCE_NOT_FINALIZED,
                    format!("source Environment {} {why}", s.name_any()),
                )
            })
    },
    |i| match (i.source.and_then(source_revision), i.project_revision) {
        (Some(have), Some(newest)) if have != newest => Some((
            reasons::GUARD_SOURCE_STALE,
            format!(
                "source Environment {} holds {have} but the project is at {newest}; let it catch up first",
                i.source_name.unwrap_or_default()
            ),
        )),
        _ => None,
    },
];

/// Runs the guards; the first refusal wins.
pub fn check(input: &Input) -> Option<(&'static str, String)> {
    GUARDS.iter().find_map(|guard| guard(input))
}

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
        fetched: &fetch::Fetched,
    ) -> Outcome {
        match (error, bluegreen::outcome(error, fetched)) {
            (BgError::Blocked { blocked }, _) => {
                self.block(new, blocked.reason, blocked.message.clone())
            }
            (_, Outcome::Terminal { reason, message }) => self.fail(new, step, reason, message),
            (_, other) => other,
        }
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

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

async fn steps(run: &Run<'_>, new: &mut PromotionStatus) -> Outcome {
    let promo = run.promo;
    let ctx = run.ctx;
    let ns = promo.namespace().unwrap_or_default();
    let started = Instant::now();
    // A Blocked promotion re-checks its guards whenever its Environments change; showing
    // Validating each time would flap its phase for watchers.
    if new.phase != Some(PromotionPhase::Blocked) {
        run.enter(
            new,
            PromotionPhase::Validating,
            "checking the guards".into(),
        )
        .await;
    }

    // Validating: the guards on the Kubernetes objects.
    let envs: Api<Environment> = Api::namespaced(ctx.client.clone(), &ns);
    let target_name = promo.spec.to.environment.as_str();
    let source_name = promo
        .spec
        .from
        .as_ref()
        .and_then(|f| f.environment.as_deref());
    let target = match envs.get_opt(target_name).await {
        Ok(t) => t,
        Err(e) => return kube_failed(e),
    };
    let source = match source_name {
        Some(s) => match envs.get_opt(s).await {
            Ok(e) => e,
            Err(e) => return kube_failed(e),
        },
        None => None,
    };
    let dp = target
        .as_ref()
        .and_then(|t| Stores::get(&ctx.stores.projects, &ns, &t.spec.project_ref.name));
    let input = Input {
        source: source.as_ref(),
        from_environment: source_name.is_some(),
        source_name,
        target: target.as_ref(),
        target_name,
        project_revision: dp
            .as_ref()
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.revision.as_deref()),
    };
    if let Some((reason, message)) = check(&input) {
        return run.block(new, reason, message);
    }
    status::remove_condition(&mut new.conditions, types::BLOCKED);
    let (Some(target), Some(dp)) = (target, dp) else {
        return Outcome::Transient {
            reason: reasons::NOT_FOUND,
            message: format!("the DatabaseProject of Environment {target_name} is not found"),
        };
    };
    let mut fetched = match fetch::fetch(ctx, &dp, fetch::Want::Reported).await {
        Ok(f) => f,
        Err((outcome, _)) => return outcome,
    };
    let objects = match bluegreen::objects(&fetched) {
        Ok(o) => o,
        Err(outcome) => return outcome,
    };
    if promo.spec.rollback {
        return rollback(run, new, &target, &fetched, &objects, started).await;
    }

    // The revision to promote, and how far.
    let (wanted, to) = match (
        &source,
        promo.spec.from.as_ref().and_then(|f| f.revision.clone()),
    ) {
        (Some(s), _) => {
            let st = s.status.clone().unwrap_or_default();
            (
                st.last_applied_revision.unwrap_or_default(),
                st.last_change_id,
            )
        }
        (None, Some(rev)) => (rev, None),
        (None, None) => {
            return run.fail(
                new,
                types::VALIDATED,
                reasons::GUARD_SOURCE_NOT_FOUND,
                "from names nothing to promote".into(),
            );
        }
    };
    if fetched.revision != wanted {
        // NB: git sources keep history: an earlier revision is fetched at its commit.
        fetched = match fetch::fetch(ctx, &dp, fetch::Want::Exact(&wanted)).await {
            Ok(f) => f,
            Err((outcome, _)) => return outcome,
        };
    }
    if fetched.revision != wanted {
        return run.block(
            new,
            reasons::GUARD_REVISION_UNAVAILABLE,
            format!(
                "revision {wanted} is no longer the project's content (now {}); only git sources keep history, so a ConfigMap or Flux source can promote only its current revision",
                fetched.revision
            ),
        );
    }
    new.revision = Some(wanted.clone());

    // Validating: what would change, and the guards on the target database.
    let engine = match database::connect(ctx, &target).await {
        Ok(e) => e,
        Err(outcome) => return outcome,
    };
    // As the target would deploy it: workflow files only where it allows rework.
    let state = match engine
        .status_with(&fetched.project, target.spec.allow_rework)
        .await
    {
        Ok(s) => s,
        Err(e) => return database::engine_outcome(&e, &fetched, &wanted).0,
    };
    let changes = pending_up_to(&fetched, &state.pending, to.as_deref());
    // Environments serving layers in one database: repoint, rebuild nothing.
    let sharing = source.as_ref().map_or(bluegreen::Sharing::Separate, |s| {
        bluegreen::sharing(ctx, s, &target)
    });
    let shared_from = match sharing {
        bluegreen::Sharing::Clash if !objects.schemas.is_empty() => {
            return run.block(
                new,
                reasons::GUARD_SHARED_DATABASE,
                format!(
                    "{} and {target_name} use one database without distinct schema suffixes, so their blue-green schemas are the same schemas; give each a schemaSuffix",
                    source_name.unwrap_or_default()
                ),
            );
        }
        bluegreen::Sharing::Layers(from) => Some(from),
        _ => None,
    };
    let options = PromoteOptions {
        select: promo.spec.select.clone(),
        include_stale_upstreams: promo.spec.include_stale_upstreams,
        allow_partial: promo.spec.allow_partial_promotion,
        suspended: target.spec.suspend,
        caller: GuardInput {
            reworked: state
                .refused
                .as_ref()
                .filter(|r| r.reason() == reasons::REWORK_NOT_ALLOWED)
                .map(|r| fetch::relative(&r.to_string(), &fetched.dir)),
            allow_rework: target.spec.allow_rework,
            ..GuardInput::default()
        },
        ..PromoteOptions::default()
    };
    {
        let bg = bluegreen::engine(ctx, &target, &engine);
        let schemas = match bg.diff_project(&fetched.project, &objects).await {
            Ok(d) => d,
            Err(e) => return run.bg_failed(new, types::VALIDATED, &e, &fetched),
        };
        new.diff = Some(bluegreen::diff(changes.clone(), schemas));
        let preflight = bg
            .preflight(
                &fetched.project,
                &objects,
                &options,
                &promo.spec.redeploy_schemas,
                shared_from.as_deref(),
            )
            .await;
        match preflight {
            Ok(Some(blocked)) => return run.block(new, blocked.reason, blocked.message),
            Ok(None) => {}
            Err(e) => return run.bg_failed(new, types::VALIDATED, &e, &fetched),
        }
    }
    run.done(
        new,
        types::VALIDATED,
        true,
        reasons::SUCCEEDED,
        &format!("guards passed; promoting {wanted} to {target_name}"),
        ms(started),
    );

    // Staging: the revision's changes first (objects may use new tables), then objects.
    let started = Instant::now();
    let acting = started;
    run.enter(
        new,
        PromotionPhase::Staging,
        format!("deploying {} changes of {wanted}", changes.len()),
    )
    .await;
    let mut engine = engine;
    let mut deployed = 0;
    if !changes.is_empty() {
        let mut base = new.clone();
        summarize(
            &mut base.conditions,
            &Outcome::Progressing {
                reason: reasons::DEPLOYING,
                message: format!("promoting {wanted} to {target_name}"),
            },
            run.generation,
            &run.now,
        );
        let options = database::deploy_options(&target, &wanted, to);
        let (e, project, result) = database::deploy_with_progress(
            engine,
            fetched.project,
            options,
            run.api,
            &run.name,
            base,
            |s: &mut PromotionStatus, p| {
                s.conditions
                    .iter_mut()
                    .filter(|c| c.type_ == types::RECONCILING)
                    .for_each(|c| c.message = p.clone());
            },
        )
        .await;
        engine = e;
        fetched.project = project;
        match result {
            Ok(report) => {
                deployed = report.deployed.len();
                ctx.metrics.changes_applied.inc_by(deployed as u64);
            }
            Err(error) => {
                run.count("failed");
                let (outcome, failure) = database::engine_outcome(&error, &fetched, &wanted);
                warn!(revision = %wanted, target = target_name, error = %fetch::relative(&error.to_string(), &fetched.dir), "Promotion failed");
                if let Some(reverted) = failure.map(|f| f.reverted).filter(|r| !r.is_empty()) {
                    run.set(
                        new,
                        types::ROLLED_BACK,
                        true,
                        reasons::ROLLED_BACK,
                        &format!("reverted {}", reverted.join(", ")),
                    );
                }
                return match outcome {
                    Outcome::Terminal { reason, message } => {
                        let step = if reason == reasons::VERIFY_FAILED {
                            types::VERIFIED
                        } else {
                            types::STAGED
                        };
                        run.fail(new, step, reason, message)
                    }
                    other => other,
                };
            }
        }
    }
    new.changes_applied = Some(deployed as i64);
    let bg = bluegreen::engine(ctx, &target, &engine);
    let staged = if objects.schemas.is_empty() || shared_from.is_some() {
        None
    } else {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // The options own the sender: the watcher below ends when the stage does.
        let (bg, project, objects) = (&bg, &fetched.project, &objects);
        let stage = async move {
            let options = StageOptions {
                redeploy: promo.spec.redeploy_schemas.clone(),
                progress: Some(tx),
                ..StageOptions::default()
            };
            bg.stage(project, objects, &options).await
        };
        // Show Verifying while the verify SQL runs.
        let mut shown = new.clone();
        let watch = async {
            while let Some(step) = rx.recv().await {
                if step == StageStep::Verifying {
                    run.enter(
                        &mut shown,
                        PromotionPhase::Verifying,
                        "running the verify SQL against the staging schemas".into(),
                    )
                    .await;
                }
            }
        };
        let (result, ()) = tokio::join!(stage, watch);
        match result {
            Ok(report) => Some(report),
            Err(BgError::StageFailed {
                failure,
                verifying: true,
                ..
            }) => {
                run.count("failed");
                run.done(
                    new,
                    types::STAGED,
                    true,
                    reasons::SUCCEEDED,
                    "staging built",
                    ms(started),
                );
                let message = fetch::relative(&failure.to_string(), &fetched.dir);
                return run.fail(new, types::VERIFIED, reasons::VERIFY_FAILED, message);
            }
            Err(error) => {
                run.count("failed");
                return run.bg_failed(new, types::STAGED, &error, &fetched);
            }
        }
    };
    let message = match (&shared_from, &staged) {
        (Some(from), _) => format!(
            "deployed {deployed} changes; nothing to build: the source's verified sets are in this database (schema suffix {from:?})"
        ),
        (None, None) => {
            format!("deployed {deployed} changes; the project has no blue-green schemas")
        }
        (None, Some(r)) if r.up_to_date => {
            format!("deployed {deployed} changes; every blue-green schema already matches {wanted}")
        }
        (None, Some(r)) => format!(
            "deployed {deployed} changes; staged deployment {} ({} objects in {})",
            r.deployment,
            r.objects,
            r.schemas.values().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    let build_ms = staged.as_ref().map_or(ms(started), |r| r.build_ms);
    run.done(
        new,
        types::STAGED,
        true,
        reasons::SUCCEEDED,
        &message,
        build_ms,
    );
    let verify_ms = staged.as_ref().map_or(0, |r| r.verify_ms);
    let verified = match shared_from {
        Some(_) => "verified in the source; verified again once repointed",
        None => "verify passed",
    };
    run.done(
        new,
        types::VERIFIED,
        true,
        reasons::SUCCEEDED,
        verified,
        verify_ms,
    );

    // Swapping.
    let started = Instant::now();
    let incoming = match (shared_from, staged.filter(|r| !r.up_to_date)) {
        (Some(from), _) => Some(Incoming::Layers(from)),
        (None, Some(report)) => {
            new.deployment = Some(report.deployment.clone());
            Some(Incoming::Deployment(report.deployment))
        }
        (None, None) => None,
    };
    let swap = match incoming {
        None => None,
        Some(incoming) => {
            let doing = match &incoming {
                Incoming::Deployment(id) => format!("swapping in deployment {id}"),
                Incoming::Layers(_) => "repointing the layers at the source's sets".into(),
            };
            run.enter(new, PromotionPhase::Swapping, doing).await;
            let result = match incoming {
                Incoming::Deployment(id) => {
                    let options = PromoteOptions {
                        deployment: Some(id),
                        ..options
                    };
                    bg.promote(&fetched.project, &objects, &options).await
                }
                Incoming::Layers(from) => {
                    bg.promote_from(&fetched.project, &objects, &from, &options)
                        .await
                }
            };
            match result {
                Ok(swap) if swap.live.is_empty() => None,
                Ok(swap) => {
                    new.deployment = Some(swap.deployment.clone());
                    Some(swap)
                }
                Err(BgError::RolledBack { restored, failure }) => {
                    run.count("rolled back");
                    let message = format!(
                        "verify failed after the swap; deployment {restored} is live again: {}",
                        fetch::relative(&failure.to_string(), &fetched.dir)
                    );
                    new.phase = Some(PromotionPhase::RolledBack);
                    run.set(
                        new,
                        types::ROLLED_BACK,
                        true,
                        reasons::VERIFY_FAILED,
                        &message,
                    );
                    run.done(
                        new,
                        types::PROMOTED,
                        false,
                        reasons::VERIFY_FAILED,
                        &message,
                        ms(started),
                    );
                    return Outcome::Terminal {
                        reason: reasons::VERIFY_FAILED,
                        message,
                    };
                }
                Err(error) => return run.bg_failed(new, types::PROMOTED, &error, &fetched),
            }
        }
    };
    run.count("succeeded");
    let last = engine
        .status(&fetched.project)
        .await
        .ok()
        .and_then(|s| s.last_change.map(|c| c.name));
    new.change = last;
    new.completed_at = Some(status::now().0.to_string());
    new.duration_ms = Some(ms(acting) as i64);
    new.phase = Some(PromotionPhase::Succeeded);
    status::remove_condition(&mut new.conditions, types::ROLLED_BACK);
    let (reason, message) = match &swap {
        Some(s) => (
            reasons::SWAP_COMPLETED,
            format!(
                "promoted {wanted} to {target_name}: {deployed} changes, swapped in deployment {} ({} ms, {} attempt(s))",
                s.deployment, s.swap_ms, s.attempts
            ),
        ),
        None => (
            reasons::PROMOTED,
            format!("promoted {wanted} to {target_name}: {deployed} changes"),
        ),
    };
    info!(revision = %wanted, target = target_name, changes = deployed, "Promoted");
    run.done(new, types::PROMOTED, true, reason, &message, ms(started));
    Outcome::Ready {
        reason: reasons::PROMOTED,
        message,
    }
}

/// What a promotion swaps in.
enum Incoming {
    /// A deployment this promotion staged.
    Deployment(String),
    /// What the source's layers serve, in the same database (their schema suffix).
    Layers(String),
}

/// `rollback: true`: the newest retained set swapped back in, nothing rebuilt.
async fn rollback(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    target: &Environment,
    fetched: &fetch::Fetched,
    objects: &crate::project::objects::Objects,
    started: Instant,
) -> Outcome {
    let engine = match database::connect(run.ctx, target).await {
        Ok(e) => e,
        Err(outcome) => return outcome,
    };
    let target_name = run.promo.spec.to.environment.as_str();
    run.done(
        new,
        types::VALIDATED,
        true,
        reasons::SUCCEEDED,
        &format!("guards passed; rolling {target_name} back"),
        ms(started),
    );
    let started = Instant::now();
    run.enter(
        new,
        PromotionPhase::Swapping,
        "swapping the newest retained set back in".into(),
    )
    .await;
    let bg = bluegreen::engine(run.ctx, target, &engine);
    match bg.rollback(&fetched.project, objects, false).await {
        Ok(report) => {
            run.count("rolled back on request");
            new.deployment = Some(report.deployment.clone());
            new.phase = Some(PromotionPhase::Succeeded);
            new.completed_at = Some(status::now().0.to_string());
            let message = format!(
                "rolled {target_name} back to deployment {} ({} ms, nothing rebuilt)",
                report.deployment, report.swap_ms
            );
            info!(target = target_name, deployment = %report.deployment, "Rolled back");
            run.done(
                new,
                types::PROMOTED,
                true,
                reasons::ROLLED_BACK,
                &message,
                ms(started),
            );
            Outcome::Ready {
                reason: reasons::ROLLED_BACK,
                message,
            }
        }
        Err(error) => run.bg_failed(new, types::PROMOTED, &error, fetched),
    }
}

/// The pending changes up to and including the change with id `to` (all when `None`).
fn pending_up_to(fetched: &fetch::Fetched, pending: &[String], to: Option<&str>) -> Vec<String> {
    let Some(last) = to.and_then(|id| {
        fetched
            .project
            .plan
            .changes
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
    }) else {
        return pending.to_vec();
    };
    match pending.iter().position(|c| *c == last) {
        Some(i) => pending[..=i].to_vec(),
        None => Vec::new(),
    }
}

fn kube_failed(e: kube::Error) -> Outcome {
    Outcome::Transient {
        reason: reasons::KUBE_ERROR,
        message: e.to_string(),
    }
}

/// One event per transition: Promoted, Blocked, the failure's reason, RolledBack.
async fn events(ctx: &Context, promo: &Promotion, old: &PromotionStatus, new: &PromotionStatus) {
    if old.phase == new.phase
        && status::condition(&old.conditions, types::BLOCKED).map(|c| &c.reason)
            == status::condition(&new.conditions, types::BLOCKED).map(|c| &c.reason)
    {
        return;
    }
    match new.phase {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::env;

    #[test]
    fn guards_first_refusal_wins() {
        let ready_dev = env("dev").ready("cm:p@sha1:1", "c1").build();
        let prod = env("prod").build();
        let other_project = env("other").project("elsewhere").ready("r", "c").build();
        let unready = env("dev").build();
        let suspended = env("prod").suspended().build();
        let locked = env("prod").locked("someone").build();
        struct Case<'a> {
            name: &'static str,
            input: Input<'a>,
            want: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "ok",
                input: Input {
                    source: Some(&ready_dev),
                    from_environment: true,
                    source_name: Some("dev"),
                    target: Some(&prod),
                    target_name: "prod",
                    project_revision: Some("cm:p@sha1:1"),
                },
                want: None,
            },
            Case {
                name: "target missing",
                input: Input {
                    source: Some(&ready_dev),
                    from_environment: true,
                    source_name: Some("dev"),
                    target: None,
                    target_name: "prod",
                    project_revision: Some("cm:p@sha1:1"),
                },
                want: Some(reasons::GUARD_TARGET_NOT_FOUND),
            },
            Case {
                name: "source missing",
                input: Input {
                    source: None,
                    from_environment: true,
                    source_name: Some("dev"),
                    target: Some(&prod),
                    target_name: "prod",
                    project_revision: Some("cm:p@sha1:1"),
                },
                want: Some(reasons::GUARD_SOURCE_NOT_FOUND),
            },
            Case {
                name: "other project",
                input: Input {
                    source: Some(&other_project),
                    from_environment: true,
                    source_name: Some("other"),
                    target: Some(&prod),
                    target_name: "prod",
                    project_revision: Some("cm:p@sha1:1"),
                },
                want: Some(reasons::GUARD_PROJECT_MISMATCH),
            },
            Case {
                name: "target suspended",
                input: Input {
                    source: Some(&ready_dev),
                    from_environment: true,
                    source_name: Some("dev"),
                    target: Some(&suspended),
                    target_name: "prod",
                    project_revision: Some("cm:p@sha1:1"),
                },
                want: Some(reasons::GUARD_TARGET_SUSPENDED),
            },
            Case {
                name: "source not ready",
                input: Input {
                    source: Some(&unready),
                    from_environment: true,
                    source_name: Some("dev"),
                    target: Some(&prod),
                    target_name: "prod",
                    project_revision: Some("cm:p@sha1:1"),
                },
                want: Some(reasons::GUARD_SOURCE_NOT_FINALIZED),
            },
            Case {
                name: "source stale",
                input: Input {
                    source: Some(&ready_dev),
                    from_environment: true,
                    source_name: Some("dev"),
                    target: Some(&prod),
                    target_name: "prod",
                    project_revision: Some("cm:p@sha1:2"),
                },
                want: Some(reasons::GUARD_SOURCE_STALE),
            },
            Case {
                name: "target locked",
                input: Input {
                    source: Some(&ready_dev),
                    from_environment: true,
                    source_name: Some("dev"),
                    target: Some(&locked),
                    target_name: "prod",
                    project_revision: Some("cm:p@sha1:1"),
                },
                want: Some(reasons::GUARD_TARGET_LOCKED),
            },
            Case {
                name: "from a revision needs no source",
                input: Input {
                    source: None,
                    from_environment: false,
                    source_name: None,
                    target: Some(&prod),
                    target_name: "prod",
                    project_revision: Some("cm:p@sha1:1"),
                },
                want: None,
            },
        ];
        for case in cases {
            assert_eq!(
                check(&case.input).map(|(r, _)| r),
                case.want,
                "{}",
                case.name
            );
        }
    }
}
