//! The database a command or an Environment points at, the one place a connection is
//! made: parsed from what users write (a `postgres://` URL, a libpq keyword string,
//! Sqitch's `db:pg:` URI), from libpq's environment and files (the CLI), or from a
//! Secret's keys (the controller); shown only redacted; connected with libpq's meaning of
//! every host, sslmode and fallback.
//!
//! The syntax is `conninfo`'s, the parameters `params`', TLS `tls`'s; this file gathers
//! them from each source and runs the connection attempts.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretSlice, SecretString};
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::db_error_message;
use super::error::{ConnectError, InvalidTarget};
use super::material;
use super::params::{self, Defaults, Params};
use super::passfile;
use super::settings::{Endpoint, Host, Settings};
use super::tls::{self, SslMode};

/// A connection target: how to connect, and how to name it in messages.
#[derive(Clone)]
pub struct Target {
    settings: std::sync::Arc<Settings>,
    shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("shown", &self.shown)
            .finish()
    }
}

/// A Secret's keys. Every value is held as a secret until it is read as a parameter that
/// is not one (a host, a port); the password and `tls.key` never leave secrecy.
pub struct Keys {
    name: String,
    values: BTreeMap<String, SecretSlice<u8>>,
}

impl Keys {
    /// The keys of Secret `name`.
    pub fn new(name: &str, values: impl IntoIterator<Item = (String, Vec<u8>)>) -> Keys {
        Keys {
            name: name.to_string(),
            values: values
                .into_iter()
                .map(|(k, v)| (k, SecretSlice::from(v)))
                .collect(),
        }
    }

    fn label(&self, key: &str) -> String {
        format!("key {key} of Secret {}", self.name)
    }

    /// A key's value as text, trimmed; empty counts as absent.
    fn text(&self, key: &str) -> Result<Option<String>, InvalidTarget> {
        let Some(value) = self.values.get(key) else {
            return Ok(None);
        };
        let text = std::str::from_utf8(value.expose_secret())
            .map_err(|_| InvalidTarget(format!("{} is not UTF-8 text", self.label(key))))?;
        Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
    }

    /// The password as written, less one trailing newline (`--from-file` keeps it).
    fn password(&self) -> Result<Option<SecretString>, InvalidTarget> {
        let Some(value) = self.values.get("password") else {
            return Ok(None);
        };
        let text = std::str::from_utf8(value.expose_secret())
            .map_err(|_| InvalidTarget(format!("{} is not UTF-8 text", self.label("password"))))?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        Ok(Some(SecretString::from(text)))
    }

    /// Keys with text values, for tests.
    #[cfg(test)]
    pub(crate) fn of_text(name: &str, pairs: &[(&str, &str)]) -> Keys {
        Keys::new(
            name,
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        )
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.values.keys().map(String::as_str).collect();
        match names.is_empty() {
            true => "none".into(),
            false => names.join(", "),
        }
    }
}

/// A parameter set outside the Secret, e.g. `("sslmode", "verify-full",
/// "spec.database.sslMode")`: it wins over the Secret's.
pub type Override<'a> = (&'a str, String, &'a str);

/// The Secret keys read as single parameters (beside `uri` / `url`), with the parameter
/// each sets.
const SECRET_KEYS: &[(&str, &str)] = &[
    ("host", "host"),
    ("port", "port"),
    ("dbname", "dbname"),
    ("database", "dbname"),
    ("user", "user"),
    ("username", "user"),
    ("sslmode", "sslmode"),
    ("sslrootcert", "sslrootcert"),
    ("target_session_attrs", "target_session_attrs"),
    ("connect_timeout", "connect_timeout"),
    ("application_name", "application_name"),
    ("options", "options"),
];

impl Target {
    /// What a user wrote for `--db`: a `postgres://` URL, a libpq keyword string
    /// (`host=… dbname=…`), or Sqitch's `db:pg://user@host/db` / `db:pg:dbname`. Nothing
    /// else is consulted: no environment, no files.
    pub fn parse(text: &str) -> Result<Target, InvalidTarget> {
        let mut params = Params::default();
        add_text(&mut params, text, "--db")?;
        Target::from_params(params, &Defaults::default())
    }

    /// What libpq would connect to: `text` (a `--db` value) when given, over libpq's
    /// environment variables (`PGHOST`, `PGSSLMODE`, `PGSSLROOTCERT`, …, read through
    /// `var`), over libpq's defaults: the Unix socket, the login name, `~/.pgpass` and
    /// `~/.postgresql/{root.crt,postgresql.crt,postgresql.key}`.
    pub fn from_libpq_env(
        text: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Target, InvalidTarget> {
        let mut params = Params::default();
        if let Some(text) = text {
            add_text(&mut params, text, "--db")?;
        }
        for (keyword, env) in params::env_vars() {
            if let Some(value) = var(env).filter(|v| !v.is_empty()) {
                params.set_default(keyword, value, env)?;
            }
        }
        let socket_dir = ["/var/run/postgresql", "/tmp"]
            .into_iter()
            .map(PathBuf::from)
            .find(|d| d.is_dir());
        let defaults = Defaults {
            socket_dir,
            // NB: libpq asks the password database; the login variables stand in for it.
            user: Some(
                var("USER")
                    .or_else(|| var("LOGNAME"))
                    .unwrap_or_else(|| "postgres".into()),
            ),
            home: var("HOME").map(PathBuf::from),
        };
        Target::from_params(params, &defaults)
    }

    /// A target from a Secret's keys (`uri` or `url`; else `host`, `port`, `username` or
    /// `user`, `password`, `dbname`; `sslmode`; `ca.crt`, `tls.crt`, `tls.key`), the keys
    /// of a second Secret with TLS files (only `ca.crt`, `tls.crt`, `tls.key` are read;
    /// they win), and `overrides`, which win over both. The uri is read first; the single
    /// keys fill in what it leaves out.
    pub fn from_keys(
        secret: &Keys,
        tls_secret: Option<&Keys>,
        overrides: &[Override<'_>],
    ) -> Result<Target, InvalidTarget> {
        let mut params = Params::default();
        for key in ["url", "uri"] {
            if let Some(text) = secret.text(key)? {
                add_text(&mut params, &text, &secret.label(key))?;
                break;
            }
        }
        for (key, keyword) in SECRET_KEYS {
            if let Some(value) = secret.text(key)? {
                if *keyword == "sslrootcert" && value != "system" {
                    return Err(InvalidTarget(format!(
                        "{}: only \"system\" is read here; put the CA certificate itself in key ca.crt",
                        secret.label(key)
                    )));
                }
                params.set_default(keyword, value, &secret.label(key))?;
            }
        }
        if !params.has("password")
            && let Some(password) = secret.password()?
        {
            params.set_password(password);
        }
        params.inline = inline_tls(secret, tls_secret);
        for (keyword, value, from) in overrides {
            params.set(keyword, value.clone(), from)?;
        }
        if !params.has("host") && !params.has("hostaddr") || !params.has("user") {
            return Err(InvalidTarget(format!(
                "Secret {} is not a layout this controller reads: want a uri (or url) key, or host and username (or user) keys (a host may come from spec.database.host); found keys: {}",
                secret.name,
                secret.names()
            )));
        }
        Target::from_params(params, &Defaults::default())
    }

    fn from_params(params: Params, defaults: &Defaults) -> Result<Target, InvalidTarget> {
        let settings = Settings::read(params, defaults)?;
        let shown = shown(&settings);
        Ok(Target {
            settings: std::sync::Arc::new(settings),
            shown,
        })
    }

    /// Session timeouts, set as startup options so they survive the per-change
    /// `RESET ALL` that gives each script a fresh session's settings.
    pub fn with_session_timeouts(
        mut self,
        statement: Option<Duration>,
        lock: Option<Duration>,
    ) -> Target {
        let mut options = self.settings.options.clone().unwrap_or_default();
        if let Some(t) = statement {
            options.push_str(&format!(" -c statement_timeout={}", t.as_millis()));
        }
        if let Some(t) = lock {
            options.push_str(&format!(" -c lock_timeout={}", t.as_millis()));
        }
        if !options.trim().is_empty() {
            self.settings_mut().options = Some(options.trim().to_string());
        }
        self
    }

    /// A connect timeout unless the target sets its own.
    pub fn with_default_connect_timeout(mut self, timeout: Duration) -> Target {
        if self.settings.connect_timeout.is_none() {
            self.settings_mut().connect_timeout = Some(timeout);
        }
        self
    }

    fn settings_mut(&mut self) -> &mut Settings {
        std::sync::Arc::make_mut(&mut self.settings)
    }

    /// The target as it may be shown: `postgres://***@host:port[,host:port…]/dbname`.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The user name the target logs in as.
    pub fn user(&self) -> &str {
        &self.settings.user
    }

    /// The startup options (`-c name=value …`), if any.
    pub fn options(&self) -> Option<&str> {
        self.settings.options.as_deref()
    }
}

/// Reads a connection string (or Sqitch's `db:pg:` form) into `params`.
fn add_text(params: &mut Params, text: &str, from: &str) -> Result<(), InvalidTarget> {
    let text = match text.strip_prefix("db:pg:") {
        Some(rest) if rest.starts_with("//") => format!("postgres:{rest}"),
        Some(rest) => format!("dbname={rest}"),
        None => text.to_string(),
    };
    let pairs = super::conninfo::parse(&text).map_err(|e| InvalidTarget(format!("{from}: {e}")))?;
    for (keyword, value) in pairs {
        params.set(&keyword, value, from)?;
    }
    Ok(())
}

/// A Secret's TLS files, the second Secret's winning key by key.
fn inline_tls(secret: &Keys, tls_secret: Option<&Keys>) -> material::Inline {
    let find = |key: &str| {
        tls_secret
            .into_iter()
            .chain([secret])
            .find_map(|keys| keys.values.get(key).map(|v| (keys.label(key), v)))
    };
    let pem = |key: &str| {
        find(key).map(|(label, v)| material::Pem {
            label,
            source: material::Source::Memory(v.expose_secret().to_vec()),
        })
    };
    material::Inline {
        ca: pem("ca.crt"),
        cert: pem("tls.crt"),
        key: find("tls.key").map(|(label, v)| material::Key {
            label,
            source: material::KeySource::Memory(v.clone()),
        }),
    }
}

fn shown(settings: &Settings) -> String {
    let hosts: Vec<String> = settings.hosts.iter().map(endpoint_shown).collect();
    format!("postgres://***@{}/{}", hosts.join(","), settings.dbname)
}

fn endpoint_shown(endpoint: &Endpoint) -> String {
    let host = match (&endpoint.host, endpoint.hostaddr) {
        (Host::Tcp(h), _) if h.contains(':') => format!("[{h}]"),
        (Host::Tcp(h), _) => h.clone(),
        (Host::Unix(dir), _) => dir.display().to_string().replace('/', "%2F"),
        (Host::None, Some(IpAddr::V6(a))) => format!("[{a}]"),
        (Host::None, Some(a)) => a.to_string(),
        (Host::None, None) => String::new(),
    };
    format!("{host}:{}", endpoint.port)
}

// === impl Target: connecting ===

/// How often the server checks, while a statement runs, that the client is still there.
///
/// NB: PostgreSQL notices a vanished client (a killed pod, a SIGKILLed CLI) only when it
/// next writes to it, so a deployer killed in a long statement kept the project lock (and
/// its transaction) until that statement ended (issue #17). From PostgreSQL 14, on Linux,
/// `client_connection_check_interval` makes it notice within a second. It is a startup
/// option, so `RESET ALL` keeps it. Servers that refuse it (older, other platforms,
/// Materialize) get the connection without it.
const CLIENT_CHECK: &str = "-c client_connection_check_interval=1000";

/// How one attempt talks to the server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Plain,
    /// TLS if the server agrees, else plain (libpq's `prefer` on one connection).
    TlsIfOffered,
    Tls,
}

/// Why one attempt failed, and what libpq's fallbacks need to know about it.
struct Failure {
    message: String,
    /// The server agreed to TLS and the handshake began.
    tls_started: bool,
    /// The server answered with an error (a pg_hba rejection, a bad password).
    server_refused: bool,
    /// The server refused a startup setting ([`CLIENT_CHECK`]).
    check_refused: bool,
}

impl Failure {
    fn plain(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            tls_started: false,
            server_refused: false,
            check_refused: false,
        }
    }
}

impl Target {
    /// Connects to the first host that takes the session, trying hosts in order and, per
    /// host, libpq's sslmode fallbacks; the session is named `switchyard` unless the target
    /// names it. The connection is driven on its own task.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let hosts = &self.settings.hosts;
        let mut failures = Vec::new();
        for endpoint in hosts {
            match self.connect_host(endpoint).await {
                Ok(client) => return Ok(client),
                Err(message) if hosts.len() > 1 => {
                    failures.push(format!("{}: {message}", endpoint_shown(endpoint)))
                }
                Err(message) => failures.push(message),
            }
        }
        Err(ConnectError {
            target: self.shown.clone(),
            message: failures.join("; "),
        })
    }

    async fn connect_host(&self, endpoint: &Endpoint) -> Result<Client, String> {
        let mode = self.settings.tls.mode;
        let unix = matches!(endpoint.host, Host::Unix(_));
        let both =
            |first: Failure, then: Failure| format!("{}; then {}", first.message, then.message);
        // NB: libpq never uses TLS on a Unix socket, whatever the sslmode.
        if unix || mode == SslMode::Disable {
            return self
                .attempt(endpoint, Wire::Plain)
                .await
                .map_err(|f| f.message);
        }
        match mode {
            SslMode::Allow => match self.attempt(endpoint, Wire::Plain).await {
                Err(first) if first.server_refused => self
                    .attempt(endpoint, Wire::Tls)
                    .await
                    .map_err(|then| both(first, then)),
                other => other.map_err(|f| f.message),
            },
            SslMode::Prefer => match self.attempt(endpoint, Wire::TlsIfOffered).await {
                Err(first) if first.tls_started => self
                    .attempt(endpoint, Wire::Plain)
                    .await
                    .map_err(|then| both(first, then)),
                other => other.map_err(|f| f.message),
            },
            _ => self
                .attempt(endpoint, Wire::Tls)
                .await
                .map_err(|f| f.message),
        }
    }

    /// One connection attempt, asking the server to watch the client's socket while
    /// statements run ([`CLIENT_CHECK`]); a server that refuses the setting gets the
    /// attempt again without it.
    async fn attempt(&self, endpoint: &Endpoint, wire: Wire) -> Result<Client, Failure> {
        match self.attempt_once(endpoint, wire, true).await {
            Err(failure) if failure.check_refused => {
                tracing::debug!(
                    error = %failure.message,
                    "Connecting without client_connection_check_interval"
                );
                self.attempt_once(endpoint, wire, false).await
            }
            other => other,
        }
    }

    /// One connection attempt, bounded by `connect_timeout` as a whole (libpq's meaning:
    /// per host, TLS and authentication included).
    async fn attempt_once(
        &self,
        endpoint: &Endpoint,
        wire: Wire,
        client_check: bool,
    ) -> Result<Client, Failure> {
        let config = self.config(endpoint, wire, client_check)?;
        let run = async {
            if wire == Wire::Plain {
                let (client, connection) = config
                    .connect(NoTls)
                    .await
                    .map_err(|e| self.failure(&e, false))?;
                drive(connection);
                return Ok(client);
            }
            let tls = &self.settings.tls;
            let rustls = tls
                .client_config()
                .map_err(|e| Failure::plain(e.to_string()))?;
            let (connector, started) = tls::Tracked::new(MakeRustlsConnect::new(rustls));
            let (client, connection) = config
                .connect(connector)
                .await
                .map_err(|e| self.failure(&e, started.load(std::sync::atomic::Ordering::SeqCst)))?;
            drive(connection);
            Ok(client)
        };
        match self.settings.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
                Err(Failure::plain(format!(
                    "timeout expired after {}s",
                    limit.as_secs()
                )))
            }),
            None => run.await,
        }
    }

    /// tokio-postgres's config for one host and one wire.
    fn config(
        &self,
        endpoint: &Endpoint,
        wire: Wire,
        client_check: bool,
    ) -> Result<tokio_postgres::Config, Failure> {
        let s = &self.settings;
        let mut c = tokio_postgres::Config::new();
        match (&endpoint.host, endpoint.hostaddr) {
            (Host::Tcp(h), _) => c.host(h),
            (Host::Unix(dir), _) => c.host_path(dir),
            (Host::None, _) if wire != Wire::Plain && s.tls.mode == SslMode::VerifyFull => {
                return Err(Failure::plain(
                    "host name must be specified for a verified SSL connection (sslmode=verify-full)",
                ));
            }
            // NB: tokio-postgres takes the TLS name from `host`; an address stands in for
            // it, and rustls then checks nothing by name and sends no SNI, as libpq.
            (Host::None, Some(addr)) => c.host(addr.to_string()),
            (Host::None, None) => c.host("localhost"),
        };
        if let Some(addr) = endpoint.hostaddr {
            c.hostaddr(addr);
        }
        c.port(endpoint.port)
            .user(&s.user)
            .dbname(&s.dbname)
            .application_name(&s.application_name)
            .target_session_attrs(s.session)
            .channel_binding(s.channel_binding)
            .keepalives(!s.keepalives.off)
            .ssl_mode(match wire {
                Wire::Plain => WireMode::Disable,
                Wire::TlsIfOffered => WireMode::Prefer,
                Wire::Tls => WireMode::Require,
            });
        if let Some(password) = self.password(endpoint) {
            c.password(password.expose_secret());
        }
        let options = match (&s.options, client_check) {
            (Some(o), true) => Some(format!("{o} {CLIENT_CHECK}")),
            (Some(o), false) => Some(o.clone()),
            (None, true) => Some(CLIENT_CHECK.to_string()),
            (None, false) => None,
        };
        if let Some(options) = options {
            c.options(options);
        }
        if let Some(t) = s.connect_timeout {
            c.connect_timeout(t);
        }
        if let Some(t) = s.keepalives.idle {
            c.keepalives_idle(t);
        }
        if let Some(t) = s.keepalives.interval {
            c.keepalives_interval(t);
        }
        if let Some(n) = s.keepalives.count {
            c.keepalives_retries(n);
        }
        if let Some(t) = s.tcp_user_timeout {
            c.tcp_user_timeout(t);
        }
        Ok(c)
    }

    /// The password given, else the password file's for this host (libpq matches a Unix
    /// socket as `localhost`).
    fn password(&self, endpoint: &Endpoint) -> Option<SecretString> {
        let s = &self.settings;
        if let Some(password) = &s.password {
            return Some(password.clone());
        }
        let addr = endpoint.hostaddr.map(|a| a.to_string());
        let host = match &endpoint.host {
            Host::Tcp(h) => h.as_str(),
            Host::Unix(_) => "localhost",
            Host::None => addr.as_deref().unwrap_or("localhost"),
        };
        let want = passfile::Lookup {
            host,
            port: endpoint.port,
            dbname: &s.dbname,
            user: &s.user,
        };
        passfile::lookup(s.passfile.as_deref()?, &want)
    }

    /// An attempt's error in the user's terms.
    fn failure(&self, error: &tokio_postgres::Error, tls_started: bool) -> Failure {
        let tls = &self.settings.tls;
        let message = match tls::rustls_error(error) {
            Some(e) => tls.explain(e),
            // NB: tokio-postgres's words for the server's "N" to an SSLRequest.
            None if !tls_started
                && db_error_message(error).contains("server does not support TLS") =>
            {
                format!(
                    "server does not support SSL, but sslmode={}",
                    tls.mode.name()
                )
            }
            None => db_error_message(error),
        };
        use tokio_postgres::error::SqlState;
        let refused = [
            SqlState::UNDEFINED_OBJECT,
            SqlState::INVALID_PARAMETER_VALUE,
            SqlState::FEATURE_NOT_SUPPORTED,
        ];
        Failure {
            message,
            tls_started,
            server_refused: error.as_db_error().is_some(),
            check_refused: error.code().is_some_and(|c| refused.contains(c)),
        }
    }
}

fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "Connection closed");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(target: &Target) -> Option<&str> {
        target.settings.password.as_ref().map(|p| p.expose_secret())
    }

    #[test]
    fn urls_keep_any_password_and_show_none() {
        let target = Target::parse(
            "postgres://app:p%40ss%2Fw%C3%B6rd%25%3A@db:5433,db2/shop?sslmode=require",
        )
        .expect("valid");
        assert_eq!(password(&target), Some("p@ss/wörd%:"));
        assert_eq!(target.shown(), "postgres://***@db:5433,db2:5432/shop");
        assert_eq!(target.settings.tls.mode, SslMode::Require);
        let target =
            Target::parse("host=db user=app password='a b\\'c' dbname=shop").expect("valid");
        assert_eq!(password(&target), Some("a b'c"));
        assert_eq!(target.shown(), "postgres://***@db:5432/shop");
    }

    #[test]
    fn sqitch_uris_are_accepted() {
        let target = Target::parse("db:pg://bob:pw@h:5433/app").expect("valid");
        assert_eq!(target.user(), "bob");
        assert_eq!(target.shown(), "postgres://***@h:5433/app");
        let target = Target::parse("db:pg:app host=h user=u").expect("valid");
        assert_eq!(target.shown(), "postgres://***@h:5432/app");
    }

    #[test]
    fn the_connection_string_wins_over_libpq_variables() {
        let env = |name: &str| match name {
            "PGHOST" => Some("env-host".to_string()),
            "PGPORT" => Some("6543".to_string()),
            "PGUSER" => Some("alice".to_string()),
            "PGPASSWORD" => Some("s3cret".to_string()),
            "PGDATABASE" => Some("shop".to_string()),
            "PGSSLMODE" => Some("verify-ca".to_string()),
            "HOME" => Some("/nonexistent".to_string()),
            _ => None,
        };
        let target = Target::from_libpq_env(None, env).expect("valid");
        assert_eq!(target.user(), "alice");
        assert_eq!(password(&target), Some("s3cret"));
        assert_eq!(target.shown(), "postgres://***@env-host:6543/shop");
        assert_eq!(target.settings.tls.mode, SslMode::VerifyCa);
        let target = Target::from_libpq_env(Some("postgres://bob@db/app?sslmode=disable"), env)
            .expect("valid");
        assert_eq!(target.user(), "bob");
        assert_eq!(target.shown(), "postgres://***@db:6543/app");
        assert_eq!(target.settings.tls.mode, SslMode::Disable);
    }

    #[test]
    fn bad_variables_and_strings_name_their_source() {
        let error = Target::from_libpq_env(None, |n| (n == "PGPORT").then(|| "x".to_string()))
            .expect_err("invalid");
        assert!(error.0.contains("invalid port number \"x\""), "{error}");
        let error = Target::from_libpq_env(None, |n| (n == "PGSSLMODE").then(|| "on".to_string()))
            .expect_err("invalid");
        assert!(error.0.contains("(PGSSLMODE)"), "{error}");
        let error = Target::parse("postgres://u:s3cret@h/db?sslmod=require").expect_err("invalid");
        assert!(
            error
                .0
                .contains("unknown connection parameter \"sslmod\" (--db)"),
            "{error}"
        );
        assert!(!error.0.contains("s3cret"), "{error}");
    }

    #[test]
    fn sslrootcert_system_means_verify_full_and_refuses_weaker_modes() {
        let target = Target::parse("host=h user=u sslrootcert=system").expect("valid");
        assert_eq!(target.settings.tls.mode, SslMode::VerifyFull);
        let error =
            Target::parse("host=h user=u sslrootcert=system sslmode=require").expect_err("invalid");
        assert!(error.0.contains("weak sslmode \"require\""), "{error}");
        let error = Target::parse("host=h user=u sslnegotiation=direct").expect_err("invalid");
        assert!(error.0.contains("needs PostgreSQL 17"), "{error}");
    }

    #[test]
    fn secret_keys_fill_in_the_uri_and_overrides_win() {
        let secret = Keys::of_text(
            "app",
            &[
                ("uri", "postgresql://app:pw@shop-rw.db:5432/app"),
                ("host", "ignored-beside-the-uri"),
                ("sslmode", "require"),
                ("password", "ignored-too"),
                ("jdbc-uri", "jdbc:postgresql://shop-rw.db:5432/app"),
            ],
        );
        let target = Target::from_keys(&secret, None, &[]).expect("valid");
        assert_eq!(target.shown(), "postgres://***@shop-rw.db:5432/app");
        assert_eq!(password(&target), Some("pw"));
        assert_eq!(target.settings.tls.mode, SslMode::Require);
        let overrides = [("sslmode", "disable".to_string(), "spec.database.sslMode")];
        let target = Target::from_keys(&secret, None, &overrides).expect("valid");
        assert_eq!(target.settings.tls.mode, SslMode::Disable);
    }

    #[test]
    fn secret_passwords_are_taken_as_written_less_a_trailing_newline() {
        let secret = Keys::of_text(
            "db",
            &[
                ("host", "h"),
                ("username", "u"),
                ("password", " p@ss:/wörd \n"),
            ],
        );
        let target = Target::from_keys(&secret, None, &[]).expect("valid");
        assert_eq!(password(&target), Some(" p@ss:/wörd "));
    }

    #[test]
    fn bad_secrets_name_the_key_and_never_a_value() {
        let cases = [
            (
                vec![("password", "hunter2"), ("username", "u")],
                "found keys: password, username",
            ),
            (
                vec![("host", "h"), ("user", "u"), ("ca.crt", "hunter2")],
                "key ca.crt of Secret db holds no certificate",
            ),
            (
                vec![("host", "h"), ("user", "u"), ("tls.crt", "x")],
                "key tls.crt of Secret db is given without tls.key",
            ),
            (
                vec![("host", "h"), ("user", "u"), ("sslrootcert", "/etc/ca.crt")],
                "put the CA certificate itself in key ca.crt",
            ),
            (
                vec![("host", "h"), ("user", "u"), ("port", "hunter2x")],
                "invalid port number",
            ),
        ];
        for (pairs, want) in cases {
            let error = Target::from_keys(&Keys::of_text("db", &pairs), None, &[]).expect_err(want);
            assert!(error.0.contains(want), "{pairs:?}: {error}");
            assert!(!error.0.contains("hunter2\""), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn a_tls_secret_key_wins_over_the_same_key_in_the_first() {
        let secret = Keys::of_text("db", &[("host", "h"), ("user", "u"), ("ca.crt", "not pem")]);
        let ca = Keys::of_text(
            "db-ca",
            &[("ca.crt", "also not pem"), ("ca.key", "never read")],
        );
        let error = Target::from_keys(&secret, Some(&ca), &[]).expect_err("invalid");
        assert!(error.0.contains("key ca.crt of Secret db-ca"), "{error}");
    }
}
