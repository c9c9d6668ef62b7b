//! The chart installed, upgraded and uninstalled by the real helm on the e2e API server (or
//! the cluster KUBECONFIG names), with every toggle on (issue #14): the objects appear, an
//! upgrade changes them, and an uninstall removes them but keeps the CRDs and the users'
//! resources.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use e2e::chart::chart_dir;
use serde_json::Value;

const NS: &str = "switchyard-system";

/// stdout then stderr, echoed for the test's log.
fn text(args: &[&str], out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("$ {}\n{text}", args.join(" "));
    text
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(e2e::apiserver::testing::kubectl().unwrap())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    (out.status.success(), text(args, &out))
}

fn get(kubeconfig: &Path, what: &str, ns: &str) -> Option<Value> {
    let (ok, text) = kubectl(kubeconfig, &["get", "-n", ns, what, "-o", "json"]);
    ok.then(|| serde_json::from_str(text.trim_end_matches(|c: char| c != '}')).unwrap())
}

fn helm_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = e2e::chart::command(Some(kubeconfig))
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    let text = text(args, &out);
    assert!(out.status.success(), "helm {args:?} failed:\n{text}");
    text
}

#[test]
fn install_upgrade_and_uninstall_keep_the_crds_and_the_users_resources() {
    let cluster = e2e::apiserver::cluster().unwrap();
    let kc = cluster.kubeconfig();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let monitoring = fixtures.join("monitoring-crds.yaml").display().to_string();
    assert!(kubectl(kc, &["apply", "-f", &monitoring]).0);
    let chart = chart_dir().display().to_string();
    let toggles = [
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.grafanaDashboard.enabled=true",
        "--set",
        "podDisruptionBudget.enabled=true",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "webhook.enabled=true",
        "--set",
        "webhook.secret=s3cret",
    ];
    let mut install = vec!["install", "sy", &chart, "-n", NS, "--create-namespace"];
    install.extend(toggles);
    helm_ok(kc, &install);

    assert_installed(kc);
    let deployment = get(kc, "deployment/sy-switchyard", NS).unwrap();
    assert_eq!(deployment["spec"]["replicas"], 1);
    users_environment(kc);
    upgrade(kc, &chart, &toggles);
    uninstall(kc);
}

/// Every object the toggles ask for exists.
fn assert_installed(kc: &Path) {
    for (what, ns) in [
        ("deployment/sy-switchyard", NS),
        ("serviceaccount/sy-switchyard", NS),
        ("service/sy-switchyard-metrics", NS),
        ("secret/sy-switchyard-webhook", NS),
        ("configmap/sy-switchyard-dashboard", NS),
        ("servicemonitor/sy-switchyard", NS),
        ("prometheusrule/sy-switchyard", NS),
        ("poddisruptionbudget/sy-switchyard", NS),
        ("networkpolicy/sy-switchyard", NS),
        ("role/sy-switchyard-leader-election", NS),
        ("clusterrole/sy-switchyard", ""),
        ("clusterrolebinding/sy-switchyard", ""),
        ("crd/environments.switchyard.dev", ""),
    ] {
        assert!(get(kc, what, ns).is_some(), "{what} was not installed");
    }
}

/// A user's resource, through the CRD the chart installed.
fn users_environment(kc: &Path) {
    let env = "apiVersion: switchyard.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: dev\nspec:\n  projectRef:\n    name: shop\n  database:\n    secretRef:\n      name: dev-db\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), env).unwrap();
    let path = file.path().display().to_string();
    assert!(kubectl(kc, &["apply", "-n", "default", "-f", &path]).0);
}

/// More replicas and one toggle off.
fn upgrade(kc: &Path, chart: &str, toggles: &[&str]) {
    let mut upgrade = vec![
        "upgrade",
        "sy",
        chart,
        "-n",
        NS,
        "--set",
        "replicaCount=2",
        "--set",
        "networkPolicy.enabled=false",
    ];
    upgrade.extend(&toggles[..8]);
    upgrade.extend([
        "--set",
        "webhook.enabled=true",
        "--set",
        "webhook.secret=s3cret",
    ]);
    helm_ok(kc, &upgrade);
    let deployment = get(kc, "deployment/sy-switchyard", NS).unwrap();
    assert_eq!(
        deployment["spec"]["replicas"], 2,
        "the upgrade changed the Deployment"
    );
    assert!(
        get(kc, "networkpolicy/sy-switchyard", NS).is_none(),
        "turning a toggle off removes its object"
    );
    let history = helm_ok(kc, &["history", "sy", "-n", NS]);
    assert!(history.lines().count() >= 3, "{history}");
}

/// Everything goes but the CRDs and what users made with them.
fn uninstall(kc: &Path) {
    helm_ok(kc, &["uninstall", "sy", "-n", NS]);
    for what in [
        "deployment/sy-switchyard",
        "service/sy-switchyard-metrics",
        "serviceaccount/sy-switchyard",
    ] {
        assert!(get(kc, what, NS).is_none(), "{what} survived the uninstall");
    }
    assert!(get(kc, "clusterrole/sy-switchyard", "").is_none());
    for crd in ["databaseprojects", "environments", "promotions"] {
        assert!(
            get(kc, &format!("crd/{crd}.switchyard.dev"), "").is_some(),
            "crd {crd} was deleted by the uninstall"
        );
    }
    assert!(
        get(kc, "environment/dev", "default").is_some(),
        "the user's Environment was deleted by the uninstall"
    );
}
