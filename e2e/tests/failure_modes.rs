//! Failure modes `all`, `tag` and `change`, each against a deploy that fails mid-script and
//! a change whose verify fails. The reference is the real Sqitch: the same project is
//! deployed by `sqitch` into one database and by `switchyard` into another, and both must
//! end with the same tables, the same registry and the same events.

use e2e::postgres::{self, rows};
use e2e::tools::{Fixture, output, sqitch, sqitch_target, switchyard};

#[derive(Clone, Copy, Debug)]
enum Breakage {
    /// `d`'s deploy script fails halfway, after creating a table.
    DeployFails,
    /// `d` deploys, then its verify script fails.
    VerifyFails,
}

fn project(breakage: Breakage) -> Fixture {
    let mut fx = Fixture::new("modes");
    fx.table("a").table("b").tag("t1").table("c");
    match breakage {
        Breakage::DeployFails => fx.change(
            "d",
            &[],
            "BEGIN;\nCREATE TABLE d (id int);\nSELECT 1/0;\nCOMMIT;\n",
            "BEGIN;\nDROP TABLE IF EXISTS d;\nCOMMIT;\n",
            "SELECT 1;\n",
        ),
        Breakage::VerifyFails => fx.change(
            "d",
            &[],
            "BEGIN;\nCREATE TABLE d (id int);\nCOMMIT;\n",
            "BEGIN;\nDROP TABLE d;\nCOMMIT;\n",
            "BEGIN;\nSELECT 1/0 FROM d;\nROLLBACK;\n",
        ),
    };
    fx.table("e");
    fx
}

/// What a failed deploy left: tables, registry changes and tags, and events in order.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    tables: Vec<String>,
    changes: Vec<String>,
    tags: Vec<String>,
    events: Vec<String>,
}

async fn outcome(url: &str) -> Outcome {
    Outcome {
        tables: rows(
            url,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        )
        .await
        .expect("q"),
        changes: rows(
            url,
            "SELECT change FROM sqitch.changes ORDER BY committed_at",
        )
        .await
        .expect("q"),
        tags: rows(url, "SELECT tag FROM sqitch.tags ORDER BY tag")
            .await
            .expect("q"),
        events: rows(
            url,
            "SELECT event || ' ' || change FROM sqitch.events ORDER BY committed_at",
        )
        .await
        .expect("q"),
    }
}

async fn compare(mode: &str, breakage: Breakage, want_kept: &[&str]) {
    let fx = project(breakage);
    let verify = matches!(breakage, Breakage::VerifyFails);

    let by_sqitch = postgres::server().fresh_db().await.expect("db");
    let mut command = sqitch(fx.path());
    command.args(["deploy", "--mode", mode]);
    command.arg(if verify { "--verify" } else { "--no-verify" });
    command.arg(sqitch_target(&by_sqitch.url));
    let out = output(&mut command);
    assert!(
        !out.status.success(),
        "sqitch deploy should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let by_switchyard = postgres::server().fresh_db().await.expect("db");
    let mut command = switchyard();
    command
        .args(["deploy", "--mode", mode, "--project"])
        .arg(fx.path())
        .arg("--db")
        .arg(&by_switchyard.url);
    command.arg(if verify { "--verify" } else { "--no-verify" });
    let out = output(&mut command);
    assert_eq!(
        out.status.code(),
        Some(4),
        "switchyard deploy should fail with 4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let script = if verify {
        "verify/d.sql:2"
    } else {
        "deploy/d.sql:3"
    };
    assert!(
        stderr.contains(script),
        "error names the file and line: {stderr}"
    );
    assert!(
        stderr.contains("division by zero"),
        "error carries the database message: {stderr}"
    );

    let want = outcome(&by_sqitch.url).await;
    let got = outcome(&by_switchyard.url).await;
    assert_eq!(
        got, want,
        "mode {mode}, {breakage:?}: switchyard must leave what sqitch leaves"
    );
    assert_eq!(got.changes, want_kept, "mode {mode} keeps {want_kept:?}");
    assert!(
        got.events.contains(&"fail d".to_string()),
        "a fail event is logged: {:?}",
        got.events
    );
}

#[tokio::test]
async fn mode_all_when_deploy_fails_reverts_everything_like_sqitch() {
    compare("all", Breakage::DeployFails, &[]).await;
}

#[tokio::test]
async fn mode_tag_when_deploy_fails_reverts_to_the_last_tag_like_sqitch() {
    compare("tag", Breakage::DeployFails, &["a", "b"]).await;
}

#[tokio::test]
async fn mode_change_when_deploy_fails_keeps_earlier_changes_like_sqitch() {
    compare("change", Breakage::DeployFails, &["a", "b", "c"]).await;
}

#[tokio::test]
async fn mode_all_when_verify_fails_reverts_everything_like_sqitch() {
    compare("all", Breakage::VerifyFails, &[]).await;
}

#[tokio::test]
async fn mode_tag_when_verify_fails_reverts_to_the_last_tag_like_sqitch() {
    compare("tag", Breakage::VerifyFails, &["a", "b"]).await;
}

#[tokio::test]
async fn mode_change_when_verify_fails_keeps_earlier_changes_like_sqitch() {
    compare("change", Breakage::VerifyFails, &["a", "b", "c"]).await;
}
