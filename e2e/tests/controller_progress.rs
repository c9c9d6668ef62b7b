//! Progress and timeouts (issue #4): while a long change runs, status shows
//! `deploying change i/n: name` with Reconciling=True; `statementTimeout` from the spec
//! reaches every change (it survives the engine's per-change RESET ALL).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_shows_the_running_change_and_statement_timeout_applies() {
    let env = Env::start();
    let slow_db = database().await;
    let strict_db = database().await;
    env.db_secret("slow-db", &slow_db);
    env.db_secret("strict-db", &strict_db);
    let mut project = e2e::tools::Fixture::new("shop");
    project.table("first");
    project.change(
        "slow",
        &[],
        "SELECT pg_sleep(4);\n",
        "SELECT 1;\n",
        "SELECT 1;\n",
    );
    project.table("last");
    env.project_configmap("shop-files", &project);
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("slow", "shop", "slow-db", true, ""));
    env.apply(&env_yaml(
        "strict",
        "shop",
        "strict-db",
        true,
        "  statementTimeout: 1s\n  failureMode: change\n",
    ));
    let controller = env.controller("c", &[]);

    let seen = eventually(
        Duration::from_secs(60),
        "progress on the slow change",
        || {
            let e = env.get("environment/slow");
            let progress = e["status"]["progress"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let reconciling = condition(&e, "Reconciling")
                .is_some_and(|c| c["status"] == "True" && c["reason"] == "Deploying");
            (progress == "deploying change 2/3: slow" && reconciling).then_some(progress)
        },
    );
    eprintln!("seen: {seen}");
    assert!(
        env.wait(
            "environment/slow",
            "condition=Ready",
            Duration::from_secs(60)
        ),
        "{}",
        controller.log()
    );
    assert!(
        env.get("environment/slow")["status"]["progress"].is_null(),
        "progress is cleared when done"
    );

    let strict = eventually(
        Duration::from_secs(60),
        "the statement timeout to fail the slow change",
        || {
            let e = env.get("environment/strict");
            condition(&e, "Stalled")
                .is_some_and(|c| c["status"] == "True")
                .then_some(e)
        },
    );
    let failure = &strict["status"]["lastFailure"];
    assert_eq!(failure["change"], "slow");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("statement timeout"),
        "{failure}"
    );
    // failureMode change: what came before the failing change stays.
    assert_eq!(strict["status"]["lastChange"], "first");
}
