//! The development workflow (issue #7): `deploy/C-ignore.sql`, `-unignore`, `-cleanup`,
//! `-replace` and `-rollback` files, driven through the real `switchyard` binary against
//! throwaway PostgreSQL databases, with the real `sqitch` reading what they leave.
//!
//! Each file kind: `notes` is deployed to a "dev" database, the workflow file is added,
//! and dev is deployed again with `--allow-rework`; the test checks the catalog, Sqitch's
//! registry rows and events, and switchyard's workflow state and events. Then the same
//! revision goes to a fresh "prod" database without `--allow-rework`: refused with exit 9,
//! naming the change and the file, and prod is left exactly as it was.

use std::process::Output;

use e2e::postgres::{self, TestDb, rows, snapshot};
use e2e::tools::{Fixture, output, run_ok, sqitch, sqitch_target, switchyard};
use serde_json::Value;

/// Exit status of a deploy refused for rework (see `switchyard --help`).
const REWORK_REFUSED: i32 = 9;
/// Exit status of invalid input.
const INVALID: i32 = 2;

/// `users`, `notes` (the change the workflow files act on), `@v1`, then `audit`.
fn project() -> Fixture {
    let mut fx = Fixture::new("wf");
    fx.table("users");
    fx.change(
        "notes",
        &["users"],
        "CREATE TABLE notes (id int);\nINSERT INTO notes VALUES (1);\n",
        "DROP TABLE notes;\n",
        "SELECT id FROM notes WHERE false;\n",
    );
    fx.tag("v1");
    fx
}

/// Runs `switchyard <args> --project <fx> --db <db>` and returns its output.
fn sy(fx: &Fixture, db: &TestDb, args: &[&str]) -> Output {
    let mut command = switchyard();
    command
        .args(args)
        .arg("--project")
        .arg(fx.path())
        .arg("--db")
        .arg(&db.url);
    output(&mut command)
}

/// Like [`sy`] with `--json`, which must succeed; the parsed document.
fn sy_json(fx: &Fixture, db: &TestDb, args: &[&str]) -> Value {
    let mut command = switchyard();
    command
        .args(args)
        .arg("--json")
        .arg("--project")
        .arg(fx.path())
        .arg("--db")
        .arg(&db.url);
    let stdout = run_ok(&mut command);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn fresh() -> TestDb {
    postgres::server().fresh_db().await.expect("db")
}

async fn columns(db: &TestDb, table: &str) -> Vec<String> {
    rows(
        &db.url,
        &format!(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    )
    .await
    .expect("columns")
}

/// Sqitch's deployed changes in its own order (`committed_at`): `name script_hash`.
async fn sqitch_changes(db: &TestDb) -> Vec<String> {
    rows(
        &db.url,
        "SELECT change || ' ' || coalesce(script_hash, '-') FROM sqitch.changes ORDER BY committed_at",
    )
    .await
    .expect("changes")
}

/// Sqitch's events of one change, oldest first.
async fn sqitch_events(db: &TestDb, change: &str) -> Vec<String> {
    rows(
        &db.url,
        &format!("SELECT event FROM sqitch.events WHERE change = '{change}' ORDER BY committed_at"),
    )
    .await
    .expect("events")
}

/// switchyard's recorded state of a change: `state file revision reason`.
async fn workflow_state(db: &TestDb, change: &str) -> Vec<String> {
    rows(
        &db.url,
        &format!(
            "SELECT state || ' ' || file || ' ' || coalesce(revision, '-') || ' ' || reason || ' ' || coalesce(script_hash, '-') \
               FROM switchyard.workflow WHERE change = '{change}'"
        ),
    )
    .await
    .expect("workflow")
}

/// switchyard's workflow events of a change, oldest first.
async fn workflow_events(db: &TestDb, change: &str) -> Vec<String> {
    rows(
        &db.url,
        &format!(
            "SELECT event || ' ' || file FROM switchyard.workflow_events WHERE change = '{change}' ORDER BY id"
        ),
    )
    .await
    .expect("workflow events")
}

/// SHA-1 hex of a project file, as the registry records script hashes.
fn sha1(fx: &Fixture, relative: &str) -> String {
    let out = output(std::process::Command::new("sha1sum").arg(fx.path().join(relative)));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha1sum")
        .to_string()
}

/// The status entry of one change in `status --json`.
fn change_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {status:#}"))
}

/// A fresh "prod" database refuses the revision without --allow-rework: exit 9, the
/// change and the file named (as text and as JSON), and nothing changed.
async fn prod_refuses(fx: &Fixture, change: &str, file: &str) {
    let prod = fresh().await;
    let before = snapshot(&prod.url).await.expect("snapshot");
    let out = sy(fx, &prod, &["deploy"]);
    assert_eq!(out.status.code(), Some(REWORK_REFUSED), "{}", text(&out));
    let message = text(&out);
    assert!(
        message.contains(file) && message.contains(&format!("change {change} ")),
        "names the change and the file: {message}"
    );
    assert!(message.contains("--allow-rework"), "{message}");
    let out = sy(fx, &prod, &["deploy", "--json"]);
    assert_eq!(out.status.code(), Some(REWORK_REFUSED));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["refused"]["reason"], "reworkNotAllowed", "{doc:#}");
    assert_eq!(doc["refused"]["change"], change);
    assert_eq!(doc["refused"]["file"], file);
    assert_eq!(
        snapshot(&prod.url).await.expect("snapshot"),
        before,
        "prod must be left as it was: no registry, no tables"
    );
    // status says the same, and changes nothing either.
    let status = sy_json(fx, &prod, &["status"]);
    assert_eq!(status["refused"]["change"], change, "{status:#}");
    assert_eq!(status["up_to_date"], false);
    assert_eq!(snapshot(&prod.url).await.expect("snapshot"), before);
}

// === one test per file kind ===

#[tokio::test]
async fn ignore_keeps_deployed_copies_and_deploys_no_further() {
    let mut fx = project();
    let dev = fresh().await;
    sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r1"]);
    // An environment that took `notes` as planned before it was abandoned.
    let old_prod = fresh().await;
    sy_json(&fx, &old_prod, &["deploy"]);

    fx.write(
        "deploy/notes-ignore.sql",
        "-- wrong key; see audit instead\n",
    );
    fx.table("audit");
    let report = sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r2"]);
    assert_eq!(
        report["ignored"],
        serde_json::json!(["notes"]),
        "{report:#}"
    );
    assert_eq!(report["deployed"], serde_json::json!(["audit"]));

    // Catalog: the deployed copy stays.
    assert_eq!(
        e2e::postgres::public_tables(&dev.url).await,
        ["audit", "notes", "users"]
    );
    // Sqitch still has notes deployed; no event of it but its deploy.
    assert_eq!(sqitch_events(&dev, "notes").await, ["deploy"]);
    assert_eq!(sqitch_changes(&dev).await.len(), 3);
    // switchyard recorded the ignore, its reason and the revision.
    assert_eq!(
        workflow_state(&dev, "notes").await,
        ["ignored deploy/notes-ignore.sql r2 -- wrong key; see audit instead -"]
    );
    assert_eq!(
        workflow_events(&dev, "notes").await,
        ["ignore deploy/notes-ignore.sql"]
    );
    let status = sy_json(&fx, &dev, &["status", "--allow-rework"]);
    assert_eq!(status["up_to_date"], true, "{status:#}");
    let notes = change_status(&status, "notes");
    assert_eq!(notes["workflow"], "ignored");
    assert_eq!(notes["deployed"], true);
    assert_eq!(notes["reason"], "-- wrong key; see audit instead");
    assert_eq!(change_status(&status, "audit")["workflow"], "deployed");

    // A database that never had notes skips it, and says so.
    let dev2 = fresh().await;
    let report = sy_json(&fx, &dev2, &["deploy", "--allow-rework"]);
    assert_eq!(report["deployed"], serde_json::json!(["users", "audit"]));
    assert_eq!(
        e2e::postgres::public_tables(&dev2.url).await,
        ["audit", "users"]
    );
    let status = sy_json(&fx, &dev2, &["status", "--allow-rework"]);
    assert_eq!(status["up_to_date"], true, "{status:#}");
    assert_eq!(change_status(&status, "notes")["deployed"], false);
    assert_eq!(change_status(&status, "notes")["workflow"], "ignored");
    // Deploying again changes nothing.
    let again = sy_json(&fx, &dev2, &["deploy", "--allow-rework"]);
    assert_eq!(again["up_to_date"], true, "{again:#}");

    // Production that deployed notes as planned takes the revision without rework: the
    // ignore file is not acted on there, and audit is deployed.
    let report = sy_json(&fx, &old_prod, &["deploy"]);
    assert_eq!(
        report["deployed"],
        serde_json::json!(["audit"]),
        "{report:#}"
    );
    assert_eq!(report["ignored"], serde_json::json!([]));
    assert_eq!(
        e2e::postgres::public_tables(&old_prod.url).await,
        ["audit", "notes", "users"]
    );
    assert!(
        rows(
            &old_prod.url,
            "SELECT count(*)::text FROM switchyard.workflow"
        )
        .await
        .expect("q")
            == ["0"],
        "nothing recorded where rework is not allowed"
    );

    prod_refuses(&fx, "notes", "deploy/notes-ignore.sql").await;
}

#[tokio::test]
async fn unignore_deploys_the_change_again_in_its_place() {
    let mut fx = project();
    fx.write("deploy/notes-ignore.sql", "not yet\n");
    fx.table("audit");
    let dev = fresh().await;
    sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r1"]);
    assert_eq!(
        e2e::postgres::public_tables(&dev.url).await,
        ["audit", "users"]
    );

    fx.write("deploy/notes-unignore.sql", "");
    let status = sy_json(&fx, &dev, &["status", "--allow-rework"]);
    assert_eq!(
        status["pending"],
        serde_json::json!(["notes"]),
        "{status:#}"
    );
    let report = sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r2"]);
    assert_eq!(
        report["unignored"],
        serde_json::json!(["notes"]),
        "{report:#}"
    );
    assert_eq!(report["deployed"], serde_json::json!(["notes"]));

    assert_eq!(
        e2e::postgres::public_tables(&dev.url).await,
        ["audit", "notes", "users"]
    );
    // Sqitch's order of deployed changes is plan order, though notes came last.
    let order: Vec<String> = sqitch_changes(&dev)
        .await
        .iter()
        .map(|r| r.split(' ').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(order, ["users", "notes", "audit"]);
    assert_eq!(sqitch_events(&dev, "notes").await, ["deploy"]);
    assert_eq!(
        workflow_state(&dev, "notes").await,
        ["deployed deploy/notes-unignore.sql r2  -"]
    );
    assert_eq!(
        workflow_events(&dev, "notes").await,
        [
            "ignore deploy/notes-ignore.sql",
            "unignore deploy/notes-unignore.sql"
        ]
    );
    // No gap left: the real sqitch finds everything deployed, and verifies it.
    let target = sqitch_target(&dev.url);
    let status = run_ok(sqitch(fx.path()).arg("status").arg(&target));
    assert!(
        status.contains("Nothing to deploy (up-to-date)"),
        "{status}"
    );
    assert!(status.contains("# Name:     audit"), "{status}");
    run_ok(sqitch(fx.path()).arg("verify").arg(&target));

    prod_refuses(&fx, "notes", "deploy/notes-unignore.sql").await;
}

#[tokio::test]
async fn cleanup_undoes_a_deployed_change_once_and_ignores_it() {
    let mut fx = project();
    fx.table("audit");
    let dev = fresh().await;
    sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r1"]);
    assert_eq!(
        e2e::postgres::public_tables(&dev.url).await,
        ["audit", "notes", "users"]
    );

    fx.write(
        "deploy/notes-cleanup.sql",
        "INSERT INTO audit VALUES (42);\nDROP TABLE notes;\n",
    );
    let report = sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r2"]);
    assert_eq!(
        report["cleaned"],
        serde_json::json!(["notes"]),
        "{report:#}"
    );
    assert_eq!(report["deployed"], serde_json::json!([]));

    // Catalog: what notes created is gone; the cleanup ran once.
    assert_eq!(
        e2e::postgres::public_tables(&dev.url).await,
        ["audit", "users"]
    );
    assert_eq!(
        rows(&dev.url, "SELECT id::text FROM audit")
            .await
            .expect("q"),
        ["42"]
    );
    // Sqitch sees notes reverted.
    assert_eq!(sqitch_events(&dev, "notes").await, ["deploy", "revert"]);
    assert!(
        !sqitch_changes(&dev)
            .await
            .iter()
            .any(|c| c.starts_with("notes ")),
        "notes is no longer in sqitch.changes"
    );
    let cleanup_hash = sha1(&fx, "deploy/notes-cleanup.sql");
    assert_eq!(
        workflow_state(&dev, "notes").await,
        [format!(
            "cleaned deploy/notes-cleanup.sql r2  {cleanup_hash}"
        )]
    );
    assert_eq!(
        workflow_events(&dev, "notes").await,
        ["cleanup deploy/notes-cleanup.sql"]
    );

    // Again: nothing runs twice.
    let again = sy_json(&fx, &dev, &["deploy", "--allow-rework"]);
    assert_eq!(again["up_to_date"], true, "{again:#}");
    assert_eq!(
        rows(&dev.url, "SELECT count(*)::text FROM audit")
            .await
            .expect("q"),
        ["1"]
    );
    let status = sy_json(&fx, &dev, &["status", "--allow-rework"]);
    assert_eq!(change_status(&status, "notes")["workflow"], "cleaned");
    assert_eq!(change_status(&status, "notes")["deployed"], false);

    // Where notes was never deployed, the cleanup only ignores it.
    let dev2 = fresh().await;
    let report = sy_json(&fx, &dev2, &["deploy", "--allow-rework"]);
    assert_eq!(report["cleaned"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["ignored"], serde_json::json!(["notes"]));
    assert_eq!(
        e2e::postgres::public_tables(&dev2.url).await,
        ["audit", "users"]
    );

    prod_refuses(&fx, "notes", "deploy/notes-cleanup.sql").await;
}

#[tokio::test]
async fn replace_undoes_the_deployed_version_and_deploys_the_replacement() {
    let mut fx = project();
    fx.table("audit");
    let dev = fresh().await;
    sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r1"]);
    let original_hash = sha1(&fx, "deploy/notes.sql");

    fx.write(
        "deploy/notes-replace.sql",
        "CREATE TABLE notes (id int, body text);\n",
    );
    let report = sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r2"]);
    assert_eq!(
        report["replaced"],
        serde_json::json!(["notes"]),
        "{report:#}"
    );

    // Catalog: revert/notes.sql dropped the old table (and its row), the replacement
    // created the new one.
    assert_eq!(columns(&dev, "notes").await, ["id", "body"]);
    assert_eq!(
        rows(&dev.url, "SELECT count(*)::text FROM notes")
            .await
            .expect("q"),
        ["0"]
    );
    // Sqitch: a revert and a deploy of the same change, with the replacement's hash, and
    // notes still in its plan position.
    let replace_hash = sha1(&fx, "deploy/notes-replace.sql");
    assert_ne!(replace_hash, original_hash);
    assert_eq!(
        sqitch_events(&dev, "notes").await,
        ["deploy", "revert", "deploy"]
    );
    let changes = sqitch_changes(&dev).await;
    assert_eq!(changes[1], format!("notes {replace_hash}"), "{changes:?}");
    assert!(changes[2].starts_with("audit "), "{changes:?}");
    assert_eq!(
        workflow_state(&dev, "notes").await,
        [format!(
            "replaced deploy/notes-replace.sql r2  {replace_hash}"
        )]
    );
    assert_eq!(
        workflow_events(&dev, "notes").await,
        ["replace deploy/notes-replace.sql"]
    );
    // Once per replacement content.
    let again = sy_json(&fx, &dev, &["deploy", "--allow-rework"]);
    assert_eq!(again["up_to_date"], true, "{again:#}");
    assert_eq!(sqitch_events(&dev, "notes").await.len(), 3);

    // Where notes was never deployed, the replacement is deployed in its place.
    let dev2 = fresh().await;
    let report = sy_json(&fx, &dev2, &["deploy", "--allow-rework"]);
    assert_eq!(
        report["deployed"],
        serde_json::json!(["users", "notes", "audit"]),
        "{report:#}"
    );
    assert_eq!(report["replaced"], serde_json::json!(["notes"]));
    assert_eq!(columns(&dev2, "notes").await, ["id", "body"]);
    assert_eq!(sqitch_events(&dev2, "notes").await, ["deploy"]);
    assert_eq!(
        sqitch_changes(&dev2).await[1],
        format!("notes {replace_hash}")
    );
    let status = sy_json(&fx, &dev2, &["status", "--allow-rework"]);
    assert_eq!(change_status(&status, "notes")["workflow"], "replaced");

    // Even a database without rework that holds the replaced form is refused: it has not
    // deployed notes in its original form.
    let out = sy(&fx, &dev, &["deploy"]);
    assert_eq!(out.status.code(), Some(REWORK_REFUSED), "{}", text(&out));

    // A cleanup file beside the replacement undoes the deployed version instead of the
    // revert script (broken on purpose here).
    fx.write_script("revert", "notes", "DROP TABLE no_such_table;\n");
    fx.write("deploy/notes-cleanup.sql", "DROP TABLE notes;\n");
    fx.write(
        "deploy/notes-replace.sql",
        "CREATE TABLE notes (id int, body text, at timestamptz);\n",
    );
    let report = sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r3"]);
    assert_eq!(
        report["replaced"],
        serde_json::json!(["notes"]),
        "{report:#}"
    );
    assert_eq!(columns(&dev, "notes").await, ["id", "body", "at"]);

    prod_refuses(&fx, "notes", "deploy/notes-replace.sql").await;
}

#[tokio::test]
async fn a_rollback_file_is_the_revert_script_and_needs_no_rework() {
    let mut fx = project();
    let dev = fresh().await;
    sy_json(&fx, &dev, &["deploy"]);

    // The revert script moves beside the deploy script.
    std::fs::remove_file(fx.path().join("revert/notes.sql")).expect("rm");
    fx.write(
        "deploy/notes-rollback.sql",
        "DROP TABLE notes;\nCREATE TABLE rolled_back (id int);\n",
    );
    fx.table("audit");
    // Not a rework: a database without rework takes the revision.
    let report = sy_json(&fx, &dev, &["deploy"]);
    assert_eq!(
        report["deployed"],
        serde_json::json!(["audit"]),
        "{report:#}"
    );
    let report = sy_json(&fx, &dev, &["revert", "--to", "users"]);
    assert_eq!(
        report["reverted"],
        serde_json::json!(["audit", "notes"]),
        "{report:#}"
    );
    // The rollback file ran.
    assert_eq!(
        e2e::postgres::public_tables(&dev.url).await,
        ["rolled_back", "users"]
    );
    assert_eq!(sqitch_events(&dev, "notes").await, ["deploy", "revert"]);

    // And a replace undoes the deployed version with it, updated in place.
    sy_json(&fx, &dev, &["deploy"]);
    fx.write(
        "deploy/notes-rollback.sql",
        "DROP TABLE notes;\nDROP TABLE rolled_back;\n",
    );
    fx.write(
        "deploy/notes-replace.sql",
        "CREATE TABLE notes (id int, body text);\n",
    );
    let report = sy_json(&fx, &dev, &["deploy", "--allow-rework"]);
    assert_eq!(
        report["replaced"],
        serde_json::json!(["notes"]),
        "{report:#}"
    );
    assert_eq!(
        e2e::postgres::public_tables(&dev.url).await,
        ["audit", "notes", "users"]
    );
    assert_eq!(columns(&dev, "notes").await, ["id", "body"]);

    // A fresh production database takes the project with its rollback file, unreplaced.
    std::fs::remove_file(fx.path().join("deploy/notes-replace.sql")).expect("rm");
    let prod = fresh().await;
    let report = sy_json(&fx, &prod, &["deploy"]);
    assert_eq!(
        report["deployed"],
        serde_json::json!(["users", "notes", "audit"]),
        "{report:#}"
    );
    assert_eq!(columns(&prod, "notes").await, ["id"]);
}

// === failures ===

#[tokio::test]
async fn a_failing_replacement_leaves_the_deployed_version_in_place() {
    let fx = project();
    let dev = fresh().await;
    sy_json(&fx, &dev, &["deploy", "--allow-rework"]);
    let before = sqitch_changes(&dev).await;
    fx.write(
        "deploy/notes-replace.sql",
        "CREATE TABLE notes (id int, body text);\nSELECT * FROM no_such_table;\n",
    );
    let out = sy(&fx, &dev, &["deploy", "--allow-rework", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["failure"]["change"], "notes", "{doc:#}");
    assert!(
        doc["failure"]["path"]
            .as_str()
            .unwrap_or_default()
            .ends_with("deploy/notes-replace.sql"),
        "{doc:#}"
    );
    assert_eq!(doc["failure"]["line"], 2);
    // The undo and the replacement rolled back together: the old table and its row stay.
    assert_eq!(columns(&dev, "notes").await, ["id"]);
    assert_eq!(
        rows(&dev.url, "SELECT count(*)::text FROM notes")
            .await
            .expect("q"),
        ["1"]
    );
    assert_eq!(sqitch_changes(&dev).await, before);
    assert_eq!(sqitch_events(&dev, "notes").await, ["deploy", "fail"]);
    assert!(workflow_state(&dev, "notes").await.is_empty());
}

#[tokio::test]
async fn a_failure_mode_reverting_an_unignored_change_puts_its_ignore_back() {
    let mut fx = project();
    fx.write("deploy/notes-ignore.sql", "later\n");
    fx.table("audit");
    let dev = fresh().await;
    sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r1"]);
    let ignored = workflow_state(&dev, "notes").await;
    assert_eq!(ignored, ["ignored deploy/notes-ignore.sql r1 later -"]);

    fx.write("deploy/notes-unignore.sql", "");
    fx.change(
        "broken",
        &[],
        "SELECT * FROM no_such_table;\n",
        "SELECT 1;\n",
        "SELECT 1;\n",
    );
    let out = sy(
        &fx,
        &dev,
        &[
            "deploy",
            "--allow-rework",
            "--revision",
            "r2",
            "--mode",
            "all",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["reverted"], serde_json::json!(["notes"]), "{doc:#}");
    assert_eq!(
        e2e::postgres::public_tables(&dev.url).await,
        ["audit", "users"]
    );
    assert_eq!(
        workflow_state(&dev, "notes").await,
        ignored,
        "the ignore is back as it was recorded"
    );
    // The database is still coherent: fixed, the next deploy unignores notes again.
    fx.write_script("deploy", "broken", "SELECT 1;\n");
    let report = sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r3"]);
    assert_eq!(
        report["unignored"],
        serde_json::json!(["notes"]),
        "{report:#}"
    );
    assert_eq!(
        e2e::postgres::public_tables(&dev.url).await,
        ["audit", "notes", "users"]
    );

    // A revert forgets what the workflow recorded for the change it reverts; the files
    // decide again on the next deploy.
    sy_json(&fx, &dev, &["revert", "--to", "users"]);
    assert!(workflow_state(&dev, "notes").await.is_empty());
    let report = sy_json(&fx, &dev, &["deploy", "--allow-rework"]);
    assert_eq!(
        report["deployed"],
        serde_json::json!(["notes", "audit", "broken"]),
        "{report:#}"
    );
}

// === errors ===

/// A wrong workflow file: refused with exit 2 naming it, and dev unchanged.
struct Case {
    name: &'static str,
    file: &'static str,
    want_message: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "double suffix",
        file: "deploy/notes-rollback-replace.sql",
        want_message: "takes exactly one suffix",
    },
    Case {
        name: "case mismatch",
        file: "deploy/NOTES-ignore.sql",
        want_message: "expected deploy/notes-ignore.sql for change \"notes\"",
    },
    Case {
        name: "orphan",
        file: "deploy/payments-cleanup.sql",
        want_message: "change \"payments\", which is not in the plan",
    },
    Case {
        name: "unignore without ignore",
        file: "deploy/notes-unignore.sql",
        want_message: "unignore without an ignore",
    },
];

#[tokio::test]
async fn wrong_workflow_files_are_refused_naming_the_file_and_nothing_changes() {
    let mut fx = project();
    let dev = fresh().await;
    sy_json(&fx, &dev, &["deploy", "--allow-rework"]);
    fx.table("audit");
    let before = snapshot(&dev.url).await.expect("snapshot");
    let registry = "SELECT count(*)::text FROM sqitch.events";
    let events_before = rows(&dev.url, registry).await.expect("q");
    for case in CASES {
        fx.write(case.file, "DROP TABLE notes;\n");
        let out = sy(&fx, &dev, &["deploy", "--allow-rework"]);
        let message = text(&out);
        assert_eq!(out.status.code(), Some(INVALID), "{}: {message}", case.name);
        let shown = fx.path().join(case.file);
        assert!(
            message.contains(&format!("error: {}: ", shown.display())),
            "{}: names the file first: {message}",
            case.name
        );
        assert!(
            message.contains(case.want_message),
            "{}: {message}",
            case.name
        );
        let out = sy(&fx, &dev, &["deploy", "--allow-rework", "--json"]);
        let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(
            doc["error"]
                .as_str()
                .unwrap_or_default()
                .contains(case.file),
            "{}: {doc}",
            case.name
        );
        assert_eq!(
            snapshot(&dev.url).await.expect("snapshot"),
            before,
            "{}: nothing deployed (audit stays pending)",
            case.name
        );
        assert_eq!(rows(&dev.url, registry).await.expect("q"), events_before);
        std::fs::remove_file(fx.path().join(case.file)).expect("rm");
    }
    // The project is fine again without them.
    let report = sy_json(&fx, &dev, &["deploy", "--allow-rework"]);
    assert_eq!(report["deployed"], serde_json::json!(["audit"]));
}

#[tokio::test]
async fn an_ignore_removed_without_an_unignore_is_refused_naming_the_file() {
    let mut fx = project();
    fx.write("deploy/notes-ignore.sql", "");
    fx.table("audit");
    let dev = fresh().await;
    sy_json(&fx, &dev, &["deploy", "--allow-rework"]);
    std::fs::remove_file(fx.path().join("deploy/notes-ignore.sql")).expect("rm");
    let before = snapshot(&dev.url).await.expect("snapshot");
    let out = sy(&fx, &dev, &["deploy", "--allow-rework"]);
    let message = text(&out);
    assert_eq!(out.status.code(), Some(INVALID), "{message}");
    assert!(
        message.contains("deploy/notes-ignore.sql")
            && message.contains("deploy/notes-unignore.sql"),
        "says what was removed and what to add: {message}"
    );
    assert_eq!(snapshot(&dev.url).await.expect("snapshot"), before);
}

// === Sqitch on the same database ===

#[tokio::test]
async fn sqitch_status_and_log_stay_coherent_after_ignore_cleanup_and_replace() {
    let mut fx = Fixture::new("wf");
    fx.table("users")
        .table("kept")
        .table("scrapped")
        .table("reshaped");
    let dev = fresh().await;
    let target = sqitch_target(&dev.url);
    // Sqitch deploys the first revision itself.
    run_ok(sqitch(fx.path()).arg("deploy").arg(&target));

    fx.write("deploy/kept-ignore.sql", "kept as it is\n");
    fx.write("deploy/scrapped-cleanup.sql", "DROP TABLE scrapped;\n");
    fx.write(
        "deploy/reshaped-replace.sql",
        "CREATE TABLE reshaped (id int, shape text);\n",
    );
    fx.table("late");
    fx.write("deploy/late-ignore.sql", "never mind\n");
    fx.table("last");
    let report = sy_json(&fx, &dev, &["deploy", "--allow-rework", "--revision", "r2"]);
    assert_eq!(
        report["cleaned"],
        serde_json::json!(["scrapped"]),
        "{report:#}"
    );
    assert_eq!(report["replaced"], serde_json::json!(["reshaped"]));
    assert_eq!(report["ignored"], serde_json::json!(["kept", "late"]));
    assert_eq!(report["deployed"], serde_json::json!(["last"]));
    assert_eq!(
        e2e::postgres::public_tables(&dev.url).await,
        ["kept", "last", "reshaped", "users"]
    );

    // sqitch status: its current change is the newest deployed one, and it has nothing
    // to deploy (it does not look behind its current change, so the gaps at scrapped and
    // late are not reported).
    let status = run_ok(sqitch(fx.path()).arg("status").arg(&target));
    assert!(status.contains("# Name:     last"), "{status}");
    assert!(
        status.contains("Nothing to deploy (up-to-date)"),
        "{status}"
    );
    // sqitch log: every event, newest first, with the cleanup as a revert and the replace
    // as a revert and a deploy.
    let log = run_ok(
        sqitch(fx.path())
            .args(["log", "--reverse", "--format", "format:%e %n"])
            .arg(&target),
    );
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with("On database") && !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines,
        [
            "deploy users",
            "deploy kept",
            "deploy scrapped",
            "deploy reshaped",
            "revert scrapped",
            "revert reshaped",
            "deploy reshaped",
            "deploy last",
        ],
        "{log}"
    );
    // sqitch verify reports what is not there: scrapped (cleaned up) and late (ignored)
    // are not deployed, so the changes after them are out of order to it.
    let verify = output(sqitch(fx.path()).arg("verify").arg(&target));
    let said = text(&verify);
    assert!(!verify.status.success(), "{said}");
    assert!(said.contains("scrapped .. not ok # Not deployed"), "{said}");

    // switchyard's own log shows its workflow events among Sqitch's.
    let log = sy(&fx, &dev, &["log"]);
    let log = String::from_utf8_lossy(&log.stdout);
    for line in [
        "cleanup scrapped",
        "replace reshaped",
        "ignore kept",
        "ignore late",
    ] {
        let (event, change) = line.split_once(' ').unwrap_or_default();
        assert!(
            log.lines()
                .any(|l| l.contains(&format!(" {event:<6} {change} "))),
            "{line} in {log}"
        );
    }

    // Sqitch can take the whole database back down through the registry we left.
    run_ok(sqitch(fx.path()).args(["revert", "-y"]).arg(&target));
    assert!(
        e2e::postgres::public_tables(&dev.url).await.is_empty(),
        "{:?}",
        e2e::postgres::public_tables(&dev.url).await
    );
    let status = sy_json(&fx, &dev, &["status", "--allow-rework"]);
    assert_eq!(status["deployed"], serde_json::json!([]), "{status:#}");
}

// === Sqitch's own rework ===

/// A project whose `f` is reworked after `@v1`: each version's deploy script records that
/// it ran in `ran`.
fn reworked(with_rework: bool) -> Fixture {
    let mut fx = Fixture::new("rw");
    fx.change(
        "ran",
        &[],
        "CREATE TABLE ran (script text);\n",
        "DROP TABLE ran;\n",
        "SELECT 1;\n",
    );
    let v1 = "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\nINSERT INTO ran VALUES ('f@v1');\n";
    fx.change("f", &["ran"], v1, "DROP FUNCTION f();\n", "SELECT f();\n");
    fx.tag("v1");
    fx.change(
        "g",
        &[],
        "CREATE TABLE g (id int);\n",
        "DROP TABLE g;\n",
        "SELECT 1;\n",
    );
    if with_rework {
        for kind in ["deploy", "revert", "verify"] {
            let body =
                std::fs::read_to_string(fx.path().join(format!("{kind}/f.sql"))).expect("read");
            fx.write_script(kind, "f@v1", &body);
        }
        fx.change(
            "f",
            &["f@v1"],
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 2';\nINSERT INTO ran VALUES ('f');\n",
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n",
            "SELECT f();\n",
        );
    }
    fx
}

#[tokio::test]
async fn a_sqitch_rework_runs_only_the_newest_version_on_a_fresh_database() {
    let fx = reworked(true);
    let ours = fresh().await;
    let theirs = fresh().await;
    let report = sy_json(&fx, &ours, &["deploy", "--verify"]);
    assert_eq!(
        report["superseded"],
        serde_json::json!(["f@v1"]),
        "{report:#}"
    );
    // Only the newest f ran, and the function is the newest.
    assert_eq!(
        rows(&ours.url, "SELECT script FROM ran").await.expect("q"),
        ["f"]
    );
    assert_eq!(rows(&ours.url, "SELECT f()::text").await.expect("q"), ["2"]);

    // The registry is what Sqitch writes deploying the same plan (which runs both).
    run_ok(
        sqitch(fx.path())
            .arg("deploy")
            .arg(sqitch_target(&theirs.url)),
    );
    assert_eq!(
        rows(&theirs.url, "SELECT script FROM ran ORDER BY 1")
            .await
            .expect("q"),
        ["f", "f@v1"]
    );
    let registry = "SELECT change || ' ' || change_id || ' ' || script_hash FROM sqitch.changes ORDER BY committed_at";
    assert_eq!(
        rows(&ours.url, registry).await.expect("q"),
        rows(&theirs.url, registry).await.expect("q")
    );
    let status = run_ok(
        sqitch(fx.path())
            .arg("status")
            .arg(sqitch_target(&ours.url)),
    );
    assert!(
        status.contains("Nothing to deploy (up-to-date)"),
        "{status}"
    );
    run_ok(
        sqitch(fx.path())
            .arg("verify")
            .arg(sqitch_target(&ours.url)),
    );

    // Reverting everything goes through each version's revert script, as Sqitch would.
    sy_json(&fx, &ours, &["revert", "--all"]);
    assert!(e2e::postgres::public_tables(&ours.url).await.is_empty());
}

#[tokio::test]
async fn a_sqitch_rework_is_deployed_over_the_old_version_where_it_was() {
    let before = reworked(false);
    let db = fresh().await;
    sy_json(&before, &db, &["deploy"]);
    assert_eq!(rows(&db.url, "SELECT f()::text").await.expect("q"), ["1"]);

    let after = reworked(true);
    // Same plan ids up to the rework: continue the database with the reworked project.
    let registry = "SELECT change_id FROM sqitch.changes ORDER BY committed_at";
    let ids = rows(&db.url, registry).await.expect("q");
    let report = sy_json(&after, &db, &["deploy"]);
    assert_eq!(report["deployed"], serde_json::json!(["f"]), "{report:#}");
    assert_eq!(report["superseded"], serde_json::json!([]));
    assert_eq!(
        rows(&db.url, "SELECT script FROM ran ORDER BY 1")
            .await
            .expect("q"),
        ["f", "f@v1"],
        "the old version ran first, the new one over it"
    );
    assert_eq!(rows(&db.url, "SELECT f()::text").await.expect("q"), ["2"]);
    assert_eq!(
        rows(&db.url, registry).await.expect("q")[..ids.len()],
        ids[..]
    );
}
