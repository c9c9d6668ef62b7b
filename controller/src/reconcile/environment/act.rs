//! Acting on a decision: deploy the pending changes (showing progress, recording what
//! happened as conditions), keep a failed revision failed, and swap in the blue-green
//! schemas that changed. Every database operation is the engine's.

use std::time::Instant;

use tracing::{info, warn};

use super::decide::Decision;
use super::{Gathered, Scope};
use crate::api::conditions::{reasons, types};
use crate::api::environment::EnvironmentStatus;
use crate::engine;
use crate::reconcile::bluegreen;
use crate::reconcile::database::{deploy_options, deploy_with_progress, engine_outcome};
use crate::reconcile::fetch;
use crate::reconcile::status::{self, Outcome, apply_status, summarize};

/// Carries out `decision` against the database; gives `db` back (a deploy borrows its
/// engine and project).
pub(super) async fn act(
    scope: &Scope<'_>,
    decision: Decision,
    db: Gathered,
    new: &mut EnvironmentStatus,
) -> (Gathered, Outcome) {
    let revision = &db.revision;
    let outcome = match decision {
        Decision::UpToDate => Outcome::Ready {
            reason: reasons::UP_TO_DATE,
            message: format!("up to date with {revision}"),
        },
        Decision::AwaitPromotion => Outcome::Ready {
            reason: reasons::AWAITING_PROMOTION,
            message: format!(
                "{} changes pending; this Environment moves only by Promotion",
                db.state.pending.len()
            ),
        },
        Decision::KeepFailed => keep_failed(new),
        Decision::Deploy => return deploy(scope, db, new).await,
    };
    (db, outcome)
}

/// The revision failed before and nothing asks to retry it: report the failure again,
/// with the reason it was reported with.
fn keep_failed(new: &EnvironmentStatus) -> Outcome {
    let ready = status::condition(&new.conditions, types::READY);
    let reason = ready.map(|c| c.reason.clone()).unwrap_or_default();
    let reason = [
        reasons::VERIFY_FAILED,
        reasons::REWORK_NOT_ALLOWED,
        reasons::INVALID_WORKFLOW,
    ]
    .into_iter()
    .find(|r| *r == reason)
    .unwrap_or(reasons::DEPLOY_FAILED);
    let message = ready.map(|c| c.message.clone()).unwrap_or_else(|| {
        new.last_failure
            .as_ref()
            .map(|f| f.message.clone())
            .unwrap_or_default()
    });
    Outcome::Terminal { reason, message }
}

/// Deploys the pending changes, showing `Deploying` and the change at hand in status
/// while it runs.
async fn deploy(
    scope: &Scope<'_>,
    db: Gathered,
    new: &mut EnvironmentStatus,
) -> (Gathered, Outcome) {
    let revision = db.revision.clone();
    new.last_attempted_revision = Some(revision.clone());
    let mut base = new.clone();
    summarize(
        &mut base.conditions,
        &Outcome::Progressing {
            reason: reasons::DEPLOYING,
            message: format!("deploying {} changes of {revision}", db.state.pending.len()),
        },
        scope.generation,
        &scope.now,
    );
    let _ = apply_status(scope.api, &scope.name, &base).await;
    let options = deploy_options(scope.env, &revision, None);
    let started = Instant::now();
    let Gathered {
        mut fetched,
        revision,
        engine,
        state,
    } = db;
    let (engine, project, result) = deploy_with_progress(
        engine,
        fetched.project,
        options,
        scope.api,
        &scope.name,
        base,
        |s: &mut EnvironmentStatus, p| s.progress = Some(p),
    )
    .await;
    fetched.project = project;
    let db = Gathered {
        fetched,
        revision,
        engine,
        state,
    };
    let outcome = match result {
        Ok(report) => {
            let ms = started.elapsed().as_millis() as u64;
            info!(revision = %db.revision, changes = report.deployed.len(), ms, "Deployed");
            record_deployed(scope, &report, &db.revision, new)
        }
        Err(error) => record_failure(scope, &error, &db, new),
    };
    (db, outcome)
}

/// A deploy succeeded: Deployed (and Verified, with verify on), no RolledBack.
fn record_deployed(
    scope: &Scope<'_>,
    report: &engine::DeployReport,
    revision: &str,
    new: &mut EnvironmentStatus,
) -> Outcome {
    let deployed = report.deployed.len();
    scope.ctx.metrics.changes_applied.inc_by(deployed as u64);
    new.last_failure = None;
    let message = format!("deployed {deployed} changes of {revision}");
    scope.set(new, types::DEPLOYED, true, reasons::DEPLOYED, &message);
    status::remove_condition(&mut new.conditions, types::ROLLED_BACK);
    if scope.env.spec.verify {
        scope.set(
            new,
            types::VERIFIED,
            true,
            reasons::SUCCEEDED,
            "verify scripts passed",
        );
    }
    Outcome::Ready {
        reason: reasons::DEPLOYED,
        message: format!(
            "deployed {revision}: {deployed} changes, last {}",
            report.deployed.last().map(String::as_str).unwrap_or("-")
        ),
    }
}

/// A deploy failed: Deployed=False (and Verified=False for a verify failure) with the
/// failure's reason, RolledBack naming what the failure mode reverted, and the failure's
/// change, file and line in `lastFailure`.
fn record_failure(
    scope: &Scope<'_>,
    error: &engine::Error,
    db: &Gathered,
    new: &mut EnvironmentStatus,
) -> Outcome {
    let revision = &db.revision;
    let shown = fetch::relative(&error.to_string(), &db.fetched.dir);
    warn!(%revision, error = %shown, "Deploy failed");
    let (outcome, failure) = engine_outcome(error, &db.fetched, revision);
    if let Outcome::Terminal { reason, message } = &outcome {
        scope.set(new, types::DEPLOYED, false, reason, message);
        if *reason == reasons::VERIFY_FAILED {
            scope.set(new, types::VERIFIED, false, reason, message);
        }
    }
    let reverted = failure
        .as_ref()
        .map(|f| f.reverted.clone())
        .unwrap_or_default();
    if reverted.is_empty() {
        status::remove_condition(&mut new.conditions, types::ROLLED_BACK);
    } else {
        let message = format!(
            "reverted {} ({:?} failure mode)",
            reverted.join(", "),
            scope.env.spec.failure_mode
        )
        .to_lowercase();
        scope.set(
            new,
            types::ROLLED_BACK,
            true,
            reasons::ROLLED_BACK,
            &message,
        );
    }
    if failure.is_some() {
        new.last_failure = failure;
    }
    outcome
}

/// Stages and swaps in the blue-green schemas that changed. `None` when they already
/// match the revision; else the outcome to report instead of the deploy's.
pub(super) async fn follow_objects(
    scope: &Scope<'_>,
    db: &Gathered,
    new: &mut EnvironmentStatus,
) -> Option<Outcome> {
    let (fetched, revision) = (&db.fetched, &db.revision);
    let objects = match bluegreen::objects(fetched) {
        Ok(o) => o,
        Err(outcome) => return Some(outcome),
    };
    let bg = bluegreen::engine(scope.ctx, scope.env, &db.engine);
    match bluegreen::follow(&bg, fetched, &objects, scope.env).await {
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
            let shown = fetch::relative(&error.to_string(), &fetched.dir);
            warn!(%revision, error = %shown, "Blue-green swap failed");
            let outcome = bluegreen::outcome(&error, fetched);
            if let Outcome::Terminal { reason, message } = &outcome {
                scope.set(new, types::DEPLOYED, false, reason, message);
            }
            Some(outcome)
        }
    }
}
