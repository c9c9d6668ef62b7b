//! The script reader: psql variables and meta-commands, statement splitting and
//! classification, and errors that name the file and line.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Script> {
    let dir = tempfile::tempdir().expect("tempdir");
    let deploy = dir.path().join("deploy");
    std::fs::create_dir(&deploy).expect("mkdir");
    let path = deploy.join("change.sql");
    std::fs::write(&path, text).expect("write");
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Script::load(&path, &vars)
}

fn kinds(script: &Script) -> Vec<StatementKind> {
    script.statements.iter().map(|s| s.kind).collect()
}

#[test]
fn sqitch_style_script_splits_into_begin_body_commit_with_lines() {
    let script = load_text(
        "-- Deploy app:users to pg\n\nBEGIN;\n\nCREATE TABLE users (\n  id int\n);\n\nCOMMIT;\n",
        &[],
    )
    .expect("loads");
    use StatementKind::*;
    assert_eq!(kinds(&script), vec![Begin, Plain, Commit]);
    let lines: Vec<usize> = script.statements.iter().map(|s| s.line).collect();
    assert_eq!(lines, vec![3, 5, 9]);
    assert_eq!(
        script.statements[1].sql,
        "CREATE TABLE users (\n  id int\n)"
    );
}

#[test]
fn semicolons_inside_strings_comments_and_bodies_do_not_split() {
    let script = load_text(
        "SELECT 'a;b', \"x;y\" FROM t; /* ; */\nCREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\nSELECT E'it\\'s;';",
        &[],
    )
    .expect("loads");
    assert_eq!(script.statements.len(), 3);
    assert_eq!(script.statements[2].line, 3);
}

#[test]
fn variables_are_substituted_as_psql_does() {
    let script = load_text(
        "GRANT SELECT ON t TO :\"role\";\nSELECT :'greeting', :n::int, ':role', $$:role$$, a[1:2];\n",
        &[("role", "app user"), ("greeting", "it's"), ("n", "42")],
    )
    .expect("loads");
    assert_eq!(
        script.statements[0].sql,
        "GRANT SELECT ON t TO \"app user\""
    );
    assert_eq!(
        script.statements[1].sql,
        "SELECT 'it''s', 42::int, ':role', $$:role$$, a[1:2]"
    );
}

#[test]
fn set_meta_command_defines_variables_and_keeps_line_numbers() {
    let script = load_text(
        "\\set ON_ERROR_STOP 1\n\\set name 'v'\nSELECT :'name';\n",
        &[],
    )
    .expect("loads");
    assert_eq!(script.statements[0].sql, "SELECT 'v'");
    assert_eq!(script.statements[0].line, 3);
}

#[test]
fn unsupported_meta_command_names_file_and_line() {
    let error = load_text("SELECT 1;\n\\connect other\n", &[]).expect_err("rejected");
    let text = error.to_string();
    assert!(text.contains("change.sql:2:"), "{text}");
    assert!(text.contains("\\connect"), "{text}");
}

#[test]
fn syntax_error_names_the_line_of_the_bad_statement() {
    let error = load_text("SELECT 1;\n\nSELEC 2;\nSELECT 3;\n", &[]).expect_err("rejected");
    let text = error.to_string();
    assert!(text.contains("change.sql:3:"), "{text}");
    assert!(text.contains("syntax error"), "{text}");
}

#[test]
fn non_transactional_statements_are_detected() {
    let cases = [
        ("CREATE INDEX CONCURRENTLY i ON t (a)", true),
        ("DROP INDEX CONCURRENTLY i", true),
        ("REINDEX (CONCURRENTLY) INDEX i", true),
        ("REINDEX INDEX CONCURRENTLY i", true),
        ("VACUUM t", true),
        ("CREATE DATABASE d", true),
        ("ALTER SYSTEM SET work_mem = '1MB'", true),
        ("CREATE INDEX i ON t (a)", false),
        ("ANALYZE t", false),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY m", false),
    ];
    for (sql, want) in cases {
        let script = load_text(&format!("{sql};"), &[]).expect(sql);
        assert_eq!(script.needs_autocommit(), want, "{sql}");
    }
}

#[test]
fn include_relative_reads_the_file_beside_the_script() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deploy = dir.path().join("deploy");
    std::fs::create_dir(&deploy).expect("mkdir");
    std::fs::write(deploy.join("part.sql"), "SELECT 'part';\n").expect("write");
    let path = deploy.join("change.sql");
    std::fs::write(&path, "SELECT 1;\n\\ir part.sql\nSELECT 2;\n").expect("write");
    let script = Script::load(&path, &BTreeMap::new()).expect("loads");
    let got: Vec<(&str, usize, bool)> = script
        .statements
        .iter()
        .map(|s| (s.sql.as_str(), s.line, s.path.ends_with("part.sql")))
        .collect();
    assert_eq!(
        got,
        vec![
            ("SELECT 1", 1, false),
            ("SELECT 'part'", 1, true),
            ("SELECT 2", 3, false)
        ]
    );
}

#[test]
fn non_utf8_script_is_rejected_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.sql");
    std::fs::write(&path, b"SELECT 1;\nSELECT '\xff';\n").expect("write");
    let error = Script::load(Path::new(&path), &BTreeMap::new()).expect_err("rejected");
    assert!(
        error
            .to_string()
            .contains("bad.sql:2: file is not valid UTF-8"),
        "{error}"
    );
}

#[test]
fn unset_variable_is_named_with_its_line() {
    let error =
        load_text("SELECT 1;\nGRANT ALL ON t TO :\"app_role\";\n", &[]).expect_err("rejected");
    let text = error.to_string();
    assert!(text.contains("change.sql:2:"), "{text}");
    assert!(text.contains("variable :app_role is not set"), "{text}");
}

#[test]
fn begin_atomic_bodies_are_one_statement_and_errors_after_them_are_located() {
    let script = "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT 2;\nEND;\nSELECT 1;\nSELEC 2;\n";
    let error = load_text(script, &[]).expect_err("rejected");
    assert!(error.to_string().contains("change.sql:7:"), "{error}");
    let ok = load_text(&script.replace("SELEC 2", "SELECT 2"), &[]).expect("loads");
    assert_eq!(ok.statements.len(), 3);
}

#[test]
fn unterminated_constructs_name_the_line_they_open_on() {
    let cases = [
        (
            "SELECT 1;\nINSERT INTO t VALUES ('oops);\nCOMMIT;\n",
            "quoted string",
        ),
        (
            "SELECT 1;\nSELECT $body$ x $bod$;\nCOMMIT;\n",
            "dollar-quoted string",
        ),
        ("SELECT 1;\n/* never closed\nCOMMIT;\n", "block comment"),
        ("SELECT 1;\nSELECT \"open;\nCOMMIT;\n", "quoted identifier"),
    ];
    for (text, what) in cases {
        let error = load_text(text, &[]).expect_err(what).to_string();
        assert!(
            error.contains(&format!("change.sql:2: unterminated {what}")),
            "{what}: {error}"
        );
    }
}

#[test]
fn a_missing_include_names_the_including_line() {
    let error = load_text("SELECT 1;\n\\i deploy/nope.sql\n", &[])
        .expect_err("missing")
        .to_string();
    assert!(error.contains("change.sql:2: cannot include"), "{error}");
    assert!(error.contains("nope.sql"), "{error}");
}

#[test]
fn a_syntax_error_inside_a_long_statement_names_its_own_line() {
    let error = load_text(
        "CREATE TABLE t (\n  id int,\n  name text\n  WHERE\n);\n",
        &[],
    )
    .expect_err("bad")
    .to_string();
    assert!(
        error.contains("change.sql:4: syntax error at or near \"WHERE\""),
        "{error}"
    );
    let error = load_text("SELECT 1;\nSELECT id\nFROM orders WHERE;\n", &[])
        .expect_err("bad")
        .to_string();
    assert!(error.contains("change.sql:3:"), "{error}");
}

#[test]
fn includes_from_a_source_stay_inside_its_directory() {
    // Issue #6: a script fetched from git must not read the controller's files.
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.sql"), "SELECT 'root:x:0:0';\n").expect("write");
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("deploy")).expect("mkdir");
    std::fs::write(root.path().join("common.sql"), "SELECT 1;\n").expect("write");
    std::os::unix::fs::symlink(
        outside.path().join("secret.sql"),
        root.path().join("link.sql"),
    )
    .expect("symlink");
    let script = root.path().join("deploy/change.sql");
    let cases = [
        (
            format!("\\i {}\n", outside.path().join("secret.sql").display()),
            false,
        ),
        (
            "\\ir ../../../../../../../../etc/passwd\n".to_string(),
            false,
        ),
        ("\\i link.sql\n".to_string(), false),
        ("\\i common.sql\n".to_string(), true),
        ("\\ir ../common.sql\n".to_string(), true),
    ];
    for (text, allowed) in cases {
        std::fs::write(&script, &text).expect("write");
        let within = Script::load_within(&script, &BTreeMap::new(), Some(root.path()));
        match within {
            Ok(s) => assert!(allowed, "{text}: read {:?}", s.statements),
            Err(e) => {
                assert!(!allowed, "{text}: {e}");
                assert!(
                    e.to_string().contains("outside the project directory"),
                    "{text}: {e}"
                );
            }
        }
    }
    // Without a root (the CLI on a directory), psql's behaviour is kept.
    std::fs::write(
        &script,
        format!("\\i {}\n", outside.path().join("secret.sql").display()),
    )
    .expect("write");
    assert!(Script::load(&script, &BTreeMap::new()).is_ok());
}
