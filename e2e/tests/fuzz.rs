//! Fuzzing on the stable toolchain (issue #17): the plan parser, `switchyard.yaml`, the
//! script reader and the objects reader get their committed corpus
//! (`tests/fixtures/fuzz/<target>/`) and a bounded number of seeded mutants each; every
//! input must end in a value or an error, never a panic or a hang. `SWITCHYARD_SEED=N`
//! replays a run; `SWITCHYARD_RELIABILITY=full` runs more mutants (RELIABILITY.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use e2e::chaos::{self, Rng};
use e2e::fuzz::{self, Target};
use switchyard::engine::Script;
use switchyard::project::objects::Objects;
use switchyard::project::{Project, parse};

/// A plan with one change, and the files a project needs around the fuzzed one.
const PLAN: &str = "%syntax-version=1.0.0\n%project=shop\n\nusers 2026-01-01T00:00:01Z A <a@b.c>\n";

fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

fn write(dir: &Path, file: &str, body: &[u8]) -> Result<(), String> {
    let path = dir.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::write(path, body).map_err(|e| e.to_string())
}

fn plan(input: &[u8], _dir: &Path) -> Result<(), String> {
    parse(Path::new("sqitch.plan"), &text(input))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn manifest(input: &[u8], dir: &Path) -> Result<(), String> {
    write(dir, "sqitch.plan", PLAN.as_bytes())?;
    write(dir, "deploy/users.sql", b"CREATE TABLE users (id int);\n")?;
    write(dir, "switchyard.yaml", input)?;
    Project::load(dir).map(drop).map_err(|e| e.to_string())
}

fn script(input: &[u8], dir: &Path) -> Result<(), String> {
    write(dir, "deploy/include.sql", input)?;
    write(dir, "deploy/x.sql", input)?;
    let vars = BTreeMap::from([("v".to_string(), "it's \"v\"".to_string())]);
    Script::load_within(&dir.join("deploy/x.sql"), &vars, Some(dir))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn objects(input: &[u8], dir: &Path) -> Result<(), String> {
    write(dir, "sqitch.plan", PLAN.as_bytes())?;
    write(dir, "deploy/users.sql", b"CREATE TABLE users (id int);\n")?;
    write(
        dir,
        "switchyard.yaml",
        b"project: shop\nschemas:\n  shop: stable\n  api: blue-green\n  shop_api: blue-green\n",
    )?;
    // An object lives in the directory of its schema.
    let schema = if text(input).contains("shop_api.") {
        "shop_api"
    } else {
        "api"
    };
    write(dir, &format!("objects/{schema}/x.sql"), input)?;
    let project = Project::load(dir).map_err(|e| e.to_string())?;
    Objects::load(&project).map(drop).map_err(|e| e.to_string())
}

const TARGETS: [Target; 4] = [
    Target {
        name: "plan",
        run: plan,
    },
    Target {
        name: "manifest",
        run: manifest,
    },
    Target {
        name: "script",
        run: script,
    },
    Target {
        name: "objects",
        run: objects,
    },
];

fn corpus() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fuzz"))
}

fn fuzz_one(name: &str) {
    let target = TARGETS.iter().find(|t| t.name == name).expect("target");
    let mut rng = Rng::for_test(&format!("fuzz_{name}"));
    let mutants = chaos::size(1500, 50_000);
    let summary = fuzz::run(target, corpus(), &mut rng, mutants, Duration::from_secs(10));
    chaos::figure(
        &format!("fuzz {name}"),
        format!(
            "{} corpus + {} mutants, {} accepted, no crash or hang, {:.1}s",
            summary.corpus,
            summary.mutants,
            summary.accepted,
            summary.elapsed.as_secs_f64()
        ),
    );
    // The corpus itself must be mostly valid, or the mutants explore only error paths.
    assert!(
        summary.accepted > 0,
        "no {name} input was accepted: {summary:?}"
    );
}

#[test]
fn fuzz_plan_parser() {
    fuzz_one("plan");
}

#[test]
fn fuzz_switchyard_yaml() {
    fuzz_one("manifest");
}

#[test]
fn fuzz_script_reader() {
    fuzz_one("script");
}

#[test]
fn fuzz_objects_reader() {
    fuzz_one("objects");
}
