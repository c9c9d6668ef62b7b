//! The reliability suite (issue #17) against the real `switchyard controller`, the harness
//! API server, a throwaway PostgreSQL and real kubectl: SIGKILL at random points, an API
//! server that fails at random, and several deployers racing for one database. Seeded:
//! each test prints `SEED …`; `SWITCHYARD_SEED=N` replays it. Short sizes by default (CI);
//! `SWITCHYARD_RELIABILITY=full` runs the sizes RELIABILITY.md reports
//! (`scripts/reliability --full`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::chaos::{self, Rng};
use e2e::controller::*;
use e2e::invariants;
use e2e::postgres::{one, rows};
use e2e::reliability::{phase_at, project, promotion};
use e2e::tools::{Fixture, run_ok, switchyard_on};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(180);

/// The project at round 0 and two Environments sharing `db`: `dev` follows the project
/// (layers `api_dev`), `prod` moves only by Promotion (layers `api_prod`).
fn shared_environments(env: &Env, db: &e2e::postgres::TestDb) {
    env.db_secret("shared-db", db);
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
    shared_environments(&env, &db);
    let controller = env.controller("c0", &[]);
    assert!(
        env.wait("environment/dev", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );

    let started = Instant::now();
    let (controller, phases, promotions) =
        kill_at_random(&env, &db.url, &mut rng, kills, controller).await;
    let last = kills - kills / 3;
    eprintln!(
        "killed {kills} times in {:.0?}: {phases:?}",
        started.elapsed()
    );

    // Let it settle by itself, then one more revision and Promotion with no kill.
    let settled = Instant::now();
    let last = settle(&env, last, &promotions, &controller);
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
    let not_ready = unsettled(&env);
    assert!(
        not_ready.is_empty(),
        "not Ready after the kills:\n{}",
        not_ready.join("\n")
    );

    let mut broken = invariants::applied_twice(&db.url).await.unwrap();
    broken.extend(invariants::locks_left(&db.url).await.unwrap());
    broken.extend(invariants::orphaned_sets(&db.url, 2).await.unwrap());
    if !broken.is_empty() {
        let dump = invariants::describe_sets(&db.url).await.unwrap();
        panic!(
            "after {kills} kills: {broken:#?}\n{}\n{}",
            dump.join("\n"),
            controller.log()
        );
    }

    // The registry equals the catalog, and both equal a clean run's.
    let disagree = invariants::registry_against_catalog(&db.url, "shop")
        .await
        .unwrap();
    assert!(
        disagree.is_empty(),
        "registry and catalog disagree: {disagree:?}"
    );
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
        "all Ready again after the last SIGKILL, with one more revision and Promotion (s)",
        format!("{:.1}", recovery.as_secs_f64()),
    );
    assert!(!(env.visible_state() + &controller.log()).contains(PASSWORD));
}

/// Waits for dev to deploy revision `last` and every Promotion to finish, then pushes one
/// more revision with no kill (the first blue/green run after the crashes must clean up
/// what they left) and promotes it. Returns that revision.
fn settle(env: &Env, last: usize, promotions: &[String], controller: &Controller) -> usize {
    eventually(WAIT, "dev to deploy the last revision", || {
        let dev = env.get("environment/dev");
        (is_ready(&dev) && dev["status"]["lastChange"] == format!("t{last}")).then_some(())
    });
    for name in promotions {
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
    // One more revision with no kill: the first blue/green run after the crashes must
    // clean up whatever they left (abandoned staging, unserved shared sets).
    let last = last + 1;
    env.project_configmap("shop-files", &project(last));
    eventually(WAIT, "dev to deploy one more revision", || {
        let dev = env.get("environment/dev");
        (is_ready(&dev) && dev["status"]["lastChange"] == format!("t{last}")).then_some(())
    });
    env.apply(&promotion("final"));
    assert!(
        env.wait("promotion/final", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    last
}

/// Pushes revisions and Promotions and SIGKILLs the controller `kills` times, each kill
/// aimed (seeded) at a phase of its work; restarts it each time. Returns the last
/// controller, where the kills landed, and the Promotions made.
async fn kill_at_random(
    env: &Env,
    url: &str,
    rng: &mut Rng,
    kills: usize,
    mut controller: Controller,
) -> (Controller, BTreeMap<&'static str, usize>, Vec<String>) {
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
        // Aim each kill at one phase (seeded), polling what the controller's sessions are
        // doing; kill anyway when that phase does not come within the deadline.
        let aim = *rng.pick(&["deploy", "stage", "swap", "cleanup", "any"]);
        let deadline =
            Instant::now() + rng.between(Duration::from_millis(500), Duration::from_millis(4000));
        let phase = loop {
            let phase = phase_at(url).await;
            if phase == aim || (aim == "any" && phase != "idle") || Instant::now() >= deadline {
                break phase;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        *phases.entry(phase).or_default() += 1;
        controller.kill();
        controller = env.controller(&format!("c{round}"), &[]);
    }
    (controller, phases, promotions)
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

/// Every object's name whose status is not Ready=True, or still Reconciling; a Promotion
/// that ended Blocked by a guard counts as answered.
fn unsettled(env: &Env) -> Vec<String> {
    let mut out = Vec::new();
    for kind in ["databaseprojects", "environments", "promotions"] {
        for obj in env.get(kind)["items"].as_array().unwrap() {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            let reconciling = condition(obj, "Reconciling").is_some_and(|c| c["status"] == "True");
            let blocked = obj["status"]["phase"] == "Blocked";
            if reconciling || (!is_ready(obj) && !blocked) {
                out.push(format!("{kind}/{name}: {:#}", obj["status"]));
            }
        }
    }
    out
}

/// The harness answers with 409s, 500s, 410 Expired watches, cut watches and slow
/// responses at random while revisions and Promotions flow. Every revision still lands,
/// every Promotion finishes, statuses converge with nothing stuck in Reconciling, and an
/// idle controller does not hammer a failing server (requests counted per minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_faults_converge_without_a_hot_loop() {
    let mut rng = Rng::for_test("api_server_faults_converge_without_a_hot_loop");
    let rounds = chaos::size(3, 10);
    let idle = Duration::from_secs(chaos::size(30, 60) as u64);
    let env = Env::start();
    let Some(harness) = env.cluster.harness() else {
        eprintln!("skipped: fault injection needs the harness, not a real cluster");
        return;
    };
    let faults = harness.faults().clone();
    let db = database().await;
    shared_environments(&env, &db);
    faults.enable(rng.next_u64(), e2e::apiserver::faults::Profile::chaos());
    let controller = env.controller("c", &[]);

    let started = Instant::now();
    for round in 1..=rounds {
        env.project_configmap("shop-files", &project(round));
        eventually(WAIT, &format!("dev to deploy round {round}"), || {
            let dev = env.get("environment/dev");
            (is_ready(&dev) && dev["status"]["lastChange"] == format!("t{round}")).then_some(())
        });
        let name = format!("p{round}");
        env.apply(&promotion(&name));
        eventually(WAIT, &format!("{name} to succeed"), || {
            (env.get(&format!("promotion/{name}"))["status"]["phase"] == "Succeeded").then_some(())
        });
        assert_eq!(
            one(&db.url, "SELECT api_prod.version()").await,
            format!("v{round}")
        );
    }
    let busy = started.elapsed();
    eventually(WAIT, "every status to settle", || {
        unsettled(&env).is_empty().then_some(())
    });

    // Idle, faults still on: count what the controller sends.
    let from = Instant::now();
    tokio::time::sleep(idle).await;
    let seen = faults.seen_since(from);
    let minutes = idle.as_secs_f64() / 60.0;
    let watches = seen.iter().filter(|s| s.watch).count() as f64 / minutes;
    let others = seen.iter().filter(|s| !s.watch).count() as f64 / minutes;
    let injected = faults.injected();
    faults.disable();
    let still = unsettled(&env);
    assert!(
        still.is_empty(),
        "unsettled under faults:\n{}",
        still.join("\n")
    );
    eprintln!("faults injected: {injected:?}; busy {busy:.0?}");
    chaos::figure("API faults injected", format!("{injected:?}"));
    chaos::figure("API rounds under faults (revision + Promotion)", rounds);
    chaos::figure(
        "idle requests per minute under faults (watch starts / other)",
        format!("{watches:.0} / {others:.0}"),
    );
    for kind in [
        e2e::apiserver::faults::Kind::Conflict,
        e2e::apiserver::faults::Kind::ServerError,
        e2e::apiserver::faults::Kind::Gone,
        e2e::apiserver::faults::Kind::DropWatch,
        e2e::apiserver::faults::Kind::Slow,
    ] {
        assert!(
            injected.get(&kind).copied().unwrap_or(0) > 0,
            "no {kind:?} injected: {injected:?}"
        );
    }
    // A hot loop shows as hundreds of requests a minute; a controller that backs off
    // sends a few dozen while its watches are cut every few seconds.
    assert!(
        others < 120.0,
        "{others:.0} requests/min besides watches while idle"
    );
    assert!(
        watches < 240.0,
        "{watches:.0} watch (re)starts/min while idle"
    );
    assert!(!(env.visible_state() + &controller.log()).contains(PASSWORD));
}

/// Regression (issue #17): a verified staging set whose promote never came (the
/// controller killed between the two, or `stage` run twice) stayed behind for ever, as
/// every later stage built a twin beside it. Staging the same definitions again reuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_twice_reuses_the_verified_set_and_leaves_nothing_behind() {
    let db = database().await;
    let fx = project(1);
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    let first = e2e::tools::json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["stage", "--json"],
    )));
    let second = e2e::tools::json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["stage", "--json"],
    )));
    assert_eq!(first["deployment"], second["deployment"], "{second}");
    run_ok(&mut switchyard_on(&fx, &db.url, &["promote"]));
    let left = invariants::orphaned_sets(&db.url, 2).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    // A changed definition is staged anew, and the stale candidate does not linger.
    let fx2 = project(2);
    run_ok(&mut switchyard_on(&fx2, &db.url, &["deploy"]));
    run_ok(&mut switchyard_on(&fx2, &db.url, &["stage"]));
    run_ok(&mut switchyard_on(&fx2, &db.url, &["promote"]));
    assert_eq!(one(&db.url, "SELECT api.version()").await, "v2");
    let left = invariants::orphaned_sets(&db.url, 2).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// A repoint killed between forgetting a layer row and dropping
/// the shared set it pointed at leaves that set, served by no layer, until the next
/// blue/green run: that run drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_set_no_layer_serves_is_dropped_by_the_next_promote() {
    let db = database().await;
    let fx = project(1);
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
    // What the killed repoint left: a shared set whose layer row is gone.
    e2e::postgres::connect(&db.url)
        .await
        .unwrap()
        .batch_execute(
            "CREATE SCHEMA api__sy_999; CREATE VIEW api__sy_999.rows AS SELECT 1 AS id; \
             INSERT INTO switchyard.schema_pointers (project, logical_schema, physical_schema, deployment_id, role, state) \
             VALUES ('shop', 'api', 'api__sy_999', '999', 'shared', 'ready')",
        )
        .await
        .unwrap();
    assert_eq!(
        invariants::orphaned_sets(&db.url, 2).await.unwrap(),
        ["shared set api__sy_999 served by no layer"]
    );
    let fx = project(2);
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
    let left = invariants::orphaned_sets(&db.url, 2).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(one(&db.url, "SELECT api_dev.version()").await, "v2");
}

/// A plain project of `n` slow changes (tables `c1..=c<n>`, 0.2 s each), for races.
fn slow_project(n: usize) -> Fixture {
    let mut fx = Fixture::new("race");
    for i in 1..=n {
        fx.change(
            &format!("c{i}"),
            &[],
            &format!("CREATE TABLE c{i} (id int);\nSELECT pg_sleep(0.2);\n"),
            &format!("DROP TABLE c{i};\n"),
            &format!("SELECT 1 FROM c{i} WHERE false;\n"),
        );
    }
    fx
}

/// Two controller replicas (without leader election, as during a botched rollout), a person
/// running `switchyard deploy` twice and the real `sqitch deploy`, all at once against one
/// database: one deploys at a time, the refused ones name the holder, no change is applied
/// twice, and `sqitch status` agrees with the registry at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_cli_and_sqitch_racing_for_one_database() {
    let n = chaos::size(15, 40);
    let env = Env::start();
    let db = database().await;
    let fx = slow_project(n);
    env.db_secret("db", &db);
    env.project_configmap("race-files", &fx);
    env.apply(&project_yaml("race", "race-files"));
    env.apply(&env_yaml("dev", "race", "db", true, ""));
    // Everyone at once: the CLI first, so the others find the lock taken.
    let mut first = switchyard_on(&fx, &db.url, &["deploy"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    until_psql(&db.url, "SELECT count(*) FROM switchyard.locks", "1");
    let sqitch = e2e::tools::sqitch(fx.path())
        .arg("deploy")
        .arg(e2e::tools::sqitch_target(&db.url))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let a = env.controller("a", &[]);
    let b = env.controller("b", &[]);
    let second = e2e::tools::output(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    let second_err = String::from_utf8_lossy(&second.stderr).into_owned();
    let mut saw_locked = false;
    let first_out = loop {
        if !saw_locked {
            let dev = env.get("environment/dev");
            saw_locked = condition(&dev, "Ready").is_some_and(|c| c["reason"] == "Locked")
                || dev["status"]["lockedBy"].is_string();
        }
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sqitch = sqitch.wait_with_output().unwrap();
    assert!(first_out.success(), "the first deploy failed");
    let sqitch_said = format!(
        "{}{}",
        String::from_utf8_lossy(&sqitch.stdout),
        String::from_utf8_lossy(&sqitch.stderr)
    );
    // Sqitch waits for the lock (its own message), then finds nothing left to deploy;
    // it must never run a change switchyard is running or has run.
    assert_eq!(sqitch.status.code(), Some(0), "{sqitch_said}");
    assert!(!sqitch_said.contains("not ok"), "{sqitch_said}");
    assert_eq!(second.status.code(), Some(3), "{second_err}");
    assert!(
        second_err.contains("locked by") && second_err.contains("deploy since"),
        "the refusal must name the holder: {second_err}"
    );
    eventually(WAIT, "dev Ready", || {
        is_ready(&env.get("environment/dev")).then_some(())
    });

    let mut broken = invariants::applied_twice(&db.url).await.unwrap();
    broken.extend(invariants::locks_left(&db.url).await.unwrap());
    assert!(
        broken.is_empty(),
        "{broken:#?}\nsqitch: {}",
        String::from_utf8_lossy(&sqitch.stderr)
    );
    let tables = rows(
        &db.url,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename::bytea",
    )
    .await
    .unwrap();
    let mut changes = invariants::deployed_changes(&db.url).await.unwrap();
    changes.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(tables, changes);
    assert_eq!(changes.len(), n);
    let status = run_ok(
        e2e::tools::sqitch(fx.path())
            .arg("status")
            .arg(e2e::tools::sqitch_target(&db.url)),
    );
    assert!(
        status.contains("Nothing to deploy (up-to-date)"),
        "{status}"
    );
    eprintln!(
        "sqitch deploy: {:?}\n{}{}",
        sqitch.status.code(),
        String::from_utf8_lossy(&sqitch.stdout),
        String::from_utf8_lossy(&sqitch.stderr)
    );
    chaos::figure(
        "racing deployers (2 replicas, 2 CLI, sqitch)",
        format!(
            "{n} changes, each applied once; second CLI exit 3 naming the holder; controller showed the lock: {saw_locked}; sqitch exit {:?}",
            sqitch.status.code()
        ),
    );
    drop((a, b));
}

/// While the real `sqitch` holds its deploy lock, `switchyard deploy` is refused (exit 3)
/// and names Sqitch as the holder, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_while_sqitch_holds_its_lock_is_refused_naming_sqitch() {
    let db = database().await;
    let fx = slow_project(2);
    // What `sqitch deploy` holds for its whole run (App::Sqitch::Engine::pg).
    let holder = e2e::postgres::connect(&db.url).await.unwrap();
    holder
        .batch_execute("SET application_name = 'sqitch'; SELECT pg_advisory_lock(75474063)")
        .await
        .unwrap();
    let out = e2e::tools::output(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("locked by sqitch"), "{err}");
    assert_eq!(
        one(
            &db.url,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .await,
        "0"
    );
    holder
        .batch_execute("SELECT pg_advisory_unlock(75474063)")
        .await
        .unwrap();
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
}

/// Regression (issue #17): a repoint killed after preparing the next layer
/// (`api_dev__sy_next_<run>`, committed on its own) and before the swap left that layer for
/// ever, and with it the physical set it reads, which no cleanup would drop while the
/// layer depended on it. The next swap of that layer drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_prepared_by_a_killed_repoint_is_dropped_by_the_next_swap() {
    let db = database().await;
    let fx = project(1);
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
    let physical = one(
        &db.url,
        "SELECT physical_schema FROM switchyard.layers WHERE role = 'live'",
    )
    .await;
    // What the killed repoint left: a prepared layer over the live set.
    e2e::postgres::connect(&db.url)
        .await
        .unwrap()
        .batch_execute(&format!(
            "CREATE SCHEMA api_dev__sy_next_999; \
             CREATE VIEW api_dev__sy_next_999.rows AS SELECT * FROM {physical}.rows"
        ))
        .await
        .unwrap();
    for round in [2, 3, 4] {
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
    }
    let left = invariants::orphaned_sets(&db.url, 2).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        one(&db.url, &format!("SELECT count(*) FROM pg_namespace WHERE nspname IN ('api_dev__sy_next_999', '{physical}')")).await,
        "0",
        "the prepared layer and the set only it read must go"
    );
}

/// Regression (issue #17): verified candidates that were never promoted, each built from
/// an older revision (a controller killed between stage and promote while the project
/// moved on), piled up for ever. Staging keeps the newest candidates within retention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_candidates_are_kept_within_retention() {
    let db = database().await;
    for round in 1..=4 {
        let fx = project(round);
        run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
        run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));
    }
    let left = invariants::orphaned_sets(&db.url, 2).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    run_ok(&mut switchyard_on(&project(4), &db.url, &["promote"]));
    assert_eq!(one(&db.url, "SELECT api.version()").await, "v4");
}

/// A swap whose session dies in the middle of its transaction (after renaming the live set
/// aside, while waiting to rename the staged one in) leaves the old set live and the
/// candidate staged; promoting again succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_interrupted_mid_transaction_leaves_the_old_set_live() {
    let db = database().await;
    let v1 = project(1);
    run_ok(&mut switchyard_on(&v1, &db.url, &["deploy"]));
    run_ok(&mut switchyard_on(&v1, &db.url, &["stage"]));
    run_ok(&mut switchyard_on(&v1, &db.url, &["promote"]));
    let v2 = project(2);
    run_ok(&mut switchyard_on(&v2, &db.url, &["deploy"]));
    let staged = e2e::tools::json(&run_ok(&mut switchyard_on(
        &v2,
        &db.url,
        &["stage", "--json"],
    )));
    let physical = staged["schemas"]["api"].as_str().unwrap().to_string();
    // Another transaction holds the staged schema's catalog row: the swap renames the live
    // set aside, then waits to rename the staged one in.
    let holder = e2e::postgres::connect(&db.url).await.unwrap();
    holder
        .batch_execute(&format!(
            "BEGIN; GRANT USAGE ON SCHEMA {physical} TO PUBLIC;"
        ))
        .await
        .unwrap();
    let mut promote = switchyard_on(&v2, &db.url, &["promote", "--lock-timeout", "60000"])
        .spawn()
        .unwrap();
    until_psql(
        &db.url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'switchyard%' \
           AND wait_event_type = 'Lock' AND query ILIKE '%RENAME%'",
        "1",
    );
    // The swap's session dies mid-transaction.
    run_ok(std::process::Command::new("psql").args([
        &db.url,
        "-Atc",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'switchyard%' AND wait_event_type = 'Lock'",
    ]));
    let status = promote.wait().unwrap();
    holder.batch_execute("COMMIT").await.unwrap();
    assert!(!status.success(), "the interrupted promote must fail");
    assert_eq!(
        one(&db.url, "SELECT api.version()").await,
        "v1",
        "the old set is live"
    );
    assert_eq!(
        one(&db.url, &format!("SELECT role || ' ' || state FROM switchyard.schema_pointers WHERE physical_schema = '{physical}'")).await,
        "staged verified"
    );
    run_ok(&mut switchyard_on(&v2, &db.url, &["promote"]));
    assert_eq!(one(&db.url, "SELECT api.version()").await, "v2");
    let left = invariants::orphaned_sets(&db.url, 2).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}
