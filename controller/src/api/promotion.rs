//! `Promotion`: move a tested revision from one Environment to the next. Types only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::conditions::conditions_schema;

/// Deploys the revision an Environment holds (or a named revision) into another
/// Environment. One-shot: once Succeeded it does nothing more; create a new Promotion to
/// promote again.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "Promotion",
    doc = "Moves the revision one Environment holds (or a named revision) into another Environment. One-shot.",
    namespaced,
    status = "PromotionStatus",
    shortname = "dbpromo",
    category = "switchyard",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","priority":1,"jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PromotionSpec {
    /// What to promote: the revision an Environment holds, or a revision by name.
    pub from: PromotionSource,
    /// The Environment that receives the revision. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("to is immutable; create a new Promotion"))]
    pub to: EnvironmentRef,
}

/// The source of a promotion: exactly one of `environment` or `revision`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.environment) != has(self.revision)").message("exactly one of environment or revision must be set"))]
#[serde(rename_all = "camelCase")]
pub struct PromotionSource {
    /// Promote the revision this Environment (same namespace) last deployed successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub environment: Option<String>,
    /// Promote this project revision (e.g. `cm:shop@sha1:…`). It must be the project's
    /// current revision until git sources (#6) keep history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub revision: Option<String>,
}

/// A reference to an Environment in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct EnvironmentRef {
    /// The Environment's name.
    #[schemars(length(min = 1, max = 253))]
    pub environment: String,
}

/// Where a promotion is.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum PromotionPhase {
    /// Not started.
    #[default]
    Pending,
    /// A guard refused it; see the Blocked condition.
    Blocked,
    /// Deploying into the target.
    Promoting,
    /// The target has the revision.
    Succeeded,
    /// Deploying failed; see the Ready condition and `failure`.
    Failed,
}

/// The promotion's progress.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStatus {
    /// The generation the status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, and the steps Validated, Promoted, Blocked, RolledBack.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Where the promotion is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PromotionPhase>,
    /// The revision promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The last change the target received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// How many changes the target received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_applied: Option<i64>,
    /// When the promotion finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Time spent deploying, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// The value of the `switchyard.dev/requestedAt` annotation last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}
