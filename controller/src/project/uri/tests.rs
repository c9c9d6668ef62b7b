//! `%uri` escaping and canonical form, against Perl's `URI` 5.17 (what Sqitch 1.3.1 uses):
//! `URI->new($s)` and `URI->new($s)->canonical`.

use crate::project::uri::{as_string, canonical, has_international_host};

#[test]
fn uris_escape_and_canonicalise_like_perls_uri() {
    struct Case {
        written: &'static str,
        want_string: &'static str,
        want_canonical: &'static str,
    }
    let cases = [
        Case {
            written: "https://github.com/sqitchers/sqitch-intro/",
            want_string: "https://github.com/sqitchers/sqitch-intro/",
            want_canonical: "https://github.com/sqitchers/sqitch-intro/",
        },
        Case {
            written: "HTTPS://Example.COM:443/a%7e/%2f/b?q=1",
            want_string: "HTTPS://Example.COM:443/a%7e/%2f/b?q=1",
            want_canonical: "https://example.com/a~/%2F/b?q=1",
        },
        Case {
            written: "https://example.com/ü x/",
            want_string: "https://example.com/%C3%BC%20x/",
            want_canonical: "https://example.com/%C3%BC%20x/",
        },
        Case {
            written: "http://EXAMPLE.com:80/%7Efoo/%41",
            want_string: "http://EXAMPLE.com:80/%7Efoo/%41",
            want_canonical: "http://example.com/~foo/A",
        },
        Case {
            written: "mailto:Foo@Example.COM",
            want_string: "mailto:Foo@Example.COM",
            want_canonical: "mailto:Foo@Example.COM",
        },
        Case {
            written: "urn:ISBN:0-395-36341-1",
            want_string: "urn:ISBN:0-395-36341-1",
            want_canonical: "urn:isbn:0-395-36341-1",
        },
        Case {
            written: "urn:uuid:ABC",
            want_string: "urn:uuid:ABC",
            want_canonical: "urn:uuid:ABC",
        },
        Case {
            written: "not a uri",
            want_string: "not%20a%20uri",
            want_canonical: "not%20a%20uri",
        },
        Case {
            written: "HTTP://user:Pw@Host.COM:8080/%aa%2F?%7a=%3d",
            want_string: "HTTP://user:Pw@Host.COM:8080/%aa%2F?%7a=%3d",
            want_canonical: "http://user:Pw@host.com:8080/%AA%2F?z=%3D",
        },
        Case {
            written: "https://a.com",
            want_string: "https://a.com",
            want_canonical: "https://a.com/",
        },
        Case {
            written: "http://a.com:/x",
            want_string: "http://a.com:/x",
            want_canonical: "http://a.com/x",
        },
        Case {
            written: "ftp://A.com:21/",
            want_string: "ftp://A.com:21/",
            want_canonical: "ftp://a.com/",
        },
        Case {
            written: "git@github.com:foo/bar.git",
            want_string: "git@github.com:foo/bar.git",
            want_canonical: "git@github.com:foo/bar.git",
        },
        Case {
            written: "https://x.com/a b?c d",
            want_string: "https://x.com/a%20b?c%20d",
            want_canonical: "https://x.com/a%20b?c%20d",
        },
        Case {
            written: "HtTp://x.y/",
            want_string: "HtTp://x.y/",
            want_canonical: "http://x.y/",
        },
        Case {
            written: "https://ex.com/%e2%82%ac",
            want_string: "https://ex.com/%e2%82%ac",
            want_canonical: "https://ex.com/%E2%82%AC",
        },
        Case {
            written: "https://ex.com/a/./b/../c",
            want_string: "https://ex.com/a/./b/../c",
            want_canonical: "https://ex.com/a/./b/../c",
        },
        Case {
            written: "https://ex.com/{x}|^`",
            want_string: "https://ex.com/%7Bx%7D%7C%5E%60",
            want_canonical: "https://ex.com/%7Bx%7D%7C%5E%60",
        },
        Case {
            written: "https://x.com:0443/",
            want_string: "https://x.com:0443/",
            want_canonical: "https://x.com/",
        },
        Case {
            written: "https://user@x.COM",
            want_string: "https://user@x.COM",
            want_canonical: "https://user@x.com/",
        },
        Case {
            written: "https://[::1]:443/",
            want_string: "https://[::1]:443/",
            want_canonical: "https://[::1]/",
        },
        Case {
            written: "https://X.com?Q",
            want_string: "https://X.com?Q",
            want_canonical: "https://x.com?Q",
        },
        Case {
            written: "ws://A.com:80/",
            want_string: "ws://A.com:80/",
            want_canonical: "ws://A.com:80/",
        },
        Case {
            written: "sftp://A.com:22/",
            want_string: "sftp://A.com:22/",
            want_canonical: "sftp://a.com/",
        },
        Case {
            written: "ssh://U@A.com:22",
            want_string: "ssh://U@A.com:22",
            want_canonical: "ssh://U@a.com",
        },
        Case {
            written: "mailto:a%5bb%5D@x.com",
            want_string: "mailto:a[b]@x.com",
            want_canonical: "mailto:a[b]@x.com",
        },
        Case {
            written: "http://a.com/%5B%5d",
            want_string: "http://a.com/%5B%5d",
            want_canonical: "http://a.com/%5B%5D",
        },
        Case {
            written: "<https://x.com/a>",
            want_string: "https://x.com/a",
            want_canonical: "https://x.com/a",
        },
        Case {
            written: "\"https://x.com/\"",
            want_string: "https://x.com/",
            want_canonical: "https://x.com/",
        },
        Case {
            written: "http://a@B.com:080/",
            want_string: "http://a@B.com:080/",
            want_canonical: "http://a@b.com/",
        },
    ];
    for case in cases {
        let string = as_string(case.written);
        assert_eq!(string, case.want_string, "new({:?})", case.written);
        assert_eq!(
            canonical(&string),
            case.want_canonical,
            "canonical({:?})",
            case.written
        );
    }
}

#[test]
fn international_hosts_are_detected_for_server_schemes_only() {
    assert!(has_international_host("https://例え.jp/パス"));
    assert!(!has_international_host("https://example.jp/パス"));
    assert!(!has_international_host("urn:例え"));
}
