//! Two controller replicas (issue #4): exactly one acts, holding the Lease; kill the
//! leader and the other takes over within the lease time. Also the admin port of both.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::controller::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leader_and_failover_within_the_lease() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("dev-db", &db);
    let mut project = shop();
    env.project_configmap("shop-files", &project);
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("dev", "shop", "dev-db", true, ""));

    let lease_args = [
        "--leader-elect",
        "--lease-namespace",
        env.ns.as_str(),
        "--lease-seconds",
        "4",
    ];
    let mut a = env.controller(
        "a",
        &[&lease_args[..], &["--identity", "replica-a"]].concat(),
    );
    // Let a win before b starts, so the roles are known.
    eventually(Duration::from_secs(30), "replica a to lead", || {
        a.log().contains("Became leader").then_some(())
    });
    let b = env.controller(
        "b",
        &[&lease_args[..], &["--identity", "replica-b"]].concat(),
    );
    assert!(
        env.wait(
            "environment/dev",
            "condition=Ready",
            Duration::from_secs(60)
        ),
        "{}",
        a.log()
    );
    eventually(Duration::from_secs(10), "replica b to wait", || {
        b.log().contains("Waiting for leadership").then_some(())
    });

    // Both serve their admin port; only the leader reconciles.
    assert_eq!(a.admin("/healthz").0, 200);
    assert_eq!(b.admin("/readyz").0, 200);
    let (code, metrics) = a.admin("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("switchyard_reconcile_runs_total{kind=\"Environment\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_changes_applied_total 2"),
        "{metrics}"
    );
    assert!(
        !b.log().contains("Deployed"),
        "the follower acted:\n{}",
        b.log()
    );
    let lease = env.get("lease/switchyard-controller");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");

    // Kill the leader without a chance to release: b takes over after the lease expires.
    a.kill();
    let killed = Instant::now();
    eventually(Duration::from_secs(20), "replica b to lead", || {
        b.log().contains("Became leader").then_some(())
    });
    let takeover = killed.elapsed();
    eprintln!(
        "BENCH leader failover after SIGKILL: {} ms (lease 4 s)",
        takeover.as_millis()
    );
    assert!(
        takeover < Duration::from_secs(4 + 3),
        "takeover took {takeover:?}"
    );

    // And b acts: a new change is deployed by b.
    project.table("after_failover");
    env.project_configmap("shop-files", &project);
    eventually(Duration::from_secs(60), "b to deploy", || {
        (env.get("environment/dev")["status"]["lastChange"] == "after_failover").then_some(())
    });
    assert!(b.log().contains("Deployed"), "{}", b.log());
    assert_eq!(
        env.get("lease/switchyard-controller")["spec"]["holderIdentity"],
        "replica-b"
    );
}
