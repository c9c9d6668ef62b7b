//! `objects/<schema>/*.sql`: the stateless definitions of blue-green schemas (one object
//! per file, latest version only) and the order they must be created in, from their real
//! dependencies. Runs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use pg_query::NodeEnum;
use pg_query::protobuf::{self, ObjectType, Token};

use super::{Error, Project, Result, SchemaMode};

/// The directory holding object definitions, under the project root.
pub const OBJECTS_DIR: &str = "objects";
/// The per-schema verify script's file name.
pub const VERIFY_FILE: &str = "verify.sql";

/// What kind of object a file defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// `CREATE VIEW`.
    View,
    /// `CREATE MATERIALIZED VIEW`.
    MaterializedView,
    /// `CREATE FUNCTION`.
    Function,
    /// `CREATE PROCEDURE`.
    Procedure,
    /// `CREATE TYPE` / `CREATE DOMAIN`.
    Type,
    /// `CREATE INDEX` on a materialized view.
    Index,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::View => "view",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::Function => "function",
            ObjectKind::Procedure => "procedure",
            ObjectKind::Type => "type",
            ObjectKind::Index => "index",
        })
    }
}

/// A schema-qualified object name (logical schema).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ObjectName {
    /// The logical schema.
    pub schema: String,
    /// The object's name (functions: without arguments).
    pub name: String,
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// One statement of an object file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectStatement {
    /// The SQL text, without the trailing `;`.
    pub sql: String,
    /// 1-based line of its first token.
    pub line: usize,
}

/// One object defined by one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Its schema and name.
    pub name: ObjectName,
    /// What it is.
    pub kind: ObjectKind,
    /// The file defining it.
    pub path: PathBuf,
    /// 1-based line of its defining statement.
    pub line: usize,
    /// The file's statements, the defining one first.
    pub statements: Vec<ObjectStatement>,
    /// Objects it needs to exist first.
    pub depends_on: BTreeSet<ObjectName>,
    /// SHA-1 of the file, to tell changed objects from unchanged ones.
    pub hash: String,
    /// For functions and procedures: the language, lowercase (`sql`, `plpgsql`, …).
    pub language: Option<String>,
}

/// The blue-green objects of a project, in creation order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objects {
    /// Every object of every blue-green schema, dependencies before dependents.
    pub ordered: Vec<Object>,
    /// `objects/<schema>/verify.sql` per blue-green schema that has one.
    pub verify: BTreeMap<String, PathBuf>,
    /// The blue-green schemas (from the manifest), whether or not they define objects.
    pub schemas: BTreeSet<String>,
}

impl Objects {
    /// Reads `objects/` of a loaded project. A project without blue-green schemas has no
    /// objects; a `objects/<schema>/` directory for a schema that is not blue-green is an
    /// error.
    pub fn load(project: &Project) -> Result<Objects> {
        load(&project.root, &project.manifest.schemas)
    }

    /// The objects of one schema, in creation order.
    pub fn of_schema<'a>(&'a self, schema: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.ordered.iter().filter(move |o| o.name.schema == schema)
    }

    /// Finds an object by schema and name.
    pub fn get(&self, schema: &str, name: &str) -> Option<&Object> {
        self.ordered
            .iter()
            .find(|o| o.name.schema == schema && o.name.name == name)
    }

    /// A hash of one schema's whole definition (its objects and verify script), to tell
    /// whether it changed since it was last staged.
    pub fn schema_hash(&self, schema: &str) -> String {
        use sha1::Digest;
        let mut hasher = sha1::Sha1::new();
        for object in self.of_schema(schema) {
            hasher.update(object.name.name.as_bytes());
            hasher.update([0]);
            hasher.update(object.hash.as_bytes());
            hasher.update([0]);
        }
        if let Some(path) = self.verify.get(schema) {
            hasher.update(b"verify\0");
            hasher.update(std::fs::read(path).unwrap_or_default());
        }
        hex::encode(hasher.finalize())
    }
}

/// Reads `root/objects/` against the manifest's schema modes.
pub fn load(root: &Path, modes: &BTreeMap<String, SchemaMode>) -> Result<Objects> {
    let dir = root.join(OBJECTS_DIR);
    let blue_green: BTreeSet<String> = modes
        .iter()
        .filter(|(_, m)| **m == SchemaMode::BlueGreen)
        .map(|(s, _)| s.clone())
        .collect();
    let mut objects = Objects {
        schemas: blue_green.clone(),
        ..Objects::default()
    };
    if !dir.is_dir() {
        return Ok(objects);
    }
    let mut unordered = Vec::new();
    for schema_dir in sorted_entries(&dir)? {
        if !schema_dir.is_dir() {
            continue;
        }
        let schema = file_name(&schema_dir);
        match modes.get(&schema) {
            Some(SchemaMode::BlueGreen) => {}
            Some(SchemaMode::Stable) => {
                return Err(Error::File {
                    path: schema_dir,
                    message: format!(
                        "schema \"{schema}\" is stable: it changes only through the plan, so objects/ cannot define objects in it"
                    ),
                });
            }
            None => {
                return Err(Error::File {
                    path: schema_dir,
                    message: format!(
                        "schema \"{schema}\" is not declared in switchyard.yaml (add it as blue-green)"
                    ),
                });
            }
        }
        for path in sorted_entries(&schema_dir)? {
            if path.extension().and_then(|e| e.to_str()) != Some("sql") || !path.is_file() {
                continue;
            }
            if file_name(&path) == VERIFY_FILE {
                objects.verify.insert(schema.clone(), path);
                continue;
            }
            unordered.push(read_object(&path, &schema, modes)?);
        }
    }
    resolve(&mut unordered, &blue_green)?;
    objects.ordered = order(unordered)?;
    Ok(objects)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    Ok(paths)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

// === reading one file ===

/// A reference found in a statement before it is resolved against the other objects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Reference {
    schema: Option<String>,
    name: String,
    /// Unqualified identifier tokens count only when they name a type.
    types_only: bool,
    line: usize,
}

/// An object as read, with references not yet resolved.
struct Read {
    object: Object,
    references: Vec<Reference>,
}

fn read_object(path: &Path, schema: &str, modes: &BTreeMap<String, SchemaMode>) -> Result<Read> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let hash = {
        use sha1::Digest;
        hex::encode(sha1::Sha1::digest(&bytes))
    };
    let text = String::from_utf8(bytes).map_err(|e| Error::Invalid {
        path: path.to_owned(),
        line: line_at(
            &String::from_utf8_lossy(e.as_bytes()),
            e.utf8_error().valid_up_to(),
        ),
        message: "not valid UTF-8".into(),
    })?;
    let statements = split(path, &text)?;
    let Some(first) = statements.first() else {
        return Err(Error::File {
            path: path.to_owned(),
            message: "defines no object: the file holds no statement".into(),
        });
    };
    let invalid = |line: usize, message: String| Error::Invalid {
        path: path.to_owned(),
        line,
        message,
    };
    let parsed = parse_one(&first.sql).map_err(|m| invalid(first.line, m))?;
    let target = target_of(&parsed).map_err(|m| invalid(first.line, m))?;
    let target_schema = target.schema.clone().unwrap_or_else(|| schema.to_string());
    if target_schema != schema {
        let mode = match modes.get(&target_schema) {
            Some(SchemaMode::Stable) => " which is stable (changed only through the plan)",
            Some(SchemaMode::BlueGreen) => "",
            None => " which is not a blue-green schema",
        };
        return Err(invalid(
            first.line,
            format!(
                "{} {} targets schema \"{target_schema}\"{mode}, but lives in objects/{schema}/",
                target.kind, target.name
            ),
        ));
    }
    let mut references = Vec::new();
    collect_references(&parsed, &first.sql, first.line, &mut references);
    if let Some(body) = &target.sql_body {
        // SQL functions without BEGIN ATOMIC are checked at creation (check_function_bodies):
        // what their body reads must exist first.
        if let Ok(body_parsed) = pg_query::parse(body, 0) {
            collect_references(&body_parsed, body, first.line, &mut references);
        }
    }
    for extra in &statements[1..] {
        let parsed = parse_one(&extra.sql).map_err(|m| invalid(extra.line, m))?;
        check_follow_up(&parsed, &target, schema).map_err(|m| invalid(extra.line, m))?;
        collect_references(&parsed, &extra.sql, extra.line, &mut references);
    }
    let name = ObjectName {
        schema: schema.to_string(),
        name: target.name.clone(),
    };
    references
        .retain(|r| !(r.name == name.name && r.schema.as_deref().is_none_or(|s| s == schema)));
    Ok(Read {
        object: Object {
            name,
            kind: target.kind,
            path: path.to_owned(),
            line: first.line,
            statements,
            depends_on: BTreeSet::new(),
            hash,
            language: target.language,
        },
        references,
    })
}

/// Splits a file into statements with the real parser, each with the line of its first
/// token.
fn split(path: &Path, text: &str) -> Result<Vec<ObjectStatement>> {
    let parsed = pg_query::parse(text, 0).map_err(|e| Error::Invalid {
        path: path.to_owned(),
        line: error_line(text, &e),
        message: format!("not valid SQL: {}", parse_message(&e)),
    })?;
    let mut out = Vec::new();
    for raw in &parsed.protobuf.stmts {
        let start = usize::try_from(raw.stmt_location).unwrap_or(0);
        let end = if raw.stmt_len == 0 {
            text.len()
        } else {
            start + usize::try_from(raw.stmt_len).unwrap_or(0)
        };
        let Some(chunk) = text.get(start..end.min(text.len())) else {
            continue;
        };
        let lead = first_token_offset(chunk);
        let sql = chunk[lead..]
            .trim_end()
            .trim_end_matches(';')
            .trim_end()
            .to_string();
        if sql.is_empty() {
            continue;
        }
        out.push(ObjectStatement {
            sql,
            line: line_at(text, start + lead),
        });
    }
    Ok(out)
}

/// Offset of the first token in `chunk`, skipping whitespace and comments.
fn first_token_offset(chunk: &str) -> usize {
    match pg_query::scan(chunk) {
        Ok(scan) => scan
            .tokens
            .first()
            .map_or(0, |t| usize::try_from(t.start).unwrap_or(0)),
        Err(_) => chunk.len() - chunk.trim_start().len(),
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn parse_message(error: &pg_query::Error) -> String {
    match error {
        pg_query::Error::Parse(m) => m.clone(),
        other => other.to_string(),
    }
}

/// libpg_query does not hand back the error position through this crate; find the first
/// statement that fails on its own and blame its line.
fn error_line(text: &str, _error: &pg_query::Error) -> usize {
    if let Ok(parts) = pg_query::split_with_scanner(text) {
        for part in parts {
            if pg_query::parse(part, 0).is_err() {
                let offset = part.as_ptr() as usize - text.as_ptr() as usize;
                return line_at(text, offset + first_token_offset(part));
            }
        }
    }
    1
}

fn parse_one(sql: &str) -> std::result::Result<pg_query::ParseResult, String> {
    pg_query::parse(sql, 0).map_err(|e| format!("not valid SQL: {}", parse_message(&e)))
}

/// What a defining statement creates.
struct Target {
    kind: ObjectKind,
    schema: Option<String>,
    name: String,
    language: Option<String>,
    /// The body of a SQL function without BEGIN ATOMIC.
    sql_body: Option<String>,
}

fn top(parsed: &pg_query::ParseResult) -> Option<&NodeEnum> {
    parsed
        .protobuf
        .stmts
        .first()
        .and_then(|s| s.stmt.as_ref())
        .and_then(|n| n.node.as_ref())
}

fn strings(nodes: &[protobuf::Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

fn split_name(mut parts: Vec<String>) -> (Option<String>, String) {
    let name = parts.pop().unwrap_or_default();
    (parts.pop(), name)
}

fn range_var(rv: Option<&protobuf::RangeVar>) -> (Option<String>, String) {
    match rv {
        Some(rv) => (
            (!rv.schemaname.is_empty()).then(|| rv.schemaname.clone()),
            rv.relname.clone(),
        ),
        None => (None, String::new()),
    }
}

fn target_of(parsed: &pg_query::ParseResult) -> std::result::Result<Target, String> {
    let plain = |kind, (schema, name): (Option<String>, String)| Target {
        kind,
        schema,
        name,
        language: None,
        sql_body: None,
    };
    match top(parsed) {
        Some(NodeEnum::ViewStmt(v)) => Ok(plain(ObjectKind::View, range_var(v.view.as_ref()))),
        Some(NodeEnum::CreateTableAsStmt(c)) if c.objtype == ObjectType::ObjectMatview as i32 => {
            Ok(plain(ObjectKind::MaterializedView, range_var(c.into.as_ref().and_then(|i| i.rel.as_ref()))))
        }
        Some(NodeEnum::CreateFunctionStmt(f)) => {
            let kind = if f.is_procedure { ObjectKind::Procedure } else { ObjectKind::Function };
            let mut target = plain(kind, split_name(strings(&f.funcname)));
            let mut body = None;
            for option in &f.options {
                let Some(NodeEnum::DefElem(d)) = &option.node else { continue };
                let arg = d.arg.as_ref().and_then(|a| a.node.as_ref());
                match (d.defname.as_str(), arg) {
                    ("language", Some(NodeEnum::String(s))) => target.language = Some(s.sval.to_lowercase()),
                    ("as", Some(NodeEnum::List(l))) => body = strings(&l.items).into_iter().next(),
                    _ => {}
                }
            }
            if target.language.as_deref() == Some("sql") && f.sql_body.is_none() {
                target.sql_body = body;
            }
            Ok(target)
        }
        Some(NodeEnum::CompositeTypeStmt(t)) => Ok(plain(ObjectKind::Type, range_var(t.typevar.as_ref()))),
        Some(NodeEnum::CreateEnumStmt(t)) => Ok(plain(ObjectKind::Type, split_name(strings(&t.type_name)))),
        Some(NodeEnum::CreateRangeStmt(t)) => Ok(plain(ObjectKind::Type, split_name(strings(&t.type_name)))),
        Some(NodeEnum::CreateDomainStmt(t)) => Ok(plain(ObjectKind::Type, split_name(strings(&t.domainname)))),
        Some(NodeEnum::IndexStmt(i)) => {
            if i.idxname.is_empty() {
                return Err("an index in objects/ needs a name".into());
            }
            let (schema, _) = range_var(i.relation.as_ref());
            Ok(Target { kind: ObjectKind::Index, schema, name: i.idxname.clone(), language: None, sql_body: None })
        }
        Some(NodeEnum::CreateStmt(_)) => Err("tables hold data: create them in the plan (deploy/), in a stable schema, not in objects/".into()),
        Some(other) => Err(format!(
            "objects/ holds views, materialized views, functions, procedures, types and indexes on materialized views; found {}",
            statement_name(other)
        )),
        None => Err("empty statement".into()),
    }
}

fn statement_name(node: &NodeEnum) -> String {
    let debug = format!("{node:?}");
    debug.split('(').next().unwrap_or("a statement").to_string()
}

/// Statements allowed after the defining one.
fn check_follow_up(
    parsed: &pg_query::ParseResult,
    target: &Target,
    schema: &str,
) -> std::result::Result<(), String> {
    match top(parsed) {
        Some(NodeEnum::CommentStmt(_) | NodeEnum::GrantStmt(_) | NodeEnum::AlterOwnerStmt(_)) => {
            Ok(())
        }
        Some(NodeEnum::IndexStmt(i)) => {
            let (s, relation) = range_var(i.relation.as_ref());
            if target.kind == ObjectKind::MaterializedView
                && relation == target.name
                && s.as_deref().is_none_or(|s| s == schema)
            {
                Ok(())
            } else {
                Err(
                    "an index after a definition must be on the materialized view the file defines"
                        .into(),
                )
            }
        }
        Some(other) => Err(format!(
            "after the defining statement only COMMENT, GRANT, REVOKE, ALTER … OWNER TO and CREATE INDEX may follow; found {}",
            statement_name(other)
        )),
        None => Ok(()),
    }
}

fn collect_references(
    parsed: &pg_query::ParseResult,
    sql: &str,
    line: usize,
    out: &mut Vec<Reference>,
) {
    let mut add = |schema: Option<String>, name: String, types_only: bool| {
        out.push(Reference {
            schema,
            name,
            types_only,
            line,
        });
    };
    for table in parsed
        .tables
        .iter()
        .map(|(t, _)| t)
        .chain(parsed.functions.iter().map(|(f, _)| f))
    {
        let (schema, name) = match table.rsplit_once('.') {
            Some((s, n)) => (Some(s.to_string()), n.to_string()),
            None => (None, table.clone()),
        };
        add(schema, name, false);
    }
    if let Some(node) = top(parsed) {
        for type_name in signature_types(node) {
            let (schema, name) = split_name(strings(&type_name.names));
            add(schema, name, false);
        }
        if let NodeEnum::IndexStmt(i) = node {
            let (schema, name) = range_var(i.relation.as_ref());
            add(schema, name, false);
        }
    }
    for (schema, name) in qualified_references(sql)
        .into_iter()
        .map(|r| (r.schema, r.name))
    {
        add(Some(schema), name, false);
    }
    for name in bare_identifiers(sql) {
        add(None, name, true);
    }
}

/// Type names in a function signature, a composite type's columns, or a domain's base.
fn signature_types(node: &NodeEnum) -> Vec<&protobuf::TypeName> {
    let mut out = Vec::new();
    match node {
        NodeEnum::CreateFunctionStmt(f) => {
            for p in &f.parameters {
                if let Some(NodeEnum::FunctionParameter(p)) = &p.node {
                    out.extend(p.arg_type.as_ref());
                }
            }
            out.extend(f.return_type.as_ref());
        }
        NodeEnum::CompositeTypeStmt(t) => {
            for c in &t.coldeflist {
                if let Some(NodeEnum::ColumnDef(c)) = &c.node {
                    out.extend(c.type_name.as_ref());
                }
            }
        }
        NodeEnum::CreateDomainStmt(d) => out.extend(d.type_name.as_ref()),
        _ => {}
    }
    out
}

// === scanning ===

/// A `schema.name` pair found by the scanner, with where the schema token is in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QualifiedReference {
    /// The schema as PostgreSQL folds it (unquoted: lowercase).
    pub schema: String,
    /// The name after the dot, folded the same way.
    pub name: String,
    /// Byte range of the schema token in the scanned text.
    pub schema_span: std::ops::Range<usize>,
    /// Byte range of the schema token and its dot (what to drop to unqualify the name).
    pub qualifier_span: std::ops::Range<usize>,
}

/// Every `schema.name` outside string literals and comments, found with PostgreSQL's own
/// scanner. Three-part names (`a.b.c`) yield their first pair only when `a` is not itself
/// preceded by a dot.
pub fn qualified_references(sql: &str) -> Vec<QualifiedReference> {
    let Ok(scan) = pg_query::scan(sql) else {
        return Vec::new();
    };
    let tokens = &scan.tokens;
    let mut out = Vec::new();
    for i in 0..tokens.len() {
        if i + 2 >= tokens.len() {
            break;
        }
        let dot = &tokens[i + 1];
        if dot.token != Token::Ascii46 as i32
            || (i > 0 && tokens[i - 1].token == Token::Ascii46 as i32)
        {
            continue;
        }
        let (Some(schema), Some(name)) =
            (identifier(sql, &tokens[i]), identifier(sql, &tokens[i + 2]))
        else {
            continue;
        };
        let start = usize::try_from(tokens[i].start).unwrap_or(0);
        let end = usize::try_from(tokens[i].end).unwrap_or(0);
        let dot_end = usize::try_from(dot.end).unwrap_or(end);
        out.push(QualifiedReference {
            schema,
            name,
            schema_span: start..end,
            qualifier_span: start..dot_end,
        });
    }
    out
}

/// Unqualified identifiers (not after or before a dot), folded.
fn bare_identifiers(sql: &str) -> BTreeSet<String> {
    let Ok(scan) = pg_query::scan(sql) else {
        return BTreeSet::new();
    };
    let t = &scan.tokens;
    let is_dot = |i: usize| {
        t.get(i)
            .is_some_and(|tok| tok.token == Token::Ascii46 as i32)
    };
    (0..t.len())
        .filter(|&i| !(is_dot(i + 1) || i > 0 && is_dot(i - 1)))
        .filter_map(|i| identifier(sql, &t[i]))
        .collect()
}

/// The identifier a token spells, folded as PostgreSQL does, or `None` for literals,
/// operators and punctuation.
pub fn identifier(sql: &str, token: &protobuf::ScanToken) -> Option<String> {
    let text = sql.get(usize::try_from(token.start).ok()?..usize::try_from(token.end).ok()?)?;
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Some(inner.replace("\"\"", "\""));
    }
    let mut chars = text.chars();
    let first = chars.next()?;
    if !(first.is_alphabetic() || first == '_')
        || !chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    {
        return None;
    }
    Some(text.to_lowercase())
}

// === resolving and ordering ===

fn resolve(reads: &mut [Read], blue_green: &BTreeSet<String>) -> Result<()> {
    let known: BTreeMap<ObjectName, ObjectKind> = reads
        .iter()
        .map(|r| (r.object.name.clone(), r.object.kind))
        .collect();
    let mut seen = BTreeSet::new();
    for read in reads.iter() {
        if !seen.insert(read.object.name.clone()) {
            return Err(Error::Invalid {
                path: read.object.path.clone(),
                line: read.object.line,
                message: format!(
                    "{} is defined by more than one file in objects/",
                    read.object.name
                ),
            });
        }
    }
    for read in reads.iter_mut() {
        let own = read.object.name.schema.clone();
        for reference in std::mem::take(&mut read.references) {
            let (schema, strict) = match &reference.schema {
                Some(s) if blue_green.contains(s) => (s.clone(), true),
                Some(_) => continue,
                None => (own.clone(), false),
            };
            let name = ObjectName {
                schema,
                name: reference.name.clone(),
            };
            if name == read.object.name {
                continue;
            }
            match known.get(&name) {
                Some(kind) if !reference.types_only || *kind == ObjectKind::Type => {
                    read.object.depends_on.insert(name);
                }
                Some(_) => {}
                None if strict => {
                    return Err(Error::Invalid {
                        path: read.object.path.clone(),
                        line: reference.line,
                        message: format!(
                            "{} {} references {name}, which objects/{}/ does not define",
                            read.object.kind, read.object.name, name.schema
                        ),
                    });
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// Orders objects so dependencies come first; ties keep schema then file order. A cycle is
/// an error naming it, at the first file in it.
fn order(reads: Vec<Read>) -> Result<Vec<Object>> {
    let objects: Vec<Object> = reads.into_iter().map(|r| r.object).collect();
    let index: BTreeMap<&ObjectName, usize> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| (&o.name, i))
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; objects.len()];
    let mut out = Vec::with_capacity(objects.len());
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        objects: &[Object],
        index: &BTreeMap<&ObjectName, usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> Result<()> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let from = stack.iter().position(|&s| s == i).unwrap_or(0);
                let mut cycle: Vec<String> = stack[from..]
                    .iter()
                    .map(|&s| objects[s].name.to_string())
                    .collect();
                cycle.push(objects[i].name.to_string());
                let first = &objects[stack[from]];
                return Err(Error::Invalid {
                    path: first.path.clone(),
                    line: first.line,
                    message: format!("dependency cycle: {}", cycle.join(" -> ")),
                });
            }
            _ => {}
        }
        state[i] = 1;
        stack.push(i);
        for dep in &objects[i].depends_on {
            if let Some(&d) = index.get(dep) {
                visit(d, objects, index, state, stack, out)?;
            }
        }
        stack.pop();
        state[i] = 2;
        out.push(i);
        Ok(())
    }
    for i in 0..objects.len() {
        visit(i, &objects, &index, &mut state, &mut stack, &mut out)?;
    }
    let mut slots: Vec<Option<Object>> = objects.into_iter().map(Some).collect();
    Ok(out.into_iter().filter_map(|i| slots[i].take()).collect())
}

#[cfg(test)]
mod tests;
