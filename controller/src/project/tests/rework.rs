//! Reworked changes: a name planned again after a tag. Expected ids and script files come
//! from Sqitch 1.3.1 (`$change->id`, `$change->deploy_file`).

use super::super::FindError;
use super::{body, failure, plan};

/// `a` is reworked after three tags on two changes.
fn reworked_after_tags() -> String {
    body(&[
        "a {}",
        "b {}",
        "@v1 {}",
        "@v1b {}",
        "c {}",
        "@v2 {}",
        "a [a@v1] {}",
    ])
}

#[test]
fn earlier_instance_uses_the_newest_tag_script_by_default() {
    let plan = plan(&reworked_after_tags());
    let a = &plan.changes[0];
    assert_eq!(
        a.rework_tags,
        ["v2", "v1", "v1b"],
        "tags between the instances newest first, then its own"
    );
    assert!(a.is_reworked());
    assert_eq!(a.script_file, "a@v2.sql");
    assert_eq!(plan.changes[3].script_file, "a.sql");
    assert!(!plan.changes[3].is_reworked());
}

#[test]
fn earlier_instance_uses_the_first_tag_script_that_exists() {
    let mut plan = plan(&reworked_after_tags());
    plan.resolve_scripts("sql", |file| file == "a@v1b.sql" || file == "a@v1.sql");
    assert_eq!(plan.changes[0].script_file, "a@v1.sql");
    plan.resolve_scripts("sql", |file| file == "a@v1b.sql");
    assert_eq!(plan.changes[0].script_file, "a@v1b.sql");
    plan.resolve_scripts("ddl", |_| false);
    assert_eq!(plan.changes[0].script_file, "a@v2.ddl");
    assert_eq!(plan.changes[3].script_file, "a.ddl");
}

#[test]
fn reworked_ids_and_parents_match_sqitch() {
    let plan = plan(&reworked_after_tags());
    let ids: Vec<&str> = plan.changes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "53bd43b6bacf65d4f41890d2cdffed33d784ac0c",
            "eb1b06931066dd00f857a7a158685c256cf20287",
            "21e30140e8c703eb80aa260b1485362e34c561c4",
            "9df9372ad8b72bdc1c5693a5a46701dea9af1b2b",
        ]
    );
    let tags: Vec<&str> = plan
        .changes
        .iter()
        .flat_map(|c| &c.tags)
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(
        tags,
        [
            "bb66a3bf502845a1a6ee442c81909c41e1474a0e",
            "073f4956355f7690f5c3350db6b8e938fe7a7baf",
            "37cad0e23fc9a1e178c0e92eceecd4479e371107",
        ]
    );
    assert_eq!(
        plan.changes[3].parent.as_deref(),
        Some(ids[0]),
        "parent is the reworked instance"
    );
    assert_eq!(plan.changes[0].parent, None);
    assert_eq!(plan.changes[1].parent, None, "not a rework");
}

#[test]
fn a_change_reworked_twice_has_one_script_per_instance() {
    let plan = plan(&body(&["a {}", "@v1 {}", "a {}", "@v2 {}", "a {}"]));
    let files: Vec<&str> = plan
        .changes
        .iter()
        .map(|c| c.script_file.as_str())
        .collect();
    assert_eq!(files, ["a@v1.sql", "a@v2.sql", "a.sql"]);
    let ids: Vec<&str> = plan.changes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "53bd43b6bacf65d4f41890d2cdffed33d784ac0c",
            "51d1e75cdd2f5af33e3fcdb5fb226c5262dcd6b3",
            "d2c2019359761601bf07d767c7e98d5e6fff335d",
        ]
    );
    assert_eq!(plan.changes[1].parent.as_deref(), Some(ids[0]));
    assert_eq!(plan.changes[2].parent.as_deref(), Some(ids[1]));
    assert_eq!(
        plan.changes[0].tags[0].id,
        "f499dbac0fcf5fc20b389fc0de2a278183d21a48"
    );
    assert_eq!(
        plan.changes[1].tags[0].id,
        "0d5bf43b5ddffb3fdb118a9edcdb852f5c7e8a85"
    );
}

#[test]
fn names_with_slashes_put_the_tag_on_the_file_name() {
    let plan = plan(&body(&["s/a/b {}", "@v1 {}", "s/a/b {}"]));
    assert_eq!(plan.changes[0].script_file, "s/a/b@v1.sql");
    assert_eq!(plan.changes[1].script_file, "s/a/b.sql");
    assert_eq!(
        plan.changes[0].id,
        "f60a5d6c35484a6c499cb8b67ab2fbc98fe183fc"
    );
    assert_eq!(
        plan.changes[1].id,
        "6d9dc0debac560bad4458f174bd1f3534974502f"
    );
    assert_eq!(
        plan.changes[0].tags[0].id,
        "20d216f4df76f33071dd77fda93d2412f7d17f25"
    );
}

#[test]
fn a_rework_may_require_its_own_name() {
    // Sqitch accepts `[a]` on the new instance: the earlier one is already planned.
    let plan = plan(&body(&["a {}", "@v1 {}", "a [a] {}"]));
    assert_eq!(
        plan.changes[1].id,
        "b0244cae432c751668fab18da4ab2d174c3ad458"
    );
}

#[test]
fn a_rework_needs_a_tag_in_between() {
    let (line, message) = failure(&body(&["a {}", "b {}", "a {}"]));
    assert_eq!(line, Some(5));
    assert!(
        message.starts_with("change \"a\" duplicates earlier declaration on line 3"),
        "{message}"
    );
}

#[test]
fn a_reworked_name_alone_is_ambiguous() {
    let plan = plan(&reworked_after_tags());
    assert_eq!(plan.find("a"), None);
    assert_eq!(
        plan.resolve("a"),
        Err(FindError::Ambiguous {
            name: "a".into(),
            candidates: vec!["a@HEAD".into(), "a@v2".into()]
        })
    );
    assert_eq!(
        plan.resolve("a").map_err(|e| e.to_string()),
        Err("change \"a\" is ambiguous; use a tag-qualified name: a@HEAD, a@v2".into())
    );
}
