//! Drift (issue #16): what a database holds that its project and its verified blue-green
//! sets do not say. Deploy scripts edited after deploy, live objects changed by hand or
//! gone, objects nobody defines, registry rows for changes the plan lost. Reads only; the
//! CLI (`status`) and the controller both call [`check`].

use std::collections::{BTreeMap, BTreeSet};

use sha1::Digest;

use super::bluegreen::{BlueGreen, Catalog};
use super::{Deployer, Result};
use crate::project::objects::Objects;
use crate::project::{Project, ScriptKind};
use crate::registry::DeployedChange;
use crate::registry::bluegreen::Pointer;
use crate::registry::workflow::{self, State};

/// Everything found to differ, in a stable order. Empty when the database is as deployed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// Deployed changes whose deploy script in this revision no longer hashes to the registry's script_hash.
    pub scripts: Vec<ScriptDrift>,
    /// Objects of live blue-green sets whose catalog differs from what was staged and verified (or is gone).
    pub objects: Vec<ObjectDrift>,
    /// Objects in managed blue-green schemas the project does not define.
    pub unknown: Vec<UnknownObject>,
    /// Registry rows for changes the plan no longer has.
    pub orphans: Vec<OrphanChange>,
}

/// A deployed change whose deploy script changed since.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptDrift {
    /// The change name.
    pub change: String,
    /// The change id.
    pub id: String,
    /// The deploy script, relative to the project (`deploy/x@v1.sql` for a reworked one).
    pub file: String,
    /// SHA-1 the registry recorded when it was deployed.
    pub recorded: String,
    /// SHA-1 of the file now; empty when the file is gone.
    pub current: String,
}

/// How a verified object differs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectChange {
    /// Its definition, owner or grants differ.
    Changed,
    /// It is gone.
    Missing,
}

/// An object of a live blue-green set that differs from what was verified.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDrift {
    /// The logical schema.
    pub schema: String,
    /// `kind name`, e.g. `view big_customers`, `function f(integer)`.
    pub object: String,
    /// Changed or missing.
    pub change: ObjectChange,
}

/// An object in a managed blue-green schema the project does not define.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnknownObject {
    /// The logical schema.
    pub schema: String,
    /// `kind name`, e.g. `table scratch`.
    pub object: String,
}

/// A registry row for a change the plan no longer has.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrphanChange {
    /// The change name.
    pub change: String,
    /// The change id.
    pub id: String,
}

impl Drift {
    /// True when nothing drifted.
    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty()
            && self.objects.is_empty()
            && self.unknown.is_empty()
            && self.orphans.is_empty()
    }

    /// One line per finding, each with a stable key (the same finding keeps its key from
    /// one check to the next, for events that fire once), naming the object or the change
    /// and its file.
    pub fn findings(&self) -> Vec<(String, String)> {
        let scripts = self.scripts.iter().map(|s| {
            (
                format!("script/{}/{}", s.change, s.id),
                match s.current.is_empty() {
                    true => format!(
                        "change {} was deployed from {}, which is gone",
                        s.change, s.file
                    ),
                    false => format!(
                        "change {} was deployed from {} with hash {}; the file now hashes to {}",
                        s.change, s.file, s.recorded, s.current
                    ),
                },
            )
        });
        let objects = self.objects.iter().map(|o| {
            let what = match o.change {
                ObjectChange::Changed => "changed since it was verified",
                ObjectChange::Missing => "is gone since it was verified",
            };
            (
                format!("object/{}/{}", o.schema, o.object),
                format!("{} in blue-green schema {} {what}", o.object, o.schema),
            )
        });
        let unknown = self.unknown.iter().map(|u| {
            (
                format!("unknown/{}/{}", u.schema, u.object),
                format!(
                    "{} in blue-green schema {} is not defined by the project",
                    u.object, u.schema
                ),
            )
        });
        let orphans = self.orphans.iter().map(|o| {
            (
                format!("orphan/{}", o.id),
                format!(
                    "change {} ({}) is deployed but no longer in the plan",
                    o.change, o.id
                ),
            )
        });
        scripts
            .chain(objects)
            .chain(unknown)
            .chain(orphans)
            .collect()
    }
}

/// Checks `project` (with its `objects`) against the database `deployer` is connected to;
/// `suffix` is the Environment's schema suffix when its blue-green schemas are served
/// through layers. Reads the registry and the live sets' catalog in a handful of
/// set-based queries, whatever the number of changes and objects.
pub async fn check(
    deployer: &Deployer,
    project: &Project,
    objects: &Objects,
    suffix: Option<&str>,
) -> Result<Drift> {
    let client = deployer.client();
    let registry = deployer.registry();
    let deployed = registry.deployed(client, project.name()).await?;
    let records = workflow::records(client, registry.workflow_scope(project.name())).await?;
    let bluegreen = BlueGreen::new(client, registry.clone(), deployer.committer().clone())
        .layered(suffix.map(str::to_string));
    let (live, catalog) = bluegreen.live_sets(project).await?;
    let (objects, unknown) = object_drift(&live, &catalog, objects);
    Ok(Drift {
        scripts: script_drift(project, &deployed, &records, &|path| {
            std::fs::read(path)
                .ok()
                .map(|bytes| hex::encode(sha1::Sha1::digest(&bytes)))
        }),
        objects,
        unknown,
        orphans: orphans(project, &deployed),
    })
}

/// Deployed changes of the plan whose deploy script (as `hash` reads it; `None`: gone)
/// differs from the registry's hash. Changes a workflow file took over (ignored, cleaned,
/// replaced) legitimately differ and are skipped.
pub fn script_drift(
    project: &Project,
    deployed: &[DeployedChange],
    records: &[workflow::Record],
    hash: &dyn Fn(&std::path::Path) -> Option<String>,
) -> Vec<ScriptDrift> {
    let by_id: BTreeMap<&str, &DeployedChange> =
        deployed.iter().map(|d| (d.id.as_str(), d)).collect();
    let workflow: BTreeSet<&str> = records
        .iter()
        .filter(|r| r.state != State::Deployed)
        .map(|r| r.change_id.as_str())
        .collect();
    project
        .plan
        .changes
        .iter()
        .filter(|c| !workflow.contains(c.id.as_str()))
        .filter_map(|change| {
            let recorded = by_id.get(change.id.as_str())?.script_hash.clone()?;
            let path = project.script_path(change, ScriptKind::Deploy);
            let current = hash(&path).unwrap_or_default();
            (current != recorded).then(|| ScriptDrift {
                change: change.name.clone(),
                id: change.id.clone(),
                file: project.relative(&path),
                recorded,
                current,
            })
        })
        .collect()
}

/// Registry rows whose change id the plan does not have.
pub fn orphans(project: &Project, deployed: &[DeployedChange]) -> Vec<OrphanChange> {
    let planned: BTreeSet<&str> = project.plan.changes.iter().map(|c| c.id.as_str()).collect();
    deployed
        .iter()
        .filter(|d| !planned.contains(d.id.as_str()))
        .map(|d| OrphanChange {
            change: d.name.clone(),
            id: d.id.clone(),
        })
        .collect()
}

/// Compares each live set (`live`: logical → pointer, with the catalog recorded when it
/// was verified) with its `catalog` now. Objects not recorded are unknown; a set staged
/// before fingerprints were recorded reports no object drift, and its unknown objects are
/// those whose name neither the project nor the set's object list defines.
pub fn object_drift(
    live: &BTreeMap<String, Pointer>,
    catalog: &Catalog,
    objects: &Objects,
) -> (Vec<ObjectDrift>, Vec<UnknownObject>) {
    let mut drift = Vec::new();
    let mut unknown = Vec::new();
    let empty = BTreeMap::new();
    for (schema, pointer) in live {
        let now = catalog.get(schema).unwrap_or(&empty);
        let recorded: BTreeMap<String, String> =
            serde_json::from_value(pointer.catalog.clone()).unwrap_or_default();
        for (object, hash) in &recorded {
            let change = match now.get(object) {
                None => ObjectChange::Missing,
                Some(h) if h != hash => ObjectChange::Changed,
                Some(_) => continue,
            };
            drift.push(ObjectDrift {
                schema: schema.clone(),
                object: object.clone(),
                change,
            });
        }
        let known = |object: &str| match recorded.is_empty() {
            false => recorded.contains_key(object),
            true => defined(object, schema, pointer, objects),
        };
        unknown.extend(now.keys().filter(|o| !known(o)).map(|o| UnknownObject {
            schema: schema.clone(),
            object: o.clone(),
        }));
    }
    (drift, unknown)
}

/// Whether the project or the set's object list defines an object by its name. Indexes
/// sit on a relation that is checked itself; tables and sequences are never defined.
fn defined(object: &str, schema: &str, pointer: &Pointer, objects: &Objects) -> bool {
    const KINDS: [&str; 7] = [
        "materialized view ",
        "view ",
        "function ",
        "procedure ",
        "aggregate ",
        "type ",
        "domain ",
    ];
    if object.starts_with("index ") {
        return true;
    }
    let Some(rest) = KINDS.iter().find_map(|k| object.strip_prefix(k)) else {
        return false;
    };
    let name = rest.split('(').next().unwrap_or(rest);
    objects.get(schema, name).is_some() || pointer.objects.get(name).is_some()
}

#[cfg(test)]
mod tests;
