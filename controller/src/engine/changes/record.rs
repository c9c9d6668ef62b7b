//! What a change's run writes to the registry, in the transaction that runs its scripts:
//! Sqitch's rows, then switchyard's workflow state.

use super::*;
use crate::engine::Result;
use crate::project::Project;
use crate::registry::workflow::{self as records, Record, Transition};
use crate::registry::{ChangeRecord, Committer, DeployedChange, Position, Registry, TagRecord};

/// What a step writes to Sqitch's registry, in the transaction that runs its scripts.
pub(super) enum Write<'a> {
    /// A deploy, its rows dated at `position`.
    Deploy {
        record: ChangeRecord<'a>,
        position: Position<'a>,
    },
    /// A deployed change, undone and deployed again with a new script.
    Replace {
        row: &'a DeployedChange,
        record: ChangeRecord<'a>,
    },
    /// A revert. Without a transition, the change's workflow state is restored to
    /// `restore` (a failure mode undoing this run) or, when `None`, forgotten.
    Revert {
        row: &'a DeployedChange,
        restore: Option<&'a Record>,
    },
    /// Nothing in Sqitch's registry.
    Nothing,
}

pub(super) fn change_record<'a>(
    project: &'a Project,
    prepared: &'a Prepared<'_>,
) -> ChangeRecord<'a> {
    let change = prepared.change;
    ChangeRecord {
        id: &change.id,
        name: &change.name,
        project: project.name(),
        note: &change.note,
        planned_at: &change.planned_at,
        planner_name: &change.planner_name,
        planner_email: &change.planner_email,
        script_hash: prepared.script_hash.as_deref(),
        requires: prepared.requires.clone(),
        conflicts: change
            .conflicts
            .iter()
            .map(|d| d.as_string(project.name()))
            .collect(),
        tags: change
            .tags
            .iter()
            .map(|t| TagRecord {
                id: &t.id,
                name: &t.name,
                note: &t.note,
                planned_at: &t.planned_at,
                planner_name: &t.planner_name,
                planner_email: &t.planner_email,
            })
            .collect(),
    }
}

/// Writes what a step records: Sqitch's rows, then switchyard's workflow state.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_registry(
    registry: &Registry,
    who: &Committer,
    tx: &tokio_postgres::Transaction<'_>,
    project: &Project,
    write: &Write<'_>,
    transition: Option<&Transition>,
    revision: Option<&str>,
) -> Result<(), RunError> {
    let scope = registry.workflow_scope(project.name());
    let fatal = |e: crate::registry::Error| RunError::Fatal(e.into());
    match write {
        Write::Deploy { record, position } => registry
            .log_deploy_at(tx, record, who, *position)
            .await
            .map_err(fatal)?,
        Write::Replace { row, record } => registry
            .log_replace(tx, row, record, who)
            .await
            .map_err(fatal)?,
        Write::Revert { row, restore } => {
            registry
                .log_revert(tx, row, project.name(), who)
                .await
                .map_err(fatal)?;
            if transition.is_none() {
                match restore {
                    Some(record) => records::put(tx, scope, record).await,
                    None => records::forget_deployed(tx, scope, &row.id).await,
                }
                .map_err(fatal)?;
            }
        }
        Write::Nothing => {}
    }
    if let Some(transition) = transition {
        records::record(tx, scope, transition, revision, who)
            .await
            .map_err(fatal)?;
    }
    Ok(())
}
