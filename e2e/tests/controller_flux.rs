//! Flux interop (issue #6): a DatabaseProject reading a Flux `GitRepository`'s artifact.
//! The harness stores Flux's CRD generically; the test creates a minimal one, a
//! GitRepository whose status points at a tarball the test serves, and checks the project
//! is deployed from it, and that an artifact whose digest does not match is refused.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::controller::*;
use e2e::git::{GitHttp, HttpConfig, Repos};

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gitrepositories.source.toolkit.fluxcd.io
spec:
  group: source.toolkit.fluxcd.io
  scope: Namespaced
  names: {kind: GitRepository, listKind: GitRepositoryList, plural: gitrepositories, singular: gitrepository, shortNames: [gitrepo]}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

/// A gzipped tarball of `dir`, as Flux's source-controller makes them, and its sha256.
fn tarball(dir: &Path, out: &Path) -> (Vec<u8>, String) {
    let status = Command::new("tar")
        .arg("-czf")
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let sum = Command::new("sha256sum").arg(out).output().unwrap();
    let hex = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (std::fs::read(out).unwrap(), format!("sha256:{hex}"))
}

fn announce(env: &Env, url: &str, revision: &str, digest: &str) {
    let patch = serde_json::json!({"status": {"artifact": {
        "path": "gitrepository/x/shop/a.tar.gz",
        "url": url,
        "revision": revision,
        "digest": digest,
        "lastUpdateTime": "2026-02-01T00:00:00Z",
        "size": 1000,
    }}})
    .to_string();
    env.ok(&[
        "patch",
        "gitrepository",
        "shop",
        "-n",
        &env.ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flux_artifact_is_deployed_and_a_digest_mismatch_is_refused() {
    let env = Env::start();
    let out = env.run_with(&["apply", "-f", "-"], CRD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = database().await;
    env.db_secret("db", &db);
    let repos = Repos::new().unwrap();
    let http = GitHttp::start(repos.root(), HttpConfig::default()).unwrap();

    let mut project = shop();
    let (bytes, digest) = tarball(project.path(), &env.logs.path().join("a.tar.gz"));
    let url1 = http.serve_file("a.tar.gz", bytes);
    let rev1 = format!("main@sha1:{}", "1".repeat(40));
    env.apply("apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: shop\nspec:\n  url: https://git.example/shop.git\n  interval: 1m\n  ref:\n    branch: main\n");
    announce(&env, &url1, &rev1, &digest);
    env.apply("apiVersion: switchyard.dev/v1alpha1\nkind: DatabaseProject\nmetadata:\n  name: shop\nspec:\n  interval: 1h\n  source:\n    sourceRef:\n      kind: GitRepository\n      name: shop\n");
    env.apply(&env_yaml("dev", "shop", "db", true, ""));
    let controller = env.controller("c", &[]);
    assert!(
        env.wait(
            "environment/dev",
            "condition=Ready",
            Duration::from_secs(60)
        ),
        "{}",
        controller.log()
    );
    let dp = env.get("databaseproject/shop");
    assert_eq!(dp["status"]["revision"], rev1.as_str());
    assert_eq!(dp["status"]["digest"], digest.as_str());
    assert_eq!(
        env.get("environment/dev")["status"]["lastAppliedRevision"],
        rev1.as_str()
    );

    // Flux announces a new artifact, but what is served is not what it announced.
    project.table("items");
    let (bytes2, digest2) = tarball(project.path(), &env.logs.path().join("b.tar.gz"));
    let tampered = {
        let mut b = bytes2.clone();
        let n = b.len();
        b[n - 1] ^= 0xff;
        b
    };
    let url2 = http.serve_file("b.tar.gz", tampered);
    let rev2 = format!("main@sha1:{}", "2".repeat(40));
    announce(&env, &url2, &rev2, &digest2);
    let stalled = eventually(Duration::from_secs(60), "DigestMismatch", || {
        let dp = env.get("databaseproject/shop");
        let stalled = condition(&dp, "Stalled")?.clone();
        (stalled["reason"] == "DigestMismatch").then_some(stalled)
    });
    let message = stalled["message"].as_str().unwrap();
    assert!(
        message.contains(&rev2) && message.contains(&digest2),
        "{message}"
    );
    let dp = env.get("databaseproject/shop");
    assert_eq!(
        dp["status"]["revision"],
        rev1.as_str(),
        "the last good revision stays"
    );
    assert_eq!(dp["status"]["lastAttemptedRevision"], rev2.as_str());
    let tables = || async {
        e2e::postgres::rows(
            &db.url,
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        )
        .await
        .unwrap()
    };
    assert_eq!(
        tables().await,
        ["orders", "users"],
        "nothing of the refused artifact deployed"
    );

    // The real artifact is served: the watch on the GitRepository brings it in.
    let url3 = http.serve_file("c.tar.gz", bytes2);
    announce(&env, &url3, &rev2, &digest2);
    eventually(Duration::from_secs(60), "dev on the new artifact", || {
        (env.get("environment/dev")["status"]["lastAppliedRevision"] == rev2.as_str()).then_some(())
    });
    assert_eq!(tables().await, ["items", "orders", "users"]);
}
