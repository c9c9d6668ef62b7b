//! The bad-input corpus (issue #2): malformed plans, manifests, `sqitch.conf` files and
//! scripts, each deployed with `switchyard deploy` against a throwaway PostgreSQL.
//!
//! Every case must be refused before anything runs: exit code 2, an error naming the file
//! and line (on stderr, and as `{"error": …}` with `--json`), and the database exactly as it
//! was, without a `sqitch` or `switchyard` schema. Each category shares one database (with
//! a bystander table in it), compared after every case with how it started; a case that
//! changes it is reported and the change undone, so the next case is judged on its own.
//!
//! Cases the product gets wrong today are at the bottom, one `#[ignore = "bug: …"]` test each.

use std::path::Path;

use e2e::postgres::{self, snapshot};
use e2e::tools::{Fixture, USER_EMAIL, USER_NAME, output, switchyard};
use serde_json::Value;

/// One way to break the [`base`] project, and the error it must produce.
struct Case {
    /// Names the case in failure reports.
    name: &'static str,
    /// Breaks the base project.
    setup: fn(&mut Fixture),
    /// Extra `deploy` arguments, e.g. `--verify`.
    args: &'static [&'static str],
    /// The file the error must name, relative to the project root (`sqitch.plan`,
    /// `deploy/items.sql`).
    want_file: &'static str,
    /// The 1-based line the error must name.
    want_line: usize,
    /// A substring of the message after `file:line: `.
    want_message: &'static str,
}

/// A valid project, the starting point of every case. Plan lines: 1-3 the header, 4 `users`,
/// 5 `orders`, 6 `@v1`, 7 `items`. Script cases break `items`, so the two changes before
/// it would deploy if the engine did not check every script before running any.
fn base() -> Fixture {
    let mut fx = Fixture::new("shop");
    fx.table("users").table("orders").tag("v1").table("items");
    fx
}

/// Writes `file` as `lines` joined by newlines (so line N is `lines[N - 1]`), with `{by}`
/// standing for the planner's `Name <email>`.
fn write_lines(fx: &Fixture, file: &str, lines: &[&str]) {
    let by = format!("{USER_NAME} <{USER_EMAIL}>");
    let text: String = lines
        .iter()
        .map(|l| format!("{}\n", l.replace("{by}", &by)))
        .collect();
    fx.write(file, &text);
}

/// Replaces the plan.
fn plan(fx: &Fixture, lines: &[&str]) {
    write_lines(fx, "sqitch.plan", lines);
}

/// Writes raw bytes, for files that are not valid UTF-8.
fn write_bytes(fx: &Fixture, file: &str, bytes: &[u8]) {
    std::fs::write(fx.path().join(file), bytes).expect("write bytes");
}

fn remove(fx: &Fixture, file: &str) {
    std::fs::remove_file(fx.path().join(file)).expect("remove");
}

// === plans ===

const PLAN_CASES: &[Case] = &[
    Case {
        name: "pragma without a name",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%syntax-version=1.0.0",
                    "%project=shop",
                    "%=x",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "invalid pragma",
    },
    Case {
        name: "no blank line between pragmas and changes",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%syntax-version=1.0.0",
                    "%project=shop",
                    "users 2026-01-01T00:00:01Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "a blank line must come between pragmas and changes",
    },
    Case {
        name: "blank project name",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%syntax-version=1.0.0",
                    "%project=",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 2,
        want_message: "invalid pragma",
    },
    Case {
        name: "project name with a blank",
        setup: |fx| {
            plan(
                fx,
                &["%project=my shop", "", "users 2026-01-01T00:00:01Z {by}"],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 1,
        want_message: "invalid project name \"my shop\"",
    },
    Case {
        name: "%uri with a non-ASCII host",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "%uri=https://bücher.example/shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 2,
        want_message: "non-ASCII host name",
    },
    Case {
        name: "change without a timestamp",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "missing timestamp",
    },
    Case {
        name: "timestamp with a blank instead of T",
        setup: |fx| plan(fx, &["%project=shop", "", "users 2026-01-01 00:00:01 {by}"]),
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "missing timestamp",
    },
    Case {
        name: "timestamp with month 13",
        setup: |fx| {
            plan(
                fx,
                &["%project=shop", "", "users 2026-13-01T00:00:01Z {by}"],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "invalid timestamp \"2026-13-01T00:00:01Z\": month 13 is out of range",
    },
    Case {
        name: "timestamp on 30 February",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders 2026-02-30T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "day 30 is out of range for 2026-02",
    },
    Case {
        name: "change without a planner",
        setup: |fx| plan(fx, &["%project=shop", "", "users 2026-01-01T00:00:01Z"]),
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "missing planner name and email",
    },
    Case {
        // Sqitch's line regex fails as a whole, so it (and we) blame the name.
        name: "planner email without a closing >",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z Test Deployer <deployer@example.com",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "invalid name",
    },
    Case {
        name: "planner without an email",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z Test Deployer",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "invalid name",
    },
    Case {
        name: "change name containing @",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "ord@ers 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "invalid name; names must not begin with punctuation",
    },
    Case {
        name: "change name starting with punctuation",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    ".orders 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "invalid name",
    },
    Case {
        name: "change name ending with punctuation",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders. 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "invalid name",
    },
    Case {
        name: "change name that looks like a sha1",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "0123456789abcdef0123456789abcdef01234567 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "could be confused with a sha1 id",
    },
    Case {
        name: "change named HEAD",
        setup: |fx| plan(fx, &["%project=shop", "", "HEAD 2026-01-01T00:00:01Z {by}"]),
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "\"HEAD\" is a reserved name",
    },
    Case {
        name: "tag named @ROOT",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "@ROOT 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "\"@ROOT\" is a reserved name",
    },
    Case {
        name: "a lone # is not a comment",
        setup: |fx| {
            plan(
                fx,
                &["%project=shop", "", "users 2026-01-01T00:00:01Z {by}", "#"],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "invalid name",
    },
    Case {
        name: "duplicate change without an intervening tag",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders 2026-01-01T00:00:02Z {by}",
                    "users 2026-01-01T00:00:03Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 5,
        want_message: "change \"users\" duplicates earlier declaration on line 3",
    },
    Case {
        name: "duplicate tag",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "@v1 2026-01-01T00:00:02Z {by}",
                    "orders 2026-01-01T00:00:03Z {by}",
                    "@v1 2026-01-01T00:00:04Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 6,
        want_message: "tag \"@v1\" duplicates earlier declaration on line 4",
    },
    Case {
        name: "tag before any change",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "@v1 2026-01-01T00:00:01Z {by}",
                    "users 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "declared without a preceding change",
    },
    Case {
        name: "tag with dependencies",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "@v1 [users] 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "tags may not specify dependencies",
    },
    Case {
        name: "dependency on an unknown change",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders [nope] 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "change \"orders\" requires unknown change \"nope\"",
    },
    Case {
        name: "dependency on a later change",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users [orders] 2026-01-01T00:00:01Z {by}",
                    "orders 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "which is planned 1 change later",
    },
    Case {
        name: "self dependency",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users [users] 2026-01-01T00:00:01Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "change \"users\" cannot require itself",
    },
    Case {
        name: "dependency on an unknown tag",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders [@nope] 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "requires unknown change \"@nope\"",
    },
    Case {
        name: "dependency on a change at an unknown tag",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders [users@nope] 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "requires unknown change \"users@nope\"",
    },
    Case {
        name: "[ without ]",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders [users 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "invalid name",
    },
    Case {
        name: "invalid dependency specification",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders [$x] 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "\"$x\" is not a valid dependency specification",
    },
    Case {
        name: "duplicate dependency",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders [users users] 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "duplicate dependency \"users\"",
    },
    Case {
        name: "requires and conflicts with the same change",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders [users !users] 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "change \"orders\" both requires and conflicts with \"users\"",
    },
    Case {
        name: "dependency by id without a project",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders [0123456789abcdef0123456789abcdef01234567] 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "names a change by id without a project",
    },
    Case {
        // Checked against the registry, which does not exist yet: still nothing may change.
        name: "dependency on another project's change that is not deployed",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "orders [other:x] 2026-01-01T00:00:02Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 4,
        want_message: "change orders requires other:x, which is not deployed",
    },
    Case {
        name: "missing deploy script",
        setup: |fx| remove(fx, "deploy/items.sql"),
        args: &[],
        want_file: "sqitch.plan",
        want_line: 7,
        want_message: "deploy script deploy/items.sql for change \"items\" does not exist",
    },
    Case {
        name: "reworked change without its name@tag deploy script",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%project=shop",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                    "@v1 2026-01-01T00:00:02Z {by}",
                    "users [users@v1] 2026-01-01T00:00:03Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "deploy script deploy/users@v1.sql for change \"users\" does not exist",
    },
    Case {
        name: "plan that is not UTF-8",
        setup: |fx| {
            write_bytes(
                fx,
                "sqitch.plan",
                b"%project=shop\n\nusers 2026-01-01T00:00:01Z A <a@b.c> # caf\xe9\n",
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 3,
        want_message: "not valid UTF-8",
    },
];

// === switchyard.yaml and sqitch.conf ===

const MANIFEST_CASES: &[Case] = &[
    Case {
        name: "manifest indented with a tab",
        setup: |fx| {
            write_lines(
                fx,
                "switchyard.yaml",
                &["project: shop", "schemas:", "\tapp: stable"],
            )
        },
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 3,
        want_message: "tabs disallowed",
    },
    Case {
        name: "manifest key indented less than its siblings",
        setup: |fx| {
            write_lines(
                fx,
                "switchyard.yaml",
                &[
                    "project: shop",
                    "schemas:",
                    "  app: stable",
                    " other: stable",
                ],
            )
        },
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 4,
        want_message: "did not find expected key",
    },
    Case {
        name: "manifest with an unknown key",
        setup: |fx| write_lines(fx, "switchyard.yaml", &["project: shop", "colour: blue"]),
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 2,
        want_message: "unknown field `colour`",
    },
    Case {
        name: "manifest without project",
        setup: |fx| write_lines(fx, "switchyard.yaml", &["engine: postgres"]),
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 1,
        want_message: "missing field `project`",
    },
    Case {
        name: "manifest with a duplicate key",
        setup: |fx| write_lines(fx, "switchyard.yaml", &["project: shop", "project: shop"]),
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 2,
        want_message: "duplicate mapping key: project",
    },
    Case {
        name: "manifest with an unknown engine",
        setup: |fx| write_lines(fx, "switchyard.yaml", &["project: shop", "engine: oracle"]),
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 2,
        want_message: "unknown variant `oracle`",
    },
    Case {
        name: "manifest with an unknown schema mode",
        setup: |fx| {
            write_lines(
                fx,
                "switchyard.yaml",
                &["project: shop", "schemas:", "  shop: purple"],
            )
        },
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 3,
        want_message: "unknown variant `purple`",
    },
    Case {
        name: "manifest project does not match %project",
        setup: |fx| {
            write_lines(
                fx,
                "switchyard.yaml",
                &["engine: postgres", "project: other"],
            )
        },
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 2,
        want_message: "project \"other\" does not match %project \"shop\"",
    },
    Case {
        name: "manifest variables as a list",
        setup: |fx| {
            write_lines(
                fx,
                "switchyard.yaml",
                &["project: shop", "variables: [a, b]"],
            )
        },
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 2,
        want_message: "expected mapping",
    },
    Case {
        name: "manifest variable that is a mapping",
        setup: |fx| {
            write_lines(
                fx,
                "switchyard.yaml",
                &["project: shop", "variables:", "  a: {b: c}"],
            )
        },
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 3,
        want_message: "did not match any variant",
    },
    Case {
        name: "manifest cluster without a size",
        setup: |fx| {
            write_lines(
                fx,
                "switchyard.yaml",
                &[
                    "project: shop",
                    "clusters:",
                    "  c1:",
                    "    replicationFactor: 2",
                ],
            )
        },
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 4,
        want_message: "missing field `size`",
    },
    Case {
        name: "manifest cluster with a negative replication factor",
        setup: |fx| {
            write_lines(
                fx,
                "switchyard.yaml",
                &[
                    "project: shop",
                    "clusters:",
                    "  c1:",
                    "    size: 50cc",
                    "    replicationFactor: -1",
                ],
            )
        },
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 5,
        want_message: "invalid u32",
    },
    Case {
        name: "manifest that is not UTF-8",
        setup: |fx| {
            write_bytes(
                fx,
                "switchyard.yaml",
                b"project: shop\nvariables:\n  a: caf\xe9\n",
            )
        },
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 3,
        want_message: "not valid UTF-8",
    },
    Case {
        name: "sqitch.conf section without ]",
        setup: |fx| write_lines(fx, "sqitch.conf", &["[core]", "\tengine = pg", "[deploy"]),
        args: &[],
        want_file: "sqitch.conf",
        want_line: 3,
        want_message: "invalid section header",
    },
    Case {
        name: "sqitch.conf line without a key",
        setup: |fx| write_lines(fx, "sqitch.conf", &["[core]", "\tengine = pg", "\t= value"]),
        args: &[],
        want_file: "sqitch.conf",
        want_line: 3,
        want_message: "invalid line",
    },
    Case {
        name: "sqitch.conf value with an unclosed quote",
        setup: |fx| write_lines(fx, "sqitch.conf", &["[core]", "\tengine = \"pg"]),
        args: &[],
        want_file: "sqitch.conf",
        want_line: 2,
        want_message: "invalid value",
    },
    Case {
        name: "sqitch.conf engine other than pg",
        setup: |fx| write_lines(fx, "sqitch.conf", &["[core]", "\tengine = oracle"]),
        args: &[],
        want_file: "sqitch.conf",
        want_line: 2,
        want_message: "engine \"oracle\" is not supported",
    },
    Case {
        name: "sqitch.conf deploy.verify that is not a boolean",
        setup: |fx| {
            write_lines(
                fx,
                "sqitch.conf",
                &["[core]", "\tengine = pg", "[deploy]", "\tverify = maybe"],
            )
        },
        args: &[],
        want_file: "sqitch.conf",
        want_line: 4,
        want_message: "deploy.verify must be a boolean",
    },
    Case {
        name: "sqitch.conf that is not UTF-8",
        setup: |fx| write_bytes(fx, "sqitch.conf", b"[core]\n\tengine = pg\n# caf\xe9\n"),
        args: &[],
        want_file: "sqitch.conf",
        want_line: 3,
        want_message: "not valid UTF-8",
    },
];

// === scripts ===

/// The base `items` deploy script with line 3 replaced.
fn items_line_3(fx: &mut Fixture, line: &str) {
    write_lines(
        fx,
        "deploy/items.sql",
        &["BEGIN;", "CREATE TABLE items (id int);", line, "COMMIT;"],
    );
}

const SCRIPT_CASES: &[Case] = &[
    Case {
        name: "SQL syntax error",
        setup: |fx| items_line_3(fx, "CREAT TABLE more (id int);"),
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "syntax error at or near \"CREAT\"",
    },
    Case {
        name: "psql \\connect",
        setup: |fx| items_line_3(fx, "\\connect other"),
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "psql meta-command \\connect is not supported",
    },
    Case {
        name: "psql \\copy",
        setup: |fx| items_line_3(fx, "\\copy items FROM 'items.csv'"),
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "psql meta-command \\copy is not supported",
    },
    Case {
        name: "psql \\gexec",
        setup: |fx| {
            write_lines(
                fx,
                "deploy/items.sql",
                &[
                    "BEGIN;",
                    "CREATE TABLE items (id int);",
                    "SELECT 'SELECT 1'",
                    "\\gexec",
                    "COMMIT;",
                ],
            )
        },
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 4,
        want_message: "psql meta-command \\gexec is not supported",
    },
    Case {
        name: "psql \\set without a variable",
        setup: |fx| items_line_3(fx, "\\set"),
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "\\set without a variable name",
    },
    Case {
        name: "psql \\ir without a file",
        setup: |fx| items_line_3(fx, "\\ir"),
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "\\ir needs a file name",
    },
    Case {
        name: "stray backslash",
        setup: |fx| items_line_3(fx, "\\"),
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "stray backslash",
    },
    Case {
        name: "unset identifier variable",
        setup: |fx| items_line_3(fx, "CREATE TABLE :\"missing\" (id int);"),
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "variable :missing is not set",
    },
    Case {
        name: "unset literal variable",
        setup: |fx| items_line_3(fx, "INSERT INTO items VALUES (:'missing');"),
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "variable :missing is not set",
    },
    Case {
        name: "deploy script that is not UTF-8",
        setup: |fx| {
            let script: &[&[u8]] = &[
                b"BEGIN;\nCREATE TABLE items (id int);\n",
                b"COMMENT ON TABLE items IS 'caf\xe9';\nCOMMIT;\n",
            ];
            write_bytes(fx, "deploy/items.sql", &script.concat())
        },
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "not valid UTF-8",
    },
    Case {
        name: "ROLLBACK in a deploy script",
        setup: |fx| {
            write_lines(
                fx,
                "deploy/items.sql",
                &["BEGIN;", "CREATE TABLE items (id int);", "ROLLBACK;"],
            )
        },
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "ROLLBACK in a deploy or revert script",
    },
    Case {
        name: "PREPARE TRANSACTION in a deploy script",
        setup: |fx| {
            write_lines(
                fx,
                "deploy/items.sql",
                &[
                    "BEGIN;",
                    "CREATE TABLE items (id int);",
                    "PREPARE TRANSACTION 'items';",
                ],
            )
        },
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "two-phase commit statements are not allowed",
    },
    Case {
        name: "COMMIT PREPARED in a deploy script",
        setup: |fx| {
            write_lines(
                fx,
                "deploy/items.sql",
                &["CREATE TABLE items (id int);", "COMMIT PREPARED 'items';"],
            )
        },
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 2,
        want_message: "two-phase commit statements are not allowed",
    },
    Case {
        name: "syntax error in a file included with \\ir",
        setup: |fx| {
            items_line_3(fx, "\\ir parts/more.sql");
            write_lines(
                fx,
                "deploy/parts/more.sql",
                &[
                    "-- more items",
                    "CREATE TABLE more_items (id int);",
                    "SELEC 1;",
                ],
            );
        },
        args: &[],
        want_file: "deploy/parts/more.sql",
        want_line: 3,
        want_message: "syntax error at or near \"SELEC\"",
    },
    Case {
        name: "script that includes itself",
        setup: |fx| items_line_3(fx, "\\i deploy/items.sql"),
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "includes nest deeper than",
    },
    Case {
        // Revert scripts of pending changes are loaded up front, for the failure modes.
        name: "syntax error in a revert script",
        setup: |fx| {
            write_lines(
                fx,
                "revert/items.sql",
                &["BEGIN;", "DROP TABLEE items;", "COMMIT;"],
            )
        },
        args: &[],
        want_file: "revert/items.sql",
        want_line: 2,
        want_message: "syntax error at or near \"TABLEE\"",
    },
    Case {
        name: "ROLLBACK in a revert script",
        setup: |fx| {
            write_lines(
                fx,
                "revert/items.sql",
                &["BEGIN;", "DROP TABLE items;", "ROLLBACK;"],
            )
        },
        args: &[],
        want_file: "revert/items.sql",
        want_line: 3,
        want_message: "ROLLBACK in a deploy or revert script",
    },
    Case {
        name: "syntax error in a verify script with --verify",
        setup: |fx| {
            write_lines(
                fx,
                "verify/items.sql",
                &["-- Verify items", "SELECT id FROM items WHERE;"],
            )
        },
        args: &["--verify"],
        want_file: "verify/items.sql",
        want_line: 2,
        want_message: "syntax error at or near \";\"",
    },
    Case {
        name: "syntax error in a verify script with deploy.verify in sqitch.conf",
        setup: |fx| {
            write_lines(
                fx,
                "sqitch.conf",
                &["[core]", "\tengine = pg", "[deploy]", "\tverify = true"],
            );
            write_lines(
                fx,
                "verify/items.sql",
                &["-- Verify items", "SELECT id FROM items WHERE;"],
            );
        },
        args: &[],
        want_file: "verify/items.sql",
        want_line: 2,
        want_message: "syntax error at or near \";\"",
    },
];

// === the checks ===

fn deploy(fx: &Fixture, url: &str, args: &[&str]) -> std::process::Command {
    let mut command = switchyard();
    command
        .arg("deploy")
        .arg("--project")
        .arg(fx.path())
        .arg("--db")
        .arg(url)
        .args(args);
    command
}

/// `error: <root>/<file>:<line>: …` containing the message, or why not.
fn check_error(error: Option<&str>, root: &Path, case: &Case) -> Result<(), String> {
    let want = format!(
        "{}:{}: ",
        root.join(case.want_file).display(),
        case.want_line
    );
    match error {
        None => Err("no error message".into()),
        Some(e) if !e.starts_with(&want) => Err(format!("error does not start with {want:?}")),
        Some(e) if !e.contains(case.want_message) => {
            Err(format!("error does not contain {:?}", case.want_message))
        }
        Some(_) => Ok(()),
    }
}

/// Deploys every case into one database, with and without `--json`, checking after each
/// that the database is as it was. Reports every failing case at once.
async fn assert_refused(cases: &[Case]) {
    let db = postgres::server().fresh_db().await.expect("db");
    // Something for a stray deploy to trip over or drop.
    let client = postgres::connect(&db.url).await.expect("connect");
    client
        .batch_execute("CREATE SCHEMA bystander; CREATE TABLE bystander.kept (id int)")
        .await
        .expect("setup");
    let before = snapshot(&db.url).await.expect("snapshot");

    let mut failures = Vec::new();
    for case in cases {
        let mut fx = base();
        (case.setup)(&mut fx);
        let mut problems = Vec::new();

        let out = output(&mut deploy(&fx, &db.url, case.args));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.code() != Some(2) {
            problems.push(format!("exit code {:?}, want 2", out.status.code()));
        }
        let error = stderr.lines().find_map(|l| l.strip_prefix("error: "));
        if let Err(why) = check_error(error, fx.path(), case) {
            problems.push(why);
        }

        let json = output(deploy(&fx, &db.url, case.args).arg("--json"));
        let stdout = String::from_utf8_lossy(&json.stdout).into_owned();
        if json.status.code() != Some(2) {
            problems.push(format!(
                "--json: exit code {:?}, want 2",
                json.status.code()
            ));
        }
        let doc: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        if let Err(why) = check_error(doc["error"].as_str(), fx.path(), case) {
            problems.push(format!("--json: {why}"));
        }

        let after = snapshot(&db.url).await.expect("snapshot");
        for schema in ["sqitch", "switchyard"] {
            if after.contains(&format!("schema {schema}")) {
                problems.push(format!("schema {schema} was created"));
            }
        }
        if after != before {
            let added: Vec<_> = after.iter().filter(|o| !before.contains(o)).collect();
            let removed: Vec<_> = before.iter().filter(|o| !after.contains(o)).collect();
            problems.push(format!(
                "database changed: added {added:?}, removed {removed:?}"
            ));
            // Start the next case from a clean slate, so it is judged on its own.
            reset(&db.url, &before).await;
        }

        if !problems.is_empty() {
            failures.push(format!(
                "{}:\n    {}\n    stderr: {}\n    --json stdout: {}",
                case.name,
                problems.join("\n    "),
                stderr.trim_end().replace('\n', "\n            "),
                stdout.trim_end().replace('\n', "\n            "),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Drops what a misbehaving case left behind: every schema not in `before`, and tables
/// created in `public`.
async fn reset(url: &str, before: &[String]) {
    let client = postgres::connect(url).await.expect("connect");
    let after = snapshot(url).await.expect("snapshot");
    for object in after.iter().filter(|o| !before.contains(o)) {
        let sql = match object.split_once(' ') {
            Some(("schema", name)) => format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"),
            Some(("r", name)) => format!("DROP TABLE IF EXISTS {name} CASCADE"),
            _ => continue,
        };
        client.batch_execute(&sql).await.expect("reset");
    }
}

#[tokio::test]
async fn the_base_project_deploys_and_verifies() {
    // The corpus means something only if the project each case breaks is otherwise valid.
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = base();
    let out = output(&mut deploy(&fx, &db.url, &["--verify"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tables = postgres::rows(
        &db.url,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .await
    .expect("query");
    assert_eq!(tables, ["items", "orders", "users"]);
}

#[tokio::test]
async fn malformed_plans_are_refused_with_file_and_line_and_change_nothing() {
    assert_refused(PLAN_CASES).await;
}

#[tokio::test]
async fn malformed_manifests_and_sqitch_conf_are_refused_with_file_and_line_and_change_nothing() {
    assert_refused(MANIFEST_CASES).await;
}

#[tokio::test]
async fn malformed_scripts_are_refused_with_file_and_line_and_change_nothing() {
    assert_refused(SCRIPT_CASES).await;
}

#[test]
fn the_corpus_has_at_least_30_cases() {
    let total = PLAN_CASES.len() + MANIFEST_CASES.len() + SCRIPT_CASES.len();
    assert!(
        total >= 30,
        "issue #2 asks for at least 30 bad inputs; there are {total}"
    );
}

// === known bugs: each case names no line, or the wrong one ===

#[tokio::test]
async fn plan_without_project_names_a_line() {
    assert_refused(&[Case {
        name: "plan without %project",
        setup: |fx| {
            plan(
                fx,
                &[
                    "%syntax-version=1.0.0",
                    "",
                    "users 2026-01-01T00:00:01Z {by}",
                ],
            )
        },
        args: &[],
        want_file: "sqitch.plan",
        want_line: 1,
        want_message: "missing %project pragma",
    }])
    .await;
}

#[tokio::test]
async fn manifest_naming_a_missing_plan_names_its_line() {
    assert_refused(&[Case {
        name: "manifest plan: that does not exist",
        setup: |fx| write_lines(fx, "switchyard.yaml", &["project: shop", "plan: nope.plan"]),
        args: &[],
        want_file: "switchyard.yaml",
        want_line: 2,
        want_message: "nope.plan",
    }])
    .await;
}

#[tokio::test]
async fn sqitch_conf_naming_a_missing_plan_names_its_line() {
    assert_refused(&[Case {
        name: "sqitch.conf plan_file that does not exist",
        setup: |fx| {
            write_lines(
                fx,
                "sqitch.conf",
                &["[core]", "\tengine = pg", "\tplan_file = nope.plan"],
            )
        },
        args: &[],
        want_file: "sqitch.conf",
        want_line: 3,
        want_message: "nope.plan",
    }])
    .await;
}

#[tokio::test]
async fn include_of_a_missing_file_names_the_including_line() {
    assert_refused(&[Case {
        name: "\\i of a missing file",
        setup: |fx| items_line_3(fx, "\\i deploy/nope.sql"),
        args: &[],
        want_file: "deploy/items.sql",
        want_line: 3,
        want_message: "nope.sql",
    }])
    .await;
}

#[tokio::test]
async fn unterminated_quotes_and_comments_name_the_line_they_open_on() {
    assert_refused(&[
        Case {
            name: "unterminated quote",
            setup: |fx| items_line_3(fx, "INSERT INTO items VALUES ('oops);"),
            args: &[],
            want_file: "deploy/items.sql",
            want_line: 3,
            want_message: "unterminated quoted string",
        },
        Case {
            name: "unterminated dollar quote",
            setup: |fx| {
                write_lines(
                    fx,
                    "deploy/items.sql",
                    &[
                        "BEGIN;",
                        "CREATE TABLE items (id int);",
                        "CREATE FUNCTION one() RETURNS int AS $body$",
                        "  SELECT 1;",
                        "$bod$ LANGUAGE sql;",
                        "COMMIT;",
                    ],
                )
            },
            args: &[],
            want_file: "deploy/items.sql",
            want_line: 3,
            want_message: "unterminated dollar-quoted string",
        },
        Case {
            name: "unterminated block comment",
            setup: |fx| items_line_3(fx, "/* never closed"),
            args: &[],
            want_file: "deploy/items.sql",
            want_line: 3,
            want_message: "unterminated block comment",
        },
    ])
    .await;
}
