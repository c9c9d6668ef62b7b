//! The plan's line grammar: names, pragmas, blank and comment lines, notes, planners,
//! timestamps and dependency specs, each case checked against what Sqitch 1.3.1 does.

use crate::project::grammar::{self, DependSpec};
use crate::project::testing::{HEADER, TAIL, body, failure, parse, plan};

/// Each name, as the only change of a plan: does Sqitch accept it, and under which name?
#[test]
fn change_names_follow_sqitchs_rules() {
    struct Case {
        /// What is written before the timestamp.
        written: &'static str,
        /// The change name Sqitch reads, or `None` when it rejects the line.
        want_name: Option<&'static str>,
    }
    let cases = [
        Case {
            written: "a-1",
            want_name: Some("a-1"),
        },
        Case {
            written: "v1.0",
            want_name: Some("v1.0"),
        },
        Case {
            written: "a_",
            want_name: Some("a_"),
        },
        Case {
            written: "_a",
            want_name: Some("_a"),
        },
        Case {
            written: "a=1x",
            want_name: Some("a=1x"),
        },
        Case {
            written: "a%1b",
            want_name: Some("a%1b"),
        },
        Case {
            written: "x.y.z",
            want_name: Some("x.y.z"),
        },
        Case {
            written: "a!b\"c",
            want_name: Some("a!b\"c"),
        },
        Case {
            written: "a[b]c",
            want_name: Some("a[b]c"),
        },
        Case {
            written: "é",
            want_name: Some("é"),
        },
        Case {
            written: "日本",
            want_name: Some("日本"),
        },
        Case {
            written: "😀a",
            want_name: Some("😀a"),
        },
        Case {
            written: "a😀b",
            want_name: Some("a😀b"),
        },
        Case {
            written: "a-_",
            want_name: Some("a-_"),
        },
        Case {
            written: "1",
            want_name: Some("1"),
        },
        Case {
            written: "a/1b",
            want_name: Some("a/1b"),
        },
        Case {
            written: "s/a/b",
            want_name: Some("s/a/b"),
        },
        Case {
            written: "c~x",
            want_name: Some("c~x"),
        },
        Case {
            written: "a١",
            want_name: Some("a١"),
        },
        Case {
            written: "Ⅻ",
            want_name: Some("Ⅻ"),
        },
        Case {
            written: "¿a",
            want_name: Some("¿a"),
        },
        Case {
            written: "aʹ",
            want_name: Some("aʹ"),
        },
        // The old `+`/`-` operators are read and dropped.
        Case {
            written: "+a",
            want_name: Some("a"),
        },
        Case {
            written: "- a",
            want_name: Some("a"),
        },
        // Digits after one of `~ / = % ^` at the end look like symbolic references.
        Case {
            written: "a=1",
            want_name: None,
        },
        Case {
            written: "a%1",
            want_name: None,
        },
        Case {
            written: "a^12",
            want_name: None,
        },
        Case {
            written: "a~1",
            want_name: None,
        },
        Case {
            written: "a/1",
            want_name: None,
        },
        Case {
            written: "a/١",
            want_name: None,
        },
        // Ends in punctuation, or in a character that is not a word character.
        Case {
            written: "a-",
            want_name: None,
        },
        Case {
            written: "a.",
            want_name: None,
        },
        Case {
            written: "a/",
            want_name: None,
        },
        Case {
            written: "a^",
            want_name: None,
        },
        Case {
            written: "b~",
            want_name: None,
        },
        Case {
            written: "a😀",
            want_name: None,
        },
        Case {
            written: "a²",
            want_name: None,
        },
        Case {
            written: "a¿",
            want_name: None,
        },
        Case {
            written: "a·",
            want_name: None,
        },
        Case {
            written: "e´",
            want_name: None,
        },
        // Characters names may not hold, and a leading punctuation mark.
        Case {
            written: "a\\b",
            want_name: None,
        },
        Case {
            written: "a:b",
            want_name: None,
        },
        Case {
            written: "a@b",
            want_name: None,
        },
        Case {
            written: "!a",
            want_name: None,
        },
        // Perl treats the name `0` as false and calls it invalid.
        Case {
            written: "0",
            want_name: None,
        },
        // Dependencies must be separated from the name: `[` is a name character.
        Case {
            written: "b[a]",
            want_name: None,
        },
    ];
    for case in cases {
        let text = format!("{HEADER}{} {TAIL}\n", case.written);
        match (parse(&text), case.want_name) {
            (Ok(plan), Some(want)) => assert_eq!(plan.changes[0].name, want, "{:?}", case.written),
            (Err(e), None) => {
                assert_eq!(e.line(), Some(3), "{:?}", case.written);
                assert!(
                    e.to_string().contains("invalid name"),
                    "{:?}: {e}",
                    case.written
                );
            }
            (Ok(plan), None) => panic!(
                "{:?} should be invalid, read as {:?}",
                case.written, plan.changes[0].name
            ),
            (Err(e), Some(_)) => panic!("{:?} should be valid: {e}", case.written),
        }
    }
}

#[test]
fn whole_name_check_matches_the_plan_reader() {
    for (name, want) in [
        ("flipr", true),
        ("a-b", true),
        ("a-", false),
        ("a/1", false),
        ("", false),
        ("a b", false),
    ] {
        assert_eq!(grammar::is_name(name), want, "{name:?}");
    }
}

#[test]
fn planner_keeps_all_but_the_last_blank_before_the_email() {
    let plan = plan(&body(&[
        "a 2024-01-01T00:00:00Z Marge  Simpson   <m@x.org>",
    ]));
    assert_eq!(plan.changes[0].planner_name, "Marge  Simpson  ");
    assert_eq!(plan.changes[0].planner_email, "m@x.org");
}

#[test]
fn planner_email_may_hold_a_less_than_sign() {
    let plan = plan(&body(&["a 2024-01-01T00:00:00Z M <a<b@x>"]));
    assert_eq!(plan.changes[0].planner_email, "a<b@x");
}

#[test]
fn notes_are_trimmed_and_unescaped_like_sqitch() {
    struct Case {
        name: &'static str,
        /// Text after `#` on the line.
        written: &'static str,
        want_note: &'static str,
    }
    let cases = [
        Case {
            name: "plain",
            written: " first",
            want_note: "first",
        },
        Case {
            name: "no space after #",
            written: "tight",
            want_note: "tight",
        },
        Case {
            name: "empty",
            written: "",
            want_note: "",
        },
        Case {
            name: "zero is kept raw",
            written: " 0",
            want_note: "0",
        },
        Case {
            name: "trailing blanks trimmed",
            written: " spaced \t ",
            want_note: "spaced",
        },
        Case {
            name: "escapes",
            written: r" a \\ b \n c \r d \t e",
            want_note: "a \\ b \n c \r d \\t e",
        },
        Case {
            name: "escaped backslash before n",
            written: r" x\\n",
            want_note: "x\\n",
        },
        Case {
            name: "unicode",
            written: " Ünïcödé ✓",
            want_note: "Ünïcödé ✓",
        },
        Case {
            name: "second hash belongs to the note",
            written: " a # b",
            want_note: "a # b",
        },
    ];
    for case in cases {
        let text = format!("{HEADER}a {TAIL} #{}\n", case.written);
        assert_eq!(plan(&text).changes[0].note, case.want_note, "{}", case.name);
    }
}

#[test]
fn blank_and_comment_lines_are_skipped_anywhere_in_the_body() {
    let text = body(&[
        "# leading comment",
        "",
        "a {}",
        "   ",
        "\t# indented comment",
        "b {}",
        "",
    ]);
    let plan = plan(&text);
    let names: Vec<&str> = plan.changes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(plan.changes[1].line, 8);
}

#[test]
fn a_lone_hash_is_not_a_comment() {
    // NB: Sqitch's blank-line pattern wants a character after `#`.
    let (line, message) = failure(&body(&["a {}", "#", "b {}"]));
    assert_eq!(line, Some(4));
    assert!(message.starts_with("invalid name"), "{message}");
}

#[test]
fn header_ends_at_a_blank_line_or_an_empty_comment() {
    struct Case {
        name: &'static str,
        text: &'static str,
        want_error_line: Option<usize>,
    }
    let cases = [
        Case {
            name: "blank line",
            text: "%project=x\n\na 2024-01-01T00:00:00Z M <m@x>\n",
            want_error_line: None,
        },
        Case {
            name: "comments stay in the header",
            text: "%project=x\n# about\n%uri=u\n\na 2024-01-01T00:00:00Z M <m@x>\n",
            want_error_line: None,
        },
        Case {
            name: "hash and space",
            text: "%project=x\n# \na 2024-01-01T00:00:00Z M <m@x>\n",
            want_error_line: None,
        },
        Case {
            name: "comment 0",
            text: "%project=x\n# 0\na 2024-01-01T00:00:00Z M <m@x>\n",
            want_error_line: None,
        },
        Case {
            name: "no blank line",
            text: "%project=x\na 2024-01-01T00:00:00Z M <m@x>\n",
            want_error_line: Some(2),
        },
        Case {
            name: "lone hash",
            text: "%project=x\n#\na 2024-01-01T00:00:00Z M <m@x>\n",
            want_error_line: Some(2),
        },
    ];
    for case in cases {
        match (parse(case.text), case.want_error_line) {
            (Ok(plan), None) => assert_eq!(plan.changes.len(), 1, "{}", case.name),
            (Err(e), Some(line)) => {
                assert_eq!(e.line(), Some(line), "{}", case.name);
                assert!(
                    e.to_string()
                        .contains("invalid pragma; a blank line must come between"),
                    "{}: {e}",
                    case.name
                );
            }
            (Ok(_), Some(_)) => panic!("{} should fail", case.name),
            (Err(e), None) => panic!("{} should parse: {e}", case.name),
        }
    }
}

#[test]
fn pragmas_take_spaces_notes_and_the_last_value() {
    let text = "  %  project  =  first   # hi\n%project=x\n%uri = https://example.com/x \n%foo\n%syntax-version=9.9\n\na {}\n";
    let plan = plan(&text.replace("{}", TAIL));
    assert_eq!(plan.project, "x");
    assert_eq!(plan.uri.as_deref(), Some("https://example.com/x"));
    assert_eq!(plan.syntax_version, "1.0.0", "sqitch always records 1.0.0");
}

#[test]
fn pragma_parser_reads_names_and_values() {
    let cases = [
        ("%project=x", Some(("project", Some("x")))),
        ("%project = a b", Some(("project", Some("a b")))),
        ("%foo", Some(("foo", None))),
        ("% syntax-version=1", Some(("syntax-version", Some("1")))),
        ("%project foo", None),
        ("%foo-=bar", None),
        ("project=x", None),
    ];
    for (content, want) in cases {
        let got = grammar::parse_pragma(content);
        let got = got.as_ref().map(|p| (p.name.as_str(), p.value.as_deref()));
        assert_eq!(got, want, "{content:?}");
    }
}

#[test]
fn uri_zero_counts_as_no_uri() {
    let plan = plan(&format!("%project=x\n%uri=0\n\na {TAIL}\n"));
    assert_eq!(plan.uri, None);
}

#[test]
fn windows_line_ends_are_read_like_unix_ones() {
    let plan = plan("%project=x\r\n\r\na 2024-01-01T00:00:00Z M <m@x> # crlf\r\n");
    assert_eq!(plan.changes[0].note, "crlf");
    assert_eq!(
        plan.changes[0].id,
        "b57be929b63af4c67e49ebfc6ac961be5af8260f"
    );
}

#[test]
fn a_byte_order_mark_is_refused_like_sqitch() {
    let (line, message) = failure("\u{feff}%project=x\n\na 2024-01-01T00:00:00Z M <m@x>\n");
    assert_eq!(line, Some(1));
    assert!(message.starts_with("invalid pragma"), "{message}");
}

#[test]
fn leading_and_trailing_blanks_and_tabs_are_allowed() {
    let plan = plan("%project=x\n\n\t a\t[y:q\t]\t2024-01-01T00:00:00Z\tM\t<m@x>\t#\tnote\t\n");
    let change = &plan.changes[0];
    assert_eq!((change.name.as_str(), change.note.as_str()), ("a", "note"));
    assert_eq!(change.requires[0].as_string("x"), "y:q");
}

#[test]
fn spaces_around_the_timestamp_stay_in_the_planner_name() {
    let plan = plan(&body(&["a   2024-01-01T00:00:00Z   M   <m@x>"]));
    assert_eq!(plan.changes[0].planner_name, "M  ");
    assert_eq!(
        plan.changes[0].id,
        "f55b87acf314c3ec1a2dbf96d8f06ffe9e80c675"
    );
}

#[test]
fn dependency_lists_split_on_blanks_like_perl() {
    // A leading blank inside `[` gives Sqitch an empty dependency, which it refuses; a
    // trailing one is dropped; a list of only blanks is empty.
    let (line, message) = failure(&body(&["a {}", "b [ a] {}"]));
    assert_eq!(
        (line, message.as_str()),
        (Some(4), "\"\" is not a valid dependency specification")
    );
    let plan = plan(&body(&["a {}", "b [a\t ] {}", "c [ ] {}"]));
    assert_eq!(plan.changes[1].requires.len(), 1);
    assert!(plan.changes[2].requires.is_empty());
}

#[test]
fn dependency_specs_parse_like_sqitchs_depend() {
    fn spec(
        conflicts: bool,
        project: Option<&str>,
        change: Option<&str>,
        tag: Option<&str>,
        id: Option<&str>,
    ) -> DependSpec {
        DependSpec {
            conflicts,
            project: project.map(str::to_owned),
            change: change.map(str::to_owned),
            tag: tag.map(str::to_owned),
            id: id.map(str::to_owned),
        }
    }
    let id = "0123456789abcdef0123456789abcdef01234567";
    let proj_id = format!("proj:{id}");
    let cases: Vec<(&str, Option<DependSpec>)> = vec![
        ("users", Some(spec(false, None, Some("users"), None, None))),
        ("!users", Some(spec(true, None, Some("users"), None, None))),
        (
            "users@v1",
            Some(spec(false, None, Some("users"), Some("v1"), None)),
        ),
        ("@v1", Some(spec(false, None, None, Some("v1"), None))),
        (
            "proj:users",
            Some(spec(false, Some("proj"), Some("users"), None, None)),
        ),
        (
            "!proj:users@v1.0",
            Some(spec(true, Some("proj"), Some("users"), Some("v1.0"), None)),
        ),
        (
            "proj:@v1",
            Some(spec(false, Some("proj"), None, Some("v1"), None)),
        ),
        (id, Some(spec(false, None, None, None, Some(id)))),
        (
            proj_id.as_str(),
            Some(spec(false, Some("proj"), None, None, Some(id))),
        ),
        (
            "a/1:b",
            Some(spec(false, Some("a/1"), Some("b"), None, None)),
        ),
        ("s/a/b", Some(spec(false, None, Some("s/a/b"), None, None))),
        // Matches the pattern but names nothing: Sqitch refuses it afterwards.
        ("!", Some(spec(true, None, None, None, None))),
        ("proj:", Some(spec(false, Some("proj"), None, None, None))),
        ("a@b@c", None),
        ("a:b:c", None),
        ("a-:b", None),
        ("a/1", None),
        ("-a", None),
        ("a@", None),
    ];
    for (written, want) in cases {
        assert_eq!(grammar::parse_dependency(written), want, "{written:?}");
    }
}

#[test]
fn timestamps_are_checked_like_datetime() {
    struct Case {
        ts: &'static str,
        want_ok: bool,
    }
    let cases = [
        Case {
            ts: "2024-01-01T00:00:00Z",
            want_ok: true,
        },
        Case {
            ts: "0000-01-01T00:00:00Z",
            want_ok: true,
        },
        Case {
            ts: "9999-12-31T23:59:59Z",
            want_ok: true,
        },
        Case {
            ts: "2000-02-29T00:00:00Z",
            want_ok: true,
        },
        Case {
            ts: "2016-12-31T23:59:60Z",
            want_ok: true,
        },
        Case {
            ts: "1972-06-30T23:59:60Z",
            want_ok: true,
        },
        Case {
            ts: "1900-02-29T00:00:00Z",
            want_ok: false,
        },
        Case {
            ts: "2024-02-30T00:00:00Z",
            want_ok: false,
        },
        Case {
            ts: "2024-00-10T00:00:00Z",
            want_ok: false,
        },
        Case {
            ts: "2024-01-00T00:00:00Z",
            want_ok: false,
        },
        Case {
            ts: "2024-01-01T24:00:00Z",
            want_ok: false,
        },
        Case {
            ts: "2024-01-01T00:60:00Z",
            want_ok: false,
        },
        Case {
            ts: "2024-01-01T00:00:61Z",
            want_ok: false,
        },
        Case {
            ts: "2016-12-30T23:59:60Z",
            want_ok: false,
        },
        Case {
            ts: "1972-06-30T23:58:60Z",
            want_ok: false,
        },
    ];
    for case in cases {
        let text = format!("{HEADER}a {} M <m@x>\n", case.ts);
        match parse(&text) {
            Ok(plan) => {
                assert!(case.want_ok, "{} should be refused", case.ts);
                assert_eq!(plan.changes[0].planned_at, case.ts);
            }
            Err(e) => {
                assert!(!case.want_ok, "{} should be accepted: {e}", case.ts);
                assert_eq!(e.line(), Some(3));
                assert!(
                    e.to_string()
                        .contains(&format!("invalid timestamp \"{}\"", case.ts)),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn missing_parts_are_named_as_sqitch_names_them() {
    struct Case {
        line: &'static str,
        want: &'static str,
    }
    // NB: once a timestamp is on the line, anything Sqitch cannot match is blamed on the name.
    let cases = [
        Case {
            line: "a",
            want: "missing timestamp and planner name and email",
        },
        Case {
            line: "a M <m@x>",
            want: "missing timestamp",
        },
        Case {
            line: "a 2024-01-01T00:00:00Z",
            want: "missing planner name and email",
        },
        Case {
            line: "a 2024-01-01T00:00:00Z 0 <m@x>",
            want: "missing planner name and email",
        },
        Case {
            line: "a 2024-01-01T00:00:00Z M",
            want: "invalid name",
        },
        Case {
            line: "a 2024-01-01T00:00:00Z M<m@x>",
            want: "invalid name",
        },
        Case {
            line: "a 2024-01-01T00:00:00Z M <>",
            want: "invalid name",
        },
        Case {
            line: "a 2024-01-01T00:00:00Z <m@x>",
            want: "invalid name",
        },
        Case {
            line: "a 2024-01-01T00:00:00Z M <m@x> trailing",
            want: "invalid name",
        },
        Case {
            line: "a M <m@x> 2024-01-01T00:00:00Z",
            want: "invalid name",
        },
        Case {
            line: "a! 2024-01-01T00:00:00Z M <m@x>",
            want: "invalid name",
        },
        Case {
            line: "a [b c 2024-01-01T00:00:00Z M <m@x>",
            want: "invalid name",
        },
        Case {
            line: "a [] 2024-01-01T00:00:00Z M <m@x>",
            want: "invalid name",
        },
        Case {
            line: "a 2024-01-01T00:00:00Z M#x <m@x>",
            want: "invalid name",
        },
    ];
    for case in cases {
        let (line, message) = failure(&format!("{HEADER}{}\n", case.line));
        assert_eq!(line, Some(3), "{}", case.line);
        assert!(message.starts_with(case.want), "{}: {message}", case.line);
    }
}

#[test]
fn blanks_before_the_email_can_become_the_planner_name() {
    // Sqitch gives back the blanks after the timestamp to the planner name.
    let plan = plan(&body(&["a 2024-01-01T00:00:00Z  <m@x>"]));
    assert_eq!(plan.changes[0].planner_name, " ");
    assert_eq!(
        plan.changes[0].id,
        "0e26f00c347b2d4bba6692769ce993804431707c"
    );
}
