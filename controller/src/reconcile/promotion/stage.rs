//! Staging: the revision's changes are deployed into the target first (objects may use
//! new tables), then its changed blue-green schemas are built into staging schemas and
//! verified there. Staged and Verified record each part with its duration.

use std::time::Instant;

use tracing::warn;

use super::{Plan, Run, ms};
use crate::api::conditions::{reasons, types};
use crate::api::promotion::{PromotionPhase, PromotionStatus};
use crate::engine::bluegreen::{Error as BgError, StageOptions, StageReport, StageStep};
use crate::reconcile::database::{deploy_options, deploy_with_progress, engine_outcome};
use crate::reconcile::fetch;
use crate::reconcile::status::{Outcome, summarize};

/// Deploys the pending changes up to the source's last one, showing the change at hand
/// in the Reconciling message; gives the plan back with `deployed` counted.
pub(super) async fn deploy_changes(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    plan: Plan,
) -> Result<Plan, Outcome> {
    run.enter(
        new,
        PromotionPhase::Staging,
        format!(
            "deploying {} changes of {}",
            plan.changes.len(),
            plan.wanted
        ),
    )
    .await;
    if plan.changes.is_empty() {
        return Ok(plan);
    }
    let mut base = new.clone();
    summarize(
        &mut base.conditions,
        &Outcome::Progressing {
            reason: reasons::DEPLOYING,
            message: format!(
                "promoting {} to {}",
                plan.wanted, run.promo.spec.to.environment
            ),
        },
        run.generation,
        &run.now,
    );
    let options = deploy_options(&plan.target, &plan.wanted, plan.to.clone());
    let Plan {
        engine,
        mut fetched,
        ..
    } = plan;
    let (engine, project, result) = deploy_with_progress(
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
    fetched.project = project;
    let plan = Plan {
        engine,
        fetched,
        ..plan
    };
    match result {
        Ok(report) => {
            run.ctx
                .metrics
                .changes_applied
                .inc_by(report.deployed.len() as u64);
            Ok(Plan {
                deployed: report.deployed.len(),
                ..plan
            })
        }
        Err(error) => Err(deploy_failed(run, new, &plan, &error)),
    }
}

/// A deploy failed: RolledBack names what the failure mode reverted; Verified or Staged
/// fails with the failure's reason.
fn deploy_failed(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    plan: &Plan,
    error: &crate::engine::Error,
) -> Outcome {
    run.count("failed");
    let (outcome, failure) = engine_outcome(error, &plan.fetched, &plan.wanted);
    let shown = fetch::relative(&error.to_string(), &plan.fetched.dir);
    warn!(revision = %plan.wanted, target = %run.promo.spec.to.environment, error = %shown, "Promotion failed");
    if let Some(reverted) = failure.map(|f| f.reverted).filter(|r| !r.is_empty()) {
        let message = format!("reverted {}", reverted.join(", "));
        run.set(
            new,
            types::ROLLED_BACK,
            true,
            reasons::ROLLED_BACK,
            &message,
        );
    }
    match outcome {
        Outcome::Terminal { reason, message } => {
            let step = if reason == reasons::VERIFY_FAILED {
                types::VERIFIED
            } else {
                types::STAGED
            };
            run.fail(new, step, reason, message)
        }
        other => other,
    }
}

/// Builds the changed blue-green schemas into staging schemas and verifies them, showing
/// Verifying while the verify SQL runs. `None` when there is nothing to build: no
/// blue-green schemas, or layers to repoint at the source's sets.
pub(super) async fn stage_objects(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    plan: &Plan,
    started: Instant,
) -> Result<Option<StageReport>, Outcome> {
    if plan.objects.schemas.is_empty() || plan.shared_from.is_some() {
        return Ok(None);
    }
    let bg = crate::reconcile::bluegreen::engine(run.ctx, &plan.target, &plan.engine);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The options own the sender: the watcher below ends when the stage does.
    let stage = async {
        let options = StageOptions {
            redeploy: run.promo.spec.redeploy_schemas.clone(),
            progress: Some(tx),
            ..StageOptions::default()
        };
        bg.stage(&plan.fetched.project, &plan.objects, &options)
            .await
    };
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
        Ok(report) => Ok(Some(report)),
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
            let message = fetch::relative(&failure.to_string(), &plan.fetched.dir);
            Err(run.fail(new, types::VERIFIED, reasons::VERIFY_FAILED, message))
        }
        Err(error) => {
            run.count("failed");
            Err(run.bg_failed(new, types::STAGED, &error, &plan.fetched))
        }
    }
}

/// Staged and Verified, with what was deployed and built and how long each took.
pub(super) fn report_staged(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    plan: &Plan,
    staged: Option<&StageReport>,
    started: Instant,
) {
    let (deployed, wanted) = (plan.deployed, &plan.wanted);
    let message = match (&plan.shared_from, staged) {
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
    let build_ms = staged.map_or(ms(started), |r| r.build_ms);
    run.done(
        new,
        types::STAGED,
        true,
        reasons::SUCCEEDED,
        &message,
        build_ms,
    );
    let verified = match plan.shared_from {
        Some(_) => "verified in the source; verified again once repointed",
        None => "verify passed",
    };
    let verify_ms = staged.map_or(0, |r| r.verify_ms);
    run.done(
        new,
        types::VERIFIED,
        true,
        reasons::SUCCEEDED,
        verified,
        verify_ms,
    );
}
