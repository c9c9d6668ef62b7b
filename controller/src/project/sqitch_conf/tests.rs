//! `sqitch.conf`: git-config syntax as `Config::GitLike` reads it, and Sqitch's
//! target → engine → core lookup. Quirky cases were checked with `sqitch config --get`.

use std::path::{Path, PathBuf};

use crate::project::{Error, SqitchConf};

fn conf(text: &str) -> SqitchConf {
    SqitchConf::parse(Path::new("sqitch.conf"), text)
        .unwrap_or_else(|e| panic!("valid config: {e}"))
}

#[test]
fn values_keep_sqitchs_quirks() {
    let conf = conf(
        "[core]\n\tengine = pg   \n\ttop_dir = db   # c\n  plan_file = \"a\\\"b\" ; x\n\
         [deploy \"variables\"]\n  MyVar = 1\n  other\n[Core \"Variables\"]\n  X = y\n[deploy]\n  verify = yes\n",
    );
    // Trailing blanks become one space; a comment eats the blanks before it.
    assert_eq!(conf.get("core.engine"), Some("pg "));
    assert_eq!(conf.get("core.top_dir"), Some("db"));
    // Config::GitLike leaves `\"` inside quotes as written.
    assert_eq!(conf.get("core.plan_file"), Some("a\\\"b"));
    // Section and key names ignore case, subsections do not.
    assert_eq!(conf.get("CORE.Engine"), Some("pg "));
    assert_eq!(conf.get("core.variables.x"), None);
    assert_eq!(conf.get("core.Variables.X"), Some("y"));
    assert_eq!(conf.get("deploy.variables.other"), None);
    assert!(conf.is_set("deploy.variables.other"));

    let settings = conf.settings().expect("settings");
    assert_eq!(
        settings.engine.as_deref(),
        Some("pg"),
        "sqitch trims the engine"
    );
    assert_eq!(settings.top_dir, Some(PathBuf::from("db")));
    assert_eq!(settings.deploy_verify, Some(true));
    let vars: Vec<(&str, &str)> = settings
        .variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        vars,
        [("MyVar", "1"), ("other", "")],
        "names keep their case"
    );
}

#[test]
fn escapes_quotes_and_continuations() {
    let conf = conf(
        "[a]\n\
         quoted = \"  two  spaces \\t tab # not a comment\"\n\
         escaped = x\\\\y\\ty\\nz\n\
         joined = one \\\n  two\n\
         inline = a\"b c\"d ; comment\n\
         [b] same = line\n",
    );
    assert_eq!(
        conf.get("a.quoted"),
        Some("  two  spaces \t tab # not a comment")
    );
    assert_eq!(conf.get("a.escaped"), Some("x\\y\ty\nz"));
    assert_eq!(
        conf.get("a.joined"),
        Some("one  two"),
        "blanks on both sides of the continuation count"
    );
    assert_eq!(conf.get("a.inline"), Some("ab cd"));
    assert_eq!(conf.get("b.same"), Some("line"));
}

#[test]
fn old_style_subsections_and_last_value_wins() {
    let conf = conf("[engine.PG]\n top_dir = a\n[engine \"pg\"]\n top_dir = b\n");
    // `[engine.PG]` is lower-cased whole, so both set `engine.pg.top_dir`.
    assert_eq!(conf.get("engine.pg.top_dir"), Some("b"));
    assert_eq!(conf.line_of("engine.pg.top_dir"), Some(4));
}

#[test]
fn settings_come_from_target_then_engine_then_core() {
    let conf = conf(
        "[core]\n engine = pg\n plan_file = core.plan\n top_dir = core\n extension = ddl\n\
         [engine \"pg\"]\n plan_file = pg.plan\n\
         [core \"variables\"]\n a = core\n b = core\n c = core\n\
         [deploy \"variables\"]\n b = deploy\n c = deploy\n\
         [engine \"pg\"]\n deploy_dir = pgdeploy\n\
         [engine \"pg\"]\n reworked_dir = old\n\
         [engine \"pg\"]\n",
    );
    let settings = conf.settings().expect("settings");
    assert_eq!(settings.plan_file, Some(PathBuf::from("pg.plan")));
    assert_eq!(settings.top_dir, Some(PathBuf::from("core")));
    assert_eq!(settings.deploy_dir, Some(PathBuf::from("pgdeploy")));
    assert_eq!(settings.reworked_dir, Some(PathBuf::from("old")));
    assert_eq!(settings.extension.as_deref(), Some("ddl"));
    assert_eq!(settings.deploy_verify, None);
    assert_eq!(settings.variables["a"], "core");
    assert_eq!(settings.variables["b"], "deploy");
}

#[test]
fn engine_variables_override_deploy_variables() {
    let deploy_only =
        conf("[core]\nengine=pg\n[deploy \"variables\"]\nv=deploy\n[engine \"pg.variables\"]\n");
    assert_eq!(
        deploy_only.settings().expect("settings").variables["v"],
        "deploy"
    );
    let both = conf(
        "[core]\nengine=pg\n[deploy \"variables\"]\nv=deploy\n[engine \"pg\"]\n[engine.pg.variables]\nv=engine\n",
    );
    assert_eq!(both.settings().expect("settings").variables["v"], "engine");
}

#[test]
fn a_named_core_target_supplies_engine_and_settings() {
    let conf = conf(
        "[core]\n engine = sqlite\n target = prod\n top_dir = core\n\
         [target \"prod\"]\n uri = db:postgres://db.example.com/app\n top_dir = prod\n",
    );
    let settings = conf.settings().expect("settings");
    assert_eq!(
        settings.engine.as_deref(),
        Some("pg"),
        "the target's URI wins over core.engine"
    );
    assert_eq!(settings.top_dir, Some(PathBuf::from("prod")));
}

#[test]
fn empty_and_zero_values_count_as_unset_like_perl() {
    let conf = conf(
        "[core]\n engine = pg\n top_dir =\n[engine \"pg\"]\n plan_file = 0\n[core]\n plan_file = p.plan\n",
    );
    let settings = conf.settings().expect("settings");
    assert_eq!(settings.top_dir, None);
    assert_eq!(settings.plan_file, Some(PathBuf::from("p.plan")));
}

#[test]
fn booleans_follow_git() {
    for (written, want) in [
        ("yes", true),
        ("On", true),
        ("1", true),
        ("-01", true),
        ("false", false),
        ("0", false),
        ("", false),
    ] {
        let parsed = conf(&format!("[deploy]\n verify = {written}\n"));
        assert_eq!(
            parsed.get_bool("deploy.verify").expect("bool"),
            Some(want),
            "{written:?}"
        );
    }
    assert_eq!(
        conf("[deploy]\n verify\n")
            .get_bool("deploy.verify")
            .expect("bool"),
        Some(true)
    );
    let err = conf("[deploy]\n\n verify = maybe\n")
        .settings()
        .expect_err("not a bool");
    assert_eq!(
        (err.line(), err.to_string()),
        (
            Some(3),
            "sqitch.conf:3: deploy.verify must be a boolean, not \"maybe\"".into()
        )
    );
}

#[test]
fn syntax_errors_name_the_line() {
    struct Case {
        name: &'static str,
        text: &'static str,
        want_line: usize,
    }
    let cases = [
        Case {
            name: "setting before any section",
            text: "# hi\nengine = pg\n",
            want_line: 2,
        },
        Case {
            name: "unterminated quote",
            text: "[core]\n\n x = \"open\n",
            want_line: 3,
        },
        Case {
            name: "bad escape",
            text: "[core]\n x = a\\qb\n",
            want_line: 2,
        },
        Case {
            name: "unclosed section",
            text: "[core]\n[engine \"pg\"\n",
            want_line: 2,
        },
        Case {
            name: "bad subsection escape",
            text: "[a \"b\\c\"]\n",
            want_line: 1,
        },
        Case {
            name: "empty key",
            text: "[a]\n = x\n",
            want_line: 2,
        },
    ];
    for case in cases {
        let err = SqitchConf::parse(Path::new("sqitch.conf"), case.text).expect_err(case.name);
        assert!(matches!(err, Error::Invalid { .. }), "{}: {err}", case.name);
        assert_eq!(err.line(), Some(case.want_line), "{}: {err}", case.name);
        assert_eq!(err.path(), Path::new("sqitch.conf"));
    }
}

#[test]
fn windows_line_ends_do_not_leak_into_values() {
    let conf = conf("[core]\r\n\tengine = pg\r\n\ttop_dir = db\r\n");
    assert_eq!(conf.get("core.top_dir"), Some("db"));
}
