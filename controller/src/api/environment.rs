//! `Environment`: one project deployed into one database. Types only.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::conditions::conditions_schema;
use super::database_project::LocalObjectReference;

/// One DatabaseProject deployed into one database.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "Environment",
    doc = "One DatabaseProject deployed into one database. With autoDeploy it follows the project's newest revision; without, it moves only by Promotion.",
    namespaced,
    status = "EnvironmentStatus",
    shortname = "dbenv",
    category = "switchyard",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"Change","type":"string","priority":1,"jsonPath":".status.lastChange"}"#,
    printcolumn = r#"{"name":"Pending","type":"integer","jsonPath":".status.pending.count"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// The DatabaseProject to deploy, in the same namespace.
    pub project_ref: LocalObjectReference,
    /// How to reach the database: a Secret, optionally a second Secret with TLS files, and
    /// connection parameters (`host`, `port`, `dbname`, `sslMode`, `targetSessionAttrs`)
    /// that win over the Secret's.
    pub database: DatabaseConnection,
    /// Set on every Environment that shares its database with another (e.g. `_dev`, `_prod`;
    /// the empty string keeps the plain names). The Environment then serves each blue-green
    /// schema `api` as the layer `api<suffix>`: thin views, function wrappers and domains
    /// over a physical set `api__sy_<id>` that is built once and never renamed, so a
    /// Promotion between two such Environments repoints the target's layers at the sets
    /// the source verified and rebuilds nothing. Stable schemas and the registry are
    /// shared: the plan is deployed into the database once. Unset: the Environment has the
    /// database to itself and promotes by renaming schemas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9_]{0,30}$"))]
    pub schema_suffix: Option<String>,
    /// When true the Environment follows the project: each new valid revision is deployed
    /// as soon as it is seen (dev, test). When false (the default) it moves only by
    /// `Promotion` (production).
    #[serde(default)]
    pub auto_deploy: bool,
    /// When true, nothing is deployed into this database until a person approves the exact
    /// plan: a Promotion needs `spec.approvedPlanDigest`, and with `autoDeploy` each new
    /// revision waits (reason `ApprovalPending`, the plan in `status.plan`) until this
    /// object's `approvedPlanDigest` names its digest.
    #[serde(default)]
    pub require_approval: bool,
    /// With `requireApproval` and `autoDeploy`: the digest of the plan approved for the
    /// next deploy (`status.plan.digest`). An approval never carries over to another plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub approved_plan_digest: Option<String>,
    /// What to revert when a change fails: `all` of this run (default), back to the last
    /// `tag`, or only the failing `change`.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Run each change's verify script before committing it. Default true.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// Act on the development workflow files beside deploy scripts
    /// (`deploy/C-ignore.sql`, `-unignore`, `-cleanup`, `-replace`): for dev and test. When
    /// false (the default, for production), a revision with such files for changes this
    /// database has not deployed as planned is refused before anything runs (Stalled,
    /// reason `ReworkNotAllowed`, naming the change and the file), and a Promotion into
    /// this Environment is blocked. `-rollback` files are allowed either way.
    #[serde(default)]
    pub allow_rework: bool,
    /// When true nothing is done: no deploys, no status from the database, until false.
    #[serde(default)]
    pub suspend: bool,
    /// How long to wait for a table lock in a change before failing it, as a duration
    /// (`10s`). Default: the database's own setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub lock_timeout: Option<String>,
    /// The longest one statement may run, as a duration (`5m`). Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub statement_timeout: Option<String>,
    /// How often to look at the database again when nothing changed (drift, lock holder),
    /// as a duration. Default `5m`.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// How long to wait before retrying after a transient failure (database unreachable,
    /// locked). Doubles up to `interval`. Default `10s`.
    #[serde(default = "default_retry")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub retry_interval: String,
    /// Script variables, as `sqitch --set name=value`; added to the project's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

fn default_true() -> bool {
    true
}
fn default_interval() -> String {
    "5m".into()
}
fn default_retry() -> String {
    "10s".into()
}

/// How to reach the database: a Secret in the Environment's namespace, optionally a
/// second Secret with TLS files, and connection parameters that win over the Secret's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseConnection {
    /// The Secret holding the connection, read in one of two layouts so that the Secrets
    /// database operators write work as they are. Either a `uri` (or `url`) key,
    /// `postgres://user:password@host:5432/db?sslmode=verify-full`, as in CloudNativePG's
    /// `<cluster>-app` Secret; or single keys `host`, `port` (default 5432), `username` (or
    /// `user`), `password` and `dbname` (default: the user name), as far as they go: the
    /// Zalando operator's Secret has only `username` and `password`, so give `host` and
    /// `dbname` here. Either layout may add `sslmode`, `ca.crt` (the PEM root certificate
    /// that signed the server's) and `tls.crt` with `tls.key` (a PEM client certificate
    /// and its RSA, EC or Ed25519 key). Single keys fill in what the uri leaves out; other
    /// keys are ignored. Parameters mean what they mean to libpq and psql.
    pub secret_ref: LocalObjectReference,
    /// A second Secret whose `ca.crt`, `tls.crt` and `tls.key` are used as if they were in
    /// the first (and win over them); no other key is read. For CloudNativePG, the
    /// cluster's `<cluster>-ca` Secret (its `ca.key` is never read); for cert-manager, a
    /// Certificate's Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_ref: Option<LocalObjectReference>,
    /// The host to connect to, overriding the Secret's: a DNS name (`db.example.com`,
    /// `shop-rw.db.svc`), an IP address, or a comma-separated list tried in order with
    /// `targetSessionAttrs` (`pg-0.pg,pg-1.pg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub host: Option<String>,
    /// The port, overriding the Secret's. Default 5432.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// The database name, overriding the Secret's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub dbname: Option<String>,
    /// libpq's sslmode, overriding the Secret's: `disable`, `allow`, `prefer` (the
    /// default), `require`, `verify-ca` (the server's certificate must be signed by
    /// `ca.crt`) or `verify-full` (and issued for the host). `require` with a `ca.crt`
    /// verifies as `verify-ca`, as in libpq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,
    /// Which host of a list to settle on: `any` (the default) or `read-write`, to reach
    /// the primary of a replicated cluster (Patroni, CloudNativePG) after a failover;
    /// `read-only` for a standby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_session_attrs: Option<TargetSessionAttrs>,
    /// The registry schema in the database. Default `sqitch`, shared with Sqitch.
    #[serde(default = "default_registry")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$"))]
    pub registry: String,
}

/// libpq's sslmode: how much TLS a connection requires.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain first; TLS if the server refuses plain.
    Allow,
    /// TLS if the server offers it, else plain; the certificate is not checked.
    Prefer,
    /// TLS always; the certificate is checked only against a given `ca.crt`.
    Require,
    /// TLS; the certificate must be signed by `ca.crt`.
    VerifyCa,
    /// TLS; the certificate must be signed by `ca.crt` and issued for the host.
    VerifyFull,
}

/// Which session to settle on when several hosts are given.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TargetSessionAttrs {
    /// The first host that accepts the connection.
    Any,
    /// The first host whose sessions can write (a primary).
    ReadWrite,
    /// The first host whose sessions are read-only (a standby).
    ReadOnly,
}

fn default_registry() -> String {
    "sqitch".into()
}

/// What to revert when a change fails while deploying (Sqitch's `--mode`).
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Revert every change this run deployed.
    #[default]
    All,
    /// Revert to the last tag this run deployed.
    Tag,
    /// Keep what this run deployed before the failing change.
    Change,
}

/// What the Environment's database holds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// The generation the status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, and the steps Deployed, Verified, RolledBack.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The project revision of the last successful deploy into this database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The revision last tried, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The last deployed change's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<String>,
    /// The last deployed change's id (Sqitch's change id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_id: Option<String>,
    /// Changes of the project's current plan that the database lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingChanges>,
    /// Who holds the project's lock in the database, while someone does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
    /// What is being done right now, e.g. `deploying change 37/120: add_invoices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// The last failure: change, file, line and the database's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<DeployFailure>,
    /// Changes the development workflow files (`deploy/C-ignore.sql`, `-cleanup`,
    /// `-replace`, `-unignore`) acted on in this database, in plan order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workflow: Vec<WorkflowChange>,
    /// The last five deploy and revert runs, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<DeploymentRecord>,
    /// The live blue-green schemas: which physical set each logical schema is now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live: Vec<LiveSchema>,
    /// Previous blue-green sets kept for an instant rollback, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retained: Vec<SchemaSet>,
    /// The next deploy's plan, while one waits for approval (`requireApproval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<super::review::PlanStatus>,
    /// The approval the last deploy ran with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<super::review::ApprovalStatus>,
    /// How the database differs from what was deployed, as of the last check (every
    /// `interval`, and on `requestedAt`). See the `Drifted` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<super::review::DriftStatus>,
    /// The value of the `switchyard.dev/requestedAt` annotation last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// Pending changes, counted, with the first few names.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingChanges {
    /// How many.
    pub count: i64,
    /// The first (up to five) in plan order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first: Vec<String>,
}

/// Where and why a change failed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeployFailure {
    /// The revision being deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The failing change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// The script, relative to the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The 1-based line of the failing statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<i64>,
    /// The database's message (credentials redacted).
    pub message: String,
    /// Changes the failure mode reverted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reverted: Vec<String>,
}

/// One deploy or revert run, from the registry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    /// `deploy` or `revert`.
    pub operation: String,
    /// The project revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `succeeded`, `failed` or `running`.
    pub result: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// How many changes it applied.
    pub changes: i64,
}

/// One live blue-green schema.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LiveSchema {
    /// The schema applications query, e.g. `shop_api` (with a `schemaSuffix`, the layer:
    /// `shop_api_dev`).
    pub schema: String,
    /// The physical schema behind it: after a renaming swap the logical name itself; for a
    /// layer, the set it serves (`shop_api__sy_12`).
    pub physical: String,
    /// The deployment (stage) that built it.
    pub deployment: String,
}

/// A set of blue-green schemas from one deployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchemaSet {
    /// The deployment (stage) that built it.
    pub deployment: String,
    /// Logical schema → physical schema, e.g. `shop_api: shop_api__sy_12`.
    pub schemas: BTreeMap<String, String>,
}

/// A change the development workflow acted on in this Environment's database.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowChange {
    /// The change's name.
    pub change: String,
    /// Where it stands: `deployed` (again, after an unignore), `ignored`, `cleaned` (undone
    /// by its cleanup script, and ignored) or `replaced`.
    pub state: WorkflowState,
    /// The workflow file that put it there, relative to the project
    /// (`deploy/users-ignore.sql`).
    pub file: String,
    /// The reason given in the ignore file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The project revision that did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// A change's development workflow state in one database.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowState {
    /// Deployed as planned (again, after an unignore).
    #[default]
    Deployed,
    /// Abandoned: not deployed here any further; a copy deployed before stays.
    Ignored,
    /// Undone here by its cleanup script, and ignored.
    Cleaned,
    /// Deployed with its replacement script.
    Replaced,
}
