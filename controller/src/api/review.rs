//! What Promotions and Environments show of a plan before it runs, of its approval, and
//! of a database that drifted from what was deployed. Types only.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::promotion::ObjectDiff;

/// What a deploy or promotion will do, computed before anything changes. Approve exactly
/// this by copying `digest` into `spec.approvedPlanDigest`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanStatus {
    /// `sha256:…` over the whole plan and the target's from-state (registry head, last
    /// deployed revision, the live blue-green catalog). Anything that moves changes it.
    pub digest: String,
    /// The revision to deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<String>,
    /// The revision the target's last successful deploy recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// The id of the last change the target has deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_head: Option<String>,
    /// The fingerprint of the target's live blue-green catalog (`sha256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    /// The changes, in order, with what the deploy does to each (`deploy`, or a workflow
    /// action), their Sqitch id and script hash. The first 50 when the plan is large.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<PlannedChange>,
    /// How many changes the plan has in all.
    #[serde(default)]
    pub change_count: i64,
    /// Per blue-green schema: objects added, changed and removed (counts only when the
    /// plan is large).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schemas: BTreeMap<String, ObjectDiff>,
    /// Set when the plan is too large for status: the ConfigMap (same namespace, owned by
    /// this object) whose `plan.json` holds all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
}

/// One change of a plan.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    /// The change's name.
    pub name: String,
    /// Sqitch's change id.
    pub id: String,
    /// What the deploy does with it: `deploy`, or a workflow action (`replace`,
    /// `cleanup`, `ignore`, `unignore`, `record`, `mark`); `refused` where it would refuse.
    pub action: String,
    /// SHA-1 of its deploy script, as Sqitch records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_hash: Option<String>,
}

/// Who approved which plan, and when.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStatus {
    /// The digest approved.
    pub digest: String,
    /// The field manager that set `spec.approvedPlanDigest` (`kubectl-patch`, your GitOps
    /// tool, `switchyard-approve/<user>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// When it was set (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
}

/// How the database differs from what was deployed into it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftStatus {
    /// Since when the database has been found in this state (RFC 3339). The check runs
    /// every `interval` and on `requestedAt`; an unchanged result keeps its time, so a
    /// check alone never rewrites status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Deployed changes whose deploy script in this revision no longer hashes to what
    /// the registry recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<ScriptDrift>,
    /// Objects of live blue-green schemas whose catalog differs from what was staged
    /// and verified, or that are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectDrift>,
    /// Objects in managed blue-green schemas that the project does not define.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<UnknownObject>,
    /// Registry rows for changes the plan no longer has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphans: Vec<OrphanChange>,
}

/// A deployed change whose deploy script changed after it ran.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScriptDrift {
    /// The change.
    pub change: String,
    /// Its Sqitch id.
    pub id: String,
    /// The deploy script, relative to the project.
    pub file: String,
    /// The hash the registry recorded when it was deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<String>,
    /// The script's hash in this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
}

/// A blue-green object that differs from what was staged and verified.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDrift {
    /// The logical schema.
    pub schema: String,
    /// The object (`view big_customers`).
    pub object: String,
    /// `changed` or `missing`.
    pub change: String,
}

/// An object in a managed blue-green schema that the project does not define.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UnknownObject {
    /// The logical schema.
    pub schema: String,
    /// The object.
    pub object: String,
}

/// A registry row for a change the plan no longer has.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrphanChange {
    /// The change's name.
    pub change: String,
    /// Its Sqitch id.
    pub id: String,
}
