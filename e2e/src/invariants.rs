//! What must hold in a database after any fault, read from the catalog and the registry:
//! no change applied twice, no lock left, no blue/green set orphaned or retained beyond
//! what retention keeps. Each check returns the violations it found (empty when it holds),
//! so a test can report every one at once.

use anyhow::Result;

use crate::postgres::rows;

/// Changes with more than one `deploy` event and no `revert` between: applied twice.
pub async fn applied_twice(url: &str) -> Result<Vec<String>> {
    rows(
        url,
        "SELECT change || ' deployed ' || count(*) || ' times' FROM sqitch.events \
          WHERE event = 'deploy' GROUP BY change_id, change \
         HAVING count(*) > 1 + (SELECT count(*) FROM sqitch.events r \
                                 WHERE r.event = 'revert' AND r.change_id = sqitch.events.change_id) \
          ORDER BY 1",
    )
    .await
}

/// Deploy locks still held (advisory locks of switchyard's class, or Sqitch's), and lock
/// holder records whose session is alive: after everyone stopped, there must be none.
pub async fn locks_left(url: &str) -> Result<Vec<String>> {
    let mut left = rows(
        url,
        "SELECT 'advisory lock ' || classid || '/' || objid || ' held by pid ' || pid \
           FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = \
                (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1",
    )
    .await?;
    if has_table(url, "switchyard", "locks").await? {
        left.extend(
            rows(
                url,
                "SELECT 'lock record of ' || project || ' by ' || holder FROM switchyard.locks l \
                  WHERE EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid) \
                  ORDER BY 1",
            )
            .await?,
        );
    }
    Ok(left)
}

/// Blue/green sets that nothing accounts for: physical schemas (`…__sy_<id>`) no pointer
/// names, pointers to schemas that do not exist, staging left half-built, shared sets no layer
/// serves or retains, layers prepared for a swap that never came, and more retained or staged sets per schema (and retained per layer suffix) than `keep`.
pub async fn orphaned_sets(url: &str, keep: usize) -> Result<Vec<String>> {
    if !has_table(url, "switchyard", "schema_pointers").await? {
        return rows(
            url,
            "SELECT 'schema ' || nspname || ' without a pointer' FROM pg_namespace \
              WHERE nspname ~ '__sy_[0-9]+$' ORDER BY 1",
        )
        .await;
    }
    let mut found = rows(
        url,
        "SELECT 'schema ' || n.nspname || ' without a pointer' FROM pg_namespace n \
          WHERE n.nspname ~ '__sy_[0-9]+$' \
            AND NOT EXISTS (SELECT 1 FROM switchyard.schema_pointers p WHERE p.physical_schema = n.nspname) \
         UNION ALL \
         SELECT 'pointer ' || p.role || ' ' || p.physical_schema || ' to a missing schema' \
           FROM switchyard.schema_pointers p \
          WHERE NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = p.physical_schema) \
         UNION ALL \
         SELECT 'prepared layer ' || nspname || ' never swapped in' FROM pg_namespace \
          WHERE nspname ~ '__sy_next_[0-9]+$' \
         UNION ALL \
         SELECT 'staged set ' || physical_schema || ' left half-built' FROM switchyard.schema_pointers \
          WHERE role = 'staged' AND state = 'building' \
         ORDER BY 1",
    )
    .await?;
    found.extend(
        rows(
            url,
            &format!(
                "SELECT 'logical ' || logical_schema || ' keeps ' || count(*) || ' ' || role || ' sets' \
                   FROM switchyard.schema_pointers WHERE role IN ('retained', 'staged') \
                  GROUP BY project, logical_schema, role HAVING count(*) > {keep} ORDER BY 1"
            ),
        )
        .await?,
    );
    if has_table(url, "switchyard", "layers").await? {
        found.extend(
            rows(
                url,
                &format!(
                    "SELECT 'shared set ' || p.physical_schema || ' served by no layer' \
                       FROM switchyard.schema_pointers p WHERE p.role = 'shared' \
                        AND NOT EXISTS (SELECT 1 FROM switchyard.layers l WHERE l.physical_schema = p.physical_schema) \
                     UNION ALL \
                     SELECT 'layer ' || logical_schema || suffix || ' retains ' || count(*) || ' sets' \
                       FROM switchyard.layers WHERE role = 'retained' \
                      GROUP BY project, suffix, logical_schema HAVING count(*) > {keep} \
                     ORDER BY 1"
                ),
            )
            .await?,
        );
    }
    Ok(found)
}

/// The deployed changes in registry order, as `change` names.
pub async fn deployed_changes(url: &str) -> Result<Vec<String>> {
    rows(
        url,
        "SELECT change FROM sqitch.changes ORDER BY committed_at, change",
    )
    .await
}

async fn has_table(url: &str, schema: &str, table: &str) -> Result<bool> {
    let found = rows(
        url,
        &format!("SELECT 1 FROM pg_tables WHERE schemaname = '{schema}' AND tablename = '{table}'"),
    )
    .await?;
    Ok(!found.is_empty())
}

/// Where the registry and the catalog disagree for a project whose every change creates
/// one table of its own name in `schema`: a table no change accounts for (half a change
/// committed) or a change whose table is missing (bookkeeping committed apart from it).
pub async fn registry_against_catalog(url: &str, schema: &str) -> Result<Vec<String>> {
    let tables = rows(
        url,
        &format!("SELECT tablename FROM pg_tables WHERE schemaname = '{schema}'"),
    )
    .await?;
    let changes = deployed_changes(url).await?;
    let mut found: Vec<String> = tables
        .iter()
        .filter(|t| !changes.contains(t))
        .map(|t| format!("table {schema}.{t} that no deployed change accounts for"))
        .collect();
    found.extend(
        changes
            .iter()
            .filter(|c| !tables.contains(c))
            .map(|c| format!("change {c} recorded without its table")),
    );
    Ok(found)
}

/// The blue/green bookkeeping and which layer views read which set, for failure reports.
pub async fn describe_sets(url: &str) -> Result<Vec<String>> {
    rows(
        url,
        "SELECT 'layer ' || suffix || ' ' || logical_schema || ' ' || physical_schema || ' ' || role FROM switchyard.layers \
         UNION ALL SELECT 'pointer ' || physical_schema || ' ' || role || ' ' || state FROM switchyard.schema_pointers \
         UNION ALL SELECT DISTINCT 'depends ' || dn.nspname || '.' || dc.relname || ' -> ' || rn.nspname \
           FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass \
           JOIN pg_class dc ON dc.oid = r.ev_class JOIN pg_namespace dn ON dn.oid = dc.relnamespace \
           JOIN pg_class rc ON rc.oid = d.refobjid AND d.refclassid = 'pg_class'::regclass \
           JOIN pg_namespace rn ON rn.oid = rc.relnamespace WHERE rn.nspname <> dn.nspname AND rn.nspname ~ '__sy_' \
         ORDER BY 1",
    )
    .await
}
