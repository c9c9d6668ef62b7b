//! Plans and approvals, shared by the Promotion and Environment reconcilers: the plan as
//! status shows it (large ones in a ConfigMap), whether an approval lets it run, and who
//! approved it. Holds no SQL: the plan itself is [`crate::engine::review`]'s.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use super::Context;
use super::status::Outcome;
use crate::api::FIELD_MANAGER;
use crate::api::conditions::reasons;
use crate::api::promotion::ObjectDiff;
use crate::api::review::{ApprovalStatus, PlanStatus, PlannedChange};
use crate::engine::review::{self, ReviewPlan};

/// Changes shown in status; a longer plan is kept whole in a ConfigMap.
pub const CHANGES_SHOWN: usize = 50;
/// Objects named per schema in status; more are counted only, the full plan in a ConfigMap.
const OBJECTS_SHOWN: usize = 50;

/// Whether a plan may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Approved (or no approval needed).
    Open,
    /// Needs an approval, and has none.
    Pending,
    /// Has an approval, for another digest.
    Stale {
        /// The digest approved.
        approved: String,
    },
}

/// The gate for a plan with `digest`: an approval, when given, must name exactly it;
/// without one, only a target that requires approval waits.
pub fn gate(require: bool, approved: Option<&str>, digest: &str) -> Gate {
    match approved {
        Some(a) if a == digest => Gate::Open,
        Some(a) => Gate::Stale {
            approved: a.to_string(),
        },
        None if require => Gate::Pending,
        None => Gate::Open,
    }
}

impl Gate {
    /// The outcome of a closed gate: Ready=False, neither Stalled nor retried fast; the
    /// approval (a spec change) wakes the object.
    pub fn outcome(&self, digest: &str, how: &str) -> Option<Outcome> {
        match self {
            Gate::Open => None,
            Gate::Pending => Some(Outcome::Waiting {
                reason: reasons::APPROVAL_PENDING,
                message: format!("waiting for approval of plan {digest}; {how}"),
            }),
            Gate::Stale { approved } => Some(Outcome::Waiting {
                reason: reasons::APPROVAL_STALE,
                message: format!(
                    "the approved plan {approved} is not the plan now ({digest}): something moved since (a new commit, another deploy, a hand edit); nothing was changed; review and approve {digest}"
                ),
            }),
        }
    }
}

/// How to approve `digest` for `owner` (a Promotion, or an autoDeploy Environment).
pub fn how_to_approve<K: Resource<DynamicType = ()>>(owner: &K, digest: &str) -> String {
    let kind = K::kind(&()).to_lowercase();
    format!(
        "approve it with `switchyard approve {kind}/{name}` or `kubectl patch {kind} {name} --type merge -p '{{\"spec\":{{\"approvedPlanDigest\":\"{digest}\"}}}}'`",
        name = owner.name_any()
    )
}

/// The plan as status shows it: whole when small; else the first changes and the object
/// counts, with `configMap` naming where the whole plan is (set by [`publish`]).
pub fn plan_status(plan: &ReviewPlan) -> (PlanStatus, bool) {
    let large = plan.changes.len() > CHANGES_SHOWN
        || plan.schemas.values().any(|s| {
            s.added.len() > OBJECTS_SHOWN
                || s.changed.len() > OBJECTS_SHOWN
                || s.removed.len() > OBJECTS_SHOWN
        });
    let shown = |names: &[String]| names.iter().take(OBJECTS_SHOWN).cloned().collect();
    let status = PlanStatus {
        digest: plan.digest.clone(),
        source_revision: plan.source_revision.clone(),
        target_revision: plan.target_revision.clone(),
        registry_head: plan.from.registry_head.clone(),
        catalog: Some(plan.from.catalog.clone()),
        changes: plan
            .changes
            .iter()
            .take(CHANGES_SHOWN)
            .map(|c| PlannedChange {
                name: c.name.clone(),
                id: c.id.clone(),
                action: c.action.clone(),
                script_hash: c.script_hash.clone(),
            })
            .collect(),
        change_count: plan.changes.len() as i64,
        schemas: plan
            .schemas
            .iter()
            .filter(|(_, s)| !(s.added.is_empty() && s.changed.is_empty() && s.removed.is_empty()))
            .map(|(name, s)| {
                let diff = ObjectDiff {
                    added: shown(&s.added),
                    changed: shown(&s.changed),
                    removed: shown(&s.removed),
                };
                (name.clone(), diff)
            })
            .collect(),
        config_map: None,
    };
    (status, large)
}

/// The plan as status shows it; a large plan is written whole into the ConfigMap
/// `<kind>-<name>-plan` (key `plan.json`), owned by `owner` so it goes with it.
pub async fn publish<K>(ctx: &Context, owner: &K, plan: &ReviewPlan) -> Result<PlanStatus, Outcome>
where
    K: Resource<DynamicType = ()>,
{
    let (mut status, large) = plan_status(plan);
    if !large {
        return Ok(status);
    }
    let ns = owner.namespace().unwrap_or_default();
    let kind = K::kind(&()).to_lowercase();
    let name = format!("{kind}-{}-plan", owner.name_any());
    let json = serde_json::to_string_pretty(plan).unwrap_or_default();
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            owner_references: owner.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "switchyard".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("plan.json".to_string(), json)])),
        ..ConfigMap::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await
    .map_err(|e| Outcome::Transient {
        reason: reasons::KUBE_ERROR,
        message: format!("writing the plan into ConfigMap {name}: {e}"),
    })?;
    status.config_map = Some(name);
    Ok(status)
}

/// Who set `spec.approvedPlanDigest` and when, from the object's managed fields.
pub fn approval<K: Resource>(obj: &K, digest: &str) -> ApprovalStatus {
    let entry = obj.meta().managed_fields.iter().flatten().find(|m| {
        m.fields_v1
            .as_ref()
            .and_then(|f| f.0.get("f:spec"))
            .is_some_and(|spec| spec.get("f:approvedPlanDigest").is_some())
    });
    ApprovalStatus {
        digest: digest.to_string(),
        approved_by: entry.and_then(|m| m.manager.clone()),
        approved_at: entry.and_then(|m| m.time.as_ref()).map(|t| t.0.to_string()),
    }
}

/// A plan that could not be worked out, as an outcome.
pub fn failed(error: &review::Error, fetched: &super::fetch::Fetched, revision: &str) -> Outcome {
    match error {
        review::Error::Changes(e) => super::database::engine_outcome(e, fetched, revision).0,
        review::Error::BlueGreen(e) => super::bluegreen::outcome(e, fetched),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_opens_only_its_own_plan() {
        let d = "sha256:aa";
        assert_eq!(gate(false, None, d), Gate::Open);
        assert_eq!(gate(true, None, d), Gate::Pending);
        assert_eq!(gate(true, Some(d), d), Gate::Open);
        // An approval is a precondition even where none is required.
        for require in [true, false] {
            assert_eq!(
                gate(require, Some("sha256:bb"), d),
                Gate::Stale {
                    approved: "sha256:bb".into()
                }
            );
        }
        assert!(gate(true, None, d).outcome(d, "").is_some());
        assert!(gate(true, Some(d), d).outcome(d, "").is_none());
    }

    #[test]
    fn a_large_plan_is_summarised() {
        let mut plan = ReviewPlan {
            digest: "sha256:x".into(),
            ..ReviewPlan::default()
        };
        plan.changes = (0..CHANGES_SHOWN + 1)
            .map(|i| review::PlannedChange {
                name: format!("c{i}"),
                ..review::PlannedChange::default()
            })
            .collect();
        let (status, large) = plan_status(&plan);
        assert!(large);
        assert_eq!(status.changes.len(), CHANGES_SHOWN);
        assert_eq!(status.change_count, CHANGES_SHOWN as i64 + 1);
        plan.changes.truncate(3);
        let (status, large) = plan_status(&plan);
        assert!(!large);
        assert_eq!(status.changes.len(), 3);
    }
}
