//! What a project's changes look like in one database: deployed, pending, diverged, held
//! by workflow files, refused; and the registry's log and deployment runs.

use std::collections::BTreeMap;

use super::schedule::{self, Declined, Facts, Refusal};
use super::*;
use crate::engine::Result;
use crate::project::Project;
use crate::registry::workflow::{self as records, State};
use crate::registry::{DeployedChange, LockHolder};

/// A project's state in one database.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The project.
    pub project: String,
    /// Deployed change names, in deploy order.
    pub deployed: Vec<String>,
    /// Planned change names not yet deployed, in plan order.
    pub pending: Vec<String>,
    /// True when nothing is pending and nothing diverged.
    pub up_to_date: bool,
    /// The last deployed change, with its id and tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_change: Option<DeployedChange>,
    /// Deployed changes missing from the plan at their position (diverged history).
    pub diverged: Vec<String>,
    /// Why a deploy would be refused before running anything (rework where it is not
    /// allowed, workflow files contradicting the registry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// Every plan change, in plan order, with its workflow state here.
    pub changes: Vec<ChangeStatus>,
    /// Who holds the project's lock right now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<LockHolder>,
}

impl Status {
    /// The changes the workflow files acted on here: those with a recorded state.
    pub fn reworked(&self) -> impl Iterator<Item = &ChangeStatus> {
        self.changes.iter().filter(|c| c.file.is_some())
    }
}

/// One plan change as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChangeStatus {
    /// The change name.
    pub name: String,
    /// Sqitch's change id.
    pub id: String,
    /// True when Sqitch's registry has it deployed.
    pub deployed: bool,
    /// `deployed`, `ignored`, `cleaned` or `replaced`: the state the workflow files left it
    /// in here, else `deployed` for changes deployed as planned; absent for changes not
    /// deployed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<State>,
    /// The workflow file that put it in that state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The reason recorded with an ignore.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The revision that put it there, when the deployer said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Since when, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// What the next deploy does with it: `deploy`, `record` (a superseded earlier
    /// instance), `replace`, `cleanup`, `ignore`, `unignore` or `mark`; `refused` for the
    /// change a refused deploy names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<&'static str>,
}

impl Deployer {
    /// Compares the plan with the registry, as a deploy without rework would.
    pub async fn status(&self, project: &Project) -> Result<Status> {
        self.status_with(project, false).await
    }

    /// Compares the plan with the registry, as a deploy would with or without rework: what
    /// is pending (workflow steps included), why a deploy would be refused, and each
    /// change's workflow state.
    pub async fn status_with(&self, project: &Project, allow_rework: bool) -> Result<Status> {
        let deployed = self.registry.deployed(&self.client, project.name()).await?;
        let records =
            records::records(&self.client, self.registry.workflow_scope(project.name())).await?;
        let facts = Facts {
            project,
            deployed: &deployed,
            records: &records,
            allow_rework,
            end: project.plan.changes.len(),
        };
        let alignment = schedule::align(&facts).ok();
        let mut next: BTreeMap<usize, &'static str> = BTreeMap::new();
        let mut diverged = Vec::new();
        let mut refused = None;
        match schedule::schedule(&facts) {
            Ok(schedule) => {
                for step in &schedule.steps {
                    next.insert(step.index, step.verb());
                }
            }
            Err(Declined::Diverged { row }) => {
                diverged = deployed[row..].iter().map(|c| c.name.clone()).collect();
            }
            Err(Declined::Refused(refusal)) => {
                // Pending: the changes not deployed, and the one refused (which may be
                // deployed, but not as planned).
                if let Some(alignment) = &alignment {
                    for i in 0..project.plan.changes.len() {
                        if alignment.row(i).is_none() {
                            next.insert(i, "deploy");
                        }
                    }
                }
                if let Some(i) = project
                    .plan
                    .changes
                    .iter()
                    .rposition(|c| c.name == refusal.change())
                {
                    next.insert(i, "refused");
                }
                refused = Some(refusal);
            }
        }
        let ids: std::collections::HashSet<&str> = deployed.iter().map(|d| d.id.as_str()).collect();
        let changes: Vec<ChangeStatus> = project
            .plan
            .changes
            .iter()
            .enumerate()
            .map(|(i, change)| {
                let is_deployed = ids.contains(change.id.as_str());
                // NB: a `deployed` or `replaced` record of a change no longer deployed is
                // stale (Sqitch reverted it, knowing nothing of workflow states).
                let record = records
                    .iter()
                    .find(|r| r.change_id == change.id)
                    .filter(|r| is_deployed || r.state.ignores());
                ChangeStatus {
                    name: change.name.clone(),
                    id: change.id.clone(),
                    deployed: is_deployed,
                    workflow: record
                        .map(|r| r.state)
                        .or(is_deployed.then_some(State::Deployed)),
                    file: record.map(|r| r.file.clone()),
                    reason: record.map(|r| r.reason.clone()).unwrap_or_default(),
                    revision: record.and_then(|r| r.revision.clone()),
                    since: record.map(|r| r.changed_at.clone()),
                    next: next.get(&i).copied(),
                }
            })
            .collect();
        let pending: Vec<String> = next
            .keys()
            .map(|&i| project.plan.changes[i].name.clone())
            .collect();
        let locked_by = self
            .registry
            .lock_holder(&self.client, project.name())
            .await?;
        Ok(Status {
            project: project.name().to_string(),
            up_to_date: pending.is_empty() && diverged.is_empty() && refused.is_none(),
            deployed: deployed.iter().map(|c| c.name.clone()).collect(),
            last_change: deployed.last().cloned(),
            pending,
            diverged,
            refused,
            changes,
            locked_by,
        })
    }

    /// Whether this revision holds changes reworked by workflow files that this database
    /// has not deployed in their original form: what a Promotion into an Environment
    /// without `allowRework` must refuse (see [`schedule::rework_not_allowed`]).
    pub async fn rework_not_allowed(&self, project: &Project) -> Result<Option<Refusal>> {
        let deployed = self.registry.deployed(&self.client, project.name()).await?;
        let records =
            records::records(&self.client, self.registry.workflow_scope(project.name())).await?;
        Ok(schedule::rework_not_allowed(project, &deployed, &records))
    }

    /// The project's workflow events (ignore, unignore, cleanup, replace), newest first.
    pub async fn workflow_log(&self, project: &Project) -> Result<Vec<records::WorkflowEvent>> {
        Ok(records::events(&self.client, self.registry.workflow_scope(project.name())).await?)
    }

    /// The project's last `limit` deploy and revert runs, newest first.
    pub async fn deployments(
        &self,
        project: &Project,
        limit: i64,
    ) -> Result<Vec<crate::registry::DeploymentRun>> {
        Ok(self
            .registry
            .deployments(&self.client, project.name(), limit)
            .await?)
    }

    /// The project's registry events, newest first.
    pub async fn log(&self, project: &Project) -> Result<Vec<crate::registry::Event>> {
        Ok(self.registry.events(&self.client, project.name()).await?)
    }
}
