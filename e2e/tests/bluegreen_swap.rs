//! Blue/green through the `switchyard` CLI against a throwaway PostgreSQL (issue #5):
//! stage → promote → rollback → promote again with catalog assertions, name binding of
//! views, materialized views and plpgsql / SQL functions before and after the swap,
//! grants surviving the swap, a failing object, verify-after-swap failure, and guards.

use e2e::postgres::{self, one, snapshot};
use e2e::tools::{Fixture, json, output, run_ok, switchyard_on};
use serde_json::Value;

/// A project with a stable `shop` schema (a table), a blue-green `api` schema with views
/// over views, a materialized view with an index, plpgsql and SQL functions, and a verify
/// script reading from a flag table so tests can make verify fail on purpose.
fn project(version: &str) -> Fixture {
    let fx = Fixture::shop_with_api(
        "CREATE TABLE shop.orders (id int PRIMARY KEY, amount int NOT NULL);\n\
         INSERT INTO shop.orders VALUES (1, 5), (2, 20), (3, 30);\n\
         CREATE TABLE shop.flags (ok boolean NOT NULL);\nINSERT INTO shop.flags VALUES (true);\n",
        "orders",
    );
    write_objects(&fx, version);
    fx
}

fn write_objects(fx: &Fixture, version: &str) {
    fx.write(
        "objects/api/orders_v.sql",
        "CREATE VIEW api.orders_v AS SELECT id, amount FROM shop.orders;\n",
    );
    fx.write("objects/api/big_orders.sql", "-- a view over a view\nCREATE VIEW api.big_orders AS SELECT * FROM api.orders_v WHERE amount > 10;\n");
    fx.write(
        "objects/api/totals.sql",
        "CREATE MATERIALIZED VIEW api.totals AS SELECT count(*) AS n, sum(amount) AS total FROM big_orders;\n\
         CREATE UNIQUE INDEX totals_n ON api.totals (n);\n",
    );
    fx.write("objects/api/version.sql", &format!("CREATE FUNCTION api.version() RETURNS text LANGUAGE sql AS $$ SELECT '{version}'::text $$;\n"));
    fx.write(
        "objects/api/describe.sql",
        "CREATE FUNCTION api.describe() RETURNS text LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN api.version() || ':' || (SELECT count(*) FROM api.big_orders);\nEND\n$$;\n",
    );
    fx.write(
        "objects/api/verify.sql",
        "SELECT 1 / (SELECT count(*)::int FROM shop.flags WHERE ok);\nSELECT n FROM api.totals;\n",
    );
}

#[tokio::test]
async fn stage_promote_rollback_promote_again_with_binding_and_grants() {
    let db = postgres::server().fresh_db().await.expect("db");
    let reader = format!("reader_{}", db.name);
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));

    // Stage 1: a staging copy, nothing live yet.
    let staged = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["stage", "--json"],
    )));
    let d1 = staged["deployment"]
        .as_str()
        .expect("deployment")
        .to_string();
    let s1 = format!("api__sy_{d1}");
    assert_eq!(staged["schemas"]["api"], s1.as_str());
    assert_eq!(api_schemas(&db.url).await, [s1.as_str()]);
    // During staging the functions resolve to the staging copy.
    assert_eq!(
        one(&db.url, &format!("SELECT {s1}.describe()")).await,
        "v1:2"
    );
    assert_eq!(
        one(&db.url, &format!("SELECT total FROM {s1}.totals")).await,
        "50"
    );

    // A dry run shows the plan an approval would name, the same as `plan --db`'s, and
    // changes nothing.
    let dry = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--dry-run", "--json"],
    )));
    let planned = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["plan", "--json"],
    )));
    let digest = dry["plan"]["digest"].as_str().expect("a digest");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{dry:#}"
    );
    assert_eq!(planned["digest"], digest, "{planned:#}");
    assert!(
        dry["plan"]["schemas"]["api"]["added"]
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o == "describe")),
        "{dry:#}"
    );
    assert_eq!(api_schemas(&db.url).await, [s1.as_str()]);

    // Promote 1.
    let promoted = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--json"],
    )));
    assert_eq!(promoted["deployment"], d1.as_str());
    assert_eq!(api_schemas(&db.url).await, ["api"]);
    assert_eq!(one(&db.url, "SELECT api.describe()").await, "v1:2");
    assert_eq!(
        one(&db.url, "SELECT count(*) FROM api.big_orders").await,
        "2"
    );
    assert_eq!(
        one(&db.url, "SELECT array_to_string(proconfig, ',') FROM pg_proc WHERE oid = 'api.describe'::regproc").await,
        "search_path=api, shop, public, pg_catalog, pg_temp"
    );

    // Grants on the live schema and its objects, then stage 2 with a new version.
    let admin = postgres::connect(&db.url).await.expect("connect");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {reader}; GRANT USAGE ON SCHEMA api TO {reader}; GRANT SELECT ON api.big_orders TO {reader}; \
             REVOKE EXECUTE ON FUNCTION api.version() FROM PUBLIC; GRANT EXECUTE ON FUNCTION api.version() TO {reader};"
        ))
        .await
        .expect("grants");
    write_objects(&fx, "v2");
    let staged = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["stage", "--json"],
    )));
    let d2 = staged["deployment"]
        .as_str()
        .expect("deployment")
        .to_string();
    let s2 = format!("api__sy_{d2}");
    assert_ne!(d1, d2);
    assert_eq!(
        one(&db.url, &format!("SELECT {s2}.describe()")).await,
        "v2:2",
        "staged plpgsql calls the staged version()"
    );
    assert_eq!(
        one(&db.url, "SELECT api.describe()").await,
        "v1:2",
        "live untouched while staged"
    );
    assert_eq!(
        one(&db.url, &format!("SELECT has_schema_privilege('{reader}', '{s2}', 'USAGE') AND has_table_privilege('{reader}', '{s2}.big_orders', 'SELECT') AND has_function_privilege('{reader}', '{s2}.version()', 'EXECUTE') AND NOT has_function_privilege('public', '{s2}.version()', 'EXECUTE')")).await,
        "t",
        "grants copied to the staging schema"
    );

    // Promote 2: the previous set is retained.
    run_ok(&mut switchyard_on(&fx, &db.url, &["promote"]));
    let r1 = format!("api__sy_{d1}");
    assert_eq!(api_schemas(&db.url).await, ["api", r1.as_str()]);
    assert_eq!(one(&db.url, "SELECT api.describe()").await, "v2:2");
    assert_eq!(
        one(&db.url, &format!("SELECT has_schema_privilege('{reader}', 'api', 'USAGE') AND has_table_privilege('{reader}', 'api.big_orders', 'SELECT') AND has_function_privilege('{reader}', 'api.version()', 'EXECUTE')")).await,
        "t",
        "grants survive the swap"
    );
    let status = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["status", "--json"],
    )));
    assert_eq!(status["live"]["api"], "api");
    assert_eq!(status["retained"][0]["deployment"], d1.as_str());
    assert_eq!(status["retained"][0]["schemas"]["api"], r1.as_str());

    // Rollback: the retained set is live again, nothing rebuilt.
    let before_oid = one(&db.url, &format!("SELECT '{r1}.big_orders'::regclass::oid")).await;
    let rolled = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["rollback", "--json"],
    )));
    assert_eq!(rolled["deployment"], d1.as_str());
    assert_eq!(one(&db.url, "SELECT api.describe()").await, "v1:2");
    assert_eq!(
        one(&db.url, "SELECT 'api.big_orders'::regclass::oid").await,
        before_oid,
        "same objects, renamed"
    );
    assert_eq!(api_schemas(&db.url).await, ["api", s2.as_str()]);

    // Promote again: the rolled-back-from set comes back.
    let again = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--json"],
    )));
    assert_eq!(again["deployment"], d2.as_str());
    assert_eq!(one(&db.url, "SELECT api.describe()").await, "v2:2");
    assert_eq!(one(&db.url, "SELECT total FROM api.totals").await, "50");
    assert_eq!(api_schemas(&db.url).await, ["api", r1.as_str()]);

    // Dry runs print SQL and change nothing.
    let before = snapshot(&db.url).await.expect("snapshot");
    let dry = run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["stage", "--redeploy-schema", "api", "--dry-run"],
    ));
    assert!(dry.contains("CREATE SCHEMA \"api__sy_<id>\""), "{dry}");
    let dry = run_ok(&mut switchyard_on(&fx, &db.url, &["rollback", "--dry-run"]));
    assert!(dry.contains("ALTER SCHEMA \"api\" RENAME TO"), "{dry}");
    assert_eq!(snapshot(&db.url).await.expect("snapshot"), before);
}

#[tokio::test]
async fn a_failing_object_drops_its_staging_and_leaves_live_untouched() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["promote"]));
    let before = snapshot(&db.url).await.expect("snapshot");

    fx.write(
        "objects/api/broken.sql",
        "\nCREATE VIEW api.broken AS SELECT no_such_column FROM shop.orders;\n",
    );
    let out = output(&mut switchyard_on(&fx, &db.url, &["stage", "--json"]));
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(doc["reason"], "StageFailed");
    assert!(
        doc["failure"]["path"]
            .as_str()
            .unwrap_or("")
            .ends_with("objects/api/broken.sql"),
        "{doc}"
    );
    assert_eq!(doc["failure"]["line"], 2);
    assert_eq!(
        snapshot(&db.url).await.expect("snapshot"),
        before,
        "staging dropped, live untouched"
    );

    // --keep-failed keeps it for debugging.
    let out = output(&mut switchyard_on(
        &fx,
        &db.url,
        &["stage", "--keep-failed"],
    ));
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(api_schemas(&db.url).await.len(), 2, "live + kept staging");
    // A failed staging is not promotable.
    let out = output(&mut switchyard_on(&fx, &db.url, &["promote"]));
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GuardSourceNotFinalized"));
}

#[tokio::test]
async fn verify_failure_after_the_swap_swaps_back() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["promote"]));
    write_objects(&fx, "v2");
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));
    // Verify passed against staging; now make it fail against live.
    let admin = postgres::connect(&db.url).await.expect("connect");
    admin
        .batch_execute("UPDATE shop.flags SET ok = false")
        .await
        .expect("flag");
    let out = output(&mut switchyard_on(&fx, &db.url, &["promote", "--json"]));
    assert_eq!(
        out.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(doc["reason"], "VerifyFailed");
    assert!(
        doc["failure"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("division by zero"),
        "{doc}"
    );
    assert_eq!(
        one(&db.url, "SELECT api.describe()").await,
        "v1:2",
        "the previous set is live again"
    );
    assert_eq!(api_schemas(&db.url).await, ["api"]);
}

#[tokio::test]
async fn guards_block_with_their_reason() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));

    let blocked = |args: &[&str], reason: &str| {
        let out = output(&mut switchyard_on(&fx, &db.url, args));
        assert_eq!(
            out.status.code(),
            Some(7),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    };
    blocked(&["promote"], "GuardSourceNotFinalized");
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));

    // Locked by another session.
    let holder = postgres::connect(&db.url).await.expect("connect");
    holder
        .batch_execute("SELECT pg_advisory_lock(1398359116, hashtext('shop'))")
        .await
        .expect("lock");
    blocked(&["promote"], "GuardTargetLocked");
    holder
        .batch_execute("SELECT pg_advisory_unlock(1398359116, hashtext('shop'))")
        .await
        .expect("unlock");

    // Objects changed since staging.
    write_objects(&fx, "v9");
    blocked(&["promote"], "GuardSourceStale");
    write_objects(&fx, "v1");

    run_ok(&mut switchyard_on(&fx, &db.url, &["promote"]));
    assert_eq!(one(&db.url, "SELECT api.version()").await, "v1");
}

#[tokio::test]
async fn partial_promotion_with_and_without_stale_upstreams() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut fx = Fixture::new("shop");
    fx.write(
        "switchyard.yaml",
        "project: shop\nschemas:\n  api: blue-green\n  report: blue-green\n  ledger: blue-green\n",
    );
    fx.change(
        "base",
        &[],
        "CREATE TABLE public.t (x int);\n",
        "DROP TABLE public.t;\n",
        "SELECT 1;\n",
    );
    fx.write(
        "objects/report/r.sql",
        "CREATE VIEW report.r AS SELECT x FROM public.t;\n",
    );
    fx.write(
        "objects/api/v.sql",
        "CREATE VIEW api.v AS SELECT x FROM report.r;\n",
    );
    fx.write(
        "objects/ledger/l.sql",
        "CREATE VIEW ledger.l AS SELECT 1 AS one;\n",
    );
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));

    let out = output(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--select", "api"],
    ));
    assert_eq!(out.status.code(), Some(7));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("GuardStaleUpstreams"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("report.r"));

    let out = output(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--select", "ledger"],
    ));
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GuardPartialPromotion"));

    let promoted = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &[
            "promote",
            "--select",
            "api.v",
            "--include-stale-upstreams",
            "--allow-partial-promotion",
            "--json",
        ],
    )));
    let live: Vec<&String> = promoted["live"].as_object().expect("live").keys().collect();
    assert_eq!(live, ["api", "report"]);
    assert_eq!(one(&db.url, "SELECT count(*) FROM api.v").await, "0");
    assert_eq!(
        one(&db.url, "SELECT to_regnamespace('ledger') IS NULL").await,
        "t",
        "ledger not promoted"
    );
}

#[tokio::test]
async fn diff_lists_changes_and_objects_per_schema() {
    let db = postgres::server().fresh_db().await.expect("db");
    let other = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");

    // Nothing deployed: the change to deploy and every object added.
    let diff = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["diff", "--json"],
    )));
    assert_eq!(diff["changes"], serde_json::json!(["schema"]));
    let added: Vec<&str> = diff["schemas"]["api"]["added"]
        .as_array()
        .expect("added")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        added,
        ["big_orders", "describe", "orders_v", "totals", "version"]
    );

    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["promote"]));
    write_objects(&fx, "v2");
    std::fs::remove_file(fx.path().join("objects/api/totals.sql")).expect("remove");
    fx.write(
        "objects/api/extra.sql",
        "CREATE VIEW api.extra AS SELECT 1 AS one;\n",
    );
    let diff = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["diff", "--json"],
    )));
    assert_eq!(diff["changes"], serde_json::json!([]));
    assert_eq!(
        diff["schemas"]["api"]["added"],
        serde_json::json!(["extra"])
    );
    assert_eq!(
        diff["schemas"]["api"]["changed"],
        serde_json::json!(["version"])
    );
    assert_eq!(
        diff["schemas"]["api"]["removed"],
        serde_json::json!(["totals"])
    );

    // Between two databases: what promoting --db into --against would change.
    let diff = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["diff", "--against", &other.url, "--json"],
    )));
    assert_eq!(diff["changes"], serde_json::json!(["schema"]));
    let added: Vec<&str> = diff["schemas"]["api"]["added"]
        .as_array()
        .expect("added")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        added,
        ["big_orders", "describe", "orders_v", "totals", "version"]
    );
}

// NB: multi-threaded, so the transaction holding the row commits while the CLI runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_blocked_by_a_long_transaction_times_out_and_retries() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["promote"]));
    write_objects(&fx, "v2");
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));

    // Another transaction updates the live schema's catalog row and holds it for a while:
    // the rename must not queue behind it (lock_timeout), and succeeds once it is gone.
    let holder = postgres::connect(&db.url).await.expect("connect");
    holder
        .batch_execute("BEGIN; GRANT USAGE ON SCHEMA api TO PUBLIC;")
        .await
        .expect("hold");
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        holder.batch_execute("COMMIT").await.expect("commit");
    });
    let out = run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--lock-timeout", "200", "--json"],
    ));
    release.await.expect("release");
    let report = json(&out);
    assert!(report["attempts"].as_u64().unwrap_or(0) >= 2, "{report}");
    assert_eq!(one(&db.url, "SELECT api.version()").await, "v2");
}

/// A concurrent GRANT on the live schema commits while the swap waits for its row:
/// PostgreSQL then fails the rename with "tuple concurrently updated" (XX000) instead of
/// a lock timeout, and the swap must retry rather than give up.
// NB: multi-threaded, so the transaction holding the row commits while the CLI runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_row_updated_under_a_waiting_swap_is_retried() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["promote"]));
    write_objects(&fx, "v2");
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));
    let holder = postgres::connect(&db.url).await.expect("connect");
    holder
        .batch_execute("BEGIN; GRANT USAGE ON SCHEMA api TO PUBLIC;")
        .await
        .expect("hold");
    // Commits well inside the swap's lock_timeout, while the rename waits on the row.
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        holder.batch_execute("COMMIT").await.expect("commit");
    });
    let out = run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--lock-timeout", "5000", "--json"],
    ));
    release.await.expect("release");
    let report = json(&out);
    assert_eq!(report["attempts"], 2, "{report}");
    assert_eq!(one(&db.url, "SELECT api.version()").await, "v2");
}

#[tokio::test]
async fn candidates_stage_side_by_side_and_promote_by_deployment_id() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    let first = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["stage", "--json"],
    )));
    write_objects(&fx, "v2");
    let second = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["stage", "--json"],
    )));
    let (d1, d2) = (
        first["deployment"].as_str().expect("d1"),
        second["deployment"].as_str().expect("d2"),
    );
    assert_eq!(
        api_schemas(&db.url).await,
        [format!("api__sy_{d1}"), format!("api__sy_{d2}")]
    );
    assert_eq!(
        one(
            &db.url,
            &format!("SELECT api__sy_{d1}.version() || api__sy_{d2}.version()")
        )
        .await,
        "v1v2"
    );

    // The older candidate no longer matches the project: stale.
    let out = output(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--deployment", d1],
    ));
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GuardSourceStale"));
    // Back to v1 on disk, the first candidate is promotable by id.
    write_objects(&fx, "v1");
    let promoted = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--deployment", d1, "--json"],
    )));
    assert_eq!(promoted["deployment"], d1);
    assert_eq!(one(&db.url, "SELECT api.version()").await, "v1");
    assert_eq!(
        api_schemas(&db.url).await,
        ["api".to_string(), format!("api__sy_{d2}")]
    );
}

#[tokio::test]
async fn retained_sets_beyond_keep_are_dropped_unless_something_outside_depends_on_them() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project("v1");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    let mut ids = Vec::new();
    for version in ["v1", "v2", "v3"] {
        write_objects(&fx, version);
        ids.push(
            json(&run_ok(&mut switchyard_on(
                &fx,
                &db.url,
                &["stage", "--json"],
            )))["deployment"]
                .as_str()
                .expect("id")
                .to_string(),
        );
        run_ok(&mut switchyard_on(
            &fx,
            &db.url,
            &["promote", "--keep", "1"],
        ));
    }
    // v1's set went when v3 came in; v2's is the one retained.
    assert_eq!(
        api_schemas(&db.url).await,
        ["api".to_string(), format!("api__sy_{}", ids[1])]
    );

    // Something outside depends on the retained set: it is kept and reported.
    let admin = postgres::connect(&db.url).await.expect("connect");
    admin
        .batch_execute(&format!(
            "CREATE VIEW public.pinned AS SELECT * FROM api__sy_{}.orders_v",
            ids[1]
        ))
        .await
        .expect("pin");
    write_objects(&fx, "v4");
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));
    let report = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--keep", "1", "--json"],
    )));
    let kept = &report["kept_for_dependents"][format!("api__sy_{}", ids[1])];
    assert!(kept.to_string().contains("pinned"), "{report}");
    assert_eq!(
        api_schemas(&db.url).await.len(),
        3,
        "live, the newest retained, and the pinned one"
    );
}

/// The blue-green schemas of the test projects (`api…`, `report…`), by name.
async fn api_schemas(url: &str) -> Vec<String> {
    e2e::postgres::schemas_matching(url, "^(api|report)").await
}
