//! The catalog of blue-green sets as a fingerprint per object: what PostgreSQL prints for
//! its definition, owner and grants (read with `search_path = pg_catalog`), with every
//! physical set name of the project written back to its logical name, so a set
//! fingerprints the same staged, live after a rename and served through a layer.
//! Reads only; never writes the registry.

use std::collections::BTreeMap;

use sha2::Digest;

use super::*;
use crate::registry::bluegreen::{self as pointers, Pointer};

/// Object identity (e.g. "view big_customers", "function f(integer)") → sha256 hex of its
/// normalised catalog definition, owner and grants, per logical schema.
pub type Catalog = BTreeMap<String, BTreeMap<String, String>>;

/// Grants as sorted `grantee privilege[*]` items (`*`: with grant option); a missing ACL
/// reads as its default, so `NULL` and an explicit default compare equal. `{acl}` and
/// `{owner}` are the columns, `{kind}` the `acldefault` letter.
macro_rules! grants {
    ($acl:literal, $owner:literal, $kind:literal) => {
        concat!(
            "(SELECT coalesce(string_agg(x, ',' ORDER BY x), '') FROM (SELECT format('%s %s%s', \
CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, \
CASE WHEN a.is_grantable THEN '*' ELSE '' END) AS x FROM aclexplode(coalesce(",
            $acl,
            ", acldefault('",
            $kind,
            "', ",
            $owner,
            "))) a) g)"
        )
    };
}

/// Every object of the schemas named in `$1` (`text[]`): schema, identity, definition.
/// Run with `search_path = pg_catalog` so names outside it print qualified.
const CATALOG: &str = concat!(
    "WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY($1::text[])) \
SELECT n.nspname, CASE c.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view ' \
WHEN 'S' THEN 'sequence ' WHEN 'i' THEN 'index ' WHEN 'I' THEN 'index ' WHEN 'f' THEN 'foreign table ' \
ELSE 'table ' END || c.relname, \
concat_ws(E'\\n', c.relkind, CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) \
WHEN c.relkind IN ('i', 'I') THEN pg_get_indexdef(c.oid) \
WHEN c.relkind = 'S' THEN (SELECT format('%s %s %s %s %s %s %s', format_type(s.seqtypid, NULL), s.seqstart, \
s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle) FROM pg_sequence s WHERE s.seqrelid = c.oid) END, \
(SELECT string_agg(format('%I %s%s', a.attname, format_type(a.atttypid, a.atttypmod), \
CASE WHEN a.attnotnull THEN ' not null' ELSE '' END), ', ' ORDER BY a.attnum) \
FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
'owner ' || pg_get_userbyid(c.relowner), 'grants ' || ",
    grants!("c.relacl", "c.relowner", "r"),
    ") FROM pg_class c JOIN ns n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('v', 'm', 'r', 'p', 'S', 'f', 'i', 'I') \
UNION ALL SELECT n.nspname, CASE p.prokind WHEN 'p' THEN 'procedure ' WHEN 'a' THEN 'aggregate ' \
ELSE 'function ' END || p.proname || '(' || coalesce((SELECT string_agg(format_type(a.t, NULL), ', ' ORDER BY a.i) \
FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, i)), '') || ')', \
concat_ws(E'\\n', CASE WHEN p.prokind = 'a' THEN (SELECT format('%s %s %s %s', ag.aggtransfn, ag.aggfinalfn, \
format_type(ag.aggtranstype, NULL), ag.agginitval) FROM pg_aggregate ag WHERE ag.aggfnoid = p.oid) \
ELSE pg_get_functiondef(p.oid) END, 'owner ' || pg_get_userbyid(p.proowner), 'grants ' || ",
    grants!("p.proacl", "p.proowner", "f"),
    ") FROM pg_proc p JOIN ns n ON n.oid = p.pronamespace \
WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'i') \
UNION ALL SELECT n.nspname, CASE t.typtype WHEN 'd' THEN 'domain ' ELSE 'type ' END || t.typname, \
concat_ws(E'\\n', t.typtype, CASE t.typtype \
WHEN 'e' THEN (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) \
WHEN 'c' THEN (SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum) \
FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) \
WHEN 'd' THEN concat_ws(' ', format_type(t.typbasetype, t.typtypmod), CASE WHEN t.typnotnull THEN 'not null' END, \
'default ' || t.typdefault, (SELECT string_agg(format('%I %s', k.conname, pg_get_constraintdef(k.oid)), ' ' ORDER BY k.conname) \
FROM pg_constraint k WHERE k.contypid = t.oid)) \
WHEN 'r' THEN (SELECT format('%s %s', format_type(r.rngsubtype, NULL), r.rngsubdiff) FROM pg_range r WHERE r.rngtypid = t.oid) END, \
'owner ' || pg_get_userbyid(t.typowner), 'grants ' || ",
    grants!("t.typacl", "t.typowner", "T"),
    ") FROM pg_type t JOIN ns n ON n.oid = t.typnamespace \
WHERE t.typtype IN ('e', 'd', 'r') \
OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')"
);

const CATALOG_CONTEXT: &str = "reading the catalog of blue-green sets";

/// One object as [`CATALOG`] returns it, before normalising.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CatalogRow {
    /// The physical schema it lives in.
    pub schema: String,
    /// `kind name` (routines with their identity arguments).
    pub object: String,
    /// Definition, owner and grants as the catalog prints them.
    pub definition: String,
}

/// Physical → logical for every set of the project (staged, live, retained, shared).
pub(super) fn logical_names(all: &[Pointer]) -> BTreeMap<String, String> {
    all.iter()
        .map(|p| (p.physical.clone(), p.logical.clone()))
        .collect()
}

/// `text` with every physical set name in `names` (physical → logical) replaced by its
/// logical name: as an unquoted identifier (whole words only, so `api__sy_1` never
/// matches inside `api__sy_12`) and as a quoted one.
pub fn normalise(text: &str, names: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (physical, logical) in names.iter().filter(|(p, l)| p != l) {
        out = out.replace(&quoted(physical), &quoted(logical));
    }
    let mut result = String::with_capacity(out.len());
    let mut word = String::new();
    for c in out.chars() {
        if c.is_alphanumeric() || c == '_' || c == '$' {
            word.push(c);
            continue;
        }
        result.push_str(names.get(&word).unwrap_or(&word));
        word.clear();
        result.push(c);
    }
    result.push_str(names.get(&word).unwrap_or(&word));
    result
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Groups rows by logical schema (`sets`: physical → logical) and fingerprints each
/// object, its identity and definition normalised with `names`.
pub(super) fn fingerprint(
    rows: &[CatalogRow],
    sets: &BTreeMap<String, String>,
    names: &BTreeMap<String, String>,
) -> Catalog {
    let mut out = Catalog::new();
    for logical in sets.values() {
        out.entry(logical.clone()).or_default();
    }
    for row in rows {
        let Some(logical) = sets.get(&row.schema) else {
            continue;
        };
        let digest = sha2::Sha256::digest(normalise(&row.definition, names).as_bytes());
        out.entry(logical.clone())
            .or_default()
            .insert(normalise(&row.object, names), hex::encode(digest));
    }
    out
}

impl BlueGreen<'_> {
    /// The catalog of every live (served) set of the project, keyed by logical schema.
    /// Empty before the first stage.
    pub async fn live_catalog(&self, project: &Project) -> Result<Catalog> {
        let state = self.state(project).await?;
        let live: BTreeMap<String, String> = self
            .live(&state)
            .into_values()
            .map(|p| (p.physical, p.logical))
            .collect();
        self.catalog_of(&live, &state.all).await
    }

    /// The live sets (logical → pointer, with the catalog recorded when each was
    /// verified) and their catalog now, for [`crate::engine::drift`].
    pub(crate) async fn live_sets(
        &self,
        project: &Project,
    ) -> crate::engine::Result<(BTreeMap<String, Pointer>, Catalog)> {
        let all = pointers::pointers(self.client, project.name()).await?;
        let layers = match self.suffix {
            Some(_) => pointers::layers(self.client, project.name()).await?,
            None => Vec::new(),
        };
        let state = State { all, layers };
        let live = self.live(&state);
        let sets: BTreeMap<String, String> = live
            .values()
            .map(|p| (p.physical.clone(), p.logical.clone()))
            .collect();
        let rows = match sets.is_empty() {
            true => Vec::new(),
            false => self
                .catalog_rows(sets.keys().cloned().collect())
                .await
                .map_err(|source| crate::engine::Error::Db {
                    context: CATALOG_CONTEXT,
                    source,
                })?,
        };
        Ok((live, fingerprint(&rows, &sets, &logical_names(&state.all))))
    }

    /// Records the fingerprint of each set just verified (`staged`: logical → physical)
    /// in its pointer, for [`crate::engine::drift`] to compare the live sets with.
    pub(super) async fn record_catalog(
        &self,
        project: &Project,
        staged: &BTreeMap<String, String>,
    ) -> Result<()> {
        let all = pointers::pointers(self.client, project.name()).await?;
        let sets = staged.iter().map(|(l, p)| (p.clone(), l.clone())).collect();
        let catalog = self.catalog_of(&sets, &all).await?;
        for (logical, physical) in staged {
            let objects = serde_json::json!(catalog.get(logical).cloned().unwrap_or_default());
            pointers::set_catalog(self.client, project.name(), physical, &objects).await?;
        }
        Ok(())
    }

    /// The catalog of `sets` (physical → logical), normalised with the names of `all`.
    pub(super) async fn catalog_of(
        &self,
        sets: &BTreeMap<String, String>,
        all: &[Pointer],
    ) -> Result<Catalog> {
        if sets.is_empty() {
            return Ok(Catalog::new());
        }
        let rows = self
            .catalog_rows(sets.keys().cloned().collect())
            .await
            .map_err(db(CATALOG_CONTEXT))?;
        Ok(fingerprint(&rows, sets, &logical_names(all)))
    }

    /// One read of [`CATALOG`] in a read-only transaction with a fixed `search_path`.
    async fn catalog_rows(
        &self,
        schemas: Vec<String>,
    ) -> std::result::Result<Vec<CatalogRow>, tokio_postgres::Error> {
        let read = async {
            let rows = self.client.query(CATALOG, &[&schemas]).await?;
            Ok::<_, tokio_postgres::Error>(
                rows.iter()
                    .map(|r| CatalogRow {
                        schema: r.get(0),
                        object: r.get(1),
                        definition: r.get(2),
                    })
                    .collect(),
            )
        };
        crate::pg::rolled_back(
            self.client,
            "BEGIN READ ONLY; SET LOCAL search_path TO pg_catalog, pg_temp",
            |_, e| e,
            read,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn normalise_replaces_whole_physical_names_quoted_or_not() {
        let map = names(&[("api__sy_1", "api"), ("Rep__sy_1", "Rep"), ("api", "api")]);
        assert_eq!(
            normalise(
                "SELECT api__sy_1.v.id FROM api__sy_1.v, api__sy_12.w, \"Rep__sy_1\".t, x_api__sy_1",
                &map
            ),
            "SELECT api.v.id FROM api.v, api__sy_12.w, \"Rep\".t, x_api__sy_1"
        );
        assert_eq!(
            normalise("SET search_path TO 'api__sy_1', 'shop', 'pg_catalog'", &map),
            "SET search_path TO 'api', 'shop', 'pg_catalog'"
        );
        assert_eq!(
            normalise("api__sy_1", &map),
            "api",
            "a name at the very end"
        );
    }

    #[test]
    fn a_set_fingerprints_the_same_staged_and_live() {
        let row = |schema: &str, def: &str| CatalogRow {
            schema: schema.into(),
            object: format!("function f({schema}.status)"),
            definition: def.into(),
        };
        let all = names(&[("api__sy_7", "api"), ("api", "api"), ("api__sy_5", "api")]);
        let staged = fingerprint(
            &[row(
                "api__sy_7",
                "CREATE FUNCTION api__sy_7.f(s api__sy_7.status)",
            )],
            &names(&[("api__sy_7", "api")]),
            &all,
        );
        let live = fingerprint(
            &[row("api", "CREATE FUNCTION api.f(s api.status)")],
            &names(&[("api", "api")]),
            &all,
        );
        assert_eq!(staged, live);
        assert_eq!(
            staged["api"].keys().collect::<Vec<_>>(),
            ["function f(api.status)"]
        );
        let changed = fingerprint(
            &[row("api", "CREATE FUNCTION api.f(s api.status) STRICT")],
            &names(&[("api", "api")]),
            &all,
        );
        assert_ne!(staged, changed);
    }

    #[test]
    fn a_set_without_objects_is_an_empty_schema_entry() {
        let catalog = fingerprint(&[], &names(&[("api", "api")]), &BTreeMap::new());
        assert_eq!(catalog["api"], BTreeMap::new());
    }
}
