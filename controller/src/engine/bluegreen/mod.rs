//! Blue/green for a project's stateless objects: stage `objects/` into `<schema>__sy_<id>`,
//! promote by an atomic swap (or a layer repoint), roll back to a retained set.
//! [`BlueGreen`] gathers and acts; [`sql`], [`layer_sql`], [`guards`] and [`sets`] decide.
//! Must not touch stable schemas (the plan's changes are [`crate::engine::changes`]'s) or
//! know of Kubernetes.

pub mod catalog;
mod error;
pub mod guards;
pub mod layer_sql;
pub mod materialize;
mod promote;
mod rollback;
mod sets;
mod shared_database;
pub mod sql;
mod stage;
mod swap;

pub use catalog::Catalog;
pub use error::{Error, Result};
pub use promote::PromoteOptions;
use sets::{CANDIDATES_KEPT, layer_sets, verified_candidate};
pub use sets::{
    RetainedSet, SchemaDiff, Sets, diff_objects, object_hashes, schemas_to_stage, sets,
};
pub use stage::{StageOptions, StageReport, StageStep};
pub use swap::SwapReport;
use swap::{Move, SwapPlan, swap_back_plan, swap_plan};

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::project::Project;
use crate::project::objects::Objects;
use crate::registry::bluegreen::{self as pointers, LayerPointer, Pointer, Role};
use crate::registry::{Committer, Registry};

pub(super) fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |source| Error::Db { context, source }
}

/// [`Error::Db`] from a context and an error, for [`crate::pg::transaction`].
pub(super) fn db_error(context: &'static str, source: tokio_postgres::Error) -> Error {
    Error::Db { context, source }
}

/// Blue/green operations on one connection, for one project and committer.
pub struct BlueGreen<'c> {
    pub(super) client: &'c Client,
    pub(super) registry: Registry,
    pub(super) committer: Committer,
    /// `Some(suffix)`: serve layers `<schema><suffix>` over physical sets that never move
    /// ([`layer_sql`](super::layer_sql)); `None`: rename schemas into place.
    pub(super) suffix: Option<String>,
}

/// The pointers of a project, read once per operation.
pub(super) struct State {
    /// `switchyard.schema_pointers`: every physical set.
    pub(super) all: Vec<Pointer>,
    /// `switchyard.layers`: every Environment's layers (empty without layers).
    pub(super) layers: Vec<LayerPointer>,
}

impl<'c> BlueGreen<'c> {
    /// Works on `client` (e.g. [`Deployer::client`](crate::engine::Deployer::client)).
    pub fn new(client: &'c Client, registry: Registry, committer: Committer) -> BlueGreen<'c> {
        BlueGreen {
            client,
            registry,
            committer,
            suffix: None,
        }
    }

    /// Serves the blue-green schemas as layers `<schema><suffix>` (an Environment's
    /// `schemaSuffix`, for environments that share a database); `None` keeps renaming.
    pub fn layered(mut self, suffix: Option<String>) -> BlueGreen<'c> {
        self.suffix = suffix;
        self
    }

    /// The name applications query for a logical schema: the layer, or the schema itself.
    pub fn served(&self, logical: &str) -> String {
        match &self.suffix {
            Some(suffix) => layer_sql::layer_name(logical, suffix),
            None => logical.to_string(),
        }
    }

    pub(super) async fn state(&self, project: &Project) -> Result<State> {
        let all = pointers::pointers(self.client, project.name()).await?;
        let layers = match self.suffix {
            Some(_) => pointers::layers(self.client, project.name()).await?,
            None => Vec::new(),
        };
        Ok(State { all, layers })
    }

    /// Logical schema → the pointer of the physical set live for it here.
    pub(super) fn live(&self, state: &State) -> BTreeMap<String, Pointer> {
        let Some(suffix) = &self.suffix else {
            return state
                .all
                .iter()
                .filter(|p| p.role == Role::Live)
                .map(|p| (p.logical.clone(), p.clone()))
                .collect();
        };
        state
            .layers
            .iter()
            .filter(|l| &l.suffix == suffix && l.role == Role::Live)
            .map(|l| {
                let pointer = state
                    .all
                    .iter()
                    .find(|p| p.physical == l.physical)
                    .cloned()
                    .unwrap_or_else(|| Pointer {
                        logical: l.logical.clone(),
                        physical: l.physical.clone(),
                        deployment: l.deployment.clone(),
                        role: Role::Shared,
                        state: "ready".into(),
                        definition_hash: String::new(),
                        objects: serde_json::json!({}),
                        message: String::new(),
                        updated_at: l.updated_at.clone(),
                        catalog: serde_json::json!({}),
                    });
                (l.logical.clone(), pointer)
            })
            .collect()
    }

    /// The project's live, retained and staged sets. Empty before the first stage.
    pub async fn sets(&self, project: &Project) -> Result<Sets> {
        let state = self.state(project).await?;
        let mut out = match &self.suffix {
            None => sets(&state.all),
            Some(suffix) => layer_sets(&state, suffix, &self.live(&state)),
        };
        out.served = out
            .live
            .keys()
            .map(|l| (l.clone(), self.served(l)))
            .collect();
        Ok(out)
    }

    /// Objects added, changed and removed per blue-green schema between the project and
    /// the live sets in this database.
    pub async fn diff_project(
        &self,
        project: &Project,
        objects: &Objects,
    ) -> Result<BTreeMap<String, SchemaDiff>> {
        let live = self.live(&self.state(project).await?);
        Ok(objects
            .schemas
            .iter()
            .map(|schema| {
                let live = live.get(schema).map(|p| p.objects.clone());
                (
                    schema.clone(),
                    diff_objects(&object_hashes(objects, schema), &live.unwrap_or_default()),
                )
            })
            .collect())
    }

    /// The live objects (name → hash) per logical schema, for diffs between databases.
    pub async fn live_objects(
        &self,
        project: &Project,
    ) -> Result<BTreeMap<String, serde_json::Value>> {
        let live = self.live(&self.state(project).await?);
        Ok(live.into_iter().map(|(l, p)| (l, p.objects)).collect())
    }

    pub(super) async fn try_lock(&self, project: &str) -> Result<Option<String>> {
        if self.registry.try_lock(self.client, project).await? {
            return Ok(None);
        }
        let holder = self.registry.lock_holder(self.client, project).await?;
        Ok(Some(match holder {
            Some(h) => format!(
                "{} on {} (pid {}, {} since {})",
                h.holder, h.host, h.pid, h.operation, h.started_at
            ),
            None => "another session".into(),
        }))
    }

    pub(super) async fn unlock(&self, project: &str) {
        let _ = self.registry.unlock(self.client, project).await;
    }

    pub(super) async fn ensure_registry(&self, project: &Project, operation: &str) -> Result<()> {
        let holder = crate::registry::LockHolder {
            holder: format!("{} <{}>", self.committer.name, self.committer.email),
            host: crate::pg::hostname(),
            pid: std::process::id() as i32,
            operation: operation.to_string(),
            started_at: String::new(),
        };
        crate::pg::transaction(self.client, "BEGIN", db_error, async {
            self.registry.ensure(self.client, &self.committer).await?;
            self.registry
                .register_project(
                    self.client,
                    project.name(),
                    project.plan.uri.as_deref(),
                    &self.committer,
                )
                .await?;
            self.registry
                .record_lock(self.client, project.name(), &holder)
                .await?;
            Ok(())
        })
        .await
    }

    /// Starts a run of `operation` in `switchyard.deployments`; finish it with
    /// [`Registry::finish_deployment`].
    pub(super) async fn start_run(&self, project: &Project, operation: &str) -> Result<i64> {
        Ok(self
            .registry
            .start_deployment(
                self.client,
                project.name(),
                operation,
                None,
                &self.committer,
            )
            .await?)
    }

    /// Records a run that has already ended: started and finished at once.
    pub(super) async fn record_run(
        &self,
        project: &Project,
        operation: &str,
        result: &str,
        message: &str,
    ) -> Result<()> {
        let run = self.start_run(project, operation).await?;
        self.registry
            .finish_deployment(self.client, run, result, 0, message)
            .await?;
        Ok(())
    }
}
