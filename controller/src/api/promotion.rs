//! `Promotion`: move a tested revision from one Environment to the next, or roll the
//! target back to its newest retained blue/green set. Types only.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::conditions::conditions_schema;

/// Deploys the revision an Environment holds (or a named revision) into another
/// Environment: its changes first, then its blue-green schemas staged, verified and swapped
/// in. With `rollback: true` it swaps the target back to its newest retained set instead.
/// One-shot: once Succeeded it does nothing more; create a new Promotion to promote again.
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
#[x_kube(validation = Rule::new("has(self.from) != (has(self.rollback) && self.rollback)").message("set exactly one of from or rollback: true"))]
#[serde(rename_all = "camelCase")]
pub struct PromotionSpec {
    /// What to promote: the revision an Environment holds, or a revision by name. Not set
    /// with `rollback: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<PromotionSource>,
    /// The Environment that receives the revision. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("to is immutable; create a new Promotion"))]
    pub to: EnvironmentRef,
    /// Promote only these blue-green schemas, or the schemas of these objects
    /// (`schema.name`). Empty: everything that changed. Swaps are per schema, so an object
    /// brings its whole schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub select: Vec<String>,
    /// With `select`: also promote the changed upstream schemas the selection depends on.
    /// Without it such a selection is Blocked (`GuardStaleUpstreams`) and names them.
    #[serde(default)]
    pub include_stale_upstreams: bool,
    /// Allow promoting fewer schemas than changed. Without it a partial `select` is
    /// Blocked (`GuardPartialPromotion`).
    #[serde(default)]
    pub allow_partial_promotion: bool,
    /// Stage these blue-green schemas even when their objects did not change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redeploy_schemas: Vec<String>,
    /// Swap the target back to its newest retained blue-green set, rebuilding nothing.
    /// `from` must not be set. A rollback restores a set that was live before, so it
    /// needs no approval.
    #[serde(default)]
    pub rollback: bool,
    /// Approves exactly the plan with this digest (`status.plan.digest`). Required when the
    /// target has `requireApproval: true`; when set, the promotion runs only if the plan it
    /// recomputes under the database lock still has this digest, and otherwise waits with
    /// `ApprovalStale`, changing nothing. Set it with `kubectl patch`, a git merge, or
    /// `switchyard approve promotion/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub approved_plan_digest: Option<String>,
    /// Promote even though the target's database drifted from what was deployed (its
    /// `Drifted` condition). Without it such a promotion is Blocked (`GuardTargetDrifted`).
    #[serde(default)]
    pub allow_drift: bool,
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
    /// Promote this project revision (e.g. `main@sha1:…`). With a git source any commit of
    /// the repository can be promoted; a ConfigMap or Flux source has only its current
    /// revision.
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

/// Where a promotion is: Pending → Validating → (AwaitingApproval →) Staging → Verifying → Swapping →
/// Succeeded, or Failed, Blocked or RolledBack.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum PromotionPhase {
    /// Not started.
    #[default]
    Pending,
    /// Checking the guards and working out what would change (`diff`).
    Validating,
    /// The target requires approval (or the approval names another plan): waiting for
    /// `spec.approvedPlanDigest` to name `status.plan.digest`.
    AwaitingApproval,
    /// Deploying the revision's changes, then building the blue-green schemas that changed
    /// into staging schemas.
    Staging,
    /// Running the project's verify SQL against the staging schemas.
    Verifying,
    /// Swapping the staged schemas in (or, for a rollback, the retained ones back).
    Swapping,
    /// The target has the revision (or is rolled back).
    Succeeded,
    /// Deploying, staging or verifying failed; live schemas are untouched. See Ready.
    Failed,
    /// A guard refused it; nothing changed. See the Blocked condition.
    Blocked,
    /// Verify failed after the swap and the previous set was swapped back in.
    RolledBack,
}

impl PromotionPhase {
    /// True while the promotion acts (a reconcile is running it).
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            PromotionPhase::Validating
                | PromotionPhase::Staging
                | PromotionPhase::Verifying
                | PromotionPhase::Swapping
        )
    }

    /// True once the promotion has ended for this generation.
    pub fn finished(self) -> bool {
        matches!(
            self,
            PromotionPhase::Succeeded | PromotionPhase::Failed | PromotionPhase::RolledBack
        )
    }
}

/// The promotion's progress.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStatus {
    /// The generation the status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, the steps Validated, Staged, Verified and Promoted
    /// (reasons and durations in their messages), Blocked and RolledBack.
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
    /// What the promotion changes (or would change, while Blocked): changes to deploy and
    /// objects added, changed and removed per blue-green schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<PromotionDiff>,
    /// What the promotion will do, computed before anything changes, with the digest an
    /// approval names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<super::review::PlanStatus>,
    /// The approval the promotion ran with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<super::review::ApprovalStatus>,
    /// The staged deployment's id, once staged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Milliseconds per step: `validated`, `staged`, `verified`, `promoted`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub step_durations_ms: BTreeMap<String, i64>,
    /// When the promotion finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// Time spent acting (deploying, staging, verifying, swapping), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// The value of the `switchyard.dev/requestedAt` annotation last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// What a promotion changes in its target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromotionDiff {
    /// Changes of the plan the target lacks, in plan order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// Per blue-green schema that differs: objects added, changed and removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schemas: BTreeMap<String, ObjectDiff>,
}

/// Objects added, changed and removed in one blue-green schema.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDiff {
    /// Objects the target lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    /// Objects whose definition differs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Objects the target has that the revision drops.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}
