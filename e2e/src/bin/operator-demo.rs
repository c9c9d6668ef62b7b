//! The README's first command (`scripts/demo`): the operator at work, locally, with no
//! cluster. A throwaway PostgreSQL, a git server holding examples/shop, the e2e API server
//! standing in for Kubernetes and the real `switchyard controller`; the samples applied with
//! the real kubectl. dev deploys by itself, a Promotion stages and swaps into prod, a broken
//! push fails on dev naming its file and line and is rolled back while prod stays put.
//! Every step waits for the state it shows and fails loudly when it is not reached; every
//! process it starts stops with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use e2e::apiserver::ApiServer;
use e2e::git::{GitDaemon, Repos, Work};

const PASSWORD: &str = "demo-password-never-shown";
const WAIT: &str = "--timeout=120s";

struct Demo {
    root: PathBuf,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    /// Holds the controller's log and cache, and the manifests applied.
    work: PathBuf,
    controller: Option<Child>,
    log: PathBuf,
    started: Instant,
}

impl Demo {
    /// Prints and runs `kubectl args`; its output, or an error with it.
    fn kubectl(&self, args: &[&str]) -> Result<String> {
        println!("\x1b[1m$ kubectl {}\x1b[0m", args.join(" "));
        self.kubectl_quiet(args, true)
    }

    fn kubectl_quiet(&self, args: &[&str], show: bool) -> Result<String> {
        let out = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(&self.root)
            .env_remove("KUBECONFIG")
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if show {
            print!("{text}");
        }
        if !out.status.success() {
            bail!(
                "kubectl {} failed:\n{text}\n--- controller log\n{}",
                args.join(" "),
                self.log_tail()
            );
        }
        Ok(text)
    }

    fn apply(&self, what: &str, yaml: &str) -> Result<()> {
        let file = self.work.join(format!("{what}.yaml"));
        std::fs::write(&file, yaml)?;
        println!("\x1b[1m$ kubectl apply -f - <<EOF\x1b[0m\n{}EOF", yaml);
        self.kubectl_quiet(&["apply", "-f", file.to_str().unwrap_or_default()], true)?;
        Ok(())
    }

    fn jsonpath(&self, what: &str, path: &str) -> Result<String> {
        self.kubectl_quiet(&["get", what, "-o", &format!("jsonpath={path}")], false)
    }

    /// Polls until `what`'s `path` equals `want`.
    fn until(&self, what: &str, path: &str, want: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if self.jsonpath(what, path)? == want {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!(
            "{what} never had {path} = {want}\n--- controller log\n{}",
            self.log_tail()
        )
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(self.work.join("controller.stderr")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn step(&self, title: &str) {
        println!(
            "\n\x1b[1;34m== {title}\x1b[0m  ({:.0}s)",
            self.started.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(c) = &mut self.controller {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The project from `examples/shop` in a fresh repository served by `git daemon`.
fn git_server(root: &Path) -> Result<(Repos, GitDaemon, Work)> {
    let repos = Repos::new()?;
    let daemon = GitDaemon::start(repos.root())?;
    let mut work = repos.create("shop")?;
    work.copy_dir(&root.join("examples/shop"), "")?;
    work.commit("The shop project")?;
    work.push("main", false)?;
    Ok((repos, daemon, work))
}

/// Two databases with a login role the Secrets name.
async fn databases() -> Result<(String, String, u16)> {
    let server = e2e::postgres::server();
    let admin = e2e::postgres::connect(&server.url("postgres")).await?;
    // NB: one statement per call: CREATE DATABASE refuses to run in a transaction.
    for sql in [
        format!("CREATE ROLE app LOGIN SUPERUSER PASSWORD '{PASSWORD}'"),
        "CREATE DATABASE shop_dev OWNER app".into(),
        "CREATE DATABASE shop_prod OWNER app".into(),
    ] {
        admin.batch_execute(&sql).await?;
    }
    let url = |db: &str| format!("postgres://app:{PASSWORD}@127.0.0.1:{}/{db}", server.port());
    Ok((url("shop_dev"), url("shop_prod"), server.port()))
}

/// Starts `switchyard controller` (it needs the CRDs installed).
fn start_controller(demo: &mut Demo) -> Result<()> {
    let child = Command::new(e2e::tools::switchyard_bin())
        .args([
            "controller",
            "--namespace",
            "default",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--workdir")
        .arg(demo.work.join("cache"))
        .env("KUBECONFIG", &demo.kubeconfig)
        .current_dir(&demo.root)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&demo.log)?)
        .stderr(std::fs::File::create(demo.work.join("controller.stderr"))?)
        .spawn()
        .context("starting switchyard controller")?;
    demo.controller = Some(child);
    println!(
        "\x1b[1m$ switchyard controller --namespace default\x1b[0m  (log: {})",
        demo.log.display()
    );
    Ok(())
}

fn install(demo: &mut Demo, dev: &str, prod: &str, git_url: &str) -> Result<()> {
    demo.step("Install the CRDs, start the controller, apply the Secrets and the samples");
    demo.kubectl(&["apply", "-k", "config/crd"])?;
    start_controller(demo)?;
    for (name, url) in [("shop-dev-db", dev), ("shop-prod-db", prod)] {
        println!(
            "\x1b[1m$ kubectl create secret generic {name} --from-literal=url={}\x1b[0m",
            url.replace(PASSWORD, "***")
        );
        let literal = format!("--from-literal=url={url}");
        demo.kubectl_quiet(&["create", "secret", "generic", name, &literal], false)?;
    }
    // config/samples/switchyard_v1alpha1_databaseproject_git.yaml, pointed at the local
    // git server.
    demo.apply(
        "project",
        &format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata:\n  name: shop\nspec:\n  interval: 5m\n  source:\n    git:\n      url: {git_url}\n      ref:\n        branch: main\n"
        ),
    )?;
    demo.kubectl(&[
        "apply",
        "-f",
        "config/samples/switchyard_v1alpha1_environment.yaml",
    ])?;
    Ok(())
}

fn dev_deploys(demo: &Demo) -> Result<()> {
    demo.step("dev deploys the project by itself (autoDeploy); prod waits for a Promotion");
    demo.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "databaseproject/shop",
        "environment/shop-dev",
        WAIT,
    ])?;
    demo.kubectl(&["get", "databaseprojects,environments"])?;
    Ok(())
}

fn promote(demo: &Demo) -> Result<()> {
    demo.step("A Promotion stages prod's views blue/green, verifies them and swaps them in");
    demo.kubectl(&[
        "apply",
        "-f",
        "config/samples/switchyard_v1alpha1_promotion.yaml",
    ])?;
    demo.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "promotion/shop-dev-to-prod",
        WAIT,
    ])?;
    demo.kubectl(&[
        "get",
        "promotion/shop-dev-to-prod",
        "-o",
        "jsonpath={range .status.conditions[*]}{.type}{\"\\t\"}{.status}{\"\\t\"}{.message}{\"\\n\"}{end}",
    ])?;
    demo.until(
        "environment/shop-prod",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    )?;
    demo.kubectl(&["get", "environments"])?;
    Ok(())
}

/// A good change and a broken one in one push: dev deploys the first, fails on the second
/// naming its file and line, and (failureMode: all) reverts the first.
fn broken_push(demo: &Demo, work: &mut Work) -> Result<()> {
    demo.step("A push with a broken change: dev fails naming the file and line, and rolls back");
    let prod_before = demo.jsonpath("environment/shop-prod", "{.status.lastAppliedRevision}")?;
    let plan = std::fs::read_to_string(work.path().join("sqitch.plan"))?;
    work.write(
        "sqitch.plan",
        format!(
            "{plan}coupons [orders] 2026-02-01T09:00:00Z Demo <demo@example.com> # Coupons.\nreport [coupons] 2026-02-01T09:10:00Z Demo <demo@example.com> # A report.\n"
        ),
    )?;
    work.write(
        "deploy/coupons.sql",
        "CREATE TABLE shop.coupons (code text PRIMARY KEY);\n",
    )?;
    work.write("revert/coupons.sql", "DROP TABLE shop.coupons;\n")?;
    work.write(
        "verify/coupons.sql",
        "SELECT code FROM shop.coupons WHERE false;\n",
    )?;
    work.write(
        "deploy/report.sql",
        "-- A report over coupons.\nCREATE VIEW shop.report AS\n  SELECT * FROM shop.coupns;\n",
    )?;
    work.write("revert/report.sql", "DROP VIEW shop.report;\n")?;
    work.write("verify/report.sql", "SELECT 1;\n")?;
    let commit = work.commit("Coupons and a report (with a typo)")?;
    work.push("main", false)?;
    println!(
        "$ git push   # {} Coupons and a report (with a typo)",
        &commit[..7]
    );
    // What a push webhook does: ask the project to look at git now.
    demo.kubectl(&[
        "annotate",
        "databaseproject/shop",
        "--overwrite",
        &format!("switchyard.dev/requestedAt={commit}"),
    ])?;
    demo.until(
        "environment/shop-dev",
        "{.status.conditions[?(@.type==\"Ready\")].reason}",
        "DeployFailed",
    )?;
    demo.kubectl(&["get", "environments"])?;
    demo.kubectl(&[
        "events",
        "--for",
        "environment/shop-dev",
        "--types",
        "Warning",
    ])?;
    demo.kubectl(&[
        "get",
        "environment/shop-dev",
        "-o",
        "jsonpath={range .status.conditions[?(@.type==\"RolledBack\")]}RolledBack: {.message}{\"\\n\"}{end}",
    ])?;
    let prod_after = demo.jsonpath("environment/shop-prod", "{.status.lastAppliedRevision}")?;
    if prod_after != prod_before {
        bail!("prod moved from {prod_before} to {prod_after}");
    }
    println!("prod stays at {prod_after}");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let root = e2e::chart::repo_root().canonicalize()?;
    let started = Instant::now();
    println!(
        "Switchyard, the operator at work: PostgreSQL, a git server, an API server and the controller, all local and throwaway."
    );
    let (dev, prod, pg_port) = databases().await?;
    let (_repos, daemon, mut work) = git_server(&root)?;
    let api = ApiServer::start()?;
    let tmp = tempfile::tempdir()?;
    println!(
        "PostgreSQL 127.0.0.1:{pg_port} (shop_dev, shop_prod) | git {} | API server {}",
        daemon.url("shop"),
        api.url(),
    );
    let mut demo = Demo {
        root: root.clone(),
        kubectl: e2e::apiserver::testing::kubectl()?,
        kubeconfig: api.kubeconfig().to_path_buf(),
        work: tmp.path().to_path_buf(),
        controller: None,
        log: tmp.path().join("controller.log"),
        started,
    };
    install(&mut demo, &dev, &prod, &daemon.url("shop"))?;
    dev_deploys(&demo)?;
    promote(&demo)?;
    broken_push(&demo, &mut work)?;
    demo.step("All three kinds");
    demo.kubectl(&["get", "databaseprojects,environments,promotions"])?;
    println!(
        "\nDone in {:.0}s; everything it started is stopped.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
