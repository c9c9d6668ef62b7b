//! Credentials for a repository, read from a Secret's data in the keys Flux uses (basic,
//! bearer, ssh identity and known_hosts, a CA). Pure; never logs a credential.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::{Error, Result};

/// What a request authenticates with.
#[derive(Clone, Default)]
pub struct Credentials {
    /// https basic auth.
    pub basic: Option<(String, SecretString)>,
    /// https bearer token.
    pub bearer: Option<SecretString>,
    /// ssh private key (OpenSSH or PEM format).
    pub identity: Option<SecretString>,
    /// ssh known_hosts lines.
    pub known_hosts: Option<String>,
    /// https CA bundle (PEM).
    pub ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("basic", &self.basic.as_ref().map(|(u, _)| (u, "***")))
            .field("bearer", &self.bearer.as_ref().map(|_| "***"))
            .field("identity", &self.identity.as_ref().map(|_| "***"))
            .field("known_hosts", &self.known_hosts.is_some())
            .field("ca", &self.ca.is_some())
            .finish()
    }
}

impl Credentials {
    /// No credentials: anonymous access.
    pub fn none() -> Credentials {
        Credentials::default()
    }

    /// Reads the keys above from a Secret's data (`data` and `stringData` merged).
    /// `secret` names the Secret in errors.
    pub fn from_secret_data(secret: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<Credentials> {
        let text = |key: &str| -> Result<Option<String>> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.clone())
                    .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
                    .map_err(|_| {
                        Error::InvalidCredentials(format!(
                            "Secret {secret}: key {key} is not UTF-8"
                        ))
                    }),
            }
        };
        let username = text("username")?;
        let password = text("password")?;
        let basic = match (username, password) {
            (Some(u), Some(p)) => Some((u, SecretString::from(p))),
            // A token as the password with any user name, as GitHub and GitLab accept.
            (None, Some(p)) => Some(("git".to_string(), SecretString::from(p))),
            (Some(_), None) => {
                return Err(Error::InvalidCredentials(format!(
                    "Secret {secret}: username without password"
                )));
            }
            (None, None) => None,
        };
        let creds = Credentials {
            basic,
            bearer: text("bearerToken")?.map(SecretString::from),
            identity: text("identity")?.map(|k| SecretString::from(format!("{k}\n"))),
            known_hosts: text("known_hosts")?,
            ca: data.get("ca.crt").or_else(|| data.get("caFile")).cloned(),
        };
        if creds.basic.is_some() && creds.bearer.is_some() {
            return Err(Error::InvalidCredentials(format!(
                "Secret {secret}: set either username/password or bearerToken, not both"
            )));
        }
        Ok(creds)
    }

    /// Checks the credentials suit `url`: ssh needs `known_hosts` (host keys are always
    /// checked), and passwords and tokens go only over https, never in clear text.
    pub fn check_for(&self, url: &str, secret: Option<&str>) -> Result<()> {
        use super::url::Transport;
        let transport = super::url::transport(url)?;
        let secret = secret.unwrap_or("(none)");
        let shown = super::url::redact(url);
        let https = self.basic.is_some() || self.bearer.is_some();
        match transport {
            Transport::Ssh if self.known_hosts.is_none() => {
                Err(Error::InvalidCredentials(format!(
                    "ssh URL {shown} needs a known_hosts key in Secret {secret}: host keys are always checked"
                )))
            }
            Transport::Ssh if self.identity.is_none() => Err(Error::InvalidCredentials(format!(
                "ssh URL {shown} needs an identity key (a private key) in Secret {secret}"
            ))),
            Transport::Ssh if https => Err(Error::InvalidCredentials(format!(
                "Secret {secret}: username/password and bearerToken are for https, not ssh"
            ))),
            Transport::Https | Transport::Http | Transport::Git if self.identity.is_some() => {
                Err(Error::InvalidCredentials(format!(
                    "Secret {secret}: identity is for ssh URLs, but the URL is {shown}"
                )))
            }
            Transport::Http | Transport::Git if https => Err(Error::InvalidCredentials(format!(
                "Secret {secret} has https credentials, but {shown} is not https: credentials are never sent in clear text"
            ))),
            _ => Ok(()),
        }
    }

    /// The secret values, for scrubbing library messages.
    pub fn secrets(&self) -> Vec<&str> {
        let mut out = Vec::new();
        if let Some((_, p)) = &self.basic {
            out.push(p.expose_secret());
        }
        if let Some(t) = &self.bearer {
            out.push(t.expose_secret());
        }
        if let Some(k) = &self.identity {
            out.push(k.expose_secret());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn reads_flux_keys_and_never_shows_secrets() {
        let c = Credentials::from_secret_data(
            "s",
            &data(&[("username", "bob"), ("password", "hunter22\n")]),
        )
        .expect("reads");
        let (user, pass) = c.basic.as_ref().expect("basic");
        assert_eq!(user, "bob");
        assert_eq!(pass.expose_secret(), "hunter22");
        assert!(!format!("{c:?}").contains("hunter22"));
        assert_eq!(c.secrets(), ["hunter22"]);
    }

    #[test]
    fn refuses_combinations_that_cannot_work() {
        assert!(Credentials::from_secret_data("s", &data(&[("username", "bob")])).is_err());
        assert!(
            Credentials::from_secret_data("s", &data(&[("password", "p"), ("bearerToken", "t")]))
                .is_err()
        );
        let key_only =
            Credentials::from_secret_data("s", &data(&[("identity", "KEY")])).expect("reads");
        let err = key_only
            .check_for("ssh://git@host/r.git", Some("s"))
            .expect_err("no known_hosts");
        assert!(err.to_string().contains("known_hosts"), "{err}");
        assert!(
            Credentials::none()
                .check_for("git@host:r.git", None)
                .is_err()
        );
        assert!(
            Credentials::none()
                .check_for("https://host/r.git", None)
                .is_ok()
        );
        assert!(key_only.check_for("https://host/r.git", Some("s")).is_err());
        let basic = Credentials::from_secret_data("s", &data(&[("password", "p")])).expect("reads");
        let err = basic
            .check_for("http://host/r.git", Some("s"))
            .expect_err("clear text");
        assert!(err.to_string().contains("clear text"), "{err}");
        assert!(basic.check_for("https://host/r.git", Some("s")).is_ok());
    }
}
