//! `objects/<schema>/verify.sql` sees what is being verified, inside dollar-quoted bodies
//! too (issue #12): a `DO` block and a function created and called in the verify read the
//! staged set before the swap, the live set after it, and the layer for a suffix.

use e2e::postgres::{self, one};
use e2e::tools::{Fixture, json, output, run_ok, switchyard_on};

/// A project whose blue-green `api` holds `customers`, with the column `tier` only from
/// version 2 on, and a verify that passes only when the version it reads has `tier`:
/// one check in a `DO` block, one in a function created and called on the spot.
fn project() -> Fixture {
    let fx = Fixture::shop_with_api(
        "CREATE TABLE shop.customers (id int PRIMARY KEY, spent int NOT NULL);\n\
         INSERT INTO shop.customers VALUES (1, 5), (2, 500);\n",
        "customers",
    );
    fx.write(
        "objects/api/verify.sql",
        "DO $$ BEGIN\n\
           IF NOT EXISTS (SELECT 1 FROM pg_views WHERE viewname = 'customers') THEN RAISE EXCEPTION 'customers missing'; END IF;\n\
           PERFORM tier FROM api.customers;\n\
         END $$;\n\
         CREATE FUNCTION pg_temp.big() RETURNS bigint LANGUAGE sql AS $f$ SELECT count(*) FROM api.customers WHERE tier = 'big' $f$;\n\
         SELECT 1 / pg_temp.big()::int;\n",
    );
    fx
}

fn write_version(fx: &Fixture, version: u32) {
    let view = if version >= 2 {
        "CREATE VIEW api.customers AS SELECT id, CASE WHEN spent > 100 THEN 'big' ELSE 'small' END AS tier FROM shop.customers;\n"
    } else {
        "CREATE VIEW api.customers AS SELECT id FROM shop.customers;\n"
    };
    fx.write("objects/api/customers.sql", view);
}

fn stage(fx: &Fixture, url: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["stage", "--json"];
    args.extend_from_slice(extra);
    output(&mut switchyard_on(fx, url, &args))
}

#[tokio::test]
async fn a_do_block_in_verify_checks_the_staged_set_not_the_live_one() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project();
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));

    // First stage, nothing live: the body must read the staging copy.
    write_version(&fx, 2);
    let out = stage(&fx, &db.url, &[]);
    assert!(
        out.status.success(),
        "first stage: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    run_ok(&mut switchyard_on(&fx, &db.url, &["promote"]));
    assert_eq!(
        one(
            &db.url,
            "SELECT count(*) FROM api.customers WHERE tier = 'big'"
        )
        .await,
        "1"
    );

    // Version 1 lacks `tier`: verify must fail against it although live (version 2) passes.
    write_version(&fx, 1);
    let out = stage(&fx, &db.url, &[]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "a stage of version 1 must fail verify"
    );
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(doc["verifying"], true, "{doc}");
    assert!(
        doc["failure"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("tier"),
        "{doc}"
    );
    assert_eq!(
        one(
            &db.url,
            "SELECT string_agg(nspname, ',') FROM pg_namespace WHERE nspname LIKE 'api%'"
        )
        .await,
        "api",
        "the failed staging copy is gone; the live set is untouched"
    );
    assert_eq!(
        one(
            &db.url,
            "SELECT count(*) FROM api.customers WHERE tier = 'big'"
        )
        .await,
        "1"
    );
}

#[tokio::test]
async fn a_do_block_in_verify_reads_the_layer_of_a_suffixed_environment() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project();
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    write_version(&fx, 2);
    let out = stage(&fx, &db.url, &["--schema-suffix", "_dev"]);
    assert!(
        out.status.success(),
        "stage for _dev: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // After the swap, verify runs against the layer `api_dev`, again through the bodies.
    run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["promote", "--schema-suffix", "_dev"],
    ));
    assert_eq!(
        one(
            &db.url,
            "SELECT count(*) FROM api_dev.customers WHERE tier = 'big'"
        )
        .await,
        "1"
    );
    write_version(&fx, 1);
    let out = stage(&fx, &db.url, &["--schema-suffix", "_dev"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "version 1 fails verify in its layer too"
    );
    assert_eq!(
        json(&String::from_utf8_lossy(&out.stdout))["verifying"],
        true
    );
}
