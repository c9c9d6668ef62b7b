//! The Helm chart rendered by the real helm (issue #14): `helm lint --strict`, the hardening
//! of the rendered Deployment, every toggle, the values schema refusing wrong types and
//! unknown keys, every value commented, the CRDs equal to `crds/`, and one image name for
//! the chart and `config/manager`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use e2e::chart::{chart_dir, of_kind, render, repo_root, run};
use serde_json::{Value, json};

const EVERY_TOGGLE: &[&str] = &[
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.grafanaDashboard.enabled=true",
    "podDisruptionBudget.enabled=true",
    "networkPolicy.enabled=true",
    "webhook.enabled=true",
    "webhook.secret=s3cret",
];

fn deployment(objects: &[Value]) -> Value {
    let d = of_kind(objects, "Deployment");
    assert_eq!(d.len(), 1);
    d[0].clone()
}

fn container(objects: &[Value]) -> Value {
    deployment(objects)["spec"]["template"]["spec"]["containers"][0].clone()
}

fn args(objects: &[Value]) -> Vec<String> {
    container(objects)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn helm_lint_strict_passes_with_the_defaults_and_with_every_toggle() {
    let chart = chart_dir().display().to_string();
    let (ok, out, err) = run(&["lint", "--strict", &chart]).unwrap();
    assert!(ok, "{out}{err}");
    let mut all = vec!["lint", "--strict", &chart];
    for t in EVERY_TOGGLE {
        all.extend(["--set", t]);
    }
    all.extend(["--set", "watchNamespaces[0]=apps"]);
    let (ok, out, err) = run(&all).unwrap();
    assert!(ok, "{out}{err}");
}

#[test]
fn the_default_deployment_is_hardened() {
    let objects = render(&[]).unwrap();
    let d = deployment(&objects);
    assert_eq!(d["spec"]["replicas"], 1);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = container(&objects);
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(c["resources"]["requests"]["memory"].is_string(), "{c:#}");
    assert!(c["resources"]["limits"]["memory"].is_string(), "{c:#}");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    assert_eq!(c["ports"][0]["name"], "admin");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    // Everything it writes goes to volumes: the git cache and /tmp.
    let mounts: BTreeSet<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(mounts, BTreeSet::from(["/tmp", "/work"]));
    for v in pod["volumes"].as_array().unwrap() {
        assert!(v["emptyDir"].is_object(), "{v}");
    }
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    let app_version = chart["appVersion"].as_str().unwrap();
    assert_eq!(
        c["image"],
        format!("ghcr.io/switchyard-dev/switchyard:{app_version}")
    );
    let a = args(&objects);
    assert_eq!(a[0], "controller");
    assert!(a.contains(&"--leader-elect".to_string()), "{a:?}");
    assert!(a.contains(&"--workdir=/work".to_string()), "{a:?}");
    assert!(!a.iter().any(|x| x.starts_with("--namespace")), "{a:?}");
    for off in [
        "ServiceMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Secret",
    ] {
        assert!(of_kind(&objects, off).is_empty(), "{off} is off by default");
    }
    let crds = of_kind(&objects, "CustomResourceDefinition");
    assert_eq!(crds.len(), 3);
    for crd in crds {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{}",
            crd["metadata"]["name"]
        );
    }
    assert_eq!(of_kind(&objects, "ClusterRoleBinding").len(), 1);
    assert_eq!(of_kind(&objects, "Service").len(), 1);
}

#[test]
fn crds_enabled_and_keep_turn_the_crds_and_their_keep_annotation_off() {
    let objects = render(&["crds.enabled=false"]).unwrap();
    assert!(of_kind(&objects, "CustomResourceDefinition").is_empty());
    let objects = render(&["crds.keep=false"]).unwrap();
    let crds = of_kind(&objects, "CustomResourceDefinition");
    assert_eq!(crds.len(), 3);
    for crd in crds {
        assert!(crd["metadata"]["annotations"].is_null(), "{crd}");
    }
}

#[test]
fn every_toggle_renders_what_it_says() {
    let mut sets = EVERY_TOGGLE.to_vec();
    sets.extend([
        "replicaCount=2",
        "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "workdir.persistentVolumeClaim.claimName=git-cache",
        "serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account=sy@p.iam.gserviceaccount.com",
        "extraEnv[0].name=HTTPS_PROXY",
        "extraEnv[0].value=http://proxy:3128",
        "extraVolumes[0].name=ca",
        "extraVolumes[0].configMap.name=ca",
        "extraVolumeMounts[0].name=ca",
        "extraVolumeMounts[0].mountPath=/etc/ssl/custom",
        "nodeSelector.disk=ssd",
        "tolerations[0].key=db",
        "tolerations[0].operator=Exists",
        "priorityClassName=critical",
        "podAnnotations.a=b",
        "logLevel=debug",
        "logFormat=text",
    ]);
    let objects = render(&sets).unwrap();
    for kind in [
        "ServiceMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Secret",
        "ConfigMap",
    ] {
        assert_eq!(of_kind(&objects, kind).len(), 1, "{kind}");
    }
    let d = deployment(&objects);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(pod["priorityClassName"], "critical");
    assert_eq!(pod["nodeSelector"]["disk"], "ssd");
    assert_eq!(pod["tolerations"][0]["key"], "db");
    assert_eq!(d["spec"]["template"]["metadata"]["annotations"]["a"], "b");
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"] == "git-cache")
    );
    let c = container(&objects);
    assert!(
        c["image"]
            .as_str()
            .unwrap()
            .ends_with("@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    );
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "HTTPS_PROXY")
    );
    let a = args(&objects);
    for want in [
        "--log-level=debug",
        "--log-format=text",
        "--webhook-secret-file=/etc/switchyard/webhook/secret",
    ] {
        assert!(a.contains(&want.to_string()), "{a:?}");
    }
    let sa = &of_kind(&objects, "ServiceAccount")[0];
    assert_eq!(
        sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        "sy@p.iam.gserviceaccount.com"
    );
    let dashboard = &of_kind(&objects, "ConfigMap")[0];
    let json: Value =
        serde_json::from_str(dashboard["data"]["switchyard.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "switchyard");
}

#[test]
fn watch_namespaces_and_leader_election_shape_the_rbac() {
    // One namespace: a Role and RoleBinding there, nothing cluster-wide for the controller.
    let objects = render(&["watchNamespaces[0]=apps"]).unwrap();
    assert!(args(&objects).contains(&"--namespace=apps".to_string()));
    let grants = e2e::chart::grants(&objects, "sy-switchyard");
    assert!(!grants.is_empty());
    assert!(
        grants
            .iter()
            .all(|g| g.namespace == "apps" || g.namespace == "switchyard-system"),
        "{grants:?}"
    );
    assert!(of_kind(&objects, "ClusterRoleBinding").is_empty());
    let objects = render(&["leaderElection.enabled=false"]).unwrap();
    assert!(!args(&objects).contains(&"--leader-elect".to_string()));
    assert!(
        !e2e::chart::grants(&objects, "sy-switchyard")
            .iter()
            .any(|g| g.resource == "leases")
    );
}

#[test]
fn the_schema_refuses_wrong_types_unknown_keys_and_latest() {
    for (set, why) in [
        ("replicaCount=two", "replicaCount"),
        ("bogus=1", "bogus"),
        ("image.bogus=1", "bogus"),
        ("image.tag=latest", "tag"),
        ("crds.enabled=yes please", "enabled"),
        ("logFormat=xml", "logFormat"),
        ("metrics.serviceMonitor.enable=true", "enable"),
    ] {
        let err = render(&[set]).unwrap_err().to_string();
        assert!(err.contains(why), "{set}: {err}");
    }
}

/// Key paths of a values.yaml, each with whether a comment line is right above it.
fn keys_with_comments(text: &str) -> Vec<(String, bool)> {
    let mut stack: Vec<(usize, String)> = vec![];
    let mut out = vec![];
    let mut commented = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            commented = true;
            continue;
        }
        let indent = line.len() - trimmed.len();
        let Some((key, _)) = trimmed.split_once(':') else {
            commented = false;
            continue;
        };
        if key.is_empty() || key.contains(' ') || trimmed.starts_with('-') {
            commented = false;
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).chain([key]).collect();
        out.push((path.join("."), commented));
        stack.push((indent, key.to_string()));
        commented = false;
    }
    out
}

/// Leaf paths the schema declares (an object with `properties` is not a leaf).
fn schema_leaves(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    for (k, v) in schema["properties"].as_object().into_iter().flatten() {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if v["properties"].is_object() {
            schema_leaves(v, &path, out);
        } else {
            out.insert(path);
        }
    }
}

#[test]
fn every_value_is_commented_and_declared_in_the_schema() {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap(),
    )
    .unwrap();
    let mut leaves = BTreeSet::new();
    schema_leaves(&schema, "", &mut leaves);
    leaves.remove("global");
    let keys = keys_with_comments(&text);
    let in_values: BTreeSet<String> = keys
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| leaves.contains(k))
        .collect();
    assert_eq!(
        in_values, leaves,
        "values.yaml and values.schema.json name the same values"
    );
    for (key, commented) in &keys {
        if leaves.contains(key) {
            assert!(commented, "{key} has no comment in values.yaml");
        }
    }
}

#[test]
fn the_chart_crds_are_the_generated_crds() {
    let objects = render(&[]).unwrap();
    let mut rendered: Vec<Value> = of_kind(&objects, "CustomResourceDefinition")
        .into_iter()
        .cloned()
        .collect();
    rendered.sort_by_key(|c| c["metadata"]["name"].as_str().unwrap().to_string());
    let mut generated = vec![];
    for entry in std::fs::read_dir(repo_root().join("crds")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("switchyard.dev_")
        {
            generated
                .extend(e2e::chart::parse_docs(&std::fs::read_to_string(path).unwrap()).unwrap());
        }
    }
    generated.sort_by_key(|c| c["metadata"]["name"].as_str().unwrap().to_string());
    assert_eq!(rendered.len(), generated.len());
    for (r, g) in rendered.iter().zip(&generated) {
        assert_eq!(r["metadata"]["name"], g["metadata"]["name"]);
        assert_eq!(r["spec"], g["spec"], "{}", g["metadata"]["name"]);
    }
}

#[test]
fn config_manager_and_the_chart_name_the_same_image() {
    let kustomization: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("config/manager/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    let image = &kustomization["images"][0];
    assert_eq!(image["newName"], values["image"]["repository"]);
    assert_eq!(image["newTag"], chart["appVersion"]);
    let deployment =
        std::fs::read_to_string(repo_root().join("config/manager/deployment.yaml")).unwrap();
    assert!(
        deployment.contains(&format!("image: {}", image["name"].as_str().unwrap())),
        "the kustomize image entry names the Deployment's image"
    );
    assert_eq!(
        chart["appVersion"],
        format!("v{}", env!("CARGO_PKG_VERSION")),
        "the chart's appVersion is the crate's version"
    );
}
