//! Switchyard's blue/green bookkeeping in `switchyard.schema_pointers` and
//! `switchyard.layers`: which physical set is live, retained or staged per logical schema
//! and layer.

use tokio_postgres::GenericClient;

use super::{Result, query_error};

/// The `switchyard` schema version this step brings a database to.
pub const VERSION: i32 = 2;

/// Migration step 2: idempotent, so every writer may run it.
pub fn migration_2() -> String {
    format!(
        r#"
SET LOCAL client_min_messages = warning;
ALTER TABLE switchyard.schema_pointers ADD COLUMN IF NOT EXISTS state TEXT NOT NULL DEFAULT 'ready';
ALTER TABLE switchyard.schema_pointers ADD COLUMN IF NOT EXISTS definition_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE switchyard.schema_pointers ADD COLUMN IF NOT EXISTS objects JSONB NOT NULL DEFAULT '{{}}';
ALTER TABLE switchyard.schema_pointers ADD COLUMN IF NOT EXISTS message TEXT NOT NULL DEFAULT '';
ALTER TABLE switchyard.schema_pointers ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp();
CREATE INDEX IF NOT EXISTS schema_pointers_logical ON switchyard.schema_pointers (project, logical_schema, role);
INSERT INTO switchyard.releases (version) VALUES ({VERSION}) ON CONFLICT DO NOTHING;
"#
    )
}

/// Migration step 3: layers, for Environments that share one database (each serves its
/// logical schemas as thin layers over physical sets that never move), and the `shared`
/// role of a physical set that layers point at. Idempotent.
pub fn migration_3() -> String {
    format!(
        r#"
SET LOCAL client_min_messages = warning;
DO $sy$ BEGIN
IF NOT EXISTS (SELECT 1 FROM switchyard.releases WHERE version = {LAYERS_VERSION}) THEN
  ALTER TABLE switchyard.schema_pointers DROP CONSTRAINT IF EXISTS schema_pointers_role_check;
  ALTER TABLE switchyard.schema_pointers ADD CONSTRAINT schema_pointers_role_check
    CHECK (role IN ('live', 'retained', 'staged', 'shared'));
END IF;
END $sy$;
CREATE TABLE IF NOT EXISTS switchyard.layers (
    project          TEXT        NOT NULL,
    suffix           TEXT        NOT NULL,
    logical_schema   TEXT        NOT NULL,
    physical_schema  TEXT        NOT NULL,
    deployment_id    TEXT        NOT NULL,
    role             TEXT        NOT NULL CHECK (role IN ('live', 'retained')),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (project, suffix, logical_schema, physical_schema)
);
COMMENT ON TABLE switchyard.layers IS 'Which physical schema each Environment (by schema suffix) serves under <logical><suffix>, and the ones it served before.';
INSERT INTO switchyard.releases (version) VALUES ({LAYERS_VERSION}) ON CONFLICT DO NOTHING;
"#
    )
}

/// The `switchyard` schema version [`migration_3`] brings a database to.
pub const LAYERS_VERSION: i32 = 3;

/// The `switchyard` schema version [`migration_5`] brings a database to.
pub const CATALOG_VERSION: i32 = 5;

/// Migration step 5: each set's catalog fingerprint as verified, for drift detection
/// (issue #16). Sets staged before it keep `{}`: no fingerprint, no object drift.
/// Idempotent.
pub fn migration_5() -> String {
    format!(
        r#"
SET LOCAL client_min_messages = warning;
ALTER TABLE switchyard.schema_pointers ADD COLUMN IF NOT EXISTS catalog JSONB NOT NULL DEFAULT '{{}}';
INSERT INTO switchyard.releases (version) VALUES ({CATALOG_VERSION}) ON CONFLICT DO NOTHING;
"#
    )
}

/// Runs migration step 2 ([`VERSION`]). Run by [`Registry::ensure`](super::Registry::ensure),
/// in its transaction.
pub async fn migrate(db: &impl GenericClient) -> Result<()> {
    db.batch_execute(&migration_2())
        .await
        .map_err(query_error("migrating the switchyard schema to version 2"))
}

/// Runs migration step 3 ([`LAYERS_VERSION`]). Run by
/// [`Registry::ensure`](super::Registry::ensure), in its transaction.
pub async fn migrate_layers(db: &impl GenericClient) -> Result<()> {
    db.batch_execute(&migration_3())
        .await
        .map_err(query_error("migrating the switchyard schema to version 3"))
}

/// Runs migration step 5 ([`CATALOG_VERSION`]). Run by
/// [`Registry::ensure`](super::Registry::ensure), in its transaction.
pub async fn migrate_catalog(db: &impl GenericClient) -> Result<()> {
    db.batch_execute(&migration_5())
        .await
        .map_err(query_error("migrating the switchyard schema to version 5"))
}

/// What a physical schema is to its logical schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serving under the logical name.
    Live,
    /// A previous live set, kept for instant rollback.
    Retained,
    /// A candidate built by `stage`.
    Staged,
    /// A physical set that layers point at (see [`LayerPointer`]); never renamed.
    Shared,
}

impl Role {
    /// The word stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Live => "live",
            Role::Retained => "retained",
            Role::Staged => "staged",
            Role::Shared => "shared",
        }
    }

    fn parse(s: &str) -> Role {
        match s {
            "live" => Role::Live,
            "retained" => Role::Retained,
            "shared" => Role::Shared,
            _ => Role::Staged,
        }
    }
}

/// One row of `switchyard.schema_pointers`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pointer {
    /// The schema name users query.
    pub logical: String,
    /// The schema in the catalog today.
    pub physical: String,
    /// The stage run (deployment id) that built it.
    pub deployment: String,
    /// Live, retained or staged.
    pub role: Role,
    /// `building`, `verified`, `failed` (staged) or `ready`.
    pub state: String,
    /// [`Objects::schema_hash`](crate::project::objects::Objects::schema_hash) it was built from.
    pub definition_hash: String,
    /// Object name → file hash, for diffs.
    pub objects: serde_json::Value,
    /// Why it failed, when it did.
    pub message: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
    /// Object → fingerprint of the set as verified
    /// ([`Catalog`](crate::engine::bluegreen::Catalog) of one schema); `{}` when staged
    /// before migration 5.
    pub catalog: serde_json::Value,
}

/// Every pointer of a project, newest deployment first. Empty before the first stage.
pub async fn pointers(db: &impl GenericClient, project: &str) -> Result<Vec<Pointer>> {
    let columns = db
        .query_one(
            "SELECT bool_or(attname = 'definition_hash'), bool_or(attname = 'catalog') FROM pg_catalog.pg_attribute \
              WHERE attrelid = to_regclass('switchyard.schema_pointers') AND attname IN ('definition_hash', 'catalog')",
            &[],
        )
        .await
        .map_err(query_error("checking for schema pointers"))?;
    if !columns.get::<_, Option<bool>>(0).unwrap_or(false) {
        return Ok(Vec::new());
    }
    // NB: read-only callers (status) may meet a database no writer has migrated to 5 yet.
    let catalog = match columns.get::<_, Option<bool>>(1) {
        Some(true) => "catalog",
        _ => "'{}'::jsonb",
    };
    let rows = db
        .query(
            &format!(
                r#"SELECT logical_schema, physical_schema, deployment_id, role, state, definition_hash, objects, message,
                      to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), {catalog}
                 FROM switchyard.schema_pointers WHERE project = $1
                ORDER BY (CASE WHEN deployment_id ~ '^[0-9]+$' THEN deployment_id::bigint ELSE 0 END) DESC, logical_schema"#
            ),
            &[&project],
        )
        .await
        .map_err(query_error("reading schema pointers"))?;
    Ok(rows
        .iter()
        .map(|r| Pointer {
            logical: r.get(0),
            physical: r.get(1),
            deployment: r.get(2),
            role: Role::parse(r.get::<_, &str>(3)),
            state: r.get(4),
            definition_hash: r.get(5),
            objects: r.get(6),
            message: r.get(7),
            updated_at: r.get(8),
            catalog: r.get(9),
        })
        .collect())
}

/// Records a new pointer (or replaces the row for the same physical schema).
pub async fn upsert(db: &impl GenericClient, project: &str, pointer: &Pointer) -> Result<()> {
    db.execute(
        "INSERT INTO switchyard.schema_pointers (project, logical_schema, physical_schema, deployment_id, role, state, definition_hash, objects, message, updated_at, catalog) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, clock_timestamp(), $10) \
         ON CONFLICT (project, physical_schema) DO UPDATE SET logical_schema = EXCLUDED.logical_schema, \
           deployment_id = EXCLUDED.deployment_id, role = EXCLUDED.role, state = EXCLUDED.state, \
           definition_hash = EXCLUDED.definition_hash, objects = EXCLUDED.objects, message = EXCLUDED.message, updated_at = EXCLUDED.updated_at, \
           catalog = EXCLUDED.catalog",
        &[
            &project,
            &pointer.logical,
            &pointer.physical,
            &pointer.deployment,
            &pointer.role.as_str(),
            &pointer.state,
            &pointer.definition_hash,
            &pointer.objects,
            &pointer.message,
            &pointer.catalog,
        ],
    )
    .await
    .map_err(query_error("recording a schema pointer"))?;
    Ok(())
}

/// Records the fingerprint of a set that was just verified.
pub async fn set_catalog(
    db: &impl GenericClient,
    project: &str,
    physical: &str,
    catalog: &serde_json::Value,
) -> Result<()> {
    db.execute(
        "UPDATE switchyard.schema_pointers SET catalog = $3 WHERE project = $1 AND physical_schema = $2",
        &[&project, &physical, catalog],
    )
    .await
    .map_err(query_error("recording a set's catalog"))?;
    Ok(())
}

/// Moves a pointer: its physical schema was renamed and/or its role changed.
pub async fn repoint(
    db: &impl GenericClient,
    project: &str,
    physical: &str,
    new_physical: &str,
    role: Role,
    state: &str,
) -> Result<()> {
    db.execute(
        "UPDATE switchyard.schema_pointers SET physical_schema = $3, role = $4, state = $5, updated_at = clock_timestamp() \
          WHERE project = $1 AND physical_schema = $2",
        &[&project, &physical, &new_physical, &role.as_str(), &state],
    )
    .await
    .map_err(query_error("moving a schema pointer"))?;
    Ok(())
}

/// Marks a pointer's state (e.g. `verified`, `failed`) with a message.
pub async fn set_state(
    db: &impl GenericClient,
    project: &str,
    physical: &str,
    state: &str,
    message: &str,
) -> Result<()> {
    db.execute(
        "UPDATE switchyard.schema_pointers SET state = $3, message = $4, updated_at = clock_timestamp() WHERE project = $1 AND physical_schema = $2",
        &[&project, &physical, &state, &message],
    )
    .await
    .map_err(query_error("updating a schema pointer"))?;
    Ok(())
}

/// Forgets a pointer (its schema was dropped).
pub async fn forget(db: &impl GenericClient, project: &str, physical: &str) -> Result<()> {
    db.execute(
        "DELETE FROM switchyard.schema_pointers WHERE project = $1 AND physical_schema = $2",
        &[&project, &physical],
    )
    .await
    .map_err(query_error("removing a schema pointer"))?;
    Ok(())
}

// === layers ===

/// One row of `switchyard.layers`: the physical schema an Environment's layer
/// `<logical><suffix>` serves (live), or served before (retained).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LayerPointer {
    /// The Environment's schema suffix (may be empty).
    pub suffix: String,
    /// The schema as `switchyard.yaml` names it.
    pub logical: String,
    /// The physical set, `<logical>__sy_<deployment>`.
    pub physical: String,
    /// The deployment that built the physical set.
    pub deployment: String,
    /// Live or retained.
    pub role: Role,
    /// When it last changed role, RFC 3339: retained sets are ordered by it.
    pub updated_at: String,
}

/// Every layer row of a project, newest change first. Empty before the first layered
/// promotion (or before migration 3).
pub async fn layers(db: &impl GenericClient, project: &str) -> Result<Vec<LayerPointer>> {
    let exists: bool = db
        .query_one("SELECT to_regclass('switchyard.layers') IS NOT NULL", &[])
        .await
        .map_err(query_error("checking for layers"))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = db
        .query(
            r#"SELECT suffix, logical_schema, physical_schema, deployment_id, role,
                      to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                 FROM switchyard.layers WHERE project = $1
                ORDER BY updated_at DESC, logical_schema"#,
            &[&project],
        )
        .await
        .map_err(query_error("reading layers"))?;
    Ok(rows
        .iter()
        .map(|r| LayerPointer {
            suffix: r.get(0),
            logical: r.get(1),
            physical: r.get(2),
            deployment: r.get(3),
            role: Role::parse(r.get::<_, &str>(4)),
            updated_at: r.get(5),
        })
        .collect())
}

/// Points a layer at `physical`: the row that was live becomes retained, all in the
/// caller's transaction.
pub async fn set_layer_live(
    db: &impl GenericClient,
    project: &str,
    suffix: &str,
    logical: &str,
    physical: &str,
    deployment: &str,
) -> Result<()> {
    db.execute(
        "UPDATE switchyard.layers SET role = 'retained', updated_at = clock_timestamp() \
          WHERE project = $1 AND suffix = $2 AND logical_schema = $3 AND role = 'live' AND physical_schema <> $4",
        &[&project, &suffix, &logical, &physical],
    )
    .await
    .map_err(query_error("retaining a layer's previous set"))?;
    db.execute(
        "INSERT INTO switchyard.layers (project, suffix, logical_schema, physical_schema, deployment_id, role) \
         VALUES ($1, $2, $3, $4, $5, 'live') \
         ON CONFLICT (project, suffix, logical_schema, physical_schema) DO UPDATE SET role = 'live', updated_at = clock_timestamp()",
        &[&project, &suffix, &logical, &physical, &deployment],
    )
    .await
    .map_err(query_error("pointing a layer"))?;
    Ok(())
}

/// Forgets one layer row (a retained set beyond the kept count, or a failed set).
pub async fn forget_layer(
    db: &impl GenericClient,
    project: &str,
    suffix: &str,
    logical: &str,
    physical: &str,
) -> Result<()> {
    db.execute(
        "DELETE FROM switchyard.layers WHERE project = $1 AND suffix = $2 AND logical_schema = $3 AND physical_schema = $4",
        &[&project, &suffix, &logical, &physical],
    )
    .await
    .map_err(query_error("removing a layer row"))?;
    Ok(())
}
