//! The controller's failure handling and lifecycle (issue #4): a broken change shows its
//! file, line and database error with a DeployFailed event and the failure mode's
//! rollback; fixing the project heals it with no manual step; suspend stops all work and
//! unsuspend resumes it; requestedAt forces a reconcile; deleting an Environment passes
//! its finalizer and leaves the database as it is.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_change_reports_file_line_and_heals_then_suspend_requested_at_and_delete() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("dev-db", &db);
    let mut project = shop();
    env.project_configmap("shop-files", &project);
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml(
        "dev",
        "shop",
        "dev-db",
        true,
        "  failureMode: all\n",
    ));
    let controller = env.controller("c1", &[]);
    assert!(
        env.wait(
            "environment/dev",
            "condition=Ready",
            Duration::from_secs(60)
        ),
        "{}",
        controller.log()
    );
    assert_eq!(
        e2e::postgres::public_tables(&db.url).await,
        ["orders", "users"]
    );

    // A good change followed by a broken one, in one revision.
    project.table("payments");
    project.change(
        "broken",
        &[],
        "BEGIN;\nCREATE TABLE broken (id int);\nSELECT * FROM no_such_table;\nCOMMIT;\n",
        "DROP TABLE broken;\n",
        "SELECT 1;\n",
    );
    env.project_configmap("shop-files", &project);
    let dev = eventually(Duration::from_secs(60), "dev to fail", || {
        let dev = env.get("environment/dev");
        (condition(&dev, "Ready")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "DeployFailed"))
        .then_some(dev)
    });
    let failure = &dev["status"]["lastFailure"];
    assert_eq!(failure["change"], "broken", "{dev:#}");
    assert_eq!(failure["file"], "deploy/broken.sql");
    assert_eq!(failure["line"], 3);
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.contains("no_such_table") && message.contains("42P01"),
        "{message}"
    );
    let ready = condition(&dev, "Ready").unwrap();
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("deploy/broken.sql:3"),
        "{ready}"
    );
    assert_eq!(condition(&dev, "Stalled").unwrap()["status"], "True");
    assert!(
        condition(&dev, "Reconciling").is_none(),
        "a terminal failure must not leave Reconciling behind"
    );
    // failureMode all: the good change of this run was reverted too.
    assert_eq!(condition(&dev, "RolledBack").unwrap()["status"], "True");
    assert_eq!(failure["reverted"], serde_json::json!(["payments"]));
    assert_eq!(
        e2e::postgres::public_tables(&db.url).await,
        ["orders", "users"]
    );
    let events = env.events();
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "DeployFailed" && n.contains("deploy/broken.sql:3")),
        "{events:?}"
    );
    assert!(events.iter().any(|(r, _)| r == "RolledBack"), "{events:?}");
    // No hot loop: the failed revision is not retried by itself.
    let fails = || {
        e2e::postgres::rows(
            &db.url,
            "SELECT count(*)::text FROM sqitch.events WHERE event = 'fail'",
        )
    };
    let before = fails().await.unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        fails().await.unwrap(),
        before,
        "a failed revision must not be retried in a loop"
    );

    // Fixing the project heals it, with no manual step.
    project.write_script(
        "deploy",
        "broken",
        "BEGIN;\nCREATE TABLE broken (id int);\nCOMMIT;\n",
    );
    env.project_configmap("shop-files", &project);
    eventually(Duration::from_secs(60), "dev to heal", || {
        let dev = env.get("environment/dev");
        (condition(&dev, "Ready").is_some_and(|c| c["status"] == "True")
            && dev["status"]["lastChange"] == "broken")
            .then_some(())
    });
    assert_eq!(
        e2e::postgres::public_tables(&db.url).await,
        ["broken", "orders", "payments", "users"]
    );
    let dev = env.get("environment/dev");
    assert!(
        dev["status"]["lastFailure"].is_null(),
        "{:#}",
        dev["status"]
    );
    assert!(condition(&dev, "Stalled").is_none());

    // Suspend stops all work.
    env.ok(&[
        "patch",
        "-n",
        &env.ns,
        "environment/dev",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    eventually(Duration::from_secs(30), "suspension to show", || {
        let dev = env.get("environment/dev");
        condition(&dev, "Reconciling")
            .is_some_and(|c| c["reason"] == "Suspended")
            .then_some(())
    });
    project.table("later");
    env.project_configmap("shop-files", &project);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !e2e::postgres::public_tables(&db.url)
            .await
            .contains(&"later".to_string()),
        "a suspended Environment deployed"
    );
    // Unsuspend resumes.
    env.ok(&[
        "patch",
        "-n",
        &env.ns,
        "environment/dev",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    eventually(Duration::from_secs(60), "resume to deploy", || {
        let dev = env.get("environment/dev");
        (dev["status"]["lastChange"] == "later"
            && condition(&dev, "Ready").is_some_and(|c| c["status"] == "True"))
        .then_some(())
    });
    assert!(
        e2e::postgres::public_tables(&db.url)
            .await
            .contains(&"later".to_string())
    );

    // requestedAt forces a reconcile and is echoed.
    env.ok(&[
        "annotate",
        "-n",
        &env.ns,
        "environment/dev",
        "switchyard.dev/requestedAt=2026-11-22T03:00:00Z",
        "--overwrite",
    ]);
    eventually(Duration::from_secs(30), "requestedAt to be handled", || {
        (env.get("environment/dev")["status"]["lastHandledReconcileAt"] == "2026-11-22T03:00:00Z")
            .then_some(())
    });

    // Delete: the finalizer is released and the object goes; the database keeps its tables.
    env.ok(&["delete", "-n", &env.ns, "environment/dev", "--timeout=30s"]);
    let out = env.run(&["get", "-n", &env.ns, "environment/dev"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"));
    assert!(
        e2e::postgres::public_tables(&db.url)
            .await
            .contains(&"later".to_string())
    );

    let visible = env.visible_state() + &controller.log();
    assert!(!visible.contains(PASSWORD), "the Secret's password leaked");
}

/// A promotion whose deploy fails in the target: phase Failed, Stalled, the failure mode's
/// rollback reported, a DeployFailed event; a new Promotion succeeds once the target is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_promotion_reports_rollback_and_a_new_one_succeeds() {
    let env = Env::start();
    let dev_db = database().await;
    let prod_db = database().await;
    // Prod already has a table the second change creates: that change fails there.
    e2e::postgres::connect(&prod_db.url)
        .await
        .unwrap()
        .batch_execute("CREATE TABLE orders (x int)")
        .await
        .unwrap();
    env.db_secret("dev-db", &dev_db);
    env.db_secret("prod-db", &prod_db);
    env.project_configmap("shop-files", &shop());
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("dev", "shop", "dev-db", true, ""));
    env.apply(&env_yaml("prod", "shop", "prod-db", false, ""));
    let controller = env.controller("c", &[]);
    assert!(
        env.wait(
            "environment/dev",
            "condition=Ready",
            Duration::from_secs(60)
        ),
        "{}",
        controller.log()
    );
    env.apply("apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: p1\nspec:\n  from:\n    environment: dev\n  to:\n    environment: prod\n");
    assert!(
        env.wait("promotion/p1", "condition=Stalled", Duration::from_secs(60)),
        "{}",
        controller.log()
    );
    let p1 = env.get("promotion/p1");
    assert_eq!(p1["status"]["phase"], "Failed");
    let ready = condition(&p1, "Ready").unwrap();
    assert_eq!(ready["reason"], "DeployFailed");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("deploy/orders.sql:2"),
        "{ready}"
    );
    assert!(
        condition(&p1, "RolledBack").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("users")
    );
    assert_eq!(
        e2e::postgres::public_tables(&prod_db.url).await,
        ["orders"],
        "failure mode all reverted users"
    );
    let events = env.events();
    assert!(
        events.iter().any(|(r, _)| r == "DeployFailed"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "RolledBack" && n.contains("users")),
        "{events:?}"
    );

    e2e::postgres::connect(&prod_db.url)
        .await
        .unwrap()
        .batch_execute("DROP TABLE orders")
        .await
        .unwrap();
    env.apply("apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: p2\nspec:\n  from:\n    environment: dev\n  to:\n    environment: prod\n");
    assert!(
        env.wait("promotion/p2", "condition=Ready", Duration::from_secs(60)),
        "{}",
        controller.log()
    );
    assert_eq!(
        e2e::postgres::public_tables(&prod_db.url).await,
        ["orders", "users"]
    );
    // The failed one stays failed: promotions are one-shot.
    assert_eq!(env.get("promotion/p1")["status"]["phase"], "Failed");
    assert!(!(env.visible_state() + &controller.log()).contains(PASSWORD));
}
