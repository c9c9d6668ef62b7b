//! `switchyard.yaml`: the project's name, engine, schemas and variables.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The database engine a project targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL (Sqitch's `pg`).
    #[default]
    Postgres,
    /// Materialize.
    Materialize,
}

/// How a schema is deployed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemaMode {
    /// Changed only through the plan; its objects keep their data.
    Stable,
    /// Holds only what `objects/<schema>/` defines; rebuilt and swapped in.
    BlueGreen,
}

/// The parsed `switchyard.yaml`, or one synthesised for a plain Sqitch project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// Project name; must match `%project` in the plan.
    pub project: String,
    /// Target engine.
    #[serde(default)]
    pub engine: Engine,
    /// Plan file relative to the project root.
    #[serde(default = "default_plan")]
    pub plan: String,
    /// Schemas and their mode.
    #[serde(default)]
    pub schemas: BTreeMap<String, SchemaMode>,
    /// Materialize clusters (name → settings); ignored on PostgreSQL.
    #[serde(default)]
    pub clusters: BTreeMap<String, Cluster>,
    /// Variables passed to scripts, as `sqitch --set` does.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// A Materialize cluster's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    /// Cluster size, e.g. `50cc`.
    pub size: String,
    /// Replication factor (default 1).
    #[serde(default = "one")]
    pub replication_factor: u32,
}

fn default_plan() -> String {
    "sqitch.plan".into()
}

fn one() -> u32 {
    1
}
