//! The development workflow through the controller (issue #7): an Environment without
//! `allowRework` refuses a revision with a workflow file for a change its database has not
//! deployed, Stalled with reason ReworkNotAllowed naming the change and the file, and
//! leaves the database untouched; with `allowRework: true` it acts on the file and shows
//! the change's workflow state in its status.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_without_allow_rework_refuses_a_reworked_revision() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("staging-db", &db);
    let project = shop();
    project.write(
        "deploy/orders-ignore.sql",
        "orders move to the billing project\n",
    );
    env.project_configmap("shop-files", &project);
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("staging", "shop", "staging-db", true, ""));
    let before = e2e::postgres::snapshot(&db.url).await.unwrap();
    let controller = env.controller("c1", &[]);

    let staging = eventually(Duration::from_secs(60), "staging to refuse", || {
        let staging = env.get("environment/staging");
        condition(&staging, "Ready")
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "ReworkNotAllowed")
            .then_some(staging)
    });
    let ready = condition(&staging, "Ready").unwrap();
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("deploy/orders-ignore.sql") && message.contains("change orders "),
        "names the change and the file: {message}\n{}",
        controller.log()
    );
    assert_eq!(condition(&staging, "Stalled").unwrap()["status"], "True");
    assert_eq!(
        condition(&staging, "Stalled").unwrap()["reason"],
        "ReworkNotAllowed"
    );
    let failure = &staging["status"]["lastFailure"];
    assert_eq!(failure["change"], "orders", "{staging:#}");
    assert_eq!(failure["file"], "deploy/orders-ignore.sql");
    assert_eq!(
        e2e::postgres::snapshot(&db.url).await.unwrap(),
        before,
        "nothing changed in the database"
    );
    let events = env.events();
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "ReworkNotAllowed" && n.contains("deploy/orders-ignore.sql")),
        "{events:?}"
    );
    // The refusal holds: a requeue does not turn it into another reason.
    std::thread::sleep(Duration::from_secs(3));
    let staging = env.get("environment/staging");
    assert_eq!(
        condition(&staging, "Ready").unwrap()["reason"],
        "ReworkNotAllowed"
    );

    // Allowing rework acts on the file: orders is ignored, users deployed.
    env.apply(&env_yaml(
        "staging",
        "shop",
        "staging-db",
        true,
        "  allowRework: true\n",
    ));
    let staging = eventually(Duration::from_secs(60), "staging to deploy", || {
        let staging = env.get("environment/staging");
        condition(&staging, "Ready")
            .is_some_and(|c| c["status"] == "True")
            .then_some(staging)
    });
    assert_eq!(
        e2e::postgres::rows(
            &db.url,
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        .await
        .unwrap(),
        ["users"]
    );
    let workflow = &staging["status"]["workflow"];
    assert_eq!(workflow[0]["change"], "orders", "{:#}", staging["status"]);
    assert_eq!(workflow[0]["state"], "ignored");
    assert_eq!(workflow[0]["file"], "deploy/orders-ignore.sql");
    assert_eq!(workflow[0]["reason"], "orders move to the billing project");
    assert!(
        workflow[0]["revision"]
            .as_str()
            .unwrap()
            .starts_with("cm:shop-files@sha1:"),
        "{workflow}"
    );
    assert_eq!(staging["status"]["pending"]["count"], 0);
    assert!(condition(&staging, "Stalled").is_none(), "{staging:#}");
}

/// Issue #5's last guard, with #7's workflow files: dev (allowRework) took a revision that
/// ignores a change; promoting it into prod, which does not allow rework, is Blocked with
/// ReworkNotAllowed naming the change and the file, and prod's database is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_carrying_rework_into_a_target_without_it_is_blocked() {
    let env = Env::start();
    let dev_db = database().await;
    let prod_db = database().await;
    env.db_secret("dev-db", &dev_db);
    env.db_secret("prod-db", &prod_db);
    let project = shop();
    project.write("deploy/orders-ignore.sql", "orders move to billing\n");
    env.project_configmap("shop-files", &project);
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml(
        "dev",
        "shop",
        "dev-db",
        true,
        "  allowRework: true\n",
    ));
    env.apply(&env_yaml("prod", "shop", "prod-db", false, ""));
    let controller = env.controller("c1", &[]);
    assert!(
        env.wait(
            "environment/dev",
            "condition=Ready",
            Duration::from_secs(60)
        ),
        "dev Ready\n{}",
        controller.log()
    );
    let before = e2e::postgres::snapshot(&prod_db.url).await.unwrap();
    env.apply(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: to-prod\nspec:\n  from: {environment: dev}\n  to: {environment: prod}\n",
    );
    let promo = eventually(Duration::from_secs(60), "to-prod blocked", || {
        let p = env.get("promotion/to-prod");
        (p["status"]["phase"] == "Blocked").then_some(p)
    });
    let blocked = condition(&promo, "Blocked").unwrap();
    assert_eq!(blocked["reason"], "ReworkNotAllowed", "{promo:#}");
    let message = blocked["message"].as_str().unwrap();
    assert!(
        message.contains("deploy/orders-ignore.sql") && message.contains("change orders "),
        "names the change and the file: {message}"
    );
    assert_eq!(
        e2e::postgres::snapshot(&prod_db.url).await.unwrap(),
        before,
        "nothing changed in prod"
    );
    assert!(
        env.events()
            .iter()
            .any(|(r, n)| r == "ReworkNotAllowed" && n.contains("deploy/orders-ignore.sql")),
        "{:?}",
        env.events()
    );
}
