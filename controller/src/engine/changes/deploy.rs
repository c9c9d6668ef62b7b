//! `deploy`: check everything before anything runs (the schedule, every script, requires
//! and conflicts), then run each change in its own transaction, handling a failure as the
//! failure mode says.

use std::collections::BTreeMap;
use std::path::Path;

use super::schedule::{self, Action, Declined, Facts, Place, Refusal};
use super::*;
use crate::engine::script::Script;
use crate::engine::{Error, Failure, Result};
use crate::pg::db_error_message;
use crate::project::{Change, Project, ScriptKind};
use crate::registry::workflow::{self as records, EventKind, Record, Transition};
use crate::registry::{DeployedChange, Position};

/// Options for [`Deployer::deploy`].
#[derive(Clone, Debug, Default)]
pub struct DeployOptions {
    /// Deploy up to and including this change or tag; the end of the plan when `None`.
    pub to: Option<String>,
    /// Run each change's verify script before committing it.
    pub verify: bool,
    /// What to revert when a change fails.
    pub mode: FailureMode,
    /// Record changes as deployed without running their scripts (adopt a database).
    pub log_only: bool,
    /// Script variables; added to (and overriding) the project's own.
    pub variables: BTreeMap<String, String>,
    /// The project revision being deployed (e.g. `main@sha1:…`), recorded with the run and
    /// with workflow states.
    pub revision: Option<String>,
    /// Act on development workflow files (`allowRework`, `--allow-rework`). Without it, a
    /// revision with workflow files for changes this database has not deployed as planned
    /// is refused before anything runs.
    pub allow_rework: bool,
}

/// A step of a long operation, for progress reporting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// `deploy` or `revert`.
    pub operation: &'static str,
    /// 1-based index of the change in this run.
    pub index: usize,
    /// Number of changes in this run.
    pub total: usize,
    /// The change's name.
    pub change: String,
}

/// What a deploy did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeployReport {
    /// The project.
    pub project: String,
    /// Changes deployed (recorded in Sqitch's registry), in order.
    pub deployed: Vec<String>,
    /// Earlier instances of reworked changes recorded as deployed without running, because
    /// this run deployed their newest instance (tag-qualified names).
    pub superseded: Vec<String>,
    /// Changes ignored by this run (`-ignore` files).
    pub ignored: Vec<String>,
    /// Changes whose ignore this run took back (`-unignore` files).
    pub unignored: Vec<String>,
    /// Changes undone by their `-cleanup` script.
    pub cleaned: Vec<String>,
    /// Changes deployed with their `-replace` script.
    pub replaced: Vec<String>,
    /// True when nothing was pending.
    pub up_to_date: bool,
    /// True when scripts were not run (log-only).
    pub log_only: bool,
}

impl DeployReport {
    fn note(&mut self, done: &Prepared<'_>) {
        let name = || done.change.name.clone();
        let event = done.step.transition.as_ref().and_then(|t| t.event);
        match &done.step.action {
            Action::Deploy { superseded_by, .. } => {
                self.deployed.push(name());
                if superseded_by.is_some() {
                    self.superseded.push(done.change.tag_qualified_name());
                }
            }
            Action::Replace { .. } => {}
            Action::Cleanup { .. } => self.cleaned.push(name()),
            Action::Mark => {}
        }
        match event {
            Some(EventKind::Ignore) => self.ignored.push(name()),
            Some(EventKind::Unignore) => self.unignored.push(name()),
            Some(EventKind::Replace) => self.replaced.push(name()),
            Some(EventKind::Cleanup) | None => {}
        }
    }
}

/// A step ready to run: its plan entry and its scripts, loaded before anything runs.
pub(super) struct Prepared<'p> {
    pub(super) change: &'p Change,
    pub(super) step: schedule::Step,
    /// The script the step runs: the deploy script (or its replacement), the cleanup
    /// script; empty for marks, superseded instances and log-only runs.
    pub(super) script: Script,
    /// What a replace runs first to undo the deployed version.
    pub(super) undo: Option<Script>,
    pub(super) verify: Option<Script>,
    /// Undoes a deploy step when the failure mode says so.
    pub(super) revert: Option<Script>,
    pub(super) script_hash: Option<String>,
    pub(super) requires: Vec<(String, String)>,
    /// The change's registry row, for steps on a deployed change.
    pub(super) row: Option<DeployedChange>,
    /// The change's workflow record before this run, restored if the step is reverted.
    pub(super) previous: Option<Record>,
}

impl Prepared<'_> {
    fn is_deploy(&self) -> bool {
        matches!(self.step.action, Action::Deploy { .. })
    }

    fn superseded_by(&self) -> Option<usize> {
        match self.step.action {
            Action::Deploy { superseded_by, .. } => superseded_by,
            _ => None,
        }
    }
}

impl Deployer {
    /// Deploys pending changes up to `options.to`, acting on the project's development
    /// workflow files where `options.allow_rework` allows. Everything that can be checked is
    /// checked before anything runs: the plan against the registry, the workflow files
    /// against what the registry recorded, dependencies, and every script.
    pub async fn deploy(
        &mut self,
        project: &Project,
        options: &DeployOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<DeployReport> {
        self.lock(project.name(), "deploy").await?;
        let result = self.deploy_locked(project, options, progress).await;
        self.unlock(project.name()).await;
        result
    }

    pub(super) async fn deploy_locked(
        &mut self,
        project: &Project,
        options: &DeployOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<DeployReport> {
        let plan = &project.plan;
        let deployed = self.registry.deployed(&self.client, project.name()).await?;
        let records =
            records::records(&self.client, self.registry.workflow_scope(project.name())).await?;
        let end = match &options.to {
            Some(to) => resolve_to(project, to)? + 1,
            None => plan.changes.len(),
        };
        let facts = Facts {
            project,
            deployed: &deployed,
            records: &records,
            allow_rework: options.allow_rework,
            end,
        };
        let schedule = schedule::schedule(&facts).map_err(|declined| match declined {
            Declined::Diverged { row } => diverged(project, &deployed, row),
            Declined::Refused(refusal) => Error::Refused(refusal),
        })?;
        if let Some(to) = &options.to
            && end < schedule.prefix
        {
            return Err(Error::Target {
                plan: plan.path.clone(),
                message: format!(
                    "--to {to}: already deployed past it (use revert --to {to} to go back)"
                ),
            });
        }
        let mut report = DeployReport {
            project: project.name().to_string(),
            log_only: options.log_only,
            ..DeployReport::default()
        };
        if schedule.steps.is_empty() {
            report.up_to_date = true;
            return Ok(report);
        }
        let variables = merged_variables(project, &options.variables);
        let mut prepared = Vec::with_capacity(schedule.steps.len());
        for step in schedule.steps {
            prepared.push(
                self.prepare(project, step, &deployed, &records, options, &variables)
                    .await?,
            );
        }

        // Checks passed: from here on the database changes.
        self.ensure_registry(project).await?;
        let run = self
            .registry
            .start_deployment(
                &self.client,
                project.name(),
                "deploy",
                options.revision.as_deref(),
                &self.committer,
            )
            .await?;
        let total = prepared.len();
        let revision = options.revision.as_deref();
        for (i, step) in prepared.iter().enumerate() {
            progress(&Progress {
                operation: step.step.verb(),
                index: i + 1,
                total,
                change: step.change.name.clone(),
            });
            if let Err(failure) = self.run_prepared(project, step, revision).await {
                let failure = match failure {
                    RunError::Failed(f) => f,
                    RunError::Fatal(error) => return Err(error),
                };
                return Err(self
                    .handle_failure(project, &prepared, i, failure, options.mode, run)
                    .await);
            }
            report.note(step);
        }
        self.registry
            .finish_deployment(&self.client, run, "succeeded", total as i32, "")
            .await?;
        Ok(report)
    }

    /// Reads a step's scripts and resolves its change's dependencies against the plan and
    /// registry.
    pub(super) async fn prepare<'p>(
        &self,
        project: &'p Project,
        step: schedule::Step,
        deployed: &[DeployedChange],
        records: &[Record],
        options: &DeployOptions,
        variables: &BTreeMap<String, String>,
    ) -> Result<Prepared<'p>> {
        let index = step.index;
        let change = &project.plan.changes[index];
        // Reads a script's bytes for its hash, and parses it unless it will not run.
        let load = |path: &Path, runs: bool| -> Result<(Script, String)> {
            let bytes = std::fs::read(path).map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })?;
            let hash = sha1_hex(&bytes);
            if options.log_only || !runs {
                return Ok((Script::default(), hash));
            }
            let script = Script::load_within(path, variables, project.include_root.as_deref())?;
            check_transaction_control(&script)?;
            Ok((script, hash))
        };
        let row = deployed.iter().find(|d| d.id == change.id).cloned();
        if matches!(step.action, Action::Replace { .. } | Action::Cleanup { .. }) && row.is_none() {
            return Err(not_deployed(project, change));
        }
        let (script, script_hash, undo) = match &step.action {
            Action::Deploy {
                script,
                superseded_by,
                ..
            } => {
                let (script, hash) = load(script, superseded_by.is_none())?;
                (script, Some(hash), None)
            }
            Action::Replace { undo, script } => {
                if !undo.is_file() {
                    return Err(Error::Refused(Refusal::NothingToUndo {
                        change: change.name.clone(),
                        file: step
                            .transition
                            .as_ref()
                            .map(|t| t.file.clone())
                            .unwrap_or_default(),
                        undo: project.relative(undo),
                    }));
                }
                let (undo, _) = load(undo, true)?;
                let (script, hash) = load(script, true)?;
                (script, Some(hash), Some(undo))
            }
            Action::Cleanup { script } => {
                let others = self
                    .registry
                    .required_by_others(&self.client, project.name(), &change.id)
                    .await?;
                if let Some((other, name)) = others.first() {
                    return Err(Error::Refused(Refusal::RequiredByDeployed {
                        change: change.name.clone(),
                        file: project.relative(script),
                        dependent: format!("{other}:{name}"),
                    }));
                }
                let (script, _) = load(script, true)?;
                (script, None, None)
            }
            Action::Mark => (Script::default(), None, None),
        };
        let (verify, revert) =
            companion_scripts(project, change, &step.action, options, variables)?;
        let requires = match step.action {
            Action::Deploy { .. } | Action::Replace { .. } => {
                let requires = self.resolve_requires(project, index, change).await?;
                if matches!(step.action, Action::Deploy { .. }) {
                    self.check_conflicts(project, index, change, deployed)
                        .await?;
                }
                requires
            }
            Action::Cleanup { .. } | Action::Mark => Vec::new(),
        };
        Ok(Prepared {
            change,
            previous: records.iter().find(|r| r.change_id == change.id).cloned(),
            step,
            script,
            undo,
            verify,
            revert,
            script_hash,
            requires,
            row,
        })
    }

    pub(super) async fn resolve_requires(
        &self,
        project: &Project,
        index: usize,
        change: &Change,
    ) -> Result<Vec<(String, String)>> {
        let plan = &project.plan;
        let mut resolved = Vec::with_capacity(change.requires.len());
        for dep in &change.requires {
            let shown = dep.as_string(&plan.project);
            let id = if dep.is_local(&plan.project) {
                resolve_local(project, dep, index).map(|i| plan.changes[i].id.clone())
            } else {
                let other = dep.project.as_deref().unwrap_or_default();
                match &dep.id {
                    Some(id) => Some(id.clone()),
                    None => {
                        self.registry
                            .change_id_for(
                                &self.client,
                                other,
                                dep.change.as_deref(),
                                dep.tag.as_deref(),
                            )
                            .await?
                    }
                }
            };
            match id {
                Some(id) => resolved.push((shown, id)),
                None => {
                    return Err(Error::Dependency {
                        plan: plan.path.clone(),
                        line: change.line,
                        message: format!(
                            "change {} requires {shown}, which is not deployed",
                            change.name
                        ),
                    });
                }
            }
        }
        Ok(resolved)
    }

    pub(super) async fn check_conflicts(
        &self,
        project: &Project,
        index: usize,
        change: &Change,
        deployed: &[DeployedChange],
    ) -> Result<()> {
        let plan = &project.plan;
        for dep in &change.conflicts {
            let shown = dep.as_string(&plan.project);
            let present = if dep.is_local(&plan.project) {
                // Deployed already, or deployed earlier in this run.
                let name = dep.change.as_deref();
                deployed.iter().any(|d| Some(d.name.as_str()) == name)
                    || resolve_local(project, dep, index).is_some()
            } else {
                let other = dep.project.as_deref().unwrap_or_default();
                self.registry
                    .change_id_for(
                        &self.client,
                        other,
                        dep.change.as_deref(),
                        dep.tag.as_deref(),
                    )
                    .await?
                    .is_some()
            };
            if present {
                return Err(Error::Dependency {
                    plan: plan.path.clone(),
                    line: change.line,
                    message: format!(
                        "change {} conflicts with {shown}, which is deployed",
                        change.name
                    ),
                });
            }
        }
        Ok(())
    }

    /// Runs one prepared step and records it. `Err(RunError::Failed)` means the step did not
    /// happen and the database is as it was before it (for transactional scripts).
    pub(super) async fn run_prepared(
        &mut self,
        project: &Project,
        step: &Prepared<'_>,
        revision: Option<&str>,
    ) -> Result<(), RunError> {
        let record = change_record(project, step);
        let transition = step.step.transition.as_ref();
        let name = &step.change.name;
        match &step.step.action {
            Action::Deploy { place, .. } => {
                let position = match place {
                    Place::End => Position::Now,
                    Place::After(id) => Position::After(id),
                    Place::Before(id, n) => Position::Before(id, *n),
                };
                let write = Write::Deploy { record, position };
                let scripts = [&step.script];
                self.run_step(
                    project,
                    name,
                    &scripts,
                    step.verify.as_ref(),
                    step.revert.as_ref(),
                    write,
                    transition,
                    revision,
                )
                .await
            }
            Action::Replace { .. } => {
                let row = step
                    .row
                    .as_ref()
                    .ok_or_else(|| RunError::Fatal(not_deployed(project, step.change)))?;
                let write = Write::Replace { row, record };
                let scripts: Vec<&Script> = step.undo.iter().chain([&step.script]).collect();
                self.run_step(
                    project,
                    name,
                    &scripts,
                    step.verify.as_ref(),
                    None,
                    write,
                    transition,
                    revision,
                )
                .await
            }
            Action::Cleanup { .. } => {
                let row = step
                    .row
                    .as_ref()
                    .ok_or_else(|| RunError::Fatal(not_deployed(project, step.change)))?;
                let write = Write::Revert { row, restore: None };
                self.run_step(
                    project,
                    name,
                    &[&step.script],
                    None,
                    None,
                    write,
                    transition,
                    revision,
                )
                .await
            }
            Action::Mark => {
                self.run_step(
                    project,
                    name,
                    &[],
                    None,
                    None,
                    Write::Nothing,
                    transition,
                    revision,
                )
                .await
            }
        }
    }

    /// Runs `scripts` in order and writes `write` (and `transition`) to the registry, all in
    /// one transaction, with `verify` run in a savepoint that is rolled back. Scripts that
    /// cannot run in a transaction are replayed in autocommit first, and the registry is
    /// written only after they succeeded; if `verify` then fails, `undo` reverts them.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_step(
        &mut self,
        project: &Project,
        name: &str,
        scripts: &[&Script],
        verify: Option<&Script>,
        undo: Option<&Script>,
        write: Write<'_>,
        transition: Option<&Transition>,
        revision: Option<&str>,
    ) -> Result<(), RunError> {
        if scripts.iter().any(|s| s.needs_autocommit()) {
            for script in scripts {
                run_autocommit(&self.client, script, name).await?;
            }
            let verified = match verify {
                Some(verify) => self.run_verify(verify, name).await,
                None => Ok(()),
            };
            if let Err(failure) = verified {
                // The scripts committed; undo them as Sqitch does, with the revert script.
                if let Some(undo) = undo {
                    let _ = run_autocommit(&self.client, undo, name).await;
                }
                return Err(RunError::Failed(failure));
            }
            let tx = self
                .client
                .transaction()
                .await
                .map_err(fatal("starting a transaction"))?;
            write_registry(
                &self.registry,
                &self.committer,
                &tx,
                project,
                &write,
                transition,
                revision,
            )
            .await?;
            tx.commit().await.map_err(fatal("recording a change"))?;
        } else {
            let tx = self
                .client
                .transaction()
                .await
                .map_err(fatal("starting a transaction"))?;
            self.registry
                .lock_changes(&tx)
                .await
                .map_err(|e| RunError::Fatal(e.into()))?;
            for script in scripts {
                run_in_transaction(&tx, script, name, false).await?;
            }
            if let Some(verify) = verify {
                tx.batch_execute("SAVEPOINT switchyard_verify")
                    .await
                    .map_err(fatal("verifying"))?;
                run_in_transaction(&tx, verify, name, true).await?;
                tx.batch_execute("ROLLBACK TO SAVEPOINT switchyard_verify")
                    .await
                    .map_err(fatal("verifying"))?;
            }
            as_deployer(&tx).await?;
            write_registry(
                &self.registry,
                &self.committer,
                &tx,
                project,
                &write,
                transition,
                revision,
            )
            .await?;
            let last = scripts.iter().rev().find_map(|s| s.statements.last());
            tx.commit().await.map_err(|e| match last {
                // A deferred constraint can fail at commit: that is the change's failure.
                Some(statement) => RunError::Failed(Failure {
                    change: name.to_string(),
                    path: statement.path.clone(),
                    line: statement.line,
                    message: format!("at commit: {}", db_error_message(&e)),
                }),
                None => RunError::Fatal(Error::Db {
                    context: "recording a change",
                    source: e,
                }),
            })?;
        }
        reset_session(&self.client).await.map_err(RunError::Fatal)?;
        Ok(())
    }

    /// Logs the failure, reverts what the failure mode says, and builds the error. Only
    /// this run's deploy steps are reverted; cleanups, replaces and marks it completed stay.
    pub(super) async fn handle_failure(
        &mut self,
        project: &Project,
        prepared: &[Prepared<'_>],
        failed_at: usize,
        failure: Failure,
        mode: FailureMode,
        run: i64,
    ) -> Error {
        let failed = &prepared[failed_at];
        if matches!(
            failed.step.action,
            Action::Deploy { .. } | Action::Replace { .. }
        ) {
            let record = change_record(project, failed);
            if let Err(error) = self
                .registry
                .log_fail(&self.client, &record, &self.committer)
                .await
            {
                return error.into();
            }
        }
        // Which of this run's steps stay.
        let mut keep = match mode {
            FailureMode::Change => failed_at,
            FailureMode::All => 0,
            FailureMode::Tag => prepared[..failed_at]
                .iter()
                .rposition(|p| p.is_deploy() && !p.change.tags.is_empty())
                .map_or(0, |i| i + 1),
        };
        // NB: an instance recorded but not run stands or falls with the newer instance that
        // superseded it; if that one did not deploy, go back to before the older one.
        let done = |index: usize| {
            prepared[..failed_at]
                .iter()
                .any(|p| p.step.index == index && p.is_deploy())
        };
        if let Some(at) = prepared[..keep]
            .iter()
            .position(|p| p.superseded_by().is_some_and(|newest| !done(newest)))
        {
            keep = at;
        }
        let mut reverted = Vec::new();
        // One read: reverting a change removes only its own row.
        let deployed = match self.registry.deployed(&self.client, project.name()).await {
            Ok(d) => d,
            Err(error) => return error.into(),
        };
        for step in prepared[keep..failed_at].iter().rev() {
            if !step.is_deploy() {
                continue;
            }
            let Some(row) = deployed.iter().find(|d| d.id == step.change.id) else {
                continue;
            };
            // What this step recorded is put back as it was before the run.
            let restore = step.step.transition.as_ref().and(step.previous.as_ref());
            let script = if step.superseded_by().is_some() {
                None
            } else {
                step.revert.as_ref()
            };
            match self.revert_one(project, row, script, restore).await {
                Ok(()) => reverted.push(step.change.name.clone()),
                Err(RunError::Failed(f)) => {
                    return Error::RevertFailed {
                        failure: f,
                        reverted,
                    };
                }
                Err(RunError::Fatal(error)) => return error,
            }
        }
        let kept = prepared[..failed_at]
            .iter()
            .enumerate()
            .filter(|(at, p)| {
                (p.is_deploy() && *at < keep) || matches!(p.step.action, Action::Replace { .. })
            })
            .map(|(_, p)| p.change.name.clone())
            .collect();
        let message = failure.to_string();
        let _ = self
            .registry
            .finish_deployment(&self.client, run, "failed", keep as i32, &message)
            .await;
        Error::ChangeFailed {
            failure,
            reverted,
            kept,
        }
    }
}

/// The scripts that go with a step that runs its change: its verify script (with verify
/// on) and, for a deploy, its revert script, for when the failure mode must undo it.
fn companion_scripts(
    project: &Project,
    change: &Change,
    action: &Action,
    options: &DeployOptions,
    variables: &BTreeMap<String, String>,
) -> Result<(Option<Script>, Option<Script>)> {
    let runs_change = match action {
        Action::Deploy { superseded_by, .. } => superseded_by.is_none(),
        Action::Replace { .. } => true,
        Action::Cleanup { .. } | Action::Mark => false,
    };
    if !runs_change || options.log_only {
        return Ok((None, None));
    }
    let existing = |kind| Some(project.script_path(change, kind)).filter(|p| p.exists());
    let verify = match existing(ScriptKind::Verify).filter(|_| options.verify) {
        Some(path) => Some(Script::load_within(
            &path,
            variables,
            project.include_root.as_deref(),
        )?),
        None => None,
    };
    let revert = match existing(ScriptKind::Revert)
        .filter(|_| matches!(action, Action::Deploy { .. }))
    {
        Some(path) => {
            let script = Script::load_within(&path, variables, project.include_root.as_deref())?;
            check_transaction_control(&script)?;
            Some(script)
        }
        None => None,
    };
    Ok((verify, revert))
}
