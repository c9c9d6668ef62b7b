//! The registry inside the target database: Sqitch's own tables (`sqitch`, created,
//! upgraded and written exactly as Sqitch 1.3 does) and switchyard's (`switchyard`: locks,
//! deployment runs, schema pointers, workflow states).
//! Owns every statement on those schemas; knows nothing of scripts, git or Kubernetes.

pub mod bluegreen;
mod ddl;
pub mod workflow;

use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

pub use ddl::{REGISTRY_VERSION, SWITCHYARD_VERSION};

/// Errors talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query failed.
    #[error("registry: {context}: {}", crate::pg::db_error_message(source))]
    Query {
        /// What we were doing.
        context: &'static str,
        /// The database error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The registry is newer than this build understands.
    #[error(
        "registry {schema} is at version {found}, newer than {supported} which this switchyard supports"
    )]
    TooNew {
        /// The registry schema.
        schema: String,
        /// The version found.
        found: String,
        /// The newest version this build knows.
        supported: String,
    },
    /// The project is registered with a different URI (Sqitch refuses this too).
    #[error("project {project:?} is registered with uri {registered:?}, the plan says {planned:?}")]
    UriMismatch {
        /// The project.
        project: String,
        /// URI in the registry.
        registered: Option<String>,
        /// URI in the plan.
        planned: Option<String>,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The advisory lock class of project deploy locks ("SYDL").
const LOCK_CLASS: i32 = 0x5359_444C;

fn query_error(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |source| Error::Query { context, source }
}

/// Who is writing to the registry (Sqitch's `user.name` / `user.email`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committer {
    /// Full name.
    pub name: String,
    /// Email address.
    pub email: String,
}

/// A change as the registry records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeployedChange {
    /// Sqitch change id.
    pub id: String,
    /// Change name.
    pub name: String,
    /// SHA-1 of the deploy script when it was deployed.
    pub script_hash: Option<String>,
    /// Note from the plan.
    pub note: String,
    /// Tags (with `@`) placed on this change.
    pub tags: Vec<String>,
    /// When it was deployed, RFC 3339.
    pub committed_at: String,
    /// Who deployed it.
    pub committer_name: String,
    /// Planned time, RFC 3339.
    pub planned_at: String,
    /// Planner name.
    pub planner_name: String,
    /// Planner email.
    pub planner_email: String,
    /// `requires` as recorded (`as_string` form).
    pub requires: Vec<String>,
    /// `conflicts` as recorded.
    pub conflicts: Vec<String>,
}

/// One row of the events table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// `deploy`, `revert`, `fail` or `merge`.
    pub event: String,
    /// Change id.
    pub change_id: String,
    /// Change name.
    pub change: String,
    /// Note.
    pub note: String,
    /// Tags at the time.
    pub tags: Vec<String>,
    /// When, RFC 3339.
    pub committed_at: String,
    /// Who.
    pub committer_name: String,
    /// Who (email).
    pub committer_email: String,
}

/// Everything needed to record one change: the plan's view of it.
#[derive(Clone, Debug)]
pub struct ChangeRecord<'a> {
    /// Change id.
    pub id: &'a str,
    /// Change name.
    pub name: &'a str,
    /// Project.
    pub project: &'a str,
    /// Note.
    pub note: &'a str,
    /// Planned time as written in the plan (RFC 3339 / Sqitch ISO form).
    pub planned_at: &'a str,
    /// Planner name.
    pub planner_name: &'a str,
    /// Planner email.
    pub planner_email: &'a str,
    /// SHA-1 hex of the deploy script.
    pub script_hash: Option<&'a str>,
    /// Requires: (`as_string`, resolved change id).
    pub requires: Vec<(String, String)>,
    /// Conflicts, `as_string`.
    pub conflicts: Vec<String>,
    /// Tags placed on the change.
    pub tags: Vec<TagRecord<'a>>,
}

/// A tag to record with its change.
#[derive(Clone, Debug)]
pub struct TagRecord<'a> {
    /// Tag id.
    pub id: &'a str,
    /// Name without `@`.
    pub name: &'a str,
    /// Note.
    pub note: &'a str,
    /// Planned time.
    pub planned_at: &'a str,
    /// Planner name.
    pub planner_name: &'a str,
    /// Planner email.
    pub planner_email: &'a str,
}

/// One deploy or revert run, from `switchyard.deployments`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeploymentRun {
    /// Run id.
    pub id: i64,
    /// `deploy` or `revert`.
    pub operation: String,
    /// The revision deployed, when the caller recorded one.
    pub revision: Option<String>,
    /// `running`, `succeeded` or `failed`.
    pub result: String,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// How long it took, in milliseconds (so far, while running).
    pub duration_ms: i64,
    /// Changes deployed or reverted.
    pub changes: i32,
    /// The failure, when it failed.
    pub message: String,
}

/// Who holds a project's deploy lock.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LockHolder {
    /// `name <email>` of the holder.
    pub holder: String,
    /// Host the holder runs on.
    pub host: String,
    /// OS process id of the holder.
    pub pid: i32,
    /// What it is doing (`deploy`, `revert`, …).
    pub operation: String,
    /// Since when, RFC 3339.
    pub started_at: String,
}

/// Where a deployed change's rows go in Sqitch's order of deployed changes (by
/// `committed_at`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position<'a> {
    /// Now: after everything deployed.
    Now,
    /// One microsecond after the deployed change with this id.
    After(&'a str),
    /// This many microseconds before the deployed change with this id.
    Before(&'a str, i32),
}

/// The registry in one database, under a schema name.
#[derive(Clone, Debug)]
pub struct Registry {
    schema: String,
    quoted: String,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new("sqitch")
    }
}

/// What a `revert` event records about a deployed change.
fn revert_record<'a>(change: &'a DeployedChange, project: &'a str) -> ChangeRecord<'a> {
    ChangeRecord {
        id: &change.id,
        name: &change.name,
        project,
        note: &change.note,
        planned_at: &change.planned_at,
        planner_name: &change.planner_name,
        planner_email: &change.planner_email,
        script_hash: change.script_hash.as_deref(),
        requires: Vec::new(),
        conflicts: Vec::new(),
        tags: Vec::new(),
    }
}

// Timestamps go out as text in one format so JSON and humans see the same thing.
const TS: &str = r#"to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"#;

fn ts(column: &str) -> String {
    TS.replace("%s", column)
}

/// The advisory lock `sqitch deploy` and `sqitch revert` hold for their whole run
/// (App::Sqitch::Engine::pg: `pg_advisory_lock(75474063)`).
pub const SQITCH_LOCK: i64 = 75_474_063;

/// The session holding [`SQITCH_LOCK`] exclusively: a Sqitch run. Sqitch records no
/// holder, so it is named by its server process, database user and client address.
async fn sqitch_holder(db: &impl GenericClient) -> Result<Option<LockHolder>> {
    let row = db
        .query_opt(
            &format!(
                "SELECT 'sqitch (database user ' || a.usename || ')', \
                        COALESCE(host(a.client_addr), 'a local socket'), a.pid, 'deploy or revert', {} \
                   FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
                  WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = $1::bigint::oid \
                    AND l.objsubid = 1 AND l.mode = 'ExclusiveLock' AND l.granted \
                    AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
                  LIMIT 1",
                ts("a.backend_start")
            ),
            &[&SQITCH_LOCK],
        )
        .await
        .map_err(query_error("reading Sqitch's lock holder"))?;
    Ok(row.map(|r| LockHolder {
        holder: r.get(0),
        host: r.get(1),
        pid: r.get(2),
        operation: r.get(3),
        started_at: r.get(4),
    }))
}

impl Registry {
    /// A registry in `schema` (Sqitch's default is `sqitch`).
    pub fn new(schema: &str) -> Registry {
        Registry {
            schema: schema.to_string(),
            quoted: crate::pg::quote_ident(schema),
        }
    }

    /// The registry schema name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// True when Sqitch's `changes` table exists (Sqitch's own test).
    pub async fn initialized(&self, db: &impl GenericClient) -> Result<bool> {
        let row = db
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = 'changes')",
                &[&self.schema],
            )
            .await
            .map_err(query_error("checking for the registry"))?;
        Ok(row.get(0))
    }

    /// Creates the registry, or upgrades it to [`REGISTRY_VERSION`], and creates or upgrades
    /// the `switchyard` schema. Call with the project lock held.
    pub async fn ensure(&self, db: &impl GenericClient, who: &Committer) -> Result<()> {
        if !self.initialized(db).await? {
            db.batch_execute(&ddl::create_sqitch(&self.quoted))
                .await
                .map_err(query_error("creating the sqitch registry"))?;
            self.register_release(db, who).await?;
        } else {
            let version = self.version(db).await?;
            match version.as_deref() {
                None => {
                    // Pre-1.0 registries have no releases table.
                    db.batch_execute(&ddl::upgrade_to_1_0(&self.quoted))
                        .await
                        .map_err(query_error("upgrading the registry to 1.0"))?;
                    self.register_release_version(db, who, 1.0).await?;
                    self.upgrade_1_1(db, who).await?;
                }
                Some("1") | Some("1.0") => self.upgrade_1_1(db, who).await?,
                Some(REGISTRY_VERSION) => {}
                Some(other) => {
                    return Err(Error::TooNew {
                        schema: self.schema.clone(),
                        found: other.to_string(),
                        supported: REGISTRY_VERSION.to_string(),
                    });
                }
            }
        }
        db.batch_execute(&ddl::switchyard_schema())
            .await
            .map_err(query_error("creating the switchyard schema"))?;
        // NB: only steps not recorded yet: an ALTER TABLE takes its exclusive lock even when
        // there is nothing left to add, and deploys must not queue behind a swap for it.
        let done: Vec<i32> = db
            .query("SELECT version FROM switchyard.releases", &[])
            .await
            .map_err(query_error("reading the switchyard schema version"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !done.contains(&bluegreen::VERSION) {
            bluegreen::migrate(db).await?;
        }
        if !done.contains(&bluegreen::LAYERS_VERSION) {
            bluegreen::migrate_layers(db).await?;
        }
        if !done.contains(&workflow::VERSION) {
            workflow::migrate(db).await?;
        }
        if !done.contains(&bluegreen::CATALOG_VERSION) {
            bluegreen::migrate_catalog(db).await?;
        }
        Ok(())
    }

    /// The workflow tables' scope for `project` in this registry.
    pub fn workflow_scope<'a>(&'a self, project: &'a str) -> workflow::Scope<'a> {
        workflow::Scope {
            registry: &self.schema,
            project,
        }
    }

    async fn upgrade_1_1(&self, db: &impl GenericClient, who: &Committer) -> Result<()> {
        db.batch_execute(&ddl::upgrade_to_1_1(&self.quoted))
            .await
            .map_err(query_error("upgrading the registry to 1.1"))?;
        self.register_release(db, who).await
    }

    /// The registry version (`MAX(version)` in `releases`), `None` when there is no
    /// releases table.
    pub async fn version(&self, db: &impl GenericClient) -> Result<Option<String>> {
        let exists: bool = db
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = 'releases')",
                &[&self.schema],
            )
            .await
            .map_err(query_error("checking the registry version"))?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let row = db
            .query_one(
                &format!("SELECT MAX(version)::text FROM {}.releases", self.quoted),
                &[],
            )
            .await
            .map_err(query_error("reading the registry version"))?;
        Ok(row.get(0))
    }

    async fn register_release(&self, db: &impl GenericClient, who: &Committer) -> Result<()> {
        self.register_release_version(db, who, 1.1).await
    }

    async fn register_release_version(
        &self,
        db: &impl GenericClient,
        who: &Committer,
        version: f32,
    ) -> Result<()> {
        db.execute(
            &format!(
                "INSERT INTO {}.releases (version, installer_name, installer_email) VALUES ($1, $2, $3)",
                self.quoted
            ),
            &[&version, &who.name, &who.email],
        )
        .await
        .map_err(query_error("recording the registry release"))?;
        Ok(())
    }

    /// Registers `project` as Sqitch does, refusing a different URI.
    pub async fn register_project(
        &self,
        db: &impl GenericClient,
        project: &str,
        uri: Option<&str>,
        who: &Committer,
    ) -> Result<()> {
        let rows = db
            .query(
                &format!(
                    "SELECT uri FROM {}.projects WHERE project = $1",
                    self.quoted
                ),
                &[&project],
            )
            .await
            .map_err(query_error("reading the project"))?;
        if let Some(row) = rows.first() {
            let registered: Option<String> = row.get(0);
            if registered.as_deref() != uri {
                return Err(Error::UriMismatch {
                    project: project.to_string(),
                    registered,
                    planned: uri.map(str::to_string),
                });
            }
            return Ok(());
        }
        db.execute(
            &format!(
                "INSERT INTO {}.projects (project, uri, creator_name, creator_email) VALUES ($1, $2, $3, $4)",
                self.quoted
            ),
            &[&project, &uri, &who.name, &who.email],
        )
        .await
        .map_err(query_error("registering the project"))?;
        Ok(())
    }

    /// The project's deployed changes in deploy order (by `committed_at`). Empty when there
    /// is no registry yet.
    pub async fn deployed(
        &self,
        db: &impl GenericClient,
        project: &str,
    ) -> Result<Vec<DeployedChange>> {
        if !self.initialized(db).await? {
            return Ok(Vec::new());
        }
        let q = &self.quoted;
        let sql = format!(
            "SELECT c.change_id, c.change, c.script_hash, c.note, \
                    ARRAY(SELECT t.tag FROM {q}.tags t WHERE t.change_id = c.change_id ORDER BY t.committed_at, t.tag), \
                    {committed}, c.committer_name, {planned}, c.planner_name, c.planner_email, \
                    ARRAY(SELECT d.dependency FROM {q}.dependencies d WHERE d.change_id = c.change_id AND d.type = 'require' ORDER BY d.dependency), \
                    ARRAY(SELECT d.dependency FROM {q}.dependencies d WHERE d.change_id = c.change_id AND d.type = 'conflict' ORDER BY d.dependency) \
               FROM {q}.changes c WHERE c.project = $1 ORDER BY c.committed_at, c.change_id",
            committed = ts("c.committed_at"),
            planned = ts("c.planned_at"),
        );
        let rows = db
            .query(&sql, &[&project])
            .await
            .map_err(query_error("reading deployed changes"))?;
        Ok(rows
            .iter()
            .map(|r| DeployedChange {
                id: r.get(0),
                name: r.get(1),
                script_hash: r.get(2),
                note: r.get(3),
                tags: r.get(4),
                committed_at: r.get(5),
                committer_name: r.get(6),
                planned_at: r.get(7),
                planner_name: r.get(8),
                planner_email: r.get(9),
                requires: r.get(10),
                conflicts: r.get(11),
            })
            .collect())
    }

    /// The id of the newest deployed change named `change` in `project`, optionally as of
    /// `tag`: how Sqitch resolves a dependency on another project.
    pub async fn change_id_for(
        &self,
        db: &impl GenericClient,
        project: &str,
        change: Option<&str>,
        tag: Option<&str>,
    ) -> Result<Option<String>> {
        if !self.initialized(db).await? {
            return Ok(None);
        }
        let q = &self.quoted;
        let row = match (change, tag) {
            (Some(change), None) => db
                .query_opt(
                    &format!("SELECT change_id FROM {q}.changes WHERE project = $1 AND change = $2 ORDER BY committed_at DESC LIMIT 1"),
                    &[&project, &change],
                )
                .await,
            (None, Some(tag)) => db
                .query_opt(
                    &format!("SELECT change_id FROM {q}.tags WHERE project = $1 AND tag = $2"),
                    &[&project, &format!("@{tag}")],
                )
                .await,
            (Some(change), Some(tag)) => db
                .query_opt(
                    &format!(
                        "SELECT c.change_id FROM {q}.changes c \
                          WHERE c.project = $1 AND c.change = $2 \
                            AND c.committed_at <= (SELECT c2.committed_at FROM {q}.tags t JOIN {q}.changes c2 ON c2.change_id = t.change_id WHERE t.project = $1 AND t.tag = $3) \
                          ORDER BY c.committed_at DESC LIMIT 1"
                    ),
                    &[&project, &change, &format!("@{tag}")],
                )
                .await,
            (None, None) => return Ok(None),
        }
        .map_err(query_error("resolving a dependency"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Deployed changes of *other* projects that require `change_id`: what blocks a revert.
    pub async fn required_by_others(
        &self,
        db: &impl GenericClient,
        project: &str,
        change_id: &str,
    ) -> Result<Vec<(String, String)>> {
        let q = &self.quoted;
        let rows = db
            .query(
                &format!(
                    "SELECT c.project, c.change FROM {q}.dependencies d JOIN {q}.changes c ON c.change_id = d.change_id \
                      WHERE d.dependency_id = $1 AND c.project <> $2 ORDER BY c.project, c.change"
                ),
                &[&change_id, &project],
            )
            .await
            .map_err(query_error("checking what requires a change"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Locks Sqitch's `changes` table for the rest of the transaction, as Sqitch does at the
    /// start of every change, so a concurrent `sqitch` and `switchyard` never interleave
    /// registry writes. Plain reads (`status`) still go through.
    pub async fn lock_changes(&self, db: &impl GenericClient) -> Result<()> {
        db.batch_execute(&format!(
            "LOCK TABLE {}.changes IN EXCLUSIVE MODE",
            self.quoted
        ))
        .await
        .map_err(query_error("locking the changes table"))
    }

    /// Records a deployed change, its dependencies, its tags and a `deploy` event, as
    /// Sqitch's `log_deploy_change` does.
    pub async fn log_deploy(
        &self,
        db: &impl GenericClient,
        change: &ChangeRecord<'_>,
        who: &Committer,
    ) -> Result<()> {
        self.log_deploy_at(db, change, who, Position::Now).await
    }

    /// [`Registry::log_deploy`] with the `changes` and `tags` rows dated at `position`. A
    /// change deployed into a gap (after an unignore, or a replace of a change skipped
    /// before) is dated between its neighbours in plan order, so that ordering rows by
    /// `committed_at` still gives plan order: Sqitch takes its newest row as its current
    /// change and reverts newest first. The `deploy` event keeps the real time.
    // long-fn: Sqitch's rows for one deploy (change, dependencies, tags, event), SQL text written as Sqitch writes it.
    pub async fn log_deploy_at(
        &self,
        db: &impl GenericClient,
        change: &ChangeRecord<'_>,
        who: &Committer,
        position: Position<'_>,
    ) -> Result<()> {
        let q = &self.quoted;
        let at = format!(
            "COALESCE((SELECT p.committed_at + interval '1 microsecond' FROM {q}.changes p WHERE p.change_id = $11::text), \
                      (SELECT n.committed_at - $13::int * interval '1 microsecond' FROM {q}.changes n WHERE n.change_id = $12::text), \
                      clock_timestamp())"
        );
        let (after, before, steps) = match position {
            Position::Now => (None, None, 0),
            Position::After(id) => (Some(id), None, 0),
            Position::Before(id, n) => (None, Some(id), n),
        };
        db.execute(
            &format!(
                "INSERT INTO {q}.changes (change_id, script_hash, change, project, note, committer_name, committer_email, planned_at, planner_name, planner_email, committed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::timestamptz, $9, $10, {at})"
            ),
            &[
                &change.id,
                &change.script_hash,
                &change.name,
                &change.project,
                &change.note,
                &who.name,
                &who.email,
                &change.planned_at,
                &change.planner_name,
                &change.planner_email,
                &after,
                &before,
                &steps,
            ],
        )
        .await
        .map_err(query_error("recording a deployed change"))?;
        if !change.requires.is_empty() || !change.conflicts.is_empty() {
            let mut sql = format!(
                "INSERT INTO {q}.dependencies (change_id, type, dependency, dependency_id) VALUES "
            );
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&change.id];
            let mut values = Vec::new();
            for (dep, id) in &change.requires {
                params.push(dep);
                params.push(id);
                values.push(format!(
                    "($1, 'require', ${}, ${})",
                    params.len() - 1,
                    params.len()
                ));
            }
            for dep in &change.conflicts {
                params.push(dep);
                values.push(format!("($1, 'conflict', ${}, NULL)", params.len()));
            }
            sql.push_str(&values.join(", "));
            db.execute(&sql, &params)
                .await
                .map_err(query_error("recording dependencies"))?;
        }
        for tag in &change.tags {
            let name = format!("@{}", tag.name);
            db.execute(
                &format!(
                    "INSERT INTO {q}.tags (tag_id, tag, project, change_id, note, committer_name, committer_email, planned_at, planner_name, planner_email, committed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::timestamptz, $9, $10, {at})"
                ),
                &[
                    &tag.id,
                    &name,
                    &change.project,
                    &change.id,
                    &tag.note,
                    &who.name,
                    &who.email,
                    &tag.planned_at,
                    &tag.planner_name,
                    &tag.planner_email,
                    &after,
                    &before,
                    &steps,
                ],
            )
            .await
            .map_err(query_error("recording a tag"))?;
        }
        let tags: Vec<String> = change.tags.iter().map(|t| format!("@{}", t.name)).collect();
        let requires: Vec<&str> = change.requires.iter().map(|(d, _)| d.as_str()).collect();
        self.log_event(
            db,
            "deploy",
            change,
            &tags,
            &requires,
            &change.conflicts,
            who,
        )
        .await
    }

    /// Records that a deployed change was undone and deployed again with a new script (a
    /// `-replace` file), as Sqitch would record a revert and a deploy of it: a `revert`
    /// event, then a `deploy` event carrying the new script's hash. The `changes` row is
    /// updated in place rather than removed and inserted again: changes deployed after it
    /// may require it (their `dependencies` rows point at it), and it keeps its date so
    /// Sqitch's order of deployed changes stays plan order.
    pub async fn log_replace(
        &self,
        db: &impl GenericClient,
        row: &DeployedChange,
        change: &ChangeRecord<'_>,
        who: &Committer,
    ) -> Result<()> {
        let q = &self.quoted;
        let record = revert_record(row, change.project);
        let requires: Vec<&str> = row.requires.iter().map(String::as_str).collect();
        self.log_event(
            db,
            "revert",
            &record,
            &row.tags,
            &requires,
            &row.conflicts,
            who,
        )
        .await?;
        db.execute(
            &format!(
                "UPDATE {q}.changes SET script_hash = $2, committer_name = $3, committer_email = $4 WHERE change_id = $1"
            ),
            &[&change.id, &change.script_hash, &who.name, &who.email],
        )
        .await
        .map_err(query_error("recording a replaced change"))?;
        let tags: Vec<String> = change.tags.iter().map(|t| format!("@{}", t.name)).collect();
        let requires: Vec<&str> = change.requires.iter().map(|(d, _)| d.as_str()).collect();
        self.log_event(
            db,
            "deploy",
            change,
            &tags,
            &requires,
            &change.conflicts,
            who,
        )
        .await
    }

    /// Records a failed change (Sqitch's `log_fail_change`).
    pub async fn log_fail(
        &self,
        db: &impl GenericClient,
        change: &ChangeRecord<'_>,
        who: &Committer,
    ) -> Result<()> {
        let tags: Vec<String> = change.tags.iter().map(|t| format!("@{}", t.name)).collect();
        let requires: Vec<&str> = change.requires.iter().map(|(d, _)| d.as_str()).collect();
        self.log_event(db, "fail", change, &tags, &requires, &change.conflicts, who)
            .await
    }

    /// Removes a change, its tags and dependencies, and records a `revert` event carrying
    /// what was removed (Sqitch's `log_revert_change`).
    pub async fn log_revert(
        &self,
        db: &impl GenericClient,
        change: &DeployedChange,
        project: &str,
        who: &Committer,
    ) -> Result<()> {
        let q = &self.quoted;
        db.execute(
            &format!("DELETE FROM {q}.tags WHERE change_id = $1"),
            &[&change.id],
        )
        .await
        .map_err(query_error("removing tags"))?;
        db.execute(
            &format!("DELETE FROM {q}.changes WHERE change_id = $1"),
            &[&change.id],
        )
        .await
        .map_err(query_error("removing a change"))?;
        let record = revert_record(change, project);
        let requires: Vec<&str> = change.requires.iter().map(String::as_str).collect();
        self.log_event(
            db,
            "revert",
            &record,
            &change.tags,
            &requires,
            &change.conflicts,
            who,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn log_event(
        &self,
        db: &impl GenericClient,
        event: &str,
        change: &ChangeRecord<'_>,
        tags: &[String],
        requires: &[&str],
        conflicts: &[String],
        who: &Committer,
    ) -> Result<()> {
        db.execute(
            &format!(
                "INSERT INTO {}.events (event, change_id, change, project, note, tags, requires, conflicts, committer_name, committer_email, planned_at, planner_name, planner_email, committed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::timestamptz, $12, $13, clock_timestamp())",
                self.quoted
            ),
            &[
                &event,
                &change.id,
                &change.name,
                &change.project,
                &change.note,
                &tags,
                &requires,
                &conflicts,
                &who.name,
                &who.email,
                &change.planned_at,
                &change.planner_name,
                &change.planner_email,
            ],
        )
        .await
        .map_err(query_error("recording an event"))?;
        Ok(())
    }

    /// The project's events, newest first.
    pub async fn events(&self, db: &impl GenericClient, project: &str) -> Result<Vec<Event>> {
        if !self.initialized(db).await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT event, change_id, change, note, tags, {}, committer_name, committer_email \
               FROM {}.events WHERE project = $1 ORDER BY committed_at DESC",
            ts("committed_at"),
            self.quoted
        );
        let rows = db
            .query(&sql, &[&project])
            .await
            .map_err(query_error("reading events"))?;
        Ok(rows
            .iter()
            .map(|r| Event {
                event: r.get(0),
                change_id: r.get(1),
                change: r.get(2),
                note: r.get(3),
                tags: r.get(4),
                committed_at: r.get(5),
                committer_name: r.get(6),
                committer_email: r.get(7),
            })
            .collect())
    }

    // === switchyard's own bookkeeping ===

    /// Takes `project`'s deploy lock for this session without waiting; false when another
    /// session holds it. The lock is a session advisory lock keyed by (`LOCK_CLASS`,
    /// `hashtext(project)`); advisory locks are per database, so one project in one
    /// database is locked, never the whole server (sqitchers/sqitch#670), and a session
    /// that dies releases it.
    ///
    /// NB: Sqitch holds advisory lock [`SQITCH_LOCK`] exclusively for a whole deploy or
    /// revert, and knows nothing of ours; without it a `sqitch deploy` ran changes beside a
    /// switchyard deploy and failed on the ones switchyard had just applied (issue #17).
    /// So the project lock also takes Sqitch's lock shared: a Sqitch run and a switchyard
    /// run exclude each other, while switchyard runs of different projects still do not.
    pub async fn try_lock(&self, db: &impl GenericClient, project: &str) -> Result<bool> {
        let row = db
            .query_one(
                "SELECT pg_try_advisory_lock_shared($1) \
                    AND (pg_try_advisory_lock($2, hashtext($3)) \
                         OR NOT pg_advisory_unlock_shared($1))",
                &[&SQITCH_LOCK, &LOCK_CLASS, &project],
            )
            .await
            .map_err(query_error("taking the project lock"))?;
        Ok(row.get(0))
    }

    /// Releases `project`'s deploy lock and forgets this session's holder record.
    pub async fn unlock(&self, db: &impl GenericClient, project: &str) -> Result<()> {
        self.clear_lock(db, project).await?;
        db.query_one(
            "SELECT pg_advisory_unlock($1, hashtext($2)), pg_advisory_unlock_shared($3)",
            &[&LOCK_CLASS, &project, &SQITCH_LOCK],
        )
        .await
        .map_err(query_error("releasing the project lock"))?;
        Ok(())
    }

    /// Records this session as the lock holder (after the advisory lock is taken).
    pub async fn record_lock(
        &self,
        db: &impl GenericClient,
        project: &str,
        holder: &LockHolder,
    ) -> Result<()> {
        db.execute(
            "INSERT INTO switchyard.locks (project, holder, host, pid, backend_pid, operation, started_at) \
             VALUES ($1, $2, $3, $4, pg_backend_pid(), $5, clock_timestamp()) \
             ON CONFLICT (project) DO UPDATE SET holder = EXCLUDED.holder, host = EXCLUDED.host, pid = EXCLUDED.pid, \
               backend_pid = EXCLUDED.backend_pid, operation = EXCLUDED.operation, started_at = EXCLUDED.started_at",
            &[&project, &holder.holder, &holder.host, &holder.pid, &holder.operation],
        )
        .await
        .map_err(query_error("recording the lock holder"))?;
        Ok(())
    }

    /// Forgets this session's lock record.
    pub async fn clear_lock(&self, db: &impl GenericClient, project: &str) -> Result<()> {
        db.execute(
            "DELETE FROM switchyard.locks WHERE project = $1 AND backend_pid = pg_backend_pid()",
            &[&project],
        )
        .await
        .map_err(query_error("clearing the lock holder"))?;
        Ok(())
    }

    /// The recorded holder of `project`'s lock, if its session is still alive.
    pub async fn lock_holder(
        &self,
        db: &impl GenericClient,
        project: &str,
    ) -> Result<Option<LockHolder>> {
        let exists: bool = db
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = 'switchyard' AND tablename = 'locks')",
                &[],
            )
            .await
            .map_err(query_error("checking for the locks table"))?
            .get(0);
        let row = match exists {
            false => None,
            true => db
                .query_opt(
                    &format!(
                        "SELECT l.holder, l.host, l.pid, l.operation, {} FROM switchyard.locks l \
                          JOIN pg_catalog.pg_stat_activity a ON a.pid = l.backend_pid WHERE l.project = $1",
                        ts("l.started_at")
                    ),
                    &[&project],
                )
                .await
                .map_err(query_error("reading the lock holder"))?,
        };
        match row {
            Some(r) => Ok(Some(LockHolder {
                holder: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                operation: r.get(3),
                started_at: r.get(4),
            })),
            None => sqitch_holder(db).await,
        }
    }

    /// Starts a row in `switchyard.deployments`; returns its id.
    pub async fn start_deployment(
        &self,
        db: &impl GenericClient,
        project: &str,
        operation: &str,
        revision: Option<&str>,
        who: &Committer,
    ) -> Result<i64> {
        let row = db
            .query_one(
                "INSERT INTO switchyard.deployments (project, operation, revision, committer_name, started_at, result) \
                 VALUES ($1, $2, $3, $4, clock_timestamp(), 'running') RETURNING id",
                &[&project, &operation, &revision, &who.name],
            )
            .await
            .map_err(query_error("recording a deployment"))?;
        Ok(row.get(0))
    }

    /// The project's last `limit` runs, newest first. Empty before the first deploy.
    pub async fn deployments(
        &self,
        db: &impl GenericClient,
        project: &str,
        limit: i64,
    ) -> Result<Vec<DeploymentRun>> {
        let exists: bool = db
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = 'switchyard' AND tablename = 'deployments')",
                &[],
            )
            .await
            .map_err(query_error("checking for the deployments table"))?
            .get(0);
        if !exists {
            return Ok(Vec::new());
        }
        let rows = db
            .query(
                &format!(
                    "SELECT id, operation, revision, result, {}, \
                            (extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at) * 1000)::bigint, \
                            changes, message \
                       FROM switchyard.deployments WHERE project = $1 ORDER BY id DESC LIMIT $2",
                    ts("started_at")
                ),
                &[&project, &limit],
            )
            .await
            .map_err(query_error("reading deployments"))?;
        Ok(rows
            .iter()
            .map(|r| DeploymentRun {
                id: r.get(0),
                operation: r.get(1),
                revision: r.get(2),
                result: r.get(3),
                started_at: r.get(4),
                duration_ms: r.get(5),
                changes: r.get(6),
                message: r.get(7),
            })
            .collect())
    }

    /// Finishes a row in `switchyard.deployments`.
    pub async fn finish_deployment(
        &self,
        db: &impl GenericClient,
        id: i64,
        result: &str,
        changes: i32,
        message: &str,
    ) -> Result<()> {
        db.execute(
            "UPDATE switchyard.deployments SET finished_at = clock_timestamp(), result = $2, changes = $3, message = $4 WHERE id = $1",
            &[&id, &result, &changes, &message],
        )
        .await
        .map_err(query_error("finishing a deployment record"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_schema_is_quoted_in_sql() {
        let registry = Registry::new("my reg");
        assert_eq!(registry.quoted, "\"my reg\"");
        assert!(ddl::create_sqitch(&registry.quoted).contains("CREATE TABLE \"my reg\".changes"));
    }
}
