//! Database faults (issue #17), against the real `switchyard controller`: this binary's
//! throwaway PostgreSQL is restarted (fast and immediate shutdown), the controller's
//! sessions are terminated, and the database refuses connections for a while, each at a
//! random point (seeded: `SWITCHYARD_SEED=N` replays). Every change is committed whole or
//! not at all, the Environment reports the outage with a transient reason, retries with
//! backoff, and is Ready again by itself. Short by default; `SWITCHYARD_RELIABILITY=full`
//! runs the sizes RELIABILITY.md reports. Its own test binary: it stops the server every
//! other test here would share.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::chaos::{self, Rng};
use e2e::controller::*;
use e2e::invariants;
use e2e::postgres::{one, server};
use e2e::reliability::{phase_at, project};

const WAIT: Duration = Duration::from_secs(180);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    RestartFast,
    RestartImmediate,
    TerminateSessions,
    RefuseConnections,
}

async fn admin(sql: &str) {
    let client = e2e::postgres::connect(&server().url("postgres"))
        .await
        .unwrap();
    client.batch_execute(sql).await.unwrap();
}

fn dev_ready_at(env: &Env, round: usize) -> bool {
    let dev = env.get("environment/dev");
    condition(&dev, "Ready").is_some_and(|c| c["status"] == "True")
        && dev["status"]["lastChange"] == format!("t{round}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_faults_at_random_points_are_survived() {
    let mut rng = Rng::for_test("database_faults_at_random_points_are_survived");
    let rounds = chaos::size(8, 20);
    let refusal = Duration::from_secs(chaos::size(10, 30) as u64);
    let env = Env::start();
    let db = database().await;
    env.db_secret("dev-db", &db);
    env.project_configmap("shop-files", &project(0));
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("dev", "shop", "dev-db", true, ""));
    let controller = env.controller("c", &[]);
    assert!(
        env.wait("environment/dev", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );

    let kinds = [
        Fault::RestartFast,
        Fault::RestartImmediate,
        Fault::TerminateSessions,
        Fault::RefuseConnections,
    ];
    let mut done: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    let mut retries = Vec::new();
    for round in 1..=rounds {
        // Every kind once in order, then at random.
        let fault = match kinds.get(round - 1) {
            Some(kind) => *kind,
            None => *rng.pick(&kinds),
        };
        env.project_configmap("shop-files", &project(round));
        let aim =
            Instant::now() + rng.between(Duration::from_millis(200), Duration::from_millis(2500));
        let mut phase = "idle";
        while Instant::now() < aim {
            phase = phase_at(&db.url).await;
            if phase != "idle" && rng.chance(0.3) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        *phases.entry(phase).or_default() += 1;
        *done.entry(fault).or_default() += 1;
        let struck = Instant::now();
        if let Some(runs) = strike(fault, &mut rng, &env, &controller, &db.name, refusal).await {
            retries.push(runs);
        }
        eventually(
            WAIT,
            &format!("dev Ready at round {round} after {fault:?}"),
            || dev_ready_at(&env, round).then_some(()),
        );
        slowest = slowest.max(struck.elapsed());
    }

    // Each change committed whole or not at all: every table the registry lists exists
    // with all its rows, and no table exists that the registry does not list.
    let disagree = invariants::registry_against_catalog(&db.url, "shop")
        .await
        .unwrap();
    assert!(
        disagree.is_empty(),
        "registry and catalog disagree: {disagree:?}"
    );
    for round in 1..=rounds {
        let count = one(&db.url, &format!("SELECT count(*) FROM shop.t{round}")).await;
        assert_eq!(count, "1000", "t{round} was not committed whole");
    }
    assert_eq!(
        one(&db.url, "SELECT api.version()").await,
        format!("v{rounds}")
    );
    let mut broken = invariants::applied_twice(&db.url).await.unwrap();
    broken.extend(invariants::locks_left(&db.url).await.unwrap());
    broken.extend(invariants::orphaned_sets(&db.url, 2).await.unwrap());
    assert!(broken.is_empty(), "{broken:#?}");
    assert!(!(env.visible_state() + &controller.log()).contains(PASSWORD));

    eprintln!("faults {done:?}, landed in {phases:?}");
    chaos::figure("database faults", format!("{rounds}: {done:?}"));
    chaos::figure("database faults by phase", format!("{phases:?}"));
    chaos::figure(
        "slowest fault to Ready again (s)",
        format!("{:.1}", slowest.as_secs_f64()),
    );
    chaos::figure(
        &format!("reconciles during a {}s refusal", refusal.as_secs()),
        format!("{retries:?}"),
    );
}

/// Brings `fault` on; for a refusal, returns how many reconciles ran during it.
async fn strike(
    fault: Fault,
    rng: &mut Rng,
    env: &Env,
    controller: &Controller,
    name: &str,
    refusal: Duration,
) -> Option<u64> {
    match fault {
        Fault::RestartFast | Fault::RestartImmediate => {
            let mode = if fault == Fault::RestartFast {
                "fast"
            } else {
                "immediate"
            };
            server().stop_with(mode).unwrap();
            tokio::time::sleep(rng.between(Duration::from_millis(200), Duration::from_secs(3)))
                .await;
            server().restart().unwrap();
        }
        Fault::TerminateSessions => {
            admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'switchyard'",
            )
            .await;
        }
        Fault::RefuseConnections => {
            return Some(refuse(env, controller, name, refusal).await);
        }
    }
    None
}

/// The database refuses connections for `window`: the Environment says so with a
/// transient reason (not Stalled) and retries with backoff, not in a loop. Returns how
/// many reconciles ran in the window.
async fn refuse(env: &Env, controller: &Controller, name: &str, window: Duration) -> u64 {
    admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let start = Instant::now();
    let runs = || controller.metric("switchyard_reconcile_runs") as u64;
    let before = runs();
    let dev = eventually(
        window + Duration::from_secs(30),
        "dev to report the refusal",
        || {
            let dev = env.get("environment/dev");
            condition(&dev, "Ready")
                .is_some_and(|c| c["status"] == "False" && c["reason"] == "ConnectFailed")
                .then_some(dev)
        },
    );
    assert!(
        condition(&dev, "Stalled").is_none_or(|c| c["status"] != "True"),
        "an outage is transient, not Stalled: {:#}",
        dev["status"]
    );
    tokio::time::sleep(window.saturating_sub(start.elapsed())).await;
    let during = runs() - before;
    admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    // retryInterval 1s, doubling: about log2(window) + 1 attempts; a loop would be ~window.
    let bound = (window.as_secs_f64().log2() + 4.0) as u64;
    assert!(
        during <= bound,
        "{during} reconciles in {window:?} of refusal (bound {bound})"
    );
    during
}
