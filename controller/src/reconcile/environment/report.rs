//! Reporting what the database holds after a reconcile acted: its blue-green sets, the
//! registry's view of the plan (pending, last change, workflow states, lock holder), the
//! last deployment runs, and the revision it is known to hold.

use super::{Gathered, Scope};
use crate::api::conditions::{reasons, types};
use crate::api::environment::{
    DeploymentRecord, EnvironmentStatus, PendingChanges, WorkflowChange, WorkflowState,
};
use crate::engine;
use crate::reconcile::bluegreen;
use crate::reconcile::database::engine_outcome;
use crate::reconcile::status::Outcome;
use crate::registry::workflow as records;

/// Fills status with what the database holds; returns the outcome, refined by what was
/// found (blue-green schemas waiting for a Promotion, a registry that cannot be read).
pub(super) async fn report(
    scope: &Scope<'_>,
    db: &Gathered,
    new: &mut EnvironmentStatus,
    outcome: Outcome,
) -> Outcome {
    let bg = bluegreen::engine(scope.ctx, scope.env, &db.engine);
    bluegreen::report_sets(&bg, &db.fetched, new).await;
    let differing = bluegreen::differing(&bg, &db.fetched).await.ok();
    let outcome = objects_await_promotion(scope, db, differing.as_deref(), outcome);
    let outcome = report_registry(scope, db, new, outcome).await;
    report_deployments(db, new).await;
    if new.pending.as_ref().is_some_and(|p| p.count == 0)
        && differing.is_some_and(|d| d.is_empty())
        && !matches!(outcome, Outcome::Terminal { .. })
    {
        // The database holds every change and object of this revision, however they got
        // there (a revision without changes, Sqitch, the CLI, a swap).
        new.last_applied_revision = Some(db.revision.clone());
    }
    outcome
}

/// A promotion-only Environment whose changes are all deployed may still wait for a
/// Promotion of its blue-green schemas.
fn objects_await_promotion(
    scope: &Scope<'_>,
    db: &Gathered,
    differing: Option<&[String]>,
    outcome: Outcome,
) -> Outcome {
    match differing {
        Some(schemas)
            if !scope.env.spec.auto_deploy
                && !schemas.is_empty()
                && matches!(&outcome, Outcome::Ready { reason, .. } if *reason == reasons::UP_TO_DATE) =>
        {
            Outcome::Ready {
                reason: reasons::AWAITING_PROMOTION,
                message: format!(
                    "blue-green schemas {} differ from {}; this Environment moves only by Promotion",
                    schemas.join(", "),
                    db.revision
                ),
            }
        }
        _ => outcome,
    }
}

/// The registry's view after acting: pending changes, the last change, workflow states
/// and the lock holder; Deployed=True once nothing is pending.
async fn report_registry(
    scope: &Scope<'_>,
    db: &Gathered,
    new: &mut EnvironmentStatus,
    outcome: Outcome,
) -> Outcome {
    let state = match db
        .engine
        .status_with(&db.fetched.project, scope.env.spec.allow_rework)
        .await
    {
        Ok(state) => state,
        Err(e) if matches!(outcome, Outcome::Ready { .. }) => {
            return engine_outcome(&e, &db.fetched, &db.revision).0;
        }
        Err(_) => return outcome,
    };
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
        let message = format!("every change of {} is deployed", db.revision);
        scope.set(new, types::DEPLOYED, true, reasons::UP_TO_DATE, &message);
    }
    outcome
}

/// The last deployment runs, and the revision the newest successful deploy recorded.
async fn report_deployments(db: &Gathered, new: &mut EnvironmentStatus) {
    let Ok(runs) = db.engine.deployments(&db.fetched.project, 5).await else {
        return;
    };
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
