//! Drift check cost (issue #16): one `engine::drift::check` on a database with 1,000
//! deployed changes and a live blue-green schema of 500 object files (425 views, 50
//! functions, 25 materialized views with an index each), against the engine's plain
//! `status` read in the same run as the anchor. Prints `BENCH` lines.
//!
//! Ignored by default. Run:
//! `cargo build -p switchyard --bins && cargo test -p e2e --test drift_bench -- --ignored --nocapture 2>&1 | grep ^BENCH`

use std::time::{Duration, Instant};

use e2e::postgres;
use e2e::tools::{Fixture, USER_EMAIL, USER_NAME, run_ok, switchyard_on};
use switchyard::engine::Deployer;
use switchyard::engine::bluegreen::BlueGreen;
use switchyard::engine::drift;
use switchyard::project::Project;
use switchyard::project::objects::Objects;
use switchyard::registry::{Committer, Registry};

const CHANGES: usize = 1000;
const VIEWS: usize = 425;
const FUNCTIONS: usize = 50;
const MATVIEWS: usize = 25;
const RUNS: usize = 9;
/// What the catalog holds for them: each materialized view's index is an object too.
const CATALOG_OBJECTS: usize = VIEWS + FUNCTIONS + 2 * MATVIEWS;

fn project() -> Fixture {
    let mut fx = Fixture::new("bench");
    fx.write(
        "switchyard.yaml",
        "project: bench\nengine: postgres\nschemas:\n  bench: stable\n  bench_api: blue-green\n",
    );
    fx.change(
        "c0",
        &[],
        "CREATE SCHEMA bench;\nCREATE TABLE bench.data (id int PRIMARY KEY, amount int NOT NULL);\n",
        "DROP SCHEMA bench CASCADE;\n",
        "SELECT 1 FROM bench.data WHERE false;\n",
    );
    for c in 1..CHANGES {
        fx.change(
            &format!("c{c}"),
            &[],
            &format!("SELECT {c};\n"),
            "SELECT 1;\n",
            "SELECT 1;\n",
        );
    }
    for v in 0..VIEWS {
        fx.write(
            &format!("objects/bench_api/v{v}.sql"),
            &format!(
                "CREATE VIEW bench_api.v{v} AS SELECT id, amount + {v} AS amount FROM bench.data;\n"
            ),
        );
    }
    for f in 0..FUNCTIONS {
        fx.write(
            &format!("objects/bench_api/f{f}.sql"),
            &format!("CREATE FUNCTION bench_api.f{f}(k int) RETURNS int LANGUAGE sql STABLE AS $$ SELECT amount FROM bench_api.v{f} WHERE id = k $$;\n"),
        );
    }
    for m in 0..MATVIEWS {
        fx.write(
            &format!("objects/bench_api/m{m}.sql"),
            &format!("CREATE MATERIALIZED VIEW bench_api.m{m} AS SELECT id, amount FROM bench_api.v{m};\nCREATE UNIQUE INDEX m{m}_id ON bench_api.m{m} (id);\n"),
        );
    }
    fx
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn drift_check_on_1000_changes_and_500_objects() {
    let db = postgres::server().fresh_db().await.expect("db");
    let fx = project();
    run_ok(&mut switchyard_on(&fx, &db.url, &["deploy"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["stage"]));
    run_ok(&mut switchyard_on(&fx, &db.url, &["promote"]));

    let project = Project::load(fx.path()).expect("project");
    let objects = Objects::load(&project).expect("objects");
    let target = switchyard::pg::Target::parse(&db.url).expect("target");
    let committer = Committer {
        name: USER_NAME.into(),
        email: USER_EMAIL.into(),
    };
    let engine = Deployer::connect(&target, Registry::new("sqitch"), committer.clone())
        .await
        .expect("connect");
    let bluegreen = BlueGreen::new(engine.client(), Registry::new("sqitch"), committer);
    let (mut checks, mut anchors, mut hashing) = (Vec::new(), Vec::new(), Vec::new());
    let (mut catalogs, mut registry) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let started = Instant::now();
        let found = drift::check(&engine, &project, &objects, None)
            .await
            .expect("drift");
        checks.push(started.elapsed());
        assert!(found.is_empty(), "a fresh deploy has no drift: {found:?}");
        let started = Instant::now();
        engine.status_with(&project, false).await.expect("status");
        anchors.push(started.elapsed());
        // The client-side part of the check: reading 1,000 deploy scripts.
        let deployed = engine
            .registry()
            .deployed(engine.client(), project.name())
            .await
            .expect("deployed");
        let started = Instant::now();
        let _ = drift::script_drift(&project, &deployed, &[], &|p| {
            std::fs::read(p).ok().map(|b| format!("{}", b.len()))
        });
        hashing.push(started.elapsed());
        // Its two largest reads on their own: the live set's catalog, the registry rows.
        let started = Instant::now();
        let live = bluegreen.live_catalog(&project).await.expect("catalog");
        catalogs.push(started.elapsed());
        assert_eq!(live["bench_api"].len(), CATALOG_OBJECTS);
        let started = Instant::now();
        engine
            .registry()
            .deployed(engine.client(), project.name())
            .await
            .expect("deployed");
        registry.push(started.elapsed());
    }
    let (check, anchor, files) = (median(checks), median(anchors), median(hashing));
    println!(
        "BENCH drift_check changes={CHANGES} objects={} runs={RUNS} median_ms={:.1}",
        VIEWS + FUNCTIONS + MATVIEWS,
        ms(check)
    );
    println!("BENCH drift_check_file_reads median_ms={:.1}", ms(files));
    println!(
        "BENCH drift_check_catalog_read objects={CATALOG_OBJECTS} median_ms={:.1}",
        ms(median(catalogs))
    );
    println!(
        "BENCH drift_check_registry_read median_ms={:.1}",
        ms(median(registry))
    );
    println!("BENCH status_anchor median_ms={:.1}", ms(anchor));
    println!(
        "BENCH drift_check/status ratio={:.2}",
        check.as_secs_f64() / anchor.as_secs_f64()
    );
}
