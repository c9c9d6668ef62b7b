//! The binary the container image ships (`scripts/build-image-binary`, the command the
//! Dockerfile runs) works as the image runs it (issue #14): as a non-root user (65532, the
//! distroless `nonroot` user) in a bubblewrap sandbox whose only writable place is its
//! workdir, it reads a project from git into that workdir and deploys it.
//!
//! The binary is `$SWITCHYARD_IMAGE_BIN`, else the one `scripts/build-image-binary --profile
//! dev` builds (target/debug/switchyard, which the suite has built anyway): the same command
//! and target as the Dockerfile's release build, whose ~8 minutes CI cannot afford. To test
//! the release binary itself:
//! `SWITCHYARD_IMAGE_BIN=$(scripts/build-image-binary) cargo test -p e2e --test image_binary`.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::controller::*;
use e2e::git::{GitDaemon, Repos};

const NONROOT: &str = "65532";

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// `bwrap` with the whole file system read-only but `work`, as 65532 when this
/// process is root (else as the current user, already not root), then `program args`.
fn sandboxed(work: &Path, envs: &[(&str, &str)], program: &str, args: &[&str]) -> Command {
    let mut c = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            NONROOT,
            "--regid",
            NONROOT,
            "--clear-groups",
            "bwrap",
        ]);
        c
    } else {
        Command::new("bwrap")
    };
    // NB: the workdir is bound at its own path: a read-only root has no room for new
    // mount points.
    let work = work.to_str().unwrap();
    c.args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
    c.args(["--bind", work, work, "--remount-ro", "/dev"]);
    c.args([
        "--unshare-all",
        "--share-net",
        "--die-with-parent",
        "--clearenv",
    ]);
    c.args(["--setenv", "HOME", work, "--setenv", "TMPDIR", work]);
    for (k, v) in envs {
        c.args(["--setenv", k, v]);
    }
    c.args(["--", program]).args(args);
    c
}

/// A directory the sandboxed user owns (or may read, for `readable`).
fn dir_for_sandbox(parent: &Path, name: &str, writable: bool) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    if writable && is_root() {
        let ok = Command::new("chown")
            .args([&format!("{NONROOT}:{NONROOT}"), d.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    d
}

fn image_bin() -> PathBuf {
    let bin = std::env::var_os("SWITCHYARD_IMAGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(e2e::tools::switchyard_bin);
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

#[test]
fn the_sandbox_leaves_only_the_workdir_writable() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = dir_for_sandbox(tmp.path(), "work", true);
    let script = "id -u; touch \"$HOME/mine\" && echo work-ok; \
                  for d in /tmp /var/tmp /dev/shm /etc \"$PWD\"; do touch \"$d/x\" 2>/dev/null && echo \"wrote $d\"; done; true";
    let out = sandboxed(&work, &[], "/bin/sh", &["-c", script])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid = text.lines().next().unwrap();
    assert_ne!(uid, "0", "the sandbox runs as root");
    assert!(text.contains("work-ok"), "{text}");
    assert!(
        !text.contains("wrote"),
        "something besides the workdir is writable: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_binary_deploys_from_git_as_non_root_writing_only_its_workdir() {
    let bin = image_bin();
    let env = Env::start();
    let db = database().await;
    env.db_secret("dev-db", &db);
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let mut work = repos.create("shop").unwrap();
    work.copy_dir(shop().path(), "").unwrap();
    work.commit("shop").unwrap();
    work.push("main", false).unwrap();
    env.apply(&git_project_yaml(
        "shop",
        &daemon.url("shop"),
        "branch: main",
        "1m",
        "",
    ));
    env.apply(&env_yaml("dev", "shop", "dev-db", true, ""));

    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let workdir = dir_for_sandbox(tmp.path(), "work", true);
    let conf = dir_for_sandbox(tmp.path(), "conf", false);
    std::fs::copy(env.cluster.kubeconfig(), conf.join("kubeconfig")).unwrap();
    std::fs::set_permissions(
        conf.join("kubeconfig"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("controller.log");
    // The whole file system is visible read-only, the binary and kubeconfig at their paths.
    let kubeconfig = conf.join("kubeconfig");
    let mut child: Child = sandboxed(
        &workdir,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        bin.to_str().unwrap(),
        &[
            "controller",
            "--namespace",
            &env.ns,
            "--admin-addr",
            &admin,
            "--workdir",
            workdir.to_str().unwrap(),
        ],
    )
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&log).unwrap())
    .stderr(std::fs::File::create(tmp.path().join("stderr.log")).unwrap())
    .spawn()
    .unwrap();
    let ready = env.wait(
        "environment/dev",
        "condition=Ready",
        Duration::from_secs(90),
    );
    let _ = child.kill();
    let _ = child.wait();
    let logs = format!(
        "{}{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        std::fs::read_to_string(tmp.path().join("stderr.log")).unwrap_or_default()
    );
    assert!(ready, "the image binary did not deploy:\n{logs}");

    // It wrote its git cache into the workdir, as the sandbox's user.
    let cached = walk(&workdir);
    assert!(
        cached
            .iter()
            .any(|p| p.to_string_lossy().contains("repo.git")),
        "{cached:?}"
    );
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        let owners: std::collections::BTreeSet<u32> = cached
            .iter()
            .map(|p| std::fs::symlink_metadata(p).unwrap().uid())
            .collect();
        assert_eq!(
            owners,
            [65532].into(),
            "files in the workdir belong to 65532"
        );
    }
    let tables = e2e::postgres::rows(
        &db.url,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .await
    .unwrap();
    assert_eq!(tables, ["orders", "users"]);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn the_dockerfile_builds_with_the_script_and_runs_the_binary_as_nonroot_on_distroless_cc() {
    let root = e2e::chart::repo_root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let runs_script = dockerfile
        .lines()
        .filter(|l| l.contains("scripts/build-image-binary") && !l.trim_start().starts_with('#'))
        .count();
    assert!(
        runs_script >= 2,
        "the dependency layer and the build both run the script"
    );
    let runtime = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .unwrap();
    assert!(
        runtime.starts_with("FROM gcr.io/distroless/cc-debian12:nonroot"),
        "{runtime}"
    );
    let stage: Vec<&str> = dockerfile
        .split(runtime)
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert!(stage.contains(&"USER 65532:65532"), "{stage:?}");
    assert!(stage.contains(&"COPY --from=builder /switchyard /usr/local/bin/switchyard"));
    assert!(stage.contains(&r#"ENTRYPOINT ["/usr/local/bin/switchyard"]"#));
    let script = std::fs::read_to_string(root.join("scripts/build-image-binary")).unwrap();
    assert!(
        script.contains("profile=release"),
        "the image gets the release build"
    );
    assert!(
        script
            .contains("cargo build --locked --profile \"$profile\" -p switchyard --bin switchyard")
    );
}
