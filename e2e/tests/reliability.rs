//! The reliability suite (issue #17) against the real `switchyard controller`, the harness
//! API server, a throwaway PostgreSQL and real kubectl: SIGKILL at random points, an API
//! server that fails at random, and several deployers racing for one database. Seeded:
//! each test prints `SEED …`; `SWITCHYARD_SEED=N` replays it. Short sizes by default (CI);
//! `SWITCHYARD_RELIABILITY=full` runs the sizes RELIABILITY.md reports
//! (`scripts/reliability --full`).

#![allow(clippy::unwrap_used)]

mod controller_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use controller_common::*;
use e2e::chaos::{self, Rng};
use e2e::invariants;
use e2e::postgres::{one, rows};
use e2e::tools::{Fixture, run_ok, switchyard_on};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(180);

/// Round `r` of the project: a stable schema `shop` with tables `t0..=t<r>` (one change
/// each), and a blue-green schema `api` whose objects say which round built them.
fn project(round: usize) -> Fixture {
    let mut fx = Fixture::new("shop");
    fx.write(
        "switchyard.yaml",
        "project: shop\nengine: postgres\nschemas:\n  shop: stable\n  api: blue-green\n",
    );
    fx.change(
        "t0",
        &[],
        "CREATE SCHEMA shop;\nCREATE TABLE shop.t0 (id int PRIMARY KEY);\nINSERT INTO shop.t0 VALUES (1), (2);\n",
        "DROP SCHEMA shop CASCADE;\n",
        "SELECT 1 FROM shop.t0 WHERE false;\n",
    );
    for i in 1..=round {
        fx.change(
            &format!("t{i}"),
            &[],
            &format!("CREATE TABLE shop.t{i} (id int);\nINSERT INTO shop.t{i} SELECT generate_series(1, 1000);\nSELECT pg_sleep(0.41);\n"),
            &format!("DROP TABLE shop.t{i};\n"),
            &format!("SELECT 1 FROM shop.t{i} WHERE false;\n"),
        );
    }
    fx.write(
        "objects/api/rows.sql",
        "CREATE VIEW api.rows AS SELECT id FROM shop.t0;\n",
    );
    fx.write(
        "objects/api/version.sql",
        &format!(
            "CREATE FUNCTION api.version() RETURNS text LANGUAGE sql AS $$ SELECT 'v{round}'::text $$;\n"
        ),
    );
    // Verified against the staged set and again after the swap: slow enough that kills
    // land inside staging and swapping, not only between them.
    fx.write(
        "objects/api/verify.sql",
        "SELECT pg_sleep(0.42);\nSELECT 1 / (SELECT count(*)::int FROM api.rows);\n",
    );
    fx.write(
        "objects/api/totals.sql",
        "CREATE MATERIALIZED VIEW api.totals AS SELECT count(*) AS n FROM api.rows;\n",
    );
    fx
}

fn promotion(name: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: {name}\nspec:\n  from:\n    environment: dev\n  to:\n    environment: prod\n"
    )
}

/// What the controller's sessions were doing in the database at the moment of a kill.
async fn phase_at(url: &str) -> &'static str {
    let active = rows(
        url,
        "SELECT query FROM pg_stat_activity WHERE application_name = 'switchyard' \
          AND state <> 'idle' AND pid <> pg_backend_pid()",
    )
    .await
    .unwrap_or_default()
    .join("\n")
    .to_lowercase();
    let building = rows(
        url,
        "SELECT 1 FROM switchyard.schema_pointers WHERE role = 'staged' AND state = 'building'",
    )
    .await
    .is_ok_and(|r| !r.is_empty());
    match () {
        _ if active.is_empty() => "idle",
        _ if active.contains("drop schema") => "cleanup",
        _ if active.contains("pg_sleep(0.41)") => "deploy",
        _ if building => "stage",
        _ if active.contains("pg_sleep(0.42)") => "swap",
        _ if active.contains("rename") || active.contains("_dev") || active.contains("_prod") => {
            "swap"
        }
        _ if active.contains("sqitch") || active.contains("switchyard.") => "registry",
        _ => {
            eprintln!("unclassified activity at a kill: {active}");
            "other"
        }
    }
}

fn is_ready(obj: &Value) -> bool {
    condition(obj, "Ready").is_some_and(|c| c["status"] == "True")
}

/// SIGKILL the controller at random points while two Environments in one database deploy,
/// stage and swap their layers and Promotions repoint prod's layers; restart it each time.
/// At the end: the same database as a clean run, no change applied twice, registry equal to
/// the catalog, no set orphaned or beyond retention, no lock left, everything Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_sigkill_at_random_points_loses_nothing() {
    let mut rng = Rng::for_test("controller_sigkill_at_random_points_loses_nothing");
    let kills = chaos::size(12, 50);
    let env = Env::start();
    let db = database().await;
    env.db_secret("shared-db", &db);
    env.project_configmap("shop-files", &project(0));
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml(
        "dev",
        "shop",
        "shared-db",
        true,
        "  schemaSuffix: _dev\n",
    ));
    env.apply(&env_yaml(
        "prod",
        "shop",
        "shared-db",
        false,
        "  schemaSuffix: _prod\n",
    ));
    let mut controller = env.controller("c0", &[]);
    assert!(
        env.wait("environment/dev", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );

    let started = Instant::now();
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut promotions = Vec::new();
    for round in 1..=kills {
        // Two new revisions every three rounds, a Promotion every other round: work in
        // flight of every kind when the kill comes.
        let revision = round - round / 3;
        env.project_configmap("shop-files", &project(revision));
        if round % 2 == 0 {
            let name = format!("p{round}");
            env.apply(&promotion(&name));
            promotions.push(name);
        }
        tokio::time::sleep(rng.between(Duration::from_millis(100), Duration::from_millis(3000)))
            .await;
        *phases.entry(phase_at(&db.url).await).or_default() += 1;
        controller.kill();
        controller = env.controller(&format!("c{round}"), &[]);
    }
    let last = kills - kills / 3;
    eprintln!(
        "killed {kills} times in {:.0?}: {phases:?}",
        started.elapsed()
    );

    // Let it settle by itself, then promote the last revision once more.
    let settled = Instant::now();
    eventually(WAIT, "dev to deploy the last revision", || {
        let dev = env.get("environment/dev");
        (is_ready(&dev) && dev["status"]["lastChange"] == format!("t{last}")).then_some(())
    });
    for name in &promotions {
        eventually(WAIT, &format!("promotion/{name} to finish"), || {
            let p = env.get(&format!("promotion/{name}"));
            let phase = p["status"]["phase"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            ["Succeeded", "Failed", "Blocked"]
                .contains(&phase.as_str())
                .then_some(())
        });
    }
    env.apply(&promotion("final"));
    assert!(
        env.wait("promotion/final", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    let recovery = settled.elapsed();
    assert_eq!(
        one(&db.url, "SELECT api_dev.version()").await,
        format!("v{last}")
    );
    assert_eq!(
        one(&db.url, "SELECT api_prod.version()").await,
        format!("v{last}")
    );

    // Everything Ready without a person; nothing stuck in Reconciling.
    let mut not_ready = Vec::new();
    for kind in ["databaseprojects", "environments", "promotions"] {
        for obj in env.get(kind)["items"].as_array().unwrap() {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            let reconciling = condition(obj, "Reconciling").is_some_and(|c| c["status"] == "True");
            let phase = obj["status"]["phase"].as_str().unwrap_or_default();
            // A Promotion overtaken by a newer one may end Blocked by a guard; that is an
            // answer, not a hang. Any other object must be Ready.
            if reconciling || (!is_ready(obj) && phase != "Blocked") {
                not_ready.push(format!("{kind}/{name}: {:#}", obj["status"]));
            }
        }
    }
    assert!(
        not_ready.is_empty(),
        "not Ready after the kills:\n{}",
        not_ready.join("\n")
    );

    let mut broken = invariants::applied_twice(&db.url).await.unwrap();
    broken.extend(invariants::locks_left(&db.url).await.unwrap());
    broken.extend(invariants::orphaned_sets(&db.url, 2).await.unwrap());
    assert!(broken.is_empty(), "after {kills} kills: {broken:#?}");

    // The registry equals the catalog, and both equal a clean run's.
    let tables = rows(
        &db.url,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'shop' ORDER BY tablename::bytea",
    )
    .await
    .unwrap();
    let mut changes = invariants::deployed_changes(&db.url).await.unwrap();
    changes.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(tables, changes, "registry and catalog disagree");
    let clean = clean_run(last).await;
    assert_eq!(registry_rows(&db.url).await, registry_rows(&clean).await);
    assert_eq!(
        rows(
            &db.url,
            "SELECT (SELECT count(*) FROM api_prod.rows) || ' ' || (SELECT n FROM api_prod.totals)"
        )
        .await
        .unwrap(),
        rows(
            &clean,
            "SELECT (SELECT count(*) FROM api_prod.rows) || ' ' || (SELECT n FROM api_prod.totals)"
        )
        .await
        .unwrap(),
    );

    chaos::figure("controller SIGKILLs", kills);
    chaos::figure("SIGKILLs by phase", format!("{phases:?}"));
    chaos::figure(
        "recovery after the last SIGKILL (s)",
        format!("{:.1}", recovery.as_secs_f64()),
    );
    assert!(!(env.visible_state() + &controller.log()).contains(PASSWORD));
}

/// The same project deployed by the CLI into a fresh database with no fault.
async fn clean_run(round: usize) -> String {
    let db = database().await;
    let fx = project(round);
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["stage", "--schema-suffix", "_dev"],
    ));
    run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--schema-suffix", "_dev"],
    ));
    run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &[
            "promote",
            "--schema-suffix",
            "_prod",
            "--from-suffix",
            "_dev",
        ],
    ));
    db.url
}

/// Sqitch's registry rows that do not depend on when or by whom: changes with their ids
/// and script hashes, and the count of each kind of event per change.
async fn registry_rows(url: &str) -> Vec<String> {
    let mut all = rows(
        url,
        "SELECT change_id || ' ' || change || ' ' || script_hash FROM sqitch.changes ORDER BY 1",
    )
    .await
    .unwrap();
    all.extend(
        rows(url, "SELECT change || ' ' || event || ' ' || count(*) FROM sqitch.events GROUP BY change, event ORDER BY 1")
            .await
            .unwrap(),
    );
    all
}

/// Polls `sql` with psql until it prints `want`.
fn until_psql(url: &str, sql: &str, want: &str) {
    eventually(Duration::from_secs(30), sql, || {
        let out = std::process::Command::new("psql")
            .args([url, "-Atc", sql])
            .output()
            .ok()?;
        (String::from_utf8_lossy(&out.stdout).trim() == want).then_some(())
    });
}

/// Regression (issue #17): a `stage` killed while building left its half-built set
/// (`state = building`) behind for ever; the next stage must drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_killed_mid_build_leaves_no_staging_set_behind() {
    let db = database().await;
    let fx = project(1);
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    fx.write("objects/api/verify.sql", "SELECT pg_sleep(2);\n");
    let mut stage = switchyard_on(&fx, &db.url, &["stage"]).spawn().unwrap();
    until_psql(
        &db.url,
        "SELECT count(*) FROM switchyard.schema_pointers WHERE state = 'building'",
        "1",
    );
    stage.kill().unwrap();
    stage.wait().unwrap();
    fx.write("objects/api/verify.sql", "SELECT 1;\n");
    eventually(
        Duration::from_secs(30),
        "the killed stage's lock to go",
        || {
            let out = switchyard_on(&fx, &db.url, &["stage"]).output().ok()?;
            out.status.success().then_some(())
        },
    );
    run_ok(&mut switchyard_on(&fx, &db.url, &["promote"]));
    let left = invariants::orphaned_sets(&db.url, 2).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(one(&db.url, "SELECT api.version()").await, "v1");
}

/// Regression (issue #17): a deployer killed in the middle of a long statement kept the
/// project lock until the statement ended (PostgreSQL only notices a vanished client when
/// it next talks to it), so everyone else was refused for as long as that statement ran.
/// The server must notice within seconds and let the next deployer in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_deployer_releases_the_lock_during_a_long_statement() {
    let db = database().await;
    let mut fx = Fixture::new("slow");
    fx.change(
        "slow",
        &[],
        "SELECT pg_sleep(600);\n",
        "SELECT 1;\n",
        "SELECT 1;\n",
    );
    let mut deploy = switchyard_on(&fx, &db.url, &["deploy"]).spawn().unwrap();
    until_psql(
        &db.url,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%'",
        "1",
    );
    deploy.kill().unwrap();
    deploy.wait().unwrap();
    // Well before the statement would end: the session is gone, and its lock.
    until_psql(
        &db.url,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%'",
        "0",
    );
    let left = invariants::locks_left(&db.url).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        one(&db.url, "SELECT count(*) FROM sqitch.changes").await,
        "0"
    );
}
