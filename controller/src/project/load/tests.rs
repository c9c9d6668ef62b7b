//! `Project::load`: manifest or `sqitch.conf`, where the plan and scripts live, and the
//! checks that need the disk.

use std::path::Path;

use crate::project::{Engine, Error, Project, SchemaMode, ScriptKind};

const PLAN: &str = "%project=shop\n\n\
    users 2024-01-01T00:00:00Z Ann <ann@example.com>\n\
    @v1 2024-01-02T00:00:00Z Ann <ann@example.com>\n\
    users [users@v1] 2024-01-03T00:00:00Z Ann <ann@example.com>\n";

/// A temporary project directory.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        let dir = Dir(tempfile::tempdir().expect("tempdir"));
        for (path, text) in files {
            dir.write(path, text);
        }
        dir
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.0.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn root(&self) -> &Path {
        self.0.path()
    }

    fn load(&self) -> Result<Project, Error> {
        Project::load(self.root())
    }

    /// Deploy, revert and verify scripts for `files` (relative to each script dir) under `top`.
    fn scripts(&self, top: &str, files: &[&str]) {
        for kind in ["deploy", "revert", "verify"] {
            for file in files {
                self.write(&format!("{top}{kind}/{file}"), "select 1;\n");
            }
        }
    }
}

fn sqitch_project() -> Dir {
    let dir = Dir::new(&[
        ("sqitch.conf", "[core]\n\tengine = pg\n"),
        ("sqitch.plan", PLAN),
    ]);
    dir.scripts("", &["users.sql", "users@v1.sql"]);
    dir
}

#[test]
fn a_plain_sqitch_project_gets_a_synthesised_manifest() {
    let dir = sqitch_project();
    dir.write(
        "sqitch.conf",
        "[core]\n\tengine = pg\n[deploy]\n\tverify = true\n[deploy \"variables\"]\n\trole = app\n",
    );
    let project = dir.load().expect("valid");
    assert_eq!(project.name(), "shop");
    assert_eq!(project.manifest.project, "shop");
    assert_eq!(project.manifest.engine, Engine::Postgres);
    assert_eq!(project.manifest.plan, "sqitch.plan");
    assert!(project.manifest.schemas.is_empty());
    assert_eq!(project.manifest.variables["role"], "app");
    assert_eq!(project.variables["role"], "app");
    assert!(project.default_verify);
    assert_eq!(project.deploy_dir, dir.root().join("deploy"));
    assert_eq!(project.extension, "sql");
    assert!(project.warnings.is_empty(), "{:?}", project.warnings);
    let sqitch = project.sqitch.as_ref().expect("sqitch.conf settings");
    assert_eq!(sqitch.engine.as_deref(), Some("pg"));
}

#[test]
fn reworked_changes_use_their_tag_scripts() {
    let project = sqitch_project().load().expect("valid");
    let [first, last] = &project.plan.changes[..] else {
        panic!("two changes")
    };
    assert_eq!(
        project.script_path(first, ScriptKind::Deploy),
        project.root.join("deploy/users@v1.sql")
    );
    assert_eq!(
        project.script_path(first, ScriptKind::Revert),
        project.root.join("revert/users@v1.sql")
    );
    assert_eq!(
        project.script_path(last, ScriptKind::Verify),
        project.root.join("verify/users.sql")
    );
}

#[test]
fn a_manifest_names_the_plan_and_wins_on_variables() {
    let dir = sqitch_project();
    dir.write("db/other.plan", PLAN);
    dir.write(
        "sqitch.conf",
        "[core]\n\tengine = pg\n[core \"variables\"]\n\trole = conf\n\tschema = app\n",
    );
    dir.write(
        "switchyard.yaml",
        "project: shop\nengine: materialize\nplan: db/other.plan\nschemas:\n  shop: stable\n  shop_api: blue-green\n\
         clusters:\n  serving: {size: 50cc}\nvariables:\n  role: manifest\n  port: 5432\n  flag: true\n",
    );
    let project = dir.load().expect("valid");
    assert_eq!(project.plan.path, dir.root().join("db/other.plan"));
    assert_eq!(project.manifest.engine, Engine::Materialize);
    assert_eq!(project.manifest.schemas["shop_api"], SchemaMode::BlueGreen);
    assert_eq!(project.manifest.clusters["serving"].replication_factor, 1);
    assert_eq!(project.variables["role"], "manifest");
    assert_eq!(project.variables["schema"], "app");
    assert_eq!(project.variables["port"], "5432");
    assert_eq!(project.variables["flag"], "true");
}

#[test]
fn sqitch_conf_moves_the_plan_and_scripts() {
    let dir = Dir::new(&[
        (
            "sqitch.conf",
            "[core]\n\tengine = pg\n\ttop_dir = db\n\textension = ddl\n",
        ),
        ("db/sqitch.plan", PLAN),
        ("switchyard.yaml", "project: shop\n"),
    ]);
    dir.scripts("db/", &["users.ddl", "users@v1.ddl"]);
    let project = dir.load().expect("valid");
    assert_eq!(
        project.manifest.plan, "db/sqitch.plan",
        "no plan: in the manifest, so sqitch.conf decides"
    );
    assert_eq!(project.deploy_dir, dir.root().join("db/deploy"));
    assert_eq!(project.plan.changes[0].script_file, "users@v1.ddl");
    assert_eq!(project.extension, "ddl");
}

#[test]
fn missing_revert_and_verify_scripts_are_warnings() {
    let dir = Dir::new(&[
        ("sqitch.conf", "[core]\n\tengine = pg\n"),
        ("sqitch.plan", PLAN),
    ]);
    dir.write("deploy/users.sql", "");
    dir.write("deploy/users@v1.sql", "");
    dir.write("revert/users.sql", "");
    let project = dir.load().expect("valid");
    let warnings: Vec<String> = project
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.line, w.message))
        .collect();
    assert_eq!(
        warnings,
        [
            "3: revert script revert/users@v1.sql for change \"users\" does not exist",
            "3: verify script verify/users@v1.sql for change \"users\" does not exist",
            "5: verify script verify/users.sql for change \"users\" does not exist",
        ]
    );
}

#[test]
fn a_missing_deploy_script_is_an_error_at_the_plan_line() {
    let dir = sqitch_project();
    std::fs::remove_file(dir.root().join("deploy/users.sql")).expect("rm");
    let err = dir.load().expect_err("missing deploy script");
    assert_eq!(err.path(), dir.root().join("sqitch.plan"));
    assert_eq!(err.line(), Some(5));
    assert!(
        err.to_string()
            .ends_with("deploy script deploy/users.sql for change \"users\" does not exist"),
        "{err}"
    );
}

#[test]
fn manifest_project_must_match_the_plan() {
    let dir = sqitch_project();
    dir.write(
        "switchyard.yaml",
        "# shop\n\nengine: postgres\nproject: store\n",
    );
    let err = dir.load().expect_err("mismatch");
    assert_eq!(err.path(), dir.root().join("switchyard.yaml"));
    assert_eq!(err.line(), Some(4));
    assert!(
        err.to_string()
            .contains("project \"store\" does not match %project \"shop\""),
        "{err}"
    );
}

#[test]
fn manifest_mistakes_name_the_line() {
    struct Case {
        name: &'static str,
        yaml: &'static str,
        want_line: usize,
        /// Part of the message.
        want: &'static str,
    }
    let cases = [
        Case {
            name: "unknown key",
            yaml: "project: shop\nengines: postgres\n",
            want_line: 2,
            want: "engines",
        },
        Case {
            name: "bad engine",
            yaml: "project: shop\nengine: mysql\n",
            want_line: 2,
            want: "mysql",
        },
        Case {
            name: "bad schema mode",
            yaml: "project: shop\nschemas:\n  shop: blue\n",
            want_line: 3,
            want: "blue",
        },
        Case {
            name: "not yaml",
            yaml: "project: shop\n  - nope: [\n",
            want_line: 2,
            want: "",
        },
    ];
    for case in cases {
        let dir = sqitch_project();
        dir.write("switchyard.yaml", case.yaml);
        let err = dir.load().expect_err(case.name);
        assert_eq!(
            err.path(),
            dir.root().join("switchyard.yaml"),
            "{}",
            case.name
        );
        assert_eq!(err.line(), Some(case.want_line), "{}: {err}", case.name);
        assert!(err.to_string().contains(case.want), "{}: {err}", case.name);
    }
}

#[test]
fn missing_project_key_is_a_file_error() {
    let dir = sqitch_project();
    dir.write("switchyard.yaml", "engine: postgres\n");
    let err = dir.load().expect_err("no project");
    assert_eq!(err.path(), dir.root().join("switchyard.yaml"));
    assert!(err.to_string().contains("project"), "{err}");
}

#[test]
fn an_empty_directory_is_not_a_project() {
    let dir = Dir::new(&[]);
    let err = dir.load().expect_err("empty");
    assert!(
        matches!(&err, Error::File { path, message } if path == dir.root() && message.contains("switchyard.yaml")),
        "{err}"
    );
}

#[test]
fn a_missing_plan_is_blamed_on_the_line_that_names_it() {
    struct Case {
        name: &'static str,
        files: &'static [(&'static str, &'static str)],
        /// The file and line blamed, or just the file when nothing named the plan.
        want: (&'static str, Option<usize>),
        want_message: &'static str,
    }
    let cases = [
        Case {
            name: "sqitch.conf plan_file",
            files: &[(
                "sqitch.conf",
                "[core]\n\tengine = pg\n\tplan_file = nope.plan\n",
            )],
            want: ("sqitch.conf", Some(3)),
            want_message: "plan file nope.plan not found",
        },
        Case {
            name: "sqitch.conf top_dir",
            files: &[("sqitch.conf", "[core]\n\ttop_dir = db\n\tengine = pg\n")],
            want: ("sqitch.conf", Some(2)),
            want_message: "plan file db/sqitch.plan not found",
        },
        Case {
            name: "manifest plan:",
            files: &[("switchyard.yaml", "project: shop\nplan: nope.plan\n")],
            want: ("switchyard.yaml", Some(2)),
            want_message: "plan file nope.plan not found",
        },
        Case {
            name: "the default plan",
            files: &[("sqitch.conf", "[core]\n\tengine = pg\n")],
            want: ("sqitch.plan", None),
            want_message: "plan file sqitch.plan not found",
        },
    ];
    for case in cases {
        let dir = Dir::new(case.files);
        let err = dir.load().expect_err(case.name);
        assert_eq!(err.path(), dir.root().join(case.want.0), "{}", case.name);
        assert_eq!(err.line(), case.want.1, "{}: {err}", case.name);
        assert!(
            err.to_string().ends_with(case.want_message),
            "{}: {err}",
            case.name
        );
    }
}

#[test]
fn other_sqitch_engines_are_refused() {
    let dir = sqitch_project();
    dir.write("sqitch.conf", "[core]\n\n\tengine = sqlite\n");
    let err = dir.load().expect_err("sqlite");
    assert_eq!(err.path(), dir.root().join("sqitch.conf"));
    assert_eq!(err.line(), Some(3));
}

#[test]
fn invalid_utf8_is_reported_at_its_line() {
    let dir = sqitch_project();
    std::fs::write(
        dir.root().join("sqitch.plan"),
        b"%project=shop\n\nusers 2024-01-01T00:00:00Z \xff <a@b>\n",
    )
    .expect("write");
    let err = dir.load().expect_err("bad utf-8");
    assert_eq!(
        (err.line(), err.path().to_owned()),
        (Some(3), dir.root().join("sqitch.plan"))
    );
}
