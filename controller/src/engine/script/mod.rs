//! Reads a SQL script the way psql would (variables, meta-commands, `\i`) and splits it
//! into classified statements with libpg_query, naming the file and line of anything it
//! refuses. Runs nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pg_query::NodeEnum;
use pg_query::protobuf::TransactionStmtKind;

use super::{Error, Result};
use crate::pg::{quote_ident, quote_literal};

/// How deep `\i` / `\ir` may nest before we call it a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// A statement of a script, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text, variables substituted, without the trailing `;`.
    pub sql: String,
    /// The file it is in (the script, or a file it includes).
    pub path: PathBuf,
    /// 1-based line of the statement's first token.
    pub line: usize,
    /// What kind of statement it is.
    pub kind: StatementKind,
}

/// How the engine must treat a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    /// Runs inside the change's transaction.
    Plain,
    /// `BEGIN` / `START TRANSACTION`: the script opening its own transaction.
    Begin,
    /// `COMMIT` / `END`: the script closing its own transaction.
    Commit,
    /// `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`).
    Rollback,
    /// `PREPARE TRANSACTION` and friends: never allowed in a change.
    TwoPhase,
    /// Cannot run inside a transaction block (`CREATE INDEX CONCURRENTLY`, `VACUUM`, …).
    NoTransaction,
}

/// A script read, substituted and split.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Its statements in order.
    pub statements: Vec<Statement>,
}

impl Script {
    /// Reads `path` with psql semantics, substituting `variables`.
    pub fn load(path: &Path, variables: &BTreeMap<String, String>) -> Result<Script> {
        Script::load_within(path, variables, None)
    }

    /// Like [`Script::load`], but when `root` is given, `\i` and `\ir` may only read files
    /// inside it (after resolving symlinks): a project from git or a ConfigMap must not
    /// read the controller's own files (`\i /etc/passwd`). See `Project::include_root`.
    pub fn load_within(
        path: &Path,
        variables: &BTreeMap<String, String>,
        root: Option<&Path>,
    ) -> Result<Script> {
        let mut vars = variables.clone();
        let mut statements = Vec::new();
        let root = match root {
            Some(r) => Some(r.canonicalize().map_err(|source| Error::Io {
                path: r.into(),
                source,
            })?),
            None => None,
        };
        read_into(path, &mut vars, 0, root.as_deref(), &mut statements)?;
        Ok(Script { statements })
    }

    /// True when some statement cannot run inside a transaction block.
    pub fn needs_autocommit(&self) -> bool {
        self.statements
            .iter()
            .any(|s| s.kind == StatementKind::NoTransaction)
    }

    /// The first statement of `kind`, if any.
    pub fn first(&self, kind: StatementKind) -> Option<&Statement> {
        self.statements.iter().find(|s| s.kind == kind)
    }
}

fn read_into(
    path: &Path,
    vars: &mut BTreeMap<String, String>,
    depth: usize,
    root: Option<&Path>,
    out: &mut Vec<Statement>,
) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = bytecount_lines(&e.as_bytes()[..e.utf8_error().valid_up_to()]);
        Error::Script {
            path: path.into(),
            line,
            message: "file is not valid UTF-8".into(),
        }
    })?;
    let chunks = lex(path, &text, vars)?;
    for chunk in chunks {
        match chunk {
            Chunk::Sql {
                text,
                first_line,
                unset,
            } => split(path, &text, first_line, &unset, out)?,
            Chunk::Include { file, line } => {
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(Error::Script {
                        path: path.into(),
                        line,
                        message: format!("includes nest deeper than {MAX_INCLUDE_DEPTH} files"),
                    });
                }
                if let Some(root) = root
                    && let Ok(real) = file.canonicalize()
                    && !real.starts_with(root)
                {
                    return Err(Error::Script {
                        path: path.into(),
                        line,
                        message: format!(
                            "cannot include {}: it is outside the project directory",
                            file.display()
                        ),
                    });
                }
                if let Err(error) = read_into(&file, vars, depth + 1, root, out) {
                    // Name the include line when the included file can't be read at all.
                    return Err(match error {
                        Error::Io { source, .. } => Error::Script {
                            path: path.into(),
                            line,
                            message: format!("cannot include {}: {source}", file.display()),
                        },
                        other => other,
                    });
                }
            }
        }
    }
    Ok(())
}

fn bytecount_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count() + 1
}

// === psql lexing: variables and meta-commands ===

enum Chunk {
    /// SQL text whose first character is on `first_line` of the file, and the variables
    /// it references that are not set (line, name).
    Sql {
        text: String,
        first_line: usize,
        unset: Vec<(usize, String)>,
    },
    /// `\i` / `\ir` of another file, written on `line`.
    Include { file: PathBuf, line: usize },
}

/// One pass over the text in psql's lexical states. Meta-command lines are blanked (their
/// newline kept) so line numbers in the output match the file.
fn lex(path: &Path, text: &str, vars: &mut BTreeMap<String, String>) -> Result<Vec<Chunk>> {
    let bytes = text.as_bytes();
    let mut chunks = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut first_line = 1;
    let mut line = 1;
    let mut i = 0;
    let mut copy_from = 0;
    let mut unset = Vec::new();
    // Nesting of parentheses doesn't matter to psql's variable rules; only quoting does.
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'\'' => {
                // E'…' strings take backslash escapes; standard strings double the quote.
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'e' | b'E')
                    && !is_ident_byte_before(bytes, i - 1);
                let open = line;
                i = skip_quoted(bytes, i, b'\'', escapes, &mut line)
                    .ok_or_else(|| unterminated(path, open, "quoted string"))?;
            }
            b'"' => {
                let open = line;
                i = skip_quoted(bytes, i, b'"', false, &mut line)
                    .ok_or_else(|| unterminated(path, open, "quoted identifier"))?;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let open = line;
                i = skip_block_comment(bytes, i, &mut line)
                    .ok_or_else(|| unterminated(path, open, "block comment"))?;
            }
            b'$' => {
                let open = line;
                i = skip_dollar_quoted(bytes, i, &mut line)
                    .ok_or_else(|| unterminated(path, open, "dollar-quoted string"))?;
            }
            b':' if bytes.get(i + 1) == Some(&b':') => i += 2,
            b':' => match variable_at(bytes, i, vars) {
                Variable::Set { end, value } => {
                    out.push_str(&text[copy_from..i]);
                    out.push_str(&value);
                    i = end;
                    copy_from = end;
                }
                Variable::Unset(name) => {
                    unset.push((line, name));
                    i += 1;
                }
                Variable::None => i += 1,
            },
            b'\\' => {
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                let command = &text[i + 1..end];
                out.push_str(&text[copy_from..i]);
                copy_from = end;
                let start_line = line;
                i = end;
                match meta_command(path, start_line, command, vars)? {
                    Meta::Nothing => {}
                    Meta::Include(file) => {
                        chunks.push(Chunk::Sql {
                            text: std::mem::take(&mut out),
                            first_line,
                            unset: std::mem::take(&mut unset),
                        });
                        chunks.push(Chunk::Include {
                            file,
                            line: start_line,
                        });
                        // The next chunk starts on this same line (after the command).
                        first_line = start_line;
                    }
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copy_from..]);
    chunks.push(Chunk::Sql {
        text: out,
        first_line,
        unset,
    });
    Ok(chunks)
}

fn unterminated(path: &Path, line: usize, what: &str) -> Error {
    Error::Script {
        path: path.into(),
        line,
        message: format!("unterminated {what} starts here"),
    }
}

fn is_ident_byte_before(bytes: &[u8], at: usize) -> bool {
    at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_')
}

/// The index after the closing quote, or `None` when the text ends first.
fn skip_quoted(
    bytes: &[u8],
    start: usize,
    quote: u8,
    escapes: bool,
    line: &mut usize,
) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => *line += 1,
            b'\\' if escapes => i += 1,
            q if q == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 1;
                } else {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index after the comment's (nested) end, or `None` when the text ends first.
fn skip_block_comment(bytes: &[u8], start: usize, line: &mut usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = start;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            if bytes[i] == b'\n' {
                *line += 1;
            }
            i += 1;
        }
    }
    None
}

/// `$tag$ … $tag$` bodies. A `$` that doesn't open a valid tag (e.g. `$1`) is one byte.
/// `None` when the body is never closed.
fn skip_dollar_quoted(bytes: &[u8], start: usize, line: &mut usize) -> Option<usize> {
    if is_ident_byte_before(bytes, start) {
        return Some(start + 1);
    }
    let mut j = start + 1;
    while j < bytes.len()
        && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] >= 0x80)
    {
        if j == start + 1 && bytes[j].is_ascii_digit() {
            return Some(start + 1);
        }
        j += 1;
    }
    if bytes.get(j) != Some(&b'$') {
        return Some(start + 1);
    }
    let tag = &bytes[start..=j];
    let mut i = j + 1;
    while i + tag.len() <= bytes.len() {
        if bytes[i..].starts_with(tag) {
            return Some(i + tag.len());
        }
        if bytes[i] == b'\n' {
            *line += 1;
        }
        i += 1;
    }
    None
}

enum Variable {
    /// A set variable: substitute `value` for the text up to `end`.
    Set { end: usize, value: String },
    /// A well-formed reference to a variable that is not set; psql leaves it as written.
    Unset(String),
    /// Not a variable reference (a lone `:`, an array slice, …).
    None,
}

/// The psql variable reference at `at` (which holds `:`), if any.
fn variable_at(bytes: &[u8], at: usize, vars: &BTreeMap<String, String>) -> Variable {
    let Some(&next) = bytes.get(at + 1) else {
        return Variable::None;
    };
    let (name_start, quote) = match next {
        b'\'' | b'"' => (at + 2, Some(next)),
        _ => (at + 1, None),
    };
    let mut end = name_start;
    while end < bytes.len()
        && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] >= 0x80)
    {
        end += 1;
    }
    if end == name_start {
        return Variable::None;
    }
    let Ok(name) = std::str::from_utf8(&bytes[name_start..end]) else {
        return Variable::None;
    };
    if quote.is_some_and(|q| bytes.get(end) != Some(&q)) {
        return Variable::None;
    }
    let Some(value) = vars.get(name) else {
        // `arr[1:n]` slices look like `:n`; only a name starting with a letter counts.
        return if name.as_bytes()[0].is_ascii_digit() {
            Variable::None
        } else {
            Variable::Unset(name.to_string())
        };
    };
    match quote {
        Some(b'\'') => Variable::Set {
            end: end + 1,
            value: quote_literal(value),
        },
        Some(_) => Variable::Set {
            end: end + 1,
            value: quote_ident(value),
        },
        None => Variable::Set {
            end,
            value: value.clone(),
        },
    }
}

enum Meta {
    Nothing,
    Include(PathBuf),
}

/// The psql meta-commands a Sqitch script may use. Output-only commands are accepted and
/// ignored; anything that would change how statements run is rejected by name.
fn meta_command(
    path: &Path,
    line: usize,
    command: &str,
    vars: &mut BTreeMap<String, String>,
) -> Result<Meta> {
    // `\\` separates a meta-command from SQL on the same line; we don't support mixing.
    let command = command.trim_end_matches('\r');
    let mut words = command.split_whitespace();
    let name = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let error = |message: String| Error::Script {
        path: path.into(),
        line,
        message,
    };
    match name {
        "set" => {
            let Some((var, rest)) = args.split_first() else {
                return Err(error(
                    "\\set without a variable name (listing variables is not supported)".into(),
                ));
            };
            let value = rest
                .iter()
                .map(|w| unquote_meta_arg(w))
                .collect::<Vec<_>>()
                .join("");
            vars.insert((*var).to_string(), value);
            Ok(Meta::Nothing)
        }
        "unset" => {
            for var in args {
                vars.remove(var);
            }
            Ok(Meta::Nothing)
        }
        "echo" | "qecho" | "warn" | "timing" | "pset" | "encoding" | "t" | "x" | "a" | "H" => {
            Ok(Meta::Nothing)
        }
        "i" | "include" | "ir" | "include_relative" => {
            let Some(file) = args.first() else {
                return Err(error(format!("\\{name} needs a file name")));
            };
            let file = PathBuf::from(unquote_meta_arg(file));
            let base = if name.starts_with("ir") || name == "include_relative" {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                // psql resolves \i against its working directory; Sqitch runs psql from
                // the project's top directory, which is the deploy dir's parent.
                path.parent()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            };
            Ok(Meta::Include(if file.is_absolute() {
                file
            } else {
                base.join(file)
            }))
        }
        "" => Err(error("stray backslash".into())),
        other => Err(error(format!(
            "psql meta-command \\{other} is not supported; supported: \\set, \\unset, \\echo, \\qecho, \\i, \\ir and output settings"
        ))),
    }
}

fn unquote_meta_arg(word: &str) -> String {
    let word = word
        .strip_prefix('\'')
        .and_then(|w| w.strip_suffix('\''))
        .unwrap_or(word);
    word.replace("''", "'")
}

// === splitting and classifying with libpg_query ===

fn split(
    path: &Path,
    text: &str,
    first_line: usize,
    unset: &[(usize, String)],
    out: &mut Vec<Statement>,
) -> Result<()> {
    let line_at = |offset: usize| first_line + text[..offset].matches('\n').count();
    let parsed = match pg_query::parse(text, 0) {
        Ok(parsed) => parsed,
        Err(error) => return Err(locate_parse_error(path, text, first_line, error, unset)),
    };
    for raw in &parsed.protobuf.stmts {
        let start = usize::try_from(raw.stmt_location).unwrap_or(0);
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => text.len(),
            Ok(len) => (start + len).min(text.len()),
        };
        let sql = text[start..end].trim();
        // Start the line count at the first real token, not at comments before it.
        let lead = leading_trivia_len(&text[start..end]);
        let kind = classify(raw.stmt.as_ref().and_then(|n| n.node.as_ref()));
        out.push(Statement {
            sql: sql.to_string(),
            path: path.into(),
            line: line_at(start + lead),
            kind,
        });
    }
    Ok(())
}

/// Bytes of whitespace and comments before the first token.
fn leading_trivia_len(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes[i..].starts_with(b"--") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            let mut ignored = 0;
            i = skip_block_comment(bytes, i, &mut ignored).unwrap_or(bytes.len());
        } else {
            return i;
        }
    }
}

/// How many `;`-separated pieces we try joining while looking for the end of a statement
/// with semicolons inside it (`BEGIN ATOMIC … END`).
const MAX_JOINED_PIECES: usize = 256;

/// The whole text failed to parse; find the statement that did, to name its line.
///
/// The scanner cuts the text at every `;`. Pieces are joined until they parse (a function
/// body with `BEGIN ATOMIC` holds several); the first piece that never parses, however far
/// it is joined, holds the error.
fn locate_parse_error(
    path: &Path,
    text: &str,
    first_line: usize,
    error: pg_query::Error,
    unset: &[(usize, String)],
) -> Error {
    let message = match &error {
        pg_query::Error::Parse(m) | pg_query::Error::Split(m) | pg_query::Error::Scan(m) => {
            m.clone()
        }
        other => other.to_string(),
    };
    let line_at = |offset: usize| first_line + text[..offset].matches('\n').count();
    let blame = |line: usize| {
        // psql leaves unset variables in place, and the server trips on the `:`.
        match unset.iter().find(|(l, _)| *l >= line) {
            Some((l, name)) if message.contains("\":\"") => Error::Script {
                path: path.into(),
                line: *l,
                message: format!(
                    "variable :{name} is not set (pass it with --set {name}=VALUE or define it in switchyard.yaml)"
                ),
            },
            _ => Error::Script {
                path: path.into(),
                line,
                message: message.clone(),
            },
        }
    };
    let Ok(scanned) = pg_query::scan(text) else {
        // An unterminated quote or comment: blame the end of the text.
        return blame(line_at(text.trim_end().len()));
    };
    let mut bounds: Vec<usize> = scanned
        .tokens
        .iter()
        .filter(|t| t.token == pg_query::protobuf::Token::Ascii59 as i32)
        .filter_map(|t| usize::try_from(t.end).ok())
        .collect();
    bounds.push(text.len());
    let mut start = 0;
    let mut k = 0;
    while k < bounds.len() {
        let limit = bounds.len().min(k + MAX_JOINED_PIECES);
        match (k..limit).find(|&j| pg_query::parse(&text[start..bounds[j]], 0).is_ok()) {
            Some(j) => {
                start = bounds[j];
                k = j + 1;
            }
            None => {
                let piece = &text[start..bounds[k]];
                let at = error_offset(piece, &message).unwrap_or_else(|| leading_trivia_len(piece));
                return blame(line_at(start + at));
            }
        }
    }
    blame(line_at(text.trim_end().len()))
}

/// Where inside `statement` the parser's complaint is: libpg_query reports `syntax error at
/// or near "X"` without a position, so try each `X` token in turn and keep the first one
/// whose prefix fails with the same message.
fn error_offset(statement: &str, message: &str) -> Option<usize> {
    let tokens = pg_query::scan(statement).ok()?.tokens;
    if message.ends_with("at end of input") {
        return tokens.last().and_then(|t| usize::try_from(t.start).ok());
    }
    let near = message.split_once("at or near \"")?.1.strip_suffix('"')?;
    tokens.iter().find_map(|t| {
        let (from, to) = (usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?);
        let token = statement.get(from..to)?;
        if !near.starts_with(token) {
            return None;
        }
        match pg_query::parse(&statement[..to], 0) {
            Err(pg_query::Error::Parse(m)) if m == message => Some(from),
            _ => None,
        }
    })
}

fn classify(node: Option<&NodeEnum>) -> StatementKind {
    let Some(node) = node else {
        return StatementKind::Plain;
    };
    match node {
        NodeEnum::TransactionStmt(t) => match TransactionStmtKind::try_from(t.kind) {
            Ok(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart) => {
                StatementKind::Begin
            }
            Ok(TransactionStmtKind::TransStmtCommit) => StatementKind::Commit,
            Ok(TransactionStmtKind::TransStmtRollback) => StatementKind::Rollback,
            Ok(
                TransactionStmtKind::TransStmtPrepare
                | TransactionStmtKind::TransStmtCommitPrepared
                | TransactionStmtKind::TransStmtRollbackPrepared,
            ) => StatementKind::TwoPhase,
            _ => StatementKind::Plain,
        },
        NodeEnum::IndexStmt(s) if s.concurrent => StatementKind::NoTransaction,
        NodeEnum::DropStmt(s) if s.concurrent => StatementKind::NoTransaction,
        NodeEnum::ReindexStmt(s) if has_option(&s.params, "concurrently") => {
            StatementKind::NoTransaction
        }
        NodeEnum::ReindexStmt(s)
            if s.kind == pg_query::protobuf::ReindexObjectType::ReindexObjectSystem as i32
                || s.kind
                    == pg_query::protobuf::ReindexObjectType::ReindexObjectDatabase as i32 =>
        {
            StatementKind::NoTransaction
        }
        NodeEnum::VacuumStmt(s) if s.is_vacuumcmd => StatementKind::NoTransaction,
        NodeEnum::CreatedbStmt(_)
        | NodeEnum::DropdbStmt(_)
        | NodeEnum::AlterSystemStmt(_)
        | NodeEnum::CreateTableSpaceStmt(_)
        | NodeEnum::DropTableSpaceStmt(_)
        | NodeEnum::CreateSubscriptionStmt(_)
        | NodeEnum::DropSubscriptionStmt(_) => StatementKind::NoTransaction,
        NodeEnum::ClusterStmt(s) if s.relation.is_none() => StatementKind::NoTransaction,
        _ => StatementKind::Plain,
    }
}

fn has_option(params: &[pg_query::protobuf::Node], name: &str) -> bool {
    params
        .iter()
        .any(|p| matches!(&p.node, Some(NodeEnum::DefElem(d)) if d.defname == name))
}

#[cfg(test)]
mod tests;
