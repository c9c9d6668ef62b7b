//! Controller benchmarks for BENCHMARKS.md (issue #4). Ignored by default; run with
//! `cargo build -p switchyard && cargo test -p e2e --release --test controller_bench -- --ignored --nocapture --test-threads=1`.
//!
//! - idle API requests per minute with 100 Environments (counted by a proxy between the
//!   controller and the API server; watches counted apart);
//! - controller RSS with 1,000 Environments;
//! - Promotion applied → Ready is measured in `controller_deploy` (`BENCH` line).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::controller::*;

/// A TCP proxy that records every HTTP request line sent through it.
struct Proxy {
    port: u16,
    requests: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let log = requests.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_read, mut c_write) = (server, client);
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]);
                        for line in text.lines() {
                            if ["GET /", "POST /", "PUT /", "PATCH /", "DELETE /"]
                                .iter()
                                .any(|m| line.starts_with(m))
                            {
                                log.lock().unwrap().push((Instant::now(), line.to_string()));
                            }
                        }
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Proxy { port, requests }
    }

    fn since(&self, t: Instant) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= t)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

fn many_envs(n: usize, secret: &str, interval: &str) -> String {
    (0..n)
        .map(|i| {
            let auto = i == 0;
            format!(
                "---\napiVersion: switchyard.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: env-{i:04}\nspec:\n  projectRef:\n    name: shop\n  database:\n    secretRef:\n      name: {secret}\n  autoDeploy: {auto}\n  interval: {interval}\n  retryInterval: 1s\n"
            )
        })
        .collect()
}

fn ready_count(env: &Env) -> usize {
    env.get("environments")["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| condition(e, "Ready").is_some_and(|c| c["status"] == "True"))
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn bench_idle_api_requests_with_100_environments() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("db", &db);
    env.project_configmap("shop-files", &shop());
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&many_envs(100, "db", "30s"));
    let harness = env
        .cluster
        .harness()
        .expect("the proxy sits in front of the harness");
    let proxy = Proxy::start(harness.url());
    let kubeconfig = env.logs.path().join("proxy.kubeconfig");
    std::fs::write(
        &kubeconfig,
        e2e::apiserver::kubeconfig_for(&format!("http://127.0.0.1:{}", proxy.port), None),
    )
    .unwrap();
    let started = Instant::now();
    let controller = env.controller_at("bench", &[], &kubeconfig);
    eventually(Duration::from_secs(300), "100 Environments Ready", || {
        (ready_count(&env) == 100).then_some(())
    });
    let settle = started.elapsed();
    // One interval for the promotion-only Environments to see what env-0000 deployed into
    // the database they share; then the controller is idle.
    std::thread::sleep(Duration::from_secs(40));
    let from = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let requests = proxy.since(from);
    let (watches, other): (Vec<_>, Vec<_>) = requests
        .iter()
        .partition(|l| l.contains("watch=true") || l.contains("watch=1"));
    eprintln!(
        "BENCH idle with 100 Environments (interval 30s): {} API requests/min besides watches, {} watch (re)starts; all Ready {:.1}s after start; RSS {} KiB",
        other.len(),
        watches.len(),
        settle.as_secs_f64(),
        rss_kib(controller.child.id())
    );
    for l in other.iter().take(20) {
        eprintln!("  {l}");
    }
    if other.len() > 5 {
        let log = controller.log();
        for l in log
            .lines()
            .filter(|l| l.contains("Status changed"))
            .rev()
            .take(15)
        {
            eprintln!("{l}");
        }
    }
    assert!(
        other.len() <= 5,
        "an idle controller should not poll the API: {other:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn bench_rss_with_1000_environments() {
    let env = Env::start();
    let db = database().await;
    env.db_secret("db", &db);
    env.project_configmap("shop-files", &shop());
    env.apply(&project_yaml("shop", "shop-files"));
    env.apply(&many_envs(1000, "db", "5m"));
    let started = Instant::now();
    let controller = env.controller("bench", &[]);
    let pid = controller.child.id();
    let mut peak = 0;
    eventually(Duration::from_secs(900), "1000 Environments Ready", || {
        peak = peak.max(rss_kib(pid));
        (ready_count(&env) == 1000).then_some(())
    });
    let all_ready = started.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let settled = rss_kib(pid);
    eprintln!(
        "BENCH 1000 Environments: all Ready after {:.1}s; controller RSS {} KiB settled, {} KiB peak seen",
        all_ready.as_secs_f64(),
        settled,
        peak.max(settled)
    );
    assert!(settled < 150 * 1024, "RSS {settled} KiB");
}
