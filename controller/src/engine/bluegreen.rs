//! Blue/green on PostgreSQL: stage a project's `objects/` into `<schema>__sy_<id>`,
//! promote by renaming schemas in one transaction, roll back to a retained set.
//!
//! Gather, decide, act: [`BlueGreen`] reads the pointers and the catalog, the pure
//! functions in [`bluegreen_sql`](super::bluegreen_sql) and
//! [`bluegreen_guards`](super::bluegreen_guards) decide and write the SQL, and the same
//! statements run or print (`dry_run`). It knows nothing of Kubernetes: a reconciler calls
//! [`BlueGreen::stage`], [`BlueGreen::promote`] and [`BlueGreen::rollback`] and maps the
//! outcome to conditions with [`Error::reason`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::bluegreen_guards::{self as guards, Blocked, Chain, GuardInput};
use super::bluegreen_layer as layer;
use super::bluegreen_sql as sql;
use super::error::{Failure, db_error_message};
use crate::project::objects::Objects;
use crate::project::{Project, SchemaMode};
use crate::registry::bluegreen::{self as pointers, LayerPointer, Pointer, Role};
use crate::registry::{Committer, Registry};

// Staging and swapping take the project's deploy lock (`Registry::try_lock`), so they
// never interleave with a deploy of the same project.

/// True for the errors a swap (or a drop) meets when it races another session, which
/// the next attempt can win: `lock_timeout` expiring (55P03), a deadlock (40P01), a
/// serialization failure (40001), and "tuple concurrently updated" (XX000), which
/// PostgreSQL raises instead of waiting when a catalog row it waited for was changed by a
/// transaction that committed meanwhile (a GRANT on the live schema, say).
pub(super) fn retryable(error: &tokio_postgres::Error) -> bool {
    let Some(db) = error.as_db_error() else {
        return false;
    };
    match db.code().code() {
        "55P03" | "40P01" | "40001" => true,
        "XX000" => db.message() == "tuple concurrently updated",
        _ => false,
    }
}

/// Blue/green failures. Each maps to a condition reason with [`Error::reason`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The project's `objects/` is invalid.
    #[error(transparent)]
    Project(#[from] crate::project::Error),
    /// The registry could not be read or written.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    /// A query the engine runs itself failed.
    #[error("{context}: {}", db_error_message(source))]
    Db {
        /// What we were doing.
        context: &'static str,
        /// The database error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A guard blocked the promotion; nothing changed.
    #[error("blocked by {}: {}", blocked.reason, blocked.message)]
    Blocked {
        /// The guard and why.
        blocked: Blocked,
    },
    /// Building or verifying the staging schemas failed; what this stage created was
    /// dropped unless `keep_failed`.
    #[error("stage {deployment} failed{}: {failure}{}", if *verifying { " verifying" } else { "" }, if *kept { " (staging kept)" } else { "" })]
    StageFailed {
        /// The deployment id.
        deployment: String,
        /// Where and why.
        failure: Failure,
        /// True when the objects built and the verify SQL failed.
        verifying: bool,
        /// True when the staging schemas were kept (`--keep-failed`).
        kept: bool,
    },
    /// The swap could not take its locks within the retries.
    #[error("swap gave up after {attempts} attempts: {message}")]
    SwapTimeout {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// Verify failed after the swap; the previous set was swapped back in.
    #[error("verify failed after the swap, rolled back to deployment {restored}: {failure}")]
    RolledBack {
        /// The deployment live again.
        restored: String,
        /// The verify failure.
        failure: Failure,
    },
    /// Nothing to roll back to.
    #[error("nothing to roll back to: {0}")]
    NoRetained(String),
    /// A schema name would exceed PostgreSQL's identifier limit.
    #[error("staging schema name {0} is longer than 63 bytes; use a shorter schema name")]
    NameTooLong(String),
    /// A layer's name is taken by a schema switchyard does not serve as a layer.
    #[error("schema {0} exists and is not a layer switchyard serves; rename or drop it first")]
    NotALayer(String),
    /// A physical set holds an object a layer cannot serve.
    #[error("{schema}.{object} cannot be served through a layer: {why}")]
    Unservable {
        /// The logical schema.
        schema: String,
        /// The object.
        object: String,
        /// Why.
        why: String,
    },
}

impl Error {
    /// The condition / event reason for this outcome (UpperCamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Project(_) | Error::NameTooLong(_) | Error::Unservable { .. } => {
                "InvalidObjects"
            }
            Error::NotALayer(_) => "SchemaConflict",
            Error::Registry(_) | Error::Db { .. } => "DatabaseError",
            Error::Blocked { blocked } => blocked.reason,
            Error::StageFailed { .. } => "StageFailed",
            Error::SwapTimeout { .. } => "SwapTimeout",
            Error::RolledBack { .. } => "VerifyFailed",
            Error::NoRetained(_) => "NothingToRollBack",
        }
    }

    /// Terminal errors need a change of input; the rest may pass on retry.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            Error::Db { .. }
                | Error::Registry(_)
                | Error::SwapTimeout { .. }
                | Error::Blocked { .. }
        )
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(super) fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |source| Error::Db { context, source }
}

/// Options for [`BlueGreen::stage`].
#[derive(Clone, Debug, Default)]
pub struct StageOptions {
    /// Stage these schemas even when unchanged (`--redeploy-schema`).
    pub redeploy: Vec<String>,
    /// Keep the staging schemas when building or verifying fails.
    pub keep_failed: bool,
    /// Print the SQL instead of running it.
    pub dry_run: bool,
    /// Told when the stage moves from building to verifying, for callers that report
    /// progress (the Promotion reconciler's phase).
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<StageStep>>,
}

/// Where a running stage is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageStep {
    /// Building objects into the staging schemas.
    Building,
    /// Running the verify SQL against them.
    Verifying,
}

/// Options for [`BlueGreen::promote`].
#[derive(Clone, Debug)]
pub struct PromoteOptions {
    /// The staged deployment to promote; the newest verified one when `None`.
    pub deployment: Option<String>,
    /// Schemas or objects to promote (`--select`); all staged when empty.
    pub select: Vec<String>,
    /// Pull changed upstreams of the selection in.
    pub include_stale_upstreams: bool,
    /// Allow promoting a subset.
    pub allow_partial: bool,
    /// `lock_timeout` for the swap transaction.
    pub lock_timeout: Duration,
    /// Swap attempts before giving up.
    pub attempts: u32,
    /// Retained sets to keep per schema.
    pub keep: usize,
    /// The target is suspended (a reconciler passes its Environment's `suspend`).
    pub suspended: bool,
    /// Guard facts only the caller knows (a reconciler: the source Environment not Ready
    /// at its revision, stale against the project's newest revision, reworked changes and
    /// the target's `allowRework`). Merged with what the engine gathers; the engine's own
    /// findings win where both say something.
    pub caller: GuardInput,
    /// Print the SQL instead of running it.
    pub dry_run: bool,
}

impl Default for PromoteOptions {
    fn default() -> Self {
        PromoteOptions {
            deployment: None,
            select: Vec::new(),
            include_stale_upstreams: false,
            allow_partial: false,
            lock_timeout: Duration::from_millis(500),
            attempts: 8,
            keep: 2,
            suspended: false,
            caller: GuardInput::default(),
            dry_run: false,
        }
    }
}

/// What `stage` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StageReport {
    /// The project.
    pub project: String,
    /// The deployment id (`<id>` in a dry run).
    pub deployment: String,
    /// Logical schema → staging schema.
    pub schemas: BTreeMap<String, String>,
    /// Objects built.
    pub objects: usize,
    /// True when nothing changed and nothing was staged.
    pub up_to_date: bool,
    /// Milliseconds spent building the staging schemas.
    pub build_ms: u64,
    /// Milliseconds spent running the verify SQL against them.
    pub verify_ms: u64,
    /// The SQL, in a dry run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sql: Vec<String>,
}

/// What `promote` or `rollback` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SwapReport {
    /// The project.
    pub project: String,
    /// The deployment now live.
    pub deployment: String,
    /// Logical schema → physical schema now live (always the logical name).
    pub live: BTreeMap<String, String>,
    /// Logical schema → the physical schema the previous live set was renamed to.
    pub retained: BTreeMap<String, String>,
    /// Retained schemas dropped beyond the kept count.
    pub dropped: Vec<String>,
    /// Retained schemas kept past the count because something outside depends on them.
    pub kept_for_dependents: BTreeMap<String, Vec<String>>,
    /// How long the swap transaction took, in milliseconds.
    pub swap_ms: u64,
    /// Layers: how long building the new layers before the swap took, in milliseconds
    /// (readers are not held up by it); 0 when renaming.
    pub prepare_ms: u64,
    /// Swap attempts (lock timeouts retried).
    pub attempts: u32,
    /// The SQL, in a dry run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sql: Vec<String>,
}

/// The live and retained sets, for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sets {
    /// Logical schema → physical schema live (with its deployment).
    pub live: BTreeMap<String, String>,
    /// Deployment id of each live schema.
    pub live_deployments: BTreeMap<String, String>,
    /// Previous sets, newest first: deployment id and logical → physical.
    pub retained: Vec<RetainedSet>,
    /// Staged candidates, newest first.
    pub staged: Vec<RetainedSet>,
    /// Logical schema → the schema applications query: itself, or its layer.
    pub served: BTreeMap<String, String>,
}

/// One deployment's schemas.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetainedSet {
    /// Deployment id.
    pub deployment: String,
    /// Logical → physical.
    pub schemas: BTreeMap<String, String>,
    /// State (`verified`, `failed`, `ready`).
    pub state: String,
}

/// Objects added, changed and removed in one schema.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchemaDiff {
    /// In the source, not in the target.
    pub added: Vec<String>,
    /// In both, with different definitions.
    pub changed: Vec<String>,
    /// In the target, not in the source.
    pub removed: Vec<String>,
}

/// Staged candidates kept per blue-green schema, the newest first (as `keep` for retained
/// sets): room to stage two side by side and promote either by its deployment id.
const CANDIDATES_KEPT: usize = 2;

/// The newest staged set when it was built from exactly these definitions of exactly
/// these schemas and verified: staging again would only build its twin and leave it
/// behind for ever (a stage followed by a crash instead of its promote, or `stage` run
/// twice). Promote verifies again after the swap, as always.
fn verified_candidate(
    project: &Project,
    objects: &Objects,
    all: &[Pointer],
    schemas: &[String],
) -> Option<StageReport> {
    let newest = &all.iter().find(|p| p.role == Role::Staged)?.deployment;
    let set: Vec<&Pointer> = all
        .iter()
        .filter(|p| p.role == Role::Staged && &p.deployment == newest)
        .collect();
    let same = set.len() == schemas.len()
        && set.iter().all(|p| {
            p.state == "verified"
                && schemas.contains(&p.logical)
                && p.definition_hash == objects.schema_hash(&p.logical)
        });
    same.then(|| StageReport {
        project: project.name().into(),
        deployment: newest.clone(),
        schemas: set
            .iter()
            .map(|p| (p.logical.clone(), p.physical.clone()))
            .collect(),
        objects: objects
            .ordered
            .iter()
            .filter(|o| schemas.contains(&o.name.schema))
            .count(),
        ..StageReport::default()
    })
}

/// Groups pointers into live, retained and staged sets.
pub fn sets(all: &[Pointer]) -> Sets {
    let mut out = Sets::default();
    let mut retained: BTreeMap<String, RetainedSet> = BTreeMap::new();
    let mut staged: BTreeMap<String, RetainedSet> = BTreeMap::new();
    for p in all {
        match p.role {
            Role::Live => {
                out.live.insert(p.logical.clone(), p.physical.clone());
                out.live_deployments
                    .insert(p.logical.clone(), p.deployment.clone());
            }
            // Layers say where a shared set is live ([`layer_sets`]).
            Role::Shared => {}
            Role::Retained | Role::Staged => {
                let target = if p.role == Role::Retained {
                    &mut retained
                } else {
                    &mut staged
                };
                let set = target
                    .entry(p.deployment.clone())
                    .or_insert_with(|| RetainedSet {
                        deployment: p.deployment.clone(),
                        state: p.state.clone(),
                        ..RetainedSet::default()
                    });
                if p.state != "verified" && p.state != "ready" {
                    set.state = p.state.clone();
                }
                set.schemas.insert(p.logical.clone(), p.physical.clone());
            }
        }
    }
    let newest_first = |m: BTreeMap<String, RetainedSet>| {
        let mut v: Vec<RetainedSet> = m.into_values().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.deployment.parse::<i64>().unwrap_or(0)));
        v
    };
    out.retained = newest_first(retained);
    out.staged = newest_first(staged);
    out
}

/// Object name → file hash of one schema's objects.
pub fn object_hashes(objects: &Objects, schema: &str) -> serde_json::Value {
    serde_json::Value::Object(
        objects
            .of_schema(schema)
            .map(|o| {
                (
                    o.name.name.clone(),
                    serde_json::Value::String(o.hash.clone()),
                )
            })
            .collect(),
    )
}

/// Compares two object maps (name → hash).
pub fn diff_objects(source: &serde_json::Value, target: &serde_json::Value) -> SchemaDiff {
    let empty = serde_json::Map::new();
    let s = source.as_object().unwrap_or(&empty);
    let t = target.as_object().unwrap_or(&empty);
    SchemaDiff {
        added: s.keys().filter(|k| !t.contains_key(*k)).cloned().collect(),
        changed: s
            .iter()
            .filter(|(k, v)| t.get(*k).is_some_and(|tv| tv != *v))
            .map(|(k, _)| k.clone())
            .collect(),
        removed: t.keys().filter(|k| !s.contains_key(*k)).cloned().collect(),
    }
}

/// Which blue-green schemas a stage builds: changed against what is live (logical schema →
/// its live set's pointer), or named, and every schema that depends on one of those.
///
/// NB: a view binds to its upstream by OID, so a downstream schema left alone would go on
/// reading the upstream's previous set after the swap (and pin it against retirement),
/// while its late-bound functions read the new one.
pub fn schemas_to_stage(
    objects: &Objects,
    live: &BTreeMap<String, Pointer>,
    redeploy: &[String],
) -> Vec<String> {
    let mut staged: BTreeSet<String> = objects
        .schemas
        .iter()
        .filter(|schema| {
            redeploy.iter().any(|r| r == *schema)
                || live
                    .get(*schema)
                    .is_none_or(|p| p.definition_hash != objects.schema_hash(schema))
        })
        .cloned()
        .collect();
    loop {
        let downstream: BTreeSet<String> = objects
            .ordered
            .iter()
            .filter(|o| !staged.contains(&o.name.schema))
            .filter(|o| o.depends_on.iter().any(|d| staged.contains(&d.schema)))
            .map(|o| o.name.schema.clone())
            .collect();
        if downstream.is_empty() {
            return staged.into_iter().collect();
        }
        staged.extend(downstream);
    }
}

/// A layered Environment's sets: live from its layers, retained from its layer history
/// (newest first), staged candidates as everywhere.
fn layer_sets(state: &State, suffix: &str, live: &BTreeMap<String, Pointer>) -> Sets {
    let mut out = Sets {
        staged: sets(&state.all).staged,
        ..Sets::default()
    };
    for (logical, p) in live {
        out.live.insert(logical.clone(), p.physical.clone());
        out.live_deployments
            .insert(logical.clone(), p.deployment.clone());
    }
    // Rows come newest first; a set is the rows of one deployment.
    for row in state
        .layers
        .iter()
        .filter(|l| l.suffix == suffix && l.role == Role::Retained)
    {
        match out
            .retained
            .iter_mut()
            .find(|s| s.deployment == row.deployment)
        {
            Some(set) => {
                set.schemas
                    .insert(row.logical.clone(), row.physical.clone());
            }
            None => out.retained.push(RetainedSet {
                deployment: row.deployment.clone(),
                schemas: [(row.logical.clone(), row.physical.clone())].into(),
                state: "ready".into(),
            }),
        }
    }
    out
}

/// Blue/green operations on one connection, for one project and committer.
pub struct BlueGreen<'c> {
    pub(super) client: &'c Client,
    pub(super) registry: Registry,
    pub(super) committer: Committer,
    /// `Some(suffix)`: serve layers `<schema><suffix>` over physical sets that never move
    /// ([`bluegreen_layer`](super::bluegreen_layer)); `None`: rename schemas into place.
    pub(super) suffix: Option<String>,
}

/// The pointers of a project, read once per operation.
pub(super) struct State {
    /// `switchyard.schema_pointers`: every physical set.
    pub(super) all: Vec<Pointer>,
    /// `switchyard.layers`: every Environment's layers (empty without layers).
    pub(super) layers: Vec<LayerPointer>,
}

/// One statement to run, with where it came from for failures.
struct Step {
    sql: String,
    /// `(object, file, line)` for object statements; the file is the staging step otherwise.
    origin: (String, PathBuf, usize),
}

impl<'c> BlueGreen<'c> {
    /// Works on `client` (e.g. [`PgEngine::client`](super::PgEngine::client)).
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
            Some(suffix) => layer::layer_name(logical, suffix),
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

    // === locking ===

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

    async fn ensure_registry(&self, project: &Project, operation: &str) -> Result<()> {
        let holder = crate::registry::LockHolder {
            holder: format!("{} <{}>", self.committer.name, self.committer.email),
            host: hostname(),
            pid: std::process::id() as i32,
            operation: operation.to_string(),
            started_at: String::new(),
        };
        self.client
            .batch_execute("BEGIN")
            .await
            .map_err(db("starting a transaction"))?;
        let result = async {
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
            Ok::<(), Error>(())
        }
        .await;
        match result {
            Ok(()) => self
                .client
                .batch_execute("COMMIT")
                .await
                .map_err(db("creating the registry")),
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }

    // === stage ===

    /// Drops staging sets still `building`: a stage builds under the project lock, which
    /// the caller holds now, so their builder died (killed, connection lost) and nobody
    /// will finish them.
    async fn drop_abandoned(&self, project: &Project) -> Result<()> {
        let all = pointers::pointers(self.client, project.name()).await?;
        for p in all
            .iter()
            .filter(|p| p.role == Role::Staged && p.state == "building")
        {
            self.drop_staging(project, &p.physical, "abandoned").await?;
        }
        Ok(())
    }

    /// Drops the oldest staged candidates of `schemas` so that, with the one about to be
    /// built, at most [`CANDIDATES_KEPT`] stay: one never promoted (the controller killed
    /// between stage and promote while the project moved on) would otherwise stay for ever.
    async fn drop_superseded(
        &self,
        project: &Project,
        all: &[Pointer],
        schemas: &[String],
    ) -> Result<()> {
        for logical in schemas {
            for old in all
                .iter()
                .filter(|p| p.role == Role::Staged && &p.logical == logical)
                .skip(CANDIDATES_KEPT - 1)
            {
                self.drop_staging(project, &old.physical, "superseded")
                    .await?;
            }
        }
        Ok(())
    }

    /// Drops a staging set and forgets its pointer; `why` is for the log.
    async fn drop_staging(&self, project: &Project, physical: &str, why: &str) -> Result<()> {
        tracing::info!(schema = %physical, why, "Dropping a staging set");
        self.client
            .batch_execute(&sql::drop_schema(physical))
            .await
            .map_err(db("dropping a staging schema left behind"))?;
        pointers::forget(self.client, project.name(), physical).await?;
        Ok(())
    }

    /// Builds every changed (or named) blue-green schema into `<schema>__sy_<id>`, copies
    /// and checks grants, and runs `objects/<schema>/verify.sql` against the staging
    /// schemas. On failure drops what it created unless `keep_failed`.
    pub async fn stage(
        &self,
        project: &Project,
        objects: &Objects,
        options: &StageOptions,
    ) -> Result<StageReport> {
        if options.dry_run {
            let state = self.state(project).await?;
            return self
                .stage_plan(project, objects, &state, options, "<id>")
                .map(|(mut report, _, steps)| {
                    report.sql = steps.into_iter().map(|s| s.sql).collect();
                    report
                });
        }
        if let Some(holder) = self.try_lock(project.name()).await? {
            return Err(Error::Blocked {
                blocked: Blocked {
                    reason: guards::GUARD_TARGET_LOCKED,
                    message: format!("the target is locked by {holder}"),
                },
            });
        }
        let result = self.stage_locked(project, objects, options).await;
        self.unlock(project.name()).await;
        result
    }

    async fn stage_locked(
        &self,
        project: &Project,
        objects: &Objects,
        options: &StageOptions,
    ) -> Result<StageReport> {
        self.ensure_registry(project, "stage").await?;
        self.drop_abandoned(project).await?;
        let state = self.state(project).await?;
        let to_stage = schemas_to_stage(objects, &self.live(&state), &options.redeploy);
        if to_stage.is_empty() {
            return Ok(StageReport {
                project: project.name().into(),
                up_to_date: true,
                ..StageReport::default()
            });
        }
        if options.redeploy.is_empty()
            && let Some(report) = verified_candidate(project, objects, &state.all, &to_stage)
        {
            return Ok(report);
        }
        self.drop_superseded(project, &state.all, &to_stage).await?;
        let run = self.start_run(project, "stage").await?;
        let id = run.to_string();
        let (report, refs, steps) = self.stage_plan(project, objects, &state, options, &id)?;
        for (logical, physical) in &report.schemas {
            pointers::upsert(
                self.client,
                project.name(),
                &Pointer {
                    logical: logical.clone(),
                    physical: physical.clone(),
                    deployment: id.clone(),
                    role: Role::Staged,
                    state: "building".into(),
                    definition_hash: objects.schema_hash(logical),
                    objects: object_hashes(objects, logical),
                    message: String::new(),
                    updated_at: String::new(),
                },
            )
            .await?;
        }
        let tell = |step| {
            if let Some(progress) = &options.progress {
                let _ = progress.send(step);
            }
        };
        tell(StageStep::Building);
        let started = Instant::now();
        let mut built = self.run_steps(&steps).await;
        if built.is_ok() && self.suffix.is_some() {
            // A layer must be able to serve what was built, or promoting it would fail.
            built = self.check_servable(objects, &report.schemas).await;
        }
        let mut report = report;
        report.build_ms = started.elapsed().as_millis() as u64;
        let verifying = built.is_ok();
        let outcome = match built {
            Ok(()) => {
                tell(StageStep::Verifying);
                let started = Instant::now();
                let staged: BTreeSet<String> = report.schemas.keys().cloned().collect();
                let verified = self.verify(objects, &staged, &refs).await;
                report.verify_ms = started.elapsed().as_millis() as u64;
                verified
            }
            Err(f) => Err(f),
        };
        let _ = self.client.batch_execute("RESET ALL").await;
        match outcome {
            Ok(()) => {
                for physical in report.schemas.values() {
                    pointers::set_state(self.client, project.name(), physical, "verified", "")
                        .await?;
                }
                self.registry
                    .finish_deployment(self.client, run, "succeeded", report.objects as i32, "")
                    .await?;
                Ok(report)
            }
            Err(failure) => {
                let message = failure.to_string();
                for physical in report.schemas.values() {
                    if options.keep_failed {
                        pointers::set_state(
                            self.client,
                            project.name(),
                            physical,
                            "failed",
                            &message,
                        )
                        .await?;
                    } else {
                        self.client
                            .batch_execute(&sql::drop_schema(physical))
                            .await
                            .map_err(db("dropping a failed staging schema"))?;
                        pointers::forget(self.client, project.name(), physical).await?;
                    }
                }
                let _ = self
                    .registry
                    .finish_deployment(self.client, run, "failed", 0, &message)
                    .await;
                Err(Error::StageFailed {
                    deployment: id,
                    failure,
                    verifying,
                    kept: options.keep_failed,
                })
            }
        }
    }

    /// Decides what a stage builds and writes its SQL, without touching the database.
    /// Also returns where every blue-green reference points while staging: staged
    /// schemas at their staging copies, the others at their live sets.
    #[allow(clippy::type_complexity)]
    fn stage_plan(
        &self,
        project: &Project,
        objects: &Objects,
        state: &State,
        options: &StageOptions,
        id: &str,
    ) -> Result<(StageReport, BTreeMap<String, String>, Vec<Step>)> {
        let live = self.live(state);
        let staged = schemas_to_stage(objects, &live, &options.redeploy);
        let mut map = BTreeMap::new();
        for schema in &staged {
            let physical = sql::physical_name(schema, id);
            if physical.len() > sql::MAX_IDENTIFIER {
                return Err(Error::NameTooLong(physical));
            }
            map.insert(schema.clone(), physical);
        }
        let stable: Vec<String> = project
            .manifest
            .schemas
            .iter()
            .filter(|(_, m)| **m == SchemaMode::Stable)
            .map(|(s, _)| s.clone())
            .collect();
        // NB: renamed live sets carry their logical name; layered ones never do, so a
        // physical set only ever refers to other physical sets and any layer can serve it.
        let refs: BTreeMap<String, String> = objects
            .schemas
            .iter()
            .map(|s| {
                let physical = map
                    .get(s)
                    .or_else(|| live.get(s).map(|p| &p.physical))
                    .cloned()
                    .unwrap_or_else(|| s.clone());
                (s.clone(), physical)
            })
            .collect();
        let physical_of = |s: &String| refs.get(s).cloned().unwrap_or_else(|| s.clone());
        let path_for = |own: &String| {
            let mut path = vec![physical_of(own)];
            path.extend(
                objects
                    .schemas
                    .iter()
                    .filter(|s| *s != own)
                    .map(&physical_of),
            );
            path.extend(stable.iter().cloned());
            path.push("public".into());
            path
        };
        let origin = |what: &str| (what.to_string(), PathBuf::from("(staging)"), 0);
        let mut steps = Vec::new();
        for (logical, physical) in &map {
            steps.push(Step {
                sql: format!(
                    "CREATE SCHEMA {}",
                    crate::engine::script::quote_ident(physical)
                ),
                origin: origin(logical),
            });
            steps.push(Step {
                sql: sql::copy_schema_privileges(&self.served(logical), physical),
                origin: origin(logical),
            });
        }
        let mut count = 0;
        for object in objects
            .ordered
            .iter()
            .filter(|o| map.contains_key(&o.name.schema))
        {
            count += 1;
            let path = path_for(&object.name.schema);
            steps.push(Step {
                sql: sql::set_search_path(&path),
                origin: origin(&object.name.to_string()),
            });
            for statement in &object.statements {
                let late = sql::late_bound(object.kind, &statement.sql).then_some(&objects.schemas);
                steps.push(Step {
                    sql: sql::rewrite(&statement.sql, &refs, late),
                    origin: (object.name.to_string(), object.path.clone(), statement.line),
                });
            }
            if matches!(
                object.kind,
                crate::project::objects::ObjectKind::Function
                    | crate::project::objects::ObjectKind::Procedure
            ) {
                steps.push(Step {
                    sql: sql::stamp_routines(&map[&object.name.schema], &path),
                    origin: origin(&object.name.to_string()),
                });
            }
        }
        for (logical, physical) in &map {
            steps.push(Step {
                sql: sql::copy_object_privileges(&self.served(logical), physical),
                origin: origin(logical),
            });
            steps.push(Step {
                sql: sql::check_privileges(&self.served(logical), physical),
                origin: origin(logical),
            });
        }
        let report = StageReport {
            project: project.name().into(),
            deployment: id.into(),
            schemas: map,
            objects: count,
            up_to_date: staged.is_empty(),
            ..StageReport::default()
        };
        Ok((report, refs, steps))
    }

    async fn run_steps(&self, steps: &[Step]) -> std::result::Result<(), Failure> {
        for step in steps {
            if let Err(error) = self.client.batch_execute(&step.sql).await {
                let (object, path, line) = &step.origin;
                return Err(Failure {
                    change: object.clone(),
                    path: path.clone(),
                    line: *line,
                    message: db_error_message(&error),
                });
            }
        }
        Ok(())
    }

    /// Runs the `verify.sql` of each schema in `which`, in a transaction that is rolled
    /// back, with every blue-green reference pointed through `refs` (logical → the schema
    /// to read: a staging copy, a live set, a layer; unmapped: the logical name itself).
    pub(super) async fn verify(
        &self,
        objects: &Objects,
        which: &BTreeSet<String>,
        refs: &BTreeMap<String, String>,
    ) -> std::result::Result<(), Failure> {
        for logical in which {
            let Some(path) = objects.verify.get(logical) else {
                continue;
            };
            let fail = |line: usize, message: String| Failure {
                change: format!("{logical} verify"),
                path: path.clone(),
                line,
                message,
            };
            let text = std::fs::read_to_string(path).map_err(|e| fail(1, e.to_string()))?;
            let statements =
                pg_query::split_with_parser(&text).map_err(|e| fail(1, e.to_string()))?;
            let search = refs.get(logical).unwrap_or(logical).clone();
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| fail(1, db_error_message(&e)))?;
            let mut result = self
                .client
                .batch_execute(&sql::set_search_path(&[search, "public".into()]))
                .await
                .map_err(|e| fail(1, db_error_message(&e)));
            for statement in statements {
                if result.is_err() {
                    break;
                }
                let offset = statement.as_ptr() as usize - text.as_ptr() as usize;
                let line = text[..offset + (statement.len() - statement.trim_start().len())]
                    .matches('\n')
                    .count()
                    + 1;
                result = self
                    .client
                    .batch_execute(&sql::rewrite(statement, refs, None))
                    .await
                    .map_err(|e| fail(line, db_error_message(&e)));
            }
            let _ = self.client.batch_execute("ROLLBACK").await;
            result?;
        }
        Ok(())
    }

    // === promote ===

    /// The guards a stage-then-promote of the project's objects would meet, checked
    /// before anything changes: the selection against the schemas that would be staged
    /// (what changed against live, plus `redeploy`), or with `from` against what differs
    /// from the layers with that suffix ([`BlueGreen::promote_from`]); the caller's facts;
    /// the target's lock holder. Reads only.
    pub async fn preflight(
        &self,
        project: &Project,
        objects: &Objects,
        options: &PromoteOptions,
        redeploy: &[String],
        from: Option<&str>,
    ) -> Result<Option<Blocked>> {
        let state = self.state(project).await?;
        let caller = &options.caller;
        let locked_by = match caller.target_locked_by.clone() {
            Some(holder) => Some(holder),
            None => self
                .registry
                .lock_holder(self.client, project.name())
                .await?
                .map(|h| {
                    format!(
                        "{} on {} (pid {}, {} since {})",
                        h.holder, h.host, h.pid, h.operation, h.started_at
                    )
                }),
        };
        if let Some(source) = from {
            let (input, _) = self.gather_from(objects, &state, source, options, locked_by);
            return Ok(Chain::promotion().check(&input));
        }
        let would_stage: BTreeSet<String> = schemas_to_stage(objects, &self.live(&state), redeploy)
            .into_iter()
            .collect();
        let selection = guards::select(
            objects,
            &would_stage,
            &options.select,
            options.include_stale_upstreams,
        );
        let mut input = GuardInput {
            target_locked_by: locked_by,
            target_suspended: options.suspended || caller.target_suspended,
            partial: selection.partial,
            allow_partial: options.allow_partial,
            stale_upstreams: selection.stale_upstreams,
            ..caller.clone()
        };
        if !selection.unknown.is_empty() {
            input.source_not_finalized = Some(format!(
                "select {} names nothing that changed",
                selection.unknown.join(", ")
            ));
        }
        Ok(Chain::promotion().check(&input))
    }

    /// Gathers the guard input for promoting; pure checks happen in [`Chain`].
    pub(super) fn gather(
        &self,
        objects: &Objects,
        all: &[Pointer],
        options: &PromoteOptions,
        locked_by: Option<String>,
    ) -> (GuardInput, Option<String>, BTreeSet<String>) {
        let staged_sets = sets(all).staged;
        let candidate = match &options.deployment {
            Some(id) => staged_sets.iter().find(|s| &s.deployment == id),
            None => staged_sets.iter().find(|s| s.state == "verified"),
        };
        let caller = &options.caller;
        let mut input = GuardInput {
            target_locked_by: locked_by.or_else(|| caller.target_locked_by.clone()),
            target_suspended: options.suspended || caller.target_suspended,
            allow_partial: options.allow_partial,
            reworked: caller.reworked.clone(),
            allow_rework: caller.allow_rework,
            source_not_finalized: caller.source_not_finalized.clone(),
            source_stale: caller.source_stale.clone(),
            ..GuardInput::default()
        };
        let Some(candidate) = candidate else {
            input.source_not_finalized = Some(match &options.deployment {
                Some(id) => format!("deployment {id} is not staged"),
                None => "nothing verified is staged; run stage first".into(),
            });
            return (input, None, BTreeSet::new());
        };
        if candidate.state != "verified" {
            input.source_not_finalized = Some(format!(
                "deployment {} is {}, not verified",
                candidate.deployment, candidate.state
            ));
        }
        let staged: BTreeSet<String> = candidate.schemas.keys().cloned().collect();
        let selection = guards::select(
            objects,
            &staged,
            &options.select,
            options.include_stale_upstreams,
        );
        if !selection.unknown.is_empty() {
            input.source_not_finalized = Some(format!(
                "--select {} names nothing staged in deployment {}",
                selection.unknown.join(", "),
                candidate.deployment
            ));
        }
        input.partial = selection.partial;
        input.stale_upstreams = selection.stale_upstreams.clone();
        input.source_stale.extend(
            all.iter()
                .filter(|p| {
                    p.deployment == candidate.deployment
                        && p.role == Role::Staged
                        && selection.schemas.contains(&p.logical)
                })
                .filter(|p| p.definition_hash != objects.schema_hash(&p.logical))
                .map(|p| p.logical.clone()),
        );
        (input, Some(candidate.deployment.clone()), selection.schemas)
    }

    /// Promotes a staged deployment: guards, then one transaction renames live →
    /// `<schema>__sy_<previous id>` and staged → `<schema>` and moves the pointers;
    /// verify runs against live and a failure swaps back. Retained sets beyond
    /// `options.keep` are dropped when nothing outside depends on them.
    pub async fn promote(
        &self,
        project: &Project,
        objects: &Objects,
        options: &PromoteOptions,
    ) -> Result<SwapReport> {
        let locked_by = if options.dry_run {
            None
        } else {
            self.try_lock(project.name()).await?
        };
        let result = match self.suffix {
            Some(_) => {
                self.promote_layered(project, objects, options, locked_by.clone(), None)
                    .await
            }
            None => {
                self.promote_locked(project, objects, options, locked_by.clone())
                    .await
            }
        };
        if locked_by.is_none() && !options.dry_run {
            self.unlock(project.name()).await;
        }
        result
    }

    async fn promote_locked(
        &self,
        project: &Project,
        objects: &Objects,
        options: &PromoteOptions,
        locked_by: Option<String>,
    ) -> Result<SwapReport> {
        let all = pointers::pointers(self.client, project.name()).await?;
        let (input, deployment, selected) = self.gather(objects, &all, options, locked_by);
        if let Some(blocked) = Chain::promotion().check(&input) {
            return Err(Error::Blocked { blocked });
        }
        let deployment = deployment.unwrap_or_default();
        let mut moves = Vec::new();
        for logical in &selected {
            let Some(staged) = all.iter().find(|p| {
                p.deployment == deployment && &p.logical == logical && p.role == Role::Staged
            }) else {
                continue;
            };
            let live = all
                .iter()
                .find(|p| p.role == Role::Live && &p.logical == logical)
                .cloned();
            moves.push(Move {
                logical: logical.clone(),
                incoming: staged.clone(),
                outgoing: live,
            });
        }
        let exists = self.existing_schemas(&selected).await?;
        let plan = swap_plan(project, objects, &moves, &exists, Role::Retained);
        if options.dry_run {
            return Ok(SwapReport {
                project: project.name().into(),
                deployment,
                sql: plan.statements(),
                live: plan.live.clone(),
                retained: plan.retained.clone(),
                ..SwapReport::default()
            });
        }
        let (swap_ms, attempts) = self.swap(project, &plan, options).await?;
        let mut report = SwapReport {
            project: project.name().into(),
            deployment: deployment.clone(),
            live: plan.live.clone(),
            retained: plan.retained.clone(),
            swap_ms,
            attempts,
            ..SwapReport::default()
        };
        if let Err(failure) = self.verify(objects, &selected, &BTreeMap::new()).await {
            let restored = moves
                .iter()
                .find_map(|m| m.outgoing.as_ref().map(|o| o.deployment.clone()))
                .unwrap_or_else(|| "none".into());
            let back = swap_back_plan(project, objects, &plan);
            self.swap(project, &back, options).await?;
            // The failed set goes: nothing should run it again.
            for m in &moves {
                let failed = sql::physical_name(&m.logical, &m.incoming.deployment);
                let _ = self.client.batch_execute(&sql::drop_schema(&failed)).await;
                let _ = pointers::forget(self.client, project.name(), &failed).await;
            }
            // Best effort: the rollback is what to report, not a registry hiccup after it.
            let _ = self
                .record_run(project, "promote", "rolled back", &failure.to_string())
                .await;
            return Err(Error::RolledBack { restored, failure });
        }
        self.record_run(
            project,
            "promote",
            "succeeded",
            &format!("deployment {deployment}"),
        )
        .await?;
        self.retire(project, options.keep, &mut report).await?;
        Ok(report)
    }

    /// Swaps back to the newest retained set, rebuilding nothing. The set that was live
    /// becomes a verified staged set, so `promote` can bring it back.
    pub async fn rollback(
        &self,
        project: &Project,
        objects: &Objects,
        dry_run: bool,
    ) -> Result<SwapReport> {
        if !dry_run && let Some(holder) = self.try_lock(project.name()).await? {
            return Err(Error::Blocked {
                blocked: Blocked {
                    reason: guards::GUARD_TARGET_LOCKED,
                    message: format!("the target is locked by {holder}"),
                },
            });
        }
        let result = match self.suffix {
            Some(_) => self.rollback_layered(project, objects, dry_run).await,
            None => self.rollback_locked(project, objects, dry_run).await,
        };
        if !dry_run {
            self.unlock(project.name()).await;
        }
        result
    }

    async fn rollback_locked(
        &self,
        project: &Project,
        objects: &Objects,
        dry_run: bool,
    ) -> Result<SwapReport> {
        let all = pointers::pointers(self.client, project.name()).await?;
        let current = sets(&all);
        let target = current
            .retained
            .first()
            .ok_or_else(|| Error::NoRetained("no retained set".into()))?;
        let mut moves = Vec::new();
        for logical in target.schemas.keys() {
            let Some(incoming) = all.iter().find(|p| {
                p.deployment == target.deployment
                    && &p.logical == logical
                    && p.role == Role::Retained
            }) else {
                continue;
            };
            let outgoing = all
                .iter()
                .find(|p| p.role == Role::Live && &p.logical == logical)
                .cloned();
            moves.push(Move {
                logical: logical.clone(),
                incoming: incoming.clone(),
                outgoing,
            });
        }
        let selected: BTreeSet<String> = moves.iter().map(|m| m.logical.clone()).collect();
        let exists = self.existing_schemas(&selected).await?;
        let plan = swap_plan(project, objects, &moves, &exists, Role::Staged);
        if dry_run {
            return Ok(SwapReport {
                project: project.name().into(),
                deployment: target.deployment.clone(),
                sql: plan.statements(),
                live: plan.live.clone(),
                retained: plan.retained.clone(),
                ..SwapReport::default()
            });
        }
        let (swap_ms, attempts) = self
            .swap(project, &plan, &PromoteOptions::default())
            .await?;
        self.record_run(
            project,
            "rollback",
            "succeeded",
            &format!("deployment {}", target.deployment),
        )
        .await?;
        Ok(SwapReport {
            project: project.name().into(),
            deployment: target.deployment.clone(),
            live: plan.live.clone(),
            retained: plan.retained.clone(),
            swap_ms,
            attempts,
            ..SwapReport::default()
        })
    }

    pub(super) async fn existing_schemas(
        &self,
        logical: &BTreeSet<String>,
    ) -> Result<BTreeSet<String>> {
        let names: Vec<String> = logical.iter().cloned().collect();
        let rows = self
            .client
            .query(
                "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1)",
                &[&names],
            )
            .await
            .map_err(db("reading schemas"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Runs a swap transaction with `lock_timeout`, retrying lock timeouts with backoff.
    pub(super) async fn swap(
        &self,
        project: &Project,
        plan: &SwapPlan,
        options: &PromoteOptions,
    ) -> Result<(u64, u32)> {
        let mut backoff = Duration::from_millis(50);
        let attempts = options.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let started = Instant::now();
            match self.swap_once(project, plan, options.lock_timeout).await {
                Ok(()) => return Ok((started.elapsed().as_millis() as u64, attempt)),
                Err(Error::Db { source, .. }) if retryable(&source) => {
                    last = db_error_message(&source);
                    tracing::debug!(attempt, error = %last, "Swap lost a race, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(other) => return Err(other),
            }
        }
        Err(Error::SwapTimeout {
            attempts,
            message: last,
        })
    }

    async fn swap_once(
        &self,
        project: &Project,
        plan: &SwapPlan,
        lock_timeout: Duration,
    ) -> Result<()> {
        self.client
            .batch_execute("BEGIN")
            .await
            .map_err(db("starting the swap"))?;
        let result = async {
            self.client
                .batch_execute(&format!(
                    "SET LOCAL lock_timeout = '{}ms'",
                    lock_timeout.as_millis()
                ))
                .await
                .map_err(db("setting lock_timeout"))?;
            // One round trip: a layer's repoint is a few hundred statements.
            if !plan.sql.is_empty() {
                self.client
                    .batch_execute(&plan.sql.join(";\n"))
                    .await
                    .map_err(db("swapping schemas"))?;
            }
            for (physical, new_physical, role, state) in &plan.pointer_moves {
                pointers::repoint(
                    self.client,
                    project.name(),
                    physical,
                    new_physical,
                    *role,
                    state,
                )
                .await?;
            }
            for p in &plan.pointer_inserts {
                pointers::upsert(self.client, project.name(), p).await?;
            }
            let suffix = self.suffix.as_deref().unwrap_or_default();
            for (logical, physical, deployment) in &plan.layer_moves {
                pointers::set_layer_live(
                    self.client,
                    project.name(),
                    suffix,
                    logical,
                    physical,
                    deployment,
                )
                .await?;
            }
            for (logical, physical) in &plan.layer_forgets {
                pointers::forget_layer(self.client, project.name(), suffix, logical, physical)
                    .await?;
            }
            Ok::<(), Error>(())
        }
        .await;
        match result {
            Ok(()) => self
                .client
                .batch_execute("COMMIT")
                .await
                .map_err(db("committing the swap")),
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }

    /// Drops retained sets beyond `keep` per schema, unless something outside depends on
    /// them (pg_depend); those are kept and reported.
    async fn retire(&self, project: &Project, keep: usize, report: &mut SwapReport) -> Result<()> {
        let all = pointers::pointers(self.client, project.name()).await?;
        let mut by_schema: BTreeMap<&str, Vec<&Pointer>> = BTreeMap::new();
        for p in all.iter().filter(|p| p.role == Role::Retained) {
            by_schema.entry(&p.logical).or_default().push(p);
        }
        for (_, retained) in by_schema {
            for old in retained.into_iter().skip(keep) {
                self.drop_set_unless_depended_on(project, &old.physical, report)
                    .await?;
            }
        }
        Ok(())
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

    /// Drops a physical set and forgets its pointer, unless something outside it depends
    /// on it (pg_depend): then it is kept and reported.
    pub(super) async fn drop_set_unless_depended_on(
        &self,
        project: &Project,
        physical: &str,
        report: &mut SwapReport,
    ) -> Result<()> {
        let rows = self
            .client
            .query(sql::OUTSIDE_DEPENDENTS, &[&physical])
            .await
            .map_err(db("checking dependents"))?;
        let dependents: Vec<String> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
        if !dependents.is_empty() {
            report
                .kept_for_dependents
                .insert(physical.to_string(), dependents);
            return Ok(());
        }
        self.client
            .batch_execute(&sql::drop_schema(physical))
            .await
            .map_err(db("dropping a retired schema set"))?;
        pointers::forget(self.client, project.name(), physical).await?;
        report.dropped.push(physical.to_string());
        Ok(())
    }
}

/// One logical schema changing hands.
struct Move {
    logical: String,
    incoming: Pointer,
    outgoing: Option<Pointer>,
}

/// The statements and pointer moves of one swap transaction.
#[derive(Default)]
pub(super) struct SwapPlan {
    pub(super) sql: Vec<String>,
    /// (physical now, physical after, role, state).
    pub(super) pointer_moves: Vec<(String, String, Role, String)>,
    pub(super) pointer_inserts: Vec<Pointer>,
    /// Layers: (logical, physical now live, its deployment); the previous live row is
    /// retained.
    pub(super) layer_moves: Vec<(String, String, String)>,
    /// Layers: (logical, physical) rows to forget, after the moves.
    pub(super) layer_forgets: Vec<(String, String)>,
    /// Layers renamed aside in the swap, dropped after it commits.
    pub(super) retired_layers: Vec<String>,
    /// Layers: statements run in their own transaction before the swap (building the new
    /// layers under temporary names), and those names.
    pub(super) prepare: Vec<String>,
    pub(super) prepared: Vec<String>,
    pub(super) live: BTreeMap<String, String>,
    pub(super) retained: BTreeMap<String, String>,
    /// For swap-back: (logical, incoming physical before the swap, where the outgoing set went).
    pub(super) undo: Vec<(String, String, Option<String>)>,
}

impl SwapPlan {
    pub(super) fn statements(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.prepare.is_empty() {
            out.push("BEGIN".to_string());
            out.extend(self.prepare.iter().cloned());
            out.push("COMMIT".to_string());
        }
        out.push("BEGIN".to_string());
        out.push("SET LOCAL lock_timeout = '500ms'".to_string());
        out.extend(self.sql.iter().cloned());
        out.push("-- and switchyard.schema_pointers moves in the same transaction".into());
        out.push("COMMIT".into());
        out
    }
}

/// The swap: outgoing live schemas renamed to `<schema>__sy_<their id>` with
/// `outgoing_role`, incoming ones renamed to the logical name; routines re-stamped with
/// logical search paths.
fn swap_plan(
    project: &Project,
    objects: &Objects,
    moves: &[Move],
    exists: &BTreeSet<String>,
    outgoing_role: Role,
) -> SwapPlan {
    let mut plan = SwapPlan::default();
    for m in moves {
        let mut outgoing_physical = None;
        if exists.contains(&m.logical) {
            let id = m.outgoing.as_ref().map_or("0", |o| o.deployment.as_str());
            let to = sql::physical_name(&m.logical, id);
            plan.sql.push(sql::rename_schema(&m.logical, &to));
            let state = if outgoing_role == Role::Staged {
                "verified"
            } else {
                "ready"
            };
            match &m.outgoing {
                Some(o) => plan.pointer_moves.push((
                    o.physical.clone(),
                    to.clone(),
                    outgoing_role,
                    state.into(),
                )),
                None => plan.pointer_inserts.push(Pointer {
                    logical: m.logical.clone(),
                    physical: to.clone(),
                    deployment: "0".into(),
                    role: outgoing_role,
                    state: state.into(),
                    definition_hash: String::new(),
                    objects: serde_json::json!({}),
                    message: "adopted: the schema existed before switchyard managed it".into(),
                    updated_at: String::new(),
                }),
            }
            plan.retained.insert(m.logical.clone(), to.clone());
            outgoing_physical = Some(to);
        }
        plan.sql
            .push(sql::rename_schema(&m.incoming.physical, &m.logical));
        plan.pointer_moves.push((
            m.incoming.physical.clone(),
            m.logical.clone(),
            Role::Live,
            "ready".into(),
        ));
        plan.sql.push(sql::stamp_routines(
            &m.logical,
            &logical_path(project, objects, &m.logical),
        ));
        plan.live.insert(m.logical.clone(), m.logical.clone());
        plan.undo.push((
            m.logical.clone(),
            m.incoming.physical.clone(),
            outgoing_physical,
        ));
    }
    plan
}

/// The inverse of a promotion's swap, after verify failed: the incoming set goes back to
/// its staging name (failed) and the previous live set returns.
fn swap_back_plan(project: &Project, objects: &Objects, forward: &SwapPlan) -> SwapPlan {
    let mut plan = SwapPlan::default();
    for (logical, incoming_physical, outgoing_physical) in &forward.undo {
        plan.sql
            .push(sql::rename_schema(logical, incoming_physical));
        plan.pointer_moves.push((
            logical.clone(),
            incoming_physical.clone(),
            Role::Staged,
            "failed".into(),
        ));
        if let Some(previous) = outgoing_physical {
            plan.sql.push(sql::rename_schema(previous, logical));
            plan.pointer_moves.push((
                previous.clone(),
                logical.clone(),
                Role::Live,
                "ready".into(),
            ));
            plan.sql.push(sql::stamp_routines(
                logical,
                &logical_path(project, objects, logical),
            ));
            plan.live.insert(logical.clone(), logical.clone());
        }
    }
    plan
}

/// A live routine's `search_path`: its own schema, the other blue-green schemas, the
/// stable ones, `public`: all logical names.
fn logical_path(project: &Project, objects: &Objects, own: &str) -> Vec<String> {
    let mut path = vec![own.to_string()];
    path.extend(objects.schemas.iter().filter(|s| *s != own).cloned());
    path.extend(
        project
            .manifest
            .schemas
            .iter()
            .filter(|(_, m)| **m == SchemaMode::Stable)
            .map(|(s, _)| s.clone()),
    );
    path.push("public".into());
    path
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(logical: &str, deployment: &str, role: Role, state: &str, hash: &str) -> Pointer {
        Pointer {
            logical: logical.into(),
            physical: match role {
                Role::Live => logical.into(),
                _ => sql::physical_name(logical, deployment),
            },
            deployment: deployment.into(),
            role,
            state: state.into(),
            definition_hash: hash.into(),
            objects: serde_json::json!({}),
            message: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn sets_group_pointers_newest_first_and_a_failed_schema_fails_its_set() {
        let all = [
            pointer("api", "9", Role::Live, "ready", "h"),
            pointer("api", "3", Role::Retained, "ready", ""),
            pointer("api", "7", Role::Retained, "ready", ""),
            pointer("api", "12", Role::Staged, "verified", ""),
            pointer("report", "12", Role::Staged, "failed", ""),
        ];
        let sets = sets(&all);
        assert_eq!(sets.live["api"], "api");
        assert_eq!(sets.live_deployments["api"], "9");
        let retained: Vec<&str> = sets
            .retained
            .iter()
            .map(|s| s.deployment.as_str())
            .collect();
        assert_eq!(retained, ["7", "3"]);
        assert_eq!(sets.staged[0].schemas.len(), 2);
        assert_eq!(sets.staged[0].state, "failed");
    }

    #[test]
    fn diff_objects_lists_added_changed_and_removed() {
        let source = serde_json::json!({"a": "1", "b": "2", "c": "3"});
        let target = serde_json::json!({"b": "2", "c": "x", "d": "4"});
        let d = diff_objects(&source, &target);
        assert_eq!(d.added, ["a"]);
        assert_eq!(d.changed, ["c"]);
        assert_eq!(d.removed, ["d"]);
    }

    #[test]
    fn only_changed_or_named_schemas_are_staged() {
        let objects = Objects {
            schemas: ["api".to_string(), "report".to_string()].into(),
            ..Objects::default()
        };
        let api_hash = objects.schema_hash("api");
        let live: BTreeMap<String, Pointer> = [
            pointer("api", "1", Role::Live, "ready", &api_hash),
            pointer("report", "1", Role::Live, "ready", "old"),
        ]
        .into_iter()
        .map(|p| (p.logical.clone(), p))
        .collect();
        assert_eq!(schemas_to_stage(&objects, &live, &[]), ["report"]);
        assert_eq!(
            schemas_to_stage(&objects, &live, &["api".into()]),
            ["api", "report"]
        );
        assert_eq!(
            schemas_to_stage(&objects, &BTreeMap::new(), &[]),
            ["api", "report"],
            "never promoted: both"
        );
    }

    #[test]
    fn a_schema_over_a_changed_one_is_staged_with_it() {
        use crate::project::objects::{Object, ObjectKind, ObjectName};
        let name = |schema: &str, name: &str| ObjectName {
            schema: schema.into(),
            name: name.into(),
        };
        let object = |n: ObjectName, deps: &[ObjectName]| Object {
            name: n,
            kind: ObjectKind::View,
            path: "x.sql".into(),
            line: 1,
            statements: Vec::new(),
            depends_on: deps.iter().cloned().collect(),
            hash: "h".into(),
            language: None,
        };
        let objects = Objects {
            ordered: vec![
                object(name("api", "v"), &[]),
                object(name("report", "r"), &[name("api", "v")]),
                object(name("board", "b"), &[name("report", "r")]),
                object(name("other", "o"), &[]),
            ],
            schemas: ["api", "report", "board", "other"].map(String::from).into(),
            ..Objects::default()
        };
        let live: BTreeMap<String, Pointer> = ["api", "report", "board", "other"]
            .iter()
            .map(|s| {
                let hash = if *s == "api" {
                    "old".to_string()
                } else {
                    objects.schema_hash(s)
                };
                (s.to_string(), pointer(s, "1", Role::Live, "ready", &hash))
            })
            .collect();
        assert_eq!(
            schemas_to_stage(&objects, &live, &[]),
            ["api", "board", "report"],
            "api changed; report reads api and board reads report"
        );
    }
}
