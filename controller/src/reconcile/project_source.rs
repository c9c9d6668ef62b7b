//! Project files from a ConfigMap: decode the layout documented on
//! [`ConfigMapSource`](crate::api::database_project::ConfigMapSource), name the revision by
//! content, and write the files into a content-addressed directory that
//! [`Project::load`](crate::project::Project::load) reads.
//!
//! Pure apart from the final write. Git sources belong to `crate::source` (#6).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::ConfigMap;

/// The key holding a tar archive of the project.
pub const ARCHIVE_KEY: &str = "project.tar";
/// How flat keys spell `/`.
pub const SEPARATOR: &str = "__";

/// Project files: relative path → content.
pub type Files = BTreeMap<String, Vec<u8>>;

/// Decodes a ConfigMap's project files.
pub fn files_from_configmap(cm: &ConfigMap) -> Result<Files, String> {
    let archive = cm
        .binary_data
        .as_ref()
        .and_then(|b| b.get(ARCHIVE_KEY))
        .map(|b| b.0.clone())
        .or_else(|| {
            cm.data
                .as_ref()
                .and_then(|d| d.get(ARCHIVE_KEY))
                .map(|s| s.as_bytes().to_vec())
        });
    if let Some(bytes) = archive {
        return untar(&bytes);
    }
    let mut files = Files::new();
    for (key, value) in cm.data.iter().flatten() {
        files.insert(
            checked_path(&key.replace(SEPARATOR, "/"))?,
            value.as_bytes().to_vec(),
        );
    }
    for (key, value) in cm.binary_data.iter().flatten() {
        files.insert(checked_path(&key.replace(SEPARATOR, "/"))?, value.0.clone());
    }
    if files.is_empty() {
        return Err("the ConfigMap holds no project files".into());
    }
    Ok(files)
}

/// The content digest of a set of files (sha1 over sorted paths and contents).
pub fn digest(files: &Files) -> String {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    for (path, content) in files {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update((content.len() as u64).to_be_bytes());
        hasher.update(content);
    }
    hex::encode(hasher.finalize())
}

/// The revision name of a ConfigMap's content: `cm:<name>@sha1:<digest>`.
pub fn revision(configmap: &str, digest: &str) -> String {
    format!("cm:{configmap}@sha1:{digest}")
}

/// Writes the files under `root/<digest>` unless already there, and returns that directory.
/// Written into a temporary sibling and renamed, so a half-written tree is never read.
pub fn materialize(root: &Path, digest: &str, files: &Files) -> std::io::Result<PathBuf> {
    let dir = root.join(digest);
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(root)?;
    // NB: unique per call: concurrent reconciles of one process write the same digest, and
    // a shared temporary name let one rename the other's half-written tree into place.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = root.join(format!(".{digest}.{}.{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for (path, content) in files {
        let target = tmp.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, content)?;
    }
    std::fs::create_dir_all(&tmp)?;
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another reconcile wrote the same content first.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(e),
    }
}

/// A relative path with no `..`, or an error naming it.
fn checked_path(path: &str) -> Result<String, String> {
    let trimmed = path.trim_start_matches("./");
    let p = Path::new(trimmed);
    if trimmed.is_empty()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("unsafe path in project files: {path:?}"));
    }
    Ok(trimmed.to_string())
}

/// Reads an uncompressed tar archive (ustar, GNU long names, pax `path`). Directories,
/// links and devices are skipped; only regular files are returned.
pub fn untar(bytes: &[u8]) -> Result<Files, String> {
    let mut files = Files::new();
    let mut offset = 0;
    let mut long_name: Option<String> = None;
    while offset + 512 <= bytes.len() {
        let header = &bytes[offset..offset + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = octal(&header[124..136])
            .ok_or_else(|| format!("{ARCHIVE_KEY}: bad size field at byte {offset}"))?;
        let kind = header[156];
        let data_start = offset + 512;
        let data_end = data_start + size;
        if data_end > bytes.len() {
            return Err(format!("{ARCHIVE_KEY}: truncated archive"));
        }
        let data = &bytes[data_start..data_end];
        match kind {
            b'L' => long_name = Some(cstr(data)),
            b'x' => long_name = pax_path(data).or(long_name),
            b'0' | 0 => {
                let name = match long_name.take() {
                    Some(n) => n,
                    None => {
                        let name = cstr(&header[0..100]);
                        let prefix = if &header[257..262] == b"ustar" {
                            cstr(&header[345..500])
                        } else {
                            String::new()
                        };
                        if prefix.is_empty() {
                            name
                        } else {
                            format!("{prefix}/{name}")
                        }
                    }
                };
                files.insert(checked_path(&name)?, data.to_vec());
            }
            _ => long_name = None,
        }
        offset = data_start + size.div_ceil(512) * 512;
    }
    if files.is_empty() {
        return Err(format!("{ARCHIVE_KEY}: the archive holds no files"));
    }
    Ok(files)
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn octal(field: &[u8]) -> Option<usize> {
    let text = cstr(field);
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    usize::from_str_radix(text, 8).ok()
}

fn pax_path(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|line| {
        let (_, record) = line.split_once(' ')?;
        record.strip_prefix("path=").map(str::to_string)
    })
}

/// A tar archive holding `files`, for tests.
#[cfg(test)]
pub fn tar(files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, body) in files {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..107].copy_from_slice(b"0000644");
        header[124..135].copy_from_slice(format!("{:011o}", body.len()).as_bytes());
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        out.extend_from_slice(&header);
        out.extend_from_slice(body.as_bytes());
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn cm(data: &[(&str, &str)], binary: &[(&str, Vec<u8>)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            binary_data: Some(
                binary
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.clone())))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn flat_keys_decode_double_underscore_as_directories() {
        let files = files_from_configmap(&cm(
            &[
                ("sqitch.plan", "%project=x\n"),
                ("deploy__users.sql", "select 1;"),
            ],
            &[],
        ))
        .expect("decodes");
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["deploy/users.sql", "sqitch.plan"]
        );
    }

    #[test]
    fn archive_key_wins_and_unpacks_nested_paths() {
        let archive = tar(&[
            ("./sqitch.plan", "%project=x\n"),
            ("./deploy/users.sql", "select 1;"),
        ]);
        let files = files_from_configmap(&cm(&[("ignored", "x")], &[(ARCHIVE_KEY, archive)]))
            .expect("decodes");
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["deploy/users.sql", "sqitch.plan"]
        );
        assert_eq!(files["deploy/users.sql"], b"select 1;");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let archive = tar(&[("../etc/passwd", "x")]);
        assert!(
            untar(&archive)
                .expect_err("refused")
                .contains("unsafe path")
        );
        assert!(files_from_configmap(&cm(&[("..__x", "y")], &[])).is_err());
    }

    #[test]
    fn digest_changes_with_content_and_names() {
        let mut a = Files::new();
        a.insert("a".into(), b"1".to_vec());
        let mut b = a.clone();
        assert_eq!(digest(&a), digest(&b));
        b.insert("a".into(), b"2".to_vec());
        assert_ne!(digest(&a), digest(&b));
        assert!(revision("shop", &digest(&a)).starts_with("cm:shop@sha1:"));
    }

    #[test]
    fn materialize_is_safe_when_racing_itself() {
        // Regression (issue #4): two reconciles unpacking one revision at once.
        let root = tempfile::tempdir().expect("tempdir");
        let mut files = Files::new();
        for i in 0..20 {
            files.insert(format!("deploy/c{i}.sql"), vec![b'x'; 4096]);
        }
        files.insert("sqitch.conf".into(), b"[core]".to_vec());
        for round in 0..10 {
            let digest = format!("race{round}");
            let dirs: Vec<Option<PathBuf>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| materialize(root.path(), &digest, &files).ok()))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().ok().flatten())
                    .collect()
            });
            for dir in dirs {
                let dir = dir.expect("every racer gets the directory");
                assert!(
                    dir.join("sqitch.conf").is_file(),
                    "round {round}: sqitch.conf missing"
                );
                assert_eq!(
                    std::fs::read_dir(dir.join("deploy"))
                        .map(|d| d.count())
                        .unwrap_or(0),
                    20,
                    "round {round}"
                );
            }
        }
    }

    #[test]
    fn materialize_writes_once_per_digest() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut files = Files::new();
        files.insert("deploy/a.sql".into(), b"select 1;".to_vec());
        let dir = materialize(root.path(), "abc", &files).expect("writes");
        assert_eq!(
            std::fs::read(dir.join("deploy/a.sql")).expect("reads"),
            b"select 1;"
        );
        assert_eq!(materialize(root.path(), "abc", &files).expect("again"), dir);
    }
}
