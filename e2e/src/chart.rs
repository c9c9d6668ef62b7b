//! The Helm chart (`charts/switchyard`) for tests: the real `helm` (the pinned one
//! `scripts/install-deps` puts in place), rendering into objects, and reading the RBAC rules a
//! rendering grants. Never a fake helm: tests fail, not skip, without one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/switchyard")
}

/// The helm to test with: `$HELM`, else `/usr/local/bin/helm` (scripts/install-deps), else
/// `helm` on PATH; it must be helm 4.
pub fn helm() -> anyhow::Result<PathBuf> {
    let candidates = [
        std::env::var_os("HELM").map(PathBuf::from),
        Some(PathBuf::from("/usr/local/bin/helm")),
        Some(PathBuf::from("helm")),
    ];
    for path in candidates.into_iter().flatten() {
        let Ok(out) = Command::new(&path).args(["version", "--short"]).output() else {
            continue;
        };
        if String::from_utf8_lossy(&out.stdout).starts_with("v4.") {
            return Ok(path);
        }
    }
    bail!("no helm 4 found: run scripts/install-deps or set HELM")
}

/// A helm command with its own cache, config and data homes (never the user's), against
/// `kubeconfig` when given.
pub fn command(kubeconfig: Option<&Path>) -> anyhow::Result<Command> {
    let mut c = Command::new(helm()?);
    let home = std::env::temp_dir().join("switchyard-helm");
    c.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    if let Some(kc) = kubeconfig {
        c.arg("--kubeconfig").arg(kc).env_remove("KUBECONFIG");
    }
    Ok(c)
}

/// Runs helm with `args`; (success, stdout, stderr).
pub fn run(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = command(None)?.args(args).output().context("running helm")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `helm template` of the chart with `--set` values; the rendered objects.
pub fn render(sets: &[&str]) -> anyhow::Result<Vec<Value>> {
    let chart = chart_dir().display().to_string();
    let mut args = vec!["template", "sy", &chart, "--namespace", "switchyard-system"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let (ok, out, err) = run(&args)?;
    if !ok {
        bail!("helm template failed: {err}");
    }
    parse_docs(&out)
}

/// Multi-document YAML into objects, empty documents dropped.
pub fn parse_docs(text: &str) -> anyhow::Result<Vec<Value>> {
    Ok(serde_saphyr::from_str_multiple::<Value, Vec<Value>>(text)?
        .into_iter()
        .filter(|v| v.is_object())
        .collect())
}

/// The objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// One RBAC grant: `verb` on `group`/`resource` (`resource/subresource`), in `namespace`
/// (empty: every namespace, from a ClusterRole bound by a ClusterRoleBinding).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grant {
    /// Namespace, empty for cluster-wide.
    pub namespace: String,
    /// API group.
    pub group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// Verb.
    pub verb: String,
}

/// What the rendered roles bound to ServiceAccount `sa` grant, one [`Grant`] per verb.
pub fn grants(objects: &[Value], sa: &str) -> Vec<Grant> {
    let bound = |kind: &str| -> Vec<(String, String)> {
        of_kind(objects, kind)
            .into_iter()
            .filter(|b| {
                b["subjects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa)
            })
            .map(|b| {
                (
                    b["roleRef"]["name"].as_str().unwrap_or("").to_string(),
                    b["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect()
    };
    let mut out = vec![];
    for (binding, role_kind) in [
        ("ClusterRoleBinding", "ClusterRole"),
        ("RoleBinding", "Role"),
    ] {
        for (role, ns) in bound(binding) {
            let Some(r) = of_kind(objects, role_kind).into_iter().find(|r| {
                r["metadata"]["name"] == role.as_str()
                    && (role_kind == "ClusterRole"
                        || r["metadata"]["namespace"].as_str().unwrap_or("") == ns)
            }) else {
                continue;
            };
            for rule in r["rules"].as_array().into_iter().flatten() {
                let list = |k: &str| -> Vec<String> {
                    rule[k]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                };
                for group in list("apiGroups") {
                    for resource in list("resources") {
                        for verb in list("verbs") {
                            out.push(Grant {
                                namespace: ns.clone(),
                                group: group.clone(),
                                resource: resource.clone(),
                                verb,
                            });
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
