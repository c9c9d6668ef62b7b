//! Plans and approvals (issue #16), end to end: real kubectl, the real `switchyard
//! controller` and CLI, the harness API server, a git daemon and throwaway PostgreSQL
//! databases. A Promotion into an Environment with `requireApproval` waits with its plan
//! and digest in status, changing nothing, until `spec.approvedPlanDigest` names exactly
//! that digest; a wrong one is `ApprovalStale`. The CLI's `plan --db` computes the same
//! digest, a restarted controller too, and `switchyard approve` approves. A large plan is
//! summarised in status and kept whole in a ConfigMap; an autoDeploy Environment waits
//! for each revision's own approval.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::controller::*;
use e2e::git::{GitDaemon, Repos};
use e2e::postgres::{one, public_tables, rows, snapshot};
use e2e::tools::{Fixture, json, run_ok, switchyard};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
/// A digest no plan has.
const ZEROS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// A stable `shop` schema with a table, and a blue-green `api` with a view over it.
fn project() -> Fixture {
    let fx = Fixture::shop_with_api(
        "CREATE TABLE shop.orders (id int PRIMARY KEY, amount int NOT NULL);\n",
        "orders",
    );
    fx.write(
        "objects/api/orders_v.sql",
        "CREATE VIEW api.orders_v AS SELECT id, amount FROM shop.orders;\n",
    );
    fx
}

fn promotion(name: &str, revision: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: {name}\nspec:\n  from: {{revision: \"{revision}\"}}\n  to: {{environment: prod}}\n"
    )
}

/// (status, reason, message) of a condition, or empty strings.
fn cond<'a>(obj: &'a Value, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = condition(obj, type_);
    let text = |k: &str| c.and_then(|c| c[k].as_str()).unwrap_or_default();
    (text("status"), text("reason"), text("message"))
}

/// Waits until `what` (`promotion/p1`) is Ready=False with `reason`, and returns it.
fn waiting(env: &Env, what: &str, reason: &str) -> Value {
    eventually(WAIT, &format!("{what} to wait with {reason}"), || {
        let obj = env.get(what);
        (cond(&obj, "Ready").1 == reason).then_some(obj)
    })
}

/// The digest of `status.plan`, checked for its form.
fn digest(obj: &Value) -> String {
    let d = obj["status"]["plan"]["digest"].as_str().unwrap_or_default();
    let hex = d.strip_prefix("sha256:").unwrap_or_default();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a digest: {d:?} in {:#}",
        obj["status"]
    );
    d.to_string()
}

/// Asserts that an object waits for a person: Ready=False with `reason`, naming the
/// digest, neither Stalled nor Reconciling.
fn assert_waits(obj: &Value, reason: &str, digest: &str) {
    let (status, got, message) = cond(obj, "Ready");
    assert_eq!((status, got), ("False", reason), "{:#}", obj["status"]);
    assert!(message.contains(digest), "{message}");
    assert_ne!(cond(obj, "Stalled").0, "True", "{:#}", obj["status"]);
    assert_ne!(cond(obj, "Reconciling").0, "True", "{:#}", obj["status"]);
}

/// The events (core v1, as `kubectl get events` lists them) about `name` with `reason`.
fn events_of(env: &Env, name: &str, reason: &str) -> Vec<Value> {
    env.get("events")["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
        .cloned()
        .collect()
}

/// Waits for an event about `name` with `reason` whose message names `digest`.
fn event(env: &Env, name: &str, reason: &str, digest: &str) -> Value {
    eventually(WAIT, &format!("a {reason} event for {name}"), || {
        events_of(env, name, reason)
            .into_iter()
            .find(|e| e["message"].as_str().unwrap_or_default().contains(digest))
    })
}

fn patch_digest(env: &Env, what: &str, digest: &str) {
    let body = format!(r#"{{"spec":{{"approvedPlanDigest":"{digest}"}}}}"#);
    env.ok(&["patch", "-n", &env.ns, what, "--type", "merge", "-p", &body]);
}

/// The `approve` runs the registry recorded, oldest first: `revision|result|message`.
async fn approvals(url: &str) -> Vec<String> {
    rows(
        url,
        "SELECT revision, result, message FROM switchyard.deployments WHERE operation = 'approve' ORDER BY id",
    )
    .await
    .unwrap_or_default()
}

fn project_revision(env: &Env) -> String {
    env.get("databaseproject/shop")["status"]["revision"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_revision(env: &Env, want: &str) {
    eventually(WAIT, &format!("the project at {want}"), || {
        (project_revision(env) == want).then_some(())
    });
}

/// The SHA-1 of a file, as Sqitch records a deploy script's hash.
fn sha1(path: &std::path::Path) -> String {
    let out = run_ok(std::process::Command::new("sha1sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_waits_for_the_approval_of_its_exact_plan() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("prod-db", &db);
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let mut fx = project();
    let mut work = repos.create("shop").unwrap();
    work.copy_dir(fx.path(), "db").unwrap();
    let c1 = work.commit("v1").unwrap();
    work.push("main", false).unwrap();
    env.apply(&git_project_yaml(
        "shop",
        &daemon.url("shop"),
        "branch: main",
        "1s",
        "      path: db\n",
    ));
    env.apply(&env_yaml(
        "prod",
        "shop",
        "prod-db",
        false,
        "  requireApproval: true\n",
    ));
    let mut controller = env.controller("c1", &[]);
    let r1 = format!("main@sha1:{c1}");
    wait_revision(&env, &r1);
    assert!(
        env.wait("environment/prod", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    let before = snapshot(&db.url).await.unwrap();

    // Waits with the plan in status, an event naming the digest, nothing changed.
    env.apply(&promotion("p1", &r1));
    let p1 = waiting(&env, "promotion/p1", "ApprovalPending");
    let d1 = digest(&p1);
    assert_eq!(
        p1["status"]["phase"], "AwaitingApproval",
        "{:#}",
        p1["status"]
    );
    assert_waits(&p1, "ApprovalPending", &d1);
    assert!(
        cond(&p1, "Ready")
            .2
            .contains("switchyard approve promotion/p1"),
        "says how to approve: {}",
        cond(&p1, "Ready").2
    );
    let plan = &p1["status"]["plan"];
    assert_eq!(plan["sourceRevision"], r1.as_str());
    assert_eq!(plan["changeCount"], 1);
    assert_eq!(plan["changes"][0]["name"], "schema");
    assert_eq!(plan["changes"][0]["action"], "deploy");
    assert_eq!(plan["changes"][0]["id"].as_str().unwrap().len(), 40);
    assert_eq!(
        plan["changes"][0]["scriptHash"],
        sha1(&fx.path().join("deploy/schema.sql")).as_str()
    );
    assert_eq!(
        plan["schemas"]["api"]["added"],
        serde_json::json!(["orders_v"])
    );
    assert!(plan["catalog"].as_str().unwrap().starts_with("sha256:"));
    assert!(plan["registryHead"].is_null(), "nothing deployed: {plan:#}");
    assert!(
        plan["targetRevision"].is_null(),
        "nothing deployed: {plan:#}"
    );
    assert!(plan["configMap"].is_null(), "a small plan: {plan:#}");
    let e = event(&env, "p1", "ApprovalPending", &d1);
    assert_eq!(e["type"], "Normal", "{e:#}");
    // It settles: waiting writes nothing more.
    let seen = p1["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        env.get("promotion/p1")["metadata"]["resourceVersion"],
        seen,
        "a waiting promotion keeps writing"
    );
    assert_eq!(
        snapshot(&db.url).await.unwrap(),
        before,
        "a waiting promotion changes nothing"
    );

    // The CLI plans the same deploy into the same database with the same digest.
    let cache = tempfile::tempdir().unwrap();
    let cli = json(&run_ok(switchyard().args([
        "plan",
        "--git",
        &daemon.url("shop"),
        "--ref",
        "main",
        "--path",
        "db",
        "--cache",
        &cache.path().display().to_string(),
        "--db",
        &db.url,
        "--json",
    ])));
    assert_eq!(cli["sourceRevision"], r1.as_str(), "{cli:#}");
    assert_eq!(cli["changes"][0]["id"], plan["changes"][0]["id"]);
    assert_eq!(cli["from"]["catalog"], plan["catalog"]);
    assert_eq!(cli["digest"], d1.as_str(), "CLI {cli:#}\nstatus {plan:#}");
    assert_eq!(
        snapshot(&db.url).await.unwrap(),
        before,
        "plan --db reads only"
    );

    // A new controller computes the same digest.
    controller.kill();
    let controller = env.controller("c2", &[]);
    env.ok(&[
        "annotate",
        "-n",
        &env.ns,
        "promotion/p1",
        "--overwrite",
        "switchyard.dev/requestedAt=after-restart",
    ]);
    let again = eventually(WAIT, "the new controller to look at p1", || {
        let p = env.get("promotion/p1");
        (p["status"]["lastHandledReconcileAt"] == "after-restart"
            && p["status"]["phase"] == "AwaitingApproval")
            .then_some(p)
    });
    assert_eq!(digest(&again), d1, "{}", controller.log());
    assert_waits(&again, "ApprovalPending", &d1);
    assert_eq!(
        events_of(&env, "p1", "ApprovalPending").len(),
        1,
        "one event per transition"
    );

    // An approval of another plan: ApprovalStale, a Warning, nothing changed.
    patch_digest(&env, "promotion/p1", ZEROS);
    let stale = waiting(&env, "promotion/p1", "ApprovalStale");
    assert_eq!(stale["status"]["phase"], "AwaitingApproval");
    assert_waits(&stale, "ApprovalStale", &d1);
    assert!(cond(&stale, "Ready").2.contains(ZEROS));
    let e = event(&env, "p1", "ApprovalStale", &d1);
    assert_eq!(e["type"], "Warning", "{e:#}");
    assert_eq!(
        snapshot(&db.url).await.unwrap(),
        before,
        "a stale approval changes nothing"
    );
    assert!(approvals(&db.url).await.is_empty());

    // ... and of this plan: it runs, and the approval is recorded.
    patch_digest(&env, "promotion/p1", &d1);
    assert!(
        env.wait("promotion/p1", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    let done = env.get("promotion/p1");
    assert_eq!(done["status"]["phase"], "Succeeded");
    let approval = &done["status"]["approval"];
    assert_eq!(approval["digest"], d1.as_str(), "{:#}", done["status"]);
    let by = approval["approvedBy"].as_str().unwrap_or_default();
    assert!(!by.is_empty(), "{approval:#}");
    assert!(approval["approvedAt"].as_str().is_some(), "{approval:#}");
    let recorded = approvals(&db.url).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        recorded[0].starts_with(&format!("{r1}|succeeded|plan {d1} approved by {by} at ")),
        "{recorded:?}"
    );
    assert_eq!(
        one(&db.url, "SELECT count(*)::text FROM api.orders_v").await,
        "0"
    );

    // The next revision is a new plan; `switchyard approve` approves it.
    fx.change(
        "refunds",
        &["schema"],
        "CREATE TABLE shop.refunds (id int PRIMARY KEY);\n",
        "DROP TABLE shop.refunds;\n",
        "SELECT 1 FROM shop.refunds WHERE false;\n",
    );
    work.copy_dir(fx.path(), "db").unwrap();
    let c2 = work.commit("v2").unwrap();
    work.push("main", false).unwrap();
    let r2 = format!("main@sha1:{c2}");
    wait_revision(&env, &r2);
    env.apply(&promotion("p2", &r2));
    let p2 = waiting(&env, "promotion/p2", "ApprovalPending");
    let d2 = digest(&p2);
    assert_ne!(d2, d1);
    let plan2 = &p2["status"]["plan"];
    assert_eq!(plan2["changeCount"], 1);
    assert_eq!(plan2["changes"][0]["name"], "refunds");
    assert_eq!(plan2["registryHead"], plan["changes"][0]["id"], "{plan2:#}");
    assert_eq!(plan2["targetRevision"], r1.as_str(), "{plan2:#}");

    let approve = |extra: &[&str]| {
        let mut c = switchyard();
        c.args(["approve", "promotion/p2", "-n", &env.ns, "--yes"])
            .args(extra)
            .env("KUBECONFIG", env.cluster.kubeconfig())
            .env("USER", "alice");
        e2e::tools::output(&mut c)
    };
    // The digest reviewed must still be the plan's.
    let refused = approve(&["--digest", ZEROS]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&d2),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(env.get("promotion/p2")["spec"]["approvedPlanDigest"].is_null());
    let out = approve(&["--digest", &d2]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&d2) && stdout.contains("refunds"),
        "{stdout}"
    );
    assert!(
        env.wait("promotion/p2", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    let done = env.get("promotion/p2");
    assert_eq!(done["spec"]["approvedPlanDigest"], d2.as_str());
    assert_eq!(done["status"]["approval"]["digest"], d2.as_str());
    assert_eq!(
        done["status"]["approval"]["approvedBy"], "switchyard-approve/alice",
        "{:#}",
        done["status"]
    );
    let recorded = approvals(&db.url).await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(
        recorded[1].starts_with(&format!(
            "{r2}|succeeded|plan {d2} approved by switchyard-approve/alice at "
        )),
        "{recorded:?}"
    );
    assert_eq!(
        one(&db.url, "SELECT count(*)::text FROM shop.refunds").await,
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_plans_go_into_a_config_map_and_auto_deploy_waits_for_each_plan() {
    let env = Env::start();
    let (dev_db, prod_db) = (database().await, database().await);
    env.db_secret("dev-db", &dev_db);
    env.db_secret("prod-db", &prod_db);
    let mut fx = Fixture::new("shop");
    for i in 0..60 {
        fx.table(&format!("t{i:02}"));
    }
    env.project_configmap("shop-files", &fx);
    env.apply(&project_yaml("shop", "shop-files"));
    let gated = "  requireApproval: true\n";
    env.apply(&env_yaml("dev", "shop", "dev-db", true, gated));
    env.apply(&env_yaml("prod", "shop", "prod-db", false, gated));
    let mut controller = env.controller("c1", &[]);
    assert!(
        env.wait("databaseproject/shop", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    let r1 = project_revision(&env);

    // A Promotion's plan of 60 changes: 50 in status, all of it in a ConfigMap.
    env.apply(&promotion("big", &r1));
    let big = waiting(&env, "promotion/big", "ApprovalPending");
    let d = digest(&big);
    let plan = &big["status"]["plan"];
    assert_eq!(plan["changeCount"], 60);
    assert_eq!(plan["changes"].as_array().unwrap().len(), 50);
    assert_eq!(plan["changes"][49]["name"], "t49");
    assert_eq!(plan["configMap"], "promotion-big-plan", "{plan:#}");
    let cm = env.get("configmap/promotion-big-plan");
    let whole: Value = serde_json::from_str(cm["data"]["plan.json"].as_str().unwrap()).unwrap();
    assert_eq!(whole["digest"], d.as_str());
    assert_eq!(whole["changes"].as_array().unwrap().len(), 60);
    assert_eq!(whole["changes"][59]["name"], "t59");
    assert_eq!(whole["sourceRevision"], r1.as_str());
    let owner = &cm["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Promotion", "{cm:#}");
    assert_eq!(owner["name"], "big", "{cm:#}");
    assert!(public_tables(&prod_db.url).await.is_empty());

    // An autoDeploy Environment waits before deploying anything.
    let dev = waiting(&env, "environment/dev", "ApprovalPending");
    let e1 = digest(&dev);
    assert_waits(&dev, "ApprovalPending", &e1);
    assert_eq!(dev["status"]["plan"]["changeCount"], 60);
    assert_eq!(dev["status"]["plan"]["configMap"], "environment-dev-plan");
    let whole: Value = serde_json::from_str(
        env.get("configmap/environment-dev-plan")["data"]["plan.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(whole["digest"], e1.as_str());
    assert_eq!(whole["changes"].as_array().unwrap().len(), 60);
    let e = event(&env, "dev", "ApprovalPending", &e1);
    assert_eq!(e["type"], "Normal", "{e:#}");
    assert!(public_tables(&dev_db.url).await.is_empty());
    // The CLI, given the ConfigMap's revision, plans the same deploy with the same digest.
    let cli = json(&run_ok(switchyard().args([
        "plan",
        "--project",
        &fx.path().display().to_string(),
        "--db",
        &dev_db.url,
        "--revision",
        &r1,
        "--json",
    ])));
    assert_eq!(cli["digest"], e1.as_str(), "{cli:#}");

    // Approved, it deploys, and the plan leaves status.
    patch_digest(&env, "environment/dev", &e1);
    assert!(
        env.wait("environment/dev", "condition=Ready", WAIT),
        "{}",
        controller.log()
    );
    assert_eq!(public_tables(&dev_db.url).await.len(), 60);
    let dev = env.get("environment/dev");
    assert_eq!(dev["status"]["approval"]["digest"], e1.as_str());
    assert!(
        !dev["status"]["approval"]["approvedBy"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{:#}",
        dev["status"]
    );
    assert!(dev["status"]["plan"].is_null(), "{:#}", dev["status"]);
    assert_eq!(approvals(&dev_db.url).await.len(), 1);
    // Up to date with the approval still in its spec, it holds no lock: nothing to deploy.
    std::thread::sleep(Duration::from_millis(1500));
    let dev = env.get("environment/dev");
    assert_eq!(cond(&dev, "Ready").0, "True", "{:#}", dev["status"]);
    assert!(dev["status"]["lockedBy"].is_null(), "{:#}", dev["status"]);

    // A new revision is a new plan: the old approval does not carry over.
    fx.table("t60");
    env.project_configmap("shop-files", &fx);
    let dev = eventually(WAIT, "dev to wait with a new plan", || {
        let dev = env.get("environment/dev");
        (cond(&dev, "Ready").1 == "ApprovalPending"
            && dev["status"]["plan"]["digest"] != e1.as_str())
        .then_some(dev)
    });
    let e2 = digest(&dev);
    assert_waits(&dev, "ApprovalPending", &e2);
    assert_eq!(dev["status"]["plan"]["changeCount"], 1);
    assert_eq!(dev["status"]["plan"]["changes"][0]["name"], "t60");
    assert!(dev["status"]["plan"]["configMap"].is_null());
    assert!(
        dev["status"]["lockedBy"].is_null(),
        "waiting, it holds no lock: {:#}",
        dev["status"]
    );
    // A new plan is a new Event, carrying its own digest.
    event(&env, "dev", "ApprovalPending", &e2);
    assert_eq!(public_tables(&dev_db.url).await.len(), 60);

    // Approved, but a commit lands before the controller acts: the approval is stale,
    // and nothing is deployed. (The controller is down meanwhile, so the order is sure.)
    controller.kill();
    fx.table("t61");
    env.project_configmap("shop-files", &fx);
    patch_digest(&env, "environment/dev", &e2);
    let controller = env.controller("c2", &[]);
    let dev = waiting(&env, "environment/dev", "ApprovalStale");
    let e3 = digest(&dev);
    assert_ne!(e3, e2);
    assert_waits(&dev, "ApprovalStale", &e3);
    assert!(
        cond(&dev, "Ready").2.contains(&e2),
        "names the approved digest too"
    );
    assert_eq!(dev["status"]["plan"]["changeCount"], 2);
    let e = event(&env, "dev", "ApprovalStale", &e3);
    assert_eq!(e["type"], "Warning", "{e:#}");
    assert_eq!(public_tables(&dev_db.url).await.len(), 60);
    assert_eq!(approvals(&dev_db.url).await.len(), 1);

    patch_digest(&env, "environment/dev", &e3);
    eventually(WAIT, "t60 and t61 deployed", || {
        let dev = env.get("environment/dev");
        (cond(&dev, "Ready").0 == "True" && dev["status"]["approval"]["digest"] == e3.as_str())
            .then_some(())
    });
    assert_eq!(public_tables(&dev_db.url).await.len(), 62);
    assert_eq!(approvals(&dev_db.url).await.len(), 2);
    assert!(!controller.log().contains("panicked"));
}
