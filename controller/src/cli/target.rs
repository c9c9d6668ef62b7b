//! Working out the target database and the committer from arguments and the environment.

use crate::engine::redact_url;
use crate::registry::Committer;

/// The connection config for `--db` (or `$SWITCHYARD_DB`, which clap already folded in), else
/// the libpq variables. Returns the config and the target as it may be shown.
pub fn resolve(db: Option<&str>) -> Result<(tokio_postgres::Config, String), String> {
    match db {
        Some(url) => {
            // Sqitch's target URIs: db:pg://user@host/db, or db:pg:dbname.
            let url = match url.strip_prefix("db:pg:") {
                Some(rest) if rest.starts_with("//") => format!("postgres:{rest}"),
                Some(rest) => format!("dbname={rest}"),
                None => url.to_string(),
            };
            let config = url
                .parse::<tokio_postgres::Config>()
                .map_err(|e| format!("invalid --db {}: {e}", redact_url(&url)))?;
            Ok((config, redact_url(&url)))
        }
        None => from_libpq_env(|name| std::env::var(name).ok()),
    }
}

/// libpq's environment variables, with libpq's defaults.
fn from_libpq_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<(tokio_postgres::Config, String), String> {
    let mut config = tokio_postgres::Config::new();
    let user = var("PGUSER")
        .or_else(|| var("USER"))
        .unwrap_or_else(|| "postgres".into());
    let host = var("PGHOST").unwrap_or_else(|| "localhost".into());
    let port = match var("PGPORT") {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("PGPORT is not a port number: {p:?}"))?,
        None => 5432,
    };
    let dbname = var("PGDATABASE").unwrap_or_else(|| user.clone());
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
        config.connect_timeout(std::time::Duration::from_secs(timeout));
    }
    let shown = format!("postgres://***@{host}:{port}/{dbname}");
    Ok((config, shown))
}

/// Who is deploying: switchyard's variables, else Sqitch's, else the login name.
pub fn committer() -> Committer {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let login = var("USER")
        .or_else(|| var("LOGNAME"))
        .unwrap_or_else(|| "switchyard".into());
    let name = var("SWITCHYARD_USER_NAME")
        .or_else(|| var("SQITCH_FULLNAME"))
        .unwrap_or_else(|| login.clone());
    let email = var("SWITCHYARD_USER_EMAIL")
        .or_else(|| var("SQITCH_EMAIL"))
        .unwrap_or_else(|| {
            format!(
                "{login}@{}",
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "localhost".into())
            )
        });
    Committer { name, email }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (config, shown) = from_libpq_env(env).expect("valid");
        assert_eq!(config.get_user(), Some("alice"));
        assert_eq!(config.get_dbname(), Some("shop"));
        assert_eq!(config.get_ports(), &[6543]);
        assert_eq!(config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(shown, "postgres://***@db.example:6543/shop");
    }

    #[test]
    fn sqitch_uris_are_accepted() {
        let (config, shown) = resolve(Some("db:pg://bob:pw@h:5433/app")).expect("valid");
        assert_eq!(config.get_user(), Some("bob"));
        assert_eq!(config.get_dbname(), Some("app"));
        assert_eq!(shown, "postgres://***@h:5433/app");
    }

    #[test]
    fn bad_port_is_a_clear_error() {
        let error =
            from_libpq_env(|n| (n == "PGPORT").then(|| "x".to_string())).expect_err("invalid");
        assert!(error.contains("PGPORT"), "{error}");
    }
}
