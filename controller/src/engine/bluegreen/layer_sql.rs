//! Layers, pure: the names, the catalog shape and the SQL of a layer `api<suffix>` that
//! serves one verified physical set to an Environment sharing a database, so a promotion
//! between them rebuilds nothing.

use crate::pg::quote_ident;

/// The schema an Environment serves a logical schema under: the logical name plus its
/// suffix (`api` + `_dev`).
pub fn layer_name(logical: &str, suffix: &str) -> String {
    format!("{logical}{suffix}")
}

/// Where a layer's previous objects wait to be dropped once the swap committed: renamed
/// aside in the swap, dropped after it, so readers never queue behind the drop.
pub fn retired_layer_name(layer: &str, run: &str) -> String {
    format!("{layer}__sy_old_{run}")
}

/// Where a layer's next objects are built before the swap renames them into place.
pub fn next_layer_name(layer: &str, run: &str) -> String {
    format!("{layer}__sy_next_{run}")
}

/// The `LIKE` pattern of every retired copy of a layer (left behind when something
/// outside depended on it).
pub fn retired_layer_pattern(layer: &str) -> String {
    copies_pattern(layer, "old")
}

/// The `LIKE` pattern of every prepared copy of a layer: one still there when no repoint
/// runs was left by a run killed between preparing and swapping.
pub fn next_layer_pattern(layer: &str) -> String {
    copies_pattern(layer, "next")
}

fn copies_pattern(layer: &str, kind: &str) -> String {
    format!(
        "{}\\_\\_sy\\_{kind}\\_%",
        layer.replace('\\', "\\\\").replace('_', "\\_")
    )
}

/// What a physical set exposes through a layer, read from its catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exposed {
    /// Views and materialized views.
    pub relations: Vec<String>,
    /// Enum, composite, range and domain types.
    pub types: Vec<String>,
    /// Functions and procedures.
    pub routines: Vec<Routine>,
}

/// One function or procedure, as the catalog prints it with `search_path = pg_catalog`
/// (so every type outside `pg_catalog` is schema-qualified).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routine {
    /// `proname`.
    pub name: String,
    /// `prokind`: `f` function, `p` procedure, `a` aggregate, `w` window.
    pub kind: char,
    /// `pg_get_function_arguments`: names, modes, types, defaults.
    pub arguments: String,
    /// `pg_get_function_result`; empty for procedures.
    pub result: String,
    /// `proargmodes`, one per argument; empty when every argument is `IN`.
    pub modes: Vec<char>,
    /// `pronargs`: input arguments.
    pub inputs: usize,
    /// `provolatile`: `i`, `s` or `v`.
    pub volatility: char,
    /// `proisstrict`.
    pub strict: bool,
    /// `proparallel`: `s`, `r` or `u`.
    pub parallel: char,
    /// Polymorphic pseudo-types it takes or returns (`anyelement`, …).
    pub polymorphic: bool,
    /// A pseudo-type a SQL function cannot take or return (`internal`, `trigger`, …).
    pub unwrappable: Option<String>,
}

/// Relations a layer exposes: `$1` is the physical schema.
pub const EXPOSED_RELATIONS: &str = "\
SELECT c.relname::text FROM pg_catalog.pg_class c
 WHERE c.relnamespace = to_regnamespace(quote_ident($1)) AND c.relkind IN ('v', 'm')
 ORDER BY 1";

/// Types a layer exposes (not the row types of relations, nor arrays and multiranges
/// PostgreSQL made for us): `$1` is the physical schema.
pub const EXPOSED_TYPES: &str = "\
SELECT t.typname::text FROM pg_catalog.pg_type t
 WHERE t.typnamespace = to_regnamespace(quote_ident($1)) AND t.typtype IN ('e', 'c', 'r', 'd')
   AND (t.typtype <> 'c' OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
 ORDER BY 1";

/// Routines a layer wraps (not the constructors PostgreSQL made for range types): `$1` is
/// the physical schema. Run with `search_path = pg_catalog` so types print qualified.
pub const EXPOSED_ROUTINES: &str = "\
SELECT p.proname::text, p.prokind::text, pg_catalog.pg_get_function_arguments(p.oid),
       coalesce(pg_catalog.pg_get_function_result(p.oid), ''),
       coalesce(p.proargmodes::text[], '{}'::text[]), p.pronargs::int, p.provolatile::text,
       p.proisstrict, p.proparallel::text,
       EXISTS (SELECT 1 FROM pg_catalog.pg_type t
                WHERE t.oid = ANY (p.proargtypes::oid[] || coalesce(p.proallargtypes, '{}'::oid[]) || p.prorettype)
                  AND t.typtype = 'p' AND t.typname LIKE 'any%' AND t.typname <> 'any'),
       (SELECT string_agg(DISTINCT t.typname, ', ') FROM pg_catalog.pg_type t
         WHERE t.oid = ANY (p.proargtypes::oid[] || coalesce(p.proallargtypes, '{}'::oid[]) || p.prorettype)
           AND t.typtype = 'p' AND NOT (t.typname LIKE 'any%' AND t.typname <> 'any')
           AND t.typname NOT IN ('void', 'record'))
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = to_regnamespace(quote_ident($1))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'i')
 ORDER BY 1, 3";

/// Why an object cannot be served through a layer: its name and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unservable {
    /// The object's name in its schema.
    pub object: String,
    /// Why, for people.
    pub why: String,
}

/// The statements that fill `layer` with thin objects over `physical`. Refuses objects a
/// SQL wrapper cannot stand in for, naming them.
pub fn layer_objects(
    layer: &str,
    physical: &str,
    exposed: &Exposed,
) -> Result<Vec<String>, Unservable> {
    let (l, p) = (quote_ident(layer), quote_ident(physical));
    let mut out = Vec::new();
    for t in &exposed.types {
        let t = quote_ident(t);
        out.push(format!("CREATE DOMAIN {l}.{t} AS {p}.{t}"));
    }
    for r in &exposed.relations {
        let r = quote_ident(r);
        out.push(format!("CREATE VIEW {l}.{r} AS SELECT * FROM {p}.{r}"));
    }
    for routine in &exposed.routines {
        out.push(wrapper(&l, &p, routine).map_err(|why| Unservable {
            object: routine.name.clone(),
            why,
        })?);
    }
    Ok(out)
}

/// One routine's wrapper in the layer, calling the physical routine.
fn wrapper(layer: &str, physical: &str, r: &Routine) -> Result<String, String> {
    match r.kind {
        'a' => return Err("an aggregate cannot be served through a layer".into()),
        'w' => return Err("a window function cannot be served through a layer".into()),
        _ => {}
    }
    if let Some(types) = &r.unwrappable {
        return Err(format!("a SQL wrapper cannot take or return {types}"));
    }
    if r.result == "SETOF record" || (r.result == "record" && !r.modes.contains(&'o')) {
        return Err("a function returning an untyped record needs a column list at each call; declare OUT columns or RETURNS TABLE".into());
    }
    let modes: Vec<char> = if r.modes.is_empty() {
        vec!['i'; r.inputs]
    } else {
        r.modes.clone()
    };
    let mut n = 0;
    let mut calls = Vec::new();
    for mode in &modes {
        match mode {
            'i' | 'b' => {
                n += 1;
                calls.push(format!("${n}"));
            }
            'v' => {
                n += 1;
                calls.push(format!("VARIADIC ${n}"));
            }
            _ => {}
        }
    }
    let name = quote_ident(&r.name);
    let calls = calls.join(", ");
    if r.kind == 'p' {
        if modes.iter().any(|m| matches!(m, 'o' | 'b')) {
            return Err(
                "a procedure with OUT or INOUT arguments cannot be served through a layer".into(),
            );
        }
        // NB: CALL is not allowed in a BEGIN ATOMIC body: a quoted body, resolved at run
        // time, safe because the physical schema is never renamed.
        return Ok(format!(
            "CREATE PROCEDURE {layer}.{name}({}) LANGUAGE sql AS $sy$ CALL {physical}.{name}({calls}) $sy$",
            r.arguments
        ));
    }
    let volatility = match r.volatility {
        'i' => "IMMUTABLE",
        's' => "STABLE",
        _ => "VOLATILE",
    };
    let parallel = match r.parallel {
        's' => "PARALLEL SAFE",
        'r' => "PARALLEL RESTRICTED",
        _ => "PARALLEL UNSAFE",
    };
    let strict = if r.strict { " STRICT" } else { "" };
    // A plain call lets the planner inline the wrapper (one SELECT of one function call,
    // same volatility); sets and rows need a FROM item.
    let call = if r.result.starts_with("SETOF ")
        || r.result.starts_with("TABLE(")
        || modes.iter().any(|m| matches!(m, 'o' | 'b' | 't'))
    {
        format!("SELECT * FROM {physical}.{name}({calls})")
    } else {
        format!("SELECT {physical}.{name}({calls})")
    };
    // NB: PostgreSQL refuses BEGIN ATOMIC bodies with polymorphic arguments.
    let body = if r.polymorphic {
        format!("AS $sy$ {call} $sy$")
    } else {
        format!("BEGIN ATOMIC {call}; END")
    };
    Ok(format!(
        "CREATE FUNCTION {layer}.{name}({}) RETURNS {} LANGUAGE sql {volatility}{strict} {parallel} {body}",
        r.arguments, r.result
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routine(name: &str, arguments: &str, result: &str) -> Routine {
        Routine {
            name: name.into(),
            kind: 'f',
            arguments: arguments.into(),
            result: result.into(),
            volatility: 'v',
            parallel: 'u',
            ..Routine::default()
        }
    }

    #[test]
    fn a_layer_has_a_view_per_relation_a_domain_per_type_and_a_wrapper_per_routine() {
        let exposed = Exposed {
            relations: vec!["orders_v".into(), "Totals".into()],
            types: vec!["mood".into()],
            routines: vec![Routine {
                inputs: 2,
                volatility: 's',
                strict: true,
                parallel: 's',
                ..routine("f", "a integer, b integer DEFAULT 3", "integer")
            }],
        };
        let got = layer_objects("api_dev", "api__sy_7", &exposed).expect("servable");
        assert_eq!(
            got,
            [
                "CREATE DOMAIN \"api_dev\".\"mood\" AS \"api__sy_7\".\"mood\"",
                "CREATE VIEW \"api_dev\".\"orders_v\" AS SELECT * FROM \"api__sy_7\".\"orders_v\"",
                "CREATE VIEW \"api_dev\".\"Totals\" AS SELECT * FROM \"api__sy_7\".\"Totals\"",
                "CREATE FUNCTION \"api_dev\".\"f\"(a integer, b integer DEFAULT 3) RETURNS integer LANGUAGE sql STABLE STRICT PARALLEL SAFE BEGIN ATOMIC SELECT \"api__sy_7\".\"f\"($1, $2); END",
            ]
        );
    }

    #[test]
    fn wrappers_pass_only_input_arguments_and_spread_variadics() {
        let out_params = Routine {
            modes: vec!['o', 'o'],
            ..routine("g", "OUT x integer, OUT y text", "record")
        };
        let table = Routine {
            modes: vec!['i', 't'],
            inputs: 1,
            ..routine("s", "n integer", "TABLE(i integer)")
        };
        let variadic = Routine {
            modes: vec!['i', 'v'],
            inputs: 2,
            ..routine("va", "sep text, VARIADIC xs integer[]", "integer")
        };
        let got = layer_objects(
            "l",
            "p",
            &Exposed {
                routines: vec![out_params, table, variadic],
                ..Exposed::default()
            },
        )
        .expect("servable");
        assert!(
            got[0].contains("SELECT * FROM \"p\".\"g\"(); END"),
            "{}",
            got[0]
        );
        assert!(got[1].contains("RETURNS TABLE(i integer)"), "{}", got[1]);
        assert!(got[1].contains("\"p\".\"s\"($1); END"), "{}", got[1]);
        assert!(
            got[2].contains("SELECT \"p\".\"va\"($1, VARIADIC $2); END"),
            "{}",
            got[2]
        );
    }

    #[test]
    fn polymorphic_functions_and_procedures_get_quoted_bodies() {
        let poly = Routine {
            inputs: 1,
            polymorphic: true,
            ..routine("id", "x anyelement", "anyelement")
        };
        let procedure = Routine {
            kind: 'p',
            inputs: 1,
            ..routine("pr", "IN a integer", "")
        };
        let got = layer_objects(
            "l",
            "p",
            &Exposed {
                routines: vec![poly, procedure],
                ..Exposed::default()
            },
        )
        .expect("servable");
        assert!(
            got[0].ends_with("AS $sy$ SELECT \"p\".\"id\"($1) $sy$"),
            "{}",
            got[0]
        );
        assert_eq!(
            got[1],
            "CREATE PROCEDURE \"l\".\"pr\"(IN a integer) LANGUAGE sql AS $sy$ CALL \"p\".\"pr\"($1) $sy$"
        );
    }

    #[test]
    fn what_a_wrapper_cannot_stand_in_for_is_named() {
        struct Case {
            name: &'static str,
            routine: Routine,
            want_why: &'static str,
        }
        let cases = [
            Case {
                name: "aggregate",
                routine: Routine {
                    kind: 'a',
                    ..routine("total", "integer", "integer")
                },
                want_why: "aggregate",
            },
            Case {
                name: "trigger function",
                routine: Routine {
                    unwrappable: Some("trigger".into()),
                    ..routine("audit", "", "trigger")
                },
                want_why: "trigger",
            },
            Case {
                name: "untyped record",
                routine: routine("rows", "", "SETOF record"),
                want_why: "column list",
            },
            Case {
                name: "procedure with INOUT",
                routine: Routine {
                    kind: 'p',
                    modes: vec!['b'],
                    inputs: 1,
                    ..routine("bump", "INOUT n integer", "")
                },
                want_why: "INOUT",
            },
        ];
        for case in cases {
            let exposed = Exposed {
                routines: vec![case.routine],
                ..Exposed::default()
            };
            let err = layer_objects("l", "p", &exposed).expect_err(case.name);
            assert!(
                err.why.contains(case.want_why),
                "{}: {}",
                case.name,
                err.why
            );
        }
    }

    #[test]
    fn retired_layer_names_and_their_pattern() {
        assert_eq!(layer_name("api", "_dev"), "api_dev");
        assert_eq!(retired_layer_name("api_dev", "12"), "api_dev__sy_old_12");
        assert_eq!(next_layer_name("api_dev", "12"), "api_dev__sy_next_12");
        assert_eq!(
            next_layer_pattern("api_dev"),
            "api\\_dev\\_\\_sy\\_next\\_%"
        );
        assert_eq!(
            retired_layer_pattern("api_dev"),
            "api\\_dev\\_\\_sy\\_old\\_%"
        );
    }
}
