//! The git source (issue #6) against real git servers started by each test: `git daemon`
//! (git://), `git http-backend` behind https with basic or bearer auth and a CA made for
//! the test, and sshd with key auth when Debian's openssh-server is installed. Drives
//! `switchyard::source::GitCache` directly: refs, force-pushes, deleted refs, credentials,
//! moved tags, the on-disk cache under concurrency and across restarts, and no-change polls.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use e2e::git::{GitDaemon, GitHttp, HttpConfig, Repos, Sshd, Work};
use switchyard::source::git::Want;
use switchyard::source::{Credentials, Error, GitCache, GitRequest, Limits, Reference, reference};

fn request(url: &str, reference: Reference) -> GitRequest {
    GitRequest {
        url: url.into(),
        reference,
        path: String::new(),
        credentials: Credentials::none(),
        secret: None,
        timeout: Duration::from_secs(30),
    }
}

fn latest(
    cache: &GitCache,
    req: &GitRequest,
) -> switchyard::source::Result<(switchyard::source::Artifact, switchyard::source::Stats)> {
    cache.fetch_blocking(req, &Want::Latest, &AtomicBool::new(false))
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn branch(name: &str) -> Reference {
    Reference::Branch(name.into())
}

/// A repository with `sqitch.plan` saying `one`, committed on main.
fn repo(repos: &Repos, name: &str) -> (Work, String) {
    let mut work = repos.create(name).unwrap();
    work.write("sqitch.plan", "one\n").unwrap();
    work.write("deploy/a.sql", "select 1;\n").unwrap();
    let c1 = work.commit("one").unwrap();
    work.push("main", false).unwrap();
    (work, c1)
}

#[test]
fn branch_tag_semver_and_commit_refs_name_their_commit() {
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let (mut work, c1) = repo(&repos, "shop");
    work.tag("v1.0.0", true).unwrap();
    work.write("sqitch.plan", "two\n").unwrap();
    let c2 = work.commit("two").unwrap();
    work.tag("v1.2.0", false).unwrap();
    work.write("sqitch.plan", "three\n").unwrap();
    let c3 = work.commit("three").unwrap();
    work.tag("v2.0.0", true).unwrap();
    work.push("main", false).unwrap();

    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path(), Limits::default());
    let url = daemon.url("shop");
    struct Case {
        reference: Reference,
        /// The revision expected.
        want_revision: String,
        /// The plan's content at that revision.
        want_plan: &'static str,
    }
    let cases = [
        Case {
            reference: branch("main"),
            want_revision: format!("main@sha1:{c3}"),
            want_plan: "three\n",
        },
        Case {
            reference: Reference::Tag("v1.0.0".into()),
            want_revision: format!("v1.0.0@sha1:{c1}"),
            want_plan: "one\n",
        },
        Case {
            reference: Reference::Tag("v1.2.0".into()),
            want_revision: format!("v1.2.0@sha1:{c2}"),
            want_plan: "two\n",
        },
        Case {
            reference: Reference::Semver(">=1.0, <2".into()),
            want_revision: format!("v1.2.0@sha1:{c2}"),
            want_plan: "two\n",
        },
        Case {
            reference: Reference::Semver("^2".into()),
            want_revision: format!("v2.0.0@sha1:{c3}"),
            want_plan: "three\n",
        },
        Case {
            reference: Reference::Commit(c1.clone()),
            want_revision: format!("sha1:{c1}"),
            want_plan: "one\n",
        },
    ];
    for case in cases {
        let (artifact, _) = latest(&cache, &request(&url, case.reference.clone()))
            .unwrap_or_else(|e| panic!("{}: {e}", case.reference));
        assert_eq!(artifact.revision, case.want_revision, "{}", case.reference);
        assert_eq!(
            read(&artifact.dir, "sqitch.plan"),
            case.want_plan,
            "{}",
            case.reference
        );
        assert!(
            artifact.digest.starts_with("sha256:"),
            "{}",
            artifact.digest
        );
    }
    let err = latest(&cache, &request(&url, Reference::Semver(">=3".into()))).unwrap_err();
    assert_eq!(err.reason(), "RefNotFound", "{err}");
}

#[test]
fn a_poll_that_finds_nothing_new_is_one_ref_lookup_and_no_fetch() {
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let (_work, c1) = repo(&repos, "shop");
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path(), Limits::default());
    let req = request(&daemon.url("shop"), branch("main"));

    let (first, stats) = latest(&cache, &req).unwrap();
    assert_eq!(first.revision, format!("main@sha1:{c1}"));
    assert_eq!(
        (stats.ref_lookups, stats.packs, stats.extracted),
        (1, 1, true)
    );
    let served = daemon.upload_packs();
    for _ in 0..3 {
        let (again, stats) = latest(&cache, &req).unwrap();
        assert_eq!(again, first);
        assert_eq!(
            (stats.ref_lookups, stats.packs, stats.extracted),
            (1, 0, false)
        );
    }
    assert_eq!(
        daemon.upload_packs() - served,
        3,
        "one connection per poll, as the server counts"
    );

    // A fresh cache object on the same directory (a controller restart) fetches nothing.
    let restarted = GitCache::new(cache_dir.path(), Limits::default());
    let (after, stats) = latest(&restarted, &req).unwrap();
    assert_eq!(after, first);
    assert_eq!(stats.packs, 0, "the cache survives a restart");
    // An exact revision in the cache needs no network at all.
    let before = daemon.upload_packs();
    let (exact, stats) = restarted
        .fetch_blocking(
            &req,
            &Want::Revision(first.revision.clone()),
            &AtomicBool::new(false),
        )
        .unwrap();
    assert_eq!((exact.dir, stats.ref_lookups), (first.dir, 0));
    assert_eq!(daemon.upload_packs(), before);
}

#[test]
fn force_pushes_are_followed_and_old_revisions_stay_fetchable() {
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let (mut work, _c1) = repo(&repos, "shop");
    work.write("sqitch.plan", "two\n").unwrap();
    let c2 = work.commit("two").unwrap();
    work.push("main", false).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path(), Limits::default());
    let req = request(&daemon.url("shop"), branch("main"));
    assert_eq!(
        latest(&cache, &req).unwrap().0.revision,
        format!("main@sha1:{c2}")
    );

    // Rewrite history: drop `two`, commit `rewritten`, force-push.
    work.reset_back().unwrap();
    work.write("sqitch.plan", "rewritten\n").unwrap();
    let c3 = work.commit("rewritten").unwrap();
    work.push("main", true).unwrap();
    let (artifact, stats) = latest(&cache, &req).unwrap();
    assert_eq!(artifact.revision, format!("main@sha1:{c3}"));
    assert_eq!(read(&artifact.dir, "sqitch.plan"), "rewritten\n");
    assert_eq!(stats.packs, 1);

    // The revision before the force-push is still in the cache.
    let (old, _) = cache
        .fetch_blocking(
            &req,
            &Want::Revision(format!("main@sha1:{c2}")),
            &AtomicBool::new(false),
        )
        .unwrap();
    assert_eq!(read(&old.dir, "sqitch.plan"), "two\n");
}

#[test]
fn a_deleted_branch_is_a_clear_ref_not_found() {
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let (mut work, _) = repo(&repos, "shop");
    work.commit("release").unwrap();
    work.push("release", false).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path(), Limits::default());
    let req = request(&daemon.url("shop"), branch("release"));
    latest(&cache, &req).unwrap();
    work.delete_branch("release").unwrap();
    let err = latest(&cache, &req).unwrap_err();
    assert_eq!(err.reason(), "RefNotFound");
    assert_eq!(
        err.to_string(),
        format!("branch release not found in {}", daemon.url("shop"))
    );
    assert!(
        !err.is_terminal(),
        "a branch may come back; retried every interval"
    );
}

#[test]
fn a_moved_tag_is_detected() {
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let (mut work, c1) = repo(&repos, "shop");
    work.tag("v1", true).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path(), Limits::default());
    let tag = Reference::Tag("v1".into());
    let req = request(&daemon.url("shop"), tag.clone());
    let (before, _) = latest(&cache, &req).unwrap();
    assert_eq!(before.revision, format!("v1@sha1:{c1}"));

    work.write("sqitch.plan", "moved\n").unwrap();
    let c2 = work.commit("moved").unwrap();
    work.tag("v1", true).unwrap();
    let (after, _) = latest(&cache, &req).unwrap();
    assert_eq!(after.revision, format!("v1@sha1:{c2}"));
    assert_eq!(read(&after.dir, "sqitch.plan"), "moved\n");
    assert_eq!(
        reference::moved_tag(&tag, &before.revision, &after.revision),
        Some(c1.as_str())
    );
}

const PASSWORD: &str = "Pw-git-4b1d9e-never-print-me";

fn secret(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

#[test]
fn https_with_basic_auth_and_a_custom_ca_and_wrong_credentials_fail_clearly() {
    let repos = Repos::new().unwrap();
    let config = HttpConfig {
        tls: true,
        basic: Some(("bob".into(), PASSWORD.into())),
        bearer: None,
    };
    let http = GitHttp::start(repos.root(), config).unwrap();
    let (_work, c1) = repo(&repos, "private");
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path(), Limits::default());
    let url = http.url("private");
    let ca = http.ca_pem().to_vec();

    let good = Credentials::from_secret_data(
        "git-creds",
        &secret(&[
            ("username", b"bob"),
            ("password", PASSWORD.as_bytes()),
            ("ca.crt", &ca),
        ]),
    )
    .unwrap();
    let mut req = request(&url, branch("main"));
    req.credentials = good;
    req.secret = Some("git-creds".into());
    let (artifact, stats) =
        latest(&cache, &req).unwrap_or_else(|e| panic!("{e}\n{:?}", http.requests()));
    assert_eq!(artifact.revision, format!("main@sha1:{c1}"));
    assert_eq!(stats.packs, 1);

    // Wrong password: a clear error naming the URL, with no secret in it.
    let wrong = "Wrong-9f3e2a-password";
    req.credentials = Credentials::from_secret_data(
        "git-creds",
        &secret(&[
            ("username", b"bob"),
            ("password", wrong.as_bytes()),
            ("ca.crt", &ca),
        ]),
    )
    .unwrap();
    let err = latest(&cache, &req).unwrap_err();
    let text = format!("{err} {err:?}");
    assert_eq!(err.reason(), "AuthenticationFailed", "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");

    // No credentials at all: the same reason.
    req.credentials =
        Credentials::from_secret_data("git-creds", &secret(&[("ca.crt", &ca)])).unwrap();
    let err = latest(&cache, &req).unwrap_err();
    assert_eq!(err.reason(), "AuthenticationFailed", "{err}");

    // Without the CA, the server's certificate is not trusted.
    req.credentials = Credentials::from_secret_data(
        "git-creds",
        &secret(&[("username", b"bob"), ("password", PASSWORD.as_bytes())]),
    )
    .unwrap();
    let err = latest(&cache, &req).unwrap_err();
    assert_eq!(err.reason(), "FetchFailed", "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(!format!("{err:?}").contains(PASSWORD));
}

#[test]
fn https_with_a_bearer_token() {
    let repos = Repos::new().unwrap();
    let token = "Tok-77c1e0-bearer";
    let config = HttpConfig {
        tls: true,
        basic: None,
        bearer: Some(token.into()),
    };
    let http = GitHttp::start(repos.root(), config).unwrap();
    let (_work, c1) = repo(&repos, "private");
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path(), Limits::default());
    let mut req = request(&http.url("private"), branch("main"));
    req.credentials = Credentials::from_secret_data(
        "t",
        &secret(&[("bearerToken", token.as_bytes()), ("ca.crt", http.ca_pem())]),
    )
    .unwrap();
    let (artifact, _) =
        latest(&cache, &req).unwrap_or_else(|e| panic!("{e}\n{:?}", http.requests()));
    assert_eq!(artifact.revision, format!("main@sha1:{c1}"));
    req.credentials = Credentials::from_secret_data(
        "t",
        &secret(&[("bearerToken", b"nope-nope"), ("ca.crt", http.ca_pem())]),
    )
    .unwrap();
    let err = latest(&cache, &req).unwrap_err();
    assert_eq!(err.reason(), "AuthenticationFailed", "{err}");
    assert!(!format!("{err:?}").contains("nope-nope"));
}

#[test]
fn ssh_with_a_key_and_known_hosts_and_a_wrong_host_key_is_refused() {
    let Some(sshd) = Sshd::start().unwrap() else {
        // NB: scripts/install-deps installs openssh-server; fail rather than skip in CI.
        assert!(
            std::env::var_os("CI").is_none(),
            "/usr/sbin/sshd is missing: run scripts/install-deps"
        );
        eprintln!("SKIP: /usr/sbin/sshd is missing (Debian's openssh-server)");
        return;
    };
    let repos = Repos::new().unwrap();
    let (work, c1) = repo(&repos, "shop");
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path(), Limits::default());
    let key = sshd.client_key().unwrap();
    let mut req = request(&sshd.url(work.bare()), branch("main"));
    req.credentials = Credentials::from_secret_data(
        "ssh",
        &secret(&[
            ("identity", key.as_bytes()),
            ("known_hosts", sshd.known_hosts().unwrap().as_bytes()),
        ]),
    )
    .unwrap();
    let (artifact, _) = latest(&cache, &req).unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(artifact.revision, format!("main@sha1:{c1}"));
    assert_eq!(read(&artifact.dir, "sqitch.plan"), "one\n");

    // A known_hosts that does not list the server's key: refused, never trusted on first use.
    req.credentials = Credentials::from_secret_data(
        "ssh",
        &secret(&[
            ("identity", key.as_bytes()),
            ("known_hosts", sshd.wrong_known_hosts().unwrap().as_bytes()),
        ]),
    )
    .unwrap();
    let err = latest(&cache, &req).unwrap_err();
    assert_eq!(err.reason(), "AuthenticationFailed", "{err}");
    assert!(!format!("{err:?}").contains("PRIVATE KEY"));
    // No known_hosts at all: refused before connecting.
    req.credentials =
        Credentials::from_secret_data("ssh", &secret(&[("identity", key.as_bytes())])).unwrap();
    let err = latest(&cache, &req).unwrap_err();
    assert_eq!(err.reason(), "InvalidSecret", "{err}");
    // The key files written for ssh are gone.
    let leftovers: Vec<_> = std::fs::read_dir(cache_dir.path().join("git"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ssh-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn concurrent_fetches_of_one_repository_share_one_uncorrupted_cache() {
    let repos = Repos::new().unwrap();
    let daemon = GitDaemon::start(repos.root()).unwrap();
    let mut work = repos.create("mono").unwrap();
    for i in 0..40 {
        work.write(&format!("a/deploy/c{i}.sql"), format!("select {i};\n"))
            .unwrap();
        work.write(&format!("b/deploy/c{i}.sql"), format!("select -{i};\n"))
            .unwrap();
    }
    let c1 = work.commit("one").unwrap();
    work.push("main", false).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let url = daemon.url("mono");
    // Sixteen reconciles of two projects (paths a and b) of one repository, at once.
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let url = url.clone();
                let root = cache_dir.path().to_path_buf();
                s.spawn(move || {
                    let cache = GitCache::new(&root, Limits::default());
                    let mut req = request(&url, branch("main"));
                    req.path = if i % 2 == 0 { "a" } else { "b" }.into();
                    latest(&cache, &req).map(|(a, _)| (i % 2, a))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in results {
        let (which, artifact) = result.unwrap();
        assert_eq!(artifact.revision, format!("main@sha1:{c1}"));
        let n = std::fs::read_dir(artifact.dir.join("deploy"))
            .unwrap()
            .count();
        assert_eq!(n, 40);
        let want = if which == 0 {
            "select 7;\n"
        } else {
            "select -7;\n"
        };
        assert_eq!(read(&artifact.dir, "deploy/c7.sql"), want);
    }
    // One repository for the URL, and git itself finds it sound.
    let repos_dir: Vec<_> = std::fs::read_dir(cache_dir.path().join("git"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(repos_dir.len(), 1);
    let fsck = e2e::git::git(
        &repos_dir[0].path().join("repo.git"),
        &["fsck", "--no-dangling"],
    );
    assert!(fsck.is_ok(), "{fsck:?}");
    // No temporary directories left behind.
    let tmp: Vec<_> = std::fs::read_dir(cache_dir.path().join("artifacts"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn a_timeout_is_reported_and_the_lock_is_not_held_forever() {
    // A server that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(cache_dir.path(), Limits::default());
    let mut req = request(&format!("git://127.0.0.1:{port}/x.git"), branch("main"));
    req.timeout = Duration::from_millis(500);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = runtime
        .block_on(cache.fetch(req.clone(), Want::Latest))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(err.reason(), "FetchFailed");
}
