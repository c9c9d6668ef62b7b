//! Connections mean what they mean to libpq (issue #15): every sslmode against a server
//! with TLS on and one without, certificates checked by chain and by name, client
//! certificates with RSA, EC and Ed25519 keys, several hosts with
//! `target_session_attrs=read-write`, and the CLI reading libpq's environment and files.
//! The reference is the real `psql`, given the same URL in the same test.
//!
//! One TLS server (and a standby of it) per binary, plus the plain server; about 10 s.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::pki::KeyKind;
use e2e::tls::{PASSWORD, TlsPg, tls_server, url_encode};
use e2e::tools::{Fixture, run_ok, switchyard};
use switchyard::pg::Target;

/// What a connection attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Connected over TLS.
    Tls,
    /// Connected without TLS.
    Plain,
    /// Refused, by the server, the TLS check or the client.
    Refused,
}

const SSL_QUERY: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// Switchyard's outcome for `url`, and its error when refused.
async fn ours(url: &str) -> (Outcome, String) {
    let target = match Target::parse(url) {
        Ok(t) => t,
        Err(e) => return (Outcome::Refused, e.to_string()),
    };
    match target.connect().await {
        Ok(client) => {
            let rows = client.simple_query(SSL_QUERY).await.unwrap();
            (ssl_outcome(&first_value(&rows)), String::new())
        }
        Err(e) => (Outcome::Refused, e.to_string()),
    }
}

fn first_value(rows: &[tokio_postgres::SimpleQueryMessage]) -> String {
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default()
}

fn ssl_outcome(value: &str) -> Outcome {
    match value.trim() {
        "t" => Outcome::Tls,
        "f" => Outcome::Plain,
        other => panic!("unexpected ssl column {other:?}"),
    }
}

/// A `psql` isolated from this machine's libpq settings: an empty home, no `PG*`.
fn psql_command(home: &Path) -> Command {
    let mut command = Command::new("psql");
    command.env("HOME", home).env("PGCONNECT_TIMEOUT", "10");
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") && key != "PGCONNECT_TIMEOUT" {
            command.env_remove(key);
        }
    }
    command.args(["-X", "-A", "-t"]);
    command
}

/// psql's outcome for `url`, and its error when refused.
fn psql(url: &str) -> (Outcome, String) {
    let home = tempfile::tempdir().unwrap();
    psql_with(psql_command(home.path()).arg(url))
}

fn psql_with(command: &mut Command) -> (Outcome, String) {
    let out = command.args(["-c", SSL_QUERY]).output().unwrap();
    match out.status.success() {
        true => (
            ssl_outcome(&String::from_utf8_lossy(&out.stdout)),
            String::new(),
        ),
        false => (
            Outcome::Refused,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
    }
}

/// `postgres://user[:PASSWORD]@host:port/postgres?params`.
fn url(user: &str, host: &str, port: u16, params: &str) -> String {
    let password = match user {
        "certuser" => String::new(),
        _ => format!(":{}", url_encode(PASSWORD)),
    };
    format!("postgres://{user}{password}@{host}:{port}/postgres?{params}")
}

/// A role `app` on the plain server (trust: any password will do).
async fn plain_server_port() -> u16 {
    let server = e2e::postgres::server();
    e2e::postgres::connect(&server.url("postgres"))
        .await
        .unwrap()
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .await
        .unwrap();
    server.port()
}

/// One row of the table: a server, a user, URL parameters, and what libpq does.
struct Case {
    name: &'static str,
    /// The server without TLS, instead of the TLS one.
    plain_server: bool,
    user: &'static str,
    /// The URL's host (`127.0.0.1`, which the server's certificate names, unless the case
    /// is about names; `hostaddr=127.0.0.1` then reaches the server).
    host: &'static str,
    /// URL parameters; `$CA`, `$STRANGER_CA`, `$RSA`, `$EC`, `$ED25519`, `$STRANGER` and
    /// `$OPEN_KEY` stand for the test's files (see [`expand`]).
    params: &'static str,
    want: Outcome,
    /// A part of switchyard's message when refused.
    want_error: &'static str,
}

const fn tls(
    name: &'static str,
    user: &'static str,
    params: &'static str,
    want: Outcome,
    want_error: &'static str,
) -> Case {
    Case {
        name,
        plain_server: false,
        user,
        host: "127.0.0.1",
        params,
        want,
        want_error,
    }
}

const fn no_ssl(
    name: &'static str,
    params: &'static str,
    want: Outcome,
    want_error: &'static str,
) -> Case {
    Case {
        plain_server: true,
        ..tls(name, "app", params, want, want_error)
    }
}

const fn named(
    name: &'static str,
    host: &'static str,
    params: &'static str,
    want: Outcome,
    want_error: &'static str,
) -> Case {
    Case {
        host,
        ..tls(name, "app", params, want, want_error)
    }
}

use Outcome::{Plain, Refused, Tls};

/// What libpq does, case by case; psql must agree, or the table is wrong.
#[rustfmt::skip]
const CASES: &[Case] = &[
    tls("disable", "app", "sslmode=disable", Plain, ""),
    tls("allow: plain first", "app", "sslmode=allow", Plain, ""),
    tls("prefer (the default)", "app", "", Tls, ""),
    tls("prefer", "app", "sslmode=prefer", Tls, ""),
    tls("require", "app", "sslmode=require", Tls, ""),
    tls("require, missing root file: unverified", "app", "sslmode=require&sslrootcert=/nonexistent/ca.crt", Tls, ""),
    tls("verify-ca without a root certificate", "app", "sslmode=verify-ca", Refused, "no root certificate"),
    tls("verify-ca, missing root file", "app", "sslmode=verify-ca&sslrootcert=/nonexistent/ca.crt", Refused, "root certificate file \"/nonexistent/ca.crt\" does not exist"),
    tls("verify-ca", "app", "sslmode=verify-ca&sslrootcert=$CA", Tls, ""),
    tls("verify-full", "app", "sslmode=verify-full&sslrootcert=$CA", Tls, ""),
    named("verify-full by DNS name", "localhost", "sslmode=verify-full&sslrootcert=$CA", Tls, ""),
    named("verify-full, certificate for another name", "wrong.test", "sslmode=verify-full&sslrootcert=$CA&hostaddr=127.0.0.1", Refused, "server certificate for localhost, 127.0.0.1 is not valid for host wrong.test (sslmode=verify-full)"),
    named("verify-ca ignores the name", "wrong.test", "sslmode=verify-ca&sslrootcert=$CA&hostaddr=127.0.0.1", Tls, ""),
    tls("verify-full, unknown CA", "app", "sslmode=verify-full&sslrootcert=$STRANGER_CA", Refused, "server certificate signed by an unknown authority (sslrootcert="),
    tls("require with a root certificate acts as verify-ca", "app", "sslmode=require&sslrootcert=$STRANGER_CA", Refused, "unknown authority"),
    tls("prefer, unknown CA: falls back to plain", "app", "sslmode=prefer&sslrootcert=$STRANGER_CA", Plain, ""),
    tls("TLS-only user, disable", "sslonly", "sslmode=disable", Refused, "no encryption"),
    tls("TLS-only user, allow retries with TLS", "sslonly", "sslmode=allow", Tls, ""),
    tls("TLS-only user, prefer", "sslonly", "sslmode=prefer", Tls, ""),
    tls("plain-only user, prefer retries without TLS", "plainonly", "sslmode=prefer", Plain, ""),
    tls("plain-only user, allow", "plainonly", "sslmode=allow", Plain, ""),
    tls("plain-only user, require", "plainonly", "sslmode=require", Refused, "SSL encryption"),
    no_ssl("no-SSL server, disable", "sslmode=disable", Plain, ""),
    no_ssl("no-SSL server, allow", "sslmode=allow", Plain, ""),
    no_ssl("no-SSL server, prefer", "sslmode=prefer", Plain, ""),
    no_ssl("no-SSL server, require", "sslmode=require", Refused, "server does not support SSL, but sslmode=require"),
    no_ssl("no-SSL server, verify-ca", "sslmode=verify-ca&sslrootcert=$CA", Refused, "server does not support SSL, but sslmode=verify-ca"),
    no_ssl("no-SSL server, verify-full", "sslmode=verify-full&sslrootcert=$CA", Refused, "server does not support SSL, but sslmode=verify-full"),
    tls("client certificate, RSA PKCS#1 key", "certuser", "sslmode=verify-full&sslrootcert=$CA&$RSA", Tls, ""),
    tls("client certificate, EC SEC1 key", "certuser", "sslmode=verify-full&sslrootcert=$CA&$EC", Tls, ""),
    tls("client certificate, Ed25519 PKCS#8 key", "certuser", "sslmode=verify-full&sslrootcert=$CA&$ED25519", Tls, ""),
    tls("client certificate user without one", "certuser", "sslmode=verify-full&sslrootcert=$CA", Refused, "requires a valid client certificate"),
    tls("client certificate from an unknown CA", "certuser", "sslmode=verify-full&sslrootcert=$CA&$STRANGER", Refused, "the server refused the client certificate"),
    tls("client key readable by others", "certuser", "sslmode=require&$OPEN_KEY", Refused, "has group or world access"),
    tls("client certificate user, disable", "certuser", "sslmode=disable", Refused, "pg_hba.conf rejects connection"),
];

/// A case's parameters with the test's file names in place of `$CA` and the others.
fn expand(params: &str, pg: &TlsPg, open_key: &Path) -> String {
    let cert =
        |cert: &Path, key: &Path| format!("sslcert={}&sslkey={}", cert.display(), key.display());
    let client = |kind| cert(&pg.client(kind).cert, &pg.client(kind).key);
    params
        .replace("$STRANGER_CA", &pg.stranger.0.ca().display().to_string())
        .replace("$CA", &pg.pki.ca().display().to_string())
        .replace("$RSA", &client(KeyKind::Rsa))
        .replace("$EC", &client(KeyKind::Ec))
        .replace("$ED25519", &client(KeyKind::Ed25519))
        .replace("$STRANGER", &cert(&pg.stranger.1.cert, &pg.stranger.1.key))
        .replace("$OPEN_KEY", &cert(&pg.client(KeyKind::Ec).cert, open_key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_outcomes_match_psql() {
    let pg = tls_server();
    let plain_port = plain_server_port().await;
    let open_key = tempfile::tempdir().unwrap();
    let key_0644 = open_key.path().join("ec.key");
    std::fs::copy(&pg.client(KeyKind::Ec).key, &key_0644).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_0644, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut table = vec![format!("{:<52} {:<8} {:<8}", "case", "psql", "switchyard")];
    let mut wrong = Vec::new();
    for case in CASES {
        let port = match case.plain_server {
            true => plain_port,
            false => pg.server.port(),
        };
        let url = url(
            case.user,
            case.host,
            port,
            &expand(case.params, pg, &key_0644),
        );
        let (theirs, their_error) = psql(&url);
        let (mine, my_error) = ours(&url).await;
        table.push(format!(
            "{:<52} {:<8} {:<8}",
            case.name,
            format!("{theirs:?}"),
            format!("{mine:?}")
        ));
        if theirs != case.want || mine != case.want || !my_error.contains(case.want_error) {
            wrong.push(format!(
                "{}: want {:?} ({:?})\n  psql: {theirs:?} {their_error}\n  switchyard: {mine:?} {my_error}",
                case.name, case.want, case.want_error
            ));
        }
        assert!(
            !my_error.contains(PASSWORD) && !my_error.contains(&url_encode(PASSWORD)),
            "{my_error}"
        );
    }
    eprintln!("{}", table.join("\n"));
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// The first column of the first row `sql` returns through switchyard's connection.
async fn ours_query(url: &str, sql: &str) -> Result<String, String> {
    let client = Target::parse(url)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(first_value(&client.simple_query(sql).await.unwrap()))
}

/// The same through psql.
fn psql_query(command: &mut Command, sql: &str) -> Result<String, String> {
    let out = command.args(["-c", sql]).output().unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn project() -> Fixture {
    let mut fixture = Fixture::new("shop");
    fixture.table("users").table("orders");
    fixture
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_reach_the_primary_past_a_standby_or_a_dead_host() {
    let pg = tls_server();
    let db = pg.database_for("app").await;
    let standby = pg.server.standby().unwrap();
    let dead = e2e::controller::free_port();
    let primary = pg.server.port();
    let ca = pg.pki.ca().display().to_string();
    let hosts = |first: u16, attrs: &str| {
        format!(
            "postgres://app:{}@127.0.0.1:{first},127.0.0.1:{primary}/{}?sslmode=verify-full&sslrootcert={ca}&target_session_attrs={attrs}",
            url_encode(PASSWORD),
            db.name
        )
    };
    let home = tempfile::tempdir().unwrap();
    let port_sql = "SELECT inet_server_port()";
    for (name, url, want) in [
        (
            "standby first, read-write",
            hosts(standby.port(), "read-write"),
            primary,
        ),
        (
            "standby first, any",
            hosts(standby.port(), "any"),
            standby.port(),
        ),
        (
            "standby first, read-only",
            hosts(standby.port(), "read-only"),
            standby.port(),
        ),
        ("dead host first", hosts(dead, "read-write"), primary),
    ] {
        let want = Ok(want.to_string());
        let theirs = psql_query(psql_command(home.path()).arg(&url), port_sql);
        assert_eq!(theirs, want, "psql, {name}");
        assert_eq!(ours_query(&url, port_sql).await, want, "switchyard, {name}");
    }

    // A deploy through the two-host URL lands on the primary.
    let fixture = project();
    run_ok(
        switchyard()
            .env("HOME", home.path())
            .args(["deploy", "--project"])
            .arg(fixture.path())
            .arg("--db")
            .arg(hosts(standby.port(), "read-write")),
    );
    assert_eq!(
        e2e::postgres::public_tables(&pg.server.url(&db.name)).await,
        ["orders", "users"]
    );
    // Both hosts down: each one's reason, in order.
    standby.stop().unwrap();
    let error = ours_query(
        &hosts(dead, "read-write")
            .replace(&format!(":{primary}/"), &format!(":{}/", standby.port())),
        port_sql,
    )
    .await
    .expect_err("nothing to reach");
    assert!(error.contains(&format!("127.0.0.1:{dead}: ")), "{error}");
    assert!(
        error.contains(&format!("; 127.0.0.1:{}: ", standby.port())),
        "{error}"
    );
}

/// `PG*` variables pointing at `db` as `certuser`, with its Ed25519 certificate.
fn libpq_variables(pg: &TlsPg, db: &str, home: &Path) -> Vec<(String, String)> {
    let client = pg.client(KeyKind::Ed25519);
    [
        ("PGHOST", "localhost".to_string()),
        ("PGPORT", pg.server.port().to_string()),
        ("PGUSER", "certuser".into()),
        ("PGDATABASE", db.to_string()),
        ("PGSSLMODE", "verify-full".into()),
        ("PGSSLROOTCERT", pg.pki.ca().display().to_string()),
        ("PGSSLCERT", client.cert.display().to_string()),
        ("PGSSLKEY", client.key.display().to_string()),
        ("HOME", home.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_libpq_variables_and_default_files() {
    let pg = tls_server();
    let db = pg.database_for("certuser").await;
    let home = tempfile::tempdir().unwrap();
    let vars = libpq_variables(pg, &db.name, home.path());
    assert_eq!(
        psql_with(psql_command(home.path()).envs(vars.iter().cloned())).0,
        Outcome::Tls
    );
    let fixture = project();
    run_ok(
        switchyard()
            .envs(vars.iter().cloned())
            .args(["deploy", "--project"])
            .arg(fixture.path()),
    );
    assert_eq!(
        e2e::postgres::public_tables(&pg.server.url(&db.name)).await,
        ["orders", "users"]
    );

    // Without PGSSLROOTCERT, PGSSLCERT and PGSSLKEY: libpq's files under ~/.postgresql.
    let dot = home.path().join(".postgresql");
    std::fs::create_dir(&dot).unwrap();
    let client = pg.client(KeyKind::Rsa);
    std::fs::copy(pg.pki.ca(), dot.join("root.crt")).unwrap();
    std::fs::copy(&client.cert, dot.join("postgresql.crt")).unwrap();
    std::fs::copy(&client.key, dot.join("postgresql.key")).unwrap();
    let vars: Vec<_> = vars
        .into_iter()
        .filter(|(k, _)| !["PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"].contains(&k.as_str()))
        .collect();
    assert_eq!(
        psql_with(psql_command(home.path()).envs(vars.iter().cloned())).0,
        Outcome::Tls
    );
    let out = run_ok(
        switchyard()
            .envs(vars.iter().cloned())
            .args(["status", "--json", "--project"])
            .arg(fixture.path()),
    );
    assert!(out.contains("orders"), "{out}");
}

/// `.pgpass` in `home` with `app`'s password for `port`, mode `mode`.
fn pgpass(home: &Path, port: u16, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let escaped = PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    let path = home.join(".pgpass");
    std::fs::write(&path, format!("# test\n127.0.0.1:{port}:*:app:{escaped}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_the_password_file_unless_others_can_read_it() {
    let pg = tls_server();
    let db = pg.database_for("app").await;
    let home = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://app@127.0.0.1:{}/{}?sslmode=require",
        pg.server.port(),
        db.name
    );
    let fixture = project();
    let status = || {
        switchyard()
            .env("HOME", home.path())
            .args(["status", "--json", "--project"])
            .arg(fixture.path())
            .arg("--db")
            .arg(&url)
            .output()
            .unwrap()
    };
    for (mode, works) in [(0o600, true), (0o644, false)] {
        pgpass(home.path(), pg.server.port(), mode);
        let (theirs, _) = psql_with(psql_command(home.path()).arg(&url).arg("-w"));
        assert_eq!(theirs == Outcome::Tls, works, "psql, .pgpass mode {mode:o}");
        let out = status();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.success(),
            works,
            "switchyard, .pgpass mode {mode:o}: {stderr}"
        );
        assert!(!stderr.contains(PASSWORD), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslrootcert_system_trusts_the_platform_roots_only() {
    // NB: psql 15 predates sslrootcert=system (libpq 16); its rules are checked by hand.
    let pg = tls_server();
    let db = pg.database_for("app").await;
    let fixture = project();
    let url = |params: &str| {
        format!(
            "postgres://app:{}@localhost:{}/{}?{params}",
            url_encode(PASSWORD),
            pg.server.port(),
            db.name
        )
    };
    let status = |roots: &Path, url: String| {
        switchyard()
            .env("SSL_CERT_FILE", roots)
            .env_remove("SSL_CERT_DIR")
            .args(["status", "--json", "--project"])
            .arg(fixture.path())
            .arg("--db")
            .arg(url)
            .output()
            .unwrap()
    };
    let trusted = status(&pg.pki.ca(), url("sslrootcert=system"));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    for (roots, params, want) in [
        (
            pg.stranger.0.ca(),
            "sslrootcert=system",
            "signed by an unknown authority (sslrootcert=system)",
        ),
        (
            pg.pki.ca(),
            "sslrootcert=system&sslmode=require",
            "may not be used with sslrootcert=system",
        ),
    ] {
        let out = status(&roots, url(params));
        // NB: with --json the error is the JSON document on stdout.
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && said.contains(want),
            "{params}: {said}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_reach_the_server_and_connect_timeout_bounds_an_attempt() {
    let pg = tls_server();
    let base = url("app", "127.0.0.1", pg.server.port(), "");
    let name = ours_query(
        &base,
        "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(name, Ok("switchyard".to_string()));
    // The server watches the client's socket while statements run (issue #17), on every
    // connection, TLS or not.
    let check = ours_query(&base, "SHOW client_connection_check_interval").await;
    assert_eq!(check, Ok("1s".to_string()));
    let options = format!(
        "{base}options={}&application_name=deployer",
        url_encode("-c lock_timeout=1234")
    );
    let home = tempfile::tempdir().unwrap();
    let lock_timeout = Ok("1234ms".to_string());
    assert_eq!(
        psql_query(psql_command(home.path()).arg(&options), "SHOW lock_timeout"),
        lock_timeout
    );
    assert_eq!(
        ours_query(&options, "SHOW lock_timeout").await,
        lock_timeout
    );
    assert_eq!(
        ours_query(
            &options,
            "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        )
        .await,
        Ok("deployer".to_string())
    );

    // A server that takes the TCP connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = url("app", "127.0.0.1", port, "connect_timeout=2");
    let started = Instant::now();
    let error = ours_query(&url, "SELECT 1")
        .await
        .expect_err("silent server");
    let took = started.elapsed();
    assert!(error.contains("timeout expired"), "{error}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(psql_query(psql_command(home.path()).arg(&url), "SELECT 1").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_server_certificate_is_its_own_root() {
    let pki = e2e::pki::Pki::new("unused CA").unwrap();
    let own = pki.self_signed("self", &["localhost"]).unwrap();
    let server = e2e::postgres::PgServer::start_with(&e2e::postgres::Setup {
        tls: Some(e2e::postgres::ServerTls {
            cert: own.cert.clone(),
            key: own.key.clone(),
            client_ca: pki.ca(),
        }),
        hba: None,
    })
    .unwrap();
    let params = format!("sslmode=verify-full&sslrootcert={}", own.cert.display());
    for (host, want) in [("localhost", Outcome::Tls), ("127.0.0.1", Outcome::Refused)] {
        let url = format!(
            "postgres://postgres@{host}:{}/postgres?{params}",
            server.port()
        );
        assert_eq!(psql(&url).0, want, "psql, {host}");
        assert_eq!(ours(&url).await.0, want, "switchyard, {host}");
    }
}
