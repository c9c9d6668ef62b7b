//! libpq's two spellings of a connection string, read as libpq reads them: `keyword=value`
//! pairs (values quoted with `'…'`, `\` escaping the next character) and `postgres://`
//! URIs (percent-decoded; several `host:port` pairs; a query of parameters). Yields the
//! keyword/value pairs in order and knows no keyword's meaning (see `params`).
//!
//! Pure: no I/O, no environment. Errors never quote a value, which may be a password.

/// One `keyword=value` pair, in the order written.
pub(super) type Pair = (String, String);

/// A connection string libpq would refuse; the message names the part, never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct SyntaxError(String);

fn syntax(message: impl Into<String>) -> SyntaxError {
    SyntaxError(message.into())
}

/// Reads a URI (`postgres://` or `postgresql://`) or a keyword/value string.
pub(super) fn parse(text: &str) -> Result<Vec<Pair>, SyntaxError> {
    for prefix in ["postgresql://", "postgres://"] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return parse_uri(rest);
        }
    }
    parse_keywords(text)
}

/// `host=db port=5432 password='it''s' …`, as libpq's `conninfo_parse`.
fn parse_keywords(text: &str) -> Result<Vec<Pair>, SyntaxError> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut keyword = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            keyword.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            // NB: the word may be the second half of an unquoted password: name what came
            // before it instead.
            return Err(syntax(match pairs.last() {
                Some((previous, _)) => format!(
                    "missing \"=\" in the connection string after the value of \"{previous}\" (quote values that hold spaces: '…')"
                ),
                None => "missing \"=\" after the first word of the connection string".into(),
            }));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let value = if chars.next_if_eq(&'\'').is_some() {
            quoted_value(&mut chars, &keyword)?
        } else {
            let mut value = String::new();
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(if c == '\\' {
                    chars.next().unwrap_or(c)
                } else {
                    c
                });
            }
            value
        };
        pairs.push((keyword, value));
    }
}

fn quoted_value(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    keyword: &str,
) -> Result<String, SyntaxError> {
    let mut value = String::new();
    loop {
        match chars.next() {
            Some('\'') => return Ok(value),
            Some('\\') => match chars.next() {
                Some(c) => value.push(c),
                None => break,
            },
            Some(c) => value.push(c),
            None => break,
        }
    }
    Err(syntax(format!(
        "unterminated quoted value for \"{keyword}\" in the connection string"
    )))
}

/// What follows `postgres://`: `[user[:password]@][host[:port][,…]][/dbname][?k=v&…]`, as
/// libpq's `conninfo_uri_parse_options`.
fn parse_uri(rest: &str) -> Result<Vec<Pair>, SyntaxError> {
    let mut pairs = Vec::new();
    // NB: as libpq, user info ends at the first '@' met before any '/'; a password holding
    // '@' or '/' must be percent-encoded.
    let rest = match rest.find(['@', '/']) {
        Some(at) if rest.as_bytes()[at] == b'@' => {
            let (user, password) = match rest[..at].split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (&rest[..at], None),
            };
            if !user.is_empty() {
                pairs.push(("user".into(), decode(user, "user name")?));
            }
            if let Some(password) = password {
                pairs.push(("password".into(), decode(password, "password")?));
            }
            &rest[at + 1..]
        }
        _ => rest,
    };
    let (authority, rest) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    pairs.extend(hosts_and_ports(authority)?);
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if let Some(dbname) = path.strip_prefix('/').filter(|d| !d.is_empty()) {
        pairs.push(("dbname".into(), decode(dbname, "database name")?));
    }
    let params = query.into_iter().flat_map(|q| q.split('&'));
    for (n, param) in params.filter(|p| !p.is_empty()).enumerate() {
        let Some((key, value)) = param.split_once('=') else {
            return Err(syntax(format!(
                "URI query parameter {} has no \"=\"",
                n + 1
            )));
        };
        let key = decode(key, "query parameter name")?;
        let value = decode(value, &format!("value of query parameter {key}"))?;
        // NB: libpq's one alias, for JDBC's spelling.
        if key == "ssl" && value == "true" {
            pairs.push(("sslmode".into(), "require".into()));
        } else {
            pairs.push((key, value));
        }
    }
    Ok(pairs)
}

/// `a:5432,[::1]:5433,b` as the comma lists `host=a,::1,b` and `port=5432,5433,`.
fn hosts_and_ports(authority: &str) -> Result<Vec<Pair>, SyntaxError> {
    if authority.is_empty() {
        return Ok(Vec::new());
    }
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for spec in authority.split(',') {
        let (host, port) = match spec.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| syntax("missing \"]\" after an IPv6 host address in the URI"))?;
                if host.is_empty() {
                    return Err(syntax("an IPv6 host address in the URI is empty"));
                }
                match after {
                    "" => (host, ""),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (host, port),
                        None => {
                            return Err(syntax(format!(
                                "unexpected {after:?} after the IPv6 host address [{host}] in the URI"
                            )));
                        }
                    },
                }
            }
            None => spec.split_once(':').unwrap_or((spec, "")),
        };
        hosts.push(decode(host, "host")?);
        ports.push(decode(port, "port")?);
    }
    let mut pairs = vec![("host".to_string(), hosts.join(","))];
    if ports.iter().any(|p| !p.is_empty()) {
        pairs.push(("port".to_string(), ports.join(",")));
    }
    Ok(pairs)
}

/// Percent-decoding as libpq does it: `%` must start two hex digits, `%00` is refused, and
/// the result must be UTF-8. `what` names the part in errors; its value is never shown.
fn decode(text: &str, what: &str) -> Result<String, SyntaxError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| syntax(format!("invalid percent-encoding in the URI's {what}")))?;
        if hex == 0 {
            return Err(syntax(format!("%00 in the URI's {what}")));
        }
        out.push(hex);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| syntax(format!("the URI's {what} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn kv(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keyword_strings_read_as_libpq_reads_them() {
        let cases = [
            ("host=db port=5432", kv(&[("host", "db"), ("port", "5432")])),
            (
                "host = db   dbname =shop",
                kv(&[("host", "db"), ("dbname", "shop")]),
            ),
            (
                r"password='it\'s a \\ secret' user=a",
                kv(&[("password", r"it's a \ secret"), ("user", "a")]),
            ),
            (r"password=a\ b", kv(&[("password", "a b")])),
            ("password=''", kv(&[("password", "")])),
            ("", kv(&[])),
        ];
        for (text, want) in cases {
            assert_eq!(pairs(text), want, "{text}");
        }
    }

    #[test]
    fn uris_decode_every_part_and_split_host_lists() {
        let cases = [
            (
                "postgres://app:p%40ss%2Fw%C3%B6rd%25@db.example:6432/shop?sslmode=verify-full",
                kv(&[
                    ("user", "app"),
                    ("password", "p@ss/wörd%"),
                    ("host", "db.example"),
                    ("port", "6432"),
                    ("dbname", "shop"),
                    ("sslmode", "verify-full"),
                ]),
            ),
            (
                "postgresql://a:5432,[::1]:5433,b/db?target_session_attrs=read-write",
                kv(&[
                    ("host", "a,::1,b"),
                    ("port", "5432,5433,"),
                    ("dbname", "db"),
                    ("target_session_attrs", "read-write"),
                ]),
            ),
            (
                "postgres://%2Fvar%2Frun%2Fpostgresql/db",
                kv(&[("host", "/var/run/postgresql"), ("dbname", "db")]),
            ),
            (
                "postgres:///db?host=h&ssl=true",
                kv(&[("dbname", "db"), ("host", "h"), ("sslmode", "require")]),
            ),
            ("postgres://", kv(&[])),
            ("postgres://u@h", kv(&[("user", "u"), ("host", "h")])),
        ];
        for (text, want) in cases {
            assert_eq!(pairs(text), want, "{text}");
        }
    }

    #[test]
    fn syntax_errors_name_the_part_and_never_the_value() {
        let cases = [
            (
                "host=db password=my s3cret",
                "after the value of \"password\"",
            ),
            ("s3cret", "missing \"=\" after the first word"),
            (
                "password='s3cret",
                "unterminated quoted value for \"password\"",
            ),
            (
                "postgres://u:s3cret%zz@h/db",
                "percent-encoding in the URI's password",
            ),
            ("postgres://u:s3cret%00@h/db", "%00 in the URI's password"),
            ("postgres://[::1/db", "missing \"]\""),
            ("postgres://h/db?sslmode", "query parameter 1 has no \"=\""),
        ];
        for (text, want) in cases {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.contains(want), "{text}: {error}");
            if !want.contains("s3cret") {
                assert!(!error.contains("s3cret"), "{text}: {error}");
            }
        }
    }
}
