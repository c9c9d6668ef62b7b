//! The PostgreSQL engine over tokio-postgres.
//!
//! Each change's script and its registry rows commit in one transaction. The script's own
//! `BEGIN` / `COMMIT` are absorbed into that transaction. A script holding a statement that
//! cannot run in a transaction block is replayed as psql would run it, in autocommit, and
//! the registry records it only after it succeeded.

use std::collections::BTreeMap;
use std::path::Path;

use tokio_postgres::{Client, NoTls};

use super::error::{Error, Failure, Result, db_error_message, redact_url};
use super::script::{Script, Statement, StatementKind};
use super::workflow::{self, Action, Declined, Facts, Place, Refusal};
use crate::project::{Change, Dependency, Project, ScriptKind};
use crate::registry::workflow::{self as records, EventKind, Record, State, Transition};
use crate::registry::{
    ChangeRecord, Committer, DeployedChange, LockHolder, Position, Registry, TagRecord,
};

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
    /// The project revision being deployed (e.g. `main@sha1:…`), recorded with the run and
    /// with workflow states.
    pub revision: Option<String>,
    /// Act on development workflow files (`allowRework`, `--allow-rework`). Without it, a
    /// revision with workflow files for changes this database has not deployed as planned
    /// is refused before anything runs.
    pub allow_rework: bool,
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

/// A connection to one PostgreSQL database, acting for one committer.
pub struct PgEngine {
    client: Client,
    registry: Registry,
    committer: Committer,
    host: String,
}

/// A step ready to run: its plan entry and its scripts, loaded before anything runs.
struct Prepared<'p> {
    change: &'p Change,
    step: workflow::Step,
    /// The script the step runs: the deploy script (or its replacement), the cleanup
    /// script; empty for marks, superseded instances and log-only runs.
    script: Script,
    /// What a replace runs first to undo the deployed version.
    undo: Option<Script>,
    verify: Option<Script>,
    /// Undoes a deploy step when the failure mode says so.
    revert: Option<Script>,
    script_hash: Option<String>,
    requires: Vec<(String, String)>,
    /// The change's registry row, for steps on a deployed change.
    row: Option<DeployedChange>,
    /// The change's workflow record before this run, restored if the step is reverted.
    previous: Option<Record>,
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

/// What a step writes to Sqitch's registry, in the transaction that runs its scripts.
enum Write<'a> {
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

/// How often the server checks, while a statement runs, that the client is still there.
const CLIENT_CHECK: &str = "-c client_connection_check_interval=1000";

/// Connects asking the server to watch the client's socket while statements run.
///
/// NB: PostgreSQL notices a vanished client (a killed pod, a SIGKILLed CLI) only when it
/// next writes to it, so a deployer killed in a long statement kept the project lock (and
/// its transaction) until that statement ended (issue #17). From PostgreSQL 14, on Linux,
/// `client_connection_check_interval` makes it notice within a second. It is a startup
/// option, so `RESET ALL` keeps it. Servers that refuse it (older, other platforms,
/// Materialize) get the connection without it.
async fn connect_checked(
    mut config: tokio_postgres::Config,
) -> std::result::Result<
    (
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
    tokio_postgres::Error,
> {
    let plain = config.clone();
    let options = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {CLIENT_CHECK}"),
        _ => CLIENT_CHECK.to_string(),
    };
    config.options(&options);
    match config.connect(NoTls).await {
        Err(e)
            if e.code().is_some_and(|c| {
                [
                    tokio_postgres::error::SqlState::UNDEFINED_OBJECT,
                    tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE,
                    tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED,
                ]
                .contains(c)
            }) =>
        {
            tracing::debug!(error = %e, "Connecting without client_connection_check_interval");
            plain.connect(NoTls).await
        }
        other => other,
    }
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
        let (client, connection) = connect_checked(config).await.map_err(|e| Error::Connect {
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
        let alignment = workflow::align(&facts).ok();
        let mut next: BTreeMap<usize, &'static str> = BTreeMap::new();
        let mut diverged = Vec::new();
        let mut refused = None;
        match workflow::schedule(&facts) {
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
    /// without `allowRework` must refuse (see [`workflow::rework_not_allowed`]).
    pub async fn rework_not_allowed(&self, project: &Project) -> Result<Option<Refusal>> {
        let deployed = self.registry.deployed(&self.client, project.name()).await?;
        let records =
            records::records(&self.client, self.registry.workflow_scope(project.name())).await?;
        Ok(workflow::rework_not_allowed(project, &deployed, &records))
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

    // === deploy ===

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

    async fn deploy_locked(
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
        let schedule = workflow::schedule(&facts).map_err(|declined| match declined {
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
                    Step::Failed(f) => f,
                    Step::Fatal(error) => return Err(error),
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
    async fn prepare<'p>(
        &self,
        project: &'p Project,
        step: workflow::Step,
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
        let runs_change = match &step.action {
            Action::Deploy { superseded_by, .. } => superseded_by.is_none(),
            Action::Replace { .. } => true,
            Action::Cleanup { .. } | Action::Mark => false,
        };
        let verify = if runs_change && options.verify && !options.log_only {
            let path = project.script_path(change, ScriptKind::Verify);
            if path.exists() {
                Some(Script::load_within(
                    &path,
                    variables,
                    project.include_root.as_deref(),
                )?)
            } else {
                None
            }
        } else {
            None
        };
        // A deploy step's revert script, for when the failure mode must undo it.
        let revert_path = project.script_path(change, ScriptKind::Revert);
        let revert = if runs_change
            && !options.log_only
            && matches!(step.action, Action::Deploy { .. })
            && revert_path.exists()
        {
            let script =
                Script::load_within(&revert_path, variables, project.include_root.as_deref())?;
            check_transaction_control(&script)?;
            Some(script)
        } else {
            None
        };
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

    /// Runs one prepared step and records it. `Err(Step::Failed)` means the step did not
    /// happen and the database is as it was before it (for transactional scripts).
    async fn run_prepared(
        &mut self,
        project: &Project,
        step: &Prepared<'_>,
        revision: Option<&str>,
    ) -> Result<(), Step> {
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
                    .ok_or_else(|| Step::Fatal(not_deployed(project, step.change)))?;
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
                    .ok_or_else(|| Step::Fatal(not_deployed(project, step.change)))?;
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
    async fn run_step(
        &mut self,
        project: &Project,
        name: &str,
        scripts: &[&Script],
        verify: Option<&Script>,
        undo: Option<&Script>,
        write: Write<'_>,
        transition: Option<&Transition>,
        revision: Option<&str>,
    ) -> Result<(), Step> {
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
                return Err(Step::Failed(failure));
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
                .map_err(|e| Step::Fatal(e.into()))?;
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
                Some(statement) => Step::Failed(Failure {
                    change: name.to_string(),
                    path: statement.path.clone(),
                    line: statement.line,
                    message: format!("at commit: {}", db_error_message(&e)),
                }),
                None => Step::Fatal(Error::Db {
                    context: "recording a change",
                    source: e,
                }),
            })?;
        }
        reset_session(&self.client).await.map_err(Step::Fatal)?;
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

    /// Logs the failure, reverts what the failure mode says, and builds the error. Only
    /// this run's deploy steps are reverted; cleanups, replaces and marks it completed stay.
    async fn handle_failure(
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
                Err(Step::Failed(f)) => {
                    return Error::RevertFailed {
                        failure: f,
                        reverted,
                    };
                }
                Err(Step::Fatal(error)) => return error,
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

    /// Reverts one deployed change with `script` (nothing runs when `None`) and records it;
    /// its workflow state goes back to `restore`, or is forgotten.
    async fn revert_one(
        &mut self,
        project: &Project,
        row: &DeployedChange,
        script: Option<&Script>,
        restore: Option<&Record>,
    ) -> Result<(), Step> {
        let scripts: Vec<&Script> = script.into_iter().collect();
        let write = Write::Revert { row, restore };
        self.run_step(project, &row.name, &scripts, None, None, write, None, None)
            .await
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
            let script = Script::load_within(&path, &variables, project.include_root.as_deref())?;
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

/// Writes what a step records: Sqitch's rows, then switchyard's workflow state.
#[allow(clippy::too_many_arguments)]
async fn write_registry(
    registry: &Registry,
    who: &Committer,
    tx: &tokio_postgres::Transaction<'_>,
    project: &Project,
    write: &Write<'_>,
    transition: Option<&Transition>,
    revision: Option<&str>,
) -> Result<(), Step> {
    let scope = registry.workflow_scope(project.name());
    let fatal = |e: crate::registry::Error| Step::Fatal(e.into());
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

/// A step meant for a deployed change found it not deployed.
fn not_deployed(project: &Project, change: &Change) -> Error {
    Error::Target {
        plan: project.plan.path.clone(),
        message: format!("change {} is not deployed here", change.name),
    }
}

/// The error for deployed row `row`, which is not where the plan has it.
fn diverged(project: &Project, deployed: &[DeployedChange], row: usize) -> Error {
    let change = &deployed[row];
    Error::Diverged {
        plan: project.plan.path.clone(),
        name: change.name.clone(),
        id: change.id.clone(),
        position: row + 1,
    }
}

/// The plan index a `--to` target names, or why it names nothing.
fn resolve_to(project: &Project, to: &str) -> Result<usize> {
    project.plan.resolve(to).map_err(|e| Error::Target {
        plan: project.plan.path.clone(),
        message: format!("--to {to}: {e}"),
    })
}

/// Index of the plan change a local dependency points at, looking only before `before`.
pub(super) fn resolve_local(project: &Project, dep: &Dependency, before: usize) -> Option<usize> {
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
