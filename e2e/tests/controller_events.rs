//! What a user sees of the controller's Events with the real kubectl (issue #12): the
//! controller records through `events.k8s.io/v1`, and `kubectl get events`, `kubectl events`
//! and `kubectl describe environment` (all core `v1`) show its DeployFailed Warning with
//! the failing script's file and line. Runs against the harness or, with KUBECONFIG, a real
//! cluster.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;

/// The line of `text` that holds every one of `words`.
fn line_with<'a>(text: &'a str, words: &[&str]) -> Option<&'a str> {
    text.lines().find(|l| words.iter().all(|w| l.contains(w)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_a_deploy_failure_with_its_file_and_line() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("dev-db", &db);
    let mut project = shop();
    env.project_configmap("shop-files", &project);
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("dev", "shop", "dev-db", true, ""));
    let controller = env.controller("c1", &[]);
    assert!(
        env.wait(
            "environment/dev",
            "condition=Ready",
            Duration::from_secs(60)
        ),
        "{}",
        controller.log()
    );

    project.change(
        "broken",
        &[],
        "BEGIN;\nCREATE TABLE broken (id int);\nSELECT * FROM no_such_table;\nCOMMIT;\n",
        "DROP TABLE broken;\n",
        "SELECT 1;\n",
    );
    env.project_configmap("shop-files", &project);
    let failed = ["Warning", "DeployFailed", "deploy/broken.sql:3"];

    // `kubectl get events`: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE.
    let listed = eventually(Duration::from_secs(60), "a DeployFailed event", || {
        let out = env.ok(&["get", "events", "-n", &env.ns]);
        line_with(&out, &failed).is_some().then_some(out)
    });
    let row = line_with(&listed, &failed).unwrap();
    assert!(row.contains("environment/dev"), "{listed}");
    assert!(
        listed.lines().next().unwrap().contains("LAST SEEN")
            && listed.lines().next().unwrap().contains("OBJECT"),
        "{listed}"
    );
    let wide = env.ok(&["get", "events", "-n", &env.ns, "-o", "wide"]);
    assert!(
        line_with(&wide, &["DeployFailed", "switchyard-controller"]).is_some(),
        "the SOURCE column names the controller: {wide}"
    );

    // `kubectl describe environment dev` ends with the object's events.
    let described = env.ok(&["describe", "environment", "dev", "-n", &env.ns]);
    let (_, events) = described
        .split_once("\nEvents:")
        .unwrap_or_else(|| panic!("no Events section: {described}"));
    let row = line_with(events, &failed)
        .unwrap_or_else(|| panic!("no DeployFailed Warning in describe: {described}"));
    assert!(row.contains("switchyard-controller"), "{row}");

    // `kubectl events --for` selects by the involved object.
    let for_dev = env.ok(&[
        "events",
        "-n",
        &env.ns,
        "--for",
        "environment/dev",
        "--types",
        "Warning",
    ]);
    assert!(line_with(&for_dev, &failed).is_some(), "{for_dev}");

    let everything = format!("{listed}{wide}{described}{for_dev}");
    assert!(!everything.contains(PASSWORD), "{everything}");
}
