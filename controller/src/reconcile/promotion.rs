//! Reconciles `Promotion`: checks the guards, then deploys the source's revision into the
//! target Environment's database with the engine. Staging and the pointer swap arrive with
//! issue #5; until then a promotion is a deploy up to the source's last change.
//!
//! One-shot: once Succeeded, a Promotion does nothing more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{info, instrument, warn};

use super::status::{self, Outcome, apply_status, mark_progressing, summarize};
use super::{Context, Error, Result, Stores, database_project, environment, requested_at};
use crate::api::FINALIZER;
use crate::api::conditions::{reasons, types};
use crate::api::environment::Environment;
use crate::api::promotion::{Promotion, PromotionPhase, PromotionStatus};

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
}

/// A guard: `Some((reason, message))` refuses the promotion.
pub type Guard = fn(&Input) -> Option<(&'static str, String)>;

/// The guards, in order; the first refusal wins.
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
        i.target.filter(|t| t.spec.suspend).map(|_| {
            (
                reasons::GUARD_TARGET_SUSPENDED,
                format!("target Environment {} is suspended", i.target_name),
            )
        })
    },
    |i| {
        i.source
            .filter(|s| {
                !s.status
                    .as_ref()
                    .is_some_and(|st| status::is_true(&st.conditions, types::READY))
            })
            .map(|s| {
                (
                    reasons::GUARD_SOURCE_NOT_READY,
                    format!("source Environment {} is not Ready", s.name_any()),
                )
            })
    },
    |i| {
        i.source
            .filter(|s| {
                s.status
                    .as_ref()
                    .and_then(|st| st.last_applied_revision.as_ref())
                    .is_none()
            })
            .map(|s| {
                (
                    reasons::GUARD_SOURCE_EMPTY,
                    format!(
                        "source Environment {} has deployed nothing yet",
                        s.name_any()
                    ),
                )
            })
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
    // NB: a cached "Promoting" status is our own in-flight snapshot: the cache is behind our
    // final write. Read fresh so a finished promotion never runs twice.
    let fresh;
    let promo = if promo
        .status
        .as_ref()
        .is_some_and(|s| s.phase == Some(PromotionPhase::Promoting))
    {
        fresh = api.get(&name).await?;
        &fresh
    } else {
        promo
    };
    let ns = promo.namespace().unwrap_or_default();
    let now = status::now();
    let generation = promo.metadata.generation;
    let old = promo.status.clone().unwrap_or_default();
    let requested = requested_at(promo);
    let rerun = requested.is_some() && requested != old.last_handled_reconcile_at;
    // One-shot: a finished promotion (succeeded, or failed terminally) waits for a new
    // generation or a requestedAt; Environment events must not run it again.
    let finished = matches!(
        old.phase,
        Some(PromotionPhase::Succeeded | PromotionPhase::Failed)
    );
    if finished && old.observed_generation == generation && !rerun {
        return Ok(Action::await_change());
    }
    let mut new = old.clone();
    if mark_progressing(
        &mut new.conditions,
        old.observed_generation,
        generation,
        &now,
    ) {
        new.observed_generation = generation;
        new.phase = Some(PromotionPhase::Pending);
        apply_status(api, &name, &new).await?;
    }
    let outcome = steps(promo, api, ctx, &ns, &name, &mut new, generation, &now).await;
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

#[allow(clippy::too_many_arguments)]
async fn steps(
    promo: &Promotion,
    api: &Api<Promotion>,
    ctx: &Context,
    ns: &str,
    name: &str,
    new: &mut PromotionStatus,
    generation: Option<i64>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Outcome {
    let envs: Api<Environment> = Api::namespaced(ctx.client.clone(), ns);
    let target_name = promo.spec.to.environment.as_str();
    let target = match envs.get_opt(target_name).await {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Transient {
                reason: reasons::KUBE_ERROR,
                message: e.to_string(),
            };
        }
    };
    let source = match &promo.spec.from.environment {
        Some(s) => match envs.get_opt(s).await {
            Ok(e) => e,
            Err(e) => {
                return Outcome::Transient {
                    reason: reasons::KUBE_ERROR,
                    message: e.to_string(),
                };
            }
        },
        None => None,
    };
    let input = Input {
        source: source.as_ref(),
        from_environment: promo.spec.from.environment.is_some(),
        source_name: promo.spec.from.environment.as_deref(),
        target: target.as_ref(),
        target_name,
    };
    if let Some((reason, message)) = check(&input) {
        new.phase = Some(PromotionPhase::Blocked);
        status::set_condition(
            &mut new.conditions,
            types::BLOCKED,
            true,
            reason,
            &message,
            generation,
            now,
        );
        status::set_condition(
            &mut new.conditions,
            types::VALIDATED,
            false,
            reason,
            &message,
            generation,
            now,
        );
        // Guards wait on the Environments, which we watch: transient, not stalled.
        return Outcome::Transient { reason, message };
    }
    status::remove_condition(&mut new.conditions, types::BLOCKED);
    let Some(target) = target else {
        return Outcome::Transient {
            reason: reasons::GUARD_TARGET_NOT_FOUND,
            message: String::new(),
        };
    };

    // The revision to promote, and how far.
    let (wanted, to) = match (&source, &promo.spec.from.revision) {
        (Some(s), _) => {
            let st = s.status.clone().unwrap_or_default();
            (
                st.last_applied_revision.unwrap_or_default(),
                st.last_change_id,
            )
        }
        (None, Some(rev)) => (rev.clone(), None),
        (None, None) => {
            return Outcome::Terminal {
                reason: reasons::GUARD_SOURCE_NOT_FOUND,
                message: "from names nothing".into(),
            };
        }
    };
    let Some(dp) = Stores::get(&ctx.stores.projects, ns, &target.spec.project_ref.name) else {
        return Outcome::Transient {
            reason: reasons::NOT_FOUND,
            message: format!("DatabaseProject {} not found", target.spec.project_ref.name),
        };
    };
    let mut fetched = match database_project::fetch(ctx, &dp, false).await {
        Ok(f) => f,
        Err((outcome, _)) => return outcome,
    };
    if fetched.revision != wanted {
        let message = format!(
            "revision {wanted} is no longer the project's content (now {}); until git sources keep history (#6) only the current revision can be promoted",
            fetched.revision
        );
        new.phase = Some(PromotionPhase::Blocked);
        status::set_condition(
            &mut new.conditions,
            types::BLOCKED,
            true,
            reasons::GUARD_REVISION_UNAVAILABLE,
            &message,
            generation,
            now,
        );
        return Outcome::Transient {
            reason: reasons::GUARD_REVISION_UNAVAILABLE,
            message,
        };
    }
    status::set_condition(
        &mut new.conditions,
        types::VALIDATED,
        true,
        reasons::SUCCEEDED,
        &format!("guards passed; promoting {wanted} to {target_name}"),
        generation,
        now,
    );
    new.revision = Some(wanted.clone());
    new.phase = Some(PromotionPhase::Promoting);

    let engine = match environment::connect(ctx, &target).await {
        Ok(e) => e,
        Err(outcome) => return outcome,
    };
    let mut base = new.clone();
    summarize(
        &mut base.conditions,
        &Outcome::Progressing {
            reason: reasons::DEPLOYING,
            message: format!("promoting {wanted} to {target_name}"),
        },
        generation,
        now,
    );
    let _ = apply_status(api, name, &base).await;
    let options = environment::deploy_options(&target, &wanted, to);
    let started = Instant::now();
    let (engine, project, result) = environment::deploy_with_progress(
        engine,
        fetched.project,
        options,
        api,
        name,
        base,
        |s: &mut PromotionStatus, p| {
            s.conditions
                .iter_mut()
                .filter(|c| c.type_ == types::RECONCILING)
                .for_each(|c| c.message = p.clone());
        },
    )
    .await;
    fetched.project = project;
    new.duration_ms = Some(started.elapsed().as_millis() as i64);
    new.completed_at = Some(status::now().0.to_string());
    match result {
        Ok(report) => {
            ctx.metrics
                .changes_applied
                .inc_by(report.deployed.len() as u64);
            ctx.metrics
                .promotions
                .get_or_create(&crate::metrics::ResultLabels {
                    result: "succeeded".into(),
                })
                .inc();
            let last = engine
                .status(&fetched.project)
                .await
                .ok()
                .and_then(|s| s.last_change.map(|c| c.name));
            info!(revision = %wanted, target = target_name, changes = report.deployed.len(), "Promoted");
            new.phase = Some(PromotionPhase::Succeeded);
            new.change = last;
            new.changes_applied = Some(report.deployed.len() as i64);
            status::remove_condition(&mut new.conditions, types::ROLLED_BACK);
            let message = format!(
                "promoted {wanted} to {target_name}: {} changes",
                report.deployed.len()
            );
            status::set_condition(
                &mut new.conditions,
                types::PROMOTED,
                true,
                reasons::PROMOTED,
                &message,
                generation,
                now,
            );
            Outcome::Ready {
                reason: reasons::PROMOTED,
                message,
            }
        }
        Err(error) => {
            ctx.metrics
                .promotions
                .get_or_create(&crate::metrics::ResultLabels {
                    result: "failed".into(),
                })
                .inc();
            let (outcome, failure) = environment::engine_outcome(&error, &fetched, &wanted);
            warn!(revision = %wanted, target = target_name, error = %database_project::relative(&error.to_string(), &fetched.dir), "Promotion failed");
            if let Outcome::Terminal { reason, message } = &outcome {
                new.phase = Some(PromotionPhase::Failed);
                status::set_condition(
                    &mut new.conditions,
                    types::PROMOTED,
                    false,
                    reason,
                    message,
                    generation,
                    now,
                );
            }
            if let Some(reverted) = failure.map(|f| f.reverted).filter(|r| !r.is_empty()) {
                status::set_condition(
                    &mut new.conditions,
                    types::ROLLED_BACK,
                    true,
                    reasons::ROLLED_BACK,
                    &format!("reverted {}", reverted.join(", ")),
                    generation,
                    now,
                );
            }
            outcome
        }
    }
}

/// One event per transition: Promoted, Blocked, DeployFailed.
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
            if let Some(c) = status::condition(&new.conditions, types::BLOCKED) {
                ctx.event(
                    promo,
                    true,
                    "Blocked",
                    "Promote",
                    format!("{}: {}", c.reason, c.message),
                )
                .await;
            }
        }
        Some(PromotionPhase::Failed) => {
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
                    || p.spec.from.environment.as_deref() == Some(name.as_str()))
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
                },
                want: Some(reasons::GUARD_SOURCE_NOT_READY),
            },
            Case {
                name: "target locked",
                input: Input {
                    source: Some(&ready_dev),
                    from_environment: true,
                    source_name: Some("dev"),
                    target: Some(&locked),
                    target_name: "prod",
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
