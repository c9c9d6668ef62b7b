//! Project files held in a ConfigMap, handed over as plain bytes (this module never sees a
//! Kubernetes type): an uncompressed tar under the key `project.tar`, or flat keys that
//! spell `/` as `__`. The files go through the same checks as a git tree (paths, links,
//! sizes, counts, encodings) and are published the same way, as an [`Artifact`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::tree::{self, Limits, Listing};
use super::{Artifact, Error, Result};

/// The key holding a tar archive of the project.
pub const ARCHIVE_KEY: &str = "project.tar";
/// How flat keys spell `/`.
pub const SEPARATOR: &str = "__";

/// A ConfigMap's keys and values, `data` and `binaryData` together.
pub type Entries = BTreeMap<String, Vec<u8>>;

/// Checked project trees made from ConfigMaps, under `<root>/artifacts/` beside git's.
#[derive(Clone, Debug)]
pub struct ConfigMapCache {
    root: PathBuf,
    limits: Limits,
}

impl ConfigMapCache {
    /// A cache under `root`, refusing what exceeds `limits`.
    pub fn new(root: &Path, limits: Limits) -> ConfigMapCache {
        ConfigMapCache {
            root: root.to_path_buf(),
            limits,
        }
    }

    /// The project in ConfigMap `name` (its `entries`), under `path` inside it. The
    /// revision is `cm:<name>@sha1:<digest of the files>`; the tree is written once per
    /// revision and path.
    pub fn fetch(&self, name: &str, path: &str, entries: &Entries) -> Result<Artifact> {
        let path = path.trim_matches('/');
        let (listing, contents) = list(name, path, entries, self.limits)?;
        let files = listing.resolve().map_err(|refusal| Error::Refused {
            revision: format!("ConfigMap {name}"),
            refusal,
        })?;
        if files.is_empty() {
            return Err(match path {
                "" => Error::InvalidSpec(format!("ConfigMap {name} holds no project files")),
                _ => Error::PathNotFound {
                    path: path.to_string(),
                    revision: format!("ConfigMap {name}"),
                },
            });
        }
        check_layout(name, path, entries, &files)?;
        let sha1 = files_sha1(files.iter().map(|(p, i)| (p.as_str(), &contents[*i][..])));
        let revision = revision(name, &sha1);
        let key = match path {
            "" => format!("cm-{sha1}"),
            _ => format!("cm-{sha1}-{}", &sha1_hex(path.as_bytes())[..12]),
        };
        let (dir, digest) = tree::publish(&self.root.join("artifacts"), &key, |dir| {
            tree::write_files(dir, &files, |i| Ok(contents[*i].clone()))
                .map_err(|e| e.into_error(&revision))
        })?;
        Ok(Artifact {
            revision,
            digest,
            dir,
        })
    }
}

/// Refuses flat keys that hold no project file (`sqitch.conf`, `switchyard.yaml` or
/// `sqitch.plan` under `path`), naming the keys the ConfigMap holds: most likely the
/// archive key is missing or misspelt.
fn check_layout(
    name: &str,
    path: &str,
    entries: &Entries,
    files: &[(String, usize)],
) -> Result<()> {
    let project_file = ["sqitch.conf", "switchyard.yaml", "sqitch.plan"];
    if entries.contains_key(ARCHIVE_KEY)
        || files
            .iter()
            .any(|(f, _)| project_file.contains(&f.as_str()))
    {
        return Ok(());
    }
    let found: Vec<&str> = entries.keys().map(String::as_str).take(10).collect();
    let under = if path.is_empty() {
        String::new()
    } else {
        format!(" under {path}")
    };
    Err(Error::InvalidSpec(format!(
        "ConfigMap {name} holds neither {ARCHIVE_KEY} nor a project{under} in flat keys (sqitch.conf, switchyard.yaml or sqitch.plan, with / written as {SEPARATOR}); its keys: {}",
        found.join(", ")
    )))
}

/// The revision name of a ConfigMap's content: `cm:<name>@sha1:<digest>`.
pub fn revision(configmap: &str, sha1: &str) -> String {
    format!("cm:{configmap}@sha1:{sha1}")
}

/// Lists the files of `entries` under `path` through the tree checks: the archive when
/// there is one, else every key as a path.
fn list(
    name: &str,
    path: &str,
    entries: &Entries,
    limits: Limits,
) -> Result<(Listing<usize>, Vec<Vec<u8>>)> {
    // NB: refusals name the ConfigMap; its revision is known only once the files are read.
    let revision = format!("ConfigMap {name}");
    if let Some(archive) = entries.get(ARCHIVE_KEY) {
        let broken = |e: std::io::Error| {
            Error::InvalidSpec(format!(
                "ConfigMap {name}: {ARCHIVE_KEY} is not a tar archive: {e}"
            ))
        };
        return tree::list_tar(&archive[..], path, limits, &revision, broken);
    }
    let refused = |refusal| Error::Refused {
        revision: revision.clone(),
        refusal,
    };
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let mut listing = Listing::new(limits);
    let mut contents = Vec::new();
    let mut total: u64 = 0;
    for (key, value) in entries {
        let full = Listing::<usize>::path(&key.replace(SEPARATOR, "/")).map_err(refused)?;
        total = total.saturating_add(value.len() as u64);
        if total > limits.max_total_size {
            return Err(refused(super::Refusal::TotalTooLarge {
                path: full,
                limit: limits.max_total_size,
            }));
        }
        let Some(relative) = full.strip_prefix(&prefix) else {
            continue;
        };
        listing
            .file(relative.to_string(), value.len() as u64, contents.len())
            .map_err(refused)?;
        contents.push(value.clone());
    }
    Ok((listing, contents))
}

/// sha1 over the files in path order: each path, a NUL, its length and its content.
fn files_sha1<'a>(files: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    use sha1::Digest;
    let mut sorted: Vec<(&str, &[u8])> = files.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut hasher = sha1::Sha1::new();
    for (path, content) in sorted {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update((content.len() as u64).to_be_bytes());
        hasher.update(content);
    }
    hex::encode(hasher.finalize())
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Refusal;

    fn entries(pairs: &[(&str, &[u8])]) -> Entries {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    fn tar(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, body) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // NB: the raw name, so tests can write names `append_data` would refuse.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, body.as_bytes()).expect("append");
        }
        builder.into_inner().expect("finish")
    }

    fn cache(limits: Limits) -> (tempfile::TempDir, ConfigMapCache) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ConfigMapCache::new(dir.path(), limits);
        (dir, cache)
    }

    fn names(artifact: &Artifact) -> Vec<String> {
        let mut out = Vec::new();
        let mut dirs = vec![artifact.dir.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).expect("read").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(rel) = path.strip_prefix(&artifact.dir) {
                    out.push(rel.display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn flat_keys_decode_double_underscore_as_directories() {
        let (_d, cache) = cache(Limits::default());
        let got = cache
            .fetch(
                "shop",
                "",
                &entries(&[
                    ("sqitch.plan", b"%project=x\n"),
                    ("deploy__users.sql", b"select 1;"),
                ]),
            )
            .expect("fetched");
        assert_eq!(names(&got), ["deploy/users.sql", "sqitch.plan"]);
        assert!(
            got.revision.starts_with("cm:shop@sha1:"),
            "{}",
            got.revision
        );
        assert!(got.digest.starts_with("sha256:"), "{}", got.digest);
    }

    #[test]
    fn archive_key_wins_and_unpacks_nested_paths_under_path() {
        let (_d, cache) = cache(Limits::default());
        let archive = tar(&[
            ("./db/sqitch.plan", "%project=x\n"),
            ("./db/deploy/users.sql", "select 1;"),
            ("./README.md", "hi"),
        ]);
        let got = cache
            .fetch(
                "shop",
                "db",
                &entries(&[("ignored", b"x"), (ARCHIVE_KEY, &archive)]),
            )
            .expect("fetched");
        assert_eq!(names(&got), ["deploy/users.sql", "sqitch.plan"]);
        assert_eq!(
            std::fs::read(got.dir.join("deploy/users.sql")).expect("read"),
            b"select 1;"
        );
    }

    #[test]
    fn revision_follows_content_and_names_and_publishes_once() {
        let (_d, cache) = cache(Limits::default());
        let a = entries(&[("sqitch.plan", b"1")]);
        let first = cache.fetch("shop", "", &a).expect("a");
        let again = cache.fetch("shop", "", &a).expect("a again");
        assert_eq!(first, again);
        let b = entries(&[("sqitch.plan", b"2")]);
        assert_ne!(
            cache.fetch("shop", "", &b).expect("b").revision,
            first.revision
        );
        let renamed = entries(&[("sqitch.plan", b"1"), ("extra.sql", b"")]);
        assert_ne!(
            cache.fetch("shop", "", &renamed).expect("renamed").revision,
            first.revision
        );
    }

    /// A ConfigMap is refused for what a git tree is refused for, with the same reasons
    /// (issue #13: it used to report InvalidProject, and skipped the size limits).
    #[test]
    fn unsafe_paths_and_sizes_are_refused_with_the_reasons_git_gets() {
        let limits = Limits {
            max_file_size: 8,
            max_total_size: 20,
            max_files: 3,
        };
        let (_d, cache) = cache(limits);
        let cases: [(&str, Entries, &str); 5] = [
            ("flat ..", entries(&[("..__x", b"y")]), "UnsafePath"),
            (
                "archive ..",
                entries(&[(ARCHIVE_KEY, &tar(&[("../etc/passwd", "x")]))]),
                "UnsafePath",
            ),
            (
                "flat .git",
                entries(&[(".git__config", b"y")]),
                "UnsafePath",
            ),
            (
                "one file over the limit",
                entries(&[("big.sql", b"0123456789")]),
                "SizeLimitExceeded",
            ),
            (
                "too many files",
                entries(&[("a", b"1"), ("b", b"1"), ("c", b"1"), ("d", b"1")]),
                "SizeLimitExceeded",
            ),
        ];
        for (name, entries, want) in cases {
            let error = cache.fetch("shop", "", &entries).expect_err(name);
            assert_eq!(error.reason(), want, "{name}: {error}");
            assert!(error.is_terminal(), "{name}");
        }
        let error = cache
            .fetch(
                "shop",
                "",
                &entries(&[("sqitch.plan", b"x"), ("bad.sql", b"\xff\xfe")]),
            )
            .expect_err("not utf-8");
        assert!(
            matches!(
                error,
                Error::Refused {
                    refusal: Refusal::NotUtf8 { .. },
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_configmap_in_neither_layout_names_its_keys() {
        let (_d, cache) = cache(Limits::default());
        let error = cache
            .fetch("no-tar", "", &entries(&[("readme", b"hello")]))
            .expect_err("neither layout");
        let text = error.to_string();
        assert!(
            text.contains("no-tar") && text.contains("project.tar") && text.contains("readme"),
            "{text}"
        );
        assert!(error.is_terminal());
    }

    #[test]
    fn nothing_to_read_is_a_clear_error() {
        let (_d, cache) = cache(Limits::default());
        let error = cache.fetch("shop", "", &Entries::new()).expect_err("empty");
        assert!(
            error.to_string().contains("holds no project files"),
            "{error}"
        );
        let error = cache
            .fetch("shop", "db", &entries(&[("sqitch.plan", b"x")]))
            .expect_err("no db/");
        assert_eq!(error.reason(), "PathNotFound", "{error}");
        let error = cache
            .fetch("shop", "", &entries(&[(ARCHIVE_KEY, b"not a tar")]))
            .expect_err("not a tar");
        assert!(error.to_string().contains("not a tar archive"), "{error}");
    }

    #[test]
    fn concurrent_fetches_of_one_revision_all_see_the_whole_tree() {
        // Regression (issue #4): two reconciles unpacking one revision at once.
        let (_d, cache) = cache(Limits::default());
        let mut files: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("deploy__c{i}.sql"), vec![b'x'; 4096]))
            .collect();
        files.push(("sqitch.conf".into(), b"[core]".to_vec()));
        let entries: Entries = files.into_iter().collect();
        let dirs: Vec<Option<PathBuf>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| cache.fetch("shop", "", &entries).ok().map(|a| a.dir)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().ok().flatten())
                .collect()
        });
        for dir in dirs {
            let dir = dir.expect("every racer gets the tree");
            assert!(dir.join("sqitch.conf").is_file());
            assert_eq!(
                std::fs::read_dir(dir.join("deploy"))
                    .map(|d| d.count())
                    .unwrap_or(0),
                20
            );
        }
    }
}
