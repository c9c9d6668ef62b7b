//! Hostile input (issue #17), beyond the parse-time corpus of `bad_input.rs`: scripts that
//! fail in the database at each statement position, blue-green objects that fail in each
//! kind, and identifiers built to break out of SQL quoting. Each case is deployed with the
//! real `switchyard` against a throwaway PostgreSQL; each must give an error naming the
//! file and line (or be quoted exactly), and leave the catalog and the registry as they
//! were: compared before and after every case.

use e2e::postgres::{self, rows, snapshot};
use e2e::tools::{Fixture, output, run_ok, switchyard_on};

/// The catalog plus the registry's rows that a refused change must not touch (Sqitch's
/// `fail` events and switchyard's run records are how a failure is recorded; they are
/// left out).
async fn state(url: &str) -> Vec<String> {
    let mut all = snapshot(url).await.expect("snapshot");
    for sql in [
        "SELECT 'change ' || change_id || ' ' || change FROM sqitch.changes",
        "SELECT 'tag ' || tag_id FROM sqitch.tags",
        "SELECT 'dependency ' || change_id || ' ' || dependency FROM sqitch.dependencies",
        "SELECT 'pointer ' || physical_schema || ' ' || role || ' ' || state FROM switchyard.schema_pointers",
        "SELECT 'rows ' || count(*) FROM bystander.kept",
    ] {
        // Missing tables (before the first deploy, or without blue-green) read as nothing.
        all.extend(rows(url, sql).await.unwrap_or_default());
    }
    all.sort();
    all
}

/// A database with a bystander table holding a row, for a stray statement to trip over.
async fn database() -> String {
    let db = postgres::server().fresh_db().await.expect("db");
    let client = postgres::connect(&db.url).await.expect("connect");
    client
        .batch_execute(
            "CREATE SCHEMA bystander; CREATE TABLE bystander.kept (id int); INSERT INTO bystander.kept VALUES (1)",
        )
        .await
        .expect("setup");
    db.url
}

/// What a case did wrong, if anything: `want` must appear on stderr (or in the `--json`
/// error), the exit code must be `code`, and the state must be unchanged.
async fn refused(
    fx: &Fixture,
    url: &str,
    args: &[&str],
    code: i32,
    want: &[String],
) -> Option<String> {
    let before = state(url).await;
    let out = output(&mut switchyard_on(fx, url, args));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let after = state(url).await;
    let mut problems = Vec::new();
    if out.status.code() != Some(code) {
        problems.push(format!("exit {:?}, want {code}", out.status.code()));
    }
    for w in want {
        if !stderr.contains(w.as_str()) {
            problems.push(format!("stderr lacks {w:?}"));
        }
    }
    if before != after {
        let added: Vec<_> = after.iter().filter(|o| !before.contains(o)).collect();
        let removed: Vec<_> = before.iter().filter(|o| !after.contains(o)).collect();
        problems.push(format!("changed: added {added:?}, removed {removed:?}"));
    }
    (!problems.is_empty())
        .then(|| format!("{}\n    stderr: {}", problems.join("; "), stderr.trim()))
}

fn report(failures: Vec<String>, total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// === scripts failing in the database at each statement position ===

/// The statements of the `items` change; each case replaces one with a failing one.
const ITEMS: [&str; 5] = [
    "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);",
    "INSERT INTO items VALUES (1, 'one'), (2, 'two');",
    "CREATE INDEX items_name ON items (name);",
    "CREATE VIEW items_v AS SELECT id FROM items;",
    "COMMENT ON TABLE items IS 'items';",
];

/// Ways a statement fails at run time (not parse time), and the message each gives.
const FAILURES: [(&str, &str); 4] = [
    ("SELECT 1 / 0;", "division by zero"),
    ("INSERT INTO no_such_table VALUES (1);", "no_such_table"),
    (
        "INSERT INTO bystander.kept VALUES ('x');",
        "invalid input syntax",
    ),
    (
        "DO $$ BEGIN RAISE EXCEPTION 'boom at %', 'here'; END $$;",
        "boom at here",
    ),
];

/// Every (position, failure, with or without the script's own BEGIN/COMMIT) is deployed
/// over `users` and `orders`: exit 4, the script's file and the failing statement's line,
/// and nothing of `items` left (each change is one transaction), with every failure mode.
#[tokio::test]
async fn scripts_failing_at_each_statement_position_change_nothing() {
    let url = database().await;
    let mut base = Fixture::new("shop");
    base.table("users").table("orders");
    run_ok(&mut switchyard_on(&base, &url, &["deploy"]));
    let mut failures = Vec::new();
    let mut total = 0;
    for wrapped in [false, true] {
        for position in 0..ITEMS.len() {
            for (i, (failing, message)) in FAILURES.iter().enumerate() {
                let mut statements: Vec<&str> = ITEMS.to_vec();
                statements[position] = failing;
                if wrapped {
                    statements.insert(0, "BEGIN;");
                    statements.push("COMMIT;");
                }
                let line = position + 1 + usize::from(wrapped);
                let mode = ["all", "tag", "change"][(position + i) % 3];
                let mut fx = Fixture::new("shop");
                fx.table("users").table("orders");
                fx.change(
                    "items",
                    &[],
                    &statements.join("\n"),
                    "DROP TABLE items CASCADE;\n",
                    "SELECT 1;\n",
                );
                let want = [format!("deploy/items.sql:{line}"), message.to_string()];
                total += 1;
                if let Some(why) = refused(&fx, &url, &["deploy", "--mode", mode], 4, &want).await {
                    failures.push(format!(
                        "statement {} of {} ({failing}, wrapped {wrapped}, mode {mode}): {why}",
                        position + 1,
                        ITEMS.len()
                    ));
                }
            }
        }
    }
    assert!(total >= 40);
    report(failures, total);
}

// === blue-green objects failing in each kind ===

/// A project whose blue-green schema `api` has one broken object, `file` with `sql`.
fn broken_object(file: &str, sql: &str) -> Fixture {
    let mut fx = Fixture::new("shop");
    fx.write(
        "switchyard.yaml",
        "project: shop\nengine: postgres\nschemas:\n  shop: stable\n  api: blue-green\n",
    );
    fx.change(
        "schema",
        &[],
        "CREATE SCHEMA shop;\nCREATE TABLE shop.orders (id int PRIMARY KEY, amount int);\nINSERT INTO shop.orders VALUES (1, 0);\n",
        "DROP SCHEMA shop CASCADE;\n",
        "SELECT 1;\n",
    );
    fx.write(
        "objects/api/orders_v.sql",
        "CREATE VIEW api.orders_v AS SELECT id, amount FROM shop.orders;\n",
    );
    fx.write(file, sql);
    fx
}

/// One broken blue-green object and what refusing it must say.
struct ObjectCase {
    name: &'static str,
    file: &'static str,
    sql: &'static str,
    /// 4: failed in the database while staging; 2: refused when the file was read.
    code: i32,
    line: usize,
    message: &'static str,
}

/// One failure per kind of object `objects/` may hold, and the shapes it refuses.
const OBJECTS: &[ObjectCase] = &[
    ObjectCase {
        name: "view on a missing column",
        file: "objects/api/bad_view.sql",
        sql: "-- a view\nCREATE VIEW api.bad_view AS SELECT nope FROM shop.orders;\n",
        code: 4,
        line: 2,
        message: "column \"nope\" does not exist",
    },
    ObjectCase {
        name: "materialized view failing as it fills",
        file: "objects/api/bad_mv.sql",
        sql: "CREATE MATERIALIZED VIEW api.bad_mv AS SELECT 1 / amount AS r FROM shop.orders;\n",
        code: 4,
        line: 1,
        message: "division by zero",
    },
    ObjectCase {
        name: "SQL function over a missing table",
        file: "objects/api/bad_fn.sql",
        sql: "\n\nCREATE FUNCTION api.bad_fn() RETURNS int LANGUAGE sql AS $$ SELECT count(*)::int FROM shop.nothing $$;\n",
        code: 4,
        line: 3,
        message: "\"shop.nothing\" does not exist",
    },
    ObjectCase {
        name: "plpgsql function with a syntax error in its body",
        file: "objects/api/bad_pl.sql",
        sql: "CREATE FUNCTION api.bad_pl() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN 1 +;\nEND\n$$;\n",
        code: 4,
        line: 1,
        message: "syntax error",
    },
    ObjectCase {
        name: "enum with a repeated label",
        file: "objects/api/bad_enum.sql",
        sql: "CREATE TYPE api.bad_enum AS ENUM ('a', 'a');\n",
        code: 4,
        line: 1,
        message: "duplicate key",
    },
    ObjectCase {
        name: "index on a missing column of a materialized view",
        file: "objects/api/bad_index.sql",
        sql: "CREATE MATERIALIZED VIEW api.totals AS SELECT count(*) AS n FROM shop.orders;\nCREATE UNIQUE INDEX totals_x ON api.totals (x);\n",
        code: 4,
        line: 2,
        message: "column \"x\" does not exist",
    },
    ObjectCase {
        name: "domain over a missing type",
        file: "objects/api/bad_domain.sql",
        sql: "CREATE DOMAIN api.positive AS shop.nothing CHECK (VALUE > 0);\n",
        code: 4,
        line: 1,
        message: "shop.nothing",
    },
    ObjectCase {
        name: "composite type over a missing type",
        file: "objects/api/bad_type.sql",
        sql: "CREATE TYPE api.pair AS (a int, b shop.missing_type);\n",
        code: 4,
        line: 1,
        message: "missing_type",
    },
    ObjectCase {
        name: "a second object in one file",
        file: "objects/api/two.sql",
        sql: "CREATE DOMAIN api.positive AS int;\nCREATE VIEW api.two AS SELECT 1 AS one;\n",
        code: 2,
        line: 2,
        message: "only COMMENT, GRANT",
    },
    ObjectCase {
        name: "a table in a blue-green schema",
        file: "objects/api/t.sql",
        sql: "CREATE TABLE api.t (id int);\n",
        code: 2,
        line: 1,
        message: "",
    },
    ObjectCase {
        name: "an object in another schema than its directory",
        file: "objects/api/elsewhere.sql",
        sql: "CREATE VIEW shop.elsewhere AS SELECT 1 AS one;\n",
        code: 2,
        line: 1,
        message: "shop",
    },
];

/// Each broken object fails `stage` naming its file and line; the staging schema is gone,
/// live untouched, and the catalog and registry are as before.
#[tokio::test]
async fn objects_failing_in_each_kind_change_nothing() {
    let url = database().await;
    let mut failures = Vec::new();
    for case in OBJECTS {
        let fx = broken_object(case.file, case.sql);
        run_ok(&mut switchyard_on(&fx, &url, &["deploy"]));
        let want = [
            format!("{}:{}", case.file, case.line),
            case.message.to_string(),
        ];
        if let Some(why) = refused(&fx, &url, &["stage"], case.code, &want).await {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    report(failures, OBJECTS.len());
}

// === injection ===

/// Identifiers and values built to break out of SQL quoting.
const CORPUS: &[&str] = &[
    "x\"; DROP TABLE bystander.kept; --",
    "x'; DROP TABLE bystander.kept; --",
    "Robert'); DROP TABLE bystander.kept;--",
    "$$; DROP TABLE bystander.kept; $$",
    "$q$x$q$",
    "x/* comment */y",
    "x -- comment",
    "x;y",
    "x\\y",
    "x\\\"y",
    "ѕhop",
    "x\u{202E}y",
    "x y",
    "",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

/// The schemas in the database.
async fn schemas(url: &str) -> Vec<String> {
    rows(url, "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1")
        .await
        .expect("schemas")
}

/// After a run with `value` in an identifier: the bystander is intact, and every schema
/// that appeared is one of `expected` spelled exactly (quoted), never a truncated or
/// reinterpreted one. A refusal (non-zero exit) must have changed nothing at all.
async fn judge(
    url: &str,
    before: &[String],
    value: &str,
    success: bool,
    expected: &[String],
) -> Option<String> {
    let after = schemas(url).await;
    let kept = rows(url, "SELECT count(*) FROM bystander.kept")
        .await
        .unwrap_or_default();
    if kept != ["1"] {
        return Some(format!(
            "{value:?}: the bystander table was touched: {kept:?}"
        ));
    }
    let added: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    eprintln!(
        "{value:?}: {}",
        if success { "accepted" } else { "refused" }
    );
    if !success {
        return (!added.is_empty()).then(|| format!("{value:?}: refused, but created {added:?}"));
    }
    let unexpected: Vec<&&String> = added.iter().filter(|s| !expected.contains(s)).collect();
    (!unexpected.is_empty())
        .then(|| format!("{value:?}: created {unexpected:?}, expected only {expected:?}"))
}

/// `--registry` names the schema of Sqitch's tables: quoted exactly, or refused.
#[tokio::test]
async fn registry_names_are_quoted_or_refused() {
    let mut failures = Vec::new();
    for value in CORPUS {
        let url = database().await;
        let mut fx = Fixture::new("shop");
        fx.table("users");
        let before = schemas(&url).await;
        let out = output(&mut switchyard_on(
            &fx,
            &url,
            &["deploy", "--registry", value],
        ));
        let expected = [value.to_string(), "switchyard".to_string()];
        if let Some(why) = judge(&url, &before, value, out.status.success(), &expected).await {
            failures.push(format!(
                "{why}\n    stderr: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    report(failures, CORPUS.len());
}

/// `--schema-suffix` names every layer (`api<suffix>`): quoted exactly, or refused.
#[tokio::test]
async fn schema_suffixes_are_quoted_or_refused() {
    let mut failures = Vec::new();
    for value in CORPUS {
        let url = database().await;
        let fx = broken_object(
            "objects/api/ok.sql",
            "CREATE VIEW api.ok AS SELECT 1 AS one;\n",
        );
        run_ok(&mut switchyard_on(&fx, &url, &["deploy"]));
        let before = schemas(&url).await;
        let stage = output(&mut switchyard_on(
            &fx,
            &url,
            &["stage", "--schema-suffix", value],
        ));
        let promote = output(&mut switchyard_on(
            &fx,
            &url,
            &["promote", "--schema-suffix", value],
        ));
        let mut expected = vec![format!("api{value}")];
        expected.extend(
            schemas(&url)
                .await
                .into_iter()
                .filter(|s| s.starts_with("api__sy_")),
        );
        let success = stage.status.success() && promote.status.success();
        let refused_up_front = stage.status.code() == Some(2)
            && String::from_utf8_lossy(&stage.stderr).contains("--schema-suffix");
        if !success && !refused_up_front {
            failures.push(format!(
                "{value:?}: neither served nor refused before anything ran: stage {:?} {}, promote {:?} {}",
                stage.status.code(),
                String::from_utf8_lossy(&stage.stderr).trim(),
                promote.status.code(),
                String::from_utf8_lossy(&promote.stderr).trim()
            ));
            continue;
        }
        if let Some(why) = judge(&url, &before, value, success, &expected).await {
            failures.push(why);
        }
    }
    report(failures, CORPUS.len());
}

/// Script variables reach SQL through psql's `:'name'` (a literal) and `:"name"` (an
/// identifier): whatever the value, they stay one literal and one identifier.
#[tokio::test]
async fn variables_are_quoted_as_literals_and_identifiers() {
    let mut failures = Vec::new();
    for value in CORPUS.iter().filter(|v| !v.is_empty() && v.len() < 64) {
        let url = database().await;
        let mut fx = Fixture::new("shop");
        fx.change(
            "holder",
            &[],
            "CREATE SCHEMA :\"name\";\nCREATE TABLE :\"name\".t (v text);\nINSERT INTO :\"name\".t VALUES (:'name');\n",
            "DROP SCHEMA :\"name\" CASCADE;\n",
            "SELECT 1;\n",
        );
        let before = schemas(&url).await;
        let set = format!("name={value}");
        let out = output(&mut switchyard_on(&fx, &url, &["deploy", "--set", &set]));
        let expected = [
            value.to_string(),
            "sqitch".to_string(),
            "switchyard".to_string(),
        ];
        if let Some(why) = judge(&url, &before, value, out.status.success(), &expected).await {
            failures.push(format!(
                "{why}\n    stderr: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        if out.status.success() {
            let quoted = value.replace('"', "\"\"");
            let stored = rows(&url, &format!("SELECT v FROM \"{quoted}\".t"))
                .await
                .unwrap_or_default();
            if stored != [value.to_string()] {
                failures.push(format!("{value:?}: stored {stored:?}"));
            }
        }
    }
    report(failures, CORPUS.len() - 2);
}

/// Project and change names reach the registry and messages: the plan reader refuses
/// what Sqitch refuses, and nothing reaches the database.
#[tokio::test]
async fn project_and_change_names_from_the_corpus_are_refused_before_anything_runs() {
    let url = database().await;
    let mut failures = Vec::new();
    let mut total = 0;
    for value in CORPUS
        .iter()
        .filter(|v| v.contains([' ', ';', '"', '\'', '/', '\\', '$', '\u{202E}']) || v.is_empty())
    {
        for (what, plan) in [
            (
                "project",
                format!("%project={value}\n\nusers 2026-01-01T00:00:01Z A <a@b.c>\n"),
            ),
            (
                "change",
                format!("%project=shop\n\n{value} 2026-01-01T00:00:01Z A <a@b.c>\n"),
            ),
        ] {
            total += 1;
            let fx = Fixture::new("shop");
            fx.write("sqitch.plan", &plan);
            if let Some(why) =
                refused(&fx, &url, &["deploy"], 2, &["sqitch.plan:".to_string()]).await
            {
                failures.push(format!("{what} {value:?}: {why}"));
            }
        }
    }
    report(failures, total);
}
