//! Interop: switchyard's plan reader against the real Sqitch.
//!
//! For every fixture project under `tests/fixtures/plans/`, `sqitch plan` (Debian's Sqitch
//! 1.3) and `switchyard plan --json` must agree on every change: name, id, tags, requires,
//! conflicts, planner, date and note. For reworked changes and names with `/`, the deploy
//! script Sqitch would run (`sqitch show deploy <id>`) must be the one switchyard names.
//!
//! Needs `sqitch` on the PATH and the `switchyard` binary built (`cargo build -p switchyard`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// One record per change: id, name, tags, requires, conflicts, planner name and email, raw
/// date, then the note (which may span lines) and a terminator line.
const FORMAT: &str =
    "format:%H%v%n%v%{ }t%v%{ }r%v%{ }x%v%{name}p%v%{email}p%v%{date:raw}p%v%B%v--8<--";
const END: &str = "--8<--";

/// A change as both tools describe it.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    id: String,
    name: String,
    tags: Vec<String>,
    requires: Vec<String>,
    conflicts: Vec<String>,
    planner_name: String,
    planner_email: String,
    planned_at: String,
    note: String,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plans")
}

/// Sqitch with no user or system configuration and a fixed planner.
fn sqitch(home: &Path) -> Command {
    let mut cmd = Command::new("sqitch");
    cmd.env("HOME", home)
        .env("SQITCH_USER_CONFIG", home.join("user.conf"))
        .env("SQITCH_SYSTEM_CONFIG", home.join("system.conf"))
        .env("SQITCH_FULLNAME", "Interop Test")
        .env("SQITCH_EMAIL", "interop@example.com")
        .env("SQITCH_PAGER", "cat")
        .env_remove("SQITCH_CONFIG")
        .env_remove("SQITCH_TARGET")
        .env_remove("SQITCH_USERNAME")
        .env_remove("SQITCH_PASSWORD");
    cmd
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("output is not UTF-8")
}

/// `" @a @b"` → `["a", "b"]`; Sqitch prefixes lists with a space.
fn words(field: &str, strip_at: bool) -> Vec<String> {
    field
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| {
            if strip_at {
                w.trim_start_matches('@')
            } else {
                w
            }
            .to_owned()
        })
        .collect()
}

fn sqitch_rows(home: &Path, project: &Path) -> Result<Vec<Row>> {
    let out = run(sqitch(home).arg("--chdir").arg(project).args([
        "plan",
        "--no-headers",
        "--no-color",
        "--format",
        FORMAT,
    ]))?;
    let mut rows = Vec::new();
    // NB: not `lines()`, which would also drop a `\r` that ends a note line.
    let mut lines = out.split('\n');
    while let Some(id) = lines.next().filter(|id| !id.is_empty()) {
        let mut field = || {
            lines
                .next()
                .map(str::to_owned)
                .context("truncated sqitch record")
        };
        let name = field()?;
        let tags = words(&field()?, true);
        let requires = words(&field()?, false);
        let conflicts = words(&field()?, false);
        let (planner_name, planner_email, planned_at) = (field()?, field()?, field()?);
        let mut note = Vec::new();
        loop {
            match lines.next() {
                Some(END) => break,
                Some(line) => note.push(line),
                None => bail!("unterminated sqitch record for {name}"),
            }
        }
        rows.push(Row {
            id: id.to_owned(),
            name,
            tags,
            requires,
            conflicts,
            planner_name,
            planner_email,
            planned_at,
            note: note.join("\n"),
        });
    }
    Ok(rows)
}

fn strings(value: &Value) -> Result<Vec<String>> {
    value
        .as_array()
        .context("expected an array")?
        .iter()
        .map(|v| v.as_str().map(str::to_owned).context("expected a string"))
        .collect()
}

fn text(value: &Value) -> Result<String> {
    value
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("expected a string, got {value}"))
}

fn switchyard_plan(bin: &Path, project: &Path) -> Result<Value> {
    let out = run(Command::new(bin)
        .args(["plan", "--json", "--project"])
        .arg(project))?;
    serde_json::from_str(&out).with_context(|| format!("switchyard plan --json printed:\n{out}"))
}

fn switchyard_rows(plan: &Value) -> Result<Vec<Row>> {
    plan["changes"]
        .as_array()
        .context("no changes array")?
        .iter()
        .map(|c| {
            Ok(Row {
                id: text(&c["id"])?,
                name: text(&c["name"])?,
                tags: strings(&c["tags"])?,
                requires: strings(&c["requires"])?,
                conflicts: strings(&c["conflicts"])?,
                planner_name: text(&c["planner_name"])?,
                planner_email: text(&c["planner_email"])?,
                planned_at: text(&c["planned_at"])?,
                note: text(&c["note"])?,
            })
        })
        .collect()
}

/// For reworked changes and names with `/`: the deploy script Sqitch would run is the one
/// switchyard names. Each fixture script's first line is `-- <its path below the top dir>`.
fn check_scripts(home: &Path, project: &Path, plan: &Value) -> Result<()> {
    let changes = plan["changes"].as_array().context("no changes array")?;
    let names: Vec<String> = changes
        .iter()
        .map(|c| text(&c["name"]))
        .collect::<Result<_>>()?;
    for (change, name) in changes.iter().zip(&names) {
        if !name.contains('/') && names.iter().filter(|n| *n == name).count() < 2 {
            continue;
        }
        let id = text(&change["id"])?;
        let shown = run(sqitch(home)
            .arg("--chdir")
            .arg(project)
            .args(["show", "deploy", &id]))?;
        let path = shown
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("-- "))
            .context("fixture script has no path line")?;
        let script = text(&change["script"])?;
        ensure!(
            script.ends_with(path),
            "{name} ({id}): sqitch deploys {path}, switchyard names {script}"
        );
    }
    Ok(())
}

#[test]
fn switchyard_reads_every_fixture_plan_as_sqitch_does() -> Result<()> {
    let bin = e2e::tools::switchyard_bin();
    let home = tempfile::tempdir()?;
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    fixtures.retain(|p| p.is_dir());
    fixtures.sort();
    ensure!(
        fixtures.len() >= 8,
        "expected at least 8 fixture plans, found {}",
        fixtures.len()
    );

    let mut failures = Vec::new();
    for project in &fixtures {
        let name = project
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let outcome = (|| -> Result<()> {
            let want = sqitch_rows(home.path(), project)?;
            let plan = switchyard_plan(&bin, project)?;
            let got = switchyard_rows(&plan)?;
            ensure!(!want.is_empty(), "sqitch printed no changes");
            ensure!(
                got.len() == want.len(),
                "sqitch has {} changes, switchyard {}",
                want.len(),
                got.len()
            );
            for (got, want) in got.iter().zip(&want) {
                ensure!(
                    got == want,
                    "change differs\n  sqitch:     {want:?}\n  switchyard: {got:?}"
                );
            }
            check_scripts(home.path(), project, &plan)
        })();
        if let Err(e) = outcome {
            failures.push(format!("{name}: {e:#}"));
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {} fixtures differ:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n\n")
    );
    Ok(())
}
