//! Drift: how the database differs from what was deployed (deploy scripts edited after
//! they ran, blue-green objects changed by hand, objects the project does not define,
//! registry rows for changes the plan no longer has). Checked on every reconcile, so every
//! `interval` and on `requestedAt`; reported as `status.drift`, the `Drifted` condition
//! and one Warning Event per new finding. Holds no SQL: the check is the engine's.

use std::collections::BTreeSet;

use tracing::debug;

use super::{Gathered, Scope};
use crate::api::conditions::{reasons, types};
use crate::api::environment::{Environment, EnvironmentStatus};
use crate::api::review as api;
use crate::engine::drift::{self, Drift, ObjectChange};
use crate::reconcile::Context;
use crate::reconcile::bluegreen;
use crate::reconcile::status;

/// Findings named in the condition's message; the rest are counted.
const NAMED: usize = 3;
/// Events per reconcile, so a database that drifted everywhere does not flood the
/// namespace; the status lists every finding.
const EVENTS: usize = 10;

/// Checks the database and records the result in `new`. A check that cannot run (the
/// database went away mid-reconcile) leaves the last result as it was.
pub(super) async fn check_drift(scope: &Scope<'_>, db: &Gathered, new: &mut EnvironmentStatus) {
    let Ok(objects) = bluegreen::objects(&db.fetched) else {
        return;
    };
    let suffix = scope.env.spec.schema_suffix.as_deref();
    let found = match drift::check(&db.engine, &db.fetched.project, &objects, suffix).await {
        Ok(found) => found,
        Err(e) => {
            debug!(error = %e, "Drift not checked");
            return;
        }
    };
    let findings = found.findings();
    let since = match &new.drift {
        Some(old) if to_engine(old) == found => old.since.clone(),
        _ => Some(scope.now.0.to_string()),
    };
    new.drift = Some(to_status(&found, since));
    if findings.is_empty() {
        let message = "the database matches what was deployed";
        scope.set(new, types::DRIFTED, false, reasons::NO_DRIFT, message);
    } else {
        let message = summary(&findings);
        scope.set(new, types::DRIFTED, true, reasons::DRIFT_DETECTED, &message);
    }
}

/// The condition's message: the first findings, and how many more.
fn summary(findings: &[(String, String)]) -> String {
    let named: Vec<&str> = findings
        .iter()
        .take(NAMED)
        .map(|(_, m)| m.as_str())
        .collect();
    let more = findings.len().saturating_sub(NAMED);
    let mut message = format!("{} drift finding(s): {}", findings.len(), named.join("; "));
    if more > 0 {
        message.push_str(&format!("; and {more} more (see status.drift)"));
    }
    message
}

/// One Warning `DriftDetected` per finding the last status did not have, and a Normal
/// `NoDrift` when the last finding is gone.
pub(super) async fn events(
    ctx: &Context,
    env: &Environment,
    old: &EnvironmentStatus,
    new: &EnvironmentStatus,
) {
    let known: BTreeSet<String> = old
        .drift
        .as_ref()
        .map(|d| {
            to_engine(d)
                .findings()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        })
        .unwrap_or_default();
    let Some(now) = new.drift.as_ref().map(to_engine) else {
        return;
    };
    let fresh: Vec<(String, String)> = now
        .findings()
        .into_iter()
        .filter(|(key, _)| !known.contains(key))
        .collect();
    ctx.metrics.drift_findings.inc_by(fresh.len() as u64);
    for (_, message) in fresh.iter().take(EVENTS) {
        ctx.event(
            env,
            true,
            reasons::DRIFT_DETECTED,
            "CheckDrift",
            message.clone(),
        )
        .await;
    }
    let was = status::is_true(&old.conditions, types::DRIFTED);
    if was && !status::is_true(&new.conditions, types::DRIFTED) {
        let message = "the database matches what was deployed again".to_string();
        ctx.event(env, false, reasons::NO_DRIFT, "CheckDrift", message)
            .await;
    }
}

/// The engine's result as status shows it.
fn to_status(found: &Drift, since: Option<String>) -> api::DriftStatus {
    let hash = |h: &str| (!h.is_empty()).then(|| h.to_string());
    api::DriftStatus {
        since,
        scripts: found
            .scripts
            .iter()
            .map(|s| api::ScriptDrift {
                change: s.change.clone(),
                id: s.id.clone(),
                file: s.file.clone(),
                recorded: hash(&s.recorded),
                current: hash(&s.current),
            })
            .collect(),
        objects: found
            .objects
            .iter()
            .map(|o| api::ObjectDrift {
                schema: o.schema.clone(),
                object: o.object.clone(),
                change: match o.change {
                    ObjectChange::Changed => "changed".into(),
                    ObjectChange::Missing => "missing".into(),
                },
            })
            .collect(),
        unknown: found
            .unknown
            .iter()
            .map(|u| api::UnknownObject {
                schema: u.schema.clone(),
                object: u.object.clone(),
            })
            .collect(),
        orphans: found
            .orphans
            .iter()
            .map(|o| api::OrphanChange {
                change: o.change.clone(),
                id: o.id.clone(),
            })
            .collect(),
    }
}

/// Status back into the engine's terms, for the findings' stable keys.
fn to_engine(status: &api::DriftStatus) -> Drift {
    Drift {
        scripts: status
            .scripts
            .iter()
            .map(|s| drift::ScriptDrift {
                change: s.change.clone(),
                id: s.id.clone(),
                file: s.file.clone(),
                recorded: s.recorded.clone().unwrap_or_default(),
                current: s.current.clone().unwrap_or_default(),
            })
            .collect(),
        objects: status
            .objects
            .iter()
            .map(|o| drift::ObjectDrift {
                schema: o.schema.clone(),
                object: o.object.clone(),
                change: match o.change.as_str() {
                    "missing" => ObjectChange::Missing,
                    _ => ObjectChange::Changed,
                },
            })
            .collect(),
        unknown: status
            .unknown
            .iter()
            .map(|u| drift::UnknownObject {
                schema: u.schema.clone(),
                object: u.object.clone(),
            })
            .collect(),
        orphans: status
            .orphans
            .iter()
            .map(|o| drift::OrphanChange {
                change: o.change.clone(),
                id: o.id.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found() -> Drift {
        Drift {
            scripts: vec![drift::ScriptDrift {
                change: "users".into(),
                id: "abc".into(),
                file: "deploy/users.sql".into(),
                recorded: "111".into(),
                current: String::new(),
            }],
            objects: vec![drift::ObjectDrift {
                schema: "shop_api".into(),
                object: "view big_customers".into(),
                change: ObjectChange::Missing,
            }],
            unknown: vec![drift::UnknownObject {
                schema: "shop_api".into(),
                object: "table notes".into(),
            }],
            orphans: vec![drift::OrphanChange {
                change: "old".into(),
                id: "def".into(),
            }],
        }
    }

    #[test]
    fn status_keeps_every_finding_and_its_key() {
        let drift = found();
        let status = to_status(&drift, None);
        assert_eq!(status.scripts[0].current, None, "a gone script has no hash");
        assert_eq!(status.objects[0].change, "missing");
        assert_eq!(to_engine(&status), drift);
    }

    #[test]
    fn the_summary_names_the_first_findings_and_counts_the_rest() {
        let findings: Vec<(String, String)> = (0..5)
            .map(|i| (format!("k{i}"), format!("finding {i}")))
            .collect();
        let message = summary(&findings);
        assert!(message.starts_with("5 drift finding(s): finding 0; finding 1; finding 2"));
        assert!(
            message.ends_with("and 2 more (see status.drift)"),
            "{message}"
        );
        assert!(!message.contains("finding 3"));
    }
}
