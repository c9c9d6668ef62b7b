//! Tests for the `objects/` reader: kinds, dependency order, and errors with file and line.

use std::collections::BTreeMap;

use super::*;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, body) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, body).expect("write");
        }
        Dir(dir)
    }

    fn load(&self) -> Result<Objects> {
        load(self.0.path(), &modes())
    }
}

/// `shop` stable, `api` and `report` blue-green.
fn modes() -> BTreeMap<String, SchemaMode> {
    [
        ("shop", SchemaMode::Stable),
        ("api", SchemaMode::BlueGreen),
        ("report", SchemaMode::BlueGreen),
    ]
    .into_iter()
    .map(|(s, m)| (s.to_string(), m))
    .collect()
}

fn names(objects: &Objects) -> Vec<String> {
    objects.ordered.iter().map(|o| o.name.to_string()).collect()
}

fn invalid(result: Result<Objects>) -> (String, usize, String) {
    match result {
        Err(Error::Invalid {
            path,
            line,
            message,
        }) => (
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            line,
            message,
        ),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn no_objects_dir_means_no_objects() {
    let dir = Dir::new(&[]);
    let objects = dir.load().expect("load");
    assert!(objects.ordered.is_empty());
    assert_eq!(
        objects.schemas.iter().cloned().collect::<Vec<_>>(),
        ["api", "report"]
    );
}

#[test]
fn views_over_views_are_ordered_by_dependency_not_file_name() {
    let dir = Dir::new(&[
        (
            "objects/api/a_top.sql",
            "CREATE VIEW api.a_top AS SELECT * FROM api.m_middle;\n",
        ),
        (
            "objects/api/m_middle.sql",
            "-- middle\nCREATE VIEW m_middle AS SELECT id FROM z_base WHERE id > 0;\n",
        ),
        (
            "objects/api/z_base.sql",
            "CREATE VIEW api.z_base AS SELECT id FROM shop.orders;\n",
        ),
    ]);
    let objects = dir.load().expect("load");
    assert_eq!(names(&objects), ["api.z_base", "api.m_middle", "api.a_top"]);
    let middle = objects.get("api", "m_middle").expect("middle");
    assert_eq!(middle.line, 2, "line of the first token, after the comment");
    assert_eq!(middle.kind, ObjectKind::View);
}

#[test]
fn every_kind_is_recognised_with_its_dependencies() {
    let dir = Dir::new(&[
        (
            "objects/api/status.sql",
            "CREATE TYPE api.status AS ENUM ('open', 'closed');\n",
        ),
        (
            "objects/api/totals.sql",
            "CREATE MATERIALIZED VIEW api.totals AS SELECT api.label(1) AS l, 'open'::status AS s;\nCREATE UNIQUE INDEX totals_l ON api.totals (l);\n",
        ),
        (
            "objects/api/label.sql",
            "CREATE FUNCTION api.label(n int) RETURNS text LANGUAGE sql AS $$ SELECT n::text FROM api.base $$;\n",
        ),
        (
            "objects/api/base.sql",
            "CREATE VIEW api.base AS SELECT 1 AS one;\n",
        ),
        (
            "objects/api/touch.sql",
            "CREATE PROCEDURE api.touch(s api.status) LANGUAGE plpgsql AS $$ BEGIN PERFORM 1; END $$;\n",
        ),
        (
            "objects/api/totals_s.sql",
            "CREATE INDEX totals_s ON api.totals (s);\n",
        ),
        ("objects/api/verify.sql", "SELECT 1 FROM api.totals;\n"),
    ]);
    let objects = dir.load().expect("load");
    let kind = |n: &str| objects.get("api", n).expect(n).kind;
    assert_eq!(kind("status"), ObjectKind::Type);
    assert_eq!(kind("totals"), ObjectKind::MaterializedView);
    assert_eq!(kind("label"), ObjectKind::Function);
    assert_eq!(kind("touch"), ObjectKind::Procedure);
    assert_eq!(kind("totals_s"), ObjectKind::Index);
    assert!(
        objects.get("api", "verify").is_none(),
        "verify.sql is not an object"
    );
    assert!(objects.verify.contains_key("api"));
    let position = |n: &str| {
        objects
            .ordered
            .iter()
            .position(|o| o.name.name == n)
            .expect(n)
    };
    assert!(
        position("base") < position("label"),
        "a SQL function body's reads come first"
    );
    assert!(position("label") < position("totals"));
    assert!(
        position("status") < position("totals"),
        "unqualified cast to a type"
    );
    assert!(position("status") < position("touch"), "parameter type");
    assert!(position("totals") < position("totals_s"));
    assert_eq!(
        objects
            .get("api", "totals")
            .expect("totals")
            .statements
            .len(),
        2
    );
    assert_eq!(
        objects
            .get("api", "label")
            .expect("label")
            .language
            .as_deref(),
        Some("sql")
    );
}

#[test]
fn plpgsql_bodies_bind_late_and_add_no_dependency() {
    let dir = Dir::new(&[
        (
            "objects/api/a.sql",
            "CREATE FUNCTION api.a() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN api.b(); END $$;\n",
        ),
        (
            "objects/api/b.sql",
            "CREATE FUNCTION api.b() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN api.a(); END $$;\n",
        ),
    ]);
    let objects = dir.load().expect("mutual recursion in plpgsql is fine");
    assert_eq!(names(&objects), ["api.a", "api.b"]);
}

#[test]
fn cross_schema_references_between_blue_green_schemas_are_ordered() {
    let dir = Dir::new(&[
        (
            "objects/api/v.sql",
            "CREATE VIEW api.v AS SELECT * FROM report.r;\n",
        ),
        (
            "objects/report/r.sql",
            "CREATE VIEW report.r AS SELECT 1 AS x;\n",
        ),
    ]);
    assert_eq!(names(&dir.load().expect("load")), ["report.r", "api.v"]);
}

#[test]
fn a_cycle_is_an_error_naming_it_with_file_and_line() {
    let dir = Dir::new(&[
        (
            "objects/api/a.sql",
            "\n\nCREATE VIEW api.a AS SELECT * FROM api.b;\n",
        ),
        (
            "objects/api/b.sql",
            "CREATE VIEW api.b AS SELECT * FROM api.a;\n",
        ),
    ]);
    let (file, line, message) = invalid(dir.load());
    assert_eq!((file.as_str(), line), ("a.sql", 3));
    assert_eq!(message, "dependency cycle: api.a -> api.b -> api.a");
}

#[test]
fn a_missing_object_in_a_blue_green_schema_is_an_error_at_its_line() {
    let dir = Dir::new(&[(
        "objects/api/a.sql",
        "CREATE VIEW api.a AS\n  SELECT * FROM api.nope;\n",
    )]);
    let (file, line, message) = invalid(dir.load());
    assert_eq!((file.as_str(), line), ("a.sql", 1));
    assert_eq!(
        message,
        "view api.a references api.nope, which objects/api/ does not define"
    );
}

#[test]
fn references_to_stable_schemas_are_not_objects() {
    let dir = Dir::new(&[(
        "objects/api/a.sql",
        "CREATE VIEW api.a AS SELECT * FROM shop.orders JOIN public.t USING (id);\n",
    )]);
    let objects = dir.load().expect("load");
    assert!(objects.ordered[0].depends_on.is_empty());
}

#[test]
fn an_object_targeting_a_stable_schema_is_rejected() {
    let dir = Dir::new(&[("objects/api/a.sql", "CREATE VIEW shop.a AS SELECT 1;\n")]);
    let (file, line, message) = invalid(dir.load());
    assert_eq!((file.as_str(), line), ("a.sql", 1));
    assert!(
        message.contains("targets schema \"shop\" which is stable"),
        "{message}"
    );
}

#[test]
fn an_objects_dir_for_a_stable_schema_is_rejected() {
    let dir = Dir::new(&[("objects/shop/a.sql", "CREATE VIEW shop.a AS SELECT 1;\n")]);
    match dir.load() {
        Err(Error::File { message, .. }) => assert!(message.contains("is stable"), "{message}"),
        other => panic!("expected File error, got {other:?}"),
    }
}

#[test]
fn tables_and_other_statements_are_rejected_with_their_line() {
    let dir = Dir::new(&[("objects/api/t.sql", "-- x\nCREATE TABLE api.t (id int);\n")]);
    let (_, line, message) = invalid(dir.load());
    assert_eq!(line, 2);
    assert!(message.starts_with("tables hold data"), "{message}");

    let dir = Dir::new(&[(
        "objects/api/v.sql",
        "CREATE VIEW api.v AS SELECT 1;\nDROP TABLE shop.x;\n",
    )]);
    let (_, line, message) = invalid(dir.load());
    assert_eq!(line, 2);
    assert!(message.contains("only COMMENT, GRANT"), "{message}");
}

#[test]
fn syntax_errors_name_the_statement_line() {
    let dir = Dir::new(&[(
        "objects/api/v.sql",
        "CREATE VIEW api.v AS SELECT 1;\n\nCREATE VIEW api.w AS SELEC 1;\n",
    )]);
    let (_, line, message) = invalid(dir.load());
    assert_eq!(line, 3);
    assert!(message.starts_with("not valid SQL"), "{message}");
}

#[test]
fn two_files_defining_one_object_are_rejected() {
    let dir = Dir::new(&[
        ("objects/api/a.sql", "CREATE VIEW api.v AS SELECT 1;\n"),
        ("objects/api/b.sql", "CREATE VIEW api.v AS SELECT 2;\n"),
    ]);
    let (_, _, message) = invalid(dir.load());
    assert!(message.contains("more than one file"), "{message}");
}

#[test]
fn qualified_references_skip_strings_and_comments_and_fold_case() {
    let sql = "SELECT Api.x, \"Api\".y, 'api.z' -- api.c\n FROM api . w";
    let refs: Vec<(String, String)> = qualified_references(sql)
        .into_iter()
        .map(|r| (r.schema, r.name))
        .collect();
    assert_eq!(
        refs,
        [
            ("api".into(), "x".into()),
            ("Api".into(), "y".into()),
            ("api".into(), "w".into())
        ]
    );
}

#[test]
fn schema_hash_changes_with_any_object() {
    let a = Dir::new(&[("objects/api/v.sql", "CREATE VIEW api.v AS SELECT 1;\n")]);
    let b = Dir::new(&[("objects/api/v.sql", "CREATE VIEW api.v AS SELECT 2;\n")]);
    let (a, b) = (a.load().expect("a"), b.load().expect("b"));
    assert_ne!(a.schema_hash("api"), b.schema_hash("api"));
    assert_eq!(a.schema_hash("report"), b.schema_hash("report"));
}
