//! The PostgreSQL engine over tokio-postgres.
//!
//! Each change's script and its registry rows commit in one transaction. The script's own
//! `BEGIN` / `COMMIT` are absorbed into that transaction. A script holding a statement that
//! cannot run in a transaction block is replayed as psql would run it, in autocommit, and
//! the registry records it only after it succeeded.

use std::collections::BTreeMap;

use tokio_postgres::{Client, NoTls};

use super::error::{Error, Failure, Result, db_error_message, redact_url};
use super::script::{Script, Statement, StatementKind};
use crate::project::{Change, Dependency, Project, ScriptKind};
use crate::registry::{ChangeRecord, Committer, DeployedChange, LockHolder, Registry, TagRecord};

/// What to do when a change fails while deploying (Sqitch's `--mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Revert every change this run deployed.
    #[default]
    All,
    /// Revert to the last tag this run deployed (all of this run when it deployed none).
    Tag,
    /// Keep what this run deployed before the failing change.
    Change,
}

impl std::str::FromStr for FailureMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" => Ok(FailureMode::All),
            "tag" => Ok(FailureMode::Tag),
            "change" => Ok(FailureMode::Change),
            other => Err(format!(
                "unknown mode {other:?}: expected all, tag or change"
            )),
        }
    }
}

/// Options for [`PgEngine::deploy`].
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
    /// The project revision being deployed (e.g. `main@sha1:…`), recorded with the run.
    pub revision: Option<String>,
}

/// Options for [`PgEngine::revert`].
#[derive(Clone, Debug, Default)]
pub struct RevertOptions {
    /// Revert the changes after this one; `None` reverts everything deployed.
    pub to: Option<String>,
    /// Script variables.
    pub variables: BTreeMap<String, String>,
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
    /// Changes deployed, in order.
    pub deployed: Vec<String>,
    /// True when nothing was pending.
    pub up_to_date: bool,
    /// True when scripts were not run (log-only).
    pub log_only: bool,
}

/// What a revert did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RevertReport {
    /// The project.
    pub project: String,
    /// Changes reverted, in revert order.
    pub reverted: Vec<String>,
}

/// The outcome of verifying one change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VerifyResult {
    /// The change.
    pub change: String,
    /// `ok`, `failed`, `no verify script` or `not in plan`.
    pub result: String,
    /// The failure, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// What verify found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// The project.
    pub project: String,
    /// One entry per deployed change, in deploy order.
    pub changes: Vec<VerifyResult>,
    /// Planned changes not deployed.
    pub undeployed: Vec<String>,
}

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
    /// Who holds the project's lock right now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<LockHolder>,
}

/// A connection to one PostgreSQL database, acting for one committer.
pub struct PgEngine {
    client: Client,
    registry: Registry,
    committer: Committer,
    host: String,
}

/// A change ready to deploy: its plan entry and its scripts, loaded before anything runs.
struct Prepared<'p> {
    change: &'p Change,
    deploy: Script,
    verify: Option<Script>,
    revert: Option<Script>,
    script_hash: Option<String>,
    requires: Vec<(String, String)>,
}

impl PgEngine {
    /// Connects to `url` (a `postgres://` URL or a libpq key/value string). Errors show the
    /// target redacted.
    pub async fn connect(url: &str, registry: Registry, committer: Committer) -> Result<PgEngine> {
        let config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| Error::Connect {
                    target: redact_url(url),
                    message: db_error_message(&e),
                })?;
        Self::connect_config(&config, &redact_url(url), registry, committer).await
    }

    /// Connects with a prepared config; `shown` is how to name the target in errors.
    pub async fn connect_config(
        config: &tokio_postgres::Config,
        shown: &str,
        registry: Registry,
        committer: Committer,
    ) -> Result<PgEngine> {
        let mut config = config.clone();
        if config.get_application_name().is_none() {
            config.application_name("switchyard");
        }
        let (client, connection) = config.connect(NoTls).await.map_err(|e| Error::Connect {
            target: shown.to_string(),
            message: db_error_message(&e),
        })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "Connection closed");
            }
        });
        let host = hostname();
        Ok(PgEngine {
            client,
            registry,
            committer,
            host,
        })
    }

    /// The underlying client, for callers that need to inspect the database.
    pub fn client(&self) -> &Client {
        &self.client
    }

    // === status and log ===

    /// Compares the plan with the registry.
    pub async fn status(&self, project: &Project) -> Result<Status> {
        let deployed = self.registry.deployed(&self.client, project.name()).await?;
        let prefix = matching_prefix(project, &deployed);
        let diverged: Vec<String> = deployed[prefix..].iter().map(|c| c.name.clone()).collect();
        let pending: Vec<String> = if diverged.is_empty() {
            project.plan.changes[prefix..]
                .iter()
                .map(|c| c.name.clone())
                .collect()
        } else {
            Vec::new()
        };
        let locked_by = self
            .registry
            .lock_holder(&self.client, project.name())
            .await?;
        Ok(Status {
            project: project.name().to_string(),
            up_to_date: pending.is_empty() && diverged.is_empty(),
            deployed: deployed.iter().map(|c| c.name.clone()).collect(),
            last_change: deployed.last().cloned(),
            pending,
            diverged,
            locked_by,
        })
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

    // === deploy ===

    /// Deploys pending changes up to `options.to`. Everything that can be checked is checked
    /// before anything runs: the plan against the registry, dependencies, and every script.
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

    async fn deploy_locked(
        &mut self,
        project: &Project,
        options: &DeployOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<DeployReport> {
        let plan = &project.plan;
        let deployed = self.registry.deployed(&self.client, project.name()).await?;
        let start = check_prefix(project, &deployed)?;
        let end = match &options.to {
            Some(to) => {
                let index = resolve_to(project, to)?;
                if index + 1 < start {
                    return Err(Error::Target {
                        plan: plan.path.clone(),
                        message: format!(
                            "--to {to}: already deployed past it (use revert --to {to} to go back)"
                        ),
                    });
                }
                index + 1
            }
            None => plan.changes.len(),
        };
        let mut report = DeployReport {
            project: project.name().to_string(),
            log_only: options.log_only,
            ..DeployReport::default()
        };
        if start >= end {
            report.up_to_date = true;
            return Ok(report);
        }
        let variables = merged_variables(project, &options.variables);
        let mut prepared = Vec::with_capacity(end - start);
        for index in start..end {
            prepared.push(
                self.prepare(project, index, &deployed, options, &variables)
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
        for (i, change) in prepared.iter().enumerate() {
            progress(&Progress {
                operation: "deploy",
                index: i + 1,
                total,
                change: change.change.name.clone(),
            });
            let outcome = if options.log_only {
                self.record_only(project, change).await
            } else {
                self.deploy_one(project, change).await
            };
            if let Err(failure) = outcome {
                let failure = match failure {
                    Step::Failed(f) => f,
                    Step::Fatal(error) => return Err(error),
                };
                return Err(self
                    .handle_failure(project, &prepared, i, failure, options.mode, run)
                    .await);
            }
            report.deployed.push(change.change.name.clone());
        }
        self.registry
            .finish_deployment(&self.client, run, "succeeded", total as i32, "")
            .await?;
        Ok(report)
    }

    /// Reads a change's scripts and resolves its dependencies against the plan and registry.
    async fn prepare<'p>(
        &self,
        project: &'p Project,
        index: usize,
        deployed: &[DeployedChange],
        options: &DeployOptions,
        variables: &BTreeMap<String, String>,
    ) -> Result<Prepared<'p>> {
        let change = &project.plan.changes[index];
        let deploy_path = project.script_path(change, ScriptKind::Deploy);
        let bytes = std::fs::read(&deploy_path).map_err(|source| Error::Io {
            path: deploy_path.clone(),
            source,
        })?;
        let script_hash = Some(sha1_hex(&bytes));
        let deploy = if options.log_only {
            Script::default()
        } else {
            Script::load(&deploy_path, variables)?
        };
        check_transaction_control(&deploy)?;
        let verify = if options.verify && !options.log_only {
            let path = project.script_path(change, ScriptKind::Verify);
            if path.exists() {
                Some(Script::load(&path, variables)?)
            } else {
                None
            }
        } else {
            None
        };
        // The revert script is needed if this change must be undone by the failure mode.
        let revert_path = project.script_path(change, ScriptKind::Revert);
        let revert = if !options.log_only && revert_path.exists() {
            let script = Script::load(&revert_path, variables)?;
            check_transaction_control(&script)?;
            Some(script)
        } else {
            None
        };
        let requires = self.resolve_requires(project, index, change).await?;
        self.check_conflicts(project, index, change, deployed)
            .await?;
        Ok(Prepared {
            change,
            deploy,
            verify,
            revert,
            script_hash,
            requires,
        })
    }

    async fn resolve_requires(
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

    async fn check_conflicts(
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

    async fn ensure_registry(&mut self, project: &Project) -> Result<()> {
        let holder = self.holder("deploy");
        let tx = self
            .client
            .transaction()
            .await
            .map_err(db("starting a transaction"))?;
        self.registry.ensure(&tx, &self.committer).await?;
        self.registry
            .register_project(
                &tx,
                project.name(),
                project.plan.uri.as_deref(),
                &self.committer,
            )
            .await?;
        self.registry
            .record_lock(&tx, project.name(), &holder)
            .await?;
        tx.commit().await.map_err(db("creating the registry"))?;
        Ok(())
    }

    /// Runs one change and records it. `Err(Step::Failed)` means the change did not deploy
    /// and the database is as it was before it (for transactional scripts).
    async fn deploy_one(&mut self, project: &Project, change: &Prepared<'_>) -> Result<(), Step> {
        let record = change_record(project, change);
        if change.deploy.needs_autocommit() {
            run_autocommit(&self.client, &change.deploy, &change.change.name).await?;
            let verified = match &change.verify {
                Some(verify) => self.run_verify(verify, &change.change.name).await,
                None => Ok(()),
            };
            if let Err(failure) = verified {
                // The deploy script committed; undo it as Sqitch does, with the revert script.
                if let Some(revert) = &change.revert {
                    let _ = run_autocommit(&self.client, revert, &change.change.name).await;
                }
                return Err(Step::Failed(failure));
            }
            let tx = self
                .client
                .transaction()
                .await
                .map_err(fatal("starting a transaction"))?;
            self.registry
                .log_deploy(&tx, &record, &self.committer)
                .await
                .map_err(|e| Step::Fatal(e.into()))?;
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
                .map_err(|e| Step::Fatal(e.into()))?;
            run_in_transaction(&tx, &change.deploy, &change.change.name, false).await?;
            if let Some(verify) = &change.verify {
                tx.batch_execute("SAVEPOINT switchyard_verify")
                    .await
                    .map_err(fatal("verifying"))?;
                run_in_transaction(&tx, verify, &change.change.name, true).await?;
                tx.batch_execute("ROLLBACK TO SAVEPOINT switchyard_verify")
                    .await
                    .map_err(fatal("verifying"))?;
            }
            as_deployer(&tx).await?;
            self.registry
                .log_deploy(&tx, &record, &self.committer)
                .await
                .map_err(|e| Step::Fatal(e.into()))?;
            tx.commit().await.map_err(|e| {
                // A deferred constraint can fail at commit: that is the change's failure.
                Step::Failed(Failure {
                    change: change.change.name.clone(),
                    path: change
                        .deploy
                        .statements
                        .last()
                        .map(|s| s.path.clone())
                        .unwrap_or_default(),
                    line: change.deploy.statements.last().map_or(1, |s| s.line),
                    message: format!("at commit: {}", db_error_message(&e)),
                })
            })?;
        }
        reset_session(&self.client).await.map_err(Step::Fatal)?;
        Ok(())
    }

    async fn record_only(&mut self, project: &Project, change: &Prepared<'_>) -> Result<(), Step> {
        let record = change_record(project, change);
        let tx = self
            .client
            .transaction()
            .await
            .map_err(fatal("starting a transaction"))?;
        self.registry
            .log_deploy(&tx, &record, &self.committer)
            .await
            .map_err(|e| Step::Fatal(e.into()))?;
        tx.commit().await.map_err(fatal("recording a change"))?;
        Ok(())
    }

    async fn run_verify(&mut self, verify: &Script, change: &str) -> Result<(), Failure> {
        let tx = match self.client.transaction().await {
            Ok(tx) => tx,
            Err(e) => {
                return Err(Failure {
                    change: change.into(),
                    path: Default::default(),
                    line: 0,
                    message: db_error_message(&e),
                });
            }
        };
        let result = run_in_transaction(&tx, verify, change, true).await;
        let _ = tx.rollback().await;
        match result {
            Ok(()) => Ok(()),
            Err(Step::Failed(f)) => Err(f),
            Err(Step::Fatal(e)) => Err(Failure {
                change: change.into(),
                path: Default::default(),
                line: 0,
                message: e.to_string(),
            }),
        }
    }

    /// Logs the failure, reverts what the failure mode says, and builds the error.
    async fn handle_failure(
        &mut self,
        project: &Project,
        prepared: &[Prepared<'_>],
        failed_at: usize,
        failure: Failure,
        mode: FailureMode,
        run: i64,
    ) -> Error {
        let record = change_record(project, &prepared[failed_at]);
        if let Err(error) = self
            .registry
            .log_fail(&self.client, &record, &self.committer)
            .await
        {
            return error.into();
        }
        // Which of this run's deployed changes stay.
        let keep = match mode {
            FailureMode::Change => failed_at,
            FailureMode::All => 0,
            FailureMode::Tag => prepared[..failed_at]
                .iter()
                .rposition(|p| !p.change.tags.is_empty())
                .map_or(0, |i| i + 1),
        };
        let mut reverted = Vec::new();
        // One read: reverting a change removes only its own row.
        let deployed = match self.registry.deployed(&self.client, project.name()).await {
            Ok(d) => d,
            Err(error) => return error.into(),
        };
        for change in prepared[keep..failed_at].iter().rev() {
            let Some(row) = deployed.iter().find(|d| d.id == change.change.id) else {
                continue;
            };
            match self.revert_one(project, row, change.revert.as_ref()).await {
                Ok(()) => reverted.push(change.change.name.clone()),
                Err(Step::Failed(f)) => {
                    return Error::RevertFailed {
                        failure: f,
                        reverted,
                    };
                }
                Err(Step::Fatal(error)) => return error,
            }
        }
        let kept = prepared[..keep]
            .iter()
            .map(|p| p.change.name.clone())
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

    // === revert ===

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

    async fn revert_locked(
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
            let script = Script::load(&path, &variables)?;
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
            match self.revert_one(project, row, Some(script)).await {
                Ok(()) => report.reverted.push(row.name.clone()),
                Err(Step::Failed(failure)) => {
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
                Err(Step::Fatal(error)) => return Err(error),
            }
        }
        self.registry
            .finish_deployment(&self.client, run, "succeeded", total as i32, "")
            .await?;
        Ok(report)
    }

    async fn revert_one(
        &mut self,
        project: &Project,
        row: &DeployedChange,
        script: Option<&Script>,
    ) -> Result<(), Step> {
        let empty = Script::default();
        let script = script.unwrap_or(&empty);
        if script.needs_autocommit() {
            run_autocommit(&self.client, script, &row.name).await?;
            let tx = self
                .client
                .transaction()
                .await
                .map_err(fatal("starting a transaction"))?;
            self.registry
                .log_revert(&tx, row, project.name(), &self.committer)
                .await
                .map_err(|e| Step::Fatal(e.into()))?;
            tx.commit().await.map_err(fatal("recording a revert"))?;
        } else {
            let tx = self
                .client
                .transaction()
                .await
                .map_err(fatal("starting a transaction"))?;
            self.registry
                .lock_changes(&tx)
                .await
                .map_err(|e| Step::Fatal(e.into()))?;
            run_in_transaction(&tx, script, &row.name, false).await?;
            as_deployer(&tx).await?;
            self.registry
                .log_revert(&tx, row, project.name(), &self.committer)
                .await
                .map_err(|e| Step::Fatal(e.into()))?;
            tx.commit().await.map_err(fatal("recording a revert"))?;
        }
        reset_session(&self.client).await.map_err(Step::Fatal)?;
        Ok(())
    }

    // === verify ===

    /// Runs the verify script of every deployed change, each in a transaction that is
    /// rolled back.
    pub async fn verify(
        &mut self,
        project: &Project,
        variables: &BTreeMap<String, String>,
    ) -> Result<VerifyReport> {
        let plan = &project.plan;
        let deployed = self.registry.deployed(&self.client, project.name()).await?;
        let variables = merged_variables(project, variables);
        let mut report = VerifyReport {
            project: project.name().to_string(),
            ..VerifyReport::default()
        };
        let mut failures = Vec::new();
        for row in &deployed {
            let Some(index) = plan.index_of_id(&row.id) else {
                report.changes.push(VerifyResult {
                    change: row.name.clone(),
                    result: "not in plan".into(),
                    failure: None,
                });
                continue;
            };
            let path = project.script_path(&plan.changes[index], ScriptKind::Verify);
            if !path.exists() {
                report.changes.push(VerifyResult {
                    change: row.name.clone(),
                    result: "no verify script".into(),
                    failure: None,
                });
                continue;
            }
            let script = Script::load(&path, &variables)?;
            match self.run_verify(&script, &row.name).await {
                Ok(()) => report.changes.push(VerifyResult {
                    change: row.name.clone(),
                    result: "ok".into(),
                    failure: None,
                }),
                Err(failure) => {
                    failures.push(failure.clone());
                    report.changes.push(VerifyResult {
                        change: row.name.clone(),
                        result: "failed".into(),
                        failure: Some(failure),
                    });
                }
            }
        }
        let deployed_ids: std::collections::HashSet<&str> =
            deployed.iter().map(|d| d.id.as_str()).collect();
        report.undeployed = plan
            .changes
            .iter()
            .filter(|c| !deployed_ids.contains(c.id.as_str()))
            .map(|c| c.name.clone())
            .collect();
        if !failures.is_empty() {
            return Err(Error::VerifyFailed { failures });
        }
        Ok(report)
    }

    // === locking ===

    /// Takes the project's advisory lock without waiting, or says who holds it.
    async fn lock(&mut self, project: &str, operation: &str) -> Result<()> {
        if self.registry.try_lock(&self.client, project).await? {
            tracing::debug!(project, operation, "Lock taken");
            return Ok(());
        }
        let holder = self.registry.lock_holder(&self.client, project).await?;
        Err(Error::Locked {
            project: project.to_string(),
            holder,
        })
    }

    async fn unlock(&mut self, project: &str) {
        if let Err(error) = self.registry.unlock(&self.client, project).await {
            // The session still holds it; it goes when the connection closes.
            tracing::warn!(%error, project, "Unlock failed");
        }
    }

    fn holder(&self, operation: &str) -> LockHolder {
        LockHolder {
            holder: format!("{} <{}>", self.committer.name, self.committer.email),
            host: self.host.clone(),
            pid: std::process::id() as i32,
            operation: operation.to_string(),
            started_at: String::new(),
        }
    }
}

/// The outcome of one step: the change failed (a script error, reported), or the engine
/// itself could not go on.
enum Step {
    Failed(Failure),
    Fatal(Error),
}

impl From<Failure> for Step {
    fn from(f: Failure) -> Self {
        Step::Failed(f)
    }
}

fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |source| Error::Db { context, source }
}

fn fatal(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Step {
    move |source| Step::Fatal(Error::Db { context, source })
}

/// Runs a script's statements inside the caller's transaction. The script's own `BEGIN` /
/// `COMMIT` are absorbed; in verify scripts a `ROLLBACK` is too (the caller rolls back).
async fn run_in_transaction(
    tx: &tokio_postgres::Transaction<'_>,
    script: &Script,
    change: &str,
    verify: bool,
) -> Result<(), Step> {
    for statement in &script.statements {
        match statement.kind {
            StatementKind::Begin | StatementKind::Commit => continue,
            StatementKind::Rollback if verify => continue,
            _ => {}
        }
        if let Err(error) = tx.batch_execute(&statement.sql).await {
            return Err(Step::Failed(statement_failure(change, statement, &error)));
        }
    }
    Ok(())
}

/// Replays a script as psql would, statement by statement in autocommit, honouring its
/// own `BEGIN` / `COMMIT`. Used only for scripts that cannot run in one transaction.
async fn run_autocommit(client: &Client, script: &Script, change: &str) -> Result<(), Step> {
    let mut open = false;
    for statement in &script.statements {
        let result = client.batch_execute(&statement.sql).await;
        match statement.kind {
            StatementKind::Begin => open = true,
            StatementKind::Commit | StatementKind::Rollback => open = false,
            _ => {}
        }
        if let Err(error) = result {
            if open {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            return Err(Step::Failed(statement_failure(change, statement, &error)));
        }
    }
    if open {
        let _ = client.batch_execute("COMMIT").await;
    }
    Ok(())
}

/// A script may `SET ROLE` inside the change's transaction; the registry rows that commit
/// with it are written as the deployer.
async fn as_deployer(tx: &tokio_postgres::Transaction<'_>) -> Result<(), Step> {
    tx.batch_execute("RESET ROLE")
        .await
        .map_err(fatal("resetting the role"))
}

/// psql starts each script in a fresh session; settings a script changes must not leak
/// into the next change.
async fn reset_session(client: &Client) -> Result<()> {
    client
        .batch_execute("RESET ALL")
        .await
        .map_err(db("resetting the session"))
}

fn statement_failure(
    change: &str,
    statement: &Statement,
    error: &tokio_postgres::Error,
) -> Failure {
    // Point at the exact line inside a multi-line statement when the server says where.
    let mut line = statement.line;
    if let Some(tokio_postgres::error::ErrorPosition::Original(position)) =
        error.as_db_error().and_then(|db| db.position())
    {
        let upto: String = statement
            .sql
            .chars()
            .take((*position as usize).saturating_sub(1))
            .collect();
        line += upto.matches('\n').count();
    }
    Failure {
        change: change.to_string(),
        path: statement.path.clone(),
        line,
        message: db_error_message(error),
    }
}

/// A change that ends its own transaction with `ROLLBACK`, or uses two-phase commit,
/// cannot be recorded atomically with its registry rows: refuse it up front.
fn check_transaction_control(script: &Script) -> Result<()> {
    if let Some(s) = script.first(StatementKind::TwoPhase) {
        return Err(Error::Script {
            path: s.path.clone(),
            line: s.line,
            message: "two-phase commit statements are not allowed in a change script".into(),
        });
    }
    if let Some(s) = script.first(StatementKind::Rollback) {
        return Err(Error::Script {
            path: s.path.clone(),
            line: s.line,
            message: "ROLLBACK in a deploy or revert script would discard the change; only verify scripts may roll back".into(),
        });
    }
    Ok(())
}

fn change_record<'a>(project: &'a Project, prepared: &'a Prepared<'_>) -> ChangeRecord<'a> {
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

/// How many deployed changes match the plan's first changes, id for id.
fn matching_prefix(project: &Project, deployed: &[DeployedChange]) -> usize {
    deployed
        .iter()
        .zip(&project.plan.changes)
        .take_while(|(d, p)| d.id == p.id)
        .count()
}

/// The number of deployed changes, after checking they are exactly the plan's first ones.
fn check_prefix(project: &Project, deployed: &[DeployedChange]) -> Result<usize> {
    let prefix = matching_prefix(project, deployed);
    if let Some(row) = deployed.get(prefix) {
        return Err(Error::Diverged {
            plan: project.plan.path.clone(),
            name: row.name.clone(),
            id: row.id.clone(),
            position: prefix + 1,
        });
    }
    Ok(prefix)
}

/// The plan index a `--to` target names, or why it names nothing.
fn resolve_to(project: &Project, to: &str) -> Result<usize> {
    project.plan.resolve(to).map_err(|e| Error::Target {
        plan: project.plan.path.clone(),
        message: format!("--to {to}: {e}"),
    })
}

/// Index of the plan change a local dependency points at, looking only before `before`.
fn resolve_local(project: &Project, dep: &Dependency, before: usize) -> Option<usize> {
    let plan = &project.plan;
    let earlier = &plan.changes[..before];
    if let Some(id) = &dep.id {
        return earlier.iter().position(|c| &c.id == id);
    }
    let tagged = |tag: &str| {
        earlier
            .iter()
            .position(|c| c.tags.iter().any(|t| t.name == tag))
    };
    match (&dep.change, &dep.tag) {
        (Some(name), Some(tag)) => {
            let at = tagged(tag)?;
            earlier[..=at].iter().rposition(|c| &c.name == name)
        }
        (Some(name), None) => earlier.iter().rposition(|c| &c.name == name),
        (None, Some(tag)) => tagged(tag),
        (None, None) => None,
    }
}

fn merged_variables(
    project: &Project,
    overrides: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut variables = project.variables.clone();
    variables.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    variables
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(bytes))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}
