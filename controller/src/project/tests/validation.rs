//! Every way a plan can be invalid: each error names the plan file and the exact line
//! (`failure` checks the file). Cases marked "sqitch:" are Sqitch 1.3.1's own rules;
//! "switchyard:" marks rules stricter than Sqitch's.

use super::{HEADER, TAIL, body, failure, parse, plan};

struct Case {
    name: &'static str,
    /// Lines after the header; `{}` becomes a timestamp and planner.
    lines: &'static [&'static str],
    want_line: usize,
    /// The start of the message.
    want: &'static str,
}

#[test]
fn invalid_plans_name_the_line() {
    let cases = [
        Case {
            name: "sqitch: reserved change name",
            lines: &["HEAD {}"],
            want_line: 3,
            want: "\"HEAD\" is a reserved name",
        },
        Case {
            name: "sqitch: reserved tag name",
            lines: &["a {}", "@ROOT {}"],
            want_line: 4,
            want: "\"@ROOT\" is a reserved name",
        },
        Case {
            name: "sqitch: names must not look like ids",
            lines: &["0123456789abcdef0123456789abcdef01234567x {}"],
            want_line: 3,
            want: "\"0123456789abcdef0123456789abcdef01234567x\" is invalid because it could be confused with a sha1 id",
        },
        Case {
            name: "sqitch: tags cannot hold a slash",
            lines: &["a {}", "@v/1a {}"],
            want_line: 4,
            want: "tag \"@v/1a\" contains illegal character /",
        },
        Case {
            name: "sqitch: a tag needs a change before it",
            lines: &["@v1 {}"],
            want_line: 3,
            want: "tag \"@v1\" declared without a preceding change",
        },
        Case {
            name: "sqitch: duplicate tag",
            lines: &["a {}", "@t {}", "b {}", "@t {}"],
            want_line: 6,
            want: "tag \"@t\" duplicates earlier declaration on line 4",
        },
        Case {
            name: "sqitch: tags take no dependencies",
            lines: &["a {}", "@t [a] {}"],
            want_line: 4,
            want: "tags may not specify dependencies",
        },
        Case {
            name: "sqitch: duplicate change without a tag in between",
            lines: &["a {}", "b {}", "a {}"],
            want_line: 5,
            want: "change \"a\" duplicates earlier declaration on line 3",
        },
        Case {
            name: "sqitch: duplicate dependency",
            lines: &["a {}", "b [a a] {}"],
            want_line: 4,
            want: "duplicate dependency \"a\"",
        },
        Case {
            name: "sqitch: malformed dependency",
            lines: &["a {}", "b [a@] {}"],
            want_line: 4,
            want: "\"a@\" is not a valid dependency specification",
        },
        Case {
            name: "sqitch: dependency naming nothing",
            lines: &["a {}", "b [!] {}"],
            want_line: 4,
            want: "\"!\" is not a valid dependency specification",
        },
        Case {
            name: "sqitch: unknown change",
            lines: &["a {}", "b [zz] {}"],
            want_line: 4,
            want: "change \"b\" requires unknown change \"zz\"",
        },
        Case {
            name: "sqitch: unknown tag",
            lines: &["a {}", "b [@zz] {}"],
            want_line: 4,
            want: "change \"b\" requires unknown change \"@zz\"",
        },
        Case {
            name: "sqitch: change at an unknown tag",
            lines: &["a {}", "b [a@zz] {}"],
            want_line: 4,
            want: "change \"b\" requires unknown change \"a@zz\"",
        },
        Case {
            name: "sqitch: own project prefix is checked",
            lines: &["a {}", "b [x:zz] {}"],
            want_line: 4,
            want: "change \"b\" requires unknown change \"zz\"",
        },
        Case {
            name: "sqitch: an own-project id is looked up by name and never found",
            lines: &["a {}", "b [x:0123456789abcdef0123456789abcdef01234567] {}"],
            want_line: 4,
            want: "change \"b\" requires unknown change \"0123456789abcdef0123456789abcdef01234567\"",
        },
        Case {
            name: "sqitch: @ROOT and @HEAD are not dependencies",
            lines: &["a {}", "b [@ROOT] {}"],
            want_line: 4,
            want: "change \"b\" requires unknown change \"@ROOT\"",
        },
        Case {
            name: "sqitch: self dependency",
            lines: &["a [a] {}"],
            want_line: 3,
            want: "change \"a\" cannot require itself",
        },
        Case {
            name: "sqitch: a change may only require earlier changes",
            lines: &["a [c] {}", "b {}", "c {}"],
            want_line: 3,
            want: "change \"a\" requires \"c\", which is planned 2 changes later; move \"a\" below it",
        },
        Case {
            name: "sqitch: a cycle shows as a forward reference",
            lines: &["a [b] {}", "b [a] {}"],
            want_line: 3,
            want: "change \"a\" requires \"b\", which is planned 1 change later",
        },
        Case {
            name: "sqitch: a forward reference past a tag is unknown",
            lines: &["a [b] {}", "@t {}", "b {}"],
            want_line: 3,
            want: "change \"a\" requires unknown change \"b\"",
        },
        Case {
            name: "sqitch: change@tag needs the change before the tag",
            lines: &["a {}", "@t {}", "b [c@t] {}", "c {}"],
            want_line: 5,
            want: "change \"b\" requires unknown change \"c@t\"",
        },
        Case {
            // NB: Sqitch compares with the line of the newest instance, so this valid-looking
            // dependency is refused. Matched so that both tools accept the same plans.
            name: "sqitch: change@tag after the change was reworked",
            lines: &["a {}", "@t {}", "a {}", "@u {}", "b [a@t] {}"],
            want_line: 7,
            want: "change \"b\" requires unknown change \"a@t\"",
        },
        Case {
            // Sqitch 1.3 loops forever resolving such an id.
            name: "switchyard: dependency on a bare id",
            lines: &["a {}", "b [0123456789abcdef0123456789abcdef01234567] {}"],
            want_line: 4,
            want: "dependency \"0123456789abcdef0123456789abcdef01234567\" names a change by id without a project",
        },
        Case {
            name: "switchyard: requires and conflicts with the same change",
            lines: &["a {}", "b [a !a] {}"],
            want_line: 4,
            want: "change \"b\" both requires and conflicts with \"a\"",
        },
        Case {
            name: "switchyard: same change written with and without the project",
            lines: &["a {}", "b [x:a !a] {}"],
            want_line: 4,
            want: "change \"b\" both requires and conflicts with \"a\"",
        },
    ];
    for case in cases {
        let (line, message) = failure(&body(case.lines));
        assert_eq!(line, Some(case.want_line), "{}: {message}", case.name);
        assert!(message.starts_with(case.want), "{}: {message}", case.name);
    }
}

#[test]
fn errors_display_file_and_line() {
    let err = parse(&body(&["a [zz] {}"])).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "sqitch.plan:3: change \"a\" requires unknown change \"zz\""
    );
}

#[test]
fn dependency_errors_wait_for_the_end_of_their_section() {
    // Like Sqitch, a section's dependencies are checked at its closing tag (or the end of
    // the file), so a syntax error earlier in the file wins over a dependency error.
    let (line, _) = failure(&body(&["a [zz] {}", "b", "@t {}"]));
    assert_eq!(line, Some(4));
}

#[test]
fn missing_project_is_blamed_on_the_first_line() {
    // Sqitch names no line; line 1 is where the header, and the pragma, belong.
    for text in [
        "",
        "%uri=https://example.com/\n\na 2024-01-01T00:00:00Z M <m@x>\n",
        "%project=0\n",
    ] {
        let (line, message) = failure(text);
        assert_eq!(
            (line, message.as_str()),
            (Some(1), "missing %project pragma"),
            "{text:?}"
        );
    }
}

#[test]
fn invalid_project_names_are_refused() {
    for (text, want_line) in [
        ("%project=a-\n", 1),
        ("%uri=u\n%project\n", 2),
        ("%project=a b\n", 1),
    ] {
        let (line, message) = failure(text);
        assert_eq!(line, Some(want_line), "{text:?}");
        assert!(
            message.starts_with("invalid project name"),
            "{text:?}: {message}"
        );
    }
}

#[test]
fn international_uri_hosts_are_refused_rather_than_guessed() {
    let (line, message) = failure(&format!("%project=x\n%uri=https://例え.jp/x\n\na {TAIL}\n"));
    assert_eq!(line, Some(2));
    assert!(message.contains("non-ASCII host name"), "{message}");
}

#[test]
fn other_projects_and_conflicts_are_not_checked() {
    // sqitch: `proj:change` in another project, `!conflicts` and ids of other projects are
    // left to deploy time.
    let plan = plan(&body(&["a [y:zz y:@t !nothing !y:other] {}"]));
    assert_eq!(plan.changes[0].requires.len(), 2);
    assert_eq!(plan.changes[0].conflicts.len(), 2);
    assert!(!plan.changes[0].requires[0].is_local("x"));
}

#[test]
fn valid_dependencies_are_accepted() {
    let plan = plan(&body(&[
        "a {}",
        "b [a] {}",
        "@t {}",
        "c [a@t b@t @t x:a x:@t] {}",
        "d [c] {}",
    ]));
    let shown: Vec<String> = plan.changes[2]
        .requires
        .iter()
        .map(|d| d.as_string("x"))
        .collect();
    assert_eq!(shown, ["a@t", "b@t", "@t", "a", "@t"]);
}

#[test]
fn a_plan_with_only_pragmas_is_valid() {
    let plan = plan(HEADER);
    assert!(plan.changes.is_empty());
}
