//! Development workflow files (issue #7): which files are workflow files, what they ask
//! for, and the errors for the ones that are wrong, each naming the file.

use std::path::Path;

use crate::project::{Directive, Error, FileKind, Project, ScriptKind};

/// `users`, then `schema/orders` (a name with a directory), `@v1`, and `users` reworked.
const PLAN: &str = "%project=shop\n\n\
    users 2024-01-01T00:00:00Z Ann <ann@example.com>\n\
    schema/orders 2024-01-01T00:01:00Z Ann <ann@example.com>\n\
    @v1 2024-01-02T00:00:00Z Ann <ann@example.com>\n\
    users [users@v1] 2024-01-03T00:00:00Z Ann <ann@example.com>\n\
    myscript 2024-01-04T00:00:00Z Ann <ann@example.com>\n";

/// A project with every change's scripts, plus `extra` files.
fn project(extra: &[(&str, &str)]) -> (tempfile::TempDir, Result<Project, Error>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("sqitch.conf", "[core]\n\tengine = pg\n");
    write("sqitch.plan", PLAN);
    for kind in ["deploy", "revert", "verify"] {
        for file in [
            "users.sql",
            "users@v1.sql",
            "schema/orders.sql",
            "myscript.sql",
        ] {
            write(&format!("{kind}/{file}"), "select 1;\n");
        }
    }
    for (path, text) in extra {
        write(path, text);
    }
    let loaded = Project::load(dir.path());
    (dir, loaded)
}

fn valid(extra: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
    let (dir, loaded) = project(extra);
    let project = loaded.unwrap_or_else(|e| panic!("project should load: {e}"));
    (dir, project)
}

#[test]
fn a_project_without_workflow_files_has_none() {
    let (_dir, project) = valid(&[("deploy/lib/helpers.sql", "select 1;\n")]);
    assert!(project.workflow.is_empty());
}

#[test]
fn an_ignore_file_abandons_the_change_with_its_content_as_the_reason() {
    let (_dir, project) = valid(&[("deploy/users-ignore.sql", "\n-- wrong types\n\n")]);
    match project.workflow.directive("users") {
        Some(Directive::Ignore { ignore }) => {
            assert_eq!(ignore.relative, "deploy/users-ignore.sql");
            assert_eq!(ignore.reason, "-- wrong types");
            assert_eq!(ignore.kind, FileKind::Ignore);
            assert_eq!(ignore.sha1.len(), 40);
        }
        other => panic!("want an ignore, got {other:?}"),
    }
    assert!(project.workflow.directive("myscript").is_none());
}

#[test]
fn an_unignore_beside_the_ignore_takes_it_back() {
    let (_dir, project) = valid(&[
        ("deploy/users-ignore.sql", "reason"),
        ("deploy/users-unignore.sql", ""),
    ]);
    let directive = project.workflow.directive("users").expect("directive");
    assert!(
        matches!(directive, Directive::Unignore { .. }),
        "{directive:?}"
    );
    assert_eq!(directive.file().relative, "deploy/users-unignore.sql");
}

#[test]
fn a_cleanup_file_ignores_and_names_its_script() {
    let (_dir, project) = valid(&[("deploy/users-cleanup.sql", "drop table users;\n")]);
    let directive = project.workflow.directive("users").expect("directive");
    match directive {
        Directive::Cleanup { cleanup, ignore } => {
            assert_eq!(cleanup.path, project.deploy_dir.join("users-cleanup.sql"));
            assert!(ignore.is_none());
        }
        other => panic!("want a cleanup, got {other:?}"),
    }
}

#[test]
fn a_replace_file_may_bring_its_own_cleanup() {
    let (_dir, project) = valid(&[
        ("deploy/users-replace.sql", "create table users (id int);\n"),
        ("deploy/users-cleanup.sql", "drop table users;\n"),
    ]);
    match project.workflow.directive("users") {
        Some(Directive::Replace { replace, cleanup }) => {
            assert_eq!(replace.relative, "deploy/users-replace.sql");
            assert_eq!(
                cleanup.map(|c| c.relative.as_str()),
                Some("deploy/users-cleanup.sql")
            );
        }
        other => panic!("want a replace, got {other:?}"),
    }
}

#[test]
fn a_rollback_file_is_the_revert_script_and_no_rework() {
    let (dir, loaded) = project(&[("deploy/myscript-rollback.sql", "drop table x;\n")]);
    // The revert directory has revert/myscript.sql too: two revert scripts.
    let error = loaded.expect_err("two revert scripts");
    assert_eq!(
        error.path(),
        dir.path().join("deploy/myscript-rollback.sql")
    );
    assert!(error.to_string().contains("two revert scripts"), "{error}");

    std::fs::remove_file(dir.path().join("revert/myscript.sql")).expect("rm");
    let project = Project::load(dir.path()).expect("valid");
    let change = project
        .plan
        .changes
        .iter()
        .find(|c| c.name == "myscript")
        .expect("change");
    assert_eq!(
        project.script_path(change, ScriptKind::Revert),
        dir.path().join("deploy/myscript-rollback.sql")
    );
    assert!(
        project.warnings.is_empty(),
        "no missing revert script: {:?}",
        project.warnings
    );
    assert!(project.workflow.directive("myscript").is_none());
}

#[test]
fn change_scripts_and_helpers_are_never_workflow_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = "%project=shop\n\n\
        users 2024-01-01T00:00:00Z Ann <ann@example.com>\n\
        users-cleanup 2024-01-01T00:01:00Z Ann <ann@example.com>\n";
    std::fs::write(dir.path().join("sqitch.conf"), "[core]\n\tengine = pg\n").expect("w");
    std::fs::write(dir.path().join("sqitch.plan"), plan).expect("w");
    std::fs::create_dir_all(dir.path().join("deploy/lib")).expect("mkdir");
    for file in [
        "users.sql",
        "users-cleanup.sql",
        "lib/users-helpers.sql",
        "notes.txt",
    ] {
        std::fs::write(dir.path().join("deploy").join(file), "select 1;\n").expect("w");
    }
    let project = Project::load(dir.path()).expect("valid");
    assert!(project.workflow.is_empty(), "{:?}", project.workflow);
}

#[test]
fn workflow_files_of_a_change_in_a_directory_sit_beside_its_script() {
    let (_dir, project) = valid(&[("deploy/schema/orders-ignore.sql", "")]);
    assert!(matches!(
        project.workflow.directive("schema/orders"),
        Some(Directive::Ignore { .. })
    ));
}

/// A wrong workflow file and the error it must give.
struct Case {
    name: &'static str,
    /// Files added to the valid project.
    files: &'static [(&'static str, &'static str)],
    /// The file the error names, relative to the project.
    want_file: &'static str,
    /// A substring of the message.
    want_message: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "two suffixes",
        files: &[("deploy/users-rollback-replace.sql", "")],
        want_file: "deploy/users-rollback-replace.sql",
        want_message: "takes exactly one suffix, this one has two (-rollback and -replace); name it deploy/users-rollback.sql or deploy/users-replace.sql",
    },
    Case {
        name: "two suffixes on a change in a directory",
        files: &[("deploy/schema/orders-ignore-cleanup.sql", "")],
        want_file: "deploy/schema/orders-ignore-cleanup.sql",
        want_message: "exactly one suffix",
    },
    Case {
        name: "base name in another case",
        files: &[("deploy/MYSCRIPT-ignore.sql", "")],
        want_file: "deploy/MYSCRIPT-ignore.sql",
        want_message: "no change is named \"MYSCRIPT\"; expected deploy/myscript-ignore.sql for change \"myscript\"",
    },
    Case {
        name: "suffix in another case",
        files: &[("deploy/users-Replace.sql", "")],
        want_file: "deploy/users-Replace.sql",
        want_message: "case-sensitive: expected deploy/users-replace.sql",
    },
    Case {
        name: "extension in another case",
        files: &[("deploy/users-ignore.SQL", "")],
        want_file: "deploy/users-ignore.SQL",
        want_message: "expected deploy/users-ignore.sql",
    },
    Case {
        name: "orphan",
        files: &[("deploy/payments-cleanup.sql", "")],
        want_file: "deploy/payments-cleanup.sql",
        want_message: "cleanup file for change \"payments\", which is not in the plan",
    },
    Case {
        name: "unignore without ignore",
        files: &[("deploy/users-unignore.sql", "")],
        want_file: "deploy/users-unignore.sql",
        want_message: "unignore without an ignore: change \"users\" has no deploy/users-ignore.sql",
    },
    Case {
        name: "ignored and replaced",
        files: &[
            ("deploy/users-ignore.sql", ""),
            ("deploy/users-replace.sql", ""),
        ],
        want_file: "deploy/users-replace.sql",
        want_message: "both ignored (deploy/users-ignore.sql) and replaced",
    },
    Case {
        name: "cleanup taken back by an unignore",
        files: &[
            ("deploy/users-ignore.sql", ""),
            ("deploy/users-cleanup.sql", ""),
            ("deploy/users-unignore.sql", ""),
        ],
        want_file: "deploy/users-unignore.sql",
        want_message: "cleaned up (deploy/users-cleanup.sql)",
    },
    Case {
        name: "beside an earlier version's script",
        files: &[("deploy/users@v1-ignore.sql", "")],
        want_file: "deploy/users@v1-ignore.sql",
        want_message: "current version of change \"users\": expected deploy/users-ignore.sql",
    },
];

#[test]
fn wrong_workflow_files_are_refused_naming_the_file() {
    for case in CASES {
        let (dir, loaded) = project(case.files);
        let error = match loaded {
            Ok(_) => panic!("{}: should fail", case.name),
            Err(e) => e,
        };
        assert_eq!(
            error.path(),
            dir.path().join(case.want_file),
            "{}: {error}",
            case.name
        );
        assert!(
            error.to_string().contains(case.want_message),
            "{}: want {:?} in {error}",
            case.name,
            case.want_message
        );
        assert!(
            error.to_string().starts_with(&format!(
                "{}: ",
                Path::new(&dir.path().join(case.want_file)).display()
            )),
            "{}: the message leads with the file: {error}",
            case.name
        );
    }
}
