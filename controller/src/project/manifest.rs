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

// === reading switchyard.yaml ===

/// `switchyard.yaml` as written, before defaults that depend on `sqitch.conf` are applied.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawManifest {
    project: serde_saphyr::Spanned<String>,
    #[serde(default)]
    engine: Engine,
    #[serde(default)]
    plan: Option<serde_saphyr::Spanned<String>>,
    #[serde(default)]
    schemas: BTreeMap<String, SchemaMode>,
    #[serde(default)]
    clusters: BTreeMap<String, Cluster>,
    #[serde(default)]
    variables: BTreeMap<String, Scalar>,
}

/// A variable's value: YAML scalars of any type, kept as the text a script will see.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(s) => s,
        }
    }
}

/// A parsed `switchyard.yaml` and what the loader needs to know about how it was written.
#[derive(Debug)]
pub(super) struct ManifestFile {
    /// The manifest; `plan` holds the default when `plan_line` is `None`.
    pub manifest: Manifest,
    /// The line of `plan:` when it was written (else `sqitch.conf` may say where the plan
    /// is).
    pub plan_line: Option<usize>,
    /// 1-based line of the `project:` value.
    pub project_line: usize,
}

/// Parses `switchyard.yaml` text. `path` is used in messages only.
pub(super) fn parse_manifest(path: &std::path::Path, text: &str) -> super::Result<ManifestFile> {
    let raw: RawManifest = serde_saphyr::from_str(text).map_err(|err| yaml_error(path, &err))?;
    let project_line = line_of(&raw.project.referenced);
    let plan_line = raw.plan.as_ref().map(|p| line_of(&p.referenced));
    let manifest = Manifest {
        project: raw.project.value,
        engine: raw.engine,
        plan: raw.plan.map_or_else(default_plan, |p| p.value),
        schemas: raw.schemas,
        clusters: raw.clusters,
        variables: raw
            .variables
            .into_iter()
            .map(|(k, v)| (k, v.into_text()))
            .collect(),
    };
    Ok(ManifestFile {
        manifest,
        plan_line,
        project_line,
    })
}

/// 1-based line of a YAML location.
fn line_of(location: &serde_saphyr::Location) -> usize {
    usize::try_from(location.line()).unwrap_or(1).max(1)
}

/// Maps a YAML error to the file and line it points at.
fn yaml_error(path: &std::path::Path, err: &serde_saphyr::Error) -> super::Error {
    let inner = err.without_snippet();
    let message = first_line(&inner.to_string());
    match inner.location().map(|l| l.line()).filter(|&line| line > 0) {
        Some(line) => super::Error::Invalid {
            path: path.to_owned(),
            line: usize::try_from(line).unwrap_or(usize::MAX),
            message,
        },
        None => super::Error::File {
            path: path.to_owned(),
            message,
        },
    }
}

/// The message without the location serde-saphyr appends (the error carries it).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    let line = match line.rfind(" at line ") {
        Some(at) => &line[..at],
        None => line,
    };
    let mut chars = line.chars();
    match chars.next() {
        Some(first) => first
            .to_lowercase()
            .chain(chars)
            .collect::<String>()
            .trim_end_matches('.')
            .to_owned(),
        None => "invalid yaml".into(),
    }
}
