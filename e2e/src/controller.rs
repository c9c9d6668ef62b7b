//! The controller end to end, shared by the `controller_*` tests: a cluster (the harness, or KUBECONFIG) with the CRDs
//! applied by real kubectl, a random namespace, projects as ConfigMaps, and the real
//! `switchyard controller` as a subprocess.

// NB: test infrastructure: a failed step panics with what went wrong, as a test would.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::apiserver::Cluster;
use crate::tools::{Fixture, switchyard_bin};
use serde_json::Value;

/// The password every test's Secret carries; no log, event or status may show it.
pub const PASSWORD: &str = "Pw-7b3e9c41-never-print-me";

/// A cluster with the CRDs and a namespace.
pub struct Env {
    /// The harness, or the cluster `KUBECONFIG` names.
    pub cluster: Cluster,
    /// The test's own namespace.
    pub ns: String,
    kubectl: PathBuf,
    cache: tempfile::TempDir,
    /// Where controller logs and generated files go.
    pub logs: tempfile::TempDir,
}

impl Env {
    /// Starts (or connects to) a cluster, applies `crds/` with kubectl, creates a namespace.
    pub fn start() -> Env {
        let cluster = crate::apiserver::cluster().unwrap();
        let env = Env {
            cluster,
            ns: format!("sy-{}-{}", std::process::id(), rand_suffix()),
            kubectl: crate::apiserver::testing::kubectl().unwrap(),
            cache: tempfile::tempdir().unwrap(),
            logs: tempfile::tempdir().unwrap(),
        };
        env.ok(&["apply", "-k", &crds_dir().display().to_string()]);
        env.ok(&["create", "namespace", &env.ns]);
        env
    }

    /// A kubectl command against the cluster.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.arg("--kubeconfig")
            .arg(self.cluster.kubeconfig())
            .arg("--cache-dir")
            .arg(self.cache.path());
        c.args(args);
        c.env_remove("KUBECONFIG");
        c
    }

    /// Runs kubectl with `stdin`.
    pub fn run_with(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "$ kubectl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs kubectl.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, "")
    }

    /// Runs kubectl and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -n <ns> -f -` with `yaml`.
    pub fn apply(&self, yaml: &str) {
        let out = self.run_with(&["apply", "-n", &self.ns, "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl get <what> -o json` in the namespace.
    pub fn get(&self, what: &str) -> Value {
        serde_json::from_str(&self.ok(&["get", "-n", &self.ns, what, "-o", "json"])).unwrap()
    }

    /// `kubectl wait --for=<cond> <what>`; true when it returned success.
    pub fn wait(&self, what: &str, cond: &str, timeout: Duration) -> bool {
        let t = format!("--timeout={}s", timeout.as_secs());
        let f = format!("--for={cond}");
        self.run(&["wait", "-n", &self.ns, what, &f, &t])
            .status
            .success()
    }

    /// Writes the project as a ConfigMap holding `project.tar` (the documented layout),
    /// created by `kubectl create configmap --from-file` and applied (create or update).
    pub fn project_configmap(&self, name: &str, fixture: &Fixture) {
        let tar = self.logs.path().join(format!("{name}.tar"));
        let status = Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(fixture.path())
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        let from = format!("--from-file=project.tar={}", tar.display());
        self.create_and_apply(&["configmap", name, &from]);
    }

    /// `kubectl create <what> --dry-run=client -o yaml`, then applied: creates or updates.
    fn create_and_apply(&self, what: &[&str]) {
        let mut args = vec!["create"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-n", &self.ns, "--dry-run=client", "-o", "yaml"]);
        let yaml = self.ok(&args);
        self.apply(&yaml);
    }

    /// A Secret `name` with `literals` and keys read from `files`, created with
    /// `kubectl create secret generic` and applied.
    pub fn secret(&self, name: &str, literals: &[(&str, &str)], files: &[(&str, &Path)]) {
        let mut args = vec!["secret".to_string(), "generic".into(), name.into()];
        args.extend(
            literals
                .iter()
                .map(|(k, v)| format!("--from-literal={k}={v}")),
        );
        args.extend(
            files
                .iter()
                .map(|(k, p)| format!("--from-file={k}={}", p.display())),
        );
        self.create_and_apply(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// A Secret `name` with a `url` key for `url`, with [`PASSWORD`] as the password.
    pub fn db_secret(&self, name: &str, db: &crate::postgres::TestDb) {
        let url = format!(
            "postgres://app:{PASSWORD}@127.0.0.1:{}/{}",
            db.port, db.name
        );
        let from = format!("--from-literal=url={url}");
        self.create_and_apply(&["secret", "generic", name, &from]);
    }

    /// Starts `switchyard controller` for this namespace, logging into `logs/<tag>.log`.
    pub fn controller(&self, tag: &str, extra: &[&str]) -> Controller {
        self.controller_at(tag, extra, self.cluster.kubeconfig())
    }

    /// Like [`Env::controller`], with another kubeconfig (e.g. through a proxy).
    pub fn controller_at(&self, tag: &str, extra: &[&str], kubeconfig: &Path) -> Controller {
        let log = self.logs.path().join(format!("{tag}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let admin_port = free_port();
        let child = Command::new(switchyard_bin())
            .args([
                "controller",
                "--namespace",
                &self.ns,
                "--admin-addr",
                &format!("127.0.0.1:{admin_port}"),
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("SWITCHYARD_LOG", "info,kube=warn,switchyard=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Controller {
            child,
            log,
            admin_port,
        }
    }

    /// Everything a user could see: every CR and event in the namespace, as YAML.
    pub fn visible_state(&self) -> String {
        let mut all = String::new();
        for kind in [
            "databaseprojects",
            "environments",
            "promotions",
            "events",
            "events.events.k8s.io",
        ] {
            all.push_str(&String::from_utf8_lossy(
                &self
                    .run(&["get", "-n", &self.ns, kind, "-o", "yaml"])
                    .stdout,
            ));
        }
        all
    }

    /// Events in the namespace as (reason, message) pairs, as `kubectl get events` (core
    /// `v1`) lists them. The controller writes `events.k8s.io/v1`; both are one store, so
    /// reading both would count each event twice.
    pub fn events(&self) -> Vec<(String, String)> {
        let v: Value = serde_json::from_slice(
            &self
                .run(&["get", "-n", &self.ns, "events", "-o", "json"])
                .stdout,
        )
        .unwrap_or_default();
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let text = |k: &str| item[k].as_str().unwrap_or_default().to_string();
                (text("reason"), text("message"))
            })
            .collect()
    }
}

/// A running controller; killed on drop.
pub struct Controller {
    /// The `switchyard controller` process.
    pub child: Child,
    /// Its log file (stderr and stdout).
    pub log: PathBuf,
    /// Its admin port (`/metrics`, `/healthz`, webhooks).
    pub admin_port: u16,
}

impl Controller {
    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// GETs `path` from the admin port; (status code, body).
    pub fn admin(&self, path: &str) -> (u16, String) {
        self.exchange(
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            &[],
        )
    }

    /// POSTs `body` to `path` on the admin port with `headers`; (status code, body).
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.exchange(&head, body)
    }

    /// One HTTP/1.1 request on the admin port; (status code, body), `(0, "")` when the
    /// port does not answer.
    fn exchange(&self, head: &str, body: &[u8]) -> (u16, String) {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.admin_port)) else {
            return (0, String::new());
        };
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(body);
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    /// The value of a counter (or sum of a labelled family) on `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.admin("/metrics");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.split(['{', ' '])
                    .next()
                    .is_some_and(|n| n == name || n == format!("{name}_total"))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- controller log {}\n{}", self.log.display(), self.log());
        }
    }
}

/// The repository's `crds/` directory.
pub fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:x}", nanos ^ (std::process::id() << 8))
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The condition `type_` of an object's status.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// A fresh database with a login role that has [`PASSWORD`].
pub async fn database() -> crate::postgres::TestDb {
    let db = crate::postgres::server().fresh_db().await.unwrap();
    let admin = crate::postgres::connect(&db.url).await.unwrap();
    let _ = admin
        .batch_execute(&format!(
            "CREATE ROLE app LOGIN SUPERUSER PASSWORD '{PASSWORD}'"
        ))
        .await;
    db
}

/// The project used by the tests: two tables, `users` then `orders`.
pub fn shop() -> Fixture {
    let mut f = Fixture::new("shop");
    f.table("users").table("orders");
    f
}

/// The YAML of a DatabaseProject reading ConfigMap `cm`, and Environments.
pub fn project_yaml(name: &str, cm: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata:\n  name: {name}\nspec:\n  source:\n    configMap:\n      name: {cm}\n"
    )
}

/// The YAML of a DatabaseProject reading git `url` at `reference` (YAML under `ref:`,
/// e.g. `branch: main`), with `extra` lines under `git:`.
pub fn git_project_yaml(
    name: &str,
    url: &str,
    reference: &str,
    interval: &str,
    extra: &str,
) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata:\n  name: {name}\nspec:\n  interval: {interval}\n  source:\n    git:\n      url: {url}\n      ref:\n        {reference}\n{extra}"
    )
}

/// The YAML of an Environment.
pub fn env_yaml(name: &str, project: &str, secret: &str, auto: bool, extra: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: {name}\nspec:\n  projectRef:\n    name: {project}\n  database:\n    secretRef:\n      name: {secret}\n  autoDeploy: {auto}\n  retryInterval: 1s\n{extra}"
    )
}
