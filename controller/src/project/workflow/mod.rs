//! Development workflow files (after Liquibase's): `-ignore`, `-unignore`, `-cleanup`,
//! `-replace` and `-rollback` files beside a change's deploy script, read and checked by
//! name. What they do to a database is decided in `engine::changes::schedule`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::{Error, Result};

/// The kind of a workflow file: its suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// `-ignore`: abandon the change in place.
    Ignore,
    /// `-unignore`: take an ignore back.
    Unignore,
    /// `-cleanup`: undo the change once where it was deployed, then ignore it.
    Cleanup,
    /// `-replace`: a new deploy script for the change.
    Replace,
    /// `-rollback`: the change's revert script, beside its deploy script.
    Rollback,
}

impl FileKind {
    /// Every kind, in the order their checks report.
    pub const ALL: [FileKind; 5] = [
        FileKind::Ignore,
        FileKind::Unignore,
        FileKind::Cleanup,
        FileKind::Replace,
        FileKind::Rollback,
    ];

    /// The suffix without the dash, as it must be spelled.
    pub fn suffix(self) -> &'static str {
        match self {
            FileKind::Ignore => "ignore",
            FileKind::Unignore => "unignore",
            FileKind::Cleanup => "cleanup",
            FileKind::Replace => "replace",
            FileKind::Rollback => "rollback",
        }
    }

    /// The kind whose suffix is `word` spelled any case, and whether the case is exact.
    fn parse(word: &str) -> Option<(FileKind, bool)> {
        FileKind::ALL.into_iter().find_map(|kind| {
            if word == kind.suffix() {
                Some((kind, true))
            } else if word.eq_ignore_ascii_case(kind.suffix()) {
                Some((kind, false))
            } else {
                None
            }
        })
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// One workflow file found beside a deploy script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowFile {
    /// Its kind.
    pub kind: FileKind,
    /// The file.
    pub path: PathBuf,
    /// The file relative to the project root, `/`-separated (`deploy/users-ignore.sql`): how
    /// messages and the registry name it.
    pub relative: String,
    /// SHA-1 hex of its bytes (what the registry records for a script that ran).
    pub sha1: String,
    /// For `-ignore` files, the content trimmed: the reason recorded with the ignore.
    pub reason: String,
}

/// What the files of one change, taken together, ask for. Built only from combinations
/// that make sense; the others are refused when the project is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive<'a> {
    /// `C-ignore.sql`: abandoned in place.
    Ignore {
        /// The ignore file; its content is the reason.
        ignore: &'a WorkflowFile,
    },
    /// `C-ignore.sql` and `C-unignore.sql`: the ignore is taken back.
    Unignore {
        /// The ignore file being taken back.
        ignore: &'a WorkflowFile,
        /// The unignore file.
        unignore: &'a WorkflowFile,
    },
    /// `C-cleanup.sql` (with or without `C-ignore.sql`): undone once where deployed, then
    /// ignored.
    Cleanup {
        /// The cleanup script.
        cleanup: &'a WorkflowFile,
        /// The ignore file, when there is one too (for its reason).
        ignore: Option<&'a WorkflowFile>,
    },
    /// `C-replace.sql` (with or without `C-cleanup.sql`): a new deploy script.
    Replace {
        /// The replacement deploy script.
        replace: &'a WorkflowFile,
        /// The script that undoes the deployed version first; the revert script when `None`.
        cleanup: Option<&'a WorkflowFile>,
    },
}

impl<'a> Directive<'a> {
    /// The file that names the directive in messages (the one whose removal would change it).
    pub fn file(&self) -> &'a WorkflowFile {
        match self {
            Directive::Ignore { ignore } => ignore,
            Directive::Unignore { unignore, .. } => unignore,
            Directive::Cleanup { cleanup, .. } => cleanup,
            Directive::Replace { replace, .. } => replace,
        }
    }

    /// The reason recorded with an ignore: the ignore file's content.
    pub fn reason(&self) -> &'a str {
        match self {
            Directive::Ignore { ignore } => &ignore.reason,
            Directive::Cleanup {
                ignore: Some(ignore),
                ..
            } => &ignore.reason,
            _ => "",
        }
    }
}

/// The workflow files of one change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeFiles {
    files: BTreeMap<FileKind, WorkflowFile>,
}

impl ChangeFiles {
    /// The file of `kind`, when the change has one.
    pub fn get(&self, kind: FileKind) -> Option<&WorkflowFile> {
        self.files.get(&kind)
    }

    /// What the files ask for; `None` when the change has only a `-rollback` file.
    pub fn directive(&self) -> Option<Directive<'_>> {
        let get = |kind| self.files.get(&kind);
        match (
            get(FileKind::Ignore),
            get(FileKind::Unignore),
            get(FileKind::Cleanup),
            get(FileKind::Replace),
        ) {
            (_, _, cleanup, Some(replace)) => Some(Directive::Replace { replace, cleanup }),
            (ignore, _, Some(cleanup), None) => Some(Directive::Cleanup { cleanup, ignore }),
            (Some(ignore), Some(unignore), None, None) => {
                Some(Directive::Unignore { ignore, unignore })
            }
            (Some(ignore), None, None, None) => Some(Directive::Ignore { ignore }),
            (None, _, None, None) => None,
        }
    }

    /// Refuses combinations that contradict each other, naming the file to remove or add.
    fn check(&self, change: &str) -> Result<()> {
        let get = |kind| self.files.get(&kind);
        let refuse = |file: &WorkflowFile, message: String| {
            Err(Error::File {
                path: file.path.clone(),
                message,
            })
        };
        if let (Some(unignore), None) = (get(FileKind::Unignore), get(FileKind::Ignore)) {
            return refuse(
                unignore,
                format!(
                    "unignore without an ignore: change \"{change}\" has no {} to take back",
                    sibling(&unignore.relative, FileKind::Unignore, FileKind::Ignore)
                ),
            );
        }
        if let (Some(replace), Some(ignore)) = (get(FileKind::Replace), get(FileKind::Ignore)) {
            return refuse(
                replace,
                format!(
                    "change \"{change}\" is both ignored ({}) and replaced; keep one of the two",
                    ignore.relative
                ),
            );
        }
        if let (Some(unignore), Some(cleanup)) = (get(FileKind::Unignore), get(FileKind::Cleanup)) {
            return refuse(
                unignore,
                format!(
                    "change \"{change}\" is cleaned up ({}), which ignores it; an unignore cannot take that back",
                    cleanup.relative
                ),
            );
        }
        Ok(())
    }
}

/// Every workflow file of a project, by change name. Files always belong to the current
/// (last) instance of a change: the one whose deploy script is `deploy/C.sql`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workflow {
    changes: BTreeMap<String, ChangeFiles>,
}

impl Workflow {
    /// The workflow files of change `name`.
    pub fn files(&self, name: &str) -> Option<&ChangeFiles> {
        self.changes.get(name)
    }

    /// What the files of change `name` ask for.
    pub fn directive(&self, name: &str) -> Option<Directive<'_>> {
        self.changes.get(name).and_then(ChangeFiles::directive)
    }

    /// The `-rollback` file of change `name`: its revert script, when kept there.
    pub fn rollback(&self, name: &str) -> Option<&WorkflowFile> {
        self.changes
            .get(name)
            .and_then(|f| f.get(FileKind::Rollback))
    }

    /// True when the project has no workflow files.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// What [`scan`] needs to know about the project.
pub(super) struct ScanInput<'a> {
    /// The project root, for relative names.
    pub root: &'a Path,
    /// The deploy directory.
    pub deploy_dir: &'a Path,
    /// Every regular file under the deploy directory, `/`-separated, relative to it, as the
    /// directory listing spells it.
    pub files: &'a BTreeSet<String>,
    /// The script extension without the dot (`sql`).
    pub extension: &'a str,
    /// Names of the plan's changes.
    pub changes: &'a BTreeSet<&'a str>,
    /// Script files (`C.sql`, `C@v1.sql`) of every instance of every change: these are
    /// change scripts, never workflow files, whatever their names end with.
    pub scripts: &'a BTreeSet<&'a str>,
    /// True when change `name` has a revert script in the revert directory.
    pub has_revert: &'a dyn Fn(&str) -> bool,
}

/// Finds and checks the workflow files among the deploy directory's files. Every error
/// names the offending file; nothing is read but the workflow files themselves.
pub(super) fn scan(input: &ScanInput<'_>) -> Result<Workflow> {
    let mut workflow = Workflow::default();
    for file in input.files {
        if input.scripts.contains(file.as_str()) {
            continue;
        }
        let Some(found) = classify(file, input)? else {
            continue;
        };
        let (change, kind) = found;
        let path = input.deploy_dir.join(file);
        let relative = relative(input.root, &path);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let reason = if kind == FileKind::Ignore {
            String::from_utf8_lossy(&bytes).trim().to_owned()
        } else {
            String::new()
        };
        if kind == FileKind::Rollback && (input.has_revert)(change) {
            return Err(Error::File {
                path,
                message: format!(
                    "change \"{change}\" has two revert scripts, this one and the one in the revert directory; keep one"
                ),
            });
        }
        let entry = WorkflowFile {
            kind,
            path,
            relative,
            sha1: hex::encode(Sha1::digest(&bytes)),
            reason,
        };
        workflow
            .changes
            .entry(change.to_owned())
            .or_default()
            .files
            .insert(kind, entry);
    }
    for (change, files) in &workflow.changes {
        files.check(change)?;
    }
    Ok(workflow)
}

/// Whether `file` is a workflow file, and for which change: `Ok(None)` for files that are
/// not (helpers a script includes, other extensions), an error naming the file for workflow
/// files that are wrong.
fn classify<'a>(file: &str, input: &ScanInput<'a>) -> Result<Option<(&'a str, FileKind)>> {
    let ext = input.extension;
    let (stem, ext_exact) = match file.len().checked_sub(ext.len() + 1) {
        Some(at) if file.is_char_boundary(at) && file[at..].starts_with('.') => {
            let written = &file[at + 1..];
            if written == ext {
                (&file[..at], true)
            } else if written.eq_ignore_ascii_case(ext) {
                (&file[..at], false)
            } else {
                return Ok(None);
            }
        }
        _ => return Ok(None),
    };
    // The suffix follows the last dash of the file name (not of a directory above it).
    let name_start = stem.rfind('/').map_or(0, |i| i + 1);
    let Some(dash) = stem[name_start..].rfind('-').map(|i| name_start + i) else {
        return Ok(None);
    };
    let (base, word) = (&stem[..dash], &stem[dash + 1..]);
    let Some((kind, suffix_exact)) = FileKind::parse(word) else {
        return Ok(None);
    };
    let path = input.deploy_dir.join(file);
    let invalid = |message: String| Error::File {
        path: path.clone(),
        message,
    };
    let dir = relative(input.root, input.deploy_dir);
    let expected = |change: &str| format!("{dir}/{change}-{kind}.{ext}");

    if let Some(&change) = input.changes.get(base) {
        if !suffix_exact || !ext_exact {
            return Err(invalid(format!(
                "workflow file names are case-sensitive: expected {} for change \"{change}\"",
                expected(change)
            )));
        }
        return Ok(Some((change, kind)));
    }
    // `C-rollback-replace.sql`: a suffix on a suffix.
    let base_name = &base[name_start.min(base.len())..];
    if let Some((_, inner_word)) = base_name.rsplit_once('-')
        && let Some((inner_kind, _)) = FileKind::parse(inner_word)
    {
        let change = &base[..base.len() - inner_word.len() - 1];
        return Err(invalid(format!(
            "a workflow file takes exactly one suffix, this one has two (-{inner_kind} and -{kind}); name it {dir}/{change}-{inner_kind}.{ext} or {}",
            expected(change)
        )));
    }
    // `C@v1-ignore.sql`: files go beside the current version's script only.
    if let Some((name, _tag)) = base.split_once('@')
        && let Some(&change) = input.changes.get(name)
    {
        return Err(invalid(format!(
            "workflow files apply to the current version of change \"{change}\": expected {}",
            expected(change)
        )));
    }
    if let Some(&change) = input
        .changes
        .iter()
        .find(|c| c.to_lowercase() == base.to_lowercase())
    {
        return Err(invalid(format!(
            "no change is named \"{base}\"; expected {} for change \"{change}\" (names are case-sensitive)",
            expected(change)
        )));
    }
    Err(invalid(format!(
        "{kind} file for change \"{base}\", which is not in the plan"
    )))
}

/// `deploy/C-unignore.sql` → `deploy/C-ignore.sql`.
fn sibling(relative: &str, from: FileKind, to: FileKind) -> String {
    let needle = format!("-{from}.");
    match relative.rfind(&needle) {
        Some(at) => format!(
            "{}-{to}.{}",
            &relative[..at],
            &relative[at + needle.len()..]
        ),
        None => relative.to_owned(),
    }
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

#[cfg(test)]
mod tests;
