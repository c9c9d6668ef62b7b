//! Drift decisions (issue #16) without a database: registry rows, workflow records,
//! pointers and catalogs built by hand.

use std::path::Path;

use super::*;
use crate::registry::bluegreen::Role;
use crate::registry::workflow::Record;

/// `a`, `@v1`, `f`, `@v2`, `f [f@v2]` (f reworked: its first instance deploys from
/// `deploy/f@v2.sql`).
const PLAN: &str = "%project=shop\n\n\
    a 2024-01-01T00:00:01Z Ann <ann@example.com>\n\
    @v1 2024-01-01T00:00:02Z Ann <ann@example.com>\n\
    f 2024-01-01T00:00:03Z Ann <ann@example.com>\n\
    @v2 2024-01-01T00:00:04Z Ann <ann@example.com>\n\
    f [f@v2] 2024-01-01T00:00:05Z Ann <ann@example.com>\n";

fn project() -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("sqitch.conf", "[core]\n\tengine = pg\n");
    write("sqitch.plan", PLAN);
    for kind in ["deploy", "revert"] {
        for name in ["a", "f", "f@v2"] {
            write(&format!("{kind}/{name}.sql"), &format!("-- {name}\n"));
        }
    }
    let project = Project::load(dir.path()).expect("valid project");
    (dir, project)
}

/// Registry rows for every change, each with the hash `file_hash` gives its file name.
fn rows(project: &Project) -> Vec<DeployedChange> {
    project
        .plan
        .changes
        .iter()
        .map(|c| DeployedChange {
            id: c.id.clone(),
            name: c.name.clone(),
            script_hash: Some(file_hash(&c.script_file)),
            note: String::new(),
            tags: Vec::new(),
            committed_at: String::new(),
            committer_name: "T".into(),
            planned_at: c.planned_at.clone(),
            planner_name: c.planner_name.clone(),
            planner_email: c.planner_email.clone(),
            requires: Vec::new(),
            conflicts: Vec::new(),
        })
        .collect()
}

fn file_hash(file: &str) -> String {
    format!("hash of {file}")
}

/// Hashes files by name, except the one named `edited`.
fn hashes(edited: &'static str) -> impl Fn(&Path) -> Option<String> {
    move |path: &Path| {
        let name = path.file_name()?.to_str()?;
        Some(match name == edited {
            true => "edited".into(),
            false => file_hash(name),
        })
    }
}

#[test]
fn a_deploy_script_edited_after_deploy_is_drift_naming_its_reworked_file() {
    let (_dir, project) = project();
    let deployed = rows(&project);
    assert!(script_drift(&project, &deployed, &[], &hashes("none")).is_empty());
    let drift = script_drift(&project, &deployed, &[], &hashes("f@v2.sql"));
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0].change, "f");
    assert_eq!(drift[0].id, project.plan.changes[1].id);
    assert_eq!(drift[0].file, "deploy/f@v2.sql");
    assert_eq!(drift[0].recorded, "hash of f@v2.sql");
    assert_eq!(drift[0].current, "edited");
}

#[test]
fn a_change_a_workflow_file_took_over_is_not_script_drift() {
    let (_dir, project) = project();
    let deployed = rows(&project);
    let change = &project.plan.changes[0];
    let record = |state| Record {
        change_id: change.id.clone(),
        change: change.name.clone(),
        state,
        file: "deploy/a-replace.sql".into(),
        reason: String::new(),
        script_hash: None,
        revision: None,
        committer_name: "T".into(),
        committer_email: "t@x".into(),
        changed_at: String::new(),
    };
    let replaced = [record(State::Replaced)];
    assert!(script_drift(&project, &deployed, &replaced, &hashes("a.sql")).is_empty());
    let unignored = [record(State::Deployed)];
    assert_eq!(
        script_drift(&project, &deployed, &unignored, &hashes("a.sql")).len(),
        1,
        "deployed as planned again: its script counts"
    );
}

#[test]
fn registry_rows_the_plan_lost_are_orphans() {
    let (_dir, project) = project();
    let mut deployed = rows(&project);
    assert!(orphans(&project, &deployed).is_empty());
    deployed[0].id = "0123".into();
    deployed[0].name = "gone".into();
    assert_eq!(
        orphans(&project, &deployed),
        [OrphanChange {
            change: "gone".into(),
            id: "0123".into()
        }]
    );
}

fn pointer(catalog: serde_json::Value, objects: serde_json::Value) -> Pointer {
    Pointer {
        logical: "api".into(),
        physical: "api".into(),
        deployment: "7".into(),
        role: Role::Live,
        state: "ready".into(),
        definition_hash: String::new(),
        objects,
        message: String::new(),
        updated_at: String::new(),
        catalog,
    }
}

fn catalog(objects: &[(&str, &str)]) -> Catalog {
    [(
        "api".to_string(),
        objects
            .iter()
            .map(|(o, h)| (o.to_string(), h.to_string()))
            .collect(),
    )]
    .into()
}

#[test]
fn live_objects_are_compared_with_the_catalog_recorded_at_verify() {
    let recorded = serde_json::json!({"view v": "1", "function f(integer)": "2", "index i": "3"});
    let live = [("api".to_string(), pointer(recorded, serde_json::json!({})))].into();
    let now = catalog(&[
        ("view v", "1"),
        ("function f(integer)", "changed"),
        ("table scratch", "4"),
    ]);
    let (drift, unknown) = object_drift(&live, &now, &Objects::default());
    let found: Vec<(&str, ObjectChange)> = drift
        .iter()
        .map(|d| (d.object.as_str(), d.change))
        .collect();
    assert_eq!(
        found,
        [
            ("function f(integer)", ObjectChange::Changed),
            ("index i", ObjectChange::Missing)
        ]
    );
    assert_eq!(
        unknown,
        [UnknownObject {
            schema: "api".into(),
            object: "table scratch".into()
        }]
    );
}

#[test]
fn a_set_verified_before_fingerprints_reports_only_objects_nobody_defines() {
    let live = [(
        "api".to_string(),
        pointer(
            serde_json::json!({}),
            serde_json::json!({"v": "h", "f": "h"}),
        ),
    )]
    .into();
    let now = catalog(&[
        ("view v", "1"),
        ("function f(integer)", "2"),
        ("index v_i", "3"),
        ("view stray", "4"),
        ("table scratch", "5"),
    ]);
    let (drift, unknown) = object_drift(&live, &now, &Objects::default());
    assert!(drift.is_empty());
    let unknown: Vec<&str> = unknown.iter().map(|u| u.object.as_str()).collect();
    assert_eq!(unknown, ["table scratch", "view stray"]);
}

#[test]
fn findings_have_stable_keys_and_name_the_object_or_the_change_and_file() {
    let drift = Drift {
        scripts: vec![ScriptDrift {
            change: "users".into(),
            id: "abc".into(),
            file: "deploy/users.sql".into(),
            recorded: "r".into(),
            current: "c".into(),
        }],
        objects: vec![ObjectDrift {
            schema: "api".into(),
            object: "view big_customers".into(),
            change: ObjectChange::Changed,
        }],
        unknown: vec![UnknownObject {
            schema: "api".into(),
            object: "table scratch".into(),
        }],
        orphans: vec![OrphanChange {
            change: "old".into(),
            id: "def".into(),
        }],
    };
    assert!(!drift.is_empty());
    assert!(Drift::default().is_empty());
    let findings = drift.findings();
    let keys: Vec<&str> = findings.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "script/users/abc",
            "object/api/view big_customers",
            "unknown/api/table scratch",
            "orphan/def"
        ]
    );
    assert!(findings[0].1.contains("deploy/users.sql"), "{findings:?}");
    assert!(findings[1].1.contains("view big_customers"), "{findings:?}");
    assert!(findings[3].1.contains("old"), "{findings:?}");
    let json = serde_json::to_value(&drift).expect("json");
    assert_eq!(json["objects"][0]["change"], "changed");
    assert_eq!(json["scripts"][0]["file"], "deploy/users.sql");
}
