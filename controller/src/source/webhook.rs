//! Push webhooks: authenticating a request (GitHub, GitLab, generic HMAC) and reading which
//! repository and ref it is about. Pure; the HTTP endpoint is `runtime::webhook`.

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

/// Who sent a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// GitHub (and Gitea, Forgejo, Bitbucket Server, which send the same signature).
    GitHub,
    /// GitLab.
    GitLab,
    /// Any sender that signs the body with HMAC-SHA256.
    Generic,
}

impl Provider {
    /// The provider served at `path` (`/hooks/<provider>`).
    pub fn from_path(path: &str) -> Option<Provider> {
        match path.trim_end_matches('/') {
            "/hooks/github" => Some(Provider::GitHub),
            "/hooks/gitlab" => Some(Provider::GitLab),
            "/hooks/generic" => Some(Provider::Generic),
            _ => None,
        }
    }
}

/// A push: the repository (every URL the payload gives, normalised by
/// [`super::url::normalize`]) and the ref pushed, when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// Normalised repository URLs.
    pub repositories: Vec<String>,
    /// The full ref name pushed (`refs/heads/main`, `refs/tags/v1`), or None for any.
    pub reference: Option<String>,
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No signature or token header.
    #[error("the request is not signed: {0} is missing")]
    Unsigned(&'static str),
    /// The signature or token does not match.
    #[error("the signature does not match")]
    BadSignature,
    /// The body is not the payload the provider sends.
    #[error("unreadable payload: {0}")]
    BadPayload(String),
}

/// Checks the request is from someone who knows `secret`. `header` looks a header up by
/// name (case-insensitive). Constant-time comparisons only.
pub fn authenticate(
    provider: Provider,
    secret: &[u8],
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<(), Rejection> {
    let signed = |name: &'static str| -> Result<(), Rejection> {
        let value = header(name).ok_or(Rejection::Unsigned(name))?;
        let hex = value
            .trim()
            .strip_prefix("sha256=")
            .ok_or(Rejection::BadSignature)?;
        let given = hex::decode(hex).map_err(|_| Rejection::BadSignature)?;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
            .map_err(|_| Rejection::BadSignature)?;
        mac.update(body);
        mac.verify_slice(&given)
            .map_err(|_| Rejection::BadSignature)
    };
    match provider {
        Provider::GitHub => signed("X-Hub-Signature-256"),
        Provider::Generic => signed("X-Signature"),
        Provider::GitLab => {
            let token = header("X-Gitlab-Token").ok_or(Rejection::Unsigned("X-Gitlab-Token"))?;
            if token.as_bytes().ct_eq(secret).into() {
                Ok(())
            } else {
                Err(Rejection::BadSignature)
            }
        }
    }
}

/// The signature header value for `body`, as GitHub and the generic provider send it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // NB: HMAC accepts keys of any length, so this is never empty.
    hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
        .map(|mut mac| {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        })
        .unwrap_or_default()
}

/// Reads an authenticated payload. `Ok(None)` for events that are not pushes (GitHub's
/// `ping`, GitLab's merge request events): accepted, nothing to do.
pub fn parse(
    provider: Provider,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<Option<Push>, Rejection> {
    let event = match provider {
        Provider::GitHub => header("X-GitHub-Event"),
        Provider::GitLab => header("X-Gitlab-Event"),
        Provider::Generic => None,
    };
    match (provider, event.as_deref()) {
        (Provider::GitHub, Some("push")) | (Provider::GitHub, None) => {}
        (Provider::GitLab, Some("Push Hook" | "Tag Push Hook" | "System Hook")) => {}
        (Provider::GitLab, None) | (Provider::Generic, _) => {}
        _ => return Ok(None),
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Rejection::BadPayload(e.to_string()))?;
    let strings = |paths: &[&[&str]]| -> Vec<String> {
        paths
            .iter()
            .filter_map(|path| {
                path.iter()
                    .try_fold(&value, |v, key| v.get(*key))
                    .and_then(|v| v.as_str())
                    .map(super::url::normalize)
            })
            .collect()
    };
    let mut repositories = match provider {
        Provider::GitHub => strings(&[
            &["repository", "clone_url"],
            &["repository", "ssh_url"],
            &["repository", "git_url"],
            &["repository", "html_url"],
        ]),
        Provider::GitLab => strings(&[
            &["project", "git_http_url"],
            &["project", "git_ssh_url"],
            &["project", "web_url"],
            &["repository", "git_http_url"],
            &["repository", "git_ssh_url"],
        ]),
        Provider::Generic => strings(&[&["url"], &["repository", "url"]]),
    };
    repositories.sort();
    repositories.dedup();
    if repositories.is_empty() {
        return Err(Rejection::BadPayload(
            "no repository URL in the payload".into(),
        ));
    }
    let reference = value
        .get("ref")
        .and_then(|r| r.as_str())
        .map(str::to_string);
    Ok(Some(Push {
        repositories,
        reference,
    }))
}

impl Push {
    /// True when this push can change what `url` at `reference` names.
    pub fn concerns(&self, url: &str, reference: &super::Reference) -> bool {
        if !self.repositories.contains(&super::url::normalize(url)) {
            return false;
        }
        let Some(pushed) = &self.reference else {
            return true;
        };
        match reference {
            super::Reference::Branch(b) => pushed == &format!("refs/heads/{b}"),
            super::Reference::Name(n) => {
                pushed == &format!("refs/heads/{n}") || pushed == &format!("refs/tags/{n}")
            }
            super::Reference::Tag(_) | super::Reference::Semver(_) => {
                pushed.starts_with("refs/tags/")
            }
            // A commit never moves; a push cannot change it.
            super::Reference::Commit(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Reference;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_lowercase(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name.to_lowercase())
                .map(|(_, v)| v.clone())
        }
    }

    const GITHUB: &str = r#"{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/org/shop.git","ssh_url":"git@github.com:org/shop.git"}}"#;

    #[test]
    fn github_signatures_are_checked_and_bad_ones_refused() {
        let secret = b"s3cret";
        let good = sign(secret, GITHUB.as_bytes());
        let h = headers(&[("X-Hub-Signature-256", &good), ("X-GitHub-Event", "push")]);
        assert_eq!(
            authenticate(Provider::GitHub, secret, &h, GITHUB.as_bytes()),
            Ok(())
        );
        let push = parse(Provider::GitHub, &h, GITHUB.as_bytes())
            .expect("parses")
            .expect("a push");
        assert!(push.concerns(
            "https://github.com/org/shop",
            &Reference::Branch("main".into())
        ));
        assert!(!push.concerns(
            "https://github.com/org/shop",
            &Reference::Branch("dev".into())
        ));
        // A bare name (CLI `--ref main`) follows the branch or the tag of that name.
        assert!(push.concerns(
            "https://github.com/org/shop",
            &Reference::Name("main".into())
        ));
        assert!(!push.concerns(
            "https://github.com/org/shop",
            &Reference::Name("dev".into())
        ));
        assert!(!push.concerns(
            "https://github.com/org/other",
            &Reference::Branch("main".into())
        ));

        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Rejection);
        let cases: [Case; 3] = [
            ("unsigned", &[], Rejection::Unsigned("X-Hub-Signature-256")),
            (
                "signed with another secret",
                &[("X-Hub-Signature-256", "sha256=00")],
                Rejection::BadSignature,
            ),
            (
                "sha1 only",
                &[("X-Hub-Signature-256", "sha1=abc")],
                Rejection::BadSignature,
            ),
        ];
        for (name, pairs, want) in cases {
            let h = headers(pairs);
            assert_eq!(
                authenticate(Provider::GitHub, secret, &h, GITHUB.as_bytes()),
                Err(want),
                "{name}"
            );
        }
        // A body changed after signing.
        let h = headers(&[("X-Hub-Signature-256", &good)]);
        assert_eq!(
            authenticate(Provider::GitHub, secret, &h, b"{}"),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn gitlab_token_and_generic_hmac() {
        let body = br#"{"ref":"refs/tags/v2","project":{"git_http_url":"http://gitlab.example/g/shop.git"}}"#;
        let h = headers(&[
            ("X-Gitlab-Token", "tok"),
            ("X-Gitlab-Event", "Tag Push Hook"),
        ]);
        assert_eq!(authenticate(Provider::GitLab, b"tok", &h, body), Ok(()));
        assert_eq!(
            authenticate(Provider::GitLab, b"other", &h, body),
            Err(Rejection::BadSignature)
        );
        let push = parse(Provider::GitLab, &h, body)
            .expect("parses")
            .expect("push");
        assert!(push.concerns(
            "git@gitlab.example:g/shop.git",
            &Reference::Semver(">=1".into())
        ));

        let body = br#"{"url":"git://127.0.0.1:9418/shop.git"}"#;
        let sig = sign(b"k", body);
        let h = headers(&[("X-Signature", &sig)]);
        assert_eq!(authenticate(Provider::Generic, b"k", &h, body), Ok(()));
        let push = parse(Provider::Generic, &h, body)
            .expect("parses")
            .expect("push");
        assert!(push.concerns(
            "git://127.0.0.1:9418/shop",
            &Reference::Branch("any".into())
        ));
    }

    #[test]
    fn pings_are_accepted_and_ignored() {
        let h = headers(&[("X-GitHub-Event", "ping")]);
        assert_eq!(parse(Provider::GitHub, &h, b"{}"), Ok(None));
        assert_eq!(
            Provider::from_path("/hooks/github/"),
            Some(Provider::GitHub)
        );
        assert_eq!(Provider::from_path("/hooks/bitbucket"), None);
    }
}
