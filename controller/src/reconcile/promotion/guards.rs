//! The Promotion guards that need only the Kubernetes objects (the Environments and the
//! project), as a chain of pure functions where the first refusal wins. The engine adds
//! those that need the target database (`engine::bluegreen::guards`).

use kube::ResourceExt;

use crate::api::conditions::{reasons, types};
use crate::api::environment::Environment;
use crate::reconcile::status;

/// What the guards look at.
#[derive(Clone, Debug, Default)]
pub struct Input<'a> {
    /// The source Environment, when `from.environment` is set and it exists.
    pub source: Option<&'a Environment>,
    /// True when `from.environment` is set.
    pub from_environment: bool,
    /// The source Environment's name, when set.
    pub source_name: Option<&'a str>,
    /// The target Environment, when it exists.
    pub target: Option<&'a Environment>,
    /// The target's name.
    pub target_name: &'a str,
    /// The project's newest valid revision, when known.
    pub project_revision: Option<&'a str>,
    /// The Promotion's `allowDrift`.
    pub allow_drift: bool,
}

/// A guard: `Some((reason, message))` refuses the promotion.
pub type Guard = fn(&Input) -> Option<(&'static str, String)>;

fn source_revision(source: &Environment) -> Option<&str> {
    source
        .status
        .as_ref()
        .and_then(|st| st.last_applied_revision.as_deref())
}

/// The guards that need only the Kubernetes objects, in order; the first refusal wins.
/// The engine adds those that need the target database ([`crate::engine::bluegreen::guards::Chain`]): its lock,
/// a partial selection, stale upstreams.
pub const GUARDS: &[Guard] = &[
    |i| {
        i.target.is_none().then(|| {
            (
                reasons::GUARD_TARGET_NOT_FOUND,
                format!("target Environment {} not found", i.target_name),
            )
        })
    },
    |i| {
        (i.from_environment && i.source.is_none()).then(|| {
            (
                reasons::GUARD_SOURCE_NOT_FOUND,
                format!(
                    "source Environment {} not found",
                    i.source_name.unwrap_or_default()
                ),
            )
        })
    },
    |i| {
        (i.source_name == Some(i.target_name)).then(|| {
            (
                reasons::GUARD_PROJECT_MISMATCH,
                "source and target are the same Environment".to_string(),
            )
        })
    },
    |i| match (i.source, i.target) {
        (Some(s), Some(t)) if s.spec.project_ref != t.spec.project_ref => Some((
            reasons::GUARD_PROJECT_MISMATCH,
            format!(
                "source deploys DatabaseProject {} but target deploys {}",
                s.spec.project_ref.name, t.spec.project_ref.name
            ),
        )),
        _ => None,
    },
    |i| {
        i.target
            .and_then(|t| t.status.as_ref().and_then(|st| st.locked_by.clone()))
            .map(|holder| {
                (
                    reasons::GUARD_TARGET_LOCKED,
                    format!("target Environment {} is locked by {holder}", i.target_name),
                )
            })
    },
    |i| {
        let drifted = i.target.and_then(|t| t.status.as_ref()).and_then(|st| {
            status::condition(&st.conditions, types::DRIFTED).filter(|c| c.status == "True")
        });
        drifted.filter(|_| !i.allow_drift).map(|c| {
            (
                reasons::GUARD_TARGET_DRIFTED,
                format!(
                    "target Environment {} drifted from what was deployed ({}); repair it, or set allowDrift: true",
                    i.target_name, c.message
                ),
            )
        })
    },
    |i| {
        i.target.filter(|t| t.spec.suspend).map(|_| {
            (
                reasons::GUARD_TARGET_SUSPENDED,
                format!(
                    "target Environment {} is suspended (detached)",
                    i.target_name
                ),
            )
        })
    },
    |i| {
        i.source
            .filter(|s| {
                source_revision(s).is_none()
                    || !s
                        .status
                        .as_ref()
                        .is_some_and(|st| status::is_true(&st.conditions, types::READY))
            })
            .map(|s| {
                let why = match source_revision(s) {
                    None => "has deployed nothing yet",
                    Some(_) => "is not Ready at its revision",
                };
                (
                    reasons::GUARD_SOURCE_NOT_FINALIZED,
                    format!("source Environment {} {why}", s.name_any()),
                )
            })
    },
    |i| match (i.source.and_then(source_revision), i.project_revision) {
        (Some(have), Some(newest)) if have != newest => Some((
            reasons::GUARD_SOURCE_STALE,
            format!(
                "source Environment {} holds {have} but the project is at {newest}; let it catch up first",
                i.source_name.unwrap_or_default()
            ),
        )),
        _ => None,
    },
];

/// Runs the guards; the first refusal wins.
pub fn check(input: &Input) -> Option<(&'static str, String)> {
    GUARDS.iter().find_map(|guard| guard(input))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::env;

    #[test]
    fn guards_first_refusal_wins() {
        let ready_dev = env("dev").ready("cm:p@sha1:1", "c1").build();
        let prod = env("prod").build();
        let other_project = env("other").project("elsewhere").ready("r", "c").build();
        let unready = env("dev").build();
        let suspended = env("prod").suspended().build();
        let locked = env("prod").locked("someone").build();
        let drifted = env("prod").drifted("view api.v changed").build();
        let ok = Input {
            source: Some(&ready_dev),
            from_environment: true,
            source_name: Some("dev"),
            target: Some(&prod),
            target_name: "prod",
            project_revision: Some("cm:p@sha1:1"),
            allow_drift: false,
        };
        let cases = [
            ("ok", ok.clone(), None),
            (
                "target missing",
                Input {
                    target: None,
                    ..ok.clone()
                },
                Some(reasons::GUARD_TARGET_NOT_FOUND),
            ),
            (
                "source missing",
                Input {
                    source: None,
                    ..ok.clone()
                },
                Some(reasons::GUARD_SOURCE_NOT_FOUND),
            ),
            (
                "other project",
                Input {
                    source: Some(&other_project),
                    source_name: Some("other"),
                    ..ok.clone()
                },
                Some(reasons::GUARD_PROJECT_MISMATCH),
            ),
            (
                "target suspended",
                Input {
                    target: Some(&suspended),
                    ..ok.clone()
                },
                Some(reasons::GUARD_TARGET_SUSPENDED),
            ),
            (
                "source not ready",
                Input {
                    source: Some(&unready),
                    ..ok.clone()
                },
                Some(reasons::GUARD_SOURCE_NOT_FINALIZED),
            ),
            (
                "source stale",
                Input {
                    project_revision: Some("cm:p@sha1:2"),
                    ..ok.clone()
                },
                Some(reasons::GUARD_SOURCE_STALE),
            ),
            (
                "target locked",
                Input {
                    target: Some(&locked),
                    ..ok.clone()
                },
                Some(reasons::GUARD_TARGET_LOCKED),
            ),
            (
                "from a revision needs no source",
                Input {
                    source: None,
                    from_environment: false,
                    source_name: None,
                    ..ok.clone()
                },
                None,
            ),
            (
                "target drifted",
                Input {
                    target: Some(&drifted),
                    ..ok.clone()
                },
                Some(reasons::GUARD_TARGET_DRIFTED),
            ),
            (
                "target drifted, allowed",
                Input {
                    target: Some(&drifted),
                    allow_drift: true,
                    ..ok.clone()
                },
                None,
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(check(&input).map(|(r, _)| r), want, "{name}");
        }
    }
}
