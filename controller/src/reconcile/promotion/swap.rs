//! Swapping: the staged deployment (or, for Environments sharing a database, the source's
//! sets) goes live in one transaction, is verified against live, and is swapped back when
//! that fails; then the Promotion succeeds. Also `rollback: true`, which swaps the newest
//! retained set back in and rebuilds nothing.

use std::time::Instant;

use tracing::info;

use super::{Plan, Run, ms};
use crate::api::conditions::{reasons, types};
use crate::api::environment::Environment;
use crate::api::promotion::{PromotionPhase, PromotionStatus};
use crate::engine::bluegreen::{Error as BgError, PromoteOptions, StageReport, SwapReport};
use crate::project::objects::Objects;
use crate::reconcile::bluegreen;
use crate::reconcile::database::connect;
use crate::reconcile::fetch::{self, Fetched};
use crate::reconcile::status::{self, Outcome};

/// What a promotion swaps in.
enum Incoming {
    /// A deployment this promotion staged.
    Deployment(String),
    /// What the source's layers serve, in the same database (their schema suffix).
    Layers(String),
}

/// Swaps in what was staged (or repoints the layers); `None` when nothing changed. A
/// verify failure after the swap swaps back and ends the promotion RolledBack.
pub(super) async fn swap_in(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    plan: &Plan,
    staged: Option<StageReport>,
) -> Result<Option<SwapReport>, Outcome> {
    let started = Instant::now();
    let incoming = match (plan.shared_from.clone(), staged.filter(|r| !r.up_to_date)) {
        (Some(from), _) => Incoming::Layers(from),
        (None, Some(report)) => {
            new.deployment = Some(report.deployment.clone());
            Incoming::Deployment(report.deployment)
        }
        (None, None) => return Ok(None),
    };
    let doing = match &incoming {
        Incoming::Deployment(id) => format!("swapping in deployment {id}"),
        Incoming::Layers(_) => "repointing the layers at the source's sets".into(),
    };
    run.enter(new, PromotionPhase::Swapping, doing).await;
    let bg = bluegreen::engine(run.ctx, &plan.target, &plan.engine);
    let (project, objects) = (&plan.fetched.project, &plan.objects);
    let result = match incoming {
        Incoming::Deployment(id) => {
            let options = PromoteOptions {
                deployment: Some(id),
                ..plan.options.clone()
            };
            bg.promote(project, objects, &options).await
        }
        Incoming::Layers(from) => {
            bg.promote_from(project, objects, &from, &plan.options)
                .await
        }
    };
    match result {
        Ok(swap) if swap.live.is_empty() => Ok(None),
        Ok(swap) => {
            new.deployment = Some(swap.deployment.clone());
            Ok(Some(swap))
        }
        Err(BgError::RolledBack { restored, failure }) => {
            run.count("rolled back");
            let message = format!(
                "verify failed after the swap; deployment {restored} is live again: {}",
                fetch::relative(&failure.to_string(), &plan.fetched.dir)
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
            Err(Outcome::Terminal {
                reason: reasons::VERIFY_FAILED,
                message,
            })
        }
        Err(error) => Err(run.bg_failed(new, types::PROMOTED, &error, &plan.fetched)),
    }
}

/// The promotion succeeded: Promoted with what moved, the phase, the timings.
pub(super) async fn succeed(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    plan: &Plan,
    swap: Option<SwapReport>,
    acting: Instant,
    swapping: Instant,
) -> Outcome {
    run.count("succeeded");
    let last = plan
        .engine
        .status(&plan.fetched.project)
        .await
        .ok()
        .and_then(|s| s.last_change.map(|c| c.name));
    new.change = last;
    new.completed_at = Some(status::now().0.to_string());
    new.duration_ms = Some(ms(acting) as i64);
    new.phase = Some(PromotionPhase::Succeeded);
    status::remove_condition(&mut new.conditions, types::ROLLED_BACK);
    let (wanted, target_name, deployed) =
        (&plan.wanted, &run.promo.spec.to.environment, plan.deployed);
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
    info!(revision = %wanted, target = %target_name, changes = deployed, "Promoted");
    run.done(new, types::PROMOTED, true, reason, &message, ms(swapping));
    Outcome::Ready {
        reason: reasons::PROMOTED,
        message,
    }
}

/// `rollback: true`: the newest retained set swapped back in, nothing rebuilt.
pub(super) async fn rollback(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    target: &Environment,
    fetched: &Fetched,
    objects: &Objects,
    started: Instant,
) -> Outcome {
    let engine = match connect(run.ctx, target).await {
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
