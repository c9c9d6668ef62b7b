//! The engine through the `switchyard` CLI against a throwaway PostgreSQL: deploy, status,
//! revert, verify, log, log-only, variables, locking and non-transactional scripts.

use e2e::postgres::{self, rows, snapshot};
use e2e::tools::{Fixture, json, output, run_ok, switchyard_on};
use serde_json::Value;

fn names(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

async fn public_tables(url: &str) -> Vec<String> {
    rows(
        url,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .await
    .expect("query")
}

#[tokio::test]
async fn deploy_status_revert_round_trip() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut fx = Fixture::new("shop");
    fx.table("users")
        .table("orders")
        .tag("v1")
        .table("invoices");

    let status = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["status", "--json"],
    )));
    assert_eq!(names(&status["pending"]), ["users", "orders", "invoices"]);
    assert_eq!(status["up_to_date"], false);

    let deployed = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["deploy", "--json"],
    )));
    assert_eq!(
        names(&deployed["deployed"]),
        ["users", "orders", "invoices"]
    );
    assert_eq!(
        public_tables(&db.url).await,
        ["invoices", "orders", "users"]
    );

    let status = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["status", "--json"],
    )));
    assert_eq!(status["project"], "shop");
    assert_eq!(names(&status["deployed"]), ["users", "orders", "invoices"]);
    assert!(names(&status["pending"]).is_empty());
    assert_eq!(status["up_to_date"], true);

    // A second deploy is a no-op.
    let again = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["deploy", "--json"],
    )));
    assert_eq!(again["up_to_date"], true);

    // Revert needs --to or --all.
    let refused = output(&mut switchyard_on(&fx, &db.url, &["revert"]));
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        public_tables(&db.url).await,
        ["invoices", "orders", "users"]
    );

    let reverted = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["revert", "--to", "@v1", "--json"],
    )));
    assert_eq!(names(&reverted["reverted"]), ["invoices"]);
    assert_eq!(public_tables(&db.url).await, ["orders", "users"]);

    let reverted = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["revert", "--all", "--json"],
    )));
    assert_eq!(names(&reverted["reverted"]), ["orders", "users"]);
    assert!(public_tables(&db.url).await.is_empty());

    let log = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["log", "--json"],
    )));
    let events: Vec<String> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap_or(""),
                e["change"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            "revert users",
            "revert orders",
            "revert invoices",
            "deploy invoices",
            "deploy orders",
            "deploy users"
        ]
    );
}

#[tokio::test]
async fn deploy_to_a_change_or_tag_stops_there() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut fx = Fixture::new("steps");
    fx.table("a").tag("first").table("b").table("c");
    let out = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["deploy", "--to", "@first", "--json"],
    )));
    assert_eq!(names(&out["deployed"]), ["a"]);
    let out = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["deploy", "--to", "b", "--json"],
    )));
    assert_eq!(names(&out["deployed"]), ["b"]);
    let status = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["status", "--json"],
    )));
    assert_eq!(names(&status["pending"]), ["c"]);
    // A target behind what is deployed is refused, with a hint.
    let behind = output(&mut switchyard_on(&fx, &db.url, &["deploy", "--to", "a"]));
    assert_eq!(behind.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&behind.stderr).contains("revert --to a"));
}

#[tokio::test]
async fn variables_reach_scripts_as_psql_variables() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut fx = Fixture::new("vars");
    fx.change(
        "settings",
        &[],
        "CREATE TABLE :\"table_name\" (v text);\nINSERT INTO :\"table_name\" VALUES (:'greeting');\n",
        "DROP TABLE :\"table_name\";\n",
        "",
    );
    run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &[
            "deploy",
            "--set",
            "table_name=Greetings",
            "--set",
            "greeting=it's here",
        ],
    ));
    assert_eq!(
        rows(&db.url, "SELECT v FROM \"Greetings\"")
            .await
            .expect("query"),
        ["it's here"]
    );
}

#[tokio::test]
async fn log_only_adopts_an_existing_database_without_running_scripts() {
    let db = postgres::server().fresh_db().await.expect("db");
    let client = postgres::connect(&db.url).await.expect("connect");
    client
        .batch_execute("CREATE TABLE legacy (id int); INSERT INTO legacy VALUES (1)")
        .await
        .expect("setup");
    let mut fx = Fixture::new("adopt");
    fx.table("legacy");
    let out = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["deploy", "--log-only", "--json"],
    )));
    assert_eq!(out["log_only"], true);
    assert_eq!(names(&out["deployed"]), ["legacy"]);
    // The table was not recreated: its row is still there.
    assert_eq!(
        rows(&db.url, "SELECT count(*) FROM legacy")
            .await
            .expect("query"),
        ["1"]
    );
    let status = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["status", "--json"],
    )));
    assert_eq!(status["up_to_date"], true);
}

#[tokio::test]
async fn each_change_commits_with_its_registry_rows() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut fx = Fixture::new("atomic");
    fx.table("good");
    fx.change(
        "half",
        &[],
        "BEGIN;\nCREATE TABLE half_done (id int);\nSELECT 1/0;\nCOMMIT;\n",
        "DROP TABLE IF EXISTS half_done;\n",
        "",
    );
    let out = output(&mut switchyard_on(
        &fx,
        &db.url,
        &["deploy", "--mode", "change", "--json"],
    ));
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(doc["failure"]["change"], "half");
    assert_eq!(doc["failure"]["line"], 3);
    assert!(
        doc["failure"]["path"]
            .as_str()
            .unwrap_or("")
            .ends_with("deploy/half.sql")
    );
    assert!(
        doc["failure"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("division by zero")
    );
    // The failed change left nothing behind; the good one stayed, registry and all.
    assert_eq!(public_tables(&db.url).await, ["good"]);
    assert_eq!(
        rows(&db.url, "SELECT change FROM sqitch.changes")
            .await
            .expect("query"),
        ["good"]
    );
    let events = rows(
        &db.url,
        "SELECT event || ' ' || change FROM sqitch.events ORDER BY committed_at",
    )
    .await
    .expect("q");
    assert_eq!(events, ["deploy good", "fail half"]);
}

#[tokio::test]
async fn non_transactional_script_runs_in_autocommit_and_is_recorded_after() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut fx = Fixture::new("concurrently");
    fx.table("items");
    fx.change(
        "items_index",
        &["items"],
        "-- Deploy concurrently:items_index\nCREATE INDEX CONCURRENTLY items_id ON items (id);\n",
        "DROP INDEX CONCURRENTLY items_id;\n",
        "SELECT 1/(count(*))::int FROM pg_indexes WHERE indexname = 'items_id';\n",
    );
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy", "--verify"]));
    assert_eq!(
        rows(
            &db.url,
            "SELECT indexname FROM pg_indexes WHERE tablename = 'items'"
        )
        .await
        .expect("q"),
        ["items_id"]
    );
    assert_eq!(
        rows(
            &db.url,
            "SELECT change FROM sqitch.changes ORDER BY committed_at"
        )
        .await
        .expect("q"),
        ["items", "items_index"]
    );
    run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["revert", "--to", "items"],
    ));
    assert!(
        rows(
            &db.url,
            "SELECT indexname FROM pg_indexes WHERE tablename = 'items'"
        )
        .await
        .expect("q")
        .is_empty()
    );

    // A failing non-transactional change is not recorded.
    fx.write_script(
        "deploy",
        "items_index",
        "CREATE INDEX CONCURRENTLY items_id ON no_such_table (id);\n",
    );
    let out = output(&mut switchyard_on(
        &fx,
        &db.url,
        &["deploy", "--mode", "change"],
    ));
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(
        rows(&db.url, "SELECT change FROM sqitch.changes")
            .await
            .expect("q"),
        ["items"]
    );
}

#[tokio::test]
async fn verify_command_reports_each_change() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut fx = Fixture::new("checked");
    fx.table("a").table("b");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    let report = json(&run_ok(&mut switchyard_on(
        &fx,
        &db.url,
        &["verify", "--json"],
    )));
    let results: Vec<String> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["change"].as_str().unwrap_or(""),
                c["result"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(results, ["a ok", "b ok"]);
    // Break b behind the tool's back: verify says so and exits 5.
    postgres::connect(&db.url)
        .await
        .expect("c")
        .batch_execute("DROP TABLE b")
        .await
        .expect("drop");
    let out = output(&mut switchyard_on(&fx, &db.url, &["verify"]));
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("verify failed for b"), "{stderr}");
    assert!(stderr.contains("verify/b.sql:1"), "{stderr}");
}

#[tokio::test]
async fn a_held_lock_names_its_holder_and_a_killed_holder_leaves_none() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut fx = Fixture::new("locked");
    fx.change(
        "slow",
        &[],
        "SELECT pg_sleep(30);\nCREATE TABLE slow (id int);\n",
        "DROP TABLE slow;\n",
        "",
    );
    let mut first = switchyard_on(&fx, &db.url, &["deploy"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the first deployer is inside its change.
    let mut waited = 0;
    while rows(
        &db.url,
        "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'",
    )
    .await
    .expect("q")
    .is_empty()
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 400, "first deploy never started");
    }
    let second = output(&mut switchyard_on(&fx, &db.url, &["deploy", "--json"]));
    assert_eq!(
        second.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );
    let doc = json(&String::from_utf8_lossy(&second.stdout));
    assert!(
        doc["error"]
            .as_str()
            .unwrap_or("")
            .contains("is locked by Test Deployer"),
        "{doc}"
    );
    assert_eq!(doc["locked_by"]["operation"], "deploy");
    assert_eq!(doc["locked_by"]["pid"], first.id() as i64);

    // Kill the holder outright: the server ends its session, and with it the lock.
    first.kill().expect("kill");
    let _ = first.wait();
    let mut waited = 0;
    while !rows(
        &db.url,
        "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'",
    )
    .await
    .expect("q")
    .is_empty()
    {
        postgres::connect(&db.url)
            .await
            .expect("c")
            .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND pid <> pg_backend_pid()")
            .await
            .expect("terminate");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 200, "killed session lingers");
    }
    fx.write_script("deploy", "slow", "CREATE TABLE slow (id int);\n");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    assert_eq!(public_tables(&db.url).await, ["slow"]);
}

#[tokio::test]
async fn unsupported_meta_command_is_refused_before_anything_runs() {
    let db = postgres::server().fresh_db().await.expect("db");
    let before = snapshot(&db.url).await.expect("snapshot");
    let mut fx = Fixture::new("meta");
    fx.table("first");
    fx.change(
        "copying",
        &[],
        "CREATE TABLE t (v int);\n\\copy t FROM 'data.csv'\n",
        "DROP TABLE t;\n",
        "",
    );
    let out = output(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("deploy/copying.sql:2:"), "{stderr}");
    assert!(stderr.contains("\\copy"), "{stderr}");
    assert_eq!(
        snapshot(&db.url).await.expect("snapshot"),
        before,
        "nothing may change"
    );
}

#[tokio::test]
async fn wrong_password_is_reported_without_the_password() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = Fixture::new("secret");
    let url = format!(
        "postgres://nobody:hunter2secret@127.0.0.1:{}/{}",
        db.port, db.name
    );
    let out = output(&mut switchyard_on(&fx, &url, &["status"]));
    assert_eq!(out.status.code(), Some(6));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("postgres://***@127.0.0.1"), "{all}");
    assert!(!all.contains("hunter2secret"), "{all}");
}

#[tokio::test]
async fn cross_project_requirements_are_checked_before_anything_runs() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut base = Fixture::new("base");
    base.table("users");
    let mut app = Fixture::new("app");
    app.change(
        "profiles",
        &["base:users"],
        "CREATE TABLE profiles (user_id int);\n",
        "DROP TABLE profiles;\n",
        "",
    );
    let before = snapshot(&db.url).await.expect("snapshot");
    let out = output(&mut switchyard_on(&app, &db.url, &["deploy"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sqitch.plan:4:"), "{stderr}");
    assert!(
        stderr.contains("requires base:users, which is not deployed"),
        "{stderr}"
    );
    assert_eq!(snapshot(&db.url).await.expect("snapshot"), before);

    run_ok(&mut switchyard_on(&base, &db.url, &["deploy"]));
    run_ok(&mut switchyard_on(&app, &db.url, &["deploy"]));
    assert_eq!(
        rows(&db.url, "SELECT d.dependency || ' ' || (d.dependency_id = u.change_id) FROM sqitch.dependencies d, sqitch.changes u WHERE u.change = 'users'")
            .await
            .expect("q"),
        ["base:users true"]
    );
    // base cannot be reverted from under app.
    let out = output(&mut switchyard_on(&base, &db.url, &["revert", "--all"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot revert users: app:profiles requires it")
    );
    assert_eq!(public_tables(&db.url).await, ["profiles", "users"]);
}

#[tokio::test]
async fn a_conflict_with_a_deployed_change_refuses_the_whole_deploy() {
    let db = postgres::server().fresh_db().await.expect("db");
    let mut fx = Fixture::new("conflicting");
    fx.table("old_way");
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    fx.table("unrelated");
    fx.change(
        "new_way",
        &["!old_way"],
        "CREATE TABLE new_way (id int);\n",
        "DROP TABLE new_way;\n",
        "",
    );
    let out = output(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("conflicts with old_way"), "{stderr}");
    // Checked up front: the unrelated change before it did not run either.
    assert_eq!(public_tables(&db.url).await, ["old_way"]);
}

#[tokio::test]
async fn a_script_that_sets_a_role_still_records_as_the_deployer() {
    let db = postgres::server().fresh_db().await.expect("db");
    let role = format!("owner_{}", db.name);
    postgres::connect(&db.url)
        .await
        .expect("connect")
        .batch_execute(&format!(
            "CREATE ROLE {role} NOLOGIN; GRANT CREATE ON SCHEMA public TO {role};"
        ))
        .await
        .expect("role");
    let mut fx = Fixture::new("roles");
    fx.change(
        "owned",
        &[],
        &format!("BEGIN;\nSET ROLE {role};\nCREATE TABLE owned (id int);\nCOMMIT;\n"),
        &format!("BEGIN;\nSET ROLE {role};\nDROP TABLE owned;\nCOMMIT;\n"),
        "",
    );
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    assert_eq!(
        rows(
            &db.url,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'owned'"
        )
        .await
        .expect("q"),
        [role.as_str()]
    );
    assert_eq!(
        rows(&db.url, "SELECT change FROM sqitch.changes")
            .await
            .expect("q"),
        ["owned"]
    );
    run_ok(&mut switchyard_on(&fx, &db.url, &["revert", "--all"]));
    assert!(public_tables(&db.url).await.is_empty());
}
