//! Secrets never leave (issue #17): the whole flow runs with recognisable secrets (the
//! database password in every Secret and CLI URL, a git bearer token over https, the
//! webhook's HMAC key), through success and every kind of failure (a change failing, an
//! unreachable database, a wrong token, a badly signed webhook); then the controller's
//! log, every object's status, every Event, the metrics and all CLI output are searched
//! for each value: zero hits.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;
use e2e::git::{GitHttp, HttpConfig, Repos};
use e2e::reliability::{project, promotion};
use e2e::tools::{output, switchyard};

const TOKEN: &str = "Tok-git-b34r3r-never-print-me";
const WEBHOOK: &str = "Wh-hmac-7a11c0de-never-print-me";
const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_logs_events_status_metrics_or_cli_output() {
    let env = Env::start();
    let db = database().await;
    let repos = Repos::new().unwrap();
    let http = GitHttp::start(
        repos.root(),
        HttpConfig {
            tls: true,
            basic: None,
            bearer: Some(TOKEN.into()),
        },
    )
    .unwrap();
    let mut work = repos.create("shop").unwrap();
    work.copy_dir(project(1).path(), "").unwrap();
    work.commit("shop").unwrap();
    work.push("main", false).unwrap();
    let ca = env.logs.path().join("ca.crt");
    std::fs::write(&ca, http.ca_pem()).unwrap();

    let nowhere = apply_resources(&env, &db, &http, &ca);
    let hook = env.logs.path().join("webhook");
    std::fs::write(&hook, WEBHOOK).unwrap();
    let controller = env.controller("c", &["--webhook-secret-file", hook.to_str().unwrap()]);
    assert!(
        env.wait("environment/dev", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    env.apply(&promotion("p1"));
    assert!(
        env.wait("promotion/p1", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    eventually(
        WAIT,
        "the wrong token and the unreachable host to be reported",
        || {
            let denied = env.get("databaseproject/denied");
            let nowhere = env.get("environment/nowhere");
            (condition(&denied, "Ready").is_some_and(|c| c["reason"] == "AuthenticationFailed")
                && condition(&nowhere, "Ready").is_some_and(|c| c["reason"] == "ConnectFailed"))
            .then_some(())
        },
    );

    // A change that fails, pushed and announced by a (badly signed, then good) webhook.
    work.copy_dir(project(2).path(), "").unwrap();
    work.write(
        "deploy/t2.sql",
        "CREATE TABLE shop.t2 (id int);\nSELECT * FROM no_such_table;\n",
    )
    .unwrap();
    work.commit("t2, broken").unwrap();
    work.push("main", false).unwrap();
    let body = br#"{"ref":"refs/heads/main"}"#;
    let (bad, _) = controller.post("/hooks/generic", &[("X-Signature", "sha256=00")], body);
    assert_ne!(bad, 200);
    eventually(WAIT, "dev to report the failed change", || {
        let dev = env.get("environment/dev");
        condition(&dev, "Ready")
            .is_some_and(|c| c["reason"] == "DeployFailed")
            .then_some(())
    });

    // The CLI, with the password in its URL, through success and failure.
    let cli = cli_output(&db, &nowhere, &http, &ca);
    assert!(
        cli.contains("main@sha1:"),
        "the CLI read the project from git with the token:\n{cli}"
    );
    let (_, metrics) = controller.admin("/metrics");
    let everything = [
        ("controller log", controller.log()),
        ("objects and events", env.visible_state()),
        ("metrics", metrics),
        ("CLI output", cli),
    ];
    let leaks = leaks(&everything);
    let searched: usize = everything.iter().map(|(_, t)| t.len()).sum();
    e2e::chaos::figure(
        "secret leaks (4 secrets in logs, status, events, metrics, CLI output)",
        format!("{} in {searched} bytes searched", leaks.len()),
    );
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// Every `switchyard` run a person would make with these secrets, successful and not, with
/// its stdout and stderr at trace level.
fn cli_output(
    db: &e2e::postgres::TestDb,
    nowhere: &str,
    http: &GitHttp,
    ca: &std::path::Path,
) -> String {
    let url = format!(
        "postgres://app:{PASSWORD}@127.0.0.1:{}/{}",
        db.port, db.name
    );
    let fx = project(1);
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("bearerToken"), TOKEN).unwrap();
    std::fs::copy(ca, creds.path().join("ca.crt")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut cli = String::new();
    let runs: Vec<Vec<String>> = vec![
        vec![
            "status".into(),
            "--project".into(),
            fx.path().display().to_string(),
            "--db".into(),
            url.clone(),
            "--json".into(),
        ],
        vec![
            "deploy".into(),
            "--project".into(),
            fx.path().display().to_string(),
            "--db".into(),
            url.clone(),
        ],
        vec![
            "deploy".into(),
            "--project".into(),
            fx.path().display().to_string(),
            "--db".into(),
            nowhere.to_string(),
            "--json".into(),
        ],
        vec![
            "log".into(),
            "--project".into(),
            fx.path().display().to_string(),
            "--db".into(),
            url.clone(),
        ],
        vec![
            "plan".into(),
            "--git".into(),
            http.url("shop"),
            "--git-credentials".into(),
            creds.path().display().to_string(),
            "--cache".into(),
            cache.path().display().to_string(),
        ],
        vec![
            "deploy".into(),
            "--git".into(),
            http.url("shop"),
            "--git-credentials".into(),
            creds.path().display().to_string(),
            "--cache".into(),
            cache.path().display().to_string(),
            "--db".into(),
            url.clone(),
            "--json".into(),
        ],
    ];
    for args in &runs {
        let out = output(
            switchyard()
                .args(args)
                .env("RUST_LOG", "trace")
                .env("SWITCHYARD_LOG", "trace"),
        );
        cli.push_str(&String::from_utf8_lossy(&out.stdout));
        cli.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        cli.contains("ConnectFailed") || cli.contains("could not") || cli.contains("connect"),
        "the failing runs ran:\n{cli}"
    );

    cli
}

/// `what: n × secret` for every secret found in any of the texts.
fn leaks(everything: &[(&str, String)]) -> Vec<String> {
    let mut leaks = Vec::new();
    for (what, text) in everything {
        for secret in [PASSWORD, TOKEN, WEBHOOK, "Tok-wrong-but-also-secret"] {
            let hits = text.matches(secret).count();
            if hits > 0 {
                leaks.push(format!("{what}: {hits} × {secret}"));
            }
        }
    }
    leaks
}

/// Secrets of every shape (a URL, keys, a wrong host; git over https with a right and a
/// wrong token) and the resources that use them. Returns the unreachable database's URL.
fn apply_resources(
    env: &Env,
    db: &e2e::postgres::TestDb,
    http: &GitHttp,
    ca: &std::path::Path,
) -> String {
    env.db_secret("url-db", db);
    env.secret(
        "keys-db",
        &[
            ("host", "127.0.0.1"),
            ("port", &db.port.to_string()),
            ("user", "app"),
            ("password", PASSWORD),
            ("dbname", &db.name),
        ],
        &[],
    );
    let nowhere = format!(
        "postgres://app:{PASSWORD}@127.0.0.1:{}/{}",
        free_port(),
        db.name
    );
    env.secret("nowhere-db", &[("url", &nowhere)], &[]);
    env.secret("git", &[("bearerToken", TOKEN)], &[("ca.crt", ca)]);
    env.secret(
        "wrong-git",
        &[("bearerToken", "Tok-wrong-but-also-secret")],
        &[("ca.crt", ca)],
    );
    let repo = |name: &str, secret: &str| {
        git_project_yaml(
            name,
            &http.url("shop"),
            "branch: main",
            "2s",
            &format!("      secretRef:\n        name: {secret}\n"),
        )
    };
    env.apply(&repo("shop", "git"));
    env.apply(&repo("denied", "wrong-git"));
    env.apply(&env_yaml(
        "dev",
        "shop",
        "url-db",
        true,
        "  schemaSuffix: _dev\n",
    ));
    env.apply(&env_yaml(
        "prod",
        "shop",
        "keys-db",
        false,
        "  schemaSuffix: _prod\n",
    ));
    env.apply(&env_yaml("nowhere", "shop", "nowhere-db", true, ""));
    nowhere
}
