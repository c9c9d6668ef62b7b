//! `DatabaseProject`: where a Switchyard (or plain Sqitch) project lives and how often to
//! look at it. Types only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::conditions::conditions_schema;

/// A database project: the plan, scripts and objects that Environments deploy.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "DatabaseProject",
    doc = "A database project: where its plan and scripts live (a ConfigMap, or git) and how often to look. Environments deploy it.",
    namespaced,
    status = "DatabaseProjectStatus",
    shortname = "dbproj",
    category = "switchyard",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseProjectSpec {
    /// Where the project's files come from: exactly one of `configMap` or `git`.
    pub source: ProjectSource,
    /// How often to look at the source for a new revision, as a duration (`30s`, `5m`,
    /// `1h`). Default `5m`. A change to a ConfigMap source is seen at once, by watch.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// The database engine the project targets. Default `postgres`.
    #[serde(default)]
    pub engine: ProjectEngine,
    /// When true, the source is not read again until it is false; the last revision stays.
    #[serde(default)]
    pub suspend: bool,
}

fn default_interval() -> String {
    "5m".into()
}

/// Where a project's files come from. Exactly one of `configMap` or `git`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.configMap) != has(self.git)").message("exactly one of configMap or git must be set"))]
#[serde(rename_all = "camelCase")]
pub struct ProjectSource {
    /// The project held in a ConfigMap in the DatabaseProject's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    /// The project in a git repository. Fetching lands with issue #6; until then the
    /// DatabaseProject reports `Stalled=True` with reason `UnsupportedSource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
}

/// A project held in a ConfigMap, in one of two layouts:
///
/// - an archive: the key `project.tar` (in `data` or `binaryData`) holds an uncompressed
///   tar of the project directory. Make it with
///   `tar -cf project.tar -C shop . && kubectl create configmap shop --from-file=project.tar`.
/// - flat keys: every key is a file path with `/` written as `__` (two underscores), e.g.
///   `sqitch.plan`, `sqitch.conf`, `deploy__users.sql` for `deploy/users.sql`. Make it with
///   `kubectl create configmap shop --from-file=sqitch.plan --from-file=deploy__users.sql=deploy/users.sql …`.
///
/// The revision is `cm:<name>@sha1:<digest of the files>`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// The ConfigMap's name, in the DatabaseProject's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// A directory inside the project files that holds the project (its `sqitch.plan`).
    /// Default: the top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A project in a git repository (implemented by issue #6).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// The repository URL, `https://`, `ssh://` or `git@host:path`.
    #[schemars(length(min = 1))]
    pub url: String,
    /// The branch, tag or commit to follow. Default: the branch `main`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub reference: Option<String>,
    /// The directory inside the repository holding the project. Default: the top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A Secret in the same namespace with credentials (`username`/`password`, or
    /// `identity` and `known_hosts` for ssh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
}

/// A reference to an object in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct LocalObjectReference {
    /// The object's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The engine a project targets.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum ProjectEngine {
    /// PostgreSQL.
    #[default]
    Postgres,
    /// Materialize (blue/green clusters arrive with #5).
    Materialize,
}

/// What the controller last saw of the project.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseProjectStatus {
    /// The generation the status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled and Validated.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The newest valid revision, e.g. `cm:shop@sha1:3f2a…`. Environments deploy this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The revision last read, valid or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The project's name (`%project` in the plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The plan's summary at `revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSummary>,
    /// The value of the `switchyard.dev/requestedAt` annotation last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// A plan in a few numbers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// Number of changes.
    pub changes: i64,
    /// Number of tags.
    pub tags: i64,
    /// The last change's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<String>,
    /// The last tag's name, with `@`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tag: Option<String>,
}
