//! Writing conditions and status: the single `set_condition` helper, `summarize` (the one
//! place Ready/Reconciling/Stalled are decided), time-insensitive comparison, and the
//! server-side-apply patch on `/status`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::FIELD_MANAGER;
use crate::api::conditions::{reasons, types};

/// `True` / `False` as Kubernetes spells them.
pub fn status_str(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// Upserts the condition `type_`. `lastTransitionTime` changes only when the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let status = status_str(status);
    let message = truncate(message, 32 * 1024);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status.to_string();
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: now.clone(),
            observed_generation: generation,
        }),
    }
}

/// Removes the condition `type_`.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The condition `type_`, when present.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when condition `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    condition(conditions, type_).is_some_and(|c| c.status == "True")
}

fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_string();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// How a reconcile ended, as `summarize` needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything wanted is done.
    Ready {
        /// Reason for Ready=True.
        reason: &'static str,
        /// Message for Ready=True.
        message: String,
    },
    /// Still working (deploy running, waiting for a dependency to become ready).
    Progressing {
        /// Reason for Ready=False and Reconciling=True.
        reason: &'static str,
        /// Message.
        message: String,
    },
    /// Failed, will retry by itself.
    Transient {
        /// Reason for Ready=False.
        reason: &'static str,
        /// Message.
        message: String,
    },
    /// Nothing failed, but a person must act (approve a plan): Ready=False, neither
    /// Reconciling nor Stalled (kstatus: the object is waiting, not broken).
    Waiting {
        /// Reason for Ready=False.
        reason: &'static str,
        /// Message.
        message: String,
    },
    /// Failed, waits for a change of spec or project: Stalled=True.
    Terminal {
        /// Reason for Ready=False and Stalled=True.
        reason: &'static str,
        /// Message.
        message: String,
    },
}

impl Outcome {
    /// The reason and message every kind of outcome carries.
    pub fn reason_and_message(&self) -> (&'static str, &str) {
        match self {
            Outcome::Ready { reason, message }
            | Outcome::Progressing { reason, message }
            | Outcome::Transient { reason, message }
            | Outcome::Waiting { reason, message }
            | Outcome::Terminal { reason, message } => (reason, message),
        }
    }

    /// A failure: [`Outcome::Terminal`] when only new input can help, else
    /// [`Outcome::Transient`]. Every error type says which it is (`is_terminal`).
    pub fn failed(terminal: bool, reason: &'static str, message: String) -> Outcome {
        if terminal {
            Outcome::Terminal { reason, message }
        } else {
            Outcome::Transient { reason, message }
        }
    }
}

/// Maps an outcome to Ready, Reconciling and Stalled. The only writer of those three.
pub fn summarize(
    conditions: &mut Vec<Condition>,
    outcome: &Outcome,
    generation: Option<i64>,
    now: &Time,
) {
    let (reason, message) = outcome.reason_and_message();
    let ready = matches!(outcome, Outcome::Ready { .. });
    set_condition(
        conditions,
        types::READY,
        ready,
        reason,
        message,
        generation,
        now,
    );
    let retrying;
    let reconciling = match outcome {
        Outcome::Progressing { .. } => Some((reason, message)),
        // kstatus: a transient failure is still "in progress" (it retries by itself).
        Outcome::Transient { .. } => {
            retrying = format!("retrying: {message}");
            Some((reasons::PROGRESSING, retrying.as_str()))
        }
        _ => None,
    };
    let stalled = matches!(outcome, Outcome::Terminal { .. }).then_some((reason, message));
    for (type_, set) in [(types::RECONCILING, reconciling), (types::STALLED, stalled)] {
        match set {
            Some((reason, message)) => {
                set_condition(conditions, type_, true, reason, message, generation, now)
            }
            None => remove_condition(conditions, type_),
        }
    }
}

/// Marks a new generation as being worked on: `Reconciling=True, reason=Progressing`.
/// Returns true when it changed anything (the caller then patches at once).
pub fn mark_progressing(
    conditions: &mut Vec<Condition>,
    old_generation: Option<i64>,
    generation: Option<i64>,
    now: &Time,
) -> bool {
    if old_generation == generation && condition(conditions, types::READY).is_some() {
        return false;
    }
    let message = match (old_generation, generation) {
        (Some(old), Some(new)) => format!("processing generation {old} -> {new}"),
        (_, Some(new)) => format!("processing generation {new}"),
        _ => "processing".to_string(),
    };
    set_condition(
        conditions,
        types::RECONCILING,
        true,
        reasons::PROGRESSING,
        &message,
        generation,
        now,
    );
    if condition(conditions, types::READY).is_none() {
        set_condition(
            conditions,
            types::READY,
            false,
            reasons::PROGRESSING,
            &message,
            generation,
            now,
        );
    }
    true
}

/// Compares two statuses ignoring condition timestamps.
pub fn same_ignoring_time<S: Serialize>(a: &S, b: &S) -> bool {
    fn strip(mut v: serde_json::Value) -> serde_json::Value {
        if let Some(conds) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for c in conds.iter_mut() {
                if let Some(o) = c.as_object_mut() {
                    o.remove("lastTransitionTime");
                }
            }
            conds.sort_by(|x, y| x["type"].as_str().cmp(&y["type"].as_str()));
        }
        v
    }
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => strip(a) == strip(b),
        _ => false,
    }
}

/// The top-level status fields (and condition types) that differ, ignoring timestamps; for
/// debug logs that say why a status write happens.
pub fn changed_fields<S: Serialize>(old: &S, new: &S) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec!["*".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        if key == "conditions" {
            let conds = |m: &serde_json::Map<String, serde_json::Value>| -> Vec<serde_json::Value> {
                m.get(key)
                    .and_then(|v| v.as_array())
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|mut c| {
                        if let Some(o) = c.as_object_mut() {
                            o.remove("lastTransitionTime");
                        }
                        c
                    })
                    .collect()
            };
            let (ca, cb) = (conds(&a), conds(&b));
            for c in cb.iter().chain(ca.iter()) {
                let ty = c["type"].as_str().unwrap_or_default();
                let find = |l: &[serde_json::Value]| l.iter().find(|x| x["type"] == ty).cloned();
                if find(&ca) != find(&cb) && !out.contains(&format!("conditions.{ty}")) {
                    out.push(format!("conditions.{ty}"));
                }
            }
        } else if a.get(key) != b.get(key) {
            out.push(key.clone());
        }
    }
    out
}

/// Writes `status` by server-side apply on `/status`, field manager `switchyard`, forced.
/// Retries once on a conflict or server error; forced apply carries no resourceVersion, so
/// a conflict means another writer raced us, and a second try settles it.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut attempt = 0;
    loop {
        match api.patch_status(name, &params, &Patch::Apply(&body)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if attempt == 0 && (e.code == 409 || e.code >= 500) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The current time as a Kubernetes `Time`.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default())
    }

    #[test]
    fn set_condition_keeps_transition_time_unless_status_flips() {
        let mut conds = Vec::new();
        set_condition(&mut conds, types::READY, false, "A", "a", Some(1), &t(10));
        set_condition(&mut conds, types::READY, false, "B", "b", Some(2), &t(20));
        assert_eq!(conds.len(), 1);
        assert_eq!(
            conds[0].last_transition_time,
            t(10),
            "same status keeps the time"
        );
        assert_eq!(conds[0].reason, "B");
        assert_eq!(conds[0].observed_generation, Some(2));
        set_condition(&mut conds, types::READY, true, "C", "c", Some(2), &t(30));
        assert_eq!(
            conds[0].last_transition_time,
            t(30),
            "a flip moves the time"
        );
        assert_eq!(conds[0].status, "True");
    }

    #[test]
    fn summarize_maps_outcomes_to_kstatus_conditions() {
        struct Case {
            name: &'static str,
            outcome: Outcome,
            /// (type, status) expected present.
            want: &'static [(&'static str, &'static str)],
            /// types expected absent.
            absent: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "ready clears reconciling and stalled",
                outcome: Outcome::Ready {
                    reason: reasons::UP_TO_DATE,
                    message: "ok".into(),
                },
                want: &[(types::READY, "True")],
                absent: &[types::RECONCILING, types::STALLED],
            },
            Case {
                name: "progressing",
                outcome: Outcome::Progressing {
                    reason: reasons::DEPLOYING,
                    message: "x".into(),
                },
                want: &[(types::READY, "False"), (types::RECONCILING, "True")],
                absent: &[types::STALLED],
            },
            Case {
                name: "transient failure retries: reconciling, not stalled",
                outcome: Outcome::Transient {
                    reason: reasons::CONNECT_FAILED,
                    message: "x".into(),
                },
                want: &[(types::READY, "False"), (types::RECONCILING, "True")],
                absent: &[types::STALLED],
            },
            Case {
                name: "terminal failure stalls and never leaves reconciling behind",
                outcome: Outcome::Terminal {
                    reason: reasons::DEPLOY_FAILED,
                    message: "x".into(),
                },
                want: &[(types::READY, "False"), (types::STALLED, "True")],
                absent: &[types::RECONCILING],
            },
        ];
        for case in cases {
            let mut conds = Vec::new();
            // Start from a reconciling, stalled object so every removal is exercised.
            set_condition(
                &mut conds,
                types::RECONCILING,
                true,
                "P",
                "p",
                Some(1),
                &t(1),
            );
            set_condition(&mut conds, types::STALLED, true, "S", "s", Some(1), &t(1));
            summarize(&mut conds, &case.outcome, Some(2), &t(5));
            for (ty, st) in case.want {
                let c =
                    condition(&conds, ty).unwrap_or_else(|| panic!("{}: {ty} missing", case.name));
                assert_eq!(c.status, *st, "{}: {ty}", case.name);
                assert_eq!(c.observed_generation, Some(2), "{}", case.name);
            }
            for ty in case.absent {
                assert!(
                    condition(&conds, ty).is_none(),
                    "{}: {ty} should be gone",
                    case.name
                );
            }
        }
    }

    #[test]
    fn mark_progressing_only_on_new_generation() {
        let mut conds = Vec::new();
        assert!(mark_progressing(&mut conds, None, Some(1), &t(1)));
        assert!(is_true(&conds, types::RECONCILING));
        assert_eq!(
            condition(&conds, types::RECONCILING).map(|c| c.message.as_str()),
            Some("processing generation 1")
        );
        summarize(
            &mut conds,
            &Outcome::Ready {
                reason: "R",
                message: "m".into(),
            },
            Some(1),
            &t(2),
        );
        assert!(
            !mark_progressing(&mut conds, Some(1), Some(1), &t(3)),
            "same generation: nothing to mark"
        );
        assert!(mark_progressing(&mut conds, Some(1), Some(2), &t(3)));
        assert_eq!(
            condition(&conds, types::RECONCILING).map(|c| c.message.as_str()),
            Some("processing generation 1 -> 2")
        );
    }

    #[test]
    fn same_ignoring_time_ignores_only_timestamps() {
        let mut a = Vec::new();
        set_condition(&mut a, types::READY, true, "R", "m", Some(1), &t(1));
        let mut b = a.clone();
        b[0].last_transition_time = t(99);
        assert!(same_ignoring_time(
            &serde_json::json!({"conditions": a}),
            &serde_json::json!({"conditions": b})
        ));
        b[0].message = "other".into();
        assert!(!same_ignoring_time(
            &serde_json::json!({"conditions": a}),
            &serde_json::json!({"conditions": b})
        ));
    }
}
