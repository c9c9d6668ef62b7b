//! `--git URL --ref REF [--path DIR]` on the CLI (issue #6): the same source code and cache
//! as the controller, against a `git daemon` started by the test.

#![allow(clippy::unwrap_used)]

use e2e::git::{GitDaemon, Repos};
use e2e::tools::{Fixture, output, run_ok, switchyard};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_status_and_deploy_read_the_project_from_git() {
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let mut fixture = Fixture::new("shop");
    fixture.table("users").table("orders").tag("v1");
    let mut work = repos.create("shop").unwrap();
    work.copy_dir(fixture.path(), "db").unwrap();
    let commit = work.commit("shop").unwrap();
    work.push("main", false).unwrap();
    work.tag("v1.0.0", true).unwrap();
    let url = daemon.url("shop");
    let cache = tempfile::tempdir().unwrap();
    let git = |args: &[&str], reference: &str| {
        let mut c = switchyard();
        c.args(args)
            .args(["--git", &url, "--ref", reference, "--path", "db", "--cache"])
            .arg(cache.path());
        c
    };

    let plan: Value = serde_json::from_str(&run_ok(&mut git(&["plan", "--json"], "main"))).unwrap();
    let names: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["users", "orders"]);
    // The same plan by semver over tags, and by commit.
    for reference in [">=1, <2", commit.as_str()] {
        let again: Value =
            serde_json::from_str(&run_ok(&mut git(&["plan", "--json"], reference))).unwrap();
        assert_eq!(again["changes"], plan["changes"], "{reference}");
    }

    let db = e2e::postgres::server().fresh_db().await.unwrap();
    run_ok(&mut git(&["deploy", "--db", &db.url, "--json"], "main"));
    let status: Value = serde_json::from_str(&run_ok(&mut git(
        &["status", "--db", &db.url, "--json"],
        "main",
    )))
    .unwrap();
    assert_eq!(status["up_to_date"], true, "{status}");
    let recorded = e2e::postgres::rows(
        &db.url,
        "SELECT revision FROM switchyard.deployments ORDER BY 1",
    )
    .await
    .unwrap_or_default();
    assert!(
        recorded.contains(&format!("main@sha1:{commit}")),
        "the deploy records the git revision: {recorded:?}"
    );

    // A branch that does not exist: a clear message, and --project is not mixed in.
    let out = output(&mut git(&["plan"], "nope"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("branch or tag nope not found in {url}")),
        "{stderr}"
    );
    let out = output(switchyard().args(["plan", "--project", "/tmp", "--git", &url]));
    assert_eq!(out.status.code(), Some(2), "--project and --git conflict");
}

/// `--ref NAME` finds a tag as `git clone --branch NAME` does, and a name that is both a
/// branch and a tag is refused naming both (issue #12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_ref_finds_a_tag_and_refuses_a_name_that_is_both() {
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let mut fixture = Fixture::new("shop");
    fixture.table("users");
    let mut work = repos.create("shop").unwrap();
    work.copy_dir(fixture.path(), "db").unwrap();
    let tagged = work.commit("users").unwrap();
    work.push("main", false).unwrap();
    work.tag("v1", false).unwrap();
    work.tag("r2", true).unwrap();
    // main moves on past the tags.
    fixture.table("orders");
    work.copy_dir(fixture.path(), "db").unwrap();
    work.commit("orders").unwrap();
    work.push("main", false).unwrap();
    let url = daemon.url("shop");
    let cache = tempfile::tempdir().unwrap();
    let plan = |reference: &str| {
        let mut c = switchyard();
        c.args([
            "plan", "--json", "--git", &url, "--ref", reference, "--path", "db", "--cache",
        ])
        .arg(cache.path());
        output(&mut c)
    };
    let changes = |out: &std::process::Output| -> Vec<String> {
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        doc["changes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };

    // A lightweight and an annotated tag, each found by its bare name.
    for tag in ["v1", "r2"] {
        let out = plan(tag);
        assert!(
            out.status.success(),
            "{tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            changes(&out),
            ["users"],
            "{tag} is the tagged commit, not main"
        );
    }
    assert_eq!(changes(&plan("main")), ["users", "orders"]);

    // A branch named like the tag makes the bare name ambiguous.
    work.git(&[
        "push",
        "--quiet",
        "origin",
        &format!("{tagged}:refs/heads/v1"),
    ])
    .unwrap();
    let out = plan("v1");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an ambiguous ref is invalid input"
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("ambiguous")
            && said.contains("refs/heads/v1")
            && said.contains("refs/tags/v1"),
        "{said}"
    );
    // The explicit forms still choose.
    for explicit in ["refs/tags/v1", "tag:v1", "refs/heads/v1", "branch:v1"] {
        let out = plan(explicit);
        assert!(
            out.status.success(),
            "{explicit}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(changes(&out), ["users"], "{explicit}");
    }
}
