//! What a deploy or a promotion will do, worked out before anything changes, and the
//! digest an approval names. The digest covers the plan and the target's from-state
//! (registry head, last deployed revision, a fingerprint of the live blue-green
//! catalog), so any move — a new commit, another deploy, a hand edit — gives a new one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::Deployer;
use super::bluegreen::{BlueGreen, SchemaDiff};
use crate::project::objects::Objects;
use crate::project::{Project, ScriptKind};

/// Why a plan could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the registry, or a deploy script, failed.
    #[error(transparent)]
    Changes(#[from] super::Error),
    /// Reading the blue-green sets or their catalog failed.
    #[error(transparent)]
    BlueGreen(#[from] super::bluegreen::Error),
}

type Result<T> = std::result::Result<T, Error>;

/// What to plan: a project at a revision, deployed into the database of a [`Deployer`].
#[derive(Clone, Copy, Debug)]
pub struct ReviewInput<'a> {
    /// The project at the revision to deploy.
    pub project: &'a Project,
    /// Its `objects/`.
    pub objects: &'a Objects,
    /// The revision's name (`main@sha1:…`), when it has one.
    pub revision: Option<&'a str>,
    /// Deploy up to and including the change with this id; every pending change when `None`.
    pub to: Option<&'a str>,
    /// Plan as a deploy with the development workflow files would run.
    pub allow_rework: bool,
}

/// The plan a person reviews and approves by its digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewPlan {
    /// The project.
    pub project: String,
    /// The revision to deploy.
    pub source_revision: Option<String>,
    /// The revision the target's last successful deploy recorded.
    pub target_revision: Option<String>,
    /// The plan's changes the deploy acts on, in order: what it does to each
    /// (`deploy`, or a workflow action: `replace`, `cleanup`, `ignore`, `unignore`,
    /// `record`, `mark`; `refused` where a deploy would refuse).
    pub changes: Vec<PlannedChange>,
    /// Per blue-green schema: objects added, changed and removed.
    pub schemas: BTreeMap<String, SchemaObjects>,
    /// What the target holds now.
    pub from: FromState,
    /// `sha256:<hex>` over the canonical JSON of everything above.
    pub digest: String,
}

/// One change of a [`ReviewPlan`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    /// The change name.
    pub name: String,
    /// Sqitch's change id.
    pub id: String,
    /// What the deploy does with it.
    pub action: String,
    /// SHA-1 of the deploy script, as Sqitch records it (`script_hash`).
    pub script_hash: Option<String>,
    /// The deploy script, relative to the project.
    pub file: String,
}

/// Objects added, changed and removed in one blue-green schema.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaObjects {
    /// Objects the target lacks.
    pub added: Vec<String>,
    /// Objects whose definition differs.
    pub changed: Vec<String>,
    /// Objects the target has that the revision drops.
    pub removed: Vec<String>,
}

/// The target's state the plan starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FromState {
    /// The id of the last change deployed, if any.
    pub registry_head: Option<String>,
    /// `sha256:<hex>` of the live blue-green sets' catalog (definitions, owners, grants).
    pub catalog: String,
}

impl ReviewPlan {
    /// The changes a workflow file acts on (everything but a plain `deploy`).
    pub fn workflow(&self) -> impl Iterator<Item = &PlannedChange> {
        self.changes.iter().filter(|c| c.action != "deploy")
    }

    /// True when the deploy would change nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self
                .schemas
                .values()
                .all(|s| s.added.is_empty() && s.changed.is_empty() && s.removed.is_empty())
    }

    /// The digest of this plan's content: `sha256:` and the hex of the SHA-256 of its
    /// canonical JSON (fields in declaration order, maps sorted), without `digest`.
    pub fn compute_digest(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.remove("digest");
        }
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
    }
}

/// Works out what deploying `input` into `deployer`'s database would do, with its digest.
/// Reads only; `bluegreen` must work on the same database (and layer) as `deployer`.
pub async fn review(
    deployer: &Deployer,
    bluegreen: &BlueGreen<'_>,
    input: &ReviewInput<'_>,
) -> Result<ReviewPlan> {
    let project = input.project;
    let status = deployer.status_with(project, input.allow_rework).await?;
    let acted: Vec<(&crate::project::Change, &'static str)> = project
        .plan
        .changes
        .iter()
        .zip(&status.changes)
        .filter_map(|(change, s)| s.next.map(|next| (change, next)))
        .collect();
    let changes = up_to(acted, input.to)
        .into_iter()
        .map(|(change, action)| planned(project, change, action))
        .collect::<Result<Vec<_>>>()?;
    let schemas = bluegreen
        .diff_project(project, input.objects)
        .await?
        .into_iter()
        .map(|(schema, diff)| (schema, schema_objects(diff)))
        .collect();
    let catalog = bluegreen.live_catalog(project).await?;
    let runs = deployer.deployments(project, 50).await?;
    let mut plan = ReviewPlan {
        project: project.name().to_string(),
        source_revision: input.revision.map(str::to_owned),
        target_revision: runs
            .iter()
            .find(|r| r.operation == "deploy" && r.result == "succeeded")
            .and_then(|r| r.revision.clone()),
        changes,
        schemas,
        from: FromState {
            registry_head: status.last_change.map(|c| c.id),
            catalog: fingerprint(&catalog),
        },
        digest: String::new(),
    };
    plan.digest = plan.compute_digest();
    Ok(plan)
}

/// The acted-on changes up to and including the change with id `to` (all when `None`, or
/// when `to` is not among them: it is deployed already, and nothing before it is left).
fn up_to<'p>(
    acted: Vec<(&'p crate::project::Change, &'static str)>,
    to: Option<&str>,
) -> Vec<(&'p crate::project::Change, &'static str)> {
    let Some(to) = to else { return acted };
    match acted.iter().position(|(c, _)| c.id == to) {
        Some(i) => acted[..=i].to_vec(),
        None => Vec::new(),
    }
}

fn planned(
    project: &Project,
    change: &crate::project::Change,
    action: &'static str,
) -> Result<PlannedChange> {
    let path = project.script_path(change, ScriptKind::Deploy);
    let script_hash = match std::fs::read(&path) {
        Ok(bytes) => Some(hex::encode(<sha1::Sha1 as Digest>::digest(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(super::Error::Io { path, source }.into()),
    };
    Ok(PlannedChange {
        name: change.name.clone(),
        id: change.id.clone(),
        action: action.to_string(),
        script_hash,
        file: project.relative(&path),
    })
}

fn schema_objects(diff: SchemaDiff) -> SchemaObjects {
    SchemaObjects {
        added: diff.added,
        changed: diff.changed,
        removed: diff.removed,
    }
}

/// `sha256:<hex>` of a catalog's canonical JSON.
fn fingerprint<T: Serialize>(catalog: &T) -> String {
    let bytes = serde_json::to_vec(catalog).unwrap_or_default();
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::testing::{HEADER, TAIL};

    fn plan() -> ReviewPlan {
        ReviewPlan {
            project: "shop".into(),
            source_revision: Some("main@sha1:1".into()),
            changes: vec![PlannedChange {
                name: "orders".into(),
                id: "a".repeat(40),
                action: "deploy".into(),
                script_hash: Some("b".repeat(40)),
                file: "deploy/orders.sql".into(),
            }],
            ..ReviewPlan::default()
        }
    }

    #[test]
    fn the_digest_ignores_itself_and_changes_with_every_part() {
        let base = plan();
        let digest = base.compute_digest();
        assert!(digest.starts_with("sha256:") && digest.len() == 7 + 64);
        let mut with_digest = base.clone();
        with_digest.digest = "sha256:whatever".into();
        assert_eq!(with_digest.compute_digest(), digest);
        let variants: [fn(&mut ReviewPlan); 6] = [
            |p| p.source_revision = Some("main@sha1:2".into()),
            |p| p.target_revision = Some("main@sha1:0".into()),
            |p| p.changes[0].script_hash = Some("c".repeat(40)),
            |p| p.changes[0].action = "replace".into(),
            |p| p.from.registry_head = Some("d".repeat(40)),
            |p| p.from.catalog = "sha256:other".into(),
        ];
        for change in variants {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(other.compute_digest(), digest, "{other:?}");
        }
        let mut schemas = base.clone();
        schemas.schemas.insert(
            "api".into(),
            SchemaObjects {
                changed: vec!["view v".into()],
                ..SchemaObjects::default()
            },
        );
        assert_ne!(schemas.compute_digest(), digest);
    }

    #[test]
    fn a_limit_keeps_the_changes_up_to_it_and_nothing_when_it_is_deployed() {
        let plan = crate::project::testing::plan(&format!("{HEADER}a {TAIL} # n\nb {TAIL} # n\n"));
        let acted: Vec<_> = plan.changes.iter().map(|c| (c, "deploy")).collect();
        let first = plan.changes[0].id.clone();
        assert_eq!(up_to(acted.clone(), Some(&first)).len(), 1);
        assert_eq!(up_to(acted.clone(), None).len(), 2);
        assert!(up_to(acted, Some("not-pending")).is_empty());
    }
}
