//! Git source benchmarks (issue #6), against `git` in the same run (see BENCHMARKS.md):
//!
//! 1. a no-change poll of a repository with 10,000 commits: switchyard's look at the
//!    remote (`GitCache::fetch`, `Want::Latest`, the artifact already cached) against
//!    `git ls-remote` of the same ref, over git:// and https, counting what the server saw;
//! 2. the first fetch of that repository (depth 1, then the artifact extracted) against
//!    `git clone --bare --depth 1 --single-branch`.
//!
//! Run with `scripts/bench` (release build), or `scripts/bench --git-only`. Prints Markdown.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use e2e::git::{GitDaemon, GitHttp, HttpConfig, Repos, fast_import, git_command};
use switchyard::source::git::Want;
use switchyard::source::{Credentials, GitCache, GitRequest, Limits, Reference};

const COMMITS: usize = 10_000;
const POLLS: usize = 25;

fn main() -> Result<()> {
    let repos = Repos::new()?;
    let work = repos.create("big")?;
    let started = Instant::now();
    fast_import(work.bare(), |w| history(w, COMMITS))?;
    let count = e2e::git::git(work.bare(), &["rev-list", "--count", "main"])?;
    ensure!(count == COMMITS.to_string(), "made {count} commits");
    eprintln!(
        "made {COMMITS} commits with git fast-import in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let daemon = GitDaemon::start(repos.root())?;
    let https = GitHttp::start(
        repos.root(),
        HttpConfig {
            tls: true,
            ..Default::default()
        },
    )?;
    let ca = tempfile::NamedTempFile::new()?;
    std::fs::write(ca.path(), https.ca_pem())?;

    println!(
        "| transport | what | median (ms) | p90 (ms) | ref lookups per poll | packs per poll | server requests per poll |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, url, creds) in [
        ("git://", daemon.url("big"), Credentials::none()),
        (
            "https",
            https.url("big"),
            Credentials::from_secret_data(
                "ca",
                &[("ca.crt".to_string(), https.ca_pem().to_vec())]
                    .into_iter()
                    .collect(),
            )?,
        ),
    ] {
        let cache_dir = tempfile::tempdir()?;
        let cache = GitCache::new(cache_dir.path(), Limits::default());
        let request = GitRequest {
            url: url.clone(),
            reference: Reference::Branch("main".into()),
            path: String::new(),
            credentials: creds,
            secret: None,
            timeout: Duration::from_secs(60),
        };
        let interrupt = AtomicBool::new(false);

        // The first fetch: one commit's objects, then the checked artifact.
        let start = Instant::now();
        let (_, stats) = cache.fetch_blocking(&request, &Want::Latest, &interrupt)?;
        let first = start.elapsed();
        ensure!(
            stats.packs == 1 && stats.extracted,
            "first fetch: {stats:?}"
        );
        let clone_dir = tempfile::tempdir()?;
        let start = Instant::now();
        let mut clone = git_command(clone_dir.path());
        clone.env("GIT_SSL_CAINFO", ca.path());
        clone.args([
            "clone",
            "--quiet",
            "--bare",
            "--depth",
            "1",
            "--single-branch",
            "--branch",
            "main",
            &url,
            "c.git",
        ]);
        let out = clone.output()?;
        ensure!(
            out.status.success(),
            "git clone failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let anchor_first = start.elapsed();
        println!(
            "| {name} | first fetch: switchyard (depth 1 + artifact) | {:.1} | | {} | {} | |",
            ms(first),
            stats.ref_lookups,
            stats.packs
        );
        println!(
            "| {name} | first fetch: `git clone --bare --depth 1` | {:.1} | | | | |",
            ms(anchor_first)
        );

        // No-change polls.
        let mut ours = Vec::new();
        let before = server_requests(name, &daemon, &https);
        for _ in 0..POLLS {
            let start = Instant::now();
            let (_, stats) = cache.fetch_blocking(&request, &Want::Latest, &interrupt)?;
            ours.push(start.elapsed());
            ensure!(
                stats.ref_lookups == 1 && stats.packs == 0 && !stats.extracted,
                "a no-change poll did more than one ref lookup: {stats:?}"
            );
        }
        let per_poll = (server_requests(name, &daemon, &https) - before) as f64 / POLLS as f64;
        let mut anchor = Vec::new();
        let before_anchor = server_requests(name, &daemon, &https);
        for _ in 0..POLLS {
            let start = Instant::now();
            let out = git_command(clone_dir.path())
                .env("GIT_SSL_CAINFO", ca.path())
                .args(["ls-remote", &url, "refs/heads/main"])
                .output()?;
            anchor.push(start.elapsed());
            ensure!(out.status.success(), "git ls-remote failed");
        }
        let anchor_per_poll =
            (server_requests(name, &daemon, &https) - before_anchor) as f64 / POLLS as f64;
        let (m, a) = (median(&mut ours), median(&mut anchor));
        println!(
            "| {name} | no-change poll: switchyard | {:.1} | {:.1} | 1 | 0 | {per_poll} |",
            ms(m),
            ms(p90(&mut ours))
        );
        println!(
            "| {name} | no-change poll: `git ls-remote` (anchor) | {:.1} | {:.1} | 1 | 0 | {anchor_per_poll} |",
            ms(a),
            ms(p90(&mut anchor))
        );
        println!(
            "| {name} | ratio anchor / switchyard | {:.1}x | | | | |",
            a.as_secs_f64() / m.as_secs_f64()
        );
        ensure!(
            m < Duration::from_millis(50),
            "{name}: a no-change poll took {m:?} (target < 50 ms)"
        );
    }
    println!();
    println!(
        "{COMMITS} commits; {POLLS} polls each; server requests are connections that git daemon logged (git://) or HTTP requests (https)."
    );
    Ok(())
}

/// What the server has seen so far: upload-pack connections (git://) or HTTP requests.
fn server_requests(transport: &str, daemon: &GitDaemon, https: &GitHttp) -> usize {
    if transport == "git://" {
        daemon.upload_packs()
    } else {
        https.requests().len()
    }
}

/// A fast-import stream of `n` commits on main: a small Sqitch project, then one script
/// changed per commit.
fn history(w: &mut dyn Write, n: usize) -> std::io::Result<()> {
    let mut plan = String::from("%syntax-version=1.0.0\n%project=big\n\n");
    for i in 0..100 {
        plan.push_str(&format!(
            "c{i:03} 2026-01-01T00:00:00Z Bench <b@example.com> # c{i}\n"
        ));
    }
    for i in 0..n {
        writeln!(w, "commit refs/heads/main")?;
        writeln!(
            w,
            "committer Bench <b@example.com> {} +0000",
            1_700_000_000 + i
        )?;
        let message = format!("commit {i}");
        writeln!(w, "data {}\n{message}", message.len())?;
        if i == 0 {
            for (path, body) in [
                (
                    "sqitch.conf".to_string(),
                    "[core]\n\tengine = pg\n".to_string(),
                ),
                ("sqitch.plan".to_string(), plan.clone()),
            ] {
                writeln!(w, "M 100644 inline {path}\ndata {}\n{body}", body.len())?;
            }
            for c in 0..100 {
                for kind in ["deploy", "revert"] {
                    let body = format!("SELECT {c};\n");
                    writeln!(
                        w,
                        "M 100644 inline {kind}/c{c:03}.sql\ndata {}\n{body}",
                        body.len()
                    )?;
                }
            }
        }
        let body = format!("SELECT {i}; -- revision {i}\n");
        writeln!(
            w,
            "M 100644 inline deploy/c{:03}.sql\ndata {}\n{body}",
            i % 100,
            body.len()
        )?;
        writeln!(w)?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(v: &mut [Duration]) -> Duration {
    v.sort();
    v[(v.len() * 9) / 10]
}
