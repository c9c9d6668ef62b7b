//! The Sqitch plan format read as Sqitch 1.3 reads it, with change and tag ids computed as
//! Sqitch computes them. [`parse`] is pure: text in, [`Plan`] or an error naming the line
//! out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::grammar::{self, Blank};
use super::{Error, Result, uri};

/// The only plan syntax version there is; Sqitch records it whatever the file says.
pub const SYNTAX_VERSION: &str = "1.0.0";

/// What Sqitch says about names it refuses.
const NAME_RULES: &str = "names must not begin with punctuation, contain \"@\", \":\", \"#\", \"\\\", or blanks, or end in punctuation or digits following punctuation";

/// A parsed Sqitch plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The plan file, for messages.
    pub path: PathBuf,
    /// `%syntax-version`. Always `1.0.0`: Sqitch overrides whatever the file says.
    pub syntax_version: String,
    /// `%project`.
    pub project: String,
    /// `%uri` as Sqitch stores it in its registry (Perl's `URI->new` string: non-URI
    /// characters percent-encoded), when given. A `%uri` of `0` counts as none, as in Sqitch.
    pub uri: Option<String>,
    /// Changes in plan order. A reworked change appears once per instance.
    pub changes: Vec<Change>,
}

/// One change (one instance, for a reworked change) in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The change name, as written.
    pub name: String,
    /// Sqitch's change id: SHA-1 hex over the change's info text (project, `%uri`, name,
    /// the id of the change before it in the plan, planner, date, dependencies, note).
    pub id: String,
    /// 1-based line in the plan file.
    pub line: usize,
    /// `[requires]`, in plan order.
    pub requires: Vec<Dependency>,
    /// `[!conflicts]`, in plan order.
    pub conflicts: Vec<Dependency>,
    /// Planner's name, as Sqitch captures it. NB: when several blanks come before `<email>`,
    /// Sqitch keeps all but the last in the name, and they count in the id.
    pub planner_name: String,
    /// Planner's email (without angle brackets).
    pub planner_email: String,
    /// The timestamp exactly as written in the plan (`2024-01-31T12:00:00Z`).
    pub planned_at: String,
    /// The note, unescaped.
    pub note: String,
    /// Tags placed right after this change, in plan order.
    pub tags: Vec<Tag>,
    /// Script file name relative to the deploy/revert/verify dirs: `name.sql`, or
    /// `name@tag.sql` for an earlier instance of a reworked change.
    pub script_file: String,
    /// Id of the previous instance of this change when it is a rework. NB: this is not
    /// Sqitch's `parent`, which is the change just before in the plan and is part of every
    /// change id.
    pub parent: Option<String>,
    /// For an instance that was reworked later: the tags Sqitch tries, in order, for its
    /// `name@tag` script (the tags between this instance and the next, newest first, then
    /// this instance's own). Empty for the last instance and for changes never reworked.
    pub rework_tags: Vec<String>,
}

/// A tag (`@name`) in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// The name without `@`.
    pub name: String,
    /// Sqitch's tag id.
    pub id: String,
    /// 1-based line in the plan file.
    pub line: usize,
    /// Planner's name.
    pub planner_name: String,
    /// Planner's email.
    pub planner_email: String,
    /// The timestamp exactly as written in the plan.
    pub planned_at: String,
    /// The note, unescaped.
    pub note: String,
}

/// A `requires` or `conflicts` entry: `[proj:]change[@tag]`, `[proj:]@tag` or an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// True for `!conflict` entries.
    pub conflicts: bool,
    /// The project when written as `proj:…`.
    pub project: Option<String>,
    /// The change name, when given.
    pub change: Option<String>,
    /// The tag name without `@`, when given.
    pub tag: Option<String>,
    /// A literal change id, when given instead of a name.
    pub id: Option<String>,
}

impl Dependency {
    /// Sqitch's `key_name`: `change@tag`, `change`, `@tag` or the id, without project.
    pub fn key(&self) -> String {
        match (&self.id, &self.change, &self.tag) {
            (_, Some(c), Some(t)) => format!("{c}@{t}"),
            (_, Some(c), None) => c.clone(),
            (_, None, Some(t)) => format!("@{t}"),
            (Some(id), None, None) => id.clone(),
            (None, None, None) => String::new(),
        }
    }

    /// Sqitch's `as_string`: the dependency as stored in the registry, without `!`, with
    /// the project prefix only when it names another project than `plan_project`.
    pub fn as_string(&self, plan_project: &str) -> String {
        let key = self.key();
        match &self.project {
            Some(p) if p != plan_project => format!("{p}:{key}"),
            _ => key,
        }
    }

    /// True when the dependency points into this plan's own project.
    pub fn is_local(&self, plan_project: &str) -> bool {
        self.project.as_deref().is_none_or(|p| p == plan_project)
    }
}

impl Change {
    /// True when a later instance reworks this one (its scripts are the `name@tag` copies).
    pub fn is_reworked(&self) -> bool {
        !self.rework_tags.is_empty()
    }

    /// Sqitch's `format_tag_qualified_name`: `name@tag` with the change's first tag, else
    /// the first rework tag, else `name@HEAD`.
    pub fn tag_qualified_name(&self) -> String {
        match (self.tags.first(), self.rework_tags.first()) {
            (Some(tag), _) => format!("{}@{}", self.name, tag.name),
            (None, Some(tag)) => format!("{}@{}", self.name, tag),
            (None, None) => format!("{}@HEAD", self.name),
        }
    }
}

/// Why [`Plan::resolve`] could not name a change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// Nothing in the plan has that name, tag or id.
    #[error("cannot find change \"{0}\" in the plan")]
    NotFound(String),
    /// `change@tag` names a tag the plan does not have.
    #[error("unknown tag \"@{0}\"")]
    UnknownTag(String),
    /// A reworked change's name without a tag; Sqitch refuses to guess.
    #[error("change \"{name}\" is ambiguous; use a tag-qualified name: {}", candidates.join(", "))]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// Tag-qualified names of its instances, newest first.
        candidates: Vec<String>,
    },
}

impl Plan {
    /// Index of the change a Sqitch target names: `change`, `@tag`, `change@tag`, a change
    /// or tag id, `@HEAD`/`HEAD`, `@ROOT`/`ROOT`, optionally followed by Sqitch's relative
    /// suffixes (`^`, `^^`, `^N` earlier; `~`, `~~`, `~N` later). A reworked name without a
    /// tag is ambiguous to Sqitch and gives `None`; [`Plan::resolve`] says why.
    pub fn find(&self, target: &str) -> Option<usize> {
        self.resolve(target).ok()
    }

    /// Like [`Plan::find`], with the reason when the target names no single change. Follows
    /// Sqitch's `index_of`, which `sqitch deploy --to` and `revert --to` use.
    pub fn resolve(&self, target: &str) -> Result<usize, FindError> {
        let not_found = || FindError::NotFound(target.to_owned());
        if self.changes.is_empty() {
            return Err(not_found());
        }
        let (key, offset) = split_relative(target);
        let index = self.index_of_key(key)?;
        let moved = index as i64 + offset;
        if moved < 0 || moved >= self.changes.len() as i64 {
            return Err(not_found());
        }
        Ok(moved as usize)
    }

    /// Index of the change with this id.
    pub fn index_of_id(&self, id: &str) -> Option<usize> {
        self.changes.iter().position(|c| c.id == id)
    }

    /// Index of the change the tag (without `@`) is placed on.
    pub fn index_of_tag(&self, tag: &str) -> Option<usize> {
        self.changes
            .iter()
            .position(|c| c.tags.iter().any(|t| t.name == tag))
    }

    /// `%uri` as it goes into change and tag ids (Perl's `URI->canonical`).
    pub fn uri_canonical(&self) -> Option<String> {
        self.uri.as_deref().map(uri::canonical)
    }

    /// Settles each change's [`Change::script_file`] for scripts named `*.{extension}`:
    /// a reworked instance takes the first of its `name@tag.{extension}` candidates for
    /// which `exists` is true (Sqitch looks in the reworked deploy directory), else the first.
    pub fn resolve_scripts(&mut self, extension: &str, exists: impl Fn(&str) -> bool) {
        for change in &mut self.changes {
            change.script_file = script_file(change, extension, &exists);
        }
    }

    /// `@tag`, `HEAD`/`ROOT` and plain lookups, without relative suffixes.
    fn index_of_key(&self, key: &str) -> Result<usize, FindError> {
        let not_found = || FindError::NotFound(key.to_owned());
        let (change, tag) = match key.split_once('@') {
            Some((change, tag)) => (change, Some(tag)),
            None => (key, None),
        };
        if change.is_empty() {
            return tag.and_then(|t| self.tag_position(t)).ok_or_else(not_found);
        }
        let candidates = self.lookup(change);
        if candidates.is_empty() {
            return Err(not_found());
        }
        match tag {
            Some(tag) => {
                let at = self
                    .tag_position(tag)
                    .ok_or_else(|| FindError::UnknownTag(tag.to_owned()))?;
                candidates
                    .iter()
                    .rev()
                    .find(|&&i| i <= at)
                    .copied()
                    .ok_or_else(not_found)
            }
            None if candidates.len() == 1 => Ok(candidates[0]),
            None => Err(FindError::Ambiguous {
                name: change.to_owned(),
                candidates: candidates
                    .iter()
                    .rev()
                    .map(|&i| self.changes[i].tag_qualified_name())
                    .collect(),
            }),
        }
    }

    /// What Sqitch's lookup table holds for a key without `@`: `HEAD`, `ROOT`, change and
    /// tag ids, and every instance of a change name.
    fn lookup(&self, key: &str) -> Vec<usize> {
        match key {
            "HEAD" => return vec![self.changes.len() - 1],
            "ROOT" => return vec![0],
            _ => {}
        }
        if grammar::is_id(key) {
            let by_id = self
                .changes
                .iter()
                .position(|c| c.id == key || c.tags.iter().any(|t| t.id == key));
            if let Some(i) = by_id {
                return vec![i];
            }
        }
        self.changes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name == key)
            .map(|(i, _)| i)
            .collect()
    }

    fn tag_position(&self, tag: &str) -> Option<usize> {
        match tag {
            "HEAD" => Some(self.changes.len() - 1),
            "ROOT" => Some(0),
            _ => self.index_of_tag(tag),
        }
    }
}

/// Splits Sqitch's relative suffix off a target: `(?<![punct])([~^])(?:\1|\d+)?\z`.
fn split_relative(target: &str) -> (&str, i64) {
    let chars: Vec<(usize, char)> = target.char_indices().collect();
    let n = chars.len();
    let digits = chars
        .iter()
        .rev()
        .take_while(|(_, c)| super::chars::is_digit(*c))
        .count();
    let candidates = [
        // `~N` / `^N`
        (digits > 0 && n > digits).then(|| n - digits - 1),
        // `~~` / `^^`
        (n >= 2 && chars[n - 1].1 == chars[n - 2].1).then(|| n - 2),
        // `~` / `^`
        n.checked_sub(1),
    ];
    for op_at in candidates.into_iter().flatten() {
        let op = chars[op_at].1;
        if !matches!(op, '~' | '^') || (op_at > 0 && super::chars::is_punct(chars[op_at - 1].1)) {
            continue;
        }
        let suffix = &target[chars[op_at].0..];
        let steps: i64 = if suffix.len() == 1 {
            1
        } else if suffix[1..].chars().all(|c| c == op) {
            2
        } else {
            match suffix[op.len_utf8()..].parse::<i64>() {
                Ok(n) => n,
                // Non-ASCII digits: Perl counts them, Rust's parser does not; no match.
                Err(_) => continue,
            }
        };
        let steps = if op == '^' { -steps } else { steps };
        return (&target[..chars[op_at].0], steps);
    }
    (target, 0)
}

fn script_file(change: &Change, extension: &str, exists: &impl Fn(&str) -> bool) -> String {
    let file = |tag: Option<&str>| {
        let mut file = String::with_capacity(change.name.len() + extension.len() + 16);
        file.push_str(&change.name);
        if let Some(tag) = tag {
            push_all(&mut file, &["@", tag]);
        }
        push_all(&mut file, &[".", extension]);
        file
    };
    if change.rework_tags.is_empty() {
        return file(None);
    }
    let candidate = |tag: &String| file(Some(tag));
    change
        .rework_tags
        .iter()
        .map(candidate)
        .find(|file| exists(file))
        .unwrap_or_else(|| candidate(&change.rework_tags[0]))
}

// === parsing ===

/// Parses the plan text. `path` is used in messages only. Scripts are named `*.sql`; see
/// [`Plan::resolve_scripts`] for other extensions and for reworked changes' files on disk.
pub fn parse(path: &Path, text: &str) -> Result<Plan> {
    Parser::new(path).run(text)
}

/// What the parser knows about one change name.
struct Name {
    /// Index of the latest instance.
    latest: usize,
    /// Line of the latest instance in a section already closed by a tag.
    closed_line: Option<usize>,
    /// Line of the instance in the open section (Sqitch's `%tag_changes`).
    open_line: Option<usize>,
}

/// Reading state: what Sqitch's `_parse` keeps while it walks the file.
struct Parser<'p> {
    path: &'p Path,
    project: Option<String>,
    /// `%uri` (raw) and its line.
    uri: Option<(String, usize)>,
    changes: Vec<Change>,
    /// Changes before this index sit in sections already closed by a tag.
    closed: usize,
    /// Every change name planned so far.
    names: HashMap<String, Name>,
    /// Tags (without `@`) → line; with the names' `closed_line`, Sqitch's `%line_no_for`.
    tags: HashMap<String, usize>,
    /// Indexes of changes carrying tags, ascending.
    tagged: Vec<usize>,
    /// Per change: the instance it reworks.
    reworks: Vec<Option<usize>>,
    /// Reused buffer for a line's characters.
    scratch: Vec<char>,
}

impl<'p> Parser<'p> {
    fn new(path: &'p Path) -> Self {
        Parser {
            path,
            project: None,
            uri: None,
            changes: Vec::new(),
            closed: 0,
            names: HashMap::new(),
            tags: HashMap::new(),
            tagged: Vec::new(),
            reworks: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn invalid(&self, line: usize, message: impl Into<String>) -> Error {
        Error::Invalid {
            path: self.path.to_owned(),
            line,
            message: message.into(),
        }
    }

    fn run(mut self, text: &str) -> Result<Plan> {
        // Every change takes a line: reserving up front spares regrowing a large vector.
        let line_count = text.bytes().filter(|&b| b == b'\n').count() + 1;
        self.changes.reserve(line_count);
        self.reworks.reserve(line_count);
        self.names.reserve(line_count);
        let mut lines = split_lines(text);
        for (number, line) in lines.by_ref() {
            if !self.header_line(number, line)? {
                break;
            }
        }
        let project = match self.project.take() {
            Some(p) if p != "0" => p,
            // Sqitch names no line; the header, where the pragma belongs, starts on line 1.
            _ => return Err(self.invalid(1, "missing %project pragma")),
        };
        let uri = match self.uri.take() {
            Some((raw, line)) if raw != "0" => {
                if uri::has_international_host(&raw) {
                    return Err(self.invalid(
                        line,
                        format!(
                            "%uri {raw:?} has a non-ASCII host name; write its punycode (xn--) form"
                        ),
                    ));
                }
                Some(uri::as_string(&raw))
            }
            _ => None,
        };
        for (number, line) in lines {
            self.body_line(number, line, &project)?;
        }
        self.close_section(&project)?;

        let mut plan = Plan {
            path: self.path.to_owned(),
            syntax_version: SYNTAX_VERSION.into(),
            project,
            uri,
            changes: self.changes,
        };
        assign_ids(&mut plan, &self.reworks);
        plan.resolve_scripts("sql", |_| false);
        Ok(plan)
    }

    /// One line of the header. Returns false once the header is over.
    fn header_line(&mut self, number: usize, line: &str) -> Result<bool> {
        match grammar::blank_line(line) {
            Some(Blank::Empty) => return Ok(false),
            Some(Blank::Comment(note)) => {
                // A comment whose note Perl finds false ends the header like a blank line.
                let note = super::chars::trim_space(note);
                return Ok(!(note.is_empty() || note == "0"));
            }
            None => {}
        }
        let (content, _) = grammar::split_note(line);
        let pragma = grammar::parse_pragma(content).ok_or_else(|| {
            self.invalid(
                number,
                "invalid pragma; a blank line must come between pragmas and changes",
            )
        })?;
        match pragma.name.as_str() {
            "project" => {
                let value = pragma.value.unwrap_or_default();
                if !grammar::is_name(&value) {
                    return Err(self.invalid(
                        number,
                        format!("invalid project name \"{value}\": project {NAME_RULES}"),
                    ));
                }
                self.project = Some(value);
            }
            "uri" => self.uri = Some((pragma.value.unwrap_or_else(|| "1".into()), number)),
            // `%syntax-version` is always 1.0.0; other pragmas are kept by Sqitch and unused.
            _ => {}
        }
        Ok(true)
    }

    fn body_line(&mut self, number: usize, line: &str, project: &str) -> Result<()> {
        if grammar::blank_line(line).is_some() {
            return Ok(());
        }
        let (content, raw_note) = grammar::split_note(line);
        let entry = grammar::parse_entry(content, &mut self.scratch)
            .filter(|e| {
                e.name != "0" && (e.timestamp.is_some() || !grammar::contains_timestamp(content))
            })
            .ok_or_else(|| self.invalid(number, format!("invalid name; {NAME_RULES}")))?;
        let planner = entry.planner.filter(|(name, _)| *name != "0");
        let (timestamp, (planner_name, planner_email)) = match (entry.timestamp, planner) {
            (None, None) => {
                return Err(self.invalid(number, "missing timestamp and planner name and email"));
            }
            (None, Some(_)) => return Err(self.invalid(number, "missing timestamp")),
            (Some(_), None) => return Err(self.invalid(number, "missing planner name and email")),
            (Some(ts), Some(planner)) => (ts, planner),
        };
        if entry.name == "HEAD" || entry.name == "ROOT" {
            let at = if entry.tag { "@" } else { "" };
            return Err(self.invalid(number, format!("\"{at}{}\" is a reserved name", entry.name)));
        }
        if grammar::looks_like_id(entry.name) {
            return Err(self.invalid(
                number,
                format!(
                    "\"{}\" is invalid because it could be confused with a sha1 id",
                    entry.name
                ),
            ));
        }
        grammar::check_timestamp(timestamp).map_err(|why| {
            self.invalid(number, format!("invalid timestamp \"{timestamp}\": {why}"))
        })?;
        let note = grammar::unescape_note(raw_note.unwrap_or(""));
        if entry.tag {
            let tag = Tag {
                name: entry.name.to_owned(),
                id: String::new(),
                line: number,
                planner_name: planner_name.to_owned(),
                planner_email: planner_email.to_owned(),
                planned_at: timestamp.to_owned(),
                note,
            };
            self.add_tag(tag, entry.dependencies.is_some(), project)
        } else {
            let change = Change {
                name: entry.name.to_owned(),
                id: String::new(),
                line: number,
                requires: Vec::new(),
                conflicts: Vec::new(),
                planner_name: planner_name.to_owned(),
                planner_email: planner_email.to_owned(),
                planned_at: timestamp.to_owned(),
                note,
                tags: Vec::new(),
                script_file: String::new(),
                parent: None,
                rework_tags: Vec::new(),
            };
            self.add_change(change, entry.dependencies, project)
        }
    }

    fn add_tag(&mut self, tag: Tag, has_dependencies: bool, project: &str) -> Result<()> {
        let line = tag.line;
        if tag.name.contains('/') {
            return Err(self.invalid(
                line,
                format!("tag \"@{}\" contains illegal character /", tag.name),
            ));
        }
        if self.changes.is_empty() {
            return Err(self.invalid(
                line,
                format!("tag \"@{}\" declared without a preceding change", tag.name),
            ));
        }
        if let Some(earlier) = self.tags.get(&tag.name) {
            return Err(self.invalid(
                line,
                format!(
                    "tag \"@{}\" duplicates earlier declaration on line {earlier}",
                    tag.name
                ),
            ));
        }
        if has_dependencies {
            return Err(self.invalid(line, "tags may not specify dependencies"));
        }
        self.close_section(project)?;
        let last = self.changes.len() - 1;
        if self.tagged.last() != Some(&last) {
            self.tagged.push(last);
        }
        self.tags.insert(tag.name.clone(), line);
        self.changes[last].tags.push(tag);
        Ok(())
    }

    // long-fn: Sqitch's rules for one change line, checked in Sqitch's order (a grammar table in code).
    fn add_change(
        &mut self,
        mut change: Change,
        dependencies: Option<&str>,
        project: &str,
    ) -> Result<()> {
        let line = change.line;
        let known = self
            .names
            .get(&change.name)
            .map(|n| (n.latest, n.open_line));
        if let Some((_, Some(earlier))) = known {
            return Err(self.invalid(
                line,
                format!(
                    "change \"{}\" duplicates earlier declaration on line {earlier}; a change can be reworked only after a tag",
                    change.name
                ),
            ));
        }
        if let Some(text) = dependencies {
            let fields = split_dependencies(text);
            // Exact capacities: plans hold many changes with one or two dependencies.
            let conflicts = fields.iter().filter(|f| f.starts_with('!')).count();
            change.requires.reserve_exact(fields.len() - conflicts);
            change.conflicts.reserve_exact(conflicts);
            for (at, &field) in fields.iter().enumerate() {
                let spec = grammar::parse_dependency(field)
                    .filter(|s| s.change.is_some() || s.tag.is_some() || s.id.is_some())
                    .ok_or_else(|| {
                        self.invalid(
                            line,
                            format!("\"{field}\" is not a valid dependency specification"),
                        )
                    })?;
                if fields[..at].contains(&field) {
                    return Err(self.invalid(line, format!("duplicate dependency \"{field}\"")));
                }
                if spec.id.is_some() && spec.project.is_none() {
                    // NB: Sqitch 1.3 recurses forever on such a plan (resolving the id needs
                    // the plan it is building), so no Sqitch user can have one.
                    return Err(self.invalid(
                        line,
                        format!("dependency \"{field}\" names a change by id without a project, which sqitch cannot read; write the change name"),
                    ));
                }
                let dep = Dependency {
                    conflicts: spec.conflicts,
                    project: spec.project,
                    change: spec.change,
                    tag: spec.tag,
                    id: spec.id,
                };
                if dep.conflicts {
                    change.conflicts.push(dep)
                } else {
                    change.requires.push(dep)
                }
            }
        }
        // Stricter than Sqitch: such a change could never be deployed.
        let both = if change.conflicts.is_empty() {
            &[][..]
        } else {
            &change.requires[..]
        };
        for required in both {
            let shown = required.as_string(project);
            if change
                .conflicts
                .iter()
                .any(|c| c.as_string(project) == shown)
            {
                return Err(self.invalid(
                    line,
                    format!(
                        "change \"{}\" both requires and conflicts with \"{shown}\"",
                        change.name
                    ),
                ));
            }
        }

        let index = self.changes.len();
        let reworks = known.map(|(latest, _)| latest);
        match self.names.get_mut(&change.name) {
            Some(name) => {
                name.latest = index;
                name.open_line = Some(line);
            }
            None => {
                let name = Name {
                    latest: index,
                    closed_line: None,
                    open_line: Some(line),
                };
                self.names.insert(change.name.clone(), name);
            }
        }
        if let Some(previous) = reworks {
            let tags = self.rework_tags(previous);
            self.changes[previous].rework_tags = tags;
        }
        self.reworks.push(reworks);
        self.changes.push(change);
        Ok(())
    }

    /// Sqitch's rework tags for `previous`: the tags of the changes after it up to the last
    /// tag, newest change first (each change's tags in plan order), then its own.
    fn rework_tags(&self, previous: usize) -> Vec<String> {
        let from = self.tagged.partition_point(|&i| i <= previous);
        let to = self.tagged.partition_point(|&i| i < self.closed);
        let mut tags: Vec<String> = self.tagged[from..to]
            .iter()
            .rev()
            .flat_map(|&i| self.changes[i].tags.iter().map(|t| t.name.clone()))
            .collect();
        tags.extend(self.changes[previous].tags.iter().map(|t| t.name.clone()));
        tags
    }

    /// Sqitch's `check_changes` for the open section: each `requires` in this project must
    /// name a change planned earlier (in an earlier section, or earlier in this one), or a
    /// tag; `change@tag` must name a change that existed at that tag. Conflicts are not
    /// checked, as in Sqitch.
    fn close_section(&mut self, project: &str) -> Result<()> {
        let section = self.closed..self.changes.len();
        for index in section.clone() {
            let change = &self.changes[index];
            for dep in &change.requires {
                match &dep.project {
                    Some(p) if p != project => continue,
                    None if dep.id.is_some() => continue,
                    _ => {}
                }
                let name = dep.change.as_deref().and_then(|n| self.names.get(n));
                let known = match (name, &dep.tag) {
                    (Some(name), Some(tag)) => match (name.closed_line, self.tags.get(tag)) {
                        (Some(change_line), Some(&tag_line)) => change_line < tag_line,
                        _ => false,
                    },
                    (None, Some(tag)) if dep.change.is_none() => self.tags.contains_key(tag),
                    (Some(name), None) => {
                        name.closed_line.is_some()
                            || (name.open_line.is_some() && name.latest < index)
                    }
                    _ => false,
                };
                if known {
                    continue;
                }
                let key = dep.key();
                let later = match (name, &dep.tag) {
                    (Some(n), None) if n.open_line.is_some() && n.latest > index => {
                        Some(n.latest - index)
                    }
                    _ => None,
                };
                let message = if key == change.name {
                    format!("change \"{}\" cannot require itself", change.name)
                } else if let Some(later) = later {
                    let plural = if later == 1 { "" } else { "s" };
                    format!(
                        "change \"{}\" requires \"{key}\", which is planned {later} change{plural} later; move \"{}\" below it",
                        change.name, change.name
                    )
                } else {
                    format!(
                        "change \"{}\" requires unknown change \"{key}\"",
                        change.name
                    )
                };
                return Err(self.invalid(change.line, message));
            }
        }
        for index in section {
            if let Some(name) = self.names.get_mut(&self.changes[index].name) {
                name.closed_line = name.open_line.take();
            }
        }
        self.closed = self.changes.len();
        Ok(())
    }
}

/// Lines with their 1-based numbers. A `\r` before `\n` goes with the newline (Sqitch's
/// `s/\r?\n\z//`); a final line without `\n` keeps it.
fn split_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let body = text.strip_suffix('\n');
    let complete = body.is_some();
    let body = body.unwrap_or(text);
    let count = body.split('\n').count();
    body.split('\n').enumerate().map(move |(i, line)| {
        let has_newline = complete || i + 1 < count;
        let line = if has_newline {
            line.strip_suffix('\r').unwrap_or(line)
        } else {
            line
        };
        (i + 1, line)
    })
}

/// Perl's `split /[[:blank:]]+/`: a leading blank gives an empty first field (which Sqitch
/// then rejects), trailing empty fields are dropped.
fn split_dependencies(text: &str) -> Vec<&str> {
    let mut fields: Vec<&str> = Vec::new();
    let mut rest = text;
    loop {
        match rest.find(super::chars::is_blank) {
            Some(at) => {
                fields.push(&rest[..at]);
                rest = rest[at..].trim_start_matches(super::chars::is_blank);
            }
            None => {
                fields.push(rest);
                break;
            }
        }
    }
    while fields.last() == Some(&"") {
        fields.pop();
    }
    fields
}

// === ids ===

/// Fills change and tag ids in plan order (each change's id covers the one before it) and
/// the `parent` of reworked instances.
fn assign_ids(plan: &mut Plan, reworks: &[Option<usize>]) {
    let canonical_uri = plan.uri_canonical();
    let mut previous: Option<String> = None;
    for index in 0..plan.changes.len() {
        let id = change_id(
            plan,
            &plan.changes[index],
            canonical_uri.as_deref(),
            previous.as_deref(),
        );
        let change = &mut plan.changes[index];
        change.id = id.clone();
        for tag in &mut change.tags {
            tag.id = tag_id(&plan.project, canonical_uri.as_deref(), tag, &id);
        }
        previous = Some(id);
        if let Some(Some(earlier)) = reworks.get(index) {
            let parent = plan.changes[*earlier].id.clone();
            plan.changes[index].parent = Some(parent);
        }
    }
}

/// Sqitch's note test: Perl treats `""` and `"0"` as false.
fn perl_true(s: &str) -> bool {
    !s.is_empty() && s != "0"
}

/// The text Sqitch's `Change->info` builds.
pub(super) fn change_info(
    project: &str,
    uri: Option<&str>,
    change: &Change,
    parent: Option<&str>,
) -> String {
    let mut info = String::with_capacity(256);
    push_all(&mut info, &["project ", project, "\n"]);
    if let Some(uri) = uri {
        push_all(&mut info, &["uri ", uri, "\n"]);
    }
    push_all(&mut info, &["change ", &change.name, "\n"]);
    if let Some(parent) = parent {
        push_all(&mut info, &["parent ", parent, "\n"]);
    }
    push_all(
        &mut info,
        &[
            "planner ",
            &change.planner_name,
            " <",
            &change.planner_email,
            ">\ndate ",
            &change.planned_at,
        ],
    );
    for (label, mark, deps) in [
        ("\nrequires", "\n  + ", &change.requires),
        ("\nconflicts", "\n  - ", &change.conflicts),
    ] {
        if !deps.is_empty() {
            info.push_str(label);
            for dep in deps {
                info.push_str(mark);
                push_dependency(&mut info, dep, project);
            }
        }
    }
    if perl_true(&change.note) {
        push_all(&mut info, &["\n\n", &change.note]);
    }
    info
}

/// The text Sqitch's `Tag->info` builds.
pub(super) fn tag_info(project: &str, uri: Option<&str>, tag: &Tag, change_id: &str) -> String {
    let mut info = String::with_capacity(256);
    push_all(&mut info, &["project ", project, "\n"]);
    if let Some(uri) = uri {
        push_all(&mut info, &["uri ", uri, "\n"]);
    }
    push_all(
        &mut info,
        &[
            "tag @",
            &tag.name,
            "\nchange ",
            change_id,
            "\nplanner ",
            &tag.planner_name,
            " <",
            &tag.planner_email,
            ">\ndate ",
            &tag.planned_at,
        ],
    );
    if perl_true(&tag.note) {
        push_all(&mut info, &["\n\n", &tag.note]);
    }
    info
}

/// [`Dependency::as_string`] without the intermediate strings.
fn push_dependency(out: &mut String, dep: &Dependency, project: &str) {
    if let Some(p) = dep.project.as_deref().filter(|p| *p != project) {
        push_all(out, &[p, ":"]);
    }
    match (&dep.id, &dep.change, &dep.tag) {
        (_, Some(c), Some(t)) => push_all(out, &[c, "@", t]),
        (_, Some(c), None) => out.push_str(c),
        (_, None, Some(t)) => push_all(out, &["@", t]),
        (Some(id), None, None) => out.push_str(id),
        (None, None, None) => {}
    }
}

fn push_all(out: &mut String, parts: &[&str]) {
    for part in parts {
        out.push_str(part);
    }
}

fn change_id(plan: &Plan, change: &Change, uri: Option<&str>, parent: Option<&str>) -> String {
    object_id("change", &change_info(&plan.project, uri, change, parent))
}

fn tag_id(project: &str, uri: Option<&str>, tag: &Tag, change_id: &str) -> String {
    object_id("tag", &tag_info(project, uri, tag, change_id))
}

/// Git-style object hash: SHA-1 of `"<kind> <byte length>\0<info>"`.
fn object_id(kind: &str, info: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(kind.as_bytes());
    sha.update(b" ");
    // The decimal length, without going through `fmt`.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut len = info.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (len % 10) as u8;
        len /= 10;
        if len == 0 {
            break;
        }
    }
    sha.update(&digits[at..]);
    sha.update(b"\0");
    sha.update(info.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(40);
    for byte in sha.finalize() {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    id
}

#[cfg(test)]
mod tests;
