//! Blue/green through the Promotion custom resource (issue #5), end to end: real kubectl,
//! the real `switchyard controller`, the harness API server and throwaway PostgreSQL
//! databases. A Promotion stages, verifies and swaps with a condition per step; a dev
//! Environment with autoDeploy swaps by itself; `rollback: true` swaps back; each guard
//! blocks with its own reason and changes nothing; verify failing after the swap ends
//! RolledBack with the previous set live again.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;
use e2e::postgres::one;
use e2e::tools::Fixture;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// A stable `shop` schema with a table, and blue-green `api` (views over views, a
/// materialized view with an index, SQL and plpgsql functions) and `report` (a view over
/// `api`). `version` is what `api.version()` returns. The verify script fails once the
/// live `api` schema holds a view named `poison` (the literal is not a reference, so it
/// reads the live schema even while staging).
fn project(version: &str, poison: bool) -> Fixture {
    let mut fx = Fixture::new("shop");
    fx.write(
        "switchyard.yaml",
        "project: shop\nengine: postgres\nschemas:\n  shop: stable\n  api: blue-green\n  report: blue-green\n",
    );
    fx.change(
        "schema",
        &[],
        "CREATE SCHEMA shop;\nCREATE TABLE shop.orders (id int PRIMARY KEY, amount int NOT NULL);\n\
         INSERT INTO shop.orders VALUES (1, 5), (2, 20), (3, 30);\n",
        "DROP SCHEMA shop CASCADE;\n",
        "SELECT 1 FROM shop.orders WHERE false;\n",
    );
    objects(&fx, version, version, poison);
    fx
}

fn objects(fx: &Fixture, api_version: &str, report_version: &str, poison: bool) {
    fx.write(
        "objects/api/orders_v.sql",
        "CREATE VIEW api.orders_v AS SELECT id, amount FROM shop.orders;\n",
    );
    fx.write(
        "objects/api/big_orders.sql",
        "CREATE VIEW api.big_orders AS SELECT * FROM api.orders_v WHERE amount > 10;\n",
    );
    fx.write(
        "objects/api/totals.sql",
        "CREATE MATERIALIZED VIEW api.totals AS SELECT count(*) AS n, sum(amount) AS total FROM api.big_orders;\n\
         CREATE UNIQUE INDEX totals_n ON api.totals (n);\n",
    );
    fx.write(
        "objects/api/version.sql",
        &format!(
            "CREATE FUNCTION api.version() RETURNS text LANGUAGE sql AS $$ SELECT '{api_version}'::text $$;\n"
        ),
    );
    fx.write(
        "objects/api/describe.sql",
        "CREATE FUNCTION api.describe() RETURNS text LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN api.version() || ':' || (SELECT count(*) FROM api.big_orders);\nEND\n$$;\n",
    );
    if poison {
        fx.write(
            "objects/api/poison.sql",
            "CREATE VIEW api.poison AS SELECT 1 AS one;\n",
        );
    }
    fx.write(
        "objects/api/verify.sql",
        "SELECT n FROM api.totals;\n\
         SELECT 1 / (1 - (SELECT count(*)::int FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'api' AND c.relname = 'poison'));\n",
    );
    fx.write(
        "objects/report/summary.sql",
        &format!(
            "CREATE VIEW report.summary AS SELECT '{report_version}'::text AS version, count(*) AS orders FROM api.big_orders;\n"
        ),
    );
}

/// Waits until `sql` returns `want` in the database.
async fn until(url: &str, sql: &str, want: &str) {
    let started = std::time::Instant::now();
    loop {
        if let Ok(got) = e2e::postgres::rows(url, sql).await
            && got == [want]
        {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "timed out waiting for {sql} = {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn promotion(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

fn cond<'a>(obj: &'a Value, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = condition(obj, type_).unwrap_or_else(|| panic!("no {type_} condition in {obj:#}"));
    (
        c["status"].as_str().unwrap_or_default(),
        c["reason"].as_str().unwrap_or_default(),
        c["message"].as_str().unwrap_or_default(),
    )
}

/// Waits until the Promotion's phase is `phase` and returns it.
fn phase(env: &Env, name: &str, phase: &str) -> Value {
    eventually(WAIT, &format!("promotion/{name} to be {phase}"), || {
        let p = env.get(&format!("promotion/{name}"));
        (p["status"]["phase"] == phase).then_some(p)
    })
}

fn revision(env: &Env) -> String {
    env.get("databaseproject/shop")["status"]["revision"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits for the project to read the ConfigMap's newest content.
fn project_moved(env: &Env, from: &str) -> String {
    eventually(WAIT, "the project to see the new revision", || {
        let now = revision(env);
        (now != from).then_some(now)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_stages_verifies_swaps_and_rolls_back() {
    let env = Env::start();
    let dev_db = database().await;
    let prod_db = database().await;
    env.db_secret("dev-db", &dev_db);
    env.db_secret("prod-db", &prod_db);
    env.project_configmap("shop-files", &project("v1", false));
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("dev", "shop", "dev-db", true, ""));
    env.apply(&env_yaml("prod", "shop", "prod-db", false, ""));
    let controller = env.controller("c1", &[]);
    assert!(
        env.wait("environment/dev", "condition=Ready", WAIT),
        "dev Ready\n{}",
        controller.log()
    );

    // Dev follows the project by itself: its blue-green schemas are live and listed.
    assert_eq!(one(&dev_db.url, "SELECT api.describe()").await, "v1:2");
    let dev = eventually(WAIT, "dev to list its live schemas", || {
        let dev = env.get("environment/dev");
        (dev["status"]["live"].as_array().map(Vec::len) == Some(2)).then_some(dev)
    });
    assert_eq!(dev["status"]["live"][0]["schema"], "api");
    assert_eq!(dev["status"]["live"][0]["physical"], "api");
    assert!(api_schemas(&prod_db.url).await.is_empty());

    // Promote dev → prod: validated, staged, verified, swapped; each step timed.
    env.apply(&promotion(
        "p1",
        "  from: {environment: dev}\n  to: {environment: prod}\n",
    ));
    assert!(
        env.wait("promotion/p1", "condition=Ready", WAIT),
        "p1 Ready\n{}",
        controller.log()
    );
    let p1 = env.get("promotion/p1");
    assert_eq!(p1["status"]["phase"], "Succeeded");
    for step in ["Validated", "Staged", "Verified", "Promoted"] {
        assert_eq!(cond(&p1, step).0, "True", "{step}: {p1:#}");
        assert!(
            cond(&p1, step).2.ends_with(" ms)"),
            "{step} carries its duration"
        );
    }
    assert_eq!(cond(&p1, "Promoted").1, "SwapCompleted");
    let durations = p1["status"]["stepDurationsMs"].as_object().unwrap();
    assert_eq!(
        durations.keys().collect::<Vec<_>>(),
        ["promoted", "staged", "validated", "verified"]
    );
    // What it changed, as the diff before acting said.
    assert_eq!(
        p1["status"]["diff"]["changes"],
        serde_json::json!(["schema"])
    );
    let added = &p1["status"]["diff"]["schemas"]["api"]["added"];
    assert!(
        added.as_array().unwrap().iter().any(|o| o == "version"),
        "{added}"
    );
    let d1 = p1["status"]["deployment"].as_str().unwrap().to_string();
    assert_eq!(one(&prod_db.url, "SELECT api.describe()").await, "v1:2");
    assert_eq!(
        one(&prod_db.url, "SELECT total FROM api.totals").await,
        "50"
    );
    assert_eq!(api_schemas(&prod_db.url).await, ["api", "report"]);
    let prod = eventually(WAIT, "prod to list its live set", || {
        let prod = env.get("environment/prod");
        (prod["status"]["live"][0]["deployment"] == d1.as_str()).then_some(prod)
    });
    assert_eq!(prod["status"]["live"][1]["schema"], "report");

    // v2: dev swaps by itself; a second Promotion retains prod's v1 set.
    let r1 = revision(&env);
    env.project_configmap("shop-files", &project("v2", false));
    project_moved(&env, &r1);
    until(&dev_db.url, "SELECT api.version()", "v2").await;
    assert!(env.wait("environment/dev", "condition=Ready", WAIT));
    env.apply(&promotion(
        "p2",
        "  from: {environment: dev}\n  to: {environment: prod}\n",
    ));
    assert!(
        env.wait("promotion/p2", "condition=Ready", WAIT),
        "p2 Ready\n{}",
        controller.log()
    );
    let p2 = env.get("promotion/p2");
    assert_eq!(
        p2["status"]["diff"]["schemas"]["api"]["changed"],
        serde_json::json!(["version"])
    );
    assert!(
        p2["status"]["diff"]["changes"].is_null(),
        "no changes to deploy"
    );
    assert_eq!(one(&prod_db.url, "SELECT api.describe()").await, "v2:2");
    let retained = format!("api__sy_{d1}");
    assert!(api_schemas(&prod_db.url).await.contains(&retained));
    let prod = eventually(WAIT, "prod to list the retained set", || {
        let prod = env.get("environment/prod");
        (prod["status"]["retained"][0]["deployment"] == d1.as_str()).then_some(prod)
    });
    assert_eq!(
        prod["status"]["retained"][0]["schemas"]["api"],
        retained.as_str()
    );

    // rollback: true swaps v1 back, rebuilding nothing: the same materialized view.
    let totals_oid = one(
        &prod_db.url,
        &format!("SELECT '{retained}.totals'::regclass::oid::text"),
    )
    .await;
    env.apply(&promotion(
        "back",
        "  to: {environment: prod}\n  rollback: true\n",
    ));
    assert!(
        env.wait("promotion/back", "condition=Ready", WAIT),
        "rollback Ready\n{}",
        controller.log()
    );
    let back = env.get("promotion/back");
    assert_eq!(back["status"]["phase"], "Succeeded");
    assert_eq!(cond(&back, "Promoted").1, "RolledBack");
    assert_eq!(back["status"]["deployment"], d1.as_str());
    assert_eq!(one(&prod_db.url, "SELECT api.describe()").await, "v1:2");
    assert_eq!(
        one(&prod_db.url, "SELECT 'api.totals'::regclass::oid::text").await,
        totals_oid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_guard_blocks_with_its_reason_and_changes_nothing() {
    let env = Env::start();
    let dev_db = database().await;
    let prod_db = database().await;
    let qa_db = database().await;
    env.db_secret("dev-db", &dev_db);
    env.db_secret("prod-db", &prod_db);
    env.db_secret("qa-db", &qa_db);
    env.project_configmap("shop-files", &project("v1", false));
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("dev", "shop", "dev-db", true, ""));
    env.apply(&env_yaml("prod", "shop", "prod-db", false, ""));
    // qa moves only by Promotion and has deployed nothing: not finalized as a source.
    env.apply(&env_yaml("qa", "shop", "qa-db", false, ""));
    let controller = env.controller("c1", &[]);
    assert!(
        env.wait("environment/dev", "condition=Ready", WAIT),
        "dev Ready\n{}",
        controller.log()
    );
    assert!(env.wait("environment/qa", "condition=Ready", WAIT));
    let r1 = revision(&env);
    env.apply(&promotion(
        "first",
        "  from: {environment: dev}\n  to: {environment: prod}\n",
    ));
    assert!(
        env.wait("promotion/first", "condition=Ready", WAIT),
        "first Ready\n{}",
        controller.log()
    );

    // v2 changes both blue-green schemas; report depends on api.
    env.project_configmap("shop-files", &project("v2", false));
    project_moved(&env, &r1);
    until(&dev_db.url, "SELECT version FROM report.summary", "v2").await;
    assert!(env.wait("environment/dev", "condition=Ready", WAIT));
    let before = e2e::postgres::snapshot(&prod_db.url).await.unwrap();
    let blocked = |name: &str, spec: &str, reason: &str, says: &str| {
        env.apply(&promotion(name, spec));
        // NB: eventually, not the first Blocked: when two guards hold, the one the
        // Environment's status reports late (its lock holder) wins once it is seen.
        let p = eventually(WAIT, &format!("{name} blocked by {reason}"), || {
            let p = env.get(&format!("promotion/{name}"));
            (p["status"]["phase"] == "Blocked"
                && condition(&p, "Blocked").is_some_and(|c| c["reason"] == reason))
            .then_some(p)
        });
        let (status, _, message) = cond(&p, "Blocked");
        assert_eq!(status, "True", "{name}: {p:#}");
        assert!(message.contains(says), "{name}: {message}");
        assert_eq!(cond(&p, "Ready").0, "False");
        // A blocked promotion settles: no status write wakes it to write again.
        let seen = p["metadata"]["resourceVersion"].clone();
        std::thread::sleep(Duration::from_millis(1500));
        let later = env.get(&format!("promotion/{name}"));
        assert_eq!(
            later["metadata"]["resourceVersion"], seen,
            "{name} keeps writing: {later:#}"
        );
        env.ok(&["delete", "-n", &env.ns, &format!("promotion/{name}")]);
    };

    blocked(
        "not-finalized",
        "  from: {environment: qa}\n  to: {environment: prod}\n",
        "GuardSourceNotFinalized",
        "qa has deployed nothing yet",
    );
    blocked(
        "partial",
        "  from: {environment: dev}\n  to: {environment: prod}\n  select: [api]\n",
        "GuardPartialPromotion",
        "partial",
    );
    blocked(
        "stale-upstreams",
        "  from: {environment: dev}\n  to: {environment: prod}\n  select: [report.summary]\n  allowPartialPromotion: true\n",
        "GuardStaleUpstreams",
        "api.big_orders",
    );

    env.apply(&env_yaml(
        "prod",
        "shop",
        "prod-db",
        false,
        "  suspend: true\n",
    ));
    blocked(
        "suspended",
        "  from: {environment: dev}\n  to: {environment: prod}\n",
        "GuardTargetSuspended",
        "suspended",
    );
    env.apply(&env_yaml("prod", "shop", "prod-db", false, ""));

    // Dev stops following (suspended) and the project moves on: dev is stale.
    env.apply(&env_yaml(
        "dev",
        "shop",
        "dev-db",
        true,
        "  suspend: true\n",
    ));
    let r2 = revision(&env);
    env.project_configmap("shop-files", &project("v3", false));
    project_moved(&env, &r2);
    env.apply(&env_yaml("dev", "shop", "dev-db", false, ""));
    blocked(
        "stale",
        "  from: {environment: dev}\n  to: {environment: prod}\n",
        "GuardSourceStale",
        "the project is at",
    );

    // The target's lock, held by another deployer's live session.
    let holder = e2e::postgres::connect(&prod_db.url).await.unwrap();
    holder
        .batch_execute(
            "INSERT INTO switchyard.locks (project, holder, host, pid, backend_pid, operation, started_at) \
             VALUES ('shop', 'Ada <ada@example.com>', 'laptop', 4242, pg_backend_pid(), 'deploy', now())",
        )
        .await
        .unwrap();
    blocked(
        "locked",
        "  from: {environment: dev}\n  to: {environment: prod}\n",
        "GuardTargetLocked",
        "Ada <ada@example.com> on laptop",
    );
    drop(holder);

    // Nothing changed in prod while blocked.
    assert_eq!(
        e2e::postgres::snapshot(&prod_db.url).await.unwrap(),
        before,
        "a blocked promotion changes nothing"
    );
    assert_eq!(one(&prod_db.url, "SELECT api.version()").await, "v1");
    let events = env.events();
    assert!(
        events
            .iter()
            .any(|(reason, m)| reason == "GuardTargetLocked" && m.contains("Ada <ada@example.com>")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_failing_after_the_swap_rolls_back() {
    let env = Env::start();
    let prod_db = database().await;
    env.db_secret("prod-db", &prod_db);
    env.project_configmap("shop-files", &project("v1", false));
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("prod", "shop", "prod-db", false, ""));
    let controller = env.controller("c1", &[]);
    assert!(env.wait("databaseproject/shop", "condition=Ready", WAIT));
    let r1 = revision(&env);
    env.apply(&promotion(
        "good",
        &format!("  from: {{revision: \"{r1}\"}}\n  to: {{environment: prod}}\n"),
    ));
    assert!(
        env.wait("promotion/good", "condition=Ready", WAIT),
        "good Ready\n{}",
        controller.log()
    );
    let d1 = env.get("promotion/good")["status"]["deployment"]
        .as_str()
        .unwrap()
        .to_string();

    // v2 adds `api.poison`: verify passes on the staging copy and fails once it is live.
    env.project_configmap("shop-files", &project("v2", true));
    let r2 = project_moved(&env, &r1);
    env.apply(&promotion(
        "poisoned",
        &format!("  from: {{revision: \"{r2}\"}}\n  to: {{environment: prod}}\n"),
    ));
    let p = phase(&env, "poisoned", "RolledBack");
    assert_eq!(cond(&p, "Staged").0, "True");
    assert_eq!(cond(&p, "Verified").0, "True", "staging verified");
    let (status, reason, message) = cond(&p, "Promoted");
    assert_eq!((status, reason), ("False", "VerifyFailed"));
    assert!(
        message.contains(&format!("deployment {d1} is live again")),
        "{message}"
    );
    assert!(message.contains("division by zero"), "{message}");
    assert_eq!(cond(&p, "RolledBack").0, "True");
    assert_eq!(cond(&p, "Ready").0, "False");
    assert_eq!(one(&prod_db.url, "SELECT api.version()").await, "v1");
    assert_eq!(
        one(
            &prod_db.url,
            "SELECT count(*)::text FROM pg_class WHERE relname = 'poison'"
        )
        .await,
        "0",
        "the failed set is gone"
    );
    let events = env.events();
    assert!(
        events.iter().any(|(reason, _)| reason == "VerifyFailed"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_sharing_a_database_promote_by_repointing_layers() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("shared-db", &db);
    env.project_configmap("shop-files", &project("v1", false));
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
    let controller = env.controller("c1", &[]);
    assert!(
        env.wait("environment/dev", "condition=Ready", WAIT),
        "dev Ready\n{}",
        controller.log()
    );
    // dev serves its layers; the plain names and prod's layers don't exist.
    until(&db.url, "SELECT api_dev.describe()", "v1:2").await;
    assert_eq!(
        api_schemas(&db.url)
            .await
            .iter()
            .filter(|s| !s.contains("__sy_"))
            .collect::<Vec<_>>(),
        ["api_dev", "report_dev"]
    );
    let dev = eventually(WAIT, "dev to list its layers", || {
        let dev = env.get("environment/dev");
        (dev["status"]["live"].as_array().map(Vec::len) == Some(2)).then_some(dev)
    });
    assert_eq!(dev["status"]["live"][0]["schema"], "api_dev");
    let physical = dev["status"]["live"][0]["physical"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(physical.starts_with("api__sy_"), "{physical}");

    let before = e2e::postgres::physical_objects(&db.url).await;
    env.apply(&promotion(
        "p1",
        "  from: {environment: dev}\n  to: {environment: prod}\n",
    ));
    assert!(
        env.wait("promotion/p1", "condition=Ready", WAIT),
        "p1 Ready\n{}",
        controller.log()
    );
    let p1 = env.get("promotion/p1");
    assert_eq!(p1["status"]["phase"], "Succeeded");
    assert!(cond(&p1, "Staged").2.contains("nothing to build"), "{p1:#}");
    assert_eq!(cond(&p1, "Promoted").1, "SwapCompleted");
    assert_eq!(
        e2e::postgres::physical_objects(&db.url).await,
        before,
        "nothing rebuilt"
    );
    assert_eq!(one(&db.url, "SELECT api_prod.describe()").await, "v1:2");
    let prod = eventually(WAIT, "prod to list its layers", || {
        let prod = env.get("environment/prod");
        (prod["status"]["live"][0]["physical"] == physical.as_str()).then_some(prod)
    });
    assert_eq!(prod["status"]["live"][0]["schema"], "api_prod");

    // dev follows v2 by itself; prod keeps serving v1 until promoted.
    let r1 = revision(&env);
    env.project_configmap("shop-files", &project("v2", false));
    project_moved(&env, &r1);
    until(&db.url, "SELECT api_dev.version()", "v2").await;
    assert_eq!(one(&db.url, "SELECT api_prod.version()").await, "v1");

    // A third Environment in the same database without a suffix of its own would share
    // dev's schemas: blocked, nothing touched.
    env.apply(&env_yaml("qa", "shop", "shared-db", false, ""));
    let before = e2e::postgres::snapshot(&db.url).await.unwrap();
    env.apply(&promotion(
        "to-qa",
        "  from: {environment: dev}\n  to: {environment: qa}\n",
    ));
    let p = eventually(WAIT, "to-qa blocked", || {
        let p = env.get("promotion/to-qa");
        (p["status"]["phase"] == "Blocked").then_some(p)
    });
    let (status, reason, message) = cond(&p, "Blocked");
    assert_eq!((status, reason), ("True", "GuardSharedDatabase"), "{p:#}");
    assert!(message.contains("schemaSuffix"), "{message}");
    assert_eq!(e2e::postgres::snapshot(&db.url).await.unwrap(), before);
}

/// The blue-green schemas of the test projects (`api…`, `report…`), by name.
async fn api_schemas(url: &str) -> Vec<String> {
    e2e::postgres::schemas_matching(url, "^(api|report)").await
}
