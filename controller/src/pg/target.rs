//! The database a command or an Environment points at: parsed from what users write (a
//! `postgres://` URL, a libpq keyword string, Sqitch's `db:pg:` URI, libpq's environment,
//! or the keys of a Secret), shown only redacted, and connected to in one place.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use super::db_error_message;

/// A connection target: the config to connect with and how to name it in messages.
#[derive(Clone, Debug)]
pub struct Target {
    config: Config,
    shown: String,
}

/// A target that cannot be read; the message names the target redacted, never a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTarget(pub String);

/// Connecting failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot connect to {target}: {message}")]
pub struct ConnectError {
    /// The target, redacted.
    pub target: String,
    /// Why, as the server or the network said it.
    pub message: String,
}

impl Target {
    /// What a user wrote for `--db`: a `postgres://` URL, a libpq keyword string
    /// (`host=… dbname=…`), or Sqitch's `db:pg://user@host/db` / `db:pg:dbname`.
    pub fn parse(text: &str) -> Result<Target, InvalidTarget> {
        let text = match text.strip_prefix("db:pg:") {
            Some(rest) if rest.starts_with("//") => format!("postgres:{rest}"),
            Some(rest) => format!("dbname={rest}"),
            None => text.to_string(),
        };
        let shown = redact(&text);
        let config = text
            .parse::<Config>()
            .map_err(|e| InvalidTarget(format!("invalid --db {shown}: {e}")))?;
        Ok(Target { config, shown })
    }

    /// libpq's environment variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
    /// `PGDATABASE`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`), with libpq's defaults.
    pub fn from_libpq_env(var: impl Fn(&str) -> Option<String>) -> Result<Target, InvalidTarget> {
        let user = var("PGUSER")
            .or_else(|| var("USER"))
            .unwrap_or_else(|| "postgres".into());
        let host = var("PGHOST").unwrap_or_else(|| "localhost".into());
        let port = match var("PGPORT") {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| InvalidTarget(format!("PGPORT is not a port number: {p:?}")))?,
            None => 5432,
        };
        let dbname = var("PGDATABASE").unwrap_or_else(|| user.clone());
        let mut config = Config::new();
        for h in host.split(',') {
            config.host(h);
        }
        config.port(port).user(&user).dbname(&dbname);
        if let Some(password) = var("PGPASSWORD") {
            config.password(password);
        }
        if let Some(app) = var("PGAPPNAME") {
            config.application_name(&app);
        }
        if let Some(timeout) = var("PGCONNECT_TIMEOUT").and_then(|t| t.parse::<u64>().ok()) {
            config.connect_timeout(Duration::from_secs(timeout));
        }
        Ok(Target {
            config,
            shown: shown_parts(&host, port, &dbname),
        })
    }

    /// A target from named keys (a Secret's data): `url` (or `uri`), else `host`, `port`,
    /// `user` (or `username`), `password`, `dbname` (or `database`). `owner` names where
    /// the keys come from in messages ("the Secret").
    pub fn from_keys(
        owner: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Target, InvalidTarget> {
        if let Some(url) = get("url").or_else(|| get("uri")) {
            let shown = redact(&url);
            let config: Config = url.parse().map_err(|_| {
                InvalidTarget(format!(
                    "{owner}'s url key is not a valid connection string ({shown})"
                ))
            })?;
            return Ok(Target { config, shown });
        }
        let host = get("host").ok_or_else(|| {
            InvalidTarget(format!("{owner} has neither a url key nor a host key"))
        })?;
        let port: u16 = match get("port") {
            Some(p) => p
                .parse()
                .map_err(|_| InvalidTarget(format!("{owner}'s port key is not a port: {p:?}")))?,
            None => 5432,
        };
        let user = get("user")
            .or_else(|| get("username"))
            .ok_or_else(|| InvalidTarget(format!("{owner} has no user key")))?;
        let dbname = get("dbname")
            .or_else(|| get("database"))
            .unwrap_or_else(|| user.clone());
        let mut config = Config::new();
        config.host(&host).port(port).user(&user).dbname(&dbname);
        if let Some(password) = get("password") {
            config.password(password);
        }
        Ok(Target {
            config,
            shown: shown_parts(&host, port, &dbname),
        })
    }

    /// Session timeouts, set as startup options so they survive the per-change
    /// `RESET ALL` that gives each script a fresh session's settings.
    pub fn with_session_timeouts(
        mut self,
        statement: Option<Duration>,
        lock: Option<Duration>,
    ) -> Target {
        let mut options = self.config.get_options().unwrap_or_default().to_string();
        if let Some(t) = statement {
            options.push_str(&format!(" -c statement_timeout={}", t.as_millis()));
        }
        if let Some(t) = lock {
            options.push_str(&format!(" -c lock_timeout={}", t.as_millis()));
        }
        if !options.trim().is_empty() {
            self.config.options(options.trim());
        }
        self
    }

    /// A connect timeout unless the target sets its own.
    pub fn with_default_connect_timeout(mut self, timeout: Duration) -> Target {
        if self.config.get_connect_timeout().is_none() {
            self.config.connect_timeout(timeout);
        }
        self
    }

    /// The target as it may be shown: user info and secrets redacted.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The connection config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Connects, naming the session `switchyard` unless the target names it, and drives
    /// the connection on its own task.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let mut config = self.config.clone();
        if config.get_application_name().is_none() {
            config.application_name("switchyard");
        }
        let (client, connection) = connect_checked(config).await.map_err(|e| ConnectError {
            target: self.shown.clone(),
            message: db_error_message(&e),
        })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "Connection closed");
            }
        });
        Ok(client)
    }
}

/// How often the server checks, while a statement runs, that the client is still there.
const CLIENT_CHECK: &str = "-c client_connection_check_interval=1000";

/// Connects asking the server to watch the client's socket while statements run.
///
/// NB: PostgreSQL notices a vanished client (a killed pod, a SIGKILLed CLI) only when it
/// next writes to it, so a deployer killed in a long statement kept the project lock (and
/// its transaction) until that statement ended (issue #17). From PostgreSQL 14, on Linux,
/// `client_connection_check_interval` makes it notice within a second. It is a startup
/// option, so `RESET ALL` keeps it. Servers that refuse it (older, other platforms,
/// Materialize) get the connection without it.
async fn connect_checked(
    mut config: Config,
) -> Result<
    (
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
    tokio_postgres::Error,
> {
    use tokio_postgres::error::SqlState;
    let plain = config.clone();
    let options = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {CLIENT_CHECK}"),
        _ => CLIENT_CHECK.to_string(),
    };
    config.options(&options);
    let refused = [
        SqlState::UNDEFINED_OBJECT,
        SqlState::INVALID_PARAMETER_VALUE,
        SqlState::FEATURE_NOT_SUPPORTED,
    ];
    match config.connect(NoTls).await {
        Err(e) if e.code().is_some_and(|c| refused.contains(c)) => {
            tracing::debug!(error = %e, "Connecting without client_connection_check_interval");
            plain.connect(NoTls).await
        }
        other => other,
    }
}

fn shown_parts(host: &str, port: u16, dbname: &str) -> String {
    format!("postgres://***@{host}:{port}/{dbname}")
}

/// A connection string fit for messages: user info becomes `***`, and `password` values
/// (in a URL's query or a keyword string) become `***`; everything else is kept, so
/// `sslmode` and the host stay visible.
pub fn redact(url: &str) -> String {
    let hide_password = |kv: &str| match kv.split_once('=') {
        Some((k, _)) if k.trim().eq_ignore_ascii_case("password") => format!("{}=***", k),
        _ => kv.to_string(),
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return url
            .split_whitespace()
            .map(hide_password)
            .collect::<Vec<_>>()
            .join(" ");
    };
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let redacted = match authority_and_path.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => format!("{scheme}://{authority_and_path}"),
    };
    match query {
        Some(q) => {
            let params: Vec<String> = q.split('&').map(hide_password).collect();
            format!("{redacted}?{}", params.join("&"))
        }
        None => redacted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_user_info_and_password_params() {
        let cases = [
            (
                "postgres://alice:s3cret@db:5432/app",
                "postgres://***@db:5432/app",
            ),
            (
                "postgresql://alice@db/app?password=s3cret&sslmode=require",
                "postgresql://***@db/app?password=***&sslmode=require",
            ),
            (
                "host=db user=alice password=s3cret dbname=app",
                "host=db user=alice password=*** dbname=app",
            ),
            ("postgres://db/app", "postgres://db/app"),
        ];
        for (input, want) in cases {
            let got = redact(input);
            assert_eq!(got, want);
            assert!(!got.contains("s3cret"));
        }
    }

    #[test]
    fn libpq_variables_build_the_config_and_hide_the_password() {
        let env = |name: &str| match name {
            "PGHOST" => Some("db.example".to_string()),
            "PGPORT" => Some("6543".to_string()),
            "PGUSER" => Some("alice".to_string()),
            "PGPASSWORD" => Some("s3cret".to_string()),
            "PGDATABASE" => Some("shop".to_string()),
            _ => None,
        };
        let target = Target::from_libpq_env(env).expect("valid");
        let config = target.config();
        assert_eq!(config.get_user(), Some("alice"));
        assert_eq!(config.get_dbname(), Some("shop"));
        assert_eq!(config.get_ports(), &[6543]);
        assert_eq!(config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(target.shown(), "postgres://***@db.example:6543/shop");
    }

    #[test]
    fn sqitch_uris_are_accepted() {
        let target = Target::parse("db:pg://bob:pw@h:5433/app").expect("valid");
        assert_eq!(target.config().get_user(), Some("bob"));
        assert_eq!(target.config().get_dbname(), Some("app"));
        assert_eq!(target.shown(), "postgres://***@h:5433/app");
    }

    #[test]
    fn bad_port_is_a_clear_error() {
        let error = Target::from_libpq_env(|n| (n == "PGPORT").then(|| "x".to_string()))
            .expect_err("invalid");
        assert!(error.0.contains("PGPORT"), "{error}");
    }
}
