//! The parts of `sqitch.conf` (git-config syntax, read as Sqitch's `Config::GitLike` reads
//! it) that change where things live, with Sqitch's target → engine → core lookup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// One `name = value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// `section.name` or `section.subsection.name`: section and name lower-cased, the
    /// subsection as written (git's rules).
    key: String,
    /// The name as written, for variables (whose case matters to scripts).
    name: String,
    /// `None` for a key written without `=` (a boolean true).
    value: Option<String>,
    /// 1-based line.
    line: usize,
}

/// A parsed `sqitch.conf`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SqitchConf {
    /// The file, for messages.
    pub path: PathBuf,
    entries: Vec<Entry>,
}

/// What switchyard takes from `sqitch.conf`, resolved as Sqitch resolves its default target.
/// Paths are as configured (relative to the project root, where Sqitch runs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SqitchSettings {
    /// The engine key (`core.engine`, or the engine of `core.target`'s URI), e.g. `pg`.
    pub engine: Option<String>,
    /// `plan_file`.
    pub plan_file: Option<PathBuf>,
    /// `top_dir`.
    pub top_dir: Option<PathBuf>,
    /// `deploy_dir`.
    pub deploy_dir: Option<PathBuf>,
    /// `revert_dir`.
    pub revert_dir: Option<PathBuf>,
    /// `verify_dir`.
    pub verify_dir: Option<PathBuf>,
    /// `reworked_dir`.
    pub reworked_dir: Option<PathBuf>,
    /// `reworked_deploy_dir`.
    pub reworked_deploy_dir: Option<PathBuf>,
    /// `reworked_revert_dir`.
    pub reworked_revert_dir: Option<PathBuf>,
    /// `reworked_verify_dir`.
    pub reworked_verify_dir: Option<PathBuf>,
    /// `extension` (Sqitch's default is `sql`).
    pub extension: Option<String>,
    /// `deploy.verify`: run verify scripts while deploying.
    pub deploy_verify: Option<bool>,
    /// `deploy.mode`: `all`, `tag` or `change`.
    pub deploy_mode: Option<String>,
    /// Script variables for deploys, in Sqitch's precedence: `[core "variables"]`, then
    /// `[deploy "variables"]`, then the engine's and the target's `variables`.
    pub variables: BTreeMap<String, String>,
    /// The line each path-like setting above was read from, by setting name (`plan_file`,
    /// `top_dir`, …), for messages.
    pub lines: BTreeMap<String, usize>,
}

impl SqitchConf {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<SqitchConf> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| Error::Invalid {
            path: path.to_owned(),
            line: line_at(
                &String::from_utf8_lossy(e.as_bytes()),
                e.utf8_error().valid_up_to(),
            ),
            message: "not valid UTF-8".into(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses config text. `path` is used in messages only.
    pub fn parse(path: &Path, text: &str) -> Result<SqitchConf> {
        let text = text.replace("\r\n", "\n");
        let entries = Reader {
            text: &text,
            pos: 0,
        }
        .entries()
        .map_err(|(line, message)| Error::Invalid {
            path: path.to_owned(),
            line,
            message,
        })?;
        Ok(SqitchConf {
            path: path.to_owned(),
            entries,
        })
    }

    /// The value of `key` (`section.name` or `section.sub.name`), the last one winning.
    /// `None` also for a key written without `=`; [`Self::is_set`] tells those apart.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).and_then(|e| e.value.as_deref())
    }

    /// True when `key` appears at all (with or without a value).
    pub fn is_set(&self, key: &str) -> bool {
        self.entry(key).is_some()
    }

    /// `key` as a git boolean (`true`/`yes`/`on`/`1`, `false`/`no`/`off`/`0`/empty; a key
    /// without `=` is true).
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        let Some(entry) = self.entry(key) else {
            return Ok(None);
        };
        let Some(value) = entry.value.as_deref() else {
            return Ok(Some(true));
        };
        let lower = value.to_ascii_lowercase();
        let digits = lower.strip_prefix('-').unwrap_or(&lower);
        if matches!(lower.as_str(), "true" | "yes" | "on")
            || (digits.ends_with('1') && digits[..digits.len() - 1].bytes().all(|b| b == b'0'))
        {
            Ok(Some(true))
        } else if matches!(lower.as_str(), "false" | "no" | "off")
            || lower.bytes().all(|b| b == b'0')
        {
            Ok(Some(false))
        } else {
            Err(Error::Invalid {
                path: self.path.clone(),
                line: entry.line,
                message: format!("{key} must be a boolean, not \"{value}\""),
            })
        }
    }

    /// The entries of `[section "sub"]` (`section.sub`), names as written; a name without
    /// a value maps to the empty string.
    pub fn section(&self, section: &str) -> BTreeMap<String, String> {
        let prefix = format!("{}.", normalise_section(section));
        self.entries
            .iter()
            .filter_map(|e| {
                let rest = e.key.strip_prefix(&prefix)?;
                (!rest.contains('.')).then(|| (e.name.clone(), e.value.clone().unwrap_or_default()))
            })
            .collect()
    }

    /// The line `key` was (last) set on.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.entry(key).map(|e| e.line)
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        let key = normalise_key(key);
        self.entries.iter().rev().find(|e| e.key == key)
    }

    /// Sqitch's truthy read: unset, empty and `0` all count as unset (Perl's `||`).
    fn truthy(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty() && *v != "0")
    }

    /// Resolves the settings Sqitch would use for its default target.
    pub fn settings(&self) -> Result<SqitchSettings> {
        // The default target: `core.target`, else `engine.<engine>.target`, else
        // `db:<engine>:`. A target without `:` is a name whose URI is `target.<name>.uri`.
        let core_engine = self
            .truthy("core.engine")
            .map(|e| e.trim_end_matches(char::is_whitespace).to_owned());
        let core_target = self.truthy("core.target").map(str::to_owned);
        let target = core_target
            .clone()
            .or_else(|| {
                core_engine.as_ref().and_then(|e| {
                    self.truthy(&format!("engine.{e}.target"))
                        .map(str::to_owned)
                })
            })
            .or_else(|| core_engine.as_ref().map(|e| format!("db:{e}:")));
        let target_uri = match &target {
            Some(t) if !t.contains(':') => {
                self.truthy(&format!("target.{t}.uri")).map(str::to_owned)
            }
            other => other.clone(),
        };
        // With `core.target`, Sqitch takes the engine from the target's URI.
        let engine = match core_target {
            Some(_) => target_uri.as_deref().and_then(uri_engine),
            None => core_engine,
        };

        // The key each setting is read from: the target's, else the engine's, else core's.
        let lines = std::cell::RefCell::new(BTreeMap::new());
        let fetch = |name: &str| -> Option<String> {
            let keys = [
                target.as_ref().map(|t| format!("target.{t}.{name}")),
                engine.as_ref().map(|e| format!("engine.{e}.{name}")),
                Some(format!("core.{name}")),
            ];
            let key = keys
                .into_iter()
                .flatten()
                .find(|key| self.truthy(key).is_some())?;
            if let Some(line) = self.line_of(&key) {
                lines.borrow_mut().insert(name.to_owned(), line);
            }
            self.truthy(&key).map(str::to_owned)
        };
        let path = |name: &str| fetch(name).map(PathBuf::from);

        let mut variables = self.section("core.variables");
        variables.extend(self.section("deploy.variables"));
        if let Some(e) = &engine {
            variables.extend(self.section(&format!("engine.{e}.variables")));
        }
        if let Some(t) = &target {
            variables.extend(self.section(&format!("target.{t}.variables")));
        }

        Ok(SqitchSettings {
            plan_file: path("plan_file"),
            top_dir: path("top_dir"),
            deploy_dir: path("deploy_dir"),
            revert_dir: path("revert_dir"),
            verify_dir: path("verify_dir"),
            reworked_dir: path("reworked_dir"),
            reworked_deploy_dir: path("reworked_deploy_dir"),
            reworked_revert_dir: path("reworked_revert_dir"),
            reworked_verify_dir: path("reworked_verify_dir"),
            extension: fetch("extension"),
            deploy_verify: self.get_bool("deploy.verify")?,
            deploy_mode: self.truthy("deploy.mode").map(str::to_owned),
            variables,
            engine,
            lines: lines.into_inner(),
        })
    }
}

/// The engine of a `db:<engine>:…` URI, with PostgreSQL's aliases folded to `pg`.
fn uri_engine(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("db:")?;
    let engine = &rest[..rest.find(':').unwrap_or(rest.len())];
    match engine {
        "" => None,
        "postgres" | "postgresql" | "pgsql" => Some("pg".into()),
        other => Some(other.to_owned()),
    }
}

/// Git's key case rules: the section and the name are case-insensitive, a subsection is not.
fn normalise_key(key: &str) -> String {
    match (key.find('.'), key.rfind('.')) {
        (Some(first), Some(last)) if first != last => {
            format!(
                "{}{}{}",
                key[..first].to_lowercase(),
                &key[first..last],
                key[last..].to_lowercase()
            )
        }
        _ => key.to_lowercase(),
    }
}

/// `section` or `section.sub` with the section lower-cased.
fn normalise_section(section: &str) -> String {
    match section.split_once('.') {
        Some((s, sub)) => format!("{}.{sub}", s.to_lowercase()),
        None => section.to_lowercase(),
    }
}

/// 1-based line of byte offset `at`.
fn line_at(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// `Config::GitLike::parse_content`, in non-strict mode (as Sqitch uses it).
struct Reader<'t> {
    text: &'t str,
    pos: usize,
}

type ReadError = (usize, String);

impl Reader<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    /// End of the current line (the `\n` or the end of the text), as an absolute offset.
    fn line_end(&self) -> usize {
        self.rest()
            .find('\n')
            .map_or(self.text.len(), |i| self.pos + i)
    }

    fn error(&self, at: usize, message: impl Into<String>) -> ReadError {
        (line_at(self.text, at), message.into())
    }

    fn entries(mut self) -> Result<Vec<Entry>, ReadError> {
        let mut entries = Vec::new();
        let mut section: Option<String> = None;
        loop {
            let skipped = self.rest().len() - self.rest().trim_start().len();
            self.pos += skipped;
            let start = self.pos;
            let rest = self.rest();
            if rest.is_empty() {
                return Ok(entries);
            }
            if rest.starts_with(['#', ';']) {
                self.pos = self.line_end();
            } else if rest.starts_with('[') {
                section = Some(self.section_header()?);
            } else {
                let current = section.clone().ok_or_else(|| {
                    self.error(start, "a setting must come after a [section] header")
                })?;
                let (name, value) = self.setting()?;
                entries.push(Entry {
                    key: format!("{current}.{}", name.to_lowercase()),
                    name,
                    value,
                    line: line_at(self.text, start),
                });
            }
        }
    }

    /// `[name]`, `[name "sub"]` or `[name.sub]`.
    fn section_header(&mut self) -> Result<String, ReadError> {
        let start = self.pos;
        let line = &self.text[start..self.line_end()];
        let bad = |r: &Self| r.error(start, format!("invalid section header {line:?}"));
        let inner = &line[1..];
        let name_len = inner
            .find(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | '"'))
            .unwrap_or(inner.len());
        if name_len == 0 {
            return Err(bad(self));
        }
        let name = inner[..name_len].to_lowercase();
        let after = &inner[name_len..];
        if let Some(close) = after.strip_prefix(']') {
            self.pos = start + line.len() - close.len();
            return Ok(name);
        }
        // `[\t ]*"([^\n]*?)"\]`: the shortest subsection followed by `"]`.
        let quoted = after.trim_start_matches([' ', '\t']);
        let Some(body) = quoted.strip_prefix('"') else {
            return Err(bad(self));
        };
        let Some(end) = body.find("\"]") else {
            return Err(bad(self));
        };
        let raw = &body[..end];
        let unescaped_check = raw.replace("\\\\", "").replace("\\\"", "");
        if unescaped_check.contains(['\\', '"']) {
            return Err(self.error(
                start,
                format!("invalid subsection in {line:?}: escape \\ and \" with a backslash"),
            ));
        }
        let subsection = raw.replace("\\\\", "\\").replace("\\\"", "\"");
        self.pos = start + line.len() - (body.len() - end - 2);
        Ok(format!("{name}.{subsection}"))
    }

    /// `name`, `name # comment` or `name = value`.
    fn setting(&mut self) -> Result<(String, Option<String>), ReadError> {
        let start = self.pos;
        let line = &self.text[start..self.line_end()];
        let bad = |r: &Self| r.error(start, format!("invalid line {line:?}"));
        if line.starts_with(['[', '=']) {
            return Err(bad(self));
        }
        // A key alone: the name runs up to blanks, then an optional comment, then the end.
        let before_eq = &line[..line.find('=').unwrap_or(line.len())];
        let comment = before_eq.find(['#', ';']);
        if comment.is_some() || !line.contains('=') {
            let name =
                before_eq[..comment.unwrap_or(before_eq.len())].trim_end_matches([' ', '\t']);
            if !name.is_empty() {
                self.pos = self.line_end();
                return Ok((name.to_owned(), None));
            }
            return Err(bad(self));
        }
        let name = before_eq.trim_end_matches([' ', '\t']);
        if name.is_empty() {
            return Err(bad(self));
        }
        self.pos = start + before_eq.len() + 1;
        self.pos += self.rest().len() - self.rest().trim_start_matches([' ', '\t']).len();
        let value = self
            .value()
            .map_err(|at| self.error(at, format!("invalid value in {line:?}")))?;
        Ok((name.to_owned(), Some(value)))
    }

    /// The value loop of `parse_content`. Errors carry the offset of the bad input.
    fn value(&mut self) -> Result<String, usize> {
        let mut value = String::new();
        loop {
            let rest = self.rest();
            // A comment, or the end of the line.
            let blanks = rest.len() - rest.trim_start_matches([' ', '\t']).len();
            if rest.is_empty() || rest.starts_with('\n') || rest[blanks..].starts_with(['#', ';']) {
                if !rest.is_empty() && !rest.starts_with('\n') {
                    self.pos = self.line_end();
                }
                return Ok(value);
            }
            if blanks > 0 {
                value.push(' ');
                self.pos += blanks;
            } else if let Some(after) = rest.strip_prefix("\\\n") {
                self.pos = self.text.len() - after.len();
            } else if let Some(after) = rest.strip_prefix('\\') {
                let (ch, len) = match after.chars().next() {
                    Some('\\') => ('\\', 1),
                    Some('"') => ('"', 1),
                    Some('\'') => ('\'', 1),
                    Some('n') => ('\n', 1),
                    Some('t') => ('\t', 1),
                    Some('b') => ('\u{8}', 1),
                    _ => return Err(self.pos),
                };
                value.push(ch);
                self.pos += 1 + len;
            } else if let Some(body) = rest.strip_prefix('"') {
                let end = quoted_end(body).ok_or(self.pos)?;
                // NB: the same substitutions, in the same order, as Config::GitLike.
                let inner = body[..end]
                    .replace("\\\n", "")
                    .replace("\\n", "\n")
                    .replace("\\t", "\t")
                    .replace("\\b", "\u{8}")
                    .replace("\\\\", "\\");
                value.push_str(&inner);
                self.pos += 1 + end + 1;
            } else {
                let run = rest
                    .find(['\t', ' ', '\\', '\n', '"'])
                    .unwrap_or(rest.len());
                value.push_str(&rest[..run]);
                self.pos += run;
            }
        }
    }
}

/// End of a quoted value's body (`[^"\\]*(?:(?:\\\n|\\[tbn"\\])[^"\\]*)*"`), before the `"`.
fn quoted_end(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some(i),
            b'\\' => match bytes.get(i + 1) {
                Some(b'\n' | b't' | b'b' | b'n' | b'"' | b'\\') => i += 2,
                _ => return None,
            },
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests;
