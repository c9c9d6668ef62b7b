//! `revert`: undo deployed changes newest first, refusing to revert what another project
//! requires.

use std::collections::BTreeMap;

use super::*;
use crate::engine::script::Script;
use crate::engine::{Error, Result};
use crate::project::{Project, ScriptKind};
use crate::registry::DeployedChange;
use crate::registry::workflow::Record;

/// Options for [`Deployer::revert`].
#[derive(Clone, Debug, Default)]
pub struct RevertOptions {
    /// Revert the changes after this one; `None` reverts everything deployed.
    pub to: Option<String>,
    /// Script variables.
    pub variables: BTreeMap<String, String>,
}

/// What a revert did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RevertReport {
    /// The project.
    pub project: String,
    /// Changes reverted, in revert order.
    pub reverted: Vec<String>,
}

impl Deployer {
    /// Reverts deployed changes after `options.to` (all of them when `None`), newest first.
    pub async fn revert(
        &mut self,
        project: &Project,
        options: &RevertOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<RevertReport> {
        self.lock(project.name(), "revert").await?;
        let result = self.revert_locked(project, options, progress).await;
        self.unlock(project.name()).await;
        result
    }

    // long-fn: Sqitch's revert in one pass (the --to target, other projects' requires, each change newest first); the steps share the deployed rows.
    pub(super) async fn revert_locked(
        &mut self,
        project: &Project,
        options: &RevertOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<RevertReport> {
        let plan = &project.plan;
        let deployed = self.registry.deployed(&self.client, project.name()).await?;
        let keep = match &options.to {
            None => 0,
            Some(to) => {
                let index = resolve_to(project, to)?;
                let id = &plan.changes[index].id;
                let position =
                    deployed
                        .iter()
                        .position(|d| &d.id == id)
                        .ok_or_else(|| Error::Target {
                            plan: plan.path.clone(),
                            message: format!(
                                "--to {to}: {} is not deployed",
                                plan.changes[index].name
                            ),
                        })?;
                position + 1
            }
        };
        let mut report = RevertReport {
            project: project.name().to_string(),
            reverted: Vec::new(),
        };
        let targets = &deployed[keep..];
        if targets.is_empty() {
            return Ok(report);
        }
        // Load every revert script and check other projects' requirements first.
        let variables = merged_variables(project, &options.variables);
        let mut scripts = Vec::with_capacity(targets.len());
        for row in targets {
            let others = self
                .registry
                .required_by_others(&self.client, project.name(), &row.id)
                .await?;
            if let Some((other, name)) = others.first() {
                return Err(Error::Target {
                    plan: plan.path.clone(),
                    message: format!("cannot revert {}: {other}:{name} requires it", row.name),
                });
            }
            let change = plan
                .index_of_id(&row.id)
                .map(|i| &plan.changes[i])
                .ok_or_else(|| Error::Diverged {
                    plan: plan.path.clone(),
                    name: row.name.clone(),
                    id: row.id.clone(),
                    position: deployed.iter().position(|d| d.id == row.id).unwrap_or(0) + 1,
                })?;
            let path = project.script_path(change, ScriptKind::Revert);
            let script = Script::load_within(&path, &variables, project.include_root.as_deref())?;
            check_transaction_control(&script)?;
            scripts.push(script);
        }
        let run = self
            .registry
            .start_deployment(
                &self.client,
                project.name(),
                "revert",
                None,
                &self.committer,
            )
            .await?;
        let holder = self.holder("revert");
        self.registry
            .record_lock(&self.client, project.name(), &holder)
            .await?;
        let total = targets.len();
        for (i, (row, script)) in targets.iter().zip(&scripts).rev().enumerate() {
            progress(&Progress {
                operation: "revert",
                index: i + 1,
                total,
                change: row.name.clone(),
            });
            match self.revert_one(project, row, Some(script), None).await {
                Ok(()) => report.reverted.push(row.name.clone()),
                Err(RunError::Failed(failure)) => {
                    let _ = self
                        .registry
                        .finish_deployment(
                            &self.client,
                            run,
                            "failed",
                            i as i32,
                            &failure.to_string(),
                        )
                        .await;
                    return Err(Error::RevertFailed {
                        failure,
                        reverted: report.reverted,
                    });
                }
                Err(RunError::Fatal(error)) => return Err(error),
            }
        }
        self.registry
            .finish_deployment(&self.client, run, "succeeded", total as i32, "")
            .await?;
        Ok(report)
    }

    /// Reverts one deployed change with `script` (nothing runs when `None`) and records it;
    /// its workflow state goes back to `restore`, or is forgotten.
    pub(super) async fn revert_one(
        &mut self,
        project: &Project,
        row: &DeployedChange,
        script: Option<&Script>,
        restore: Option<&Record>,
    ) -> Result<(), RunError> {
        let scripts: Vec<&Script> = script.into_iter().collect();
        let write = Write::Revert { row, restore };
        self.run_step(project, &row.name, &scripts, None, None, write, None, None)
            .await
    }
}
