//! The controller end to end (issue #4): CRDs and objects applied with real kubectl, the
//! real `switchyard controller` binary, the harness API server and a throwaway PostgreSQL.
//! A dev Environment with autoDeploy reaches Ready with the plan deployed, a prod one
//! stays where it is, a Promotion dev → prod reaches Ready (`kubectl wait`), and the
//! Secret's password shows up nowhere.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::controller::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_deploys_prod_waits_then_promotion_moves_prod() {
    let env = Env::start();
    let dev_db = database().await;
    let prod_db = database().await;
    env.db_secret("dev-db", &dev_db);
    env.db_secret("prod-db", &prod_db);
    let project = shop();
    env.project_configmap("shop-files", &project);
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("dev", "shop", "dev-db", true, ""));
    env.apply(&env_yaml("prod", "shop", "prod-db", false, ""));

    let controller = env.controller("c1", &[]);
    assert!(
        env.wait(
            "databaseproject/shop",
            "condition=Ready",
            Duration::from_secs(60)
        ),
        "project Ready\n{}",
        controller.log()
    );
    assert!(
        env.wait(
            "environment/dev",
            "condition=Ready",
            Duration::from_secs(60)
        ),
        "dev Ready\n{}",
        controller.log()
    );

    // Dev has the whole plan, and says so.
    assert_eq!(
        e2e::postgres::public_tables(&dev_db.url).await,
        ["orders", "users"]
    );
    let dev = env.get("environment/dev");
    let revision = dev["status"]["lastAppliedRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(revision.starts_with("cm:shop-files@sha1:"), "{revision}");
    assert_eq!(dev["status"]["lastChange"], "orders");
    assert_eq!(dev["status"]["pending"]["count"], 0);
    assert_eq!(
        dev["status"]["observedGeneration"],
        dev["metadata"]["generation"]
    );
    assert_eq!(dev["status"]["deployments"][0]["result"], "succeeded");
    assert_eq!(
        dev["status"]["deployments"][0]["revision"],
        revision.as_str()
    );
    assert!(
        dev["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "switchyard.dev/finalizer")
    );
    let dp = env.get("databaseproject/shop");
    assert_eq!(dp["status"]["revision"], revision.as_str());
    assert_eq!(dp["status"]["plan"]["changes"], 2);

    // Prod is promotion-only: Ready, untouched, with the plan pending.
    assert!(env.wait(
        "environment/prod",
        "condition=Ready",
        Duration::from_secs(30)
    ));
    let prod = env.get("environment/prod");
    assert_eq!(
        condition(&prod, "Ready").unwrap()["reason"],
        "AwaitingPromotion"
    );
    assert_eq!(prod["status"]["pending"]["count"], 2);
    assert_eq!(
        prod["status"]["pending"]["first"],
        serde_json::json!(["users", "orders"])
    );
    assert!(
        e2e::postgres::public_tables(&prod_db.url).await.is_empty(),
        "prod must stay where it is"
    );

    // Promote dev → prod.
    let started = Instant::now();
    env.apply("apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: dev-to-prod\nspec:\n  from:\n    environment: dev\n  to:\n    environment: prod\n");
    assert!(
        env.wait(
            "promotion/dev-to-prod",
            "condition=Ready",
            Duration::from_secs(60)
        ),
        "promotion Ready\n{}",
        controller.log()
    );
    let elapsed = started.elapsed();
    let promo = env.get("promotion/dev-to-prod");
    assert_eq!(promo["status"]["phase"], "Succeeded");
    assert_eq!(promo["status"]["revision"], revision.as_str());
    assert_eq!(promo["status"]["changesApplied"], 2);
    assert_eq!(condition(&promo, "Validated").unwrap()["status"], "True");
    assert_eq!(condition(&promo, "Promoted").unwrap()["status"], "True");
    let sql_ms = promo["status"]["durationMs"].as_i64().unwrap();
    eprintln!(
        "BENCH promotion applied->Ready: {} ms total, {} ms deploying (SQL), {} ms overhead",
        elapsed.as_millis(),
        sql_ms,
        elapsed.as_millis() as i64 - sql_ms
    );
    assert_eq!(
        e2e::postgres::public_tables(&prod_db.url).await,
        ["orders", "users"]
    );
    // Prod's own status follows (the Environment watches Promotions into it).
    eventually(
        Duration::from_secs(30),
        "prod to report the promoted revision",
        || {
            let prod = env.get("environment/prod");
            (prod["status"]["lastAppliedRevision"] == revision.as_str()
                && prod["status"]["pending"]["count"] == 0)
                .then_some(())
        },
    );
    assert!(
        env.events()
            .iter()
            .any(|(r, n)| r == "Promoted" && n.contains(&revision)),
        "{:?}",
        env.events()
    );
    assert!(
        env.events().iter().any(|(r, _)| r == "Deployed"),
        "{:?}",
        env.events()
    );

    // Printer columns through kubectl.
    let table = env.ok(&["get", "-n", &env.ns, "dbenv"]);
    assert!(
        table.contains("READY")
            && table.contains("REVISION")
            && table.contains("cm:shop-files@sha1:"),
        "{table}"
    );

    // The password is nowhere.
    let visible = env.visible_state() + &controller.log();
    assert!(!visible.contains(PASSWORD), "the Secret's password leaked");
}

/// `config/samples` applied as they are (with their ConfigMap and Secrets): everything
/// reaches Ready, the Promotion after waiting, Blocked, for its source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_samples_become_ready_with_kubectl_wait() {
    let env = Env::start();
    let dev_db = database().await;
    let prod_db = database().await;
    env.db_secret("shop-dev-db", &dev_db);
    env.db_secret("shop-prod-db", &prod_db);
    env.project_configmap("shop-project", &shop());
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/samples");
    env.ok(&["apply", "-n", &env.ns, "-k", &samples.display().to_string()]);
    let controller = env.controller("c", &[]);
    for what in [
        "databaseproject/shop",
        "environment/shop-dev",
        "environment/shop-prod",
        "promotion/shop-dev-to-prod",
    ] {
        assert!(
            env.wait(what, "condition=Ready", Duration::from_secs(60)),
            "{what} not Ready\n{}",
            controller.log()
        );
    }
    assert_eq!(
        e2e::postgres::public_tables(&prod_db.url).await,
        ["orders", "users"]
    );
    let promo = env.get("promotion/shop-dev-to-prod");
    assert!(
        condition(&promo, "Blocked").is_none(),
        "Blocked must clear once the guard passes"
    );
}

/// The flat-key ConfigMap layout (`deploy__users.sql`), and an invalid plan: the
/// DatabaseProject is Stalled naming the plan's file and line, its Environment waits, and
/// the fixed plan is deployed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_plan_stalls_the_project_with_file_and_line_then_flat_keys_deploy() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("db", &db);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
    write("sqitch.conf", "[core]\n\tengine = pg\n");
    write("deploy.sql", "CREATE TABLE users (id int);\n");
    write("revert.sql", "DROP TABLE users;\n");
    let configmap = |plan: &str| {
        write("sqitch.plan", plan);
        let f = |key: &str, file: &str| {
            format!("--from-file={key}={}", dir.path().join(file).display())
        };
        let args = [
            f("sqitch.conf", "sqitch.conf"),
            f("sqitch.plan", "sqitch.plan"),
            f("deploy__users.sql", "deploy.sql"),
            f("revert__users.sql", "revert.sql"),
        ];
        let mut cmd = vec![
            "create",
            "configmap",
            "flat",
            "-n",
            env.ns.as_str(),
            "--dry-run=client",
            "-o",
            "yaml",
        ];
        cmd.extend(args.iter().map(String::as_str));
        env.apply(&env.ok(&cmd));
    };
    let header = "%syntax-version=1.0.0\n%project=flat\n\n";
    configmap(&format!(
        "{header}users 2026-01-01T00:00:00Z Test <t@example.com> # users\nthis line is not a change\n"
    ));
    env.apply(&project_yaml("flat", "flat"));
    env.apply(&env_yaml("dev", "flat", "db", true, ""));
    let controller = env.controller("c", &[]);
    assert!(
        env.wait(
            "databaseproject/flat",
            "condition=Stalled",
            Duration::from_secs(60)
        ),
        "{}",
        controller.log()
    );
    let dp = env.get("databaseproject/flat");
    let stalled = condition(&dp, "Stalled").unwrap();
    assert_eq!(stalled["reason"], "InvalidProject");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .contains("sqitch.plan:5"),
        "{stalled}"
    );
    let dev = eventually(
        Duration::from_secs(30),
        "dev to report the invalid project",
        || {
            let dev = env.get("environment/dev");
            condition(&dev, "Ready")
                .filter(|c| c["reason"] == "InvalidProject")
                .map(|_| dev.clone())
        },
    );
    assert_eq!(condition(&dev, "Stalled").unwrap()["status"], "True");
    assert!(e2e::postgres::public_tables(&db.url).await.is_empty());

    configmap(&format!(
        "{header}users 2026-01-01T00:00:00Z Test <t@example.com> # users\n"
    ));
    assert!(
        env.wait(
            "environment/dev",
            "condition=Ready",
            Duration::from_secs(60)
        ),
        "{}",
        controller.log()
    );
    assert_eq!(e2e::postgres::public_tables(&db.url).await, ["users"]);
    assert_eq!(
        condition(&env.get("databaseproject/flat"), "Ready").unwrap()["status"],
        "True"
    );
}
