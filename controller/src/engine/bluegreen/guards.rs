//! Promotion guards and the pure decisions around a promotion: which staged schemas a
//! selection covers, which stale upstreams it leaves behind, and whether a guard blocks.
//!
//! Guards are plain functions over a gathered [`GuardInput`], run as a [`Chain`] where
//! the first failure wins (cert-manager's policy chain). The CLI and the Promotion
//! reconciler gather the input their own way and share these.

use crate::api::conditions::reasons::{
    GUARD_PARTIAL_PROMOTION, GUARD_SOURCE_NOT_FINALIZED, GUARD_SOURCE_STALE, GUARD_STALE_UPSTREAMS,
    GUARD_TARGET_LOCKED, GUARD_TARGET_SUSPENDED, REWORK_NOT_ALLOWED,
};
use std::collections::{BTreeMap, BTreeSet};

use crate::project::objects::Objects;

/// Why a promotion is blocked: an UpperCamelCase reason and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Blocked {
    /// The guard's reason, e.g. `GuardTargetLocked`.
    pub reason: &'static str,
    /// What blocked, naming the holder, the schemas or the objects.
    pub message: String,
}

/// Everything the guards look at, gathered before anything changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardInput {
    /// The source is finalized: a staged set exists and every schema of it verified.
    /// `Some(why)` when it is not.
    pub source_not_finalized: Option<String>,
    /// Schemas whose staged definition differs from the project's newest revision.
    pub source_stale: Vec<String>,
    /// Who holds the target's lock, when someone else does.
    pub target_locked_by: Option<String>,
    /// The target is suspended (detached).
    pub target_suspended: bool,
    /// A subset of the staged schemas was selected.
    pub partial: bool,
    /// `allowPartialPromotion` / `--allow-partial-promotion`.
    pub allow_partial: bool,
    /// Changed upstream objects the selection depends on but leaves out, `schema.name`.
    pub stale_upstreams: Vec<String>,
    /// The promotion carries reworked changes (development workflow) the target has not
    /// deployed in their original form: which change and which file.
    pub reworked: Option<String>,
    /// The target allows rework.
    pub allow_rework: bool,
}

/// One guard: `Some` blocks.
pub type Guard = fn(&GuardInput) -> Option<Blocked>;

/// Guards in order; the first that blocks wins.
pub struct Chain(pub Vec<Guard>);

impl Chain {
    /// The promotion guards in the order they are reported.
    pub fn promotion() -> Chain {
        Chain(vec![
            target_locked,
            target_suspended,
            source_not_finalized,
            source_stale,
            stale_upstreams,
            partial_not_allowed,
            rework_not_allowed,
        ])
    }

    /// The first guard that blocks, if any.
    pub fn check(&self, input: &GuardInput) -> Option<Blocked> {
        self.0.iter().find_map(|guard| guard(input))
    }
}

fn target_locked(input: &GuardInput) -> Option<Blocked> {
    input.target_locked_by.as_ref().map(|holder| Blocked {
        reason: GUARD_TARGET_LOCKED,
        message: format!("the target is locked by {holder}"),
    })
}

fn target_suspended(input: &GuardInput) -> Option<Blocked> {
    input.target_suspended.then(|| Blocked {
        reason: GUARD_TARGET_SUSPENDED,
        message: "the target is suspended (detached)".into(),
    })
}

fn source_not_finalized(input: &GuardInput) -> Option<Blocked> {
    input.source_not_finalized.as_ref().map(|why| Blocked {
        reason: GUARD_SOURCE_NOT_FINALIZED,
        message: why.clone(),
    })
}

fn source_stale(input: &GuardInput) -> Option<Blocked> {
    (!input.source_stale.is_empty()).then(|| Blocked {
        reason: GUARD_SOURCE_STALE,
        message: format!(
            "the staged {} no longer match the project's objects; stage again",
            input.source_stale.join(", ")
        ),
    })
}

fn stale_upstreams(input: &GuardInput) -> Option<Blocked> {
    (!input.stale_upstreams.is_empty()).then(|| Blocked {
        reason: GUARD_STALE_UPSTREAMS,
        message: format!(
            "the selection depends on changed upstreams it leaves out: {} (add --include-stale-upstreams)",
            input.stale_upstreams.join(", ")
        ),
    })
}

fn partial_not_allowed(input: &GuardInput) -> Option<Blocked> {
    (input.partial && !input.allow_partial).then(|| Blocked {
        reason: GUARD_PARTIAL_PROMOTION,
        message: "a partial promotion needs --allow-partial-promotion (allowPartialPromotion)"
            .into(),
    })
}

fn rework_not_allowed(input: &GuardInput) -> Option<Blocked> {
    input
        .reworked
        .as_ref()
        .filter(|_| !input.allow_rework)
        .map(|what| Blocked {
            reason: REWORK_NOT_ALLOWED,
            message: format!("the target does not allow rework: {what}"),
        })
}

/// What a selection promotes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Logical schemas to swap.
    pub schemas: BTreeSet<String>,
    /// True when that is fewer than the staged set.
    pub partial: bool,
    /// Changed upstream objects left out (empty when they were pulled in).
    pub stale_upstreams: Vec<String>,
    /// Selections that name nothing staged.
    pub unknown: Vec<String>,
}

/// Resolves `--select` entries (a schema, or an object as `schema.name` or `name`) against
/// the staged schemas. Swaps are per schema, so an object selects its schema. Upstreams
/// are the staged schemas holding objects the selected schemas' objects depend on; with
/// `include_stale_upstreams` they join the selection, else they are reported.
pub fn select(
    objects: &Objects,
    staged: &BTreeSet<String>,
    select: &[String],
    include_stale_upstreams: bool,
) -> Selection {
    if select.is_empty() {
        return Selection {
            schemas: staged.clone(),
            ..Selection::default()
        };
    }
    let mut out = Selection::default();
    for entry in select {
        if staged.contains(entry) {
            out.schemas.insert(entry.clone());
            continue;
        }
        let found = match entry.split_once('.') {
            Some((schema, name)) => objects.get(schema, name).map(|o| o.name.schema.clone()),
            None => objects
                .ordered
                .iter()
                .find(|o| o.name.name == *entry)
                .map(|o| o.name.schema.clone()),
        };
        match found.filter(|s| staged.contains(s)) {
            Some(schema) => {
                out.schemas.insert(schema);
            }
            None => out.unknown.push(entry.clone()),
        }
    }
    // Upstream closure over staged schemas.
    let mut upstream_objects: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut frontier: Vec<String> = out.schemas.iter().cloned().collect();
    let mut seen = out.schemas.clone();
    while let Some(schema) = frontier.pop() {
        for object in objects.of_schema(&schema) {
            for dep in &object.depends_on {
                if dep.schema != schema
                    && staged.contains(&dep.schema)
                    && !out.schemas.contains(&dep.schema)
                {
                    upstream_objects
                        .entry(dep.schema.clone())
                        .or_default()
                        .insert(dep.to_string());
                    if seen.insert(dep.schema.clone()) {
                        frontier.push(dep.schema.clone());
                    }
                }
            }
        }
    }
    if include_stale_upstreams {
        out.schemas.extend(upstream_objects.into_keys());
    } else {
        out.stale_upstreams = upstream_objects.into_values().flatten().collect();
    }
    out.partial = out.schemas.len() < staged.len();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_input_passes_every_guard() {
        assert_eq!(Chain::promotion().check(&GuardInput::default()), None);
    }

    #[test]
    fn each_guard_blocks_with_its_reason_and_the_first_wins() {
        struct Case {
            name: &'static str,
            input: GuardInput,
            /// The reason the chain reports.
            want_reason: &'static str,
            /// A fragment of the message.
            want_message: &'static str,
        }
        let cases = [
            Case {
                name: "locked",
                input: GuardInput {
                    target_locked_by: Some("Ada <ada@x> on host1 (pid 7, deploy)".into()),
                    partial: true,
                    ..Default::default()
                },
                want_reason: GUARD_TARGET_LOCKED,
                want_message: "Ada <ada@x>",
            },
            Case {
                name: "suspended",
                input: GuardInput {
                    target_suspended: true,
                    ..Default::default()
                },
                want_reason: GUARD_TARGET_SUSPENDED,
                want_message: "suspended",
            },
            Case {
                name: "not finalized",
                input: GuardInput {
                    source_not_finalized: Some("deployment 4 failed verification".into()),
                    ..Default::default()
                },
                want_reason: GUARD_SOURCE_NOT_FINALIZED,
                want_message: "deployment 4",
            },
            Case {
                name: "stale",
                input: GuardInput {
                    source_stale: vec!["api".into()],
                    ..Default::default()
                },
                want_reason: GUARD_SOURCE_STALE,
                want_message: "api",
            },
            Case {
                name: "stale upstreams before partial",
                input: GuardInput {
                    stale_upstreams: vec!["report.r".into()],
                    partial: true,
                    ..Default::default()
                },
                want_reason: GUARD_STALE_UPSTREAMS,
                want_message: "report.r",
            },
            Case {
                name: "partial",
                input: GuardInput {
                    partial: true,
                    ..Default::default()
                },
                want_reason: GUARD_PARTIAL_PROMOTION,
                want_message: "--allow-partial-promotion",
            },
            Case {
                name: "rework",
                input: GuardInput {
                    reworked: Some("deploy/users-replace.sql: change users is reworked".into()),
                    ..Default::default()
                },
                want_reason: REWORK_NOT_ALLOWED,
                want_message: "deploy/users-replace.sql",
            },
        ];
        for case in cases {
            let blocked = Chain::promotion()
                .check(&case.input)
                .unwrap_or_else(|| panic!("{}: not blocked", case.name));
            assert_eq!(blocked.reason, case.want_reason, "{}", case.name);
            assert!(
                blocked.message.contains(case.want_message),
                "{}: {}",
                case.name,
                blocked.message
            );
        }
        let allowed = GuardInput {
            partial: true,
            allow_partial: true,
            reworked: Some("a change".into()),
            allow_rework: true,
            ..Default::default()
        };
        assert_eq!(Chain::promotion().check(&allowed), None);
    }
}
