//! Reviewing: the plan and its digest go into status before anything changes; a target
//! that requires approval (or a Promotion that names an approved digest) waits until the
//! approval names exactly this plan, checked again under the database lock so that
//! nothing can move between the check and the swap. Waiting writes nothing into the
//! target.

use super::{Plan, Run};
use crate::api::conditions::reasons;
use crate::api::promotion::{PromotionPhase, PromotionStatus};
use crate::engine::review::{ReviewInput, ReviewPlan, review};
use crate::reconcile::bluegreen;
use crate::reconcile::database::engine_outcome;
use crate::reconcile::review::{self as approval, Gate};
use crate::reconcile::status::Outcome;

/// What the promotion will do, with its digest, for this target as it is now.
async fn compute(run: &Run<'_>, plan: &Plan) -> Result<ReviewPlan, Outcome> {
    let bg = bluegreen::engine(run.ctx, &plan.target, &plan.engine);
    let input = ReviewInput {
        project: &plan.fetched.project,
        objects: &plan.objects,
        revision: Some(&plan.wanted),
        to: plan.to.as_deref(),
        allow_rework: plan.target.spec.allow_rework,
    };
    review(&plan.engine, &bg, &input)
        .await
        .map_err(|e| approval::failed(&e, &plan.fetched, &plan.wanted))
}

/// The plan into `status.plan`; once the approval names it, the project's lock is taken,
/// the plan computed again under it and kept for the rest of the promotion, and the
/// approval recorded. Gives the plan back to act on, or the outcome to wait with
/// (`ApprovalPending`, `ApprovalStale`).
pub(super) async fn review_plan(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    mut plan: Plan,
) -> Result<Plan, Outcome> {
    let approved = run.promo.spec.approved_plan_digest.clone();
    let require = plan.target.spec.require_approval;
    let mut reviewed = compute(run, &plan).await?;
    let mut gate = approval::gate(require, approved.as_deref(), &reviewed.digest);
    let held = gate == Gate::Open && approved.is_some();
    if held {
        // NB: under the lock, what the digest covers cannot move until the swap is done.
        // Taken only for an approved plan: waiting, or with a stale approval, nothing is
        // written into the target, not even the registry or a lock record (issue #16).
        plan.engine
            .hold(&plan.fetched.project, "promote")
            .await
            .map_err(|e| engine_outcome(&e, &plan.fetched, &plan.wanted).0)?;
        reviewed = compute(run, &plan).await?;
        gate = approval::gate(require, approved.as_deref(), &reviewed.digest);
    }
    new.plan = Some(approval::publish(run.ctx, run.promo, &reviewed).await?);
    if let Some(waiting) = gate.outcome(
        &reviewed.digest,
        &approval::how_to_approve(run.promo, &reviewed.digest),
    ) {
        if held {
            plan.engine.release(&plan.fetched.project).await;
        }
        new.phase = Some(PromotionPhase::AwaitingApproval);
        return Err(waiting);
    }
    if held {
        let given = approval::approval(run.promo, &reviewed.digest);
        plan.engine
            .record_approval(
                &plan.fetched.project,
                Some(&plan.wanted),
                &reviewed.digest,
                given.approved_by.as_deref().unwrap_or("unknown"),
                given.approved_at.as_deref().unwrap_or("unknown"),
            )
            .await
            .map_err(|e| engine_outcome(&e, &plan.fetched, &plan.wanted).0)?;
        new.approval = Some(given);
    }
    Ok(plan)
}

/// The reasons a promotion waits for a person with.
pub(super) const WAITING: [&str; 2] = [reasons::APPROVAL_PENDING, reasons::APPROVAL_STALE];
