//! One registry, two tools: what the real Sqitch deploys, switchyard reads and continues,
//! and the other way round.

use e2e::postgres::{self, rows};
use e2e::tools::{Fixture, output, run_ok, sqitch, sqitch_target, switchyard};
use serde_json::Value;

fn switchyard_json(fx: &Fixture, url: &str, args: &[&str]) -> Value {
    let mut command = switchyard();
    command
        .args(args)
        .arg("--json")
        .arg("--project")
        .arg(fx.path())
        .arg("--db")
        .arg(url);
    let stdout = run_ok(&mut command);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn project_a() -> Fixture {
    let mut fx = Fixture::new("interop_a");
    fx.table("users");
    fx.change(
        "user_emails",
        &["users"],
        "BEGIN;\nALTER TABLE users ADD COLUMN email text;\nCOMMIT;\n",
        "BEGIN;\nALTER TABLE users DROP COLUMN email;\nCOMMIT;\n",
        "SELECT email FROM users WHERE false;\n",
    );
    fx.tag("v1.0");
    fx.table("audit");
    fx
}

#[tokio::test]
async fn switchyard_continues_a_database_sqitch_deployed() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut fx = project_a();
    run_ok(
        sqitch(fx.path())
            .args(["deploy", "--verify"])
            .arg(sqitch_target(&db.url)),
    );

    let status = switchyard_json(&fx, &db.url, &["status"]);
    assert_eq!(status["up_to_date"], true, "{status}");
    assert_eq!(
        status["deployed"],
        serde_json::json!(["users", "user_emails", "audit"])
    );
    assert_eq!(status["last_change"]["name"], "audit");

    fx.table("orders");
    fx.change(
        "order_users",
        &["orders", "users"],
        "ALTER TABLE orders ADD COLUMN user_id int;\n",
        "ALTER TABLE orders DROP COLUMN user_id;\n",
        "SELECT user_id FROM orders WHERE false;\n",
    );
    let deployed = switchyard_json(&fx, &db.url, &["deploy", "--verify"]);
    assert_eq!(
        deployed["deployed"],
        serde_json::json!(["orders", "order_users"])
    );

    // Sqitch agrees: nothing to deploy, its verify passes, its log shows our events.
    let status = run_ok(sqitch(fx.path()).arg("status").arg(sqitch_target(&db.url)));
    assert!(
        status.contains("Nothing to deploy (up-to-date)"),
        "{status}"
    );
    assert!(status.contains("order_users"), "{status}");
    run_ok(sqitch(fx.path()).arg("verify").arg(sqitch_target(&db.url)));
    let log = run_ok(
        sqitch(fx.path())
            .args(["log", "--format", "oneline"])
            .arg(sqitch_target(&db.url)),
    );
    assert!(log.contains("order_users"), "{log}");
}

#[tokio::test]
async fn sqitch_reads_and_reverts_what_switchyard_deployed() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project_a();
    switchyard_json(&fx, &db.url, &["deploy", "--verify"]);

    let status = run_ok(sqitch(fx.path()).arg("status").arg(sqitch_target(&db.url)));
    assert!(
        status.contains("Nothing to deploy (up-to-date)"),
        "{status}"
    );
    assert!(status.contains("# Name:     audit"), "{status}");

    let log = run_ok(
        sqitch(fx.path())
            .args(["log", "--format", "format:%e %n %t"])
            .arg(sqitch_target(&db.url)),
    );
    // Sqitch's %t pads tags with a space of its own; compare words.
    let lines: Vec<String> = log
        .lines()
        .filter(|l| !l.starts_with("On database") && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        ["deploy audit", "deploy user_emails @v1.0", "deploy users"],
        "{log}"
    );

    // Tags and dependencies are recorded as Sqitch records them.
    assert_eq!(
        rows(&db.url, "SELECT tag FROM sqitch.tags")
            .await
            .expect("q"),
        ["@v1.0"]
    );
    assert_eq!(
        rows(&db.url, "SELECT d.type || ' ' || d.dependency || ' ' || (d.dependency_id = u.change_id) FROM sqitch.dependencies d, sqitch.changes u WHERE u.change = 'users'")
            .await
            .expect("q"),
        ["require users true"]
    );

    run_ok(
        sqitch(fx.path())
            .args(["revert", "-y", "--to", "@v1.0"])
            .arg(sqitch_target(&db.url)),
    );
    let status = switchyard_json(&fx, &db.url, &["status"]);
    assert_eq!(status["pending"], serde_json::json!(["audit"]));
    run_ok(
        sqitch(fx.path())
            .args(["revert", "-y"])
            .arg(sqitch_target(&db.url)),
    );
    let status = switchyard_json(&fx, &db.url, &["status"]);
    assert_eq!(status["deployed"], serde_json::json!([]));
    assert!(
        rows(
            &db.url,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        .await
        .expect("q")
        .is_empty()
    );

    // And back: sqitch deploys into the registry switchyard created.
    let out = output(sqitch(fx.path()).arg("deploy").arg(sqitch_target(&db.url)));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = switchyard_json(&fx, &db.url, &["status"]);
    assert_eq!(status["up_to_date"], true);
}

#[tokio::test]
async fn registry_created_by_switchyard_matches_sqitchs_layout() {
    let ours = postgres::server().fresh_db().await.expect("db");
    let theirs = postgres::server().fresh_db().await.expect("db");
    let fx = project_a();
    switchyard_json(&fx, &ours.url, &["deploy"]);
    run_ok(
        sqitch(fx.path())
            .arg("deploy")
            .arg(sqitch_target(&theirs.url)),
    );
    let layout = "SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull
                    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'sqitch' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1";
    let constraints =
        "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
                         FROM pg_constraint WHERE connamespace = 'sqitch'::regnamespace ORDER BY 1";
    assert_eq!(
        rows(&ours.url, layout).await.expect("q"),
        rows(&theirs.url, layout).await.expect("q")
    );
    assert_eq!(
        rows(&ours.url, constraints).await.expect("q"),
        rows(&theirs.url, constraints).await.expect("q")
    );
    let version = "SELECT version FROM sqitch.releases";
    assert_eq!(
        rows(&ours.url, version).await.expect("q"),
        rows(&theirs.url, version).await.expect("q")
    );
    // Same change ids, same script hashes.
    let ids =
        "SELECT change || ' ' || change_id || ' ' || script_hash FROM sqitch.changes ORDER BY 1";
    assert_eq!(
        rows(&ours.url, ids).await.expect("q"),
        rows(&theirs.url, ids).await.expect("q")
    );
}

#[tokio::test]
async fn a_registry_at_version_1_0_is_upgraded_as_sqitch_upgrades_it() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut fx = project_a();
    run_ok(sqitch(fx.path()).arg("deploy").arg(sqitch_target(&db.url)));
    // Take the registry back to 1.0: script_hash unique on its own, release 1.0.
    postgres::connect(&db.url)
        .await
        .expect("connect")
        .batch_execute(
            "ALTER TABLE sqitch.changes DROP CONSTRAINT changes_project_script_hash_key;
             ALTER TABLE sqitch.changes ADD CONSTRAINT changes_script_hash_key UNIQUE (script_hash);
             UPDATE sqitch.releases SET version = 1.0;",
        )
        .await
        .expect("downgrade");
    fx.table("orders");
    switchyard_json(&fx, &db.url, &["deploy"]);
    assert_eq!(
        rows(&db.url, "SELECT version FROM sqitch.releases ORDER BY 1")
            .await
            .expect("q"),
        ["1", "1.1"]
    );
    assert_eq!(
        rows(&db.url, "SELECT conname FROM pg_constraint WHERE conrelid = 'sqitch.changes'::regclass AND contype = 'u'").await.expect("q"),
        ["changes_project_script_hash_key"]
    );
    let status = run_ok(sqitch(fx.path()).arg("status").arg(sqitch_target(&db.url)));
    assert!(
        status.contains("Nothing to deploy (up-to-date)"),
        "{status}"
    );
}

#[tokio::test]
async fn a_reworked_plan_deploys_and_reverts_like_sqitch() {
    let project =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plans/reworked");
    let ours = postgres::server().fresh_db().await.expect("db");
    let theirs = postgres::server().fresh_db().await.expect("db");
    let mut command = switchyard();
    command
        .args(["deploy", "--verify", "--project"])
        .arg(&project)
        .arg("--db")
        .arg(&ours.url);
    run_ok(&mut command);
    run_ok(
        sqitch(&project)
            .args(["deploy", "--verify"])
            .arg(sqitch_target(&theirs.url)),
    );
    let registry = "SELECT c.change || ' ' || c.change_id || ' ' || coalesce(c.script_hash, '-') || ' ' || \
                           coalesce((SELECT string_agg(tag, ',' ORDER BY tag) FROM sqitch.tags t WHERE t.change_id = c.change_id), '')
                      FROM sqitch.changes c ORDER BY c.committed_at";
    let deployed = rows(&ours.url, registry).await.expect("q");
    assert_eq!(
        deployed.len(),
        7,
        "every instance of a reworked change is its own row: {deployed:#?}"
    );
    assert_eq!(deployed, rows(&theirs.url, registry).await.expect("q"));
    let events = "SELECT event || ' ' || change || ' ' || array_to_string(tags, ',') FROM sqitch.events ORDER BY committed_at";
    assert_eq!(
        rows(&ours.url, events).await.expect("q"),
        rows(&theirs.url, events).await.expect("q")
    );

    // Sqitch reverts what we deployed, through the reworked scripts, back to @v1.0.
    run_ok(
        sqitch(&project)
            .args(["revert", "-y", "--to", "@v1.0"])
            .arg(sqitch_target(&ours.url)),
    );
    let mut command = switchyard();
    command
        .args(["status", "--json", "--project"])
        .arg(&project)
        .arg("--db")
        .arg(&ours.url);
    let status: Value = serde_json::from_str(&run_ok(&mut command)).expect("json");
    assert_eq!(
        status["deployed"],
        serde_json::json!(["schema", "users", "insert_user"])
    );
    // And we deploy the rest again on top of Sqitch's revert.
    let mut command = switchyard();
    command
        .args(["deploy", "--project"])
        .arg(&project)
        .arg("--db")
        .arg(&ours.url);
    run_ok(&mut command);
    assert_eq!(rows(&ours.url, registry).await.expect("q").len(), 7);
}
