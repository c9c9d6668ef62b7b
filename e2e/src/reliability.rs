//! Fixtures shared by the reliability suite (`tests/reliability*.rs`): a project that grows
//! one change and one blue-green version per round, and a reading of what switchyard's
//! database sessions are doing at an instant (to aim faults at a phase and report where
//! they landed).

use crate::postgres::rows;
use crate::tools::Fixture;

/// Round `r` of the project: a stable schema `shop` with tables `t0..=t<r>` (one change
/// each), and a blue-green schema `api` whose objects say which round built them.
pub fn project(round: usize) -> Fixture {
    let mut fx = Fixture::new("shop");
    fx.write(
        "switchyard.yaml",
        "project: shop\nengine: postgres\nschemas:\n  shop: stable\n  api: blue-green\n",
    );
    fx.change(
        "t0",
        &[],
        "CREATE SCHEMA shop;\nCREATE TABLE shop.t0 (id int PRIMARY KEY);\nINSERT INTO shop.t0 VALUES (1), (2);\n",
        "DROP SCHEMA shop CASCADE;\n",
        "SELECT 1 FROM shop.t0 WHERE false;\n",
    );
    for i in 1..=round {
        fx.change(
            &format!("t{i}"),
            &[],
            &format!("CREATE TABLE shop.t{i} (id int);\nINSERT INTO shop.t{i} SELECT generate_series(1, 1000);\nSELECT pg_sleep(0.41);\n"),
            &format!("DROP TABLE shop.t{i};\n"),
            &format!("SELECT 1 FROM shop.t{i} WHERE false;\n"),
        );
    }
    fx.write(
        "objects/api/rows.sql",
        "CREATE VIEW api.rows AS SELECT id FROM shop.t0;\n",
    );
    fx.write(
        "objects/api/version.sql",
        &format!(
            "CREATE FUNCTION api.version() RETURNS text LANGUAGE sql AS $$ SELECT 'v{round}'::text $$;\n"
        ),
    );
    // Verified against the staged set and again after the swap: slow enough that kills
    // land inside staging and swapping, not only between them.
    fx.write(
        "objects/api/verify.sql",
        "SELECT pg_sleep(0.42);\nSELECT 1 / (SELECT count(*)::int FROM api.rows);\n",
    );
    fx.write(
        "objects/api/totals.sql",
        "CREATE MATERIALIZED VIEW api.totals AS SELECT count(*) AS n FROM api.rows;\n",
    );
    fx
}

/// A Promotion `name` from Environment `dev` to `prod`.
pub fn promotion(name: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Promotion\nmetadata:\n  name: {name}\nspec:\n  from:\n    environment: dev\n  to:\n    environment: prod\n"
    )
}

/// What the controller's sessions were doing in the database at the moment of a kill.
pub async fn phase_at(url: &str) -> &'static str {
    let active = rows(
        url,
        "SELECT query FROM pg_stat_activity WHERE application_name = 'switchyard' \
          AND state <> 'idle' AND pid <> pg_backend_pid()",
    )
    .await
    .unwrap_or_default()
    .join("\n")
    .to_lowercase();
    let building = rows(
        url,
        "SELECT 1 FROM switchyard.schema_pointers WHERE role = 'staged' AND state = 'building'",
    )
    .await
    .is_ok_and(|r| !r.is_empty());
    match () {
        _ if active.is_empty() => "idle",
        _ if active.contains("drop schema") => "cleanup",
        _ if active.contains("pg_sleep(0.41)") => "deploy",
        _ if building => "stage",
        _ if active.contains("pg_sleep(0.42)") => "swap",
        _ if active.contains("rename") || active.contains("_dev") || active.contains("_prod") => {
            "swap"
        }
        _ if active.contains("sqitch") || active.contains("switchyard.") => "registry",
        _ => {
            eprintln!("unclassified activity at a kill: {active}");
            "other"
        }
    }
}
