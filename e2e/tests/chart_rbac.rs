//! The chart's RBAC is exactly what the controller uses (issue #14): every API call the
//! controller (User-Agent `switchyard/…`) made during a whole e2e run is allowed by the
//! rules the chart renders, cluster-wide and per namespace, and every rule was used.
//!
//! The calls come from `$KUBE_HARNESS_REQUEST_LOG`, which every harness of the run appends
//! to; `scripts/test` sets it for the suite and runs this test after it. Run on its own it
//! has no log to read, so it is ignored unless asked for (`-- --ignored`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use e2e::apiserver::requests::{self, Request};
use e2e::chart::{Grant, grants, render};

/// Where the chart's leader Lease lives (the release namespace in `render`).
const RELEASE_NS: &str = "switchyard-system";
const SA: &str = "sy-switchyard";

/// The controller's calls as (verb, group, resource[/subresource], namespace), with the
/// Lease's namespace moved to the release's and every other namespace to `watched` (None:
/// kept as recorded). With `watched`, cluster-wide calls are left out: only a controller
/// watching every namespace makes them, and it runs with the cluster-wide rules.
fn controller_calls(
    log: &[Request],
    watched: Option<&str>,
) -> BTreeSet<(String, String, String, String)> {
    log.iter()
        .filter(|r| r.user_agent.starts_with("switchyard/"))
        .filter(|r| watched.is_none() || !r.namespace.is_empty() || r.resource == "leases")
        .map(|r| {
            let resource = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            let ns = match (r.resource.as_str(), watched) {
                ("leases", _) => RELEASE_NS.to_string(),
                (_, Some(w)) if !r.namespace.is_empty() => w.to_string(),
                _ => r.namespace.clone(),
            };
            (r.verb.clone(), r.group.clone(), resource, ns)
        })
        .collect()
}

fn allowing<'a>(
    grants: &'a [Grant],
    (verb, group, resource, ns): &(String, String, String, String),
) -> Option<&'a Grant> {
    grants.iter().find(|g| {
        g.verb == *verb
            && g.group == *group
            && g.resource == *resource
            && (g.namespace.is_empty() || g.namespace == *ns)
    })
}

/// Fails on a call no grant allows and on a grant no call used.
fn check(grants: &[Grant], calls: &BTreeSet<(String, String, String, String)>, mode: &str) {
    let denied: Vec<_> = calls
        .iter()
        .filter(|c| allowing(grants, c).is_none())
        .collect();
    assert!(
        denied.is_empty(),
        "{mode}: the chart does not allow these calls the controller made: {denied:#?}"
    );
    let used: BTreeSet<&Grant> = calls.iter().filter_map(|c| allowing(grants, c)).collect();
    let unused: Vec<_> = grants.iter().filter(|g| !used.contains(g)).collect();
    assert!(
        unused.is_empty(),
        "{mode}: the chart grants what the controller never used: {unused:#?}"
    );
}

#[test]
#[ignore = "needs the request log of a whole e2e run: scripts/test runs it after the suite"]
fn the_chart_grants_exactly_what_the_controller_used_in_the_e2e_suite() {
    let path = std::env::var_os(requests::LOG_ENV)
        .unwrap_or_else(|| panic!("set {} to the request log of an e2e run", requests::LOG_ENV));
    let log = requests::read_file(std::path::Path::new(&path)).unwrap();
    let calls = controller_calls(&log, None);
    // A log without the controller's own calls would pass vacuously.
    for must in [
        ("patch", "switchyard.dev", "environments/status"),
        ("create", "events.k8s.io", "events"),
        ("update", "coordination.k8s.io", "leases"),
    ] {
        assert!(
            calls
                .iter()
                .any(|(v, g, r, _)| (v.as_str(), g.as_str(), r.as_str()) == must),
            "the log has no {must:?} by the controller: was the whole suite run with {}?",
            requests::LOG_ENV
        );
    }

    let cluster_wide = grants(&render(&[]).unwrap(), SA);
    check(&cluster_wide, &calls, "cluster-wide");

    let namespaced = grants(&render(&["watchNamespaces[0]=apps"]).unwrap(), SA);
    assert!(namespaced.iter().all(|g| !g.namespace.is_empty()));
    check(
        &namespaced,
        &controller_calls(&log, Some("apps")),
        "watchNamespaces",
    );
}

#[test]
fn a_call_outside_the_rules_or_a_rule_never_used_fails_the_check() {
    let log = |verb: &str, resource: &str| Request {
        verb: verb.into(),
        group: "switchyard.dev".into(),
        resource: resource.into(),
        subresource: String::new(),
        namespace: "apps".into(),
        user_agent: "switchyard/0.1.0".into(),
    };
    let grant = |verb: &str| Grant {
        namespace: String::new(),
        group: "switchyard.dev".into(),
        resource: "environments".into(),
        verb: verb.into(),
    };
    let calls = controller_calls(&[log("get", "environments")], None);
    check(&[grant("get")], &calls, "exact");
    let denied = std::panic::catch_unwind(|| check(&[grant("list")], &calls, "denied"));
    assert!(denied.is_err(), "a call no rule allows must fail");
    let unused =
        std::panic::catch_unwind(|| check(&[grant("get"), grant("delete")], &calls, "unused"));
    assert!(unused.is_err(), "a rule no call used must fail");
    let mut kubectl = log("delete", "environments");
    kubectl.user_agent = "kubectl/v1.37.1".into();
    assert!(
        controller_calls(&[kubectl], None).is_empty(),
        "only the controller's calls count"
    );
}

#[test]
fn config_rbac_grants_what_the_chart_grants() {
    let mut objects = vec![];
    for f in [
        "role.yaml",
        "role_binding.yaml",
        "leader_election_role.yaml",
    ] {
        let path = e2e::chart::repo_root().join("config/rbac").join(f);
        objects.extend(e2e::chart::parse_docs(&std::fs::read_to_string(path).unwrap()).unwrap());
    }
    let rules = |grants: Vec<Grant>| -> BTreeSet<(String, String, String)> {
        grants
            .into_iter()
            .map(|g| (g.group, g.resource, g.verb))
            .collect()
    };
    let kustomize = rules(grants(&objects, "switchyard-controller"));
    let chart = rules(grants(&render(&[]).unwrap(), SA));
    assert!(!chart.is_empty());
    assert_eq!(
        kustomize, chart,
        "config/rbac and the chart grant the controller the same"
    );
}
