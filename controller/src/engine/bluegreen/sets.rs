//! Which physical sets a project has (live, retained, staged, per layer) and which
//! schemas a stage must build: pure decisions over the pointers the registry holds.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::project::objects::Objects;
use crate::registry::bluegreen::{Pointer, Role};

/// The live and retained sets, for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sets {
    /// Logical schema → physical schema live (with its deployment).
    pub live: BTreeMap<String, String>,
    /// Deployment id of each live schema.
    pub live_deployments: BTreeMap<String, String>,
    /// Previous sets, newest first: deployment id and logical → physical.
    pub retained: Vec<RetainedSet>,
    /// Staged candidates, newest first.
    pub staged: Vec<RetainedSet>,
    /// Logical schema → the schema applications query: itself, or its layer.
    pub served: BTreeMap<String, String>,
}

/// One deployment's schemas.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetainedSet {
    /// Deployment id.
    pub deployment: String,
    /// Logical → physical.
    pub schemas: BTreeMap<String, String>,
    /// State (`verified`, `failed`, `ready`).
    pub state: String,
}

/// Objects added, changed and removed in one schema.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchemaDiff {
    /// In the source, not in the target.
    pub added: Vec<String>,
    /// In both, with different definitions.
    pub changed: Vec<String>,
    /// In the target, not in the source.
    pub removed: Vec<String>,
}

/// Staged candidates kept per blue-green schema, the newest first (as `keep` for retained
/// sets): room to stage two side by side and promote either by its deployment id.
pub(super) const CANDIDATES_KEPT: usize = 2;

/// The newest staged set when it was built from exactly these definitions of exactly
/// these schemas and verified: staging again would only build its twin and leave it
/// behind for ever (a stage followed by a crash instead of its promote, or `stage` run
/// twice). Promote verifies again after the swap, as always.
pub(super) fn verified_candidate(
    project: &Project,
    objects: &Objects,
    all: &[Pointer],
    schemas: &[String],
) -> Option<StageReport> {
    let newest = &all.iter().find(|p| p.role == Role::Staged)?.deployment;
    let set: Vec<&Pointer> = all
        .iter()
        .filter(|p| p.role == Role::Staged && &p.deployment == newest)
        .collect();
    let same = set.len() == schemas.len()
        && set.iter().all(|p| {
            p.state == "verified"
                && schemas.contains(&p.logical)
                && p.definition_hash == objects.schema_hash(&p.logical)
        });
    same.then(|| StageReport {
        project: project.name().into(),
        deployment: newest.clone(),
        schemas: set
            .iter()
            .map(|p| (p.logical.clone(), p.physical.clone()))
            .collect(),
        objects: objects
            .ordered
            .iter()
            .filter(|o| schemas.contains(&o.name.schema))
            .count(),
        ..StageReport::default()
    })
}

/// Groups pointers into live, retained and staged sets.
pub fn sets(all: &[Pointer]) -> Sets {
    let mut out = Sets::default();
    let mut retained: BTreeMap<String, RetainedSet> = BTreeMap::new();
    let mut staged: BTreeMap<String, RetainedSet> = BTreeMap::new();
    for p in all {
        match p.role {
            Role::Live => {
                out.live.insert(p.logical.clone(), p.physical.clone());
                out.live_deployments
                    .insert(p.logical.clone(), p.deployment.clone());
            }
            // Layers say where a shared set is live ([`layer_sets`]).
            Role::Shared => {}
            Role::Retained | Role::Staged => {
                let target = if p.role == Role::Retained {
                    &mut retained
                } else {
                    &mut staged
                };
                let set = target
                    .entry(p.deployment.clone())
                    .or_insert_with(|| RetainedSet {
                        deployment: p.deployment.clone(),
                        state: p.state.clone(),
                        ..RetainedSet::default()
                    });
                if p.state != "verified" && p.state != "ready" {
                    set.state = p.state.clone();
                }
                set.schemas.insert(p.logical.clone(), p.physical.clone());
            }
        }
    }
    let newest_first = |m: BTreeMap<String, RetainedSet>| {
        let mut v: Vec<RetainedSet> = m.into_values().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.deployment.parse::<i64>().unwrap_or(0)));
        v
    };
    out.retained = newest_first(retained);
    out.staged = newest_first(staged);
    out
}

/// Object name → file hash of one schema's objects.
pub fn object_hashes(objects: &Objects, schema: &str) -> serde_json::Value {
    serde_json::Value::Object(
        objects
            .of_schema(schema)
            .map(|o| {
                (
                    o.name.name.clone(),
                    serde_json::Value::String(o.hash.clone()),
                )
            })
            .collect(),
    )
}

/// Compares two object maps (name → hash).
pub fn diff_objects(source: &serde_json::Value, target: &serde_json::Value) -> SchemaDiff {
    let empty = serde_json::Map::new();
    let s = source.as_object().unwrap_or(&empty);
    let t = target.as_object().unwrap_or(&empty);
    SchemaDiff {
        added: s.keys().filter(|k| !t.contains_key(*k)).cloned().collect(),
        changed: s
            .iter()
            .filter(|(k, v)| t.get(*k).is_some_and(|tv| tv != *v))
            .map(|(k, _)| k.clone())
            .collect(),
        removed: t.keys().filter(|k| !s.contains_key(*k)).cloned().collect(),
    }
}

/// Which blue-green schemas a stage builds: changed against what is live (logical schema →
/// its live set's pointer), or named, and every schema that depends on one of those.
///
/// NB: a view binds to its upstream by OID, so a downstream schema left alone would go on
/// reading the upstream's previous set after the swap (and pin it against retirement),
/// while its late-bound functions read the new one.
pub fn schemas_to_stage(
    objects: &Objects,
    live: &BTreeMap<String, Pointer>,
    redeploy: &[String],
) -> Vec<String> {
    let mut staged: BTreeSet<String> = objects
        .schemas
        .iter()
        .filter(|schema| {
            redeploy.iter().any(|r| r == *schema)
                || live
                    .get(*schema)
                    .is_none_or(|p| p.definition_hash != objects.schema_hash(schema))
        })
        .cloned()
        .collect();
    loop {
        let downstream: BTreeSet<String> = objects
            .ordered
            .iter()
            .filter(|o| !staged.contains(&o.name.schema))
            .filter(|o| o.depends_on.iter().any(|d| staged.contains(&d.schema)))
            .map(|o| o.name.schema.clone())
            .collect();
        if downstream.is_empty() {
            return staged.into_iter().collect();
        }
        staged.extend(downstream);
    }
}

/// A layered Environment's sets: live from its layers, retained from its layer history
/// (newest first), staged candidates as everywhere.
pub(super) fn layer_sets(state: &State, suffix: &str, live: &BTreeMap<String, Pointer>) -> Sets {
    let mut out = Sets {
        staged: sets(&state.all).staged,
        ..Sets::default()
    };
    for (logical, p) in live {
        out.live.insert(logical.clone(), p.physical.clone());
        out.live_deployments
            .insert(logical.clone(), p.deployment.clone());
    }
    // Rows come newest first; a set is the rows of one deployment.
    for row in state
        .layers
        .iter()
        .filter(|l| l.suffix == suffix && l.role == Role::Retained)
    {
        match out
            .retained
            .iter_mut()
            .find(|s| s.deployment == row.deployment)
        {
            Some(set) => {
                set.schemas
                    .insert(row.logical.clone(), row.physical.clone());
            }
            None => out.retained.push(RetainedSet {
                deployment: row.deployment.clone(),
                schemas: [(row.logical.clone(), row.physical.clone())].into(),
                state: "ready".into(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(logical: &str, deployment: &str, role: Role, state: &str, hash: &str) -> Pointer {
        Pointer {
            logical: logical.into(),
            physical: match role {
                Role::Live => logical.into(),
                _ => sql::physical_name(logical, deployment),
            },
            deployment: deployment.into(),
            role,
            state: state.into(),
            definition_hash: hash.into(),
            objects: serde_json::json!({}),
            message: String::new(),
            updated_at: String::new(),
            catalog: serde_json::json!({}),
        }
    }

    #[test]
    fn sets_group_pointers_newest_first_and_a_failed_schema_fails_its_set() {
        let all = [
            pointer("api", "9", Role::Live, "ready", "h"),
            pointer("api", "3", Role::Retained, "ready", ""),
            pointer("api", "7", Role::Retained, "ready", ""),
            pointer("api", "12", Role::Staged, "verified", ""),
            pointer("report", "12", Role::Staged, "failed", ""),
        ];
        let sets = sets(&all);
        assert_eq!(sets.live["api"], "api");
        assert_eq!(sets.live_deployments["api"], "9");
        let retained: Vec<&str> = sets
            .retained
            .iter()
            .map(|s| s.deployment.as_str())
            .collect();
        assert_eq!(retained, ["7", "3"]);
        assert_eq!(sets.staged[0].schemas.len(), 2);
        assert_eq!(sets.staged[0].state, "failed");
    }

    #[test]
    fn diff_objects_lists_added_changed_and_removed() {
        let source = serde_json::json!({"a": "1", "b": "2", "c": "3"});
        let target = serde_json::json!({"b": "2", "c": "x", "d": "4"});
        let d = diff_objects(&source, &target);
        assert_eq!(d.added, ["a"]);
        assert_eq!(d.changed, ["c"]);
        assert_eq!(d.removed, ["d"]);
    }

    #[test]
    fn only_changed_or_named_schemas_are_staged() {
        let objects = Objects {
            schemas: ["api".to_string(), "report".to_string()].into(),
            ..Objects::default()
        };
        let api_hash = objects.schema_hash("api");
        let live: BTreeMap<String, Pointer> = [
            pointer("api", "1", Role::Live, "ready", &api_hash),
            pointer("report", "1", Role::Live, "ready", "old"),
        ]
        .into_iter()
        .map(|p| (p.logical.clone(), p))
        .collect();
        assert_eq!(schemas_to_stage(&objects, &live, &[]), ["report"]);
        assert_eq!(
            schemas_to_stage(&objects, &live, &["api".into()]),
            ["api", "report"]
        );
        assert_eq!(
            schemas_to_stage(&objects, &BTreeMap::new(), &[]),
            ["api", "report"],
            "never promoted: both"
        );
    }

    #[test]
    fn a_schema_over_a_changed_one_is_staged_with_it() {
        use crate::project::objects::{Object, ObjectKind, ObjectName};
        let name = |schema: &str, name: &str| ObjectName {
            schema: schema.into(),
            name: name.into(),
        };
        let object = |n: ObjectName, deps: &[ObjectName]| Object {
            name: n,
            kind: ObjectKind::View,
            path: "x.sql".into(),
            line: 1,
            statements: Vec::new(),
            depends_on: deps.iter().cloned().collect(),
            hash: "h".into(),
            language: None,
        };
        let objects = Objects {
            ordered: vec![
                object(name("api", "v"), &[]),
                object(name("report", "r"), &[name("api", "v")]),
                object(name("board", "b"), &[name("report", "r")]),
                object(name("other", "o"), &[]),
            ],
            schemas: ["api", "report", "board", "other"].map(String::from).into(),
            ..Objects::default()
        };
        let live: BTreeMap<String, Pointer> = ["api", "report", "board", "other"]
            .iter()
            .map(|s| {
                let hash = if *s == "api" {
                    "old".to_string()
                } else {
                    objects.schema_hash(s)
                };
                (s.to_string(), pointer(s, "1", Role::Live, "ready", &hash))
            })
            .collect();
        assert_eq!(
            schemas_to_stage(&objects, &live, &[]),
            ["api", "board", "report"],
            "api changed; report reads api and board reads report"
        );
    }
}
