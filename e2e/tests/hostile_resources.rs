//! Custom resources the schema accepts but that are wrong in context (issue #17): a missing
//! Secret, a Secret with the wrong keys or an unusable URL, an unreachable host, a missing
//! project or ConfigMap, a broken project, an Environment pointed at another project's
//! database, two Environments claiming one database, Promotions across projects or to
//! nothing. The real controller must answer each with a specific condition naming what is
//! wrong, leak no password, and change nothing in any database (catalog compared before and
//! after).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;
use e2e::postgres::snapshot;
use e2e::tools::Fixture;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// One object to watch and the condition it must reach.
struct Want {
    object: &'static str,
    /// Ready or Blocked.
    condition: &'static str,
    /// `True` for Blocked, `False` for Ready.
    status: &'static str,
    reason: &'static str,
    /// Substrings the condition's message must hold.
    message: &'static [&'static str],
}

fn secret_yaml(name: &str, key: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  {key}: \"{value}\"\n"
    )
}

fn promotion_yaml(name: &str, from: &str, to: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: {name}\nspec:\n  from:\n    environment: {from}\n  to:\n    environment: {to}\n"
    )
}

/// A project named `other` whose first change creates the table `shop`'s first change
/// already made.
fn other_project() -> Fixture {
    let mut fx = Fixture::new("other");
    fx.table("users");
    fx
}

/// `shop` with a blue-green schema, for the two Environments that claim one database.
fn blue_green_shop() -> Fixture {
    let fx = shop();
    fx.write(
        "switchyard.yaml",
        "project: shop\nengine: postgres\nschemas:\n  api: blue-green\n",
    );
    fx.write(
        "objects/api/one.sql",
        "CREATE VIEW api.one AS SELECT 1 AS one;\n",
    );
    fx
}

fn check(env: &Env, want: &Want) -> Result<(), String> {
    let obj: Value = env.get(want.object);
    let Some(c) = condition(&obj, want.condition) else {
        return Err(format!(
            "no {} condition: {:#}",
            want.condition, obj["status"]
        ));
    };
    let message = c["message"].as_str().unwrap_or_default();
    let ok = c["status"] == want.status
        && c["reason"] == want.reason
        && want.message.iter().all(|m| message.contains(m));
    if ok { Ok(()) } else { Err(format!("{c}")) }
}

/// What each wrong resource must say.
fn wants() -> Vec<Want> {
    vec![
        Want {
            object: "environment/missing-secret",
            condition: "Ready",
            status: "False",
            reason: "NotFound",
            message: &["Secret nope"],
        },
        Want {
            object: "environment/wrong-key",
            condition: "Ready",
            status: "False",
            reason: "InvalidSecret",
            message: &["Secret wrong-key is not a layout", "found keys: connection"],
        },
        Want {
            object: "environment/bad-url",
            condition: "Ready",
            status: "False",
            reason: "InvalidSecret",
            message: &["invalid port number \"notaport\" (key url of Secret bad-url)"],
        },
        Want {
            object: "environment/unreachable",
            condition: "Ready",
            status: "False",
            reason: "ConnectFailed",
            message: &["127.0.0.1"],
        },
        Want {
            object: "environment/missing-project",
            condition: "Ready",
            status: "False",
            reason: "NotFound",
            message: &["ghost"],
        },
        Want {
            object: "environment/broken",
            condition: "Ready",
            status: "False",
            reason: "InvalidProject",
            message: &["DatabaseProject broken", "sqitch.plan:3"],
        },
        Want {
            object: "databaseproject/broken",
            condition: "Ready",
            status: "False",
            reason: "InvalidProject",
            message: &["sqitch.plan:3", "month 13"],
        },
        Want {
            object: "databaseproject/no-configmap",
            condition: "Ready",
            status: "False",
            reason: "SourceUnavailable",
            message: &["ConfigMap nothing-here not found"],
        },
        Want {
            object: "environment/other",
            condition: "Ready",
            status: "False",
            reason: "DeployFailed",
            message: &["deploy/users.sql:2", "already exists"],
        },
        Want {
            object: "promotion/across-projects",
            condition: "Blocked",
            status: "True",
            reason: "GuardProjectMismatch",
            message: &["shop", "other"],
        },
        Want {
            object: "promotion/to-nothing",
            condition: "Blocked",
            status: "True",
            reason: "GuardTargetNotFound",
            message: &["ghost-env"],
        },
        Want {
            object: "promotion/from-nothing",
            condition: "Blocked",
            status: "True",
            reason: "GuardSourceNotFound",
            message: &["ghost-env"],
        },
        Want {
            object: "promotion/same-database",
            condition: "Blocked",
            status: "True",
            reason: "GuardSharedDatabase",
            message: &["schemaSuffix"],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_wrong_in_context_get_specific_conditions_and_change_nothing() {
    let env = Env::start();
    let shop_db = database().await;
    let untouched = database().await;
    let bg_db = database().await;
    env.db_secret("bg-db", &bg_db);
    apply_sources_and_secrets(&env, &shop_db, &untouched);
    env.apply(&env_yaml("shop", "shop", "shop-db", true, ""));
    env.apply(&env_yaml("missing-secret", "shop", "nope", true, ""));
    env.apply(&env_yaml("wrong-key", "shop", "wrong-key", true, ""));
    env.apply(&env_yaml("bad-url", "shop", "bad-url", true, ""));
    env.apply(&env_yaml("unreachable", "shop", "unreachable", true, ""));
    env.apply(&env_yaml(
        "missing-project",
        "ghost",
        "untouched-db",
        true,
        "",
    ));
    env.apply(&env_yaml("broken", "broken", "untouched-db", true, ""));
    let controller = env.controller("c", &[]);
    assert!(
        env.wait("environment/shop", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    // shop is deployed; now the wrong ones that touch its database.
    let before_shop = snapshot(&shop_db.url).await.unwrap();
    let before_untouched = snapshot(&untouched.url).await.unwrap();
    env.apply(&env_yaml("other", "other", "shop-db", true, ""));
    env.apply(&env_yaml("bg-a", "bg", "bg-db", true, ""));
    assert!(
        env.wait("environment/bg-a", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    let before_bg = snapshot(&bg_db.url).await.unwrap();
    env.apply(&env_yaml("bg-b", "bg", "bg-db", false, ""));
    env.apply(&promotion_yaml("across-projects", "shop", "other"));
    env.apply(&promotion_yaml("to-nothing", "shop", "ghost-env"));
    env.apply(&promotion_yaml("from-nothing", "ghost-env", "shop"));
    env.apply(&promotion_yaml("same-database", "bg-a", "bg-b"));

    let wants = wants();
    let mut failures: Vec<String> = wants
        .iter()
        .filter_map(|want| reached(&env, want).err())
        .collect();
    // Nothing in either database changed: no table, schema or function came or went
    // (the registry records the failed attempt only as a `fail` event and a project row).
    let after_shop = snapshot(&shop_db.url).await.unwrap();
    if after_shop != before_shop {
        failures.push(format!(
            "shop's database changed: {:?}",
            after_shop
                .iter()
                .filter(|o| !before_shop.contains(o))
                .collect::<Vec<_>>()
        ));
    }
    let after_untouched = snapshot(&untouched.url).await.unwrap();
    if after_untouched != before_untouched {
        failures.push(format!(
            "the untouched database changed: {:?}",
            after_untouched
                .iter()
                .filter(|o| !before_untouched.contains(o))
                .collect::<Vec<_>>()
        ));
    }
    if snapshot(&bg_db.url).await.unwrap() != before_bg {
        failures.push("the shared database changed".into());
    }
    let visible = env.visible_state() + &controller.log();
    if visible.contains(PASSWORD) {
        failures.push("the password leaked into status, events or logs".into());
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        wants.len() + 4,
        failures.join("\n")
    );
}

/// A ConfigMap source without the `project.tar` key is reported as "not a project" under
/// the controller's own cache path, instead of naming the ConfigMap and the missing key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_configmap_without_project_tar_names_the_missing_key() {
    let env = Env::start();
    env.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: no-tar\ndata:\n  readme: hello\n",
    );
    env.apply(&project_yaml("no-tar", "no-tar"));
    let controller = env.controller("c", &[]);
    let project = eventually(WAIT, "the project to fail", || {
        let p = env.get("databaseproject/no-tar");
        condition(&p, "Ready")
            .is_some_and(|c| c["status"] == "False")
            .then_some(p)
    });
    let ready = condition(&project, "Ready").unwrap();
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no-tar") && message.contains("project.tar"),
        "{ready}\n{}",
        controller.log()
    );
    assert!(!message.contains("/tmp/"), "{ready}");
}

/// Regression (issue #17): two Environments deploying blue-green schemas into one database
/// without schema suffixes swapped each other's sets in and out for ever, both reporting
/// Ready. The one created later is Stalled, naming the other and `schemaSuffix`; the first
/// goes on serving its own objects, and the swapping stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_environments_claiming_one_database_without_suffixes_do_not_fight() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("db", &db);
    env.project_configmap("bg-files", &blue_green_shop());
    let other = blue_green_shop();
    other.write(
        "objects/api/one.sql",
        "CREATE VIEW api.one AS SELECT 2 AS one;\n",
    );
    env.project_configmap("bg2-files", &other);
    env.apply(&project_yaml("bg", "bg-files"));
    env.apply(&project_yaml("bg2", "bg2-files"));
    env.apply(&env_yaml("first", "bg", "db", true, ""));
    let controller = env.controller("c", &[]);
    assert!(
        env.wait("environment/first", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    env.apply(&env_yaml("second", "bg2", "db", true, ""));
    let want = Want {
        object: "environment/second",
        condition: "Stalled",
        status: "True",
        reason: "GuardSharedDatabase",
        message: &["first", "schemaSuffix"],
    };
    eventually(WAIT, "second to be Stalled", || check(&env, &want).ok());
    let swaps = || {
        e2e::postgres::rows(
            &db.url,
            "SELECT count(*) FROM switchyard.deployments WHERE operation = 'promote'",
        )
    };
    let before = swaps().await.unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        swaps().await.unwrap(),
        before,
        "the Environments still swap"
    );
    assert_eq!(
        e2e::postgres::one(&db.url, "SELECT one FROM api.one").await,
        "1"
    );
    assert!(
        condition(&env.get("environment/first"), "Ready").is_some_and(|c| c["status"] == "True")
    );
}

/// Waits for `want`, or says what the object showed instead.
fn reached(env: &Env, want: &Want) -> Result<(), String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match check(env, want) {
            Ok(()) => return Ok(()),
            Err(why) if std::time::Instant::now() >= deadline => {
                return Err(format!("{} ({}): {why}", want.object, want.reason));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// The projects (good, broken, missing) and Secrets (good, wrong key, bad URL, unreachable)
/// the cases use.
fn apply_sources_and_secrets(
    env: &Env,
    shop_db: &e2e::postgres::TestDb,
    untouched: &e2e::postgres::TestDb,
) {
    env.db_secret("shop-db", shop_db);
    env.db_secret("untouched-db", untouched);
    env.project_configmap("shop-files", &shop());
    env.project_configmap("other-files", &other_project());
    env.project_configmap("bg-files", &blue_green_shop());
    let broken = shop();
    broken.write(
        "sqitch.plan",
        "%project=shop\n\nusers 2026-13-01T00:00:01Z A <a@b.c>\n",
    );
    env.project_configmap("broken-files", &broken);
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&project_yaml("other", "other-files"));
    env.apply(&project_yaml("bg", "bg-files"));
    env.apply(&project_yaml("broken", "broken-files"));
    env.apply(&project_yaml("no-configmap", "nothing-here"));
    let free = free_port();
    env.apply(&secret_yaml(
        "wrong-key",
        "connection",
        "postgres://x@127.0.0.1/db",
    ));
    env.apply(&secret_yaml(
        "bad-url",
        "url",
        &format!("postgres://app:{PASSWORD}@127.0.0.1:notaport/db"),
    ));
    env.apply(&secret_yaml(
        "unreachable",
        "url",
        &format!("postgres://app:{PASSWORD}@127.0.0.1:{free}/db"),
    ));
}
