//! Deploying, reverting and verifying a plan's changes as Sqitch does, each change's script
//! atomic with its registry rows: [`Deployer`] gathers, [`schedule`] decides (pure),
//! `runner` runs.
//! Must not touch blue-green schemas ([`crate::engine::bluegreen`]) or know of Kubernetes.

mod deploy;
mod record;
mod revert;
mod runner;
pub mod schedule;
mod status;
mod verify;

pub use deploy::{DeployOptions, DeployReport, Progress};
pub use revert::{RevertOptions, RevertReport};
pub use status::{ChangeStatus, Status};
pub use verify::{VerifyReport, VerifyResult};

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::engine::{Error, Result};
use crate::project::{Change, Dependency, Project};
use crate::registry::{Committer, DeployedChange, LockHolder, Registry};
use deploy::Prepared;
use record::{Write, change_record, write_registry};
use runner::*;

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

/// Deploys, reverts and verifies a project's changes in one PostgreSQL database, acting
/// for one committer.
pub struct Deployer {
    client: Client,
    registry: Registry,
    committer: Committer,
    host: String,
}

impl Deployer {
    /// Connects to `target`; errors name it redacted.
    pub async fn connect(
        target: &crate::pg::Target,
        registry: Registry,
        committer: Committer,
    ) -> Result<Deployer> {
        let client = target.connect().await?;
        Ok(Deployer {
            client,
            registry,
            committer,
            host: crate::pg::hostname(),
        })
    }

    /// The underlying client, for callers that need to inspect the database.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The registry it reads and writes.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Who it records as the committer.
    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    pub(super) async fn ensure_registry(&mut self, project: &Project) -> Result<()> {
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

    /// Takes the project's advisory lock without waiting, or says who holds it.
    pub(super) async fn lock(&mut self, project: &str, operation: &str) -> Result<()> {
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

    pub(super) async fn unlock(&mut self, project: &str) {
        if let Err(error) = self.registry.unlock(&self.client, project).await {
            // The session still holds it; it goes when the connection closes.
            tracing::warn!(%error, project, "Unlock failed");
        }
    }

    /// Takes the project's lock for this session until [`Deployer::release`] or the end of
    /// the connection, so that what a caller checked (a plan's digest) cannot move before
    /// it acts. Deploys on this session take the lock again (advisory locks nest).
    pub async fn hold(&mut self, project: &Project, operation: &str) -> Result<()> {
        self.ensure_registry(project).await?;
        self.lock(project.name(), operation).await
    }

    /// Releases what [`Deployer::hold`] took.
    pub async fn release(&mut self, project: &Project) {
        self.unlock(project.name()).await;
    }

    /// Records in `switchyard.deployments` that the plan `digest` of `revision` was
    /// approved by `by` at `at` (an `approve` run), before it runs.
    pub async fn record_approval(
        &self,
        project: &Project,
        revision: Option<&str>,
        digest: &str,
        by: &str,
        at: &str,
    ) -> Result<()> {
        let run = self
            .registry
            .start_deployment(
                &self.client,
                project.name(),
                "approve",
                revision,
                &self.committer,
            )
            .await?;
        let message = format!("plan {digest} approved by {by} at {at}");
        self.registry
            .finish_deployment(&self.client, run, "succeeded", 0, &message)
            .await?;
        Ok(())
    }

    pub(super) fn holder(&self, operation: &str) -> LockHolder {
        LockHolder {
            holder: format!("{} <{}>", self.committer.name, self.committer.email),
            host: self.host.clone(),
            pid: std::process::id() as i32,
            operation: operation.to_string(),
            started_at: String::new(),
        }
    }
}

fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |source| Error::Db { context, source }
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
