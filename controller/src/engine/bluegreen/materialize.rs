//! EXPERIMENTAL: the blue/green flow in Materialize's dialect (staging clusters, `SWAP
//! WITH`), as SQL text only, checked against golden files in
//! `engine/bluegreen/testdata/materialize/`; never run against a live Materialize here.

use std::collections::BTreeMap;

use super::sql::{physical_name, rewrite};
use crate::pg::{quote_ident, quote_literal};
use crate::project::Manifest;
use crate::project::objects::{ObjectKind, Objects};

/// The statements of one Materialize blue/green deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaterializePlan {
    /// Create staging clusters and schemas, then the objects.
    pub stage: Vec<String>,
    /// Poll until it returns 0: objects of the staging schemas not yet hydrated.
    pub hydration_query: String,
    /// The swap transaction.
    pub swap: Vec<String>,
}

/// Generates the SQL to stage every blue-green schema of `objects` under deployment `id`
/// and to swap it in.
pub fn plan(manifest: &Manifest, objects: &Objects, id: &str) -> MaterializePlan {
    let schemas: BTreeMap<String, String> = objects
        .schemas
        .iter()
        .map(|s| (s.clone(), physical_name(s, id)))
        .collect();
    let clusters: BTreeMap<String, String> = manifest
        .clusters
        .keys()
        .map(|c| (c.clone(), physical_name(c, id)))
        .collect();
    let default_cluster = clusters.values().next().cloned();
    let mut out = MaterializePlan::default();
    for (name, cluster) in &manifest.clusters {
        out.stage.push(format!(
            "CREATE CLUSTER {} (SIZE = {}, REPLICATION FACTOR = {})",
            quote_ident(&clusters[name]),
            quote_literal(&cluster.size),
            cluster.replication_factor
        ));
    }
    for physical in schemas.values() {
        out.stage
            .push(format!("CREATE SCHEMA {}", quote_ident(physical)));
    }
    for object in &objects.ordered {
        for statement in &object.statements {
            let sql = rewrite(&statement.sql, &schemas, None);
            let sql = match (&default_cluster, object.kind, statement_is_index(&sql)) {
                (Some(cluster), _, true) => in_cluster(&sql, "ON", cluster),
                (Some(cluster), ObjectKind::MaterializedView, false) => {
                    in_cluster(&sql, "AS", cluster)
                }
                _ => sql,
            };
            out.stage.push(sql);
        }
    }
    let names: Vec<String> = schemas.values().map(|s| quote_literal(s)).collect();
    out.hydration_query = format!(
        "SELECT count(*) FROM mz_internal.mz_hydration_statuses h \
JOIN mz_catalog.mz_objects o ON o.id = h.object_id JOIN mz_catalog.mz_schemas s ON s.id = o.schema_id \
WHERE s.name IN ({}) AND NOT h.hydrated",
        names.join(", ")
    );
    out.swap.push("BEGIN".into());
    for (logical, physical) in &schemas {
        out.swap.push(format!(
            "ALTER SCHEMA {} SWAP WITH {}",
            quote_ident(logical),
            quote_ident(physical)
        ));
    }
    for (logical, physical) in &clusters {
        out.swap.push(format!(
            "ALTER CLUSTER {} SWAP WITH {}",
            quote_ident(logical),
            quote_ident(physical)
        ));
    }
    out.swap.push("COMMIT".into());
    out
}

fn statement_is_index(sql: &str) -> bool {
    matches!(
        pg_query::parse(sql, 0).ok().and_then(|p| p
            .protobuf
            .stmts
            .first()
            .and_then(|s| s.stmt.as_ref())
            .and_then(|n| n.node.clone())),
        Some(pg_query::NodeEnum::IndexStmt(_))
    )
}

/// Inserts `IN CLUSTER <cluster>` before the first top-level `keyword` token.
fn in_cluster(sql: &str, keyword: &str, cluster: &str) -> String {
    let Ok(scan) = pg_query::scan(sql) else {
        return sql.to_string();
    };
    let mut depth = 0i32;
    for token in &scan.tokens {
        let (start, end) = (token.start as usize, token.end as usize);
        let text = sql.get(start..end).unwrap_or_default();
        match text {
            "(" => depth += 1,
            ")" => depth -= 1,
            _ if depth == 0 && text.eq_ignore_ascii_case(keyword) => {
                return format!(
                    "{}IN CLUSTER {} {}",
                    &sql[..start],
                    quote_ident(cluster),
                    &sql[start..]
                );
            }
            _ => {}
        }
    }
    sql.to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::project::objects;
    use crate::project::{Cluster, Engine, SchemaMode};

    /// Compares with `engine/bluegreen/testdata/materialize/<name>`; `SWITCHYARD_BLESS=1` rewrites it.
    fn golden(name: &str, got: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/engine/bluegreen/testdata/materialize")
            .join(name);
        if std::env::var_os("SWITCHYARD_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
            std::fs::write(&path, got).expect("bless");
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with SWITCHYARD_BLESS=1)", path.display()));
        assert_eq!(
            got,
            want,
            "{} differs; rerun with SWITCHYARD_BLESS=1 if the change is intended",
            path.display()
        );
    }

    #[test]
    fn stage_and_swap_sql_matches_the_golden_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = [
            (
                "objects/shop_api/orders_v.sql",
                "CREATE VIEW shop_api.orders_v AS SELECT id, amount FROM shop.orders;\n",
            ),
            (
                "objects/shop_api/totals.sql",
                "CREATE MATERIALIZED VIEW shop_api.totals AS SELECT count(*) AS n FROM shop_api.orders_v;\nCREATE INDEX totals_n ON shop_api.totals (n);\n",
            ),
        ];
        for (path, body) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, body).expect("write");
        }
        let manifest = Manifest {
            project: "shop".into(),
            engine: Engine::Materialize,
            plan: "sqitch.plan".into(),
            schemas: [
                ("shop".to_string(), SchemaMode::Stable),
                ("shop_api".to_string(), SchemaMode::BlueGreen),
            ]
            .into(),
            clusters: [(
                "serving".to_string(),
                Cluster {
                    size: "50cc".into(),
                    replication_factor: 2,
                },
            )]
            .into(),
            variables: BTreeMap::new(),
        };
        let objects = objects::load(dir.path(), &manifest.schemas).expect("objects");
        let plan = plan(&manifest, &objects, "42");
        golden("stage.sql", &(plan.stage.join(";\n") + ";\n"));
        golden("hydration.sql", &(plan.hydration_query.clone() + ";\n"));
        golden("swap.sql", &(plan.swap.join(";\n") + ";\n"));
    }
}
