//! The plan's `%uri` as Perl's `URI` module treats it for Sqitch: escaped (the registry's
//! `projects.uri`) and canonicalised (what every change and tag id hashes).

/// `URI`'s unreserved characters: `A-Za-z0-9` and `-_.!~*'()`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// `URI`'s `$uric` (reserved without brackets, unreserved, `%`) plus `#`: what `new` leaves
/// unescaped.
fn is_uric_or_hash(b: u8) -> bool {
    is_unreserved(b) || b"';/?:@&=+$,%#".contains(&b)
}

/// Server schemes `URI` knows, with their default ports.
fn default_port(scheme: &str) -> Option<u32> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "ftp" => 21,
        "gopher" => 70,
        "ldap" => 389,
        "ldaps" => 636,
        "mms" => 1755,
        "news" | "nntp" => 119,
        "nntps" | "snews" => 563,
        "pop" => 110,
        "rlogin" => 513,
        "rsync" => 873,
        "rtsp" | "rtspu" => 554,
        "ssh" | "sftp" => 22,
        "telnet" | "tn3270" => 23,
        _ => return None,
    })
}

/// The scheme (`[a-zA-Z][a-zA-Z0-9.+-]*` before `:`), if the string starts with one.
fn scheme_of(s: &str) -> Option<&str> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-')))
    .then_some(scheme)
}

/// Splits `scheme://authority rest` into (`scheme:` prefix, authority, rest), when the URI
/// has an authority.
fn split_authority(s: &str) -> Option<(&str, &str, &str)> {
    let prefix_len = scheme_of(s).map_or(0, |sc| sc.len() + 1);
    let after = s[prefix_len..].strip_prefix("//")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    Some((&s[..prefix_len], &after[..end], &after[end..]))
}

/// True when the host part of a server URI holds non-ASCII characters, which `URI` would
/// turn into punycode.
pub(super) fn has_international_host(raw: &str) -> bool {
    let Some(scheme) = scheme_of(raw) else {
        return false;
    };
    if default_port(&scheme.to_ascii_lowercase()).is_none() {
        return false;
    }
    let Some((_, authority, _)) = split_authority(raw) else {
        return false;
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    !host.is_ascii()
}

/// `URI->new($raw)` as a string: unwrapped, trimmed and escaped.
pub(super) fn as_string(raw: &str) -> String {
    let mut s = raw;
    if let Some(inner) = s.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
        s = inner.strip_prefix("URL:").unwrap_or(inner);
    }
    if let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        s = inner;
    }
    let s = s.trim_matches(char::is_whitespace);

    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() && is_uric_or_hash(c as u8) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    unescape_host_brackets(out)
}

/// `URI` escapes `[` and `]` everywhere, then puts them back in the host (IPv6 literals),
/// or everywhere for `mailto:`.
fn unescape_host_brackets(s: String) -> String {
    if !s.contains('%') {
        return s;
    }
    let scheme = scheme_of(&s).map(str::to_ascii_lowercase);
    match scheme.as_deref() {
        Some("data" | "ldapi" | "urn" | "sqlite" | "sqlite3") => s,
        Some("mailto") => replace_brackets(&s),
        _ => {
            let Some((prefix, authority, rest)) = split_authority(&s) else {
                return s;
            };
            let (user, host) = match authority.rfind('@') {
                Some(at) => authority.split_at(at + 1),
                None => ("", authority),
            };
            let port_start = port_suffix_start(host).unwrap_or(host.len());
            let host = format!(
                "{}{}",
                replace_brackets(&host[..port_start]),
                &host[port_start..]
            );
            format!("{prefix}//{user}{host}{rest}")
        }
    }
}

fn replace_brackets(s: &str) -> String {
    s.replace("%5B", "[")
        .replace("%5b", "[")
        .replace("%5D", "]")
        .replace("%5d", "]")
}

/// Start of a trailing `:<digits>` (digits may be empty), as `URI`'s `_port` finds it.
fn port_suffix_start(hostport: &str) -> Option<usize> {
    let digits = hostport.len()
        - hostport
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .len();
    let colon = hostport.len() - digits;
    (colon > 0 && hostport.as_bytes()[colon - 1] == b':').then(|| colon - 1)
}

/// `URI->new($s)->canonical` for a string [`as_string`] returned.
pub(super) fn canonical(s: &str) -> String {
    let mut out = s.to_owned();
    let scheme = scheme_of(s).map(str::to_ascii_lowercase);
    if let Some(scheme) = &scheme {
        out.replace_range(..scheme.len(), scheme);
    }
    out = normalise_escapes(&out);

    let Some(scheme) = scheme else { return out };
    if let Some(port) = default_port(&scheme) {
        out = canonical_server(
            &out,
            port,
            matches!(scheme.as_str(), "http" | "https" | "mms" | "rtsp" | "rtspu"),
        );
    } else if scheme == "urn" {
        out = canonical_urn(&out);
    }
    out
}

/// Decodes escaped unreserved characters and upper-cases the hex of the others.
fn normalise_escapes(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = &s[i + 1..i + 3];
            let value = u8::from_str_radix(hex, 16).unwrap_or(0);
            if is_unreserved(value) {
                out.push(value as char);
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&s[i..i + ch_len]);
            i += ch_len;
        }
    }
    out
}

fn canonical_server(s: &str, default: u32, slash_path: bool) -> String {
    let Some((prefix, authority, rest)) = split_authority(s) else {
        return s.to_owned();
    };
    let (user, hostport) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let (host, port) = match port_suffix_start(hostport) {
        Some(colon) => (&hostport[..colon], Some(&hostport[colon + 1..])),
        None => (hostport, None),
    };
    let host = host.to_ascii_lowercase();
    let port = match port {
        Some(p) if p.is_empty() || p.parse::<u64>().ok() == Some(u64::from(default)) => None,
        other => other,
    };
    let mut rest = rest.to_owned();
    let path_is_empty = !rest.starts_with('/');
    if slash_path && path_is_empty && !rest.starts_with('?') {
        rest.insert(0, '/');
    }
    match port {
        Some(p) => format!("{prefix}//{user}{host}:{p}{rest}"),
        None => format!("{prefix}//{user}{host}{rest}"),
    }
}

fn canonical_urn(s: &str) -> String {
    // `urn:<nid>:<nss>`: the NID is case-insensitive.
    let Some(body) = s.get(4..) else {
        return s.to_owned();
    };
    let Some(colon) = body.find(':') else {
        return s.to_owned();
    };
    let nid = &body[..colon];
    if nid.contains('%') || !nid.bytes().any(|b| b.is_ascii_uppercase()) {
        return s.to_owned();
    }
    format!("urn:{}{}", nid.to_ascii_lowercase(), &body[colon..])
}

#[cfg(test)]
mod tests;
