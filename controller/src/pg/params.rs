//! The connection parameters libpq knows: their names, their environment variables, where
//! each value came from, and what each value means here ([`Settings`]). Values that
//! libpq would refuse, and libpq features Switchyard leaves out, are refused with a message
//! naming the parameter and where it came from, never a password.
//!
//! Pure: reads no files and no environment; `target` hands it the values and the defaults.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use tokio_postgres::config::{ChannelBinding, TargetSessionAttrs};

use super::target::InvalidTarget;
use super::tls;

/// How Switchyard treats a libpq parameter.
#[derive(Clone, Copy)]
enum Use {
    /// Read and acted on.
    Read,
    /// Accepted and without effect here, as libpq itself treats it (`sslcompression`) or
    /// because it only tunes a feature that is off (GSSAPI).
    Ignored,
    /// Refused, with the reason.
    Refused(&'static str),
}

/// libpq's parameters, each with its environment variable ("" when it has none).
const KEYWORDS: &[(&str, &str, Use)] = &[
    ("host", "PGHOST", Use::Read),
    ("hostaddr", "PGHOSTADDR", Use::Read),
    ("port", "PGPORT", Use::Read),
    ("dbname", "PGDATABASE", Use::Read),
    ("user", "PGUSER", Use::Read),
    ("password", "PGPASSWORD", Use::Read),
    ("passfile", "PGPASSFILE", Use::Read),
    ("channel_binding", "PGCHANNELBINDING", Use::Read),
    ("connect_timeout", "PGCONNECT_TIMEOUT", Use::Read),
    ("client_encoding", "PGCLIENTENCODING", Use::Read),
    ("options", "PGOPTIONS", Use::Read),
    ("application_name", "PGAPPNAME", Use::Read),
    ("fallback_application_name", "", Use::Read),
    ("keepalives", "", Use::Read),
    ("keepalives_idle", "", Use::Read),
    ("keepalives_interval", "", Use::Read),
    ("keepalives_count", "", Use::Read),
    ("tcp_user_timeout", "", Use::Read),
    ("target_session_attrs", "PGTARGETSESSIONATTRS", Use::Read),
    ("load_balance_hosts", "PGLOADBALANCEHOSTS", Use::Read),
    ("sslmode", "PGSSLMODE", Use::Read),
    ("requiressl", "PGREQUIRESSL", Use::Read),
    ("sslnegotiation", "PGSSLNEGOTIATION", Use::Read),
    ("sslrootcert", "PGSSLROOTCERT", Use::Read),
    ("sslcert", "PGSSLCERT", Use::Read),
    ("sslkey", "PGSSLKEY", Use::Read),
    ("sslcertmode", "PGSSLCERTMODE", Use::Read),
    ("sslsni", "PGSSLSNI", Use::Read),
    (
        "ssl_min_protocol_version",
        "PGSSLMINPROTOCOLVERSION",
        Use::Read,
    ),
    (
        "ssl_max_protocol_version",
        "PGSSLMAXPROTOCOLVERSION",
        Use::Read,
    ),
    ("gssencmode", "PGGSSENCMODE", Use::Read),
    ("sslcompression", "PGSSLCOMPRESSION", Use::Ignored),
    ("krbsrvname", "PGKRBSRVNAME", Use::Ignored),
    ("gsslib", "PGGSSLIB", Use::Ignored),
    ("gssdelegation", "PGGSSDELEGATION", Use::Ignored),
    (
        "sslpassword",
        "",
        Use::Refused(
            "encrypted private keys are not supported; store the key unencrypted (openssl pkey -in KEY -out KEY.plain) and protect the file or the Secret instead",
        ),
    ),
    (
        "sslcrl",
        "PGSSLCRL",
        Use::Refused("certificate revocation lists are not checked"),
    ),
    (
        "sslcrldir",
        "PGSSLCRLDIR",
        Use::Refused("certificate revocation lists are not checked"),
    ),
    (
        "service",
        "PGSERVICE",
        Use::Refused(
            "connection service files (pg_service.conf) are not read; write the parameters out",
        ),
    ),
    (
        "requirepeer",
        "PGREQUIREPEER",
        Use::Refused("peer checks on Unix sockets are not supported"),
    ),
    (
        "require_auth",
        "PGREQUIREAUTH",
        Use::Refused("restricting the authentication method is not supported"),
    ),
    (
        "replication",
        "",
        Use::Refused("replication connections are not supported"),
    ),
];

/// The environment variables libpq reads, with the parameter each sets.
pub(super) fn env_vars() -> impl Iterator<Item = (&'static str, &'static str)> {
    KEYWORDS
        .iter()
        .filter(|(_, env, _)| !env.is_empty())
        .map(|(keyword, env, _)| (*keyword, *env))
}

/// One value and where it came from, to name it in messages (`--db`, `PGSSLMODE`,
/// `key sslmode of Secret db`).
#[derive(Clone, Debug)]
pub(super) struct Given {
    pub value: String,
    pub from: String,
}

/// The parameters gathered from every source, before they mean anything.
#[derive(Default)]
pub(super) struct Params {
    values: BTreeMap<&'static str, Given>,
    /// Kept apart from the rest so that it is never copied into plain text.
    password: Option<SecretString>,
    /// PEM held in memory (a Secret's `ca.crt`, `tls.crt`, `tls.key`), not files.
    pub inline: tls::Inline,
}

impl Params {
    /// Sets `keyword`, replacing an earlier value: the later source wins, as libpq's
    /// "last one counts". An unknown or refused parameter is an error naming `from`.
    pub fn set(&mut self, keyword: &str, value: String, from: &str) -> Result<(), InvalidTarget> {
        let Some((name, _, use_)) = KEYWORDS.iter().find(|(k, _, _)| *k == keyword) else {
            return Err(InvalidTarget(format!(
                "unknown connection parameter \"{keyword}\" ({from})"
            )));
        };
        match use_ {
            Use::Refused(why) => Err(InvalidTarget(format!(
                "connection parameter \"{name}\" ({from}): {why}"
            ))),
            Use::Ignored => Ok(()),
            Use::Read if *name == "password" => {
                self.password = Some(SecretString::from(value));
                Ok(())
            }
            Use::Read => {
                let from = from.to_string();
                self.values.insert(name, Given { value, from });
                Ok(())
            }
        }
    }

    /// Sets `keyword` unless a value is already there (libpq's environment defaults).
    pub fn set_default(
        &mut self,
        keyword: &str,
        value: String,
        from: &str,
    ) -> Result<(), InvalidTarget> {
        let taken = match keyword {
            "password" => self.password.is_some(),
            _ => self.values.contains_key(keyword),
        };
        if taken {
            return Ok(());
        }
        self.set(keyword, value, from)
    }

    /// Sets the password without it ever being plain text here.
    pub fn set_password(&mut self, password: SecretString) {
        self.password = Some(password);
    }

    /// Whether `keyword` has a value.
    pub fn has(&self, keyword: &str) -> bool {
        match keyword {
            "password" => self.password.is_some(),
            _ => self.values.contains_key(keyword),
        }
    }

    fn get(&self, keyword: &str) -> Option<&Given> {
        self.values.get(keyword).filter(|g| !g.value.is_empty())
    }
}

/// What the caller's surroundings supply when a parameter is missing: the CLI passes
/// libpq's per-user defaults, the controller none (a Secret must say everything).
#[derive(Clone, Debug, Default)]
pub(super) struct Defaults {
    /// The Unix-socket directory to use when no host is given.
    pub socket_dir: Option<PathBuf>,
    /// The user name when none is given (the login name).
    pub user: Option<String>,
    /// The home directory: `~/.pgpass` and `~/.postgresql/{root.crt,postgresql.crt,postgresql.key}`.
    pub home: Option<PathBuf>,
}

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
        let user = match params.get("user") {
            Some(g) => g.value.clone(),
            None => defaults
                .user
                .clone()
                .ok_or_else(|| InvalidTarget("no user name: give user (or username)".into()))?,
        };
        Ok(Settings {
            hosts,
            dbname: params
                .get("dbname")
                .map_or_else(|| user.clone(), |g| g.value.clone()),
            user,
            password: params.password.take(),
            passfile: passfile(&params, defaults),
            options: params.get("options").map(|g| g.value.clone()),
            application_name: params
                .get("application_name")
                .or_else(|| params.get("fallback_application_name"))
                .map_or_else(|| APPLICATION_NAME.to_string(), |g| g.value.clone()),
            connect_timeout: connect_timeout(&params)?,
            session: session_attrs(&params)?,
            channel_binding: channel_binding(&params)?,
            keepalives: keepalives(&params)?,
            tcp_user_timeout: params
                .get("tcp_user_timeout")
                .map(|g| number::<u64>(g, "tcp_user_timeout").map(Duration::from_millis))
                .transpose()?,
            tls: tls::Settings::read(&params, defaults)?,
        })
    }
}

impl Params {
    /// The value of `keyword` read against a closed set, with libpq's message.
    pub(super) fn choice<T: Copy>(
        &self,
        keyword: &str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, InvalidTarget> {
        let Some(given) = self.get(keyword) else {
            return Ok(None);
        };
        choices
            .iter()
            .find(|(name, _)| *name == given.value)
            .map(|(_, v)| Some(*v))
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                InvalidTarget(format!(
                    "invalid {keyword} value {:?} ({}): expected {}",
                    given.value,
                    given.from,
                    names.join(", ")
                ))
            })
    }

    /// The value of `keyword`, if set and not empty.
    pub(super) fn value(&self, keyword: &str) -> Option<&Given> {
        self.get(keyword)
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
            .get(k)
            .map(|g| g.value.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    };
    let (hosts, addrs, ports) = (split("host"), split("hostaddr"), split("port"));
    let from = |k: &str| {
        params
            .get(k)
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
    match params.get("passfile") {
        Some(g) => Some(PathBuf::from(&g.value)),
        None => defaults.home.as_ref().map(|h| h.join(".pgpass")),
    }
}

/// libpq's rule: zero or less waits forever; under two seconds counts as two.
fn connect_timeout(params: &Params) -> Result<Option<Duration>, InvalidTarget> {
    let Some(given) = params.get("connect_timeout") else {
        return Ok(None);
    };
    let seconds: i64 = number(given, "connect_timeout")?;
    Ok((seconds > 0).then(|| Duration::from_secs(seconds.max(2) as u64)))
}

fn session_attrs(params: &Params) -> Result<TargetSessionAttrs, InvalidTarget> {
    if let Some(g) = params.get("target_session_attrs")
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
            .get(k)
            .map(|g| number::<u64>(g, k).map(Duration::from_secs))
            .transpose()
    };
    Ok(Keepalives {
        off: params
            .get("keepalives")
            .map(|g| number::<i64>(g, "keepalives"))
            .transpose()?
            == Some(0),
        idle: seconds("keepalives_idle")?,
        interval: seconds("keepalives_interval")?,
        count: params
            .get("keepalives_count")
            .map(|g| number::<u32>(g, "keepalives_count"))
            .transpose()?,
    })
}

/// Values of read parameters that name features Switchyard does not have.
fn check_unsupported(params: &Params) -> Result<(), InvalidTarget> {
    let refuse = |keyword: &str, allowed: &[&str], why: &str| match params.get(keyword) {
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
