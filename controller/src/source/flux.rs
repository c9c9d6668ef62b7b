//! Flux interop: download the artifact a Flux `GitRepository` announces, check its digest,
//! and publish its checked tree. Never sees a Kubernetes type: callers hand over the
//! announced URL, revision and digest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tree::{self, Limits, Listing};
use super::{Artifact, Error, Result};

/// What a Flux source's `status.artifact` announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    /// Where the tarball is served.
    pub url: String,
    /// Its revision, e.g. `main@sha1:<commit>`.
    pub revision: String,
    /// Its digest, `sha256:<hex>`.
    pub digest: String,
}

/// Downloads and unpacks Flux artifacts into the cache.
#[derive(Clone, Debug)]
pub struct FluxCache {
    root: PathBuf,
    limits: Limits,
}

impl FluxCache {
    /// A cache rooted at `root` (artifacts land in `<root>/artifacts/flux-…`).
    pub fn new(root: &Path, limits: Limits) -> FluxCache {
        FluxCache {
            root: root.to_path_buf(),
            limits,
        }
    }

    fn key(hex: &str, path: &str) -> String {
        if path.is_empty() {
            return format!("flux-{hex}");
        }
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(path.as_bytes()));
        format!("flux-{hex}-{}", &hash[..12])
    }

    /// The artifact when it is already in the cache.
    pub fn cached(&self, announced: &Announced, path: &str) -> Option<Artifact> {
        let hex = announced.digest.strip_prefix("sha256:")?;
        let dir = tree::artifact_dir(&self.root.join("artifacts"), &Self::key(hex, path));
        tree::existing(&dir).map(|(dir, digest)| Artifact {
            revision: announced.revision.clone(),
            digest,
            dir,
        })
    }

    /// The project tree of `announced` under `path`: from the cache, or downloaded,
    /// verified and unpacked.
    pub async fn fetch(
        &self,
        announced: &Announced,
        path: &str,
        timeout: Duration,
    ) -> Result<Artifact> {
        let path = path.trim_matches('/').to_string();
        let expected = announced.digest.to_ascii_lowercase();
        let Some(hex) = expected.strip_prefix("sha256:").map(str::to_string) else {
            return Err(Error::ArtifactNotReady(format!(
                "artifact {} has digest {:?}; only sha256 digests are supported",
                announced.revision, announced.digest
            )));
        };
        if !path.is_empty() {
            Listing::<usize>::path(&path).map_err(|refusal| Error::Refused {
                revision: announced.revision.clone(),
                refusal,
            })?;
        }
        if let Some(found) = self.cached(announced, &path) {
            return Ok(found);
        }
        let shown = super::url::redact(&announced.url);
        // NB: a tarball holds tar headers and may not compress; allow some slack over the
        // unpacked limit, and refuse early on a larger Content-Length.
        let cap = self.limits.max_total_size + 16 * 1024 * 1024;
        let bytes = tokio::time::timeout(timeout, download(&announced.url, cap))
            .await
            .map_err(|_| Error::Timeout {
                url: shown.clone(),
                seconds: timeout.as_secs(),
            })?
            .map_err(|message| Error::Fetch {
                url: shown.clone(),
                message,
            })?;
        let actual = {
            use sha2::Digest;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
        };
        if actual != expected {
            return Err(Error::DigestMismatch {
                revision: announced.revision.clone(),
                expected,
                actual,
            });
        }
        let limits = self.limits;
        let root = self.root.join("artifacts");
        let revision = announced.revision.clone();
        let key = Self::key(&hex, &path);
        let (dir, digest) = tokio::task::spawn_blocking(move || {
            let (listing, contents) = list_tarball(&bytes, &path, limits, &revision)?;
            if listing.is_empty() {
                return Err(Error::PathNotFound {
                    path: path.clone(),
                    revision: revision.clone(),
                });
            }
            let files = listing.resolve().map_err(|refusal| Error::Refused {
                revision: revision.clone(),
                refusal,
            })?;
            tree::publish(&root, &key, |dir| {
                tree::write_files(dir, &files, |i| Ok(contents[*i].clone()))
                    .map_err(|e| e.into_error(&revision))?;
                // The announced digest is the artifact's name; it was checked above.
                Ok(expected)
            })
        })
        .await
        .map_err(|e| Error::Fetch {
            url: shown,
            message: format!("unpacking failed: {e}"),
        })??;
        Ok(Artifact {
            revision: announced.revision.clone(),
            digest,
            dir,
        })
    }
}

async fn download(url: &str, cap: u64) -> Result<Vec<u8>, String> {
    super::init_tls();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .user_agent("switchyard")
        .build()
        .map_err(|e| e.to_string())?;
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| super::url::scrub(&e.to_string(), &[]))?;
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(format!("the artifact is larger than {cap} bytes"));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| super::url::scrub(&e.to_string(), &[]))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > cap {
            return Err(format!("the artifact is larger than {cap} bytes"));
        }
    }
    Ok(bytes)
}

/// Lists the entries of a gzipped tarball under `path` through the checks; returns the
/// listing and the contents it indexes (see [`tree::list_tar`]).
fn list_tarball(
    bytes: &[u8],
    path: &str,
    limits: Limits,
    revision: &str,
) -> Result<(Listing<usize>, Vec<Vec<u8>>)> {
    let broken = |e: std::io::Error| Error::Fetch {
        url: revision.into(),
        message: format!("the artifact is not a gzipped tarball: {e}"),
    };
    tree::list_tar(
        flate2::read::GzDecoder::new(bytes),
        path,
        limits,
        revision,
        broken,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(entries: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // NB: set the raw name, so tests can write names `append_data` would refuse.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).expect("append");
        }
        for (name, target) in links {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, name, target)
                .expect("link");
        }
        builder
            .into_inner()
            .and_then(|gz| gz.finish())
            .expect("finish")
    }

    #[test]
    fn tarball_entries_go_through_the_same_checks_as_git_trees() {
        let limits = Limits::default();
        let ok = tarball(
            &[("db/sqitch.plan", b"%project=x\n"), ("README.md", b"hi")],
            &[("db/alias.plan", "sqitch.plan")],
        );
        let (listing, contents) = list_tarball(&ok, "db", limits, "r").expect("lists");
        let files = listing.resolve().expect("resolves");
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["alias.plan", "sqitch.plan"]);
        assert_eq!(contents[files[0].1], b"%project=x\n");

        let escape = tarball(&[("../evil.sql", b"x")], &[]);
        let err = list_tarball(&escape, "", limits, "r")
            .err()
            .expect("refused");
        assert_eq!(err.reason(), "UnsafePath", "{err}");
        let passwd = tarball(&[], &[("x.sql", "/etc/passwd")]);
        let err = list_tarball(&passwd, "", limits, "r")
            .err()
            .expect("refused");
        assert!(err.to_string().contains("outside"), "{err}");
    }

    #[tokio::test]
    async fn a_digest_mismatch_is_refused_before_unpacking() {
        let body = tarball(&[("sqitch.plan", b"%project=x\n")], &[]);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming().take(1) {
                let mut s = stream.expect("stream");
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(&body);
            }
        });
        let root = tempfile::tempdir().expect("tempdir");
        let cache = FluxCache::new(root.path(), Limits::default());
        let announced = Announced {
            url: format!("http://127.0.0.1:{port}/a.tar.gz"),
            revision: "main@sha1:0123456789abcdef0123456789abcdef01234567".into(),
            digest: format!("sha256:{}", "0".repeat(64)),
        };
        let err = cache
            .fetch(&announced, "", Duration::from_secs(10))
            .await
            .expect_err("mismatch");
        assert_eq!(err.reason(), "DigestMismatch");
        assert!(err.is_terminal());
        assert!(!root.path().join("artifacts").exists(), "nothing unpacked");
    }
}
