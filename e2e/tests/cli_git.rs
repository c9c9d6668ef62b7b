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
        stderr.contains(&format!("branch nope not found in {url}")),
        "{stderr}"
    );
    let out = output(switchyard().args(["plan", "--project", "/tmp", "--git", &url]));
    assert_eq!(out.status.code(), Some(2), "--project and --git conflict");
}
