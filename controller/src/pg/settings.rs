//! What the gathered connection parameters mean here ([`Settings`]): hosts and ports,
//! timeouts, session attributes, keepalives, TLS. Values libpq would refuse, and libpq
//! features Switchyard leaves out, are refused naming the parameter and where it came
//! from, never a password. Pure: reads no files and no environment.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use tokio_postgres::config::{ChannelBinding, TargetSessionAttrs};

use super::error::InvalidTarget;
use super::params::{Defaults, Given, Params};
use super::tls;

/// Where one host is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// The host name (for TLS and `.pgpass`), a Unix-socket directory, or none when only
    /// `hostaddr` is given.
    pub host: Host,
    /// The address to connect to instead of resolving `host`.
    pub hostaddr: Option<IpAddr>,
    pub port: u16,
}

/// A host as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Host {
    Tcp(String),
    Unix(PathBuf),
    None,
}

/// Keepalive settings, libpq's defaults unless given.
#[derive(Clone, Debug, Default)]
pub(super) struct Keepalives {
    pub off: bool,
    pub idle: Option<Duration>,
    pub interval: Option<Duration>,
    pub count: Option<u32>,
}

/// The parameters as they act on a connection.
#[derive(Clone)]
pub(super) struct Settings {
    pub hosts: Vec<Endpoint>,
    pub user: String,
    pub dbname: String,
    pub password: Option<SecretString>,
    pub passfile: Option<PathBuf>,
    pub options: Option<String>,
    pub application_name: String,
    pub connect_timeout: Option<Duration>,
    pub session: TargetSessionAttrs,
    pub channel_binding: ChannelBinding,
    pub keepalives: Keepalives,
    pub tcp_user_timeout: Option<Duration>,
    pub tls: tls::Settings,
}

/// The session name when nobody gives one, so DBAs see who holds a lock.
pub(super) const APPLICATION_NAME: &str = "switchyard";

impl Settings {
    /// Reads every parameter; the first bad value is the error.
    pub fn read(mut params: Params, defaults: &Defaults) -> Result<Settings, InvalidTarget> {
        check_unsupported(&params)?;
        let hosts = endpoints(&params, defaults)?;
        let user = match params.value("user") {
            Some(g) => g.value.clone(),
            None => defaults
                .user
                .clone()
                .ok_or_else(|| InvalidTarget("no user name: give user (or username)".into()))?,
        };
        Ok(Settings {
            hosts,
            dbname: params
                .value("dbname")
                .map_or_else(|| user.clone(), |g| g.value.clone()),
            user,
            password: params.take_password(),
            passfile: passfile(&params, defaults),
            options: params.value("options").map(|g| g.value.clone()),
            application_name: params
                .value("application_name")
                .or_else(|| params.value("fallback_application_name"))
                .map_or_else(|| APPLICATION_NAME.to_string(), |g| g.value.clone()),
            connect_timeout: connect_timeout(&params)?,
            session: session_attrs(&params)?,
            channel_binding: channel_binding(&params)?,
            keepalives: keepalives(&params)?,
            tcp_user_timeout: params
                .value("tcp_user_timeout")
                .map(|g| number::<u64>(g, "tcp_user_timeout").map(Duration::from_millis))
                .transpose()?,
            tls: tls::Settings::read(&params, defaults)?,
        })
    }
}

fn number<T: std::str::FromStr>(given: &Given, keyword: &str) -> Result<T, InvalidTarget> {
    given.value.trim().parse().map_err(|_| {
        InvalidTarget(format!(
            "invalid integer value {:?} for {keyword} ({})",
            given.value, given.from
        ))
    })
}

/// `host`, `hostaddr` and `port` as comma lists of equal length (one port serves all),
/// as libpq pairs them.
fn endpoints(params: &Params, defaults: &Defaults) -> Result<Vec<Endpoint>, InvalidTarget> {
    let split = |k: &str| -> Vec<String> {
        params
            .value(k)
            .map(|g| g.value.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    };
    let (hosts, addrs, ports) = (split("host"), split("hostaddr"), split("port"));
    let from = |k: &str| {
        params
            .value(k)
            .map_or(String::new(), |g| format!(" ({})", g.from))
    };
    let count = hosts.len().max(addrs.len()).max(1);
    if !hosts.is_empty() && !addrs.is_empty() && hosts.len() != addrs.len() {
        return Err(InvalidTarget(format!(
            "could not match {} host names{} to {} hostaddr values{}",
            hosts.len(),
            from("host"),
            addrs.len(),
            from("hostaddr")
        )));
    }
    if ports.len() > 1 && ports.len() != count {
        return Err(InvalidTarget(format!(
            "could not match {} port numbers{} to {count} hosts",
            ports.len(),
            from("port")
        )));
    }
    (0..count)
        .map(|i| {
            let hostaddr = match addrs.get(i).filter(|a| !a.is_empty()) {
                Some(a) => Some(a.parse::<IpAddr>().map_err(|_| {
                    InvalidTarget(format!(
                        "invalid hostaddr {a:?}{}: not an IP address",
                        from("hostaddr")
                    ))
                })?),
                None => None,
            };
            let host = match hosts.get(i).filter(|h| !h.is_empty()) {
                Some(h) if h.starts_with('/') => Host::Unix(PathBuf::from(h)),
                Some(h) => Host::Tcp(h.clone()),
                None if hostaddr.is_some() => Host::None,
                None => match &defaults.socket_dir {
                    Some(dir) => Host::Unix(dir.clone()),
                    None => return Err(InvalidTarget("no host: give host (or a url)".into())),
                },
            };
            let port = match ports.get(i).or(ports.first()).filter(|p| !p.is_empty()) {
                Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    InvalidTarget(format!("invalid port number {p:?}{}", from("port")))
                })?,
                None => 5432,
            };
            Ok(Endpoint {
                host,
                hostaddr,
                port,
            })
        })
        .collect()
}

fn passfile(params: &Params, defaults: &Defaults) -> Option<PathBuf> {
    match params.value("passfile") {
        Some(g) => Some(PathBuf::from(&g.value)),
        None => defaults.home.as_ref().map(|h| h.join(".pgpass")),
    }
}

/// libpq's rule: zero or less waits forever; under two seconds counts as two.
fn connect_timeout(params: &Params) -> Result<Option<Duration>, InvalidTarget> {
    let Some(given) = params.value("connect_timeout") else {
        return Ok(None);
    };
    let seconds: i64 = number(given, "connect_timeout")?;
    Ok((seconds > 0).then(|| Duration::from_secs(seconds.max(2) as u64)))
}

fn session_attrs(params: &Params) -> Result<TargetSessionAttrs, InvalidTarget> {
    if let Some(g) = params.value("target_session_attrs")
        && ["primary", "standby", "prefer-standby"].contains(&g.value.as_str())
    {
        return Err(InvalidTarget(format!(
            "target_session_attrs={} ({}) is not supported: use read-write (the primary) or read-only",
            g.value, g.from
        )));
    }
    Ok(params
        .choice(
            "target_session_attrs",
            &[
                ("any", TargetSessionAttrs::Any),
                ("read-write", TargetSessionAttrs::ReadWrite),
                ("read-only", TargetSessionAttrs::ReadOnly),
            ],
        )?
        .unwrap_or(TargetSessionAttrs::Any))
}

fn channel_binding(params: &Params) -> Result<ChannelBinding, InvalidTarget> {
    Ok(params
        .choice(
            "channel_binding",
            &[
                ("disable", ChannelBinding::Disable),
                ("prefer", ChannelBinding::Prefer),
                ("require", ChannelBinding::Require),
            ],
        )?
        .unwrap_or(ChannelBinding::Prefer))
}

fn keepalives(params: &Params) -> Result<Keepalives, InvalidTarget> {
    let seconds = |k: &str| -> Result<Option<Duration>, InvalidTarget> {
        params
            .value(k)
            .map(|g| number::<u64>(g, k).map(Duration::from_secs))
            .transpose()
    };
    Ok(Keepalives {
        off: params
            .value("keepalives")
            .map(|g| number::<i64>(g, "keepalives"))
            .transpose()?
            == Some(0),
        idle: seconds("keepalives_idle")?,
        interval: seconds("keepalives_interval")?,
        count: params
            .value("keepalives_count")
            .map(|g| number::<u32>(g, "keepalives_count"))
            .transpose()?,
    })
}

/// Values of read parameters that name features Switchyard does not have.
fn check_unsupported(params: &Params) -> Result<(), InvalidTarget> {
    let refuse = |keyword: &str, allowed: &[&str], why: &str| match params.value(keyword) {
        Some(g) if !allowed.contains(&g.value.to_ascii_lowercase().as_str()) => Err(InvalidTarget(
            format!("{keyword}={} ({}) is not supported: {why}", g.value, g.from),
        )),
        _ => Ok(()),
    };
    refuse(
        "client_encoding",
        &["utf8", "utf-8", "unicode", "auto"],
        "connections always use UTF8",
    )?;
    refuse(
        "gssencmode",
        &["disable", "prefer"],
        "GSSAPI encryption is not available; use TLS (sslmode)",
    )?;
    refuse(
        "load_balance_hosts",
        &["disable"],
        "hosts are tried in the order given",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let mut p = Params::default();
        for (k, v) in pairs {
            p.set(k, v.to_string(), "--db").expect("known keyword");
        }
        p
    }

    fn read(pairs: &[(&str, &str)]) -> Result<Settings, InvalidTarget> {
        let defaults = Defaults {
            user: Some("login".into()),
            socket_dir: Some("/run/pg".into()),
            home: None,
        };
        Settings::read(params(pairs), &defaults)
    }

    #[test]
    fn hosts_ports_and_hostaddrs_pair_up_as_libpq_pairs_them() {
        let s = read(&[("host", "a,b,/sock"), ("port", "5433")]).expect("valid");
        let ports: Vec<u16> = s.hosts.iter().map(|e| e.port).collect();
        assert_eq!(ports, [5433, 5433, 5433]);
        assert_eq!(s.hosts[2].host, Host::Unix("/sock".into()));
        let s = read(&[("host", "a,b"), ("port", "1,2")]).expect("valid");
        assert_eq!(s.hosts[1].port, 2);
        let s = read(&[("hostaddr", "127.0.0.1")]).expect("valid");
        assert_eq!(s.hosts[0].host, Host::None);
        let s = read(&[]).expect("valid");
        assert_eq!(s.hosts[0].host, Host::Unix("/run/pg".into()));
        assert_eq!((s.user.as_str(), s.dbname.as_str()), ("login", "login"));
        assert_eq!(s.application_name, "switchyard");
        let cases = [
            (
                vec![("host", "a,b"), ("port", "1,2,3")],
                "3 port numbers (--db) to 2 hosts",
            ),
            (
                vec![("host", "a,b"), ("hostaddr", "127.0.0.1")],
                "2 host names (--db) to 1 hostaddr",
            ),
            (vec![("port", "x")], "invalid port number \"x\""),
            (vec![("hostaddr", "db")], "invalid hostaddr \"db\""),
        ];
        for (pairs, want) in cases {
            let error = read(&pairs).err().expect("invalid").0;
            assert!(error.contains(want), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn bad_values_name_the_parameter_and_where_it_came_from() {
        let cases = [
            (
                ("sslmode", "bogus"),
                "invalid sslmode value \"bogus\" (--db): expected disable, allow, prefer, require, verify-ca, verify-full",
            ),
            (
                ("target_session_attrs", "primary"),
                "target_session_attrs=primary (--db) is not supported",
            ),
            (
                ("connect_timeout", "soon"),
                "invalid integer value \"soon\" for connect_timeout (--db)",
            ),
            (
                ("gssencmode", "require"),
                "GSSAPI encryption is not available",
            ),
            (("client_encoding", "LATIN1"), "connections always use UTF8"),
        ];
        for ((k, v), want) in cases {
            let error = read(&[(k, v)]).err().expect("invalid").0;
            assert!(error.contains(want), "{k}={v}: {error}");
        }
        let mut p = Params::default();
        let error = p
            .set("sslcrl", "x".into(), "PGSSLCRL")
            .expect_err("refused");
        assert!(error.0.contains("\"sslcrl\" (PGSSLCRL)"), "{error}");
        let error = p.set("hots", "x".into(), "--db").expect_err("unknown");
        assert!(
            error.0.contains("unknown connection parameter \"hots\""),
            "{error}"
        );
    }

    #[test]
    fn timeouts_and_names_follow_libpq() {
        let s = read(&[
            ("connect_timeout", "1"),
            ("fallback_application_name", "mine"),
        ])
        .expect("valid");
        assert_eq!(s.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.application_name, "mine");
        let s = read(&[("connect_timeout", "0"), ("application_name", "app")]).expect("valid");
        assert_eq!(s.connect_timeout, None);
        assert_eq!(s.application_name, "app");
    }
}
