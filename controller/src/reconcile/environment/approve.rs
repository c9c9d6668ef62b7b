//! Reviewing an autoDeploy Environment's next deploy: with `requireApproval` (or an
//! `approvedPlanDigest`) the plan and its digest go into status and nothing is deployed
//! or swapped until the approval names exactly this plan, checked again under the
//! database lock. An approval opens one plan only: the next revision needs its own.

use super::decide::Decision;
use super::{Gathered, Scope};
use crate::api::environment::EnvironmentStatus;
use crate::engine::review::{ReviewInput, ReviewPlan, review};
use crate::reconcile::bluegreen;
use crate::reconcile::database::engine_outcome;
use crate::reconcile::review::{self as approval, Gate};
use crate::reconcile::status::Outcome;

/// `None` when the deploy may go ahead (holding the project's lock when it was
/// approved); else the outcome to wait with (`ApprovalPending`, `ApprovalStale`).
pub(super) async fn review_deploy(
    scope: &Scope<'_>,
    decision: &Decision,
    db: &mut Gathered,
    new: &mut EnvironmentStatus,
) -> Option<Outcome> {
    let spec = &scope.env.spec;
    let acts = spec.auto_deploy && matches!(decision, Decision::Deploy | Decision::UpToDate);
    if !acts || !(spec.require_approval || spec.approved_plan_digest.is_some()) {
        new.plan = None;
        return None;
    }
    let approved = spec.approved_plan_digest.clone();
    gate(scope, db, new, approved.as_deref()).await.err()
}

async fn gate(
    scope: &Scope<'_>,
    db: &mut Gathered,
    new: &mut EnvironmentStatus,
    approved: Option<&str>,
) -> Result<(), Outcome> {
    let failed =
        |e: &crate::engine::Error, db: &Gathered| engine_outcome(e, &db.fetched, &db.revision).0;
    let mut plan = compute(scope, db).await?;
    let mut gate = gate_for(scope, new, approved, &plan);
    let held = gate == Gate::Open && approved.is_some() && !plan.is_empty();
    if held {
        // NB: under the lock, what the digest covers cannot move until the deploy is done.
        // Taken only for an approved plan: up to date, waiting, or with a stale approval,
        // nothing is written into the database, and status names no lock of its own
        // (issue #16).
        if let Err(e) = db.engine.hold(&db.fetched.project, "deploy").await {
            return Err(failed(&e, db));
        }
        plan = compute(scope, db).await?;
        gate = gate_for(scope, new, approved, &plan);
    }
    if plan.is_empty() {
        if held {
            db.engine.release(&db.fetched.project).await;
        }
        new.plan = None;
        return Ok(());
    }
    new.plan = Some(approval::publish(scope.ctx, scope.env, &plan).await?);
    if let Some(waiting) = gate.outcome(
        &plan.digest,
        &approval::how_to_approve(scope.env, &plan.digest),
    ) {
        if held {
            db.engine.release(&db.fetched.project).await;
        }
        return Err(waiting);
    }
    if held {
        let given = approval::approval(scope.env, &plan.digest);
        let recorded = db
            .engine
            .record_approval(
                &db.fetched.project,
                Some(&db.revision),
                &plan.digest,
                given.approved_by.as_deref().unwrap_or("unknown"),
                given.approved_at.as_deref().unwrap_or("unknown"),
            )
            .await;
        recorded.map_err(|e| failed(&e, db))?;
        new.approval = Some(given);
    }
    Ok(())
}

/// Whether `plan` may run: an approval must name exactly it.
fn gate_for(
    scope: &Scope<'_>,
    new: &EnvironmentStatus,
    approved: Option<&str>,
    plan: &ReviewPlan,
) -> Gate {
    let gate = approval::gate(scope.env.spec.require_approval, approved, &plan.digest);
    // NB: the approval the last deploy ran with cannot match a later plan (the digest
    // covers the registry head); the next plan simply waits for its own.
    let used = new.approval.as_ref().map(|a| a.digest.as_str());
    match gate {
        Gate::Stale { approved } if Some(approved.as_str()) == used => Gate::Pending,
        gate => gate,
    }
}

/// What deploying this revision (and swapping its blue-green schemas) would do.
async fn compute(scope: &Scope<'_>, db: &Gathered) -> Result<ReviewPlan, Outcome> {
    let objects = bluegreen::objects(&db.fetched)?;
    let bg = bluegreen::engine(scope.ctx, scope.env, &db.engine);
    let input = ReviewInput {
        project: &db.fetched.project,
        objects: &objects,
        revision: Some(&db.revision),
        to: None,
        allow_rework: scope.env.spec.allow_rework,
    };
    review(&db.engine, &bg, &input)
        .await
        .map_err(|e| approval::failed(&e, &db.fetched, &db.revision))
}
