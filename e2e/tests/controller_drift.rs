//! Drift through the controller (issue #16), end to end: real kubectl, the real
//! `switchyard controller`, the harness API server and throwaway PostgreSQL databases.
//! An Environment checks its database on every reconcile (every interval, and on
//! `requestedAt`): a view altered and a table added by hand in a live blue-green schema
//! set `Drifted=True` naming them, with one Warning Event each; a Promotion into the
//! drifted Environment is blocked with `GuardTargetDrifted` and changes nothing; one with
//! `allowDrift` and `redeploySchemas` re-stages and repairs it; a deploy script edited
//! after it ran is reported with its change and file.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;
use e2e::postgres::one;
use e2e::tools::Fixture;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// A stable `shop` schema with a table, and a blue-green `api` with two views and a
/// function. `comment` goes into the deploy script of `schema`, for script drift.
fn project(comment: &str) -> Fixture {
    let fx = Fixture::shop_with_api(
        &format!(
            "CREATE TABLE shop.orders (id int PRIMARY KEY, amount int NOT NULL);\n-- {comment}\n"
        ),
        "orders",
    );
    fx.write(
        "objects/api/orders_v.sql",
        "CREATE VIEW api.orders_v AS SELECT id, amount FROM shop.orders;\n",
    );
    fx.write(
        "objects/api/big_orders.sql",
        "CREATE VIEW api.big_orders AS SELECT * FROM api.orders_v WHERE amount > 10;\n",
    );
    fx.write(
        "objects/api/version.sql",
        "CREATE FUNCTION api.version() RETURNS text LANGUAGE sql AS $$ SELECT 'v1'::text $$;\n",
    );
    fx
}

fn promotion(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: {name}\nspec:\n  from: {{environment: dev}}\n  to: {{environment: prod}}\n{spec}"
    )
}

/// Asks for a reconcile now (`switchyard.dev/requestedAt`) and waits until it was handled.
fn check_now(env: &Env, what: &str, at: &str) {
    env.ok(&[
        "annotate",
        "-n",
        &env.ns,
        what,
        &format!("switchyard.dev/requestedAt={at}"),
        "--overwrite",
    ]);
    eventually(WAIT, &format!("{what} to handle requestedAt {at}"), || {
        (env.get(what)["status"]["lastHandledReconcileAt"] == at).then_some(())
    });
}

/// The Drifted condition's (status, reason, message), once it has `status`.
fn drifted(env: &Env, what: &str, status: &str) -> (Value, String, String) {
    eventually(WAIT, &format!("{what} Drifted={status}"), || {
        let obj = env.get(what);
        let c = condition(&obj, "Drifted")?;
        (c["status"] == status).then(|| {
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (
                obj["status"]["drift"].clone(),
                text("reason"),
                text("message"),
            )
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_report_drift_and_promotions_refuse_a_drifted_target() {
    let env = Env::start();
    let dev_db = database().await;
    let prod_db = database().await;
    env.db_secret("dev-db", &dev_db);
    env.db_secret("prod-db", &prod_db);
    env.project_configmap("shop-files", &project("v1"));
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("dev", "shop", "dev-db", true, ""));
    env.apply(&env_yaml("prod", "shop", "prod-db", false, ""));
    let controller = env.controller("c1", &[]);
    assert!(
        env.wait("environment/dev", "condition=Ready", WAIT),
        "dev Ready\n{}",
        controller.log()
    );
    env.apply(&promotion("p1", ""));
    assert!(
        env.wait("promotion/p1", "condition=Ready", WAIT),
        "p1 Ready\n{}",
        controller.log()
    );

    // Freshly promoted: checked, nothing drifted.
    check_now(&env, "environment/prod", "2026-12-05T01:00:00Z");
    let (drift, reason, _) = drifted(&env, "environment/prod", "False");
    assert_eq!(reason, "NoDrift");
    assert!(drift["since"].is_string(), "{drift:#}");
    assert!(
        drift["objects"].is_null() && drift["unknown"].is_null(),
        "{drift:#}"
    );

    // At 3 am someone edits a view and adds a table in the live set.
    let admin = e2e::postgres::connect(&prod_db.url).await.unwrap();
    admin
        .batch_execute(
            "CREATE OR REPLACE VIEW api.orders_v AS SELECT id, amount, 1 AS hotfix FROM shop.orders;\n\
             CREATE TABLE api.notes (id int);",
        )
        .await
        .unwrap();
    check_now(&env, "environment/prod", "2026-12-05T03:00:00Z");
    let (drift, reason, message) = drifted(&env, "environment/prod", "True");
    assert_eq!(reason, "DriftDetected");
    assert!(message.contains("view orders_v"), "{message}");
    assert!(message.contains("table notes"), "{message}");
    assert_eq!(drift["objects"][0]["schema"], "api", "{drift:#}");
    assert_eq!(drift["objects"][0]["object"], "view orders_v", "{drift:#}");
    assert_eq!(drift["objects"][0]["change"], "changed", "{drift:#}");
    assert_eq!(drift["unknown"][0]["object"], "table notes", "{drift:#}");
    let warned = |needle: &str| {
        env.events()
            .iter()
            .filter(|(r, m)| r == "DriftDetected" && m.contains(needle))
            .count()
    };
    eventually(WAIT, "a DriftDetected event per finding", || {
        (warned("view orders_v") == 1 && warned("table notes") == 1).then_some(())
    });
    assert_eq!(controller.metric("switchyard_drift_findings"), 2.0);
    // The same findings on the next check are not announced again.
    check_now(&env, "environment/prod", "2026-12-05T03:05:00Z");
    assert_eq!(warned("view orders_v"), 1, "{:#?}", env.events());
    assert_eq!(
        env.get("environment/prod")["status"]["drift"]["since"],
        drift["since"],
        "an unchanged result keeps its time"
    );

    // A Promotion into the drifted database is refused and changes nothing.
    env.apply(&promotion("p2", "  redeploySchemas: [api]\n"));
    let p2 = eventually(WAIT, "p2 to be blocked", || {
        let p = env.get("promotion/p2");
        (p["status"]["phase"] == "Blocked").then_some(p)
    });
    let blocked = condition(&p2, "Blocked").unwrap();
    assert_eq!(blocked["reason"], "GuardTargetDrifted", "{p2:#}");
    assert!(
        blocked["message"]
            .as_str()
            .unwrap()
            .contains("view orders_v"),
        "{p2:#}"
    );
    let columns = "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'api' AND table_name = 'orders_v'";
    assert_eq!(one(&prod_db.url, columns).await, "id,amount,hotfix");
    assert!(
        one(&prod_db.url, "SELECT to_regclass('api.notes')::text").await == "api.notes",
        "the hand-made table is still live"
    );

    // allowDrift with a re-stage puts back what the project defines.
    env.apply(&promotion(
        "p3",
        "  redeploySchemas: [api]\n  allowDrift: true\n",
    ));
    assert!(
        env.wait("promotion/p3", "condition=Ready", WAIT),
        "p3 Ready\n{}",
        controller.log()
    );
    check_now(&env, "environment/prod", "2026-12-05T04:00:00Z");
    let (drift, reason, _) = drifted(&env, "environment/prod", "False");
    assert_eq!(reason, "NoDrift", "{drift:#}");
    assert_eq!(one(&prod_db.url, columns).await, "id,amount");
    eventually(WAIT, "a NoDrift event", || {
        env.events()
            .iter()
            .any(|(r, _)| r == "NoDrift")
            .then_some(())
    });

    // A deploy script edited after it ran: dev reports the change and its file.
    env.project_configmap("shop-files", &project("edited after the deploy"));
    let (drift, _, message) = drifted(&env, "environment/dev", "True");
    assert_eq!(drift["scripts"][0]["change"], "schema", "{drift:#}");
    assert_eq!(
        drift["scripts"][0]["file"], "deploy/schema.sql",
        "{drift:#}"
    );
    assert_ne!(
        drift["scripts"][0]["recorded"],
        drift["scripts"][0]["current"]
    );
    assert!(message.contains("deploy/schema.sql"), "{message}");
    assert!(
        !controller.log().contains("panicked"),
        "{}",
        controller.log()
    );
}
