//! Drift detection through `switchyard status` (issue #16): a fresh stage and promote has
//! none (renamed, layered, after a rollback); hand edits to a view or a grant, an extra
//! table, an edited deploy script and a change dropped from the plan are each found; a
//! re-stage repairs object drift.

use e2e::postgres::{self, rows};
use e2e::tools::{Fixture, json, run_ok, switchyard_on};
use serde_json::Value;

/// A stable `shop` schema (two changes) and a blue-green `api` with a view over a view,
/// a materialized view with an index, a function and an enum type.
fn project(version: &str) -> Fixture {
    let mut fx = Fixture::shop_with_api(
        "CREATE TABLE shop.customers (id int PRIMARY KEY, spent int NOT NULL);\n\
         INSERT INTO shop.customers VALUES (1, 5), (2, 50);\n",
        "customers",
    );
    fx.change(
        "notes",
        &["schema"],
        "CREATE TABLE shop.notes (id int);\n",
        "DROP TABLE shop.notes;\n",
        "SELECT 1 FROM shop.notes WHERE false;\n",
    );
    write_objects(&fx, version);
    fx
}

fn write_objects(fx: &Fixture, version: &str) {
    fx.write(
        "objects/api/customers.sql",
        "CREATE VIEW api.customers AS SELECT id, spent FROM shop.customers;\n",
    );
    fx.write(
        "objects/api/big_customers.sql",
        "CREATE VIEW api.big_customers AS SELECT * FROM api.customers WHERE spent > 10;\n",
    );
    fx.write(
        "objects/api/totals.sql",
        "CREATE MATERIALIZED VIEW api.totals AS SELECT count(*) AS n FROM api.big_customers;\n\
         CREATE UNIQUE INDEX totals_n ON api.totals (n);\n",
    );
    fx.write(
        "objects/api/status.sql",
        "CREATE TYPE api.status AS ENUM ('new', 'old');\n",
    );
    fx.write("objects/api/version.sql", &format!("CREATE FUNCTION api.version() RETURNS text LANGUAGE sql AS $$ SELECT '{version}'::text $$;\n"));
}

fn run(fx: &Fixture, url: &str, args: &[&str]) -> String {
    run_ok(&mut switchyard_on(fx, url, args))
}

/// `status --json`'s drift member (extra arguments such as `--schema-suffix`).
fn drift(fx: &Fixture, url: &str, extra: &[&str]) -> Value {
    let mut args = vec!["status", "--json"];
    args.extend_from_slice(extra);
    let doc = json(&run(fx, url, &args));
    assert!(doc["drift"].is_object(), "no drift member: {doc:#}");
    doc["drift"].clone()
}

fn assert_clean(drift: &Value) {
    for key in ["scripts", "objects", "unknown", "orphans"] {
        assert_eq!(drift[key], serde_json::json!([]), "{key}: {drift:#}");
    }
}

/// `(schema, object, change)` of each object finding.
fn objects(drift: &Value) -> Vec<(String, String, String)> {
    drift["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            let s = |k: &str| o[k].as_str().unwrap_or_default().to_string();
            (s("schema"), s("object"), s("change"))
        })
        .collect()
}

fn unknown(drift: &Value) -> Vec<String> {
    drift["unknown"]
        .as_array()
        .expect("unknown")
        .iter()
        .map(|u| {
            format!(
                "{}.{}",
                u["schema"].as_str().unwrap_or(""),
                u["object"].as_str().unwrap_or("")
            )
        })
        .collect()
}

async fn sql(url: &str, statements: &str) {
    rows(url, statements).await.expect(statements);
}

#[tokio::test]
async fn hand_edits_to_a_live_set_are_drift_until_a_restage_repairs_them() {
    let db = postgres::server().fresh_db().await.expect("db");
    let reader = format!("reader_{}", db.name);
    let fx = project("v1");
    run(&fx, &db.url, &["deploy"]);
    run(&fx, &db.url, &["stage"]);
    run(&fx, &db.url, &["promote"]);
    assert_clean(&drift(&fx, &db.url, &[]));
    let text = run(&fx, &db.url, &["status"]);
    assert!(
        !text.contains("drift"),
        "a clean status prints no drift:\n{text}"
    );

    // A view redefined by hand.
    sql(
        &db.url,
        "CREATE OR REPLACE VIEW api.big_customers AS SELECT * FROM api.customers WHERE spent > 1",
    )
    .await;
    let found = drift(&fx, &db.url, &[]);
    assert_eq!(
        objects(&found),
        [("api".into(), "view big_customers".into(), "changed".into())]
    );
    let text = run(&fx, &db.url, &["status"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("drift: ") && l.contains("view big_customers")),
        "{text}"
    );

    // A grant, and a table nobody defines.
    sql(&db.url, &format!("CREATE ROLE {reader}; GRANT SELECT ON api.customers TO {reader}; CREATE TABLE api.scratch (id int)")).await;
    let found = drift(&fx, &db.url, &[]);
    let changed: Vec<String> = objects(&found).into_iter().map(|o| o.1).collect();
    assert_eq!(
        changed,
        ["view big_customers", "view customers"],
        "{found:#}"
    );
    assert_eq!(unknown(&found), ["api.table scratch"]);

    // Re-staging builds the set from the project again (keeping the grant, as always).
    run(&fx, &db.url, &["stage", "--redeploy-schema", "api"]);
    run(&fx, &db.url, &["promote"]);
    assert_clean(&drift(&fx, &db.url, &[]));
}

#[tokio::test]
async fn a_rollback_and_a_dropped_object_are_told_apart() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run(&fx, &db.url, &["deploy"]);
    run(&fx, &db.url, &["stage"]);
    run(&fx, &db.url, &["promote"]);
    write_objects(&fx, "v2");
    run(&fx, &db.url, &["stage"]);
    run(&fx, &db.url, &["promote"]);
    assert_clean(&drift(&fx, &db.url, &[]));
    run(&fx, &db.url, &["rollback"]);
    assert_clean(&drift(&fx, &db.url, &[]));

    sql(&db.url, "DROP INDEX api.totals_n").await;
    assert_eq!(
        objects(&drift(&fx, &db.url, &[])),
        [("api".into(), "index totals_n".into(), "missing".into())]
    );
}

#[tokio::test]
async fn layered_sets_have_no_drift_until_their_physical_set_is_edited() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    let layer = ["--schema-suffix", "_dev"];
    run(&fx, &db.url, &["deploy"]);
    let staged = json(&run(
        &fx,
        &db.url,
        &["stage", "--json", "--schema-suffix", "_dev"],
    ));
    let physical = staged["schemas"]["api"]
        .as_str()
        .expect("physical")
        .to_string();
    run(&fx, &db.url, &["promote", "--schema-suffix", "_dev"]);
    assert_clean(&drift(&fx, &db.url, &layer));

    sql(&db.url, &format!("CREATE OR REPLACE FUNCTION {physical}.version() RETURNS text LANGUAGE sql AS $$ SELECT 'hacked'::text $$; CREATE TABLE {physical}.scratch (id int)")).await;
    let found = drift(&fx, &db.url, &layer);
    assert_eq!(
        objects(&found),
        [("api".into(), "function version()".into(), "changed".into())]
    );
    assert_eq!(unknown(&found), ["api.table scratch"]);
}

#[tokio::test]
async fn an_edited_deploy_script_and_a_change_dropped_from_the_plan_are_drift() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run(&fx, &db.url, &["deploy"]);
    assert_clean(&drift(&fx, &db.url, &[]));

    fx.write_script(
        "deploy",
        "schema",
        "CREATE SCHEMA shop; -- edited after deploy\n",
    );
    let found = drift(&fx, &db.url, &[]);
    let scripts = found["scripts"].as_array().expect("scripts");
    assert_eq!(scripts.len(), 1, "{found:#}");
    assert_eq!(scripts[0]["change"], "schema");
    assert_eq!(scripts[0]["file"], "deploy/schema.sql");
    assert_ne!(scripts[0]["recorded"], scripts[0]["current"]);
    let text = run(&fx, &db.url, &["status"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("drift: ") && l.contains("deploy/schema.sql")),
        "{text}"
    );

    let plan = std::fs::read_to_string(fx.path().join("sqitch.plan")).expect("plan");
    let kept: String = plan
        .lines()
        .filter(|l| !l.starts_with("notes "))
        .map(|l| format!("{l}\n"))
        .collect();
    fx.write("sqitch.plan", &kept);
    let found = drift(&fx, &db.url, &[]);
    let orphans = found["orphans"].as_array().expect("orphans");
    assert_eq!(orphans.len(), 1, "{found:#}");
    assert_eq!(orphans[0]["change"], "notes");
}
