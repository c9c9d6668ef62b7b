//! Git sources through the controller (issue #6): the real `switchyard controller`, the
//! harness API server, a throwaway PostgreSQL and git servers started by each test. A
//! pushed change reaches the database; a force-push, a deleted branch, a moved tag and
//! wrong credentials are reported; the cache survives a restart and is shared by two
//! projects on one repository; malicious repositories are refused with a condition
//! naming the file.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;
use e2e::git::{GitDaemon, GitHttp, HttpConfig, Node, Repos, Work, commit_tree};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

/// A work tree holding the `shop` project (users, orders), pushed to main.
fn shop_repo(repos: &Repos, name: &str, path: &str) -> (Work, String) {
    let mut work = repos.create(name).unwrap();
    work.copy_dir(shop().path(), path).unwrap();
    let c = work.commit("shop").unwrap();
    work.push("main", false).unwrap();
    (work, c)
}

/// Adds a table change to the shop project in `work` at `path`.
fn add_table(work: &Work, path: &str, table: &str) {
    let p = |f: &str| {
        if path.is_empty() {
            f.to_string()
        } else {
            format!("{path}/{f}")
        }
    };
    let plan = std::fs::read_to_string(work.path().join(p("sqitch.plan"))).unwrap();
    work.write(
        &p("sqitch.plan"),
        format!("{plan}{table} 2026-02-01T00:00:00Z Test <t@example.com> # Add {table}\n"),
    )
    .unwrap();
    work.write(
        &p(&format!("deploy/{table}.sql")),
        format!("CREATE TABLE {table} (id int);\n"),
    )
    .unwrap();
    work.write(
        &p(&format!("revert/{table}.sql")),
        format!("DROP TABLE {table};\n"),
    )
    .unwrap();
}

fn status_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj["status"][key].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_change_reaches_the_database_and_force_pushes_and_deleted_branches_are_reported() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("db", &db);
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let (mut work, c1) = shop_repo(&repos, "shop", "db");
    env.apply(&git_project_yaml(
        "shop",
        &daemon.url("shop"),
        "branch: main",
        "1s",
        "      path: db\n",
    ));
    env.apply(&env_yaml("dev", "shop", "db", true, ""));
    let controller = env.controller("c", &[]);
    assert!(
        env.wait("environment/dev", "condition=Ready", MINUTE),
        "{}",
        controller.log()
    );
    let dp = env.get("databaseproject/shop");
    let want = format!("main@sha1:{c1}");
    assert_eq!(status_str(&dp, "revision"), want);
    assert_eq!(status_str(&dp, "lastAttemptedRevision"), want);
    assert!(status_str(&dp, "digest").starts_with("sha256:"), "{dp}");
    let dev = env.get("environment/dev");
    assert_eq!(
        status_str(&dev, "lastAppliedRevision"),
        want,
        "the exact revision deployed"
    );
    assert_eq!(dev["status"]["deployments"][0]["revision"], want.as_str());
    assert_eq!(
        e2e::postgres::public_tables(&db.url).await,
        ["orders", "users"]
    );
    let table = env.ok(&["get", "-n", &env.ns, "dbproj"]);
    assert!(table.contains(&want), "{table}");

    // A push: the next interval's look finds it and dev deploys it.
    add_table(&work, "db", "items");
    let c2 = work.commit("items").unwrap();
    work.push("main", false).unwrap();
    let want2 = format!("main@sha1:{c2}");
    eventually(MINUTE, "dev to deploy the pushed change", || {
        let dev = env.get("environment/dev");
        (status_str(&dev, "lastAppliedRevision") == want2).then_some(())
    });
    assert_eq!(
        e2e::postgres::public_tables(&db.url).await,
        ["items", "orders", "users"]
    );

    // A force-push that rewrites the change's history (same plan, a new commit): followed;
    // dev has nothing to deploy and says it is up to date with the new revision.
    work.reset_back().unwrap();
    add_table(&work, "db", "items");
    let c3 = work.commit("items, rewritten").unwrap();
    work.push("main", true).unwrap();
    let want3 = format!("main@sha1:{c3}");
    eventually(MINUTE, "the force-pushed revision", || {
        let dp = env.get("databaseproject/shop");
        (status_str(&dp, "revision") == want3).then_some(())
    });
    eventually(MINUTE, "dev on the force-pushed revision", || {
        let dev = env.get("environment/dev");
        let ready = condition(&dev, "Ready")?;
        (ready["status"] == "True" && ready["message"] == format!("up to date with {want3}"))
            .then_some(())
    });

    // The branch is deleted: a clear condition, and the last good revision stays.
    work.delete_branch("main").unwrap();
    eventually(MINUTE, "RefNotFound", || {
        let dp = env.get("databaseproject/shop");
        let ready = condition(&dp, "Ready")?;
        (ready["reason"] == "RefNotFound")
            .then(|| ready["message"].as_str().unwrap_or_default().to_string())
    });
    let dp = env.get("databaseproject/shop");
    let message = condition(&dp, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        message,
        format!("branch main not found in {}", daemon.url("shop"))
    );
    assert_eq!(
        status_str(&dp, "revision"),
        want3,
        "the last good revision is kept"
    );
    assert!(env.wait("environment/dev", "condition=Ready", Duration::from_secs(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_is_followed_and_reported_once() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("db", &db);
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let (mut work, c1) = shop_repo(&repos, "shop", "");
    work.tag("v1.0.0", true).unwrap();
    env.apply(&git_project_yaml(
        "shop",
        &daemon.url("shop"),
        "tag: v1.0.0",
        "1s",
        "",
    ));
    env.apply(&env_yaml("dev", "shop", "db", true, ""));
    let controller = env.controller("c", &[]);
    assert!(
        env.wait("environment/dev", "condition=Ready", MINUTE),
        "{}",
        controller.log()
    );
    assert_eq!(
        status_str(&env.get("databaseproject/shop"), "revision"),
        format!("v1.0.0@sha1:{c1}")
    );

    add_table(&work, "", "items");
    let c2 = work.commit("items").unwrap();
    work.tag("v1.0.0", true).unwrap();
    let moved = format!("v1.0.0@sha1:{c2}");
    eventually(MINUTE, "dev on the moved tag", || {
        (status_str(&env.get("environment/dev"), "lastAppliedRevision") == moved).then_some(())
    });
    let events: Vec<_> = env
        .events()
        .into_iter()
        .filter(|(r, _)| r == "TagMoved")
        .collect();
    assert_eq!(events.len(), 1, "one event per move: {events:?}");
    assert!(
        events[0]
            .1
            .contains(&format!("from sha1:{c1} to sha1:{c2}")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_give_a_clear_condition_and_no_secret_anywhere() {
    let env = Env::start();
    let repos = Repos::new().unwrap();
    let password = "Pw-git-c0ffee-never-print-me";
    let http = GitHttp::start(
        repos.root(),
        HttpConfig {
            tls: true,
            basic: Some(("bob".into(), password.into())),
            bearer: None,
        },
    )
    .unwrap();
    let (_work, c1) = shop_repo(&repos, "shop", "");
    let ca = std::fs::write(env.logs.path().join("ca.crt"), http.ca_pem());
    ca.unwrap();
    let secret = |name: &str, pass: &str| {
        let ca = format!(
            "--from-file=ca.crt={}",
            env.logs.path().join("ca.crt").display()
        );
        let pass = format!("--from-literal=password={pass}");
        let yaml = env.ok(&[
            "create",
            "secret",
            "generic",
            name,
            "-n",
            &env.ns,
            "--from-literal=username=bob",
            &pass,
            &ca,
            "--dry-run=client",
            "-o",
            "yaml",
        ]);
        env.apply(&yaml);
    };
    secret("good", password);
    secret("bad", "Wrong-pass-5e5e5e");
    let project = |name: &str, secret: &str| {
        git_project_yaml(
            name,
            &http.url("shop"),
            "branch: main",
            "1s",
            &format!("      secretRef:\n        name: {secret}\n"),
        )
    };
    env.apply(&project("good", "good"));
    env.apply(&project("bad", "bad"));
    let controller = env.controller("c", &[]);
    assert!(
        env.wait("databaseproject/good", "condition=Ready", MINUTE),
        "{}",
        controller.log()
    );
    assert_eq!(
        status_str(&env.get("databaseproject/good"), "revision"),
        format!("main@sha1:{c1}")
    );
    let ready = eventually(MINUTE, "AuthenticationFailed", || {
        let dp = env.get("databaseproject/bad");
        let ready = condition(&dp, "Ready")?.clone();
        (ready["reason"] == "AuthenticationFailed").then_some(ready)
    });
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("authentication to {} failed", http.url("shop"))),
        "{message}"
    );
    let visible = env.visible_state() + &controller.log();
    assert!(!visible.contains(password) && !visible.contains("Wrong-pass-5e5e5e"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_survives_a_restart_and_two_projects_share_one_repository() {
    let env = Env::start();
    let db_a = database().await;
    let db_b = database().await;
    env.db_secret("db-a", &db_a);
    env.db_secret("db-b", &db_b);
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let mut work = repos.create("mono").unwrap();
    work.copy_dir(shop().path(), "a").unwrap();
    work.copy_dir(shop().path(), "b").unwrap();
    add_table(&work, "b", "extra");
    let c1 = work.commit("two projects").unwrap();
    work.push("main", false).unwrap();
    for (name, path) in [("a", "a"), ("b", "b")] {
        env.apply(&git_project_yaml(
            name,
            &daemon.url("mono"),
            "branch: main",
            "2s",
            &format!("      path: {path}\n"),
        ));
        env.apply(&env_yaml(name, name, &format!("db-{name}"), true, ""));
    }
    let workdir = tempfile::tempdir().unwrap();
    let args = [
        "--workdir",
        workdir.path().to_str().unwrap(),
        "--concurrency",
        "4",
    ];
    let mut first = env.controller("c1", &args);
    for name in ["environment/a", "environment/b"] {
        assert!(
            env.wait(name, "condition=Ready", MINUTE),
            "{name}\n{}",
            first.log()
        );
    }
    assert_eq!(
        e2e::postgres::public_tables(&db_a.url).await,
        ["orders", "users"]
    );
    assert_eq!(
        e2e::postgres::public_tables(&db_b.url).await,
        ["extra", "orders", "users"]
    );
    let repos_cached: Vec<_> = std::fs::read_dir(workdir.path().join("git"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(
        repos_cached.len(),
        1,
        "one cache for one URL: {repos_cached:?}"
    );
    let fsck = e2e::git::git(
        &repos_cached[0].path().join("repo.git"),
        &["fsck", "--no-dangling"],
    );
    assert!(fsck.is_ok(), "{fsck:?}");
    first.kill();

    // Restart on the same cache: every look is a ref lookup, nothing is fetched again.
    let second = env.controller("c2", &args);
    eventually(
        MINUTE,
        "the restarted controller to look at the repository",
        || (second.metric("switchyard_git_ref_lookups") >= 2.0).then_some(()),
    );
    assert_eq!(
        second.metric("switchyard_git_fetches"),
        0.0,
        "{}",
        second.log()
    );
    let want = format!("main@sha1:{c1}");
    for name in ["a", "b"] {
        assert!(env.wait(&format!("environment/{name}"), "condition=Ready", MINUTE));
        assert_eq!(
            status_str(&env.get(&format!("databaseproject/{name}")), "revision"),
            want
        );
    }
}

/// One malicious repository per case; each project is Stalled with a condition naming
/// the file, and nothing from outside the cache appears in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malicious_repositories_are_refused_with_a_condition_naming_the_file() {
    let env = Env::start();
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let plan = || {
        (
            "sqitch.plan".to_string(),
            Node::Blob(b"%project=evil\n".to_vec()),
        )
    };
    let conf = || {
        (
            "sqitch.conf".to_string(),
            Node::Blob(b"[core]\n\tengine = pg\n".to_vec()),
        )
    };
    struct Case {
        name: &'static str,
        tree: Node,
        /// The reason on Ready and Stalled.
        want_reason: &'static str,
        /// Text the message must hold (the file, and what is wrong).
        want_message: &'static str,
    }
    let cases = vec![
        Case {
            name: "passwd",
            tree: Node::Tree(vec![
                conf(),
                plan(),
                (
                    "deploy".into(),
                    Node::Tree(vec![("users.sql".into(), Node::Link("/etc/passwd".into()))]),
                ),
            ]),
            want_reason: "UnsafePath",
            want_message: "deploy/users.sql: symlink to \"/etc/passwd\" points outside the project directory",
        },
        Case {
            name: "dotdot",
            tree: Node::Tree(vec![
                conf(),
                plan(),
                (
                    "deploy".into(),
                    Node::Tree(vec![(
                        "..".into(),
                        Node::Tree(vec![("evil.sql".into(), Node::Blob(b"select 1;".to_vec()))]),
                    )]),
                ),
            ]),
            want_reason: "UnsafePath",
            want_message: "deploy/..: path escapes the project directory",
        },
        Case {
            name: "big",
            tree: Node::Tree(vec![
                conf(),
                plan(),
                (
                    "deploy".into(),
                    Node::Tree(vec![("big.sql".into(), Node::Zeros(12 << 20))]),
                ),
            ]),
            want_reason: "SizeLimitExceeded",
            want_message: "deploy/big.sql: file is 12582912 bytes, over the limit of 10485760 bytes",
        },
        Case {
            // Refused while the pack streams in: the controller never holds 200 MiB.
            name: "huge",
            tree: Node::Tree(vec![
                conf(),
                plan(),
                (
                    "deploy".into(),
                    Node::Tree(vec![("huge.sql".into(), Node::Zeros(200 << 20))]),
                ),
            ]),
            want_reason: "SizeLimitExceeded",
            want_message: "a file of this revision is over 17825792 bytes; refused while fetching, before it was read",
        },
        Case {
            name: "many",
            tree: Node::Tree(vec![
                conf(),
                plan(),
                (
                    "deploy".into(),
                    Node::Many {
                        prefix: "c".into(),
                        count: 100_000,
                    },
                ),
            ]),
            want_reason: "SizeLimitExceeded",
            want_message: "the project has more than 50000 files",
        },
        Case {
            name: "dotgit",
            tree: Node::Tree(vec![
                conf(),
                plan(),
                (
                    ".git".into(),
                    Node::Tree(vec![(
                        "config".into(),
                        Node::Blob(b"[core]\n\tfsmonitor = touch /tmp/pwned\n".to_vec()),
                    )]),
                ),
            ]),
            want_reason: "UnsafePath",
            want_message: ".git: a .git entry inside the project directory is not allowed",
        },
        Case {
            name: "latin1",
            tree: Node::Tree(vec![
                conf(),
                plan(),
                (
                    "deploy".into(),
                    Node::Tree(vec![(
                        "users.sql".into(),
                        Node::Blob(b"select 'caf\xe9';\n".to_vec()),
                    )]),
                ),
            ]),
            want_reason: "InvalidEncoding",
            want_message: "deploy/users.sql: not valid UTF-8 (at byte 11)",
        },
    ];
    for case in &cases {
        let bare = repos.root().join(format!("{}.git", case.name));
        std::fs::create_dir_all(&bare).unwrap();
        e2e::git::git(&bare, &["init", "--bare", "--quiet"]).unwrap();
        commit_tree(&bare, &case.tree, "main", case.name).unwrap();
        env.apply(&git_project_yaml(
            case.name,
            &daemon.url(case.name),
            "branch: main",
            "1h",
            "",
        ));
    }
    let workdir = tempfile::tempdir().unwrap();
    let controller = env.controller("c", &["--workdir", workdir.path().to_str().unwrap()]);
    for case in &cases {
        let what = format!("databaseproject/{}", case.name);
        assert!(
            env.wait(&what, "condition=Stalled", MINUTE),
            "{what}\n{}",
            controller.log()
        );
        let dp = env.get(&what);
        let stalled = condition(&dp, "Stalled").unwrap();
        let ready = condition(&dp, "Ready").unwrap();
        assert_eq!(
            stalled["reason"], case.want_reason,
            "{}: {stalled}",
            case.name
        );
        assert_eq!(ready["status"], "False");
        let message = stalled["message"].as_str().unwrap();
        assert!(
            message.contains(case.want_message),
            "{}: {message}",
            case.name
        );
        assert!(
            dp["status"]["revision"].is_null(),
            "{}: never Ready",
            case.name
        );
        assert!(
            status_str(&dp, "lastAttemptedRevision").starts_with("main@sha1:"),
            "{}: the refused revision is named: {dp}",
            case.name
        );
    }
    // Nothing was published, and nothing from outside the cache is in it.
    let artifacts: Vec<_> = std::fs::read_dir(workdir.path().join("artifacts"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(artifacts.is_empty(), "{artifacts:?}");
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let first_line = passwd.lines().next().unwrap();
    let mut stack = vec![workdir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let kind = entry.file_type().unwrap();
            assert!(
                !kind.is_symlink(),
                "no links in the cache: {:?}",
                entry.path()
            );
            if kind.is_dir() {
                stack.push(entry.path());
            } else if entry.metadata().unwrap().len() < 1 << 20 {
                let text =
                    String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).to_string();
                assert!(
                    !text.contains(first_line),
                    "{:?} holds /etc/passwd",
                    entry.path()
                );
            }
        }
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    // Memory stayed bounded while a 200 MiB file came in.
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", controller.child.id())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(peak_kb < 150 * 1024, "controller peak RSS {peak_kb} kB");
    eprintln!("controller peak RSS {peak_kb} kB");
    let events = env.events();
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "UnsafePath" && n.contains("deploy/users.sql")),
        "{events:?}"
    );
}
