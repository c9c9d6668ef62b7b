//! The connection parameters libpq knows, as gathered from every source before they mean
//! anything: their names, their environment variables, and where each value came from
//! (to name it in messages, never a password). What they mean is [`super::settings`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;

use super::error::InvalidTarget;
use super::material::Inline;

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
    pub inline: Inline,
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

    /// Takes the password out, for the settings that connect with it.
    pub fn take_password(&mut self) -> Option<SecretString> {
        self.password.take()
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
