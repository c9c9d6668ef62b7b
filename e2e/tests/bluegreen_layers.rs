//! Same-database environments (issue #5) through the `switchyard` CLI on a throwaway
//! PostgreSQL: Environments with a schema suffix serve their blue-green schemas as
//! layers over physical sets that never move. dev stages and promotes its own set;
//! prod is promoted from dev by repointing its layers, which creates no physical object;
//! dev moving on leaves prod's set alone; prod rolls back with nothing rebuilt; grants
//! survive; verify failing after a repoint points back; guards block with their reasons.

use e2e::postgres::{self, one, rows};
use e2e::tools::{Fixture, json, output, run_ok, switchyard_on};
use serde_json::Value;

/// The physical schema a layer's view reads (pg_depend of its rewrite rule).
async fn serves(url: &str, view: &str) -> String {
    one(
        url,
        &format!(
            "SELECT DISTINCT n.nspname FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass \
             JOIN pg_class c ON c.oid = d.refobjid AND d.refclassid = 'pg_class'::regclass JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE r.ev_class = '{view}'::regclass AND c.oid <> '{view}'::regclass"
        ),
    )
    .await
}

/// A stable `shop` schema, blue-green `api` (views over views, a materialized view with
/// an index, an enum, SQL and plpgsql functions, a procedure) and `report` (a view over
/// `api`). The verify script fails while `shop.flags` holds a false row.
fn project(version: &str) -> Fixture {
    let mut fx = Fixture::new("shop");
    fx.write(
        "switchyard.yaml",
        "project: shop\nengine: postgres\nschemas:\n  shop: stable\n  api: blue-green\n  report: blue-green\n",
    );
    fx.change(
        "schema",
        &[],
        "CREATE SCHEMA shop;\nCREATE TABLE shop.orders (id int PRIMARY KEY, amount int NOT NULL);\n\
         INSERT INTO shop.orders VALUES (1, 5), (2, 20), (3, 30);\n\
         CREATE TABLE shop.flags (ok boolean NOT NULL);\nINSERT INTO shop.flags VALUES (true);\n\
         CREATE TABLE shop.calls (n int);\n",
        "DROP SCHEMA shop CASCADE;\n",
        "SELECT 1 FROM shop.orders WHERE false;\n",
    );
    objects(&fx, version, version);
    fx
}

fn objects(fx: &Fixture, api: &str, report: &str) {
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
        "objects/api/size.sql",
        "CREATE TYPE api.size AS ENUM ('small', 'big');\n",
    );
    fx.write(
        "objects/api/size_of.sql",
        "CREATE FUNCTION api.size_of(amount int) RETURNS api.size LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN amount > 10 THEN 'big' ELSE 'small' END::api.size $$;\n",
    );
    fx.write(
        "objects/api/version.sql",
        &format!("CREATE FUNCTION api.version() RETURNS text LANGUAGE sql AS $$ SELECT '{api}'::text $$;\n"),
    );
    fx.write(
        "objects/api/describe.sql",
        "CREATE FUNCTION api.describe() RETURNS text LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN api.version() || ':' || (SELECT count(*) FROM api.big_orders);\nEND\n$$;\n",
    );
    fx.write(
        "objects/api/record_call.sql",
        "CREATE PROCEDURE api.record_call(n int) LANGUAGE sql AS $$ INSERT INTO shop.calls VALUES (n) $$;\n",
    );
    fx.write(
        "objects/api/verify.sql",
        "SELECT 1 / (SELECT count(*)::int FROM shop.flags WHERE ok);\nSELECT n FROM api.totals;\n",
    );
    fx.write(
        "objects/report/summary.sql",
        &format!("CREATE VIEW report.summary AS SELECT '{report}'::text AS version, count(*) AS orders FROM api.big_orders;\n"),
    );
}

fn stage(fx: &Fixture, url: &str, suffix: &str) -> String {
    let staged = json(&run_ok(&mut switchyard_on(
        fx,
        url,
        &["stage", "--json", "--schema-suffix", suffix],
    )));
    staged["deployment"]
        .as_str()
        .expect("deployment")
        .to_string()
}

fn promote(fx: &Fixture, url: &str, args: &[&str]) -> Value {
    let mut all = vec!["promote", "--json"];
    all.extend_from_slice(args);
    json(&run_ok(&mut switchyard_on(fx, url, &all)))
}

#[tokio::test]
async fn prod_is_promoted_from_dev_in_one_database_and_nothing_is_rebuilt() {
    let db = postgres::server().fresh_db().await.expect("db");
    let reader = format!("reader_{}", db.name);
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));

    // dev stages and promotes its own set: layers api_dev and report_dev.
    let d1 = stage(&fx, &db.url, "_dev");
    let p = promote(&fx, &db.url, &["--schema-suffix", "_dev"]);
    assert_eq!(p["deployment"], d1.as_str());
    let phys_api = format!("api__sy_{d1}");
    assert_eq!(one(&db.url, "SELECT api_dev.describe()").await, "v1:2");
    assert_eq!(one(&db.url, "SELECT total FROM api_dev.totals").await, "50");
    assert_eq!(
        one(&db.url, "SELECT api_dev.size_of(30)::text").await,
        "big"
    );
    assert_eq!(
        one(&db.url, "SELECT version FROM report_dev.summary").await,
        "v1"
    );
    assert_eq!(serves(&db.url, "api_dev.totals").await, phys_api);
    assert_eq!(
        one(
            &db.url,
            "SELECT string_agg(DISTINCT relkind::text, ',') FROM pg_class WHERE relnamespace = 'api_dev'::regnamespace AND relkind <> 'i'"
        )
        .await,
        "v",
        "a layer holds only views over the physical relations"
    );
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    rows(&db.url, "CALL api_dev.record_call(7)")
        .await
        .expect("procedure through the layer");
    assert_eq!(one(&db.url, "SELECT sum(n) FROM shop.calls").await, "7");
    // The plain names are nobody's here.
    assert_eq!(
        one(
            &db.url,
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('api', 'report')"
        )
        .await,
        "0"
    );

    // prod from dev: a pointer move; no physical object is created or touched.
    let before = e2e::postgres::physical_objects(&db.url).await;
    let schemas_before = one(&db.url, "SELECT count(*) FROM pg_namespace").await;
    let p = promote(
        &fx,
        &db.url,
        &["--schema-suffix", "_prod", "--from-suffix", "_dev"],
    );
    assert_eq!(p["live"]["api"], phys_api.as_str(), "{p:#}");
    assert_eq!(
        e2e::postgres::physical_objects(&db.url).await,
        before,
        "nothing rebuilt"
    );
    assert_eq!(
        one(&db.url, "SELECT count(*) FROM pg_namespace").await,
        (schemas_before.parse::<i32>().unwrap_or_default() + 2).to_string(),
        "only the two layers api_prod and report_prod are new"
    );
    assert_eq!(one(&db.url, "SELECT api_prod.describe()").await, "v1:2");
    assert_eq!(serves(&db.url, "api_prod.totals").await, phys_api);
    assert_eq!(
        serves(&db.url, "report_prod.summary").await,
        format!("report__sy_{d1}")
    );
    let status = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["status", "--json", "--schema-suffix", "_prod"],
    )));
    assert_eq!(status["live"]["api"], phys_api.as_str());
    assert_eq!(status["served"]["api"], "api_prod");

    // A reader of prod's layers keeps its grants through every repoint.
    rows(
        &db.url,
        &format!(
            "CREATE ROLE {reader}; GRANT USAGE ON SCHEMA api_prod TO {reader}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA api_prod TO {reader}; \
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api_prod TO {reader}"
        ),
    )
    .await
    .expect("grants");

    // v2 changes report only: dev restages and serves just that.
    objects(&fx, "v1", "v2");
    let d2 = stage(&fx, &db.url, "_dev");
    promote(&fx, &db.url, &["--schema-suffix", "_dev"]);
    assert_eq!(
        one(&db.url, "SELECT version FROM report_dev.summary").await,
        "v2"
    );
    assert_eq!(
        serves(&db.url, "report_dev.summary").await,
        format!("report__sy_{d2}")
    );
    assert_eq!(
        serves(&db.url, "api_dev.totals").await,
        phys_api,
        "api did not change"
    );

    // prod from dev again: only report differs, so only report moves.
    let before = e2e::postgres::physical_objects(&db.url).await;
    let p = promote(
        &fx,
        &db.url,
        &["--schema-suffix", "_prod", "--from-suffix", "_dev"],
    );
    assert_eq!(p["live"].as_object().map(|m| m.len()), Some(1), "{p:#}");
    assert_eq!(p["retained"]["report"], format!("report__sy_{d1}").as_str());
    assert_eq!(
        e2e::postgres::physical_objects(&db.url).await,
        before,
        "nothing rebuilt"
    );
    assert_eq!(
        one(&db.url, "SELECT version FROM report_prod.summary").await,
        "v2"
    );
    let as_reader = format!(
        "SET ROLE {reader}; SELECT api_prod.describe() || '/' || (SELECT count(*) FROM api_prod.big_orders)"
    );
    assert_eq!(one(&db.url, &as_reader).await, "v1:2/2", "grants survive");

    // dev moves on three more times; its retire never drops a set prod still serves.
    for version in ["v3", "v4", "v5"] {
        objects(&fx, "v1", version);
        stage(&fx, &db.url, "_dev");
        promote(&fx, &db.url, &["--schema-suffix", "_dev"]);
    }
    assert_eq!(
        one(&db.url, "SELECT version FROM report_dev.summary").await,
        "v5"
    );
    assert_eq!(
        one(&db.url, "SELECT version FROM report_prod.summary").await,
        "v2"
    );
    assert_eq!(
        one(
            &db.url,
            &format!("SELECT count(*) FROM pg_namespace WHERE nspname = 'report__sy_{d1}'")
        )
        .await,
        "1",
        "prod's retained set stays while prod retains it"
    );
    assert_eq!(
        one(
            &db.url,
            "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^report__sy_'"
        )
        .await,
        "5",
        "d1 (prod retains it), d2 (prod serves it), and dev's live set with two retained"
    );

    // A change to api restages report too: report's views bind to api's set by OID.
    objects(&fx, "v6", "v5");
    let staged = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["stage", "--json", "--schema-suffix", "_dev"],
    )));
    assert_eq!(
        staged["schemas"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["api".to_string(), "report".to_string()]),
        "{staged:#}"
    );
    objects(&fx, "v1", "v5");

    // Roll prod back: v1's report set serves again; no physical object changes.
    let before = e2e::postgres::physical_objects(&db.url).await;
    let rolled = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["rollback", "--json", "--schema-suffix", "_prod"],
    )));
    assert_eq!(rolled["deployment"], d1.as_str());
    assert_eq!(
        one(&db.url, "SELECT version FROM report_prod.summary").await,
        "v1"
    );
    assert_eq!(
        serves(&db.url, "report_prod.summary").await,
        format!("report__sy_{d1}")
    );
    assert_eq!(
        e2e::postgres::physical_objects(&db.url).await,
        before,
        "nothing rebuilt"
    );
    assert_eq!(
        one(&db.url, &as_reader).await,
        "v1:2/2",
        "grants survive rollback"
    );
    assert_eq!(
        one(&db.url, "SELECT version FROM report_dev.summary").await,
        "v5",
        "dev untouched"
    );
}

#[tokio::test]
async fn verify_failing_after_a_repoint_points_the_layers_back() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    stage(&fx, &db.url, "_dev");
    promote(&fx, &db.url, &["--schema-suffix", "_dev"]);
    promote(
        &fx,
        &db.url,
        &["--schema-suffix", "_prod", "--from-suffix", "_dev"],
    );
    objects(&fx, "v2", "v2");
    let d2 = stage(&fx, &db.url, "_dev");
    promote(&fx, &db.url, &["--schema-suffix", "_dev"]);

    // Verify passes on dev, then the flag turns; prod's repoint verifies and fails.
    rows(&db.url, "UPDATE shop.flags SET ok = false")
        .await
        .expect("flag");
    let out = output(&mut switchyard_on(
        &fx,
        &db.url,
        &[
            "promote",
            "--json",
            "--schema-suffix",
            "_prod",
            "--from-suffix",
            "_dev",
        ],
    ));
    assert_eq!(out.status.code(), Some(8), "rolled back: {out:?}");
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    assert!(
        doc["failure"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("division by zero"),
        "{doc:#}"
    );
    assert_eq!(one(&db.url, "SELECT api_prod.version()").await, "v1");
    // dev's set is dev's: a failed promotion into prod does not drop it.
    assert_eq!(one(&db.url, "SELECT api_dev.version()").await, "v2");
    assert_eq!(
        one(
            &db.url,
            &format!("SELECT count(*) FROM pg_namespace WHERE nspname = 'api__sy_{d2}'")
        )
        .await,
        "1"
    );
    assert_eq!(
        one(
            &db.url,
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%\\_prod\\_\\_sy\\_old\\_%'"
        )
        .await,
        "2",
        "only the swap back's retired layers wait (for readers in flight) until the next repoint"
    );
}

#[tokio::test]
async fn guards_block_a_promotion_between_layers_with_their_reasons() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    let blocked = |args: &[&str], guard: &str, says: &str| {
        let mut all = vec!["promote", "--json", "--schema-suffix", "_prod"];
        all.extend_from_slice(args);
        let out = output(&mut switchyard_on(&fx, &db.url, &all));
        assert_eq!(out.status.code(), Some(7), "{guard}: {out:?}");
        let doc = json(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(doc["guard"], guard, "{doc:#}");
        assert!(
            doc["error"].as_str().unwrap_or_default().contains(says),
            "{guard}: {doc:#}"
        );
    };
    blocked(
        &["--from-suffix", "_dev"],
        "GuardSourceNotFinalized",
        "serves nothing yet",
    );
    stage(&fx, &db.url, "_dev");
    promote(&fx, &db.url, &["--schema-suffix", "_dev"]);
    promote(
        &fx,
        &db.url,
        &["--schema-suffix", "_prod", "--from-suffix", "_dev"],
    );

    // dev serves v2 of both schemas; report depends on api.
    objects(&fx, "v2", "v2");
    stage(&fx, &db.url, "_dev");
    promote(&fx, &db.url, &["--schema-suffix", "_dev"]);
    blocked(
        &["--from-suffix", "_dev", "--select", "api"],
        "GuardPartialPromotion",
        "partial",
    );
    blocked(
        &[
            "--from-suffix",
            "_dev",
            "--select",
            "report.summary",
            "--allow-partial-promotion",
        ],
        "GuardStaleUpstreams",
        "api.big_orders",
    );
    // With its upstreams pulled in, the selection moves both.
    let p = promote(
        &fx,
        &db.url,
        &[
            "--schema-suffix",
            "_prod",
            "--from-suffix",
            "_dev",
            "--select",
            "report.summary",
            "--allow-partial-promotion",
            "--include-stale-upstreams",
        ],
    );
    assert_eq!(p["live"].as_object().map(|m| m.len()), Some(2), "{p:#}");
    assert_eq!(
        one(&db.url, "SELECT version FROM report_prod.summary").await,
        "v2"
    );

    // The project moved on past what dev serves: dev is stale.
    objects(&fx, "v3", "v2");
    blocked(&["--from-suffix", "_dev"], "GuardSourceStale", "api");
    assert_eq!(one(&db.url, "SELECT api_prod.version()").await, "v2");
}

#[tokio::test]
async fn a_schema_in_the_way_of_a_layer_and_an_unservable_object_are_refused() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    rows(
        &db.url,
        "CREATE SCHEMA report_dev; CREATE TABLE report_dev.mine (x int)",
    )
    .await
    .expect("someone's schema");
    stage(&fx, &db.url, "_dev");
    let out = output(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--json", "--schema-suffix", "_dev"],
    ));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    assert!(
        doc["error"]
            .as_str()
            .unwrap_or_default()
            .contains("report_dev exists and is not a layer"),
        "{doc:#}"
    );
    assert_eq!(
        one(&db.url, "SELECT count(*) FROM report_dev.mine").await,
        "0",
        "untouched"
    );
    assert_eq!(
        one(
            &db.url,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'api_dev'"
        )
        .await,
        "0",
        "nothing was swapped"
    );

    // A trigger function cannot be wrapped: the stage fails naming its file.
    fx.write(
        "objects/api/total.sql",
        "CREATE FUNCTION api.total() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n",
    );
    let out = output(&mut switchyard_on(
        &fx,
        &db.url,
        &["stage", "--json", "--schema-suffix", "_qa"],
    ));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    assert!(
        doc["failure"]["path"]
            .as_str()
            .unwrap_or_default()
            .ends_with("objects/api/total.sql"),
        "{doc:#}"
    );
    assert!(
        doc["failure"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot take or return trigger"),
        "{doc:#}"
    );
}

#[tokio::test]
async fn a_switchyard_schema_from_before_layers_and_workflow_is_upgraded_step_by_step() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    // As a database last written by switchyard before steps 3 (layers) and 4 (workflow).
    rows(
        &db.url,
        "DROP TABLE switchyard.layers, switchyard.workflow, switchyard.workflow_events; \
         DELETE FROM switchyard.releases WHERE version IN (3, 4); \
         ALTER TABLE switchyard.schema_pointers DROP CONSTRAINT schema_pointers_role_check; \
         ALTER TABLE switchyard.schema_pointers ADD CONSTRAINT schema_pointers_role_check CHECK (role IN ('live', 'retained', 'staged'))",
    )
    .await
    .expect("downgrade");
    // The next writer (here a stage) brings it up to date, in order.
    stage(&fx, &db.url, "_dev");
    assert_eq!(
        one(
            &db.url,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM switchyard.releases"
        )
        .await,
        "1,2,3,4,5"
    );
    assert_eq!(
        one(&db.url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'switchyard' AND tablename IN ('layers', 'workflow', 'workflow_events')").await,
        "3"
    );
    // The shared role exists again: layers work on the upgraded database.
    promote(&fx, &db.url, &["--schema-suffix", "_dev"]);
    assert_eq!(one(&db.url, "SELECT api_dev.version()").await, "v1");
}
