//! The SQL blue/green runs on PostgreSQL, generated without a connection: staging names,
//! reference rewriting, `search_path` stamping, grants, the swap and retention checks.
//! Pure, so `--dry-run` prints exactly what would run.

use std::collections::{BTreeMap, BTreeSet};

use crate::pg::{quote_ident, quote_literal};
use crate::project::objects::{ObjectKind, qualified_references};

/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER: usize = 63;

/// `<schema>__sy_<id>`: where a deployment's copy of a schema lives.
pub fn physical_name(logical: &str, deployment: &str) -> String {
    format!("{logical}__sy_{deployment}")
}

/// Rewrites every `schema.` qualifier naming a key of `map` to its value, outside string
/// literals and comments. Routine bodies (dollar-quoted strings of a function or procedure
/// whose body is late-bound) instead lose their qualifiers on `late_bound` schemas: they
/// resolve through the routine's pinned `search_path`.
pub fn rewrite(
    sql: &str,
    map: &BTreeMap<String, String>,
    late_bound: Option<&BTreeSet<String>>,
) -> String {
    let mut edits = qualifier_edits(sql, map);
    if let Some(schemas) = late_bound {
        for (span, body) in dollar_quoted_bodies(sql) {
            let mut body_edits: Vec<std::ops::Range<usize>> = qualified_references(body)
                .into_iter()
                .filter(|r| schemas.contains(&r.schema))
                .map(|r| r.qualifier_span)
                .collect();
            if body_edits.is_empty() {
                continue;
            }
            body_edits.sort_by_key(|r| std::cmp::Reverse(r.start));
            let mut new_body = body.to_string();
            for span in body_edits {
                new_body.replace_range(span, "");
            }
            edits.push((span, new_body));
        }
    }
    apply_edits(sql, edits)
}

/// Rewrites every `schema.` qualifier naming a key of `map` everywhere code can hide in a
/// script run once: outside literals, and inside every dollar-quoted body (a `DO` block, a
/// function created and called on the spot), nested ones included. For verify scripts,
/// whose bodies must see exactly what the statements around them see (issue #12).
pub fn rewrite_throughout(sql: &str, map: &BTreeMap<String, String>) -> String {
    let mut edits = qualifier_edits(sql, map);
    for (span, body) in dollar_quoted_bodies(sql) {
        let rewritten = rewrite_throughout(body, map);
        if rewritten != body {
            edits.push((span, rewritten));
        }
    }
    apply_edits(sql, edits)
}

type Edit = (std::ops::Range<usize>, String);

/// The schema tokens of `sql`'s own qualified references (not those inside literals) that
/// `map` renames.
fn qualifier_edits(sql: &str, map: &BTreeMap<String, String>) -> Vec<Edit> {
    qualified_references(sql)
        .into_iter()
        .filter_map(|r| {
            map.get(&r.schema)
                .map(|to| (r.schema_span, quote_ident(to)))
        })
        .collect()
}

/// The body of every dollar-quoted string in `sql` (between `$tag$` and `$tag$`), with
/// its byte range in `sql`.
fn dollar_quoted_bodies(sql: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let Ok(scan) = pg_query::scan(sql) else {
        return Vec::new();
    };
    scan.tokens
        .iter()
        .filter(|token| token.token == pg_query::protobuf::Token::Sconst as i32)
        .filter_map(|token| {
            let start = usize::try_from(token.start).ok()?;
            let end = usize::try_from(token.end).ok()?;
            let text = sql.get(start..end)?.strip_prefix('$')?;
            let open = text.find('$')? + 2;
            let close = end - start - open;
            (close >= open).then(|| {
                (
                    start + open..start + close,
                    &sql[start + open..start + close],
                )
            })
        })
        .collect()
}

/// Applies non-overlapping edits, last first so earlier spans stay valid.
fn apply_edits(sql: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = sql.to_string();
    for (span, text) in edits {
        out.replace_range(span, &text);
    }
    out
}

/// True when a routine's body is resolved at run time (plpgsql and friends, and SQL
/// without `BEGIN ATOMIC`).
pub fn late_bound(kind: ObjectKind, sql: &str) -> bool {
    matches!(kind, ObjectKind::Function | ObjectKind::Procedure)
        && !sql.to_ascii_uppercase().contains("BEGIN ATOMIC")
}

/// A `search_path` value: the schemas quoted, comma-separated, `pg_temp` last so a
/// temporary object can never shadow ours.
pub fn search_path(schemas: &[String]) -> String {
    let mut parts: Vec<String> = schemas.iter().map(|s| quote_ident(s)).collect();
    parts.push("pg_temp".into());
    parts.join(", ")
}

/// `SET search_path` for the session building a schema.
pub fn set_search_path(schemas: &[String]) -> String {
    format!("SET search_path TO {}", search_path(schemas))
}

/// Pins `search_path` on every function and procedure of `physical`: `path`, then
/// `pg_catalog` explicitly, so a name whose blue-green qualifier was dropped from a body
/// (`api.version()` → `version()`) still finds our object before a built-in of that name.
pub fn stamp_routines(physical: &str, path: &[String]) -> String {
    let mut path = path.to_vec();
    path.push("pg_catalog".into());
    format!(
        "DO $sy$ DECLARE r regprocedure; BEGIN \
FOR r IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p WHERE p.pronamespace = {ns}::regnamespace AND p.prokind IN ('f', 'p') LOOP \
EXECUTE format('ALTER ROUTINE %s SET search_path = %s', r, {path}); END LOOP; END $sy$",
        ns = quote_literal(&quote_ident(physical)),
        path = quote_literal(&search_path(&path)),
    )
}

/// The grantee as SQL: `PUBLIC` or a quoted role name.
const GRANTEE: &str = "CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END";
const GRANT_OPTION: &str = "CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END";

/// Copies the live schema's own grants and default privileges to the staging schema.
/// Runs before any object is created, so default privileges apply to the new objects. A
/// no-op when there is no live schema yet.
pub fn copy_schema_privileges(live: &str, staging: &str) -> String {
    format!(
        "DO $sy$ DECLARE live oid := to_regnamespace({live_l}); g record; BEGIN \
IF live IS NULL THEN RETURN; END IF; \
FOR g IN SELECT a.privilege_type, a.grantee, a.is_grantable FROM pg_catalog.pg_namespace n, aclexplode(n.nspacl) a \
WHERE n.oid = live AND a.grantee <> n.nspowner LOOP \
EXECUTE format('GRANT %s ON SCHEMA %s TO %s%s', g.privilege_type, {staging_l}, {GRANTEE}, {GRANT_OPTION}); END LOOP; \
FOR g IN SELECT d.defaclrole, CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' END AS objtype, \
a.privilege_type, a.grantee, a.is_grantable FROM pg_catalog.pg_default_acl d, aclexplode(d.defaclacl) a \
WHERE d.defaclnamespace = live AND d.defaclobjtype IN ('r', 'S', 'f', 'T') LOOP \
EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %s GRANT %s ON %s TO %s%s', pg_catalog.pg_get_userbyid(g.defaclrole), {staging_l}, \
g.privilege_type, g.objtype, {GRANTEE}, {GRANT_OPTION}); END LOOP; END $sy$",
        live_l = quote_literal(&quote_ident(live)),
        staging_l = quote_literal(&quote_ident(staging)),
    )
}

/// Copies object grants from live objects to the staging objects of the same name
/// (relations of any kind, so a view that became a materialized view, or a layer's view
/// over one, keeps them; routines; types), including a revoked `PUBLIC EXECUTE`.
pub fn copy_object_privileges(live: &str, staging: &str) -> String {
    format!(
        "DO $sy$ DECLARE live oid := to_regnamespace({live_l}); stage oid := to_regnamespace({staging_l}); g record; BEGIN \
IF live IS NULL THEN RETURN; END IF; \
FOR g IN SELECT s.oid::regclass::text AS target, a.privilege_type, a.grantee, a.is_grantable \
FROM pg_catalog.pg_class l JOIN pg_catalog.pg_class s ON s.relname = l.relname AND s.relnamespace = stage AND s.relkind IN ('v', 'm', 'r'), aclexplode(l.relacl) a \
WHERE l.relnamespace = live AND l.relkind IN ('v', 'm', 'r') AND a.grantee <> l.relowner LOOP \
EXECUTE format('GRANT %s ON TABLE %s TO %s%s', g.privilege_type, g.target, {GRANTEE}, {GRANT_OPTION}); END LOOP; \
FOR g IN SELECT s.oid::regprocedure::text AS target, a.privilege_type, a.grantee, a.is_grantable \
FROM pg_catalog.pg_proc l JOIN pg_catalog.pg_proc s ON s.proname = l.proname AND s.pronamespace = stage AND s.pronargs = l.pronargs, aclexplode(l.proacl) a \
WHERE l.pronamespace = live AND a.grantee <> l.proowner LOOP \
EXECUTE format('GRANT %s ON ROUTINE %s TO %s%s', g.privilege_type, g.target, {GRANTEE}, {GRANT_OPTION}); END LOOP; \
FOR g IN SELECT s.oid::regprocedure::text AS target FROM pg_catalog.pg_proc l \
JOIN pg_catalog.pg_proc s ON s.proname = l.proname AND s.pronamespace = stage AND s.pronargs = l.pronargs \
WHERE l.pronamespace = live AND l.proacl IS NOT NULL AND NOT EXISTS (SELECT 1 FROM aclexplode(l.proacl) a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') LOOP \
EXECUTE format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', g.target); END LOOP; \
FOR g IN SELECT format('%I.%I', st.typnamespace::regnamespace::text, st.typname) AS target, a.privilege_type, a.grantee, a.is_grantable \
FROM pg_catalog.pg_type l JOIN pg_catalog.pg_type st ON st.typname = l.typname AND st.typnamespace = stage, aclexplode(l.typacl) a \
WHERE l.typnamespace = live AND l.typtype IN ('e', 'c', 'd', 'r') AND a.grantee <> l.typowner LOOP \
EXECUTE format('GRANT %s ON TYPE %s TO %s%s', g.privilege_type, g.target, {GRANTEE}, {GRANT_OPTION}); END LOOP; END $sy$",
        live_l = quote_literal(&quote_ident(live)),
        staging_l = quote_literal(&quote_ident(staging)),
    )
}

/// Fails (SQLSTATE 42501) naming every privilege the live schema grants that the staging
/// schema would lose: on the schema, its default privileges, and objects of the same name.
/// Users lost grants on swap in MaterializeInc/materialize#24689; this refuses the swap.
pub fn check_privileges(live: &str, staging: &str) -> String {
    format!(
        "DO $sy$ DECLARE live oid := to_regnamespace({live_l}); stage oid := to_regnamespace({staging_l}); lost text; BEGIN \
IF live IS NULL THEN RETURN; END IF; \
SELECT string_agg(x, ', ' ORDER BY x) INTO lost FROM ( \
SELECT format('%s on schema to %s', a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END) AS x \
FROM pg_catalog.pg_namespace n, aclexplode(n.nspacl) a WHERE n.oid = live AND a.grantee <> n.nspowner \
EXCEPT SELECT format('%s on schema to %s', a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END) \
FROM pg_catalog.pg_namespace n, aclexplode(n.nspacl) a WHERE n.oid = stage \
UNION ALL (SELECT format('default %s on %s to %s', a.privilege_type, d.defaclobjtype, a.grantee::regrole) FROM pg_catalog.pg_default_acl d, aclexplode(d.defaclacl) a WHERE d.defaclnamespace = live \
EXCEPT SELECT format('default %s on %s to %s', a.privilege_type, d.defaclobjtype, a.grantee::regrole) FROM pg_catalog.pg_default_acl d, aclexplode(d.defaclacl) a WHERE d.defaclnamespace = stage) \
UNION ALL (SELECT format('%s on %s to %s', a.privilege_type, l.relname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END) \
FROM pg_catalog.pg_class l, aclexplode(l.relacl) a WHERE l.relnamespace = live AND l.relkind IN ('v', 'm', 'r') AND a.grantee <> l.relowner \
AND EXISTS (SELECT 1 FROM pg_catalog.pg_class s WHERE s.relnamespace = stage AND s.relname = l.relname) \
EXCEPT SELECT format('%s on %s to %s', a.privilege_type, s.relname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END) \
FROM pg_catalog.pg_class s, aclexplode(s.relacl) a WHERE s.relnamespace = stage) \
UNION ALL (SELECT format('%s on %s() to %s', a.privilege_type, l.proname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END) \
FROM pg_catalog.pg_proc l, aclexplode(l.proacl) a WHERE l.pronamespace = live AND a.grantee <> l.proowner \
AND EXISTS (SELECT 1 FROM pg_catalog.pg_proc s WHERE s.pronamespace = stage AND s.proname = l.proname) \
EXCEPT SELECT format('%s on %s() to %s', a.privilege_type, s.proname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END) \
FROM pg_catalog.pg_proc s, aclexplode(coalesce(s.proacl, acldefault('f', s.proowner))) a WHERE s.pronamespace = stage) \
) lost_grants; \
IF lost IS NOT NULL THEN RAISE EXCEPTION 'staging schema % would lose grants the live schema has: %', {staging_l}, lost USING ERRCODE = '42501'; END IF; END $sy$",
        live_l = quote_literal(&quote_ident(live)),
        staging_l = quote_literal(&quote_ident(staging)),
    )
}

/// `ALTER SCHEMA … RENAME TO …`.
pub fn rename_schema(from: &str, to: &str) -> String {
    format!(
        "ALTER SCHEMA {} RENAME TO {}",
        quote_ident(from),
        quote_ident(to)
    )
}

/// `DROP SCHEMA … CASCADE`.
pub fn drop_schema(physical: &str) -> String {
    format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(physical))
}

/// Objects outside `physical` that depend on objects inside it (pg_depend): a retained
/// schema is dropped only when this returns no row. Parameter `$1` is the schema name.
pub const OUTSIDE_DEPENDENTS: &str = "\
WITH inside AS (
  SELECT 'pg_catalog.pg_class'::regclass AS classid, oid FROM pg_catalog.pg_class WHERE relnamespace = to_regnamespace(quote_ident($1))
  UNION ALL SELECT 'pg_catalog.pg_proc'::regclass, oid FROM pg_catalog.pg_proc WHERE pronamespace = to_regnamespace(quote_ident($1))
  UNION ALL SELECT 'pg_catalog.pg_type'::regclass, oid FROM pg_catalog.pg_type WHERE typnamespace = to_regnamespace(quote_ident($1)))
SELECT DISTINCT coalesce(pg_catalog.pg_describe_object(CASE WHEN r.oid IS NOT NULL THEN 'pg_catalog.pg_class'::regclass ELSE d.classid END, coalesce(r.ev_class, d.objid), 0), 'object ' || d.objid::text)
  FROM pg_catalog.pg_depend d
  JOIN inside i ON d.refclassid = i.classid AND d.refobjid = i.oid
  LEFT JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
  LEFT JOIN pg_catalog.pg_class c ON c.oid = coalesce(r.ev_class, CASE WHEN d.classid = 'pg_catalog.pg_class'::regclass THEN d.objid END)
  LEFT JOIN pg_catalog.pg_proc p ON d.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = d.objid
  LEFT JOIN pg_catalog.pg_type t ON d.classid = 'pg_catalog.pg_type'::regclass AND t.oid = d.objid
 WHERE d.deptype = 'n'
   AND coalesce(c.relnamespace, p.pronamespace, t.typnamespace) IS NOT NULL
   AND coalesce(c.relnamespace, p.pronamespace, t.typnamespace) <> to_regnamespace(quote_ident($1))
 ORDER BY 1";

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn rewrite_points_qualified_references_at_staging_and_leaves_the_rest() {
        let sql = "CREATE VIEW api.v AS SELECT x.id, 'api.t' FROM api.t x JOIN shop.orders o USING (id) -- api.c";
        let got = rewrite(sql, &map(&[("api", "api__sy_7")]), None);
        assert_eq!(
            got,
            "CREATE VIEW \"api__sy_7\".v AS SELECT x.id, 'api.t' FROM \"api__sy_7\".t x JOIN shop.orders o USING (id) -- api.c"
        );
    }

    #[test]
    fn rewrite_throughout_reaches_into_do_blocks_and_nested_bodies_issue_12() {
        let sql = "DO $$ BEGIN PERFORM count(*) FROM api.v; EXECUTE $q$SELECT 1 FROM api.t$q$; \
                   RAISE NOTICE 'api.x'; END $$;";
        let got = rewrite_throughout(sql, &map(&[("api", "api__sy_7")]));
        assert_eq!(
            got,
            "DO $$ BEGIN PERFORM count(*) FROM \"api__sy_7\".v; EXECUTE $q$SELECT 1 FROM \"api__sy_7\".t$q$; \
                   RAISE NOTICE 'api.x'; END $$;"
        );
        let created = "CREATE FUNCTION pg_temp.f() RETURNS bigint LANGUAGE sql AS $f$ SELECT count(*) FROM api.v $f$";
        assert_eq!(
            rewrite_throughout(created, &map(&[("api", "api_dev")])),
            "CREATE FUNCTION pg_temp.f() RETURNS bigint LANGUAGE sql AS $f$ SELECT count(*) FROM \"api_dev\".v $f$"
        );
        assert_eq!(
            rewrite_throughout(sql, &BTreeMap::new()),
            sql,
            "nothing mapped, nothing changed"
        );
    }

    #[test]
    fn rewrite_quotes_names_that_need_it_and_handles_quoted_input() {
        let got = rewrite(
            "SELECT * FROM \"Api\".t",
            &map(&[("Api", "Api__sy_1")]),
            None,
        );
        assert_eq!(got, "SELECT * FROM \"Api__sy_1\".t");
    }

    #[test]
    fn rewrite_unqualifies_late_bound_bodies_and_keeps_the_signature_rewritten() {
        let sql = "CREATE FUNCTION api.f(s api.status) RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN (SELECT count(*) FROM api.v WHERE note = 'api.x'); END $body$";
        let bg: BTreeSet<String> = ["api".to_string()].into();
        let got = rewrite(sql, &map(&[("api", "api__sy_2")]), Some(&bg));
        assert_eq!(
            got,
            "CREATE FUNCTION \"api__sy_2\".f(s \"api__sy_2\".status) RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN (SELECT count(*) FROM v WHERE note = 'api.x'); END $body$"
        );
    }

    #[test]
    fn late_bound_is_false_for_begin_atomic_and_non_routines() {
        assert!(late_bound(
            ObjectKind::Function,
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$"
        ));
        assert!(!late_bound(
            ObjectKind::Function,
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END"
        ));
        assert!(!late_bound(ObjectKind::View, "CREATE VIEW v AS SELECT 1"));
    }

    #[test]
    fn physical_names_and_paths() {
        assert_eq!(physical_name("shop_api", "42"), "shop_api__sy_42");
        assert_eq!(
            search_path(&["a".into(), "B".into()]),
            "\"a\", \"B\", pg_temp"
        );
        let stamp = stamp_routines("api__sy_3", &["api__sy_3".into(), "shop".into()]);
        assert!(stamp.contains("'\"api__sy_3\"'::regnamespace"), "{stamp}");
        assert!(
            stamp.contains("'\"api__sy_3\", \"shop\", \"pg_catalog\", pg_temp'"),
            "{stamp}"
        );
    }
}
