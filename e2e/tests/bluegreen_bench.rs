//! Swap under load (issue #5): pgbench reads views and calls functions of a blue-green
//! schema (100 views, 20 functions) at full speed while `switchyard` stages and promotes
//! it 20 times. Reports swap duration p50/p99, failed reader transactions and the longest
//! reader stall, for a small and a large underlying table.
//!
//! Two mechanisms in the same run, so their figures compare: `rename` (an Environment of
//! its own database: stage, then promote by renaming) and `layers` (Environments sharing
//! one database: dev stages and promotes its own layers, and readers hit prod's layers
//! while prod is promoted from dev by repointing, nothing rebuilt).
//!
//! Ignored by default (it takes minutes). Run:
//! `cargo build --release -p switchyard --bins && cargo test --release -p e2e --test bluegreen_bench -- --ignored --nocapture`
//! Rows per size with `SWITCHYARD_BENCH_ROWS="10000 10000000"` (about 1 MB and 1 GB);
//! mechanisms with `SWITCHYARD_BENCH_MODES="rename layers"` (the default).

use std::process::{Command, Stdio};

use e2e::postgres;
use e2e::tools::{Fixture, run_ok, switchyard};
use serde_json::Value;

const VIEWS: usize = 100;
const FUNCTIONS: usize = 20;
const PROMOTIONS: usize = 20;

fn pgbench() -> String {
    std::env::var("SWITCHYARD_PGBENCH")
        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pgbench".into())
}

fn project() -> Fixture {
    let mut fx = Fixture::new("bench");
    fx.write(
        "switchyard.yaml",
        "project: bench\nschemas:\n  bench: stable\n  bench_api: blue-green\n",
    );
    fx.change(
        "data",
        &[],
        "CREATE SCHEMA bench;\nCREATE TABLE bench.data (id bigint PRIMARY KEY, payload text NOT NULL);\n",
        "DROP SCHEMA bench CASCADE;\n",
        "SELECT 1 FROM bench.data WHERE false;\n",
    );
    for v in 0..VIEWS {
        fx.write(
            &format!("objects/bench_api/v{v}.sql"),
            &format!("CREATE VIEW bench_api.v{v} AS SELECT id, payload, {v} AS view_no FROM bench.data;\n"),
        );
    }
    for f in 0..FUNCTIONS {
        fx.write(
            &format!("objects/bench_api/f{f}.sql"),
            &format!(
                "CREATE FUNCTION bench_api.f{f}(k bigint) RETURNS int LANGUAGE plpgsql STABLE AS $$\nBEGIN\n  RETURN (SELECT length(payload) FROM bench_api.v{f} WHERE id = k);\nEND\n$$;\n"
            ),
        );
    }
    fx.write("objects/bench_api/verify.sql", "SELECT bench_api.f0(1);\n");
    fx
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::test]
#[ignore = "benchmark: minutes of pgbench; run with --ignored --nocapture"]
async fn swap_under_load() {
    let sizes: Vec<i64> = std::env::var("SWITCHYARD_BENCH_ROWS")
        .unwrap_or_else(|_| "10000".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let modes = std::env::var("SWITCHYARD_BENCH_MODES").unwrap_or_else(|_| "rename layers".into());
    for rows in sizes {
        for mode in modes.split_whitespace() {
            run_size(rows, mode == "layers").await;
        }
    }
}

async fn run_size(rows: i64, layers: bool) {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project();
    let cli = |args: &[&str]| {
        let mut c = switchyard();
        c.args(args)
            .arg("--project")
            .arg(fx.path())
            .arg("--db")
            .arg(&db.url);
        c
    };
    run_ok(&mut cli(&["deploy"]));
    let admin = postgres::connect(&db.url).await.expect("connect");
    admin
        .batch_execute(&format!(
            "INSERT INTO bench.data SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, {rows}) g"
        ))
        .await
        .expect("load");
    admin
        .batch_execute("VACUUM ANALYZE bench.data")
        .await
        .expect("vacuum");
    let size: String = admin
        .query_one(
            "SELECT pg_size_pretty(pg_total_relation_size('bench.data'))",
            &[],
        )
        .await
        .expect("size")
        .get(0);
    // Readers query `served`: the schema itself, or prod's layer over dev's sets.
    let (served, dev, prod): (&str, &[&str], &[&str]) = if layers {
        (
            "bench_api_prod",
            &["--schema-suffix", "_dev"],
            &["--schema-suffix", "_prod", "--from-suffix", "_dev"],
        )
    } else {
        ("bench_api", &[], &[])
    };
    let with = |base: &[&str], extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok(&mut cli(&args))
    };
    run(with(&["stage"], dev));
    run(with(&["promote"], dev));
    if layers {
        run(with(&["promote"], prod));
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("read.sql");
    std::fs::write(
        &script,
        format!(
            "\\set id random(1, {rows})\n\\set v random(0, {})\n\\set f random(0, {})\nSELECT length(payload) FROM {served}.v:v WHERE id = :id;\nSELECT {served}.f:f(:id);\n",
            VIEWS - 1,
            FUNCTIONS - 1
        ),
    )
    .expect("script");
    // Readers alone first: what serving through the schema or the layer costs per query.
    let quiet = std::env::var("SWITCHYARD_BENCH_QUIET_SECONDS").unwrap_or_else(|_| "10".into());
    let alone = Command::new(pgbench())
        .current_dir(dir.path())
        .args(["-n", "-c", "4", "-j", "2", "-T", &quiet, "-f"])
        .arg(&script)
        .arg(&db.url)
        .output()
        .expect("pgbench");
    let quiet_tps = String::from_utf8_lossy(&alone.stdout)
        .lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    let duration = std::env::var("SWITCHYARD_BENCH_SECONDS").unwrap_or_else(|_| "60".into());
    let bench = Command::new(pgbench())
        .current_dir(dir.path())
        .args([
            "-n",
            "-c",
            "4",
            "-j",
            "2",
            "-T",
            &duration,
            "-l",
            "--log-prefix=reads",
            "-f",
        ])
        .arg(&script)
        .arg(&db.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgbench");

    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut swaps = Vec::new();
    let mut prepares = Vec::new();
    let mut attempts = 0;
    // Wall-clock windows of each `switchyard promote` process (connect, guards, swap,
    // verify), to tell reader stalls during promotions from the machine's own noise.
    let mut windows: Vec<(f64, f64)> = Vec::new();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    for _ in 0..PROMOTIONS {
        run(with(&["stage", "--redeploy-schema", "bench_api"], dev));
        if layers {
            run(with(&["promote"], dev));
        }
        let started = now();
        let measured = if layers { prod } else { dev };
        let report: Value =
            serde_json::from_str(&run(with(&["promote", "--json"], measured))).expect("json");
        windows.push((started, now()));
        swaps.push(report["swap_ms"].as_f64().unwrap_or(0.0));
        prepares.push(report["prepare_ms"].as_f64().unwrap_or(0.0));
        attempts += report["attempts"].as_u64().unwrap_or(0);
    }
    let out = bench.wait_with_output().expect("pgbench output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let field = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split([':', '=']).nth(1))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| "?".into())
    };
    let aborted = stderr.lines().filter(|l| l.contains("aborted")).count();
    let errors = stderr.lines().filter(|l| l.contains("ERROR")).count();
    // Per-transaction logs: client, tx, latency µs, script, epoch, µs.
    let mut worst_us: u64 = 0;
    let mut worst_in_promote_us: u64 = 0;
    for entry in std::fs::read_dir(dir.path()).expect("logs").flatten() {
        if !entry.file_name().to_string_lossy().starts_with("reads") {
            continue;
        }
        for line in std::fs::read_to_string(entry.path())
            .unwrap_or_default()
            .lines()
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(latency), Some(epoch), Some(us)) = (
                fields.get(2).and_then(|v| v.parse::<u64>().ok()),
                fields.get(4).and_then(|v| v.parse::<f64>().ok()),
                fields.get(5).and_then(|v| v.parse::<f64>().ok()),
            ) else {
                continue;
            };
            worst_us = worst_us.max(latency);
            let end = epoch + us / 1e6;
            let start = end - latency as f64 / 1e6;
            if windows.iter().any(|(a, b)| start < *b && end > *a) {
                worst_in_promote_us = worst_in_promote_us.max(latency);
            }
        }
    }
    swaps.sort_by(|a, b| a.total_cmp(b));
    prepares.sort_by(|a, b| a.total_cmp(b));
    let mut walls: Vec<f64> = windows.iter().map(|(a, b)| (b - a) * 1000.0).collect();
    walls.sort_by(|a, b| a.total_cmp(b));
    println!(
        "mode={} rows={rows} table={size} promotions={PROMOTIONS} attempts={attempts} swap_ms p50={:.0} p99={:.0} max={:.0} prepare_ms p50={:.0} p99={:.0} promote_wall_ms p50={:.0} p99={:.0} | reader tps={} transactions={} failed={} aborted_clients={aborted} error_lines={errors} longest_reader_ms={:.1} longest_reader_during_promote_ms={:.1} quiet_tps={quiet_tps}",
        if layers { "layers" } else { "rename" },
        percentile(&swaps, 50.0),
        percentile(&swaps, 99.0),
        swaps.last().copied().unwrap_or(0.0),
        percentile(&prepares, 50.0),
        percentile(&prepares, 99.0),
        percentile(&walls, 50.0),
        percentile(&walls, 99.0),
        field("tps"),
        field("number of transactions actually processed"),
        field("number of failed transactions"),
        worst_us as f64 / 1000.0,
        worst_in_promote_us as f64 / 1000.0,
    );
    assert!(
        out.status.success() || aborted == 0,
        "pgbench failed:\n{stdout}\n{stderr}"
    );
}
