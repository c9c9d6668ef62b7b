//! Engine benchmarks, against the anchor in the same run (see BENCHMARKS.md):
//!
//! 1. deploy then revert 200 trivial changes with verify: switchyard vs the real `sqitch`,
//!    each into a fresh database on the same throwaway PostgreSQL;
//! 2. parse and validate a generated 10,000-change plan.
//!
//! Run with `scripts/bench` (release build; `--plan-only` skips the deploy figures).
//! Prints a Markdown table.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::postgres;
use e2e::tools::{Fixture, output, sqitch, sqitch_target, switchyard};

const CHANGES: usize = 200;
const PLAN_CHANGES: usize = 10_000;
const ROUNDS: usize = 3;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<()> {
    if std::env::args().any(|a| a == "--plan-only") {
        return plan_parse();
    }
    let mut fx = Fixture::new("bench");
    for i in 0..CHANGES {
        let name = format!("change_{i:03}");
        fx.change(
            &name,
            &[],
            &format!("BEGIN;\nCREATE TABLE {name} (id int);\nCOMMIT;\n"),
            &format!("BEGIN;\nDROP TABLE {name};\nCOMMIT;\n"),
            &format!("SELECT id FROM {name} WHERE false;\n"),
        );
    }

    println!("| round | tool | deploy {CHANGES} (s) | revert {CHANGES} (s) |");
    println!("|---|---|---|---|");
    let mut sqitch_deploy = Vec::new();
    let mut sqitch_revert = Vec::new();
    let mut ours_deploy = Vec::new();
    let mut ours_revert = Vec::new();
    for round in 1..=ROUNDS {
        let db = postgres::server().fresh_db().await?;
        let target = sqitch_target(&db.url);
        let deploy = timed(|| check(sqitch(fx.path()).args(["deploy", "--verify", &target])))?;
        let revert = timed(|| check(sqitch(fx.path()).args(["revert", "-y", &target])))?;
        println!(
            "| {round} | sqitch | {:.2} | {:.2} |",
            deploy.as_secs_f64(),
            revert.as_secs_f64()
        );
        sqitch_deploy.push(deploy);
        sqitch_revert.push(revert);

        let db = postgres::server().fresh_db().await?;
        let deploy = timed(|| check(&mut ours(fx.path(), &db.url, &["deploy", "--verify"])))?;
        let revert = timed(|| check(&mut ours(fx.path(), &db.url, &["revert", "--all"])))?;
        println!(
            "| {round} | switchyard | {:.2} | {:.2} |",
            deploy.as_secs_f64(),
            revert.as_secs_f64()
        );
        ours_deploy.push(deploy);
        ours_revert.push(revert);
    }
    let (sd, sr, od, or) = (
        median(&sqitch_deploy),
        median(&sqitch_revert),
        median(&ours_deploy),
        median(&ours_revert),
    );
    println!();
    println!(
        "median deploy: sqitch {:.2} s, switchyard {:.3} s, ratio {:.1}x",
        sd.as_secs_f64(),
        od.as_secs_f64(),
        sd.as_secs_f64() / od.as_secs_f64()
    );
    println!(
        "median revert: sqitch {:.2} s, switchyard {:.3} s, ratio {:.1}x",
        sr.as_secs_f64(),
        or.as_secs_f64(),
        sr.as_secs_f64() / or.as_secs_f64()
    );

    plan_parse()?;
    Ok(())
}

/// Parses and validates a generated 10,000-change plan (with tags and dependencies).
fn plan_parse() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    for sub in ["deploy", "revert", "verify"] {
        std::fs::create_dir_all(root.join(sub))?;
    }
    std::fs::write(root.join("sqitch.conf"), "[core]\n\tengine = pg\n")?;
    let mut plan = String::from("%syntax-version=1.0.0\n%project=big\n\n");
    for i in 0..PLAN_CHANGES {
        let name = format!("c{i:05}");
        let deps = if i == 0 {
            String::new()
        } else {
            format!("[c{:05}] ", i - 1)
        };
        let s = i as u32;
        plan.push_str(&format!(
            "{name} {deps}2026-01-01T{:02}:{:02}:{:02}Z Bench <bench@example.com> # change {i}\n",
            s / 3600 % 24,
            s / 60 % 60,
            s % 60
        ));
        if i % 100 == 99 {
            plan.push_str(&format!(
                "@t{i} 2026-01-02T00:00:00Z Bench <bench@example.com> # tag\n"
            ));
        }
        for sub in ["deploy", "revert", "verify"] {
            std::fs::write(root.join(sub).join(format!("{name}.sql")), "SELECT 1;\n")?;
        }
    }
    std::fs::write(root.join("sqitch.plan"), &plan)?;
    let plan_path = root.join("sqitch.plan");
    let mut parse_times = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let parsed = switchyard::project::parse(&plan_path, &plan)?;
        parse_times.push(start.elapsed());
        ensure!(
            parsed.changes.len() == PLAN_CHANGES,
            "parsed {} changes",
            parsed.changes.len()
        );
    }
    println!(
        "parse + validate the {PLAN_CHANGES}-change plan text (ids, tags, dependencies): median {:.1} ms over {} runs",
        median(&parse_times).as_secs_f64() * 1e3,
        parse_times.len()
    );
    let mut times = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let project = switchyard::project::Project::load(root)?;
        times.push(start.elapsed());
        ensure!(
            project.plan.changes.len() == PLAN_CHANGES,
            "parsed {} changes",
            project.plan.changes.len()
        );
    }
    println!(
        "load the whole {PLAN_CHANGES}-change project (plan + 30,000 script files checked): median {:.1} ms, min {:.1} ms over {} runs",
        median(&times).as_secs_f64() * 1e3,
        times
            .iter()
            .min()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        times.len()
    );
    Ok(())
}

fn ours(project: &Path, url: &str, args: &[&str]) -> std::process::Command {
    let mut command = switchyard();
    command
        .args(args)
        .arg("--project")
        .arg(project)
        .arg("--db")
        .arg(url);
    command
}

fn check(command: &mut std::process::Command) -> Result<()> {
    let out = output(command);
    ensure!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let start = Instant::now();
    f().context("timed step")?;
    Ok(start.elapsed())
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}
