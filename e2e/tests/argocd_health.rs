//! Argo CD's health check for Switchyard (config/argocd/health.lua), run in a real Lua
//! (Debian's lua5.4) against objects the real controller wrote (issue #14): each kind's
//! Healthy, an Environment Degraded by a failed deploy, Progressing while retrying, behind
//! a new generation and while deleted, Suspended (spec.suspend, or a plan waiting for
//! approval), and a Promotion a guard holds back. The argocd-cm snippet must carry
//! exactly this script for each kind.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::controller::*;
use serde_json::Value;

const KINDS: [&str; 3] = ["DatabaseProject", "Environment", "Promotion"];

fn script() -> String {
    std::fs::read_to_string(e2e::chart::repo_root().join("config/argocd/health.lua")).unwrap()
}

/// A JSON value as a Lua table constructor, as Argo CD hands `obj` to the script.
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::Array(a) => format!("{{{}}}", a.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("[{}] = {}", lua(&Value::String(k.clone())), lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// (status, message) the script returns for `obj`, run by lua5.4.
fn health(obj: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal function health()\n{}\nend\nlocal hs = health()\nprint(hs.status)\nprint(hs.message or '')\n",
        lua(obj),
        script()
    );
    let mut child = Command::new("lua5.4")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.4 (scripts/install-deps installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, message) = text.split_once('\n').unwrap();
    (status.to_string(), message.trim_end().to_string())
}

fn assert_health(obj: &Value, want: &str, message_has: &str) {
    let (status, message) = health(obj);
    assert_eq!(status, want, "{message}\n{:#}", obj["status"]);
    assert!(
        message.contains(message_has),
        "{message:?} lacks {message_has:?}"
    );
}

#[test]
fn the_argocd_cm_snippet_carries_the_script_for_each_kind() {
    let text =
        std::fs::read_to_string(e2e::chart::repo_root().join("config/argocd/argocd-cm.yaml"))
            .unwrap();
    let cm: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    for kind in KINDS {
        let key = format!("resource.customizations.health.switchyard.dev_{kind}");
        assert_eq!(
            cm["data"][&key].as_str(),
            Some(script().as_str()),
            "{key} is stale: run scripts/generate"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_of_what_the_controller_writes() {
    let env = Env::start();
    let (dev_db, prod_db, gated_db) = (database().await, database().await, database().await);
    env.db_secret("dev-db", &dev_db);
    env.db_secret("prod-db", &prod_db);
    env.db_secret("gated-db", &gated_db);
    env.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: down-db\nstringData:\n  url: postgres://app@127.0.0.1:1/nowhere\n",
    );
    let mut project = shop();
    env.project_configmap("shop-files", &project);
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("dev", "shop", "dev-db", true, ""));
    env.apply(&env_yaml("prod", "shop", "prod-db", false, ""));
    env.apply(&env_yaml("down", "shop", "down-db", true, ""));
    env.apply(&env_yaml(
        "paused",
        "shop",
        "dev-db",
        true,
        "  suspend: true\n",
    ));
    env.apply(&env_yaml(
        "gated",
        "shop",
        "gated-db",
        true,
        "  requireApproval: true\n",
    ));
    let mut controller = env.controller("c", &[]);
    let minute = Duration::from_secs(60);
    assert!(
        env.wait("environment/dev", "condition=Ready", minute),
        "{}",
        controller.log()
    );
    env.apply("apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: to-prod\nspec:\n  from:\n    environment: dev\n  to:\n    environment: prod\n");
    assert!(
        env.wait("promotion/to-prod", "condition=Ready", minute),
        "{}",
        controller.log()
    );

    assert_health(&env.get("databaseproject/shop"), "Healthy", "");
    assert_health(&env.get("environment/dev"), "Healthy", "");
    assert_health(&env.get("promotion/to-prod"), "Healthy", "");
    assert_health(&env.get("environment/paused"), "Suspended", "spec.suspend");
    let down = eventually(minute, "down to retry", || {
        let down = env.get("environment/down");
        condition(&down, "Reconciling")
            .is_some_and(|c| c["status"] == "True")
            .then_some(down)
    });
    assert_health(&down, "Progressing", "retrying");

    // A guard blocks a promotion into a suspended Environment: it retries until the guard
    // clears (Reconciling, as kstatus reads it), naming the guard.
    env.apply("apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: to-paused\nspec:\n  from:\n    environment: dev\n  to:\n    environment: paused\n");
    let blocked = eventually(minute, "the promotion to be blocked", || {
        let p = env.get("promotion/to-paused");
        (p["status"]["phase"] == "Blocked").then_some(p)
    });
    assert_health(&blocked, "Progressing", "is suspended");

    // A plan waiting for a person to approve it (issue #16): Suspended, not Degraded,
    // whether no approval is given yet or the one given names another plan.
    let ready_reason = |obj: &Value, reason: &str| {
        condition(obj, "Ready").is_some_and(|c| c["status"] == "False" && c["reason"] == reason)
    };
    let gated = eventually(minute, "gated to wait for approval", || {
        let gated = env.get("environment/gated");
        ready_reason(&gated, "ApprovalPending").then_some(gated)
    });
    assert_health(
        &gated,
        "Suspended",
        "ApprovalPending: waiting for approval of plan sha256:",
    );
    let stale = format!("sha256:{}", "0".repeat(64));
    env.ok(&[
        "patch",
        "-n",
        &env.ns,
        "environment/gated",
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{{"approvedPlanDigest":"{stale}"}}}}"#),
    ]);
    let gated = eventually(minute, "gated's approval to be stale", || {
        let gated = env.get("environment/gated");
        ready_reason(&gated, "ApprovalStale").then_some(gated)
    });
    assert_health(&gated, "Suspended", "ApprovalStale: the approved plan");

    // A broken change: Stalled, Degraded, naming the file and line.
    project.change(
        "broken",
        &[],
        "SELECT 1;\nSELECT * FROM no_such_table;\n",
        "SELECT 1;\n",
        "SELECT 1;\n",
    );
    env.project_configmap("shop-files", &project);
    let dev = eventually(minute, "dev to stall", || {
        let dev = env.get("environment/dev");
        condition(&dev, "Stalled")
            .is_some_and(|c| c["status"] == "True")
            .then_some(dev)
    });
    assert_health(&dev, "Degraded", "deploy/broken.sql:2");

    // With the controller gone: a new generation not yet observed, and a deletion pending
    // on the finalizer, are both in progress.
    controller.kill();
    env.ok(&[
        "patch",
        "-n",
        &env.ns,
        "environment/prod",
        "--type=merge",
        "-p",
        r#"{"spec":{"retryInterval":"2s"}}"#,
    ]);
    assert_health(&env.get("environment/prod"), "Progressing", "Generation 2");
    env.ok(&["delete", "-n", &env.ns, "environment/down", "--wait=false"]);
    assert_health(&env.get("environment/down"), "Progressing", "deleted");
}
