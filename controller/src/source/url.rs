//! Repository URLs: redacted for messages, normalised for matching webhook payloads, and
//! turned into cache directory names. Pure.

/// How a URL is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `https://`.
    Https,
    /// `http://` (no credentials are ever sent over it).
    Http,
    /// `git://` (anonymous).
    Git,
    /// `ssh://` or scp-like `user@host:path`.
    Ssh,
}

/// The transport of a URL. Local paths and `file://` are refused: they would read the
/// controller's own file system.
pub fn transport(url: &str) -> super::Result<Transport> {
    let refuse = |why: &str| {
        Err(super::Error::InvalidSpec(format!(
            "url {}: {why}",
            redact(url)
        )))
    };
    match url.split_once("://") {
        Some(("https", rest)) if !rest.is_empty() => Ok(Transport::Https),
        Some(("http", rest)) if !rest.is_empty() => Ok(Transport::Http),
        Some(("git", rest)) if !rest.is_empty() => Ok(Transport::Git),
        Some(("ssh", rest)) if !rest.is_empty() => Ok(Transport::Ssh),
        Some(("file", _)) => {
            refuse("file URLs are not supported (use --project for a local directory)")
        }
        Some(_) => {
            refuse("unsupported scheme; use https://, http://, ssh://, git:// or user@host:path")
        }
        None => match url.split_once(':') {
            Some((host, path)) if !host.is_empty() && !path.is_empty() && !host.contains('/') => {
                Ok(Transport::Ssh)
            }
            _ => refuse(
                "local paths are not supported; use https://, ssh://, git:// or user@host:path",
            ),
        },
    }
}

/// A URL fit for logs, events and status: any user info becomes `***`, and the query and
/// fragment (where tokens hide) are dropped. scp-like `git@host:path` is kept as it is (the
/// user name there is not a secret).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    format!("{scheme}://{host}{path}")
}

/// Replaces every occurrence of each secret in `text` with `***`, and redacts anything
/// that looks like a URL with user info. For messages that come from libraries.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(secret, "***");
    }
    // `scheme://user:pass@host` anywhere in the text.
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        result.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '/')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rsplit_once('@') {
            Some((_, host)) => {
                result.push_str("***@");
                result.push_str(host);
            }
            None => result.push_str(authority),
        }
        rest = &tail[end..];
    }
    result.push_str(rest);
    result
}

/// The repository a URL names, for matching: lowercase host, no scheme, user info, port,
/// trailing `/` or `.git`. `https://github.com/Org/Repo.git`, `git@github.com:Org/Repo` and
/// `ssh://git@github.com/Org/Repo` all become `github.com/org/repo`.
pub fn normalize(url: &str) -> String {
    let url = url.trim();
    let (authority, path) = match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        },
        // scp-like: [user@]host:path
        None => match url.split_once(':') {
            Some((host, path)) => (host, path),
            None => ("", url),
        },
    };
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = host.split(':').next().unwrap_or_default().to_lowercase();
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    format!("{host}/{}", path.to_lowercase())
}

/// The cache directory name for a URL: readable host and path, then a hash of the exact
/// URL without user info (so `http://` and `ssh://` of one repository get separate caches,
/// as their servers may differ).
pub fn cache_key(url: &str) -> String {
    use sha2::Digest;
    let exact = redact(url);
    let hash = hex::encode(sha2::Sha256::digest(exact.as_bytes()));
    let readable: String = normalize(url)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let readable = readable.trim_matches('-');
    let readable = &readable[..readable.len().min(48)];
    format!("{readable}-{}", &hash[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_are_read_from_the_url_and_local_paths_refused() {
        assert_eq!(transport("https://h/r").ok(), Some(Transport::Https));
        assert_eq!(
            transport("git@github.com:org/r.git").ok(),
            Some(Transport::Ssh)
        );
        assert_eq!(transport("ssh://git@h:2222/r").ok(), Some(Transport::Ssh));
        assert_eq!(transport("git://h/r").ok(), Some(Transport::Git));
        for bad in [
            "/srv/repo.git",
            "./repo",
            "file:///etc",
            "ftp://h/r",
            "repo",
        ] {
            assert!(transport(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redact_hides_user_info_and_query() {
        let cases = [
            (
                "https://user:tok3n@github.com/org/repo.git",
                "https://***@github.com/org/repo.git",
            ),
            (
                "https://github.com/org/repo.git?private_token=abc",
                "https://github.com/org/repo.git",
            ),
            ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
            ("git://127.0.0.1:9418/r.git", "git://127.0.0.1:9418/r.git"),
            ("https://host", "https://host"),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
        }
    }

    #[test]
    fn scrub_removes_secrets_and_url_credentials_from_library_messages() {
        let text = "GET https://bob:hunter22@host/r failed: bad token Tok-123456";
        let got = scrub(text, &["Tok-123456", "hunter22"]);
        assert!(
            !got.contains("hunter22") && !got.contains("Tok-123456"),
            "{got}"
        );
        assert!(got.contains("https://***@host/r"), "{got}");
    }

    #[test]
    fn normalize_makes_every_spelling_of_a_repository_equal() {
        let want = "github.com/org/repo";
        for url in [
            "https://github.com/Org/Repo.git",
            "https://user@GitHub.com/org/repo/",
            "git@github.com:org/repo.git",
            "ssh://git@github.com:22/org/repo",
            "http://github.com/org/repo",
        ] {
            assert_eq!(normalize(url), want, "{url}");
        }
        assert_ne!(normalize("https://github.com/org/other"), want);
    }

    #[test]
    fn cache_key_is_stable_readable_and_ignores_credentials() {
        let a = cache_key("https://github.com/org/repo.git");
        assert!(a.starts_with("github-com-org-repo-"), "{a}");
        assert_eq!(a, cache_key("https://github.com/org/repo.git"));
        assert_eq!(
            cache_key("https://x:y@github.com/org/repo.git"),
            cache_key("https://z:w@github.com/org/repo.git")
        );
        assert_ne!(a, cache_key("git://github.com/org/repo.git"));
    }
}
