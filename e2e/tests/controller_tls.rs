//! The controller deploys into TLS-only databases from the Secrets users and database
//! operators write (issue #15): a `url` with `sslmode=verify-full` and a `ca.crt` key;
//! CloudNativePG's `<cluster>-app` Secret with the cluster's `<cluster>-ca` Secret as the
//! TLS Secret; a Zalando-style `username` Secret completed by `spec.database` and a
//! cert-manager-style Secret holding a client certificate. A Secret of no known layout and a
//! `ca.crt` that did not sign the server's certificate are reported in the user's terms,
//! and no password, key or certificate shows up in the log, the events or the status.
//!
//! One controller, one TLS server; about 15 s.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use e2e::controller::*;
use e2e::pki::KeyKind;
use e2e::postgres::TestDb;
use e2e::tls::{PASSWORD, TlsPg, tls_server, url_encode};

/// An Environment following project `shop`, with `database` lines under `spec.database`.
fn environment(name: &str, database: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: {name}\nspec:\n  projectRef:\n    name: shop\n  autoDeploy: true\n  retryInterval: 1s\n  database:\n{database}"
    )
}

/// The Ready condition of Environment `name` once its reason is `reason`.
fn ready_with_reason(env: &Env, name: &str, reason: &str) -> serde_json::Value {
    eventually(Duration::from_secs(60), reason, || {
        let e = env.get(&format!("environment/{name}"));
        condition(&e, "Ready")
            .filter(|c| c["reason"] == reason)
            .cloned()
    })
}

/// A url with verify-full and the CA beside it, for a user the server refuses without
/// TLS. Returns the database and the url (reused with another CA).
async fn url_with_ca(env: &Env, pg: &TlsPg) -> (TestDb, String) {
    let db = pg.database_for("sslonly").await;
    let url = format!(
        "postgres://sslonly:{}@localhost:{}/{}?sslmode=verify-full",
        url_encode(PASSWORD),
        pg.server.port(),
        db.name
    );
    env.secret("url-db", &[("url", &url)], &[("ca.crt", &pg.pki.ca())]);
    env.apply(&environment("url", "    secretRef: {name: url-db}\n"));
    (db, url)
}

/// CloudNativePG: the app Secret as the operator writes it, the CA from `<cluster>-ca`
/// (which also holds the CA's key).
async fn cloudnative_pg(env: &Env, pg: &TlsPg) -> TestDb {
    let db = pg.database_for("sslonly").await;
    let port = pg.server.port().to_string();
    let uri = format!(
        "postgresql://sslonly:{}@localhost:{port}/{}",
        url_encode(PASSWORD),
        db.name
    );
    let pgpass = format!("localhost:{port}:{}:sslonly:{PASSWORD}", db.name);
    let jdbc = format!("jdbc:postgresql://localhost:{port}/{}", db.name);
    env.secret(
        "shop-app",
        &[
            ("username", "sslonly"),
            ("user", "sslonly"),
            ("password", PASSWORD),
            ("host", "localhost"),
            ("port", &port),
            ("dbname", &db.name),
            ("uri", &uri),
            ("jdbc-uri", &jdbc),
            ("pgpass", &pgpass),
        ],
        &[],
    );
    env.secret(
        "shop-ca",
        &[],
        &[("ca.crt", &pg.pki.ca()), ("ca.key", &ca_key(pg))],
    );
    env.apply(&environment(
        "cnpg",
        "    secretRef: {name: shop-app}\n    tlsSecretRef: {name: shop-ca}\n    sslMode: verify-full\n",
    ));
    db
}

fn ca_key(pg: &TlsPg) -> std::path::PathBuf {
    pg.pki.dir().join("ca.key")
}

/// A username-only Secret completed by `spec.database`, logging in with a client
/// certificate from a cert-manager-style Secret.
async fn client_certificate(env: &Env, pg: &TlsPg) -> TestDb {
    let db = pg.database_for("certuser").await;
    let client = pg.client(KeyKind::Rsa);
    env.secret("cert-user", &[("username", "certuser")], &[]);
    env.secret(
        "cert-tls",
        &[],
        &[
            ("tls.crt", &client.cert),
            ("tls.key", &client.key),
            ("ca.crt", &pg.pki.ca()),
        ],
    );
    env.apply(&environment(
        "cert",
        &format!(
            "    secretRef: {{name: cert-user}}\n    tlsSecretRef: {{name: cert-tls}}\n    host: localhost\n    port: {}\n    dbname: {}\n    sslMode: verify-full\n",
            pg.server.port(),
            db.name
        ),
    ));
    db
}

/// A Secret of no layout, and a url whose `ca.crt` did not sign the server's certificate.
fn refused_ones(env: &Env, pg: &TlsPg, url: &str) {
    env.secret("odd-db", &[("password", PASSWORD), ("token", "t")], &[]);
    env.apply(&environment("odd", "    secretRef: {name: odd-db}\n"));
    env.secret(
        "stranger-db",
        &[("url", url)],
        &[("ca.crt", &pg.stranger.0.ca())],
    );
    env.apply(&environment(
        "stranger",
        "    secretRef: {name: stranger-db}\n",
    ));
}

/// Neither the password nor any key or certificate shows up in `seen`.
fn assert_nothing_secret_in(seen: &str, pg: &TlsPg) {
    let body = |path: &Path| {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .find(|l| !l.starts_with("-----"))
            .unwrap()
            .to_string()
    };
    let client = pg.client(KeyKind::Rsa);
    for (what, secret) in [
        ("password", PASSWORD.to_string()),
        ("password, URL-encoded", url_encode(PASSWORD)),
        ("client key", body(&client.key)),
        ("CA key", body(&ca_key(pg))),
        ("client certificate", body(&client.cert)),
    ] {
        assert!(!seen.contains(&secret), "the {what} shows up:\n{seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_deploy_into_tls_only_databases_from_operator_secrets() {
    let pg = tls_server();
    let env = Env::start();
    env.project_configmap("shop-files", &shop());
    env.apply(&project_yaml("shop", "shop-files"));
    let (url_db, url) = url_with_ca(&env, pg).await;
    let cnpg_db = cloudnative_pg(&env, pg).await;
    let cert_db = client_certificate(&env, pg).await;
    refused_ones(&env, pg, &url);

    let controller = env.controller("c", &[]);
    for name in ["url", "cnpg", "cert"] {
        assert!(
            env.wait(
                &format!("environment/{name}"),
                "condition=Ready",
                Duration::from_secs(60)
            ),
            "{name} Ready\n{}",
            controller.log()
        );
    }
    for db in [&url_db, &cnpg_db, &cert_db] {
        assert_eq!(
            e2e::postgres::public_tables(&pg.server.url(&db.name)).await,
            ["orders", "users"]
        );
    }
    let odd = ready_with_reason(&env, "odd", "InvalidSecret");
    let message = odd["message"].as_str().unwrap();
    assert!(
        message.contains("Secret odd-db is not a layout")
            && message.contains("found keys: password, token"),
        "{message}"
    );
    let stranger = ready_with_reason(&env, "stranger", "ConnectFailed");
    let message = stranger["message"].as_str().unwrap();
    assert!(
        message.contains("server certificate signed by an unknown authority (sslrootcert=key ca.crt of Secret stranger-db)"),
        "{message}"
    );
    // Nothing secret anywhere a user or a log collector looks.
    assert_nothing_secret_in(
        &format!("{}\n{}", controller.log(), env.visible_state()),
        pg,
    );
}
