//! The safety checks on what a source holds (paths, links, `.git`, sizes, counts,
//! encodings), applied to a listing before a byte is written, and publishing a checked tree
//! into the cache by atomic rename.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Error, Refusal, Result};

/// Limits on what a source may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest single file, in bytes. Default 10 MiB.
    pub max_file_size: u64,
    /// All files together, in bytes. Default 100 MiB.
    pub max_total_size: u64,
    /// Most files (symlinks count as files). Default 50,000.
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: 10 * 1024 * 1024,
            max_total_size: 100 * 1024 * 1024,
            max_files: 50_000,
        }
    }
}

/// How deep a chain of symlinks may go before it counts as a loop.
const MAX_LINK_HOPS: usize = 8;

/// Files whose contents must be UTF-8: scripts, plans, configuration.
fn is_text(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    matches!(
        ext.as_deref(),
        Some("sql" | "ddl" | "plan" | "conf" | "yaml" | "yml")
    )
}

enum Entry<B> {
    File { size: u64, blob: B },
    Link { target: String },
}

/// The entries under a project directory, checked as they are added.
pub struct Listing<B> {
    limits: Limits,
    entries: BTreeMap<String, Entry<B>>,
    total: u64,
}

impl<B: Clone> Listing<B> {
    /// An empty listing under `limits`.
    pub fn new(limits: Limits) -> Listing<B> {
        Listing {
            limits,
            entries: BTreeMap::new(),
            total: 0,
        }
    }

    /// Checks one name of a tree entry (a single path component) under `parent` (the
    /// path so far, `""` at the top). Returns the entry's full relative path.
    pub fn child(parent: &str, name: &[u8]) -> Result<String, Refusal> {
        let shown = String::from_utf8_lossy(name);
        let path = if parent.is_empty() {
            shown.to_string()
        } else {
            format!("{parent}/{shown}")
        };
        let name = match std::str::from_utf8(name) {
            Ok(n) => n,
            Err(_) => return Err(Refusal::PathEscapes { path }),
        };
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains(['/', '\\', '\0'])
            || name.chars().any(char::is_control)
        {
            return Err(Refusal::PathEscapes { path });
        }
        // NB: case-insensitive, as git itself refuses `.GIT` on checkout (CVE-2014-9390).
        if name.eq_ignore_ascii_case(".git") {
            return Err(Refusal::GitDir { path });
        }
        Ok(path)
    }

    /// Checks a relative path made of several components (a tar entry name).
    pub fn path(name: &str) -> Result<String, Refusal> {
        let trimmed = name.trim_start_matches("./").trim_end_matches('/');
        if name.starts_with('/') || trimmed.is_empty() {
            return Err(Refusal::PathEscapes { path: name.into() });
        }
        let mut path = String::new();
        for part in trimmed.split('/').filter(|p| !p.is_empty() && *p != ".") {
            path = Self::child(&path, part.as_bytes()).map_err(|r| match r {
                Refusal::PathEscapes { .. } => Refusal::PathEscapes { path: name.into() },
                other => other,
            })?;
        }
        Ok(path)
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn count(&self, path: &str) -> Result<(), Refusal> {
        if self.entries.len() >= self.limits.max_files {
            return Err(Refusal::TooManyFiles {
                path: path.into(),
                limit: self.limits.max_files,
            });
        }
        Ok(())
    }

    /// Adds a regular file of `size` bytes whose content `blob` names.
    pub fn file(&mut self, path: String, size: u64, blob: B) -> Result<(), Refusal> {
        self.count(&path)?;
        if size > self.limits.max_file_size {
            return Err(Refusal::FileTooLarge {
                path,
                size,
                limit: self.limits.max_file_size,
            });
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_size {
            return Err(Refusal::TotalTooLarge {
                path,
                limit: self.limits.max_total_size,
            });
        }
        self.entries.insert(path, Entry::File { size, blob });
        Ok(())
    }

    /// Adds a symlink pointing at `target` (as stored in the link).
    pub fn link(&mut self, path: String, target: String) -> Result<(), Refusal> {
        self.count(&path)?;
        if target.starts_with('/') {
            return Err(Refusal::Symlink {
                path,
                target,
                why: "points outside the project directory",
            });
        }
        self.entries.insert(path, Entry::Link { target });
        Ok(())
    }

    /// Resolves every symlink to the file it points at, inside the directory, and returns
    /// the files to write: (path, content). Links become copies of their target.
    pub fn resolve(self) -> Result<Vec<(String, B)>, Refusal> {
        let mut out = Vec::with_capacity(self.entries.len());
        let mut total = self.total;
        for (path, entry) in &self.entries {
            match entry {
                Entry::File { blob, .. } => out.push((path.clone(), blob.clone())),
                Entry::Link { target } => {
                    let (size, blob) = self.follow(path, target)?;
                    total = total.saturating_add(size);
                    if total > self.limits.max_total_size {
                        return Err(Refusal::TotalTooLarge {
                            path: path.clone(),
                            limit: self.limits.max_total_size,
                        });
                    }
                    out.push((path.clone(), blob));
                }
            }
        }
        Ok(out)
    }

    fn follow(&self, link: &str, target: &str) -> Result<(u64, B), Refusal> {
        let refuse = |why: &'static str| Refusal::Symlink {
            path: link.into(),
            target: target.into(),
            why,
        };
        let mut at = link.to_string();
        let mut target = target.to_string();
        for _ in 0..MAX_LINK_HOPS {
            if target.starts_with('/') {
                return Err(refuse("points outside the project directory"));
            }
            // Resolve against the link's own directory.
            let mut parts: Vec<&str> = at.split('/').collect();
            parts.pop();
            for part in target.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        if parts.pop().is_none() {
                            return Err(refuse("points outside the project directory"));
                        }
                    }
                    p => parts.push(p),
                }
            }
            let resolved = parts.join("/");
            match self.entries.get(&resolved) {
                Some(Entry::File { size, blob }) => return Ok((*size, blob.clone())),
                Some(Entry::Link { target: next }) => {
                    at = resolved;
                    target = next.clone();
                }
                None => {
                    let prefix = format!("{resolved}/");
                    let is_dir = resolved.is_empty()
                        || self
                            .entries
                            .range(prefix.clone()..)
                            .next()
                            .is_some_and(|(k, _)| k.starts_with(&prefix));
                    return Err(refuse(if is_dir {
                        "points at a directory (only links to files are supported)"
                    } else {
                        "points at nothing inside the project directory"
                    }));
                }
            }
        }
        Err(refuse("is part of a loop or a chain of more than 8 links"))
    }
}

/// Lists the entries of a tar stream under `path` through the checks; returns the listing
/// and the contents it indexes. Entries outside `path` are skipped, but their bytes still
/// count towards the total (a decompression bomb anywhere is refused). `broken` reports a
/// stream that is not a tar archive.
pub fn list_tar(
    reader: impl std::io::Read,
    path: &str,
    limits: Limits,
    revision: &str,
    broken: impl Fn(std::io::Error) -> Error,
) -> Result<(Listing<usize>, Vec<Vec<u8>>)> {
    use std::io::Read;
    let refused = |refusal| Error::Refused {
        revision: revision.into(),
        refusal,
    };
    let mut archive = tar::Archive::new(reader);
    let mut listing = Listing::new(limits);
    let mut contents = Vec::new();
    let mut unpacked: u64 = 0;
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    for entry in archive.entries().map_err(&broken)? {
        let mut entry = entry.map_err(&broken)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        let full = Listing::<usize>::path(&name).map_err(refused)?;
        let size = entry.header().size().map_err(&broken)?;
        unpacked = unpacked.saturating_add(size);
        if unpacked > limits.max_total_size {
            return Err(refused(Refusal::TotalTooLarge {
                path: full,
                limit: limits.max_total_size,
            }));
        }
        let Some(relative) = full.strip_prefix(&prefix).map(str::to_string) else {
            continue;
        };
        if kind.is_file() {
            // Checked before reading, so a huge entry is never held in memory.
            listing
                .file(relative, size, contents.len())
                .map_err(refused)?;
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(&broken)?;
            contents.push(data);
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            listing.link(relative, target).map_err(refused)?;
        } else {
            return Err(refused(Refusal::Symlink {
                path: relative,
                target: String::new(),
                why: "is a hard link or special file, which is not supported",
            }));
        }
    }
    Ok((listing, contents))
}

/// Writes `files` under `dir`, reading each content with `read`, checks text files are
/// UTF-8, and returns the tree's digest, `sha256:<hex>` over paths, sizes and contents in
/// path order.
pub fn write_files<B>(
    dir: &Path,
    files: &[(String, B)],
    mut read: impl FnMut(&B) -> std::io::Result<Vec<u8>>,
) -> Result<String, WriteError> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    std::fs::create_dir_all(dir).map_err(|e| WriteError::Io(dir.into(), e))?;
    for (path, blob) in files {
        let content = read(blob).map_err(|e| WriteError::Io(PathBuf::from(path), e))?;
        if is_text(path)
            && let Err(e) = std::str::from_utf8(&content)
        {
            return Err(WriteError::Refused(Refusal::NotUtf8 {
                path: path.clone(),
                offset: e.valid_up_to(),
            }));
        }
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update((content.len() as u64).to_be_bytes());
        hasher.update(&content);
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| WriteError::Io(parent.into(), e))?;
        }
        // NB: create_new, so an unexpected existing entry (never a link: none are written)
        // is an error rather than something followed.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| WriteError::Io(target.clone(), e))?;
        file.write_all(&content)
            .map_err(|e| WriteError::Io(target.clone(), e))?;
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Why [`write_files`] failed.
#[derive(Debug)]
pub enum WriteError {
    /// A file was refused (not UTF-8).
    Refused(Refusal),
    /// Reading a content or writing the cache failed.
    Io(PathBuf, std::io::Error),
}

impl WriteError {
    /// As a source error about `revision`.
    pub fn into_error(self, revision: &str) -> Error {
        match self {
            WriteError::Refused(refusal) => Error::Refused {
                revision: revision.into(),
                refusal,
            },
            WriteError::Io(path, source) => Error::Cache {
                path: path.display().to_string(),
                source,
            },
        }
    }
}

/// The artifact directory `<root>/<key>`, holding `tree/` and `digest`.
pub fn artifact_dir(root: &Path, key: &str) -> PathBuf {
    root.join(key)
}

/// Returns `(<root>/<key>/tree, digest)`, filling it first with `fill` (which writes the
/// tree into the directory it is given and returns its digest) unless it is already there.
/// `fill` runs in a fresh temporary directory that is renamed into place, so concurrent
/// callers of one key never see each other's partial trees.
pub fn publish(
    root: &Path,
    key: &str,
    fill: impl FnOnce(&Path) -> Result<String>,
) -> Result<(PathBuf, String)> {
    let dir = artifact_dir(root, key);
    if let Some(found) = existing(&dir) {
        return Ok(found);
    }
    let io = |path: &Path, source| Error::Cache {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(root).map_err(|e| io(root, e))?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = root.join(format!(".tmp-{key}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = fill(&tmp.join("tree")).and_then(|digest| {
        std::fs::write(tmp.join("digest"), &digest).map_err(|e| io(&tmp, e))?;
        Ok(digest)
    });
    let digest = match result {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok((dir.join("tree"), digest)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another writer got there first; theirs has the same content.
            existing(&dir).ok_or_else(|| io(&dir, e))
        }
    }
}

/// The published artifact at `dir`, if complete.
pub fn existing(dir: &Path) -> Option<(PathBuf, String)> {
    let digest = std::fs::read_to_string(dir.join("digest")).ok()?;
    let tree = dir.join("tree");
    tree.is_dir().then(|| (tree, digest.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing() -> Listing<u32> {
        Listing::new(Limits {
            max_file_size: 100,
            max_total_size: 250,
            max_files: 5,
        })
    }

    #[test]
    fn names_that_escape_or_hide_a_repository_are_refused() {
        struct Case {
            name: &'static [u8],
            /// The refusal, or None when the name is fine.
            want: Option<&'static str>,
        }
        let cases = [
            Case {
                name: b"users.sql",
                want: None,
            },
            Case {
                name: b"..",
                want: Some("escapes"),
            },
            Case {
                name: b".",
                want: Some("escapes"),
            },
            Case {
                name: b"a/b",
                want: Some("escapes"),
            },
            Case {
                name: b"",
                want: Some("escapes"),
            },
            Case {
                name: b"a\0b",
                want: Some("escapes"),
            },
            Case {
                name: b".git",
                want: Some(".git"),
            },
            Case {
                name: b".GiT",
                want: Some(".git"),
            },
            Case {
                name: b"\xff",
                want: Some("escapes"),
            },
        ];
        for case in cases {
            let got = Listing::<u32>::child("deploy", case.name);
            match case.want {
                None => assert_eq!(got.ok().as_deref(), Some("deploy/users.sql")),
                Some(want) => {
                    let err = got.expect_err("refused").to_string();
                    assert!(err.contains(want), "{:?}: {err}", case.name);
                }
            }
        }
        assert!(Listing::<u32>::path("../etc/passwd").is_err());
        assert!(Listing::<u32>::path("/etc/passwd").is_err());
        assert!(Listing::<u32>::path("a/../../b").is_err());
        assert_eq!(
            Listing::<u32>::path("./deploy/x.sql").ok().as_deref(),
            Some("deploy/x.sql")
        );
    }

    #[test]
    fn size_and_count_limits_name_the_file_that_crossed_them() {
        let mut l = listing();
        let err = l.file("big.sql".into(), 101, 0).expect_err("too big");
        assert_eq!(
            err,
            Refusal::FileTooLarge {
                path: "big.sql".into(),
                size: 101,
                limit: 100
            }
        );
        l.file("a".into(), 100, 1).expect("fits");
        l.file("b".into(), 100, 2).expect("fits");
        let err = l.file("c".into(), 100, 3).expect_err("total");
        assert_eq!(
            err,
            Refusal::TotalTooLarge {
                path: "c".into(),
                limit: 250
            }
        );
        let mut l = listing();
        for i in 0..5 {
            l.file(format!("f{i}"), 1, i).expect("fits");
        }
        assert_eq!(
            l.file("f5".into(), 1, 5).expect_err("count"),
            Refusal::TooManyFiles {
                path: "f5".into(),
                limit: 5
            }
        );
    }

    #[test]
    fn symlinks_inside_resolve_to_copies_and_the_rest_are_refused() {
        let mut l = listing();
        l.file("deploy/users.sql".into(), 10, 7).expect("file");
        l.link("deploy/alias.sql".into(), "users.sql".into())
            .expect("link");
        l.link("top.sql".into(), "deploy/alias.sql".into())
            .expect("chain");
        let files = l.resolve().expect("resolves");
        assert_eq!(
            files,
            [
                ("deploy/alias.sql".to_string(), 7),
                ("deploy/users.sql".to_string(), 7),
                ("top.sql".to_string(), 7)
            ]
        );

        let cases: [(&str, &str, &str); 5] = [
            ("x.sql", "../../etc/passwd", "outside"),
            ("deploy/x.sql", "/etc/passwd", "outside"),
            ("x.sql", "deploy", "directory"),
            ("x.sql", "missing.sql", "nothing"),
            ("x.sql", "x.sql", "loop"),
        ];
        for (path, target, want) in cases {
            let mut l = listing();
            l.file("deploy/users.sql".into(), 1, 0).expect("file");
            let err = l
                .link(path.into(), target.into())
                .and_then(|()| l.resolve().map(|_| ()))
                .expect_err("refused");
            assert!(err.to_string().contains(want), "{target}: {err}");
            assert_eq!(err.path(), Some(path));
        }
    }

    #[test]
    fn publish_writes_once_and_refuses_non_utf8_sql() {
        let root = tempfile::tempdir().expect("tempdir");
        let files = vec![("deploy/a.sql".to_string(), b"select 1;".to_vec())];
        let (dir, digest) = publish(root.path(), "k", |d| {
            write_files(d, &files, |b| Ok(b.clone())).map_err(|e| e.into_error("r"))
        })
        .expect("publishes");
        assert!(digest.starts_with("sha256:"));
        assert_eq!(
            std::fs::read(dir.join("deploy/a.sql")).expect("reads"),
            b"select 1;"
        );
        let (again, digest2) =
            publish(root.path(), "k", |_| panic!("not refilled")).expect("again");
        assert_eq!((again, digest2), (dir, digest));

        let bad = vec![("deploy/b.sql".to_string(), b"select '\xff';".to_vec())];
        let err = publish(root.path(), "bad", |d| {
            write_files(d, &bad, |b| Ok(b.clone())).map_err(|e| e.into_error("r"))
        })
        .expect_err("refused");
        assert_eq!(err.reason(), "InvalidEncoding");
        assert!(err.to_string().contains("deploy/b.sql"), "{err}");
        assert!(!root.path().join("bad").exists(), "nothing published");
        let leftovers = std::fs::read_dir(root.path()).expect("ls").count();
        assert_eq!(leftovers, 1, "temporary directories are removed");
    }
}
