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
    /// Where the project's files come from: exactly one of `configMap`, `git` or `sourceRef`.
    pub source: ProjectSource,
    /// How often to look at the source for a new revision, as a duration (`30s`, `5m`,
    /// `1h`). Default `5m`. A change to a ConfigMap source or a Flux `GitRepository` is seen
    /// at once, by watch; a git push is seen at once when the webhook receiver is set up.
    /// For git, a look that finds nothing new costs one ref lookup.
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

/// Where a project's files come from. Exactly one of `configMap`, `git` or `sourceRef`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.configMap) ? 1 : 0) + (has(self.git) ? 1 : 0) + (has(self.sourceRef) ? 1 : 0) == 1").message("exactly one of configMap, git or sourceRef must be set"))]
#[serde(rename_all = "camelCase")]
pub struct ProjectSource {
    /// The project held in a ConfigMap in the DatabaseProject's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
    /// The project in a git repository, fetched by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// The project in the artifact of a Flux `GitRepository` (source.toolkit.fluxcd.io/v1)
    /// in the same namespace: the controller downloads the artifact Flux serves, checks
    /// its digest and reads the project from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<FluxSourceRef>,
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
/// The revision is `cm:<name>@sha1:<digest of the files>`. The files are checked as a git
/// source's are (no path leaving the project, the controller's size and file-count limits,
/// UTF-8 SQL, plan and config files) and refused with the same reasons.
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

/// A project in a git repository. The revision is `<branch or tag>@sha1:<commit>` (as
/// Flux names revisions), e.g. `main@sha1:4f3c…`, or `sha1:<commit>` for a commit ref.
///
/// Each `interval` costs one ref lookup when nothing changed; a new commit is fetched
/// shallow (only that commit's objects). Submodules are not fetched. The files are checked
/// before anything reads them: no path may leave `path` (`..`, absolute, or a symlink
/// pointing outside; symlinks inside are read as the file they point to), no `.git`
/// directory, no file over the controller's size limits (default 10 MiB each, 100 MiB in
/// all, 50,000 files), and SQL, plan and config files must be UTF-8.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// The repository URL: `https://host/org/repo.git`, `http://…`, `ssh://git@host/org/repo.git`,
    /// `git@host:org/repo.git` or `git://host/repo.git`. Credentials never go in the URL;
    /// use `secretRef`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^(https?|ssh|git)://[^/]+') || self.matches('^[A-Za-z0-9._-]+@[^:/]+:.+$')").message("url must be https://, http://, ssh://, git:// or user@host:path"))]
    pub url: String,
    /// What to follow: exactly one of `branch`, `tag`, `semver` or `commit`. Default: the
    /// branch `main`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub reference: Option<GitReference>,
    /// The directory inside the repository holding the project (its `sqitch.plan`), e.g.
    /// `db/shop`. Relative, without `..`. Default: the top of the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && self != '..' && !self.startsWith('../') && !self.endsWith('/..') && !self.contains('/../')").message("path must be relative and must not contain '..'"))]
    pub path: Option<String>,
    /// A Secret in the same namespace with credentials, in the keys Flux uses: `username`
    /// and `password` (a password or token) or `bearerToken` for https; `identity` (a
    /// private key) and `known_hosts` for ssh (host keys are always checked); `ca.crt`, a
    /// PEM bundle that replaces the system roots for https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// How long one look at the repository (ref lookup and fetch) may take, as a duration.
    /// Default `60s`.
    #[serde(default = "default_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub timeout: String,
}

fn default_timeout() -> String {
    "60s".into()
}

/// The git reference to follow. Exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.branch) ? 1 : 0) + (has(self.tag) ? 1 : 0) + (has(self.semver) ? 1 : 0) + (has(self.commit) ? 1 : 0) == 1").message("exactly one of branch, tag, semver or commit must be set"))]
#[serde(rename_all = "camelCase")]
pub struct GitReference {
    /// A branch to follow, e.g. `main`. The revision moves with every push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub branch: Option<String>,
    /// A tag, e.g. `v1.2.0`. If the tag is moved to another commit, the new commit is used
    /// and a `TagMoved` Warning event says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub tag: Option<String>,
    /// A semver range over the repository's tags (`v` prefixes allowed), e.g. `>=1.2.0, <2`;
    /// the highest matching tag is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub semver: Option<String>,
    /// A full commit id (40 hex digits). The revision never moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{40}$"))]
    pub commit: Option<String>,
}

/// A Flux source in the same namespace whose artifact holds the project.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FluxSourceRef {
    /// The source's kind. Only `GitRepository` (source.toolkit.fluxcd.io/v1).
    #[serde(default)]
    pub kind: FluxSourceKind,
    /// The source's name, in the DatabaseProject's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The directory inside the artifact holding the project. Default: the top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && self != '..' && !self.startsWith('../') && !self.endsWith('/..') && !self.contains('/../')").message("path must be relative and must not contain '..'"))]
    pub path: Option<String>,
}

/// The kinds of Flux source a project can read.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum FluxSourceKind {
    /// `source.toolkit.fluxcd.io/v1` `GitRepository`.
    #[default]
    GitRepository,
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
    /// The newest valid revision, e.g. `main@sha1:3f2a…` (git), `cm:shop@sha1:3f2a…`
    /// (ConfigMap). Environments deploy this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The digest of the project files at `revision`: `sha256:<hex>` over the files (git),
    /// the digest of Flux's artifact, checked on download (Flux), or `sha1:<hex>`
    /// (ConfigMap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The revision last read, valid or not. When it differs from `revision`, the newest
    /// revision failed and `revision` is the last good one.
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
