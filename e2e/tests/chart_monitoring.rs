//! The chart's alerts and dashboard query only what the controller exports (issue #14):
//! every `switchyard_*` series in the PrometheusRule and the Grafana dashboard is a family
//! the real controller serves on /metrics, with the suffix its type gives it, after a run
//! that deploys, fails a deploy, promotes and refuses a webhook; the series the main alerts
//! select carry the labels they select on.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e::chart::{of_kind, render};
use e2e::controller::*;

/// Every `switchyard_…` name in `text`.
fn queried(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"switchyard_[a-z_]+").unwrap();
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

/// The families /metrics declares, by `# TYPE` line: name → type.
fn families(metrics: &str) -> BTreeMap<String, String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// Whether a queried series name is a sample of a declared family of the right type.
fn exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    let of = |base: &str, kind: &str| families.get(base).is_some_and(|t| t == kind);
    if let Some(base) = name.strip_suffix("_total") {
        return of(base, "counter");
    }
    ["_bucket", "_sum", "_count"].iter().any(|s| {
        name.strip_suffix(s)
            .is_some_and(|base| of(base, "histogram"))
    }) || of(name, "gauge")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_query_metrics_the_controller_exports() {
    let env = Env::start();
    let (dev_db, prod_db) = (database().await, database().await);
    env.db_secret("dev-db", &dev_db);
    env.db_secret("prod-db", &prod_db);
    let mut project = shop();
    env.project_configmap("shop-files", &project);
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&env_yaml("dev", "shop", "dev-db", true, ""));
    env.apply(&env_yaml("prod", "shop", "prod-db", false, ""));
    let secret = env.logs.path().join("webhook");
    std::fs::write(&secret, "s3cret").unwrap();
    let controller = env.controller("c", &["--webhook-secret-file", secret.to_str().unwrap()]);
    let minute = Duration::from_secs(60);
    assert!(
        env.wait("environment/dev", "condition=Ready", minute),
        "{}",
        controller.log()
    );
    env.apply("apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: p\nspec:\n  from:\n    environment: dev\n  to:\n    environment: prod\n");
    assert!(
        env.wait("promotion/p", "condition=Ready", minute),
        "{}",
        controller.log()
    );
    project.change(
        "broken",
        &[],
        "SELECT * FROM no_such_table;\n",
        "SELECT 1;\n",
        "SELECT 1;\n",
    );
    env.project_configmap("shop-files", &project);
    assert!(
        env.wait("environment/dev", "condition=Stalled", minute),
        "{}",
        controller.log()
    );

    // An unsigned webhook is refused, and counted.
    let (code, _) = controller.post("/hooks/generic", &[], br#"{"url": "x", "ref": "main"}"#);
    assert_eq!(code, 401);

    let (code, metrics) = controller.admin("/metrics");
    assert_eq!(code, 200);
    let families = families(&metrics);
    let objects = render(&[
        "metrics.prometheusRule.enabled=true",
        "metrics.grafanaDashboard.enabled=true",
    ])
    .unwrap();
    let rules = serde_json::to_string(&of_kind(&objects, "PrometheusRule")[0]["spec"]).unwrap();
    let dashboard = of_kind(&objects, "ConfigMap")[0]["data"]["switchyard.json"]
        .as_str()
        .unwrap()
        .to_string();
    let names: BTreeSet<String> = queried(&rules)
        .into_iter()
        .chain(queried(&dashboard))
        .collect();
    assert!(names.len() >= 8, "{names:?}");
    let missing: Vec<&String> = names.iter().filter(|n| !exported(n, &families)).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\n{metrics}"
    );

    // The series the main alerts select on were really produced by this run.
    for sample in [
        r#"switchyard_reconcile_failures_total{kind="Environment",reason="DeployFailed"}"#,
        r#"switchyard_promotions_total{result="succeeded"}"#,
        r#"switchyard_reconcile_runs_total{kind="Environment"}"#,
    ] {
        assert!(
            metrics.contains(sample),
            "{sample} missing from:\n{metrics}"
        );
    }
}

#[test]
fn a_misspelt_or_wrongly_suffixed_metric_is_not_exported() {
    let families = families(
        "# TYPE switchyard_promotions counter\n# TYPE switchyard_reconcile_duration_seconds histogram\n",
    );
    assert!(exported("switchyard_promotions_total", &families));
    assert!(exported(
        "switchyard_reconcile_duration_seconds_bucket",
        &families
    ));
    assert!(!exported("switchyard_promotion_total", &families));
    assert!(!exported("switchyard_promotions", &families));
    assert!(!exported(
        "switchyard_reconcile_duration_seconds_total",
        &families
    ));
}
