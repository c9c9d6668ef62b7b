//! The password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`), read as libpq reads it:
//! `host:port:database:user:password` lines, `*` matching anything, `\` escaping `:` and
//! `\`, the first matching line winning, and a file others can read ignored with a warning.

use std::path::Path;

use secrecy::SecretString;

/// What a password is looked up for.
pub(super) struct Lookup<'a> {
    /// The host name, or "localhost" for a Unix socket, as libpq matches it.
    pub host: &'a str,
    pub port: u16,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The password of the first matching line, if the file exists and only its owner can
/// read it.
pub(super) fn lookup(path: &Path, want: &Lookup<'_>) -> Option<SecretString> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        tracing::warn!(path = %path.display(), "Password file is not a plain file; ignored");
        return None;
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            "Password file has group or world access; permissions should be u=rw (0600) or less; ignored"
        );
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    find(&text, want)
}

fn find(text: &str, want: &Lookup<'_>) -> Option<SecretString> {
    let port = want.port.to_string();
    let wanted = [want.host, port.as_str(), want.dbname, want.user];
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let fields = split(line);
            if fields.len() < 5 {
                return None;
            }
            let matches = fields
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want);
            // NB: the password is everything after the fourth separator (`split` stops
            // splitting there), so it may hold colons.
            matches.then(|| SecretString::from(fields[4].as_str()))
        })
}

/// A line's fields, unescaped; a `*` written as `\*` is a literal star, kept as is.
fn split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(field)) = (chars.next(), fields.last_mut()) {
                    field.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let file = "# comment\n\
                    db:5432:shop:alice:first\n\
                    *:*:*:alice:p\\:w\\\\d:with:colons\n\
                    other\\:host:*:*:*:escaped\n";
        let cases = [
            (("db", 5432, "shop", "alice"), Some("first")),
            (("db", 5433, "shop", "alice"), Some("p:w\\d:with:colons")),
            (("other:host", 1, "x", "bob"), Some("escaped")),
            (("db", 5432, "shop", "bob"), None),
        ];
        for ((host, port, dbname, user), want) in cases {
            let got = find(
                file,
                &Lookup {
                    host,
                    port,
                    dbname,
                    user,
                },
            );
            assert_eq!(
                got.as_ref().map(|s| s.expose_secret()),
                want,
                "{host}:{port}:{dbname}:{user}"
            );
        }
    }

    #[test]
    fn a_file_others_can_read_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:pw\n").expect("write");
        let want = Lookup {
            host: "h",
            port: 1,
            dbname: "d",
            user: "u",
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(lookup(&path, &want).is_none());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(
            lookup(&path, &want).as_ref().map(|s| s.expose_secret()),
            Some("pw")
        );
    }
}
