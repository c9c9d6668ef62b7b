//! Fetching from git with gitoxide into the shared on-disk cache (one bare, shallow
//! repository per URL, under a file lock), and extracting checked artifacts.
//! Never runs the `git` program and never sees a Kubernetes type.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gix::remote::Direction;
use secrecy::ExposeSecret;

use super::reference::{self, Reference};
use super::tree::{self, Limits, Listing};
use super::{Artifact, Credentials, Error, Result, url};

/// What to fetch.
#[derive(Clone, Debug)]
pub struct GitRequest {
    /// The repository URL.
    pub url: String,
    /// What to follow.
    pub reference: Reference,
    /// The directory inside the repository holding the project; empty for the top.
    pub path: String,
    /// Credentials (from the Secret, or none).
    pub credentials: Credentials,
    /// The Secret's name, for messages.
    pub secret: Option<String>,
    /// How long the whole look (lock wait, ref lookup, fetch, extraction) may take.
    pub timeout: Duration,
}

/// What one call did on the network, for tests, benchmarks and debug logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Ref lookups (handshake plus `ls-refs`) made.
    pub ref_lookups: u32,
    /// Packs received.
    pub packs: u32,
    /// Whether a new artifact was written (false: it was in the cache).
    pub extracted: bool,
}

/// The cache of repositories and artifacts under one directory.
#[derive(Clone, Debug)]
pub struct GitCache {
    root: PathBuf,
    limits: Limits,
}

/// What [`GitCache::fetch`] should produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// The reference's current commit: look at the remote.
    Latest,
    /// The commit of this revision (which is kept as the artifact's revision). From the
    /// cache when there; else that commit is fetched.
    Revision(String),
    /// Like `Revision`, but look at the remote first (one ref lookup, with the request's
    /// credentials) even when the artifact is in the cache: for revisions the caller did
    /// not get from this request's own `Latest`, so that the cache never hands a
    /// repository's files to someone who cannot read the repository.
    RevisionChecked(String),
}

impl GitCache {
    /// A cache rooted at `root`, refusing content over `limits`.
    pub fn new(root: &Path, limits: Limits) -> GitCache {
        GitCache {
            root: root.to_path_buf(),
            limits,
        }
    }

    /// Runs [`GitCache::fetch_blocking`] on a blocking thread, bounded by the request's
    /// timeout. On timeout the fetch is interrupted and [`Error::Timeout`] returned.
    pub async fn fetch(&self, request: GitRequest, want: Want) -> Result<(Artifact, Stats)> {
        let interrupt = Arc::new(AtomicBool::new(false));
        let timeout = request.timeout;
        let shown = url::redact(&request.url);
        let this = self.clone();
        let flag = interrupt.clone();
        let task = tokio::task::spawn_blocking(move || this.fetch_blocking(&request, &want, &flag));
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(Error::Fetch {
                url: shown,
                message: format!("the fetch task failed: {join}"),
            }),
            Err(_) => {
                interrupt.store(true, Ordering::Relaxed);
                Err(Error::Timeout {
                    url: shown,
                    seconds: timeout.as_secs(),
                })
            }
        }
    }

    /// Produces the artifact `want` names. Blocking; `interrupt` aborts a transfer.
    pub fn fetch_blocking(
        &self,
        request: &GitRequest,
        want: &Want,
        interrupt: &AtomicBool,
    ) -> Result<(Artifact, Stats)> {
        let deadline = Instant::now() + request.timeout;
        request
            .credentials
            .check_for(&request.url, request.secret.as_deref())?;
        let path = project_path(&request.path)?;
        let mut stats = Stats::default();
        let exact = match want {
            Want::Latest => None,
            Want::Revision(rev) | Want::RevisionChecked(rev) => {
                let commit = reference::commit_of(rev).ok_or_else(|| {
                    Error::InvalidSpec(format!("revision {rev:?} names no git commit"))
                })?;
                Some((rev.clone(), commit.to_string()))
            }
        };
        if let (Want::Revision(_), Some((rev, commit))) = (want, &exact)
            && let Some(artifact) = self.cached(commit, &path, rev)
        {
            return Ok((artifact, stats));
        }

        let session = Session::open(self, request, deadline, interrupt)?;
        let remote = session.remote(&session.lookup_refspecs())?;
        // The connection of the ref lookup, kept to receive the pack on when the lookup
        // named the one ref wanted (not for semver, which lists every tag).
        let mut lookup = None;
        let (revision, commit) = match exact {
            Some((rev, commit)) => {
                if matches!(want, Want::RevisionChecked(_)) {
                    session.prepare(&remote, &mut stats)?;
                }
                (rev, commit)
            }
            None => {
                let prepared = session.prepare(&remote, &mut stats)?;
                let (name, commit) = session.resolve(&prepared)?;
                if !matches!(request.reference, Reference::Semver(_)) {
                    lookup = Some(prepared);
                }
                (reference::revision(name.as_deref(), &commit), commit)
            }
        };
        if let Some(artifact) = self.cached(&commit, &path, &revision) {
            return Ok((artifact, stats));
        }
        let oid = gix::ObjectId::from_hex(commit.as_bytes())
            .map_err(|_| Error::InvalidSpec(format!("{commit:?} is not a commit id")))?;
        if !session.repo.has_object(oid) {
            match lookup {
                Some(prepared) => session.receive(prepared, &revision, oid, &mut stats)?,
                None => {
                    let remote =
                        session.remote(&[format!("{oid}:refs/switchyard/commits/{oid}")])?;
                    let prepared = session.prepare(&remote, &mut stats)?;
                    session.receive(prepared, &revision, oid, &mut stats)?;
                }
            }
        }
        let artifact = self.extract(&session.repo, oid, &path, &revision)?;
        stats.extracted = true;
        Ok((artifact, stats))
    }

    /// The most gitoxide may allocate for one object: the per-file limit (at least 16 MiB,
    /// for large trees) and a little slack. Bounds memory while a pack streams in.
    fn alloc_limit(&self) -> u64 {
        self.limits.max_file_size.max(16 << 20) + (1 << 20)
    }

    fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    fn artifact_key(commit: &str, path: &str) -> String {
        if path.is_empty() {
            return commit.to_string();
        }
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(path.as_bytes()));
        format!("{commit}-{}", &hash[..12])
    }

    fn cached(&self, commit: &str, path: &str, revision: &str) -> Option<Artifact> {
        let dir = tree::artifact_dir(&self.artifacts(), &Self::artifact_key(commit, path));
        tree::existing(&dir).map(|(dir, digest)| Artifact {
            revision: revision.to_string(),
            digest,
            dir,
        })
    }

    /// Checks the tree at `commit` under `path` and publishes it as an artifact.
    fn extract(
        &self,
        repo: &gix::Repository,
        commit: gix::ObjectId,
        path: &str,
        revision: &str,
    ) -> Result<Artifact> {
        let odb = |e: gix::Error| Error::Cache {
            path: self.root.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        };
        let mut tree_id = repo
            .find_commit(commit)
            .and_then(|c| c.tree_id())
            .map_err(odb)?
            .detach();
        let mut walked = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            walked =
                Listing::<gix::ObjectId>::child(&walked, part.as_bytes()).map_err(|refusal| {
                    Error::Refused {
                        revision: revision.into(),
                        refusal,
                    }
                })?;
            let tree = repo.find_tree(tree_id).map_err(odb)?;
            let next = tree.decode().map_err(&odb)?.entries.iter().find_map(|e| {
                (e.filename == part.as_bytes() && e.mode.is_tree()).then(|| e.oid.to_owned())
            });
            tree_id = next.ok_or_else(|| Error::PathNotFound {
                path: path.into(),
                revision: revision.into(),
            })?;
        }
        let mut listing = Listing::new(self.limits);
        let refused = |refusal| Error::Refused {
            revision: revision.into(),
            refusal,
        };
        walk(repo, tree_id, "", &mut listing, &refused, &odb)?;
        let files = listing.resolve().map_err(refused)?;
        let key = Self::artifact_key(&commit.to_string(), path);
        let (dir, digest) = tree::publish(&self.artifacts(), &key, |dir| {
            tree::write_files(dir, &files, |oid| {
                repo.find_object(*oid)
                    .map(|o| o.detach().data)
                    .map_err(|e| std::io::Error::other(e.to_string()))
            })
            .map_err(|e| e.into_error(revision))
        })?;
        Ok(Artifact {
            revision: revision.into(),
            digest,
            dir,
        })
    }
}

/// Lists the tree `id` (at `prefix`) into `listing`; stops at the first refusal.
fn walk(
    repo: &gix::Repository,
    id: gix::ObjectId,
    prefix: &str,
    listing: &mut Listing<gix::ObjectId>,
    refused: &dyn Fn(super::Refusal) -> Error,
    odb: &dyn Fn(gix::Error) -> Error,
) -> Result<()> {
    use gix::object::tree::EntryKind;
    let tree = repo.find_tree(id).map_err(odb)?;
    let decoded = tree.decode().map_err(odb)?;
    for entry in &decoded.entries {
        let path = Listing::<gix::ObjectId>::child(prefix, entry.filename).map_err(refused)?;
        let oid = entry.oid.to_owned();
        match entry.mode.kind() {
            EntryKind::Tree => walk(repo, oid, &path, listing, refused, odb)?,
            EntryKind::Blob | EntryKind::BlobExecutable => {
                let size = repo.find_header(oid).map_err(odb)?.size();
                listing.file(path, size, oid).map_err(refused)?;
            }
            EntryKind::Link => {
                let header = repo.find_header(oid).map_err(odb)?;
                let target = if header.size() > 4096 {
                    None
                } else {
                    let data = repo.find_object(oid).map_err(odb)?.detach().data;
                    String::from_utf8(data).ok()
                };
                let Some(target) = target else {
                    return Err(refused(super::Refusal::Symlink {
                        path,
                        target: "…".into(),
                        why: "has an unreadable target",
                    }));
                };
                listing.link(path, target).map_err(refused)?;
            }
            EntryKind::Commit => return Err(refused(super::Refusal::Submodule { path })),
        }
    }
    Ok(())
}

/// The spec's path, checked and normalised (`db/shop`, or empty for the top).
fn project_path(path: &str) -> Result<String> {
    let trimmed = path.trim_matches('/');
    if path.starts_with('/') || trimmed.split('/').any(|p| p == "..") {
        return Err(Error::InvalidSpec(format!(
            "path {path:?} must be relative and must not contain '..'"
        )));
    }
    Ok(trimmed
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/"))
}

// === impl Session ===

type Transport = Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>;
type Prepared<'r> = gix::remote::fetch::Prepare<'r, 'r, Transport>;

/// An open cache repository, locked for one request.
struct Session<'a> {
    repo: gix::Repository,
    request: &'a GitRequest,
    interrupt: &'a AtomicBool,
    shown: String,
    alloc_limit: u64,
    file_limit: u64,
    ssh: Option<SshFiles>,
    _lock: std::fs::File,
}

impl<'a> Session<'a> {
    fn open(
        cache: &GitCache,
        request: &'a GitRequest,
        deadline: Instant,
        interrupt: &'a AtomicBool,
    ) -> Result<Session<'a>> {
        let key = url::cache_key(&request.url);
        let base = cache.root.join("git");
        let io = |path: &Path, source| Error::Cache {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&base).map_err(|e| io(&base, e))?;
        let lock_path = base.join(format!("{key}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        let shown = url::redact(&request.url);
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline || interrupt.load(Ordering::Relaxed) {
                        return Err(Error::Timeout {
                            url: shown,
                            seconds: request.timeout.as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path, e)),
            }
        }
        let dir = base.join(&key).join("repo.git");
        let ssh = SshFiles::write(&base, &request.credentials)?;
        let mut overrides = vec![
            // Only what is asked for: no tags, no submodules, no hooks (bare), protocol v2.
            "protocol.version=2".to_string(),
            "fetch.recurseSubmodules=false".to_string(),
            "gitoxide.userAgent=switchyard".to_string(),
            // NB: no single object may make gitoxide allocate more than a file may hold
            // (with room for trees and deltas): a 1 GiB blob is refused while the pack
            // streams in, rather than held in memory first and refused after.
            format!("gitoxide.objects.allocLimit={}", cache.alloc_limit()),
        ];
        if let Some(files) = &ssh {
            overrides.push("ssh.variant=ssh".into());
            overrides.push(format!("core.sshCommand={}", files.command()));
        }
        let options = || gix::open::Options::isolated().config_overrides(overrides.clone());
        let repo = match gix::open_opts(&dir, options()) {
            Ok(repo) => repo,
            Err(_) => {
                // First use of this URL, or a cache left broken by a crash mid-init.
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
                gix::ThreadSafeRepository::init_opts(
                    &dir,
                    gix::create::Kind::Bare,
                    gix::create::Options::default(),
                    options(),
                )
                .map(gix::Repository::from)
                .map_err(|e| io(&dir, std::io::Error::other(e.to_string())))?
            }
        };
        Ok(Session {
            repo,
            request,
            interrupt,
            shown,
            alloc_limit: cache.alloc_limit(),
            file_limit: cache.limits.max_file_size,
            ssh,
            _lock: lock,
        })
    }

    /// The remote at the request's URL, fetching only `refspec`, no tags.
    fn remote(&self, refspecs: &[String]) -> Result<gix::Remote<'_>> {
        self.repo
            .remote_at(self.request.url.as_str())
            .map_err(|e| self.invalid(e))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(refspecs.iter().map(String::as_str), Direction::Fetch)
            .map_err(|e| self.invalid(e))
    }

    /// Connects with the request's credentials and makes the ref lookup.
    fn prepare<'r>(&self, remote: &'r gix::Remote<'_>, stats: &mut Stats) -> Result<Prepared<'r>> {
        let mut connection = match self.git_daemon_transport()? {
            Some(transport) => remote.to_connection_with_transport(transport),
            None => remote
                .connect(Direction::Fetch)
                .map_err(|e| self.failed(e))?,
        };
        let creds = self.request.credentials.clone();
        let mut asked = 0;
        connection.set_credentials(move |action| {
            use gix::credentials::helper::Action;
            match action {
                Action::Get(ctx) => {
                    asked += 1;
                    // Once: a second request means the server refused them.
                    if asked > 1 {
                        return Ok(None);
                    }
                    let credentials = if let Some((user, pass)) = &creds.basic {
                        gix::sec::identity::Credentials::UsernamePassword {
                            username: user.clone(),
                            password: pass.expose_secret().to_string(),
                            oauth_refresh_token: None,
                        }
                    } else if let Some(token) = &creds.bearer {
                        gix::sec::identity::Credentials::Encoded {
                            authtype: "Bearer".into(),
                            credential: token.expose_secret().to_string(),
                            oauth_refresh_token: None,
                        }
                    } else {
                        return Ok(None);
                    };
                    Ok(Some(gix::credentials::protocol::Outcome {
                        credentials,
                        next: gix::credentials::helper::NextAction::from(ctx),
                    }))
                }
                Action::Store(_) | Action::Erase(_) => Ok(None),
            }
        });
        if self.request.url.starts_with("http") {
            let mut options = gix::protocol::transport::client::blocking_io::http::Options {
                user_agent: Some("switchyard".into()),
                connect_timeout: Some(self.request.timeout.min(Duration::from_secs(30))),
                ..Default::default()
            };
            let certs = match &self.request.credentials.ca {
                Some(ca) => Some(reqwest::Certificate::from_pem_bundle(ca).map_err(|_| {
                    Error::InvalidCredentials(format!(
                        "Secret {}: ca.crt is not a PEM certificate bundle",
                        self.request.secret.as_deref().unwrap_or("(none)")
                    ))
                })?),
                None => None,
            };
            // NB: reqwest's blocking client gives up on a request after 30 s by default;
            // the request's own timeout bounds it instead.
            let timeout = self.request.timeout;
            let backend = gix::protocol::transport::client::blocking_io::http::reqwest::Options {
                configure_client: Some(Box::new(move |builder| {
                    let builder = builder.timeout(timeout);
                    Ok(match &certs {
                        Some(certs) => builder.tls_certs_only(certs.clone()),
                        None => builder,
                    })
                })),
                configure_request: None,
            };
            options.backend = Some(Arc::new(std::sync::Mutex::new(backend)));
            super::init_tls();
            connection.set_transport_options(Box::new(options));
        }
        stats.ref_lookups += 1;
        connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| self.failed(e))
    }

    /// For `git://`, the TCP connection made here rather than by gitoxide, which sets no
    /// read timeout: a server that accepts and then stalls would hold the thread (and the
    /// cache lock) forever.
    fn git_daemon_transport(&self) -> Result<Option<Transport>> {
        use gix::protocol::transport::client::git;
        let Some(rest) = self.request.url.strip_prefix("git://") else {
            return Ok(None);
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p.parse::<u16>().map_err(|_| {
                    Error::InvalidSpec(format!("url {}: bad port {p:?}", self.shown))
                })?;
                (h.trim_matches(['[', ']']).to_string(), Some(port))
            }
            _ => (authority.trim_matches(['[', ']']).to_string(), None),
        };
        let unreachable = |e: std::io::Error| Error::Fetch {
            url: self.shown.clone(),
            message: format!("cannot connect: {e}"),
        };
        use std::net::ToSocketAddrs;
        let addr = (host.as_str(), port.unwrap_or(9418))
            .to_socket_addrs()
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| unreachable(std::io::ErrorKind::NotFound.into()))?;
        let timeout = self.request.timeout.max(Duration::from_millis(100));
        let read =
            std::net::TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(10)))
                .map_err(unreachable)?;
        read.set_read_timeout(Some(timeout)).map_err(unreachable)?;
        // NB: packet lines are small writes; without this, Nagle's algorithm and the
        // server's delayed ACK add 40 ms to every exchange.
        read.set_nodelay(true).map_err(unreachable)?;
        read.set_write_timeout(Some(timeout)).map_err(unreachable)?;
        let write = read.try_clone().map_err(unreachable)?;
        let connection = git::blocking_io::Connection::new(
            read,
            write,
            gix::protocol::transport::Protocol::V2,
            path,
            Some((host, port)),
            git::ConnectMode::Daemon,
            false,
        );
        Ok(Some(Box::new(connection)))
    }

    /// One ref lookup: the commit the reference names now, and the name for the revision.
    fn resolve(&self, prepared: &Prepared<'_>) -> Result<(Option<String>, String)> {
        let reference = &self.request.reference;
        let not_found = || Error::RefNotFound {
            reference: reference.to_string(),
            url: self.shown.clone(),
        };
        let map = prepared.ref_map();
        let peeled = |r: &gix::protocol::handshake::Ref| -> Option<(String, String)> {
            let (name, direct, peeled) = r.unpack();
            let id = peeled.or(direct)?;
            Some((name.to_string(), id.to_string()))
        };
        match reference {
            Reference::Branch(_) | Reference::Tag(_) | Reference::Name(_) => {
                let advertised: Vec<(String, String)> = map
                    .mappings
                    .iter()
                    .filter_map(|m| match &m.remote {
                        gix::remote::fetch::refmap::Source::Ref(r) => peeled(r),
                        gix::remote::fetch::refmap::Source::ObjectId(_) => None,
                    })
                    .collect();
                let picked = reference.pick(
                    advertised.iter().map(|(n, c)| (n.as_str(), c.as_str())),
                    &self.shown,
                )?;
                picked
                    .map(|(name, id)| (Some(name), id))
                    .ok_or_else(not_found)
            }
            Reference::Semver(range) => {
                let tags: Vec<(String, String)> = map
                    .remote_refs
                    .iter()
                    .filter_map(peeled)
                    .filter_map(|(name, id)| {
                        name.strip_prefix("refs/tags/").map(|t| (t.to_string(), id))
                    })
                    .collect();
                let best = reference::highest_matching(range, tags.iter().map(|(t, _)| t.as_str()))
                    .ok_or_else(not_found)?;
                let id = tags
                    .iter()
                    .find(|(t, _)| t == best)
                    .map(|(_, id)| id.clone())
                    .ok_or_else(not_found)?;
                Ok((Some(best.to_string()), id))
            }
            // The lookup proves the credentials can read the repository; the commit itself
            // is fixed.
            Reference::Commit(c) => Ok((None, c.clone())),
        }
    }

    /// The refspecs of the ref lookup: the ref wanted (a branch and a tag for a bare
    /// name), or every tag for semver.
    fn lookup_refspecs(&self) -> Vec<String> {
        self.request.reference.refspecs()
    }

    /// Receives the pack for `commit` at depth 1 (its objects only) on a prepared connection.
    fn receive(
        &self,
        prepared: Prepared<'_>,
        revision: &str,
        commit: gix::ObjectId,
        stats: &mut Stats,
    ) -> Result<()> {
        prepared
            .with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(NonZeroU32::MIN))
            .receive(gix::progress::Discard, self.interrupt)
            .map_err(|e| {
                let text = self.scrubbed(&e);
                if text.contains("too large to fit in memory") {
                    Error::Refused {
                        revision: revision.into(),
                        refusal: super::Refusal::ObjectTooLarge {
                            limit: self.alloc_limit,
                            file_limit: self.file_limit,
                        },
                    }
                } else if text.contains("not our ref") || text.contains("unadvertised") {
                    Error::RefNotFound {
                        reference: format!("commit {commit} of {revision}"),
                        url: self.shown.clone(),
                    }
                } else {
                    self.failed(e)
                }
            })?;
        stats.packs += 1;
        Ok(())
    }

    /// The error and its causes, one after the other, with secrets scrubbed.
    fn scrubbed(&self, error: &gix::Error) -> String {
        let mut parts: Vec<String> = Vec::new();
        for e in error.iter_errors() {
            let text = e.to_string();
            if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
        }
        url::scrub(&parts.join(": "), &self.request.credentials.secrets())
    }

    fn invalid(&self, error: gix::Error) -> Error {
        Error::InvalidSpec(format!("url {}: {}", self.shown, self.scrubbed(&error)))
    }

    /// Maps a transport or protocol error: authentication, or a fetch failure.
    fn failed(&self, error: gix::Error) -> Error {
        let mut message = self.scrubbed(&error);
        if let Some(ssh) = &self.ssh {
            let stderr = ssh.stderr();
            let said: Vec<&str> = stderr
                .lines()
                .filter(|l| {
                    !l.trim().is_empty()
                        && !l.starts_with('@')
                        && !l.starts_with("Warning: Permanently")
                })
                .map(str::trim)
                .collect::<Vec<_>>();
            if let Some(last) = said.last() {
                let last = url::scrub(last, &self.request.credentials.secrets());
                if last.to_lowercase().contains("host key verification failed") {
                    return Error::AuthenticationFailed {
                        url: self.shown.clone(),
                        message: "the server's host key is not in the Secret's known_hosts".into(),
                    };
                }
                message = format!("{message}: ssh: {last}");
            }
        }
        let lower = message.to_lowercase();
        let auth = [
            "401",
            "403",
            "authenticat",
            "credentials",
            "permission denied",
            "unauthorized",
        ]
        .iter()
        .any(|w| lower.contains(w));
        // NB: gix can wrap a TLS handshake failure in "authentication to … failed" when
        // credentials are configured; an untrusted server certificate is not a rejected
        // credential.
        let certificate = ["certificate", "unknownissuer", "tls handshake"]
            .iter()
            .any(|w| lower.contains(w));
        if auth && !certificate {
            Error::AuthenticationFailed {
                url: self.shown.clone(),
                message: short(&message),
            }
        } else {
            Error::Fetch {
                url: self.shown.clone(),
                message: short(&message),
            }
        }
    }
}

/// The first line of a long library message, capped.
fn short(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    if line.len() <= 400 {
        return line.to_string();
    }
    let mut end = 400;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

// === impl SshFiles ===

/// The Secret's ssh key and known_hosts, written into a private directory for the `ssh`
/// program for the life of one request, and removed after.
struct SshFiles {
    dir: PathBuf,
}

impl SshFiles {
    fn write(base: &Path, credentials: &Credentials) -> Result<Option<SshFiles>> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let (Some(key), Some(known_hosts)) = (&credentials.identity, &credentials.known_hosts)
        else {
            return Ok(None);
        };
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!(".ssh-{}-{n}", std::process::id()));
        let io = |path: &Path, source| Error::Cache {
            path: path.display().to_string(),
            source,
        };
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io(&dir, e))?;
        let files = SshFiles { dir };
        for (name, content) in [
            ("identity", key.expose_secret().as_bytes()),
            ("known_hosts", known_hosts.as_bytes()),
        ] {
            use std::io::Write;
            let path = files.dir.join(name);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(content).and_then(|()| f.write_all(b"\n")))
                .map_err(|e| io(&path, e))?;
        }
        Ok(Some(files))
    }

    /// The `core.sshCommand`: no user or system ssh configuration, only this key, only
    /// these host keys, never a prompt; stderr into a file of ours.
    fn command(&self) -> String {
        let quote = |p: PathBuf| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        format!(
            "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile={} -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o ConnectTimeout=20 -o ServerAliveInterval=15 -o ServerAliveCountMax=2 \"$@\" 2>>{}",
            quote(self.dir.join("identity")),
            quote(self.dir.join("known_hosts")),
            quote(self.dir.join("stderr")),
        )
    }

    /// What ssh said on stderr (kept out of the controller's own output, read on failure).
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }
}

impl Drop for SshFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_are_relative_and_normalised() {
        assert_eq!(project_path("").ok().as_deref(), Some(""));
        assert_eq!(project_path("db/shop/").ok().as_deref(), Some("db/shop"));
        assert_eq!(project_path("./db//shop").ok().as_deref(), Some("db/shop"));
        assert!(project_path("/etc").is_err());
        assert!(project_path("db/../..").is_err());
    }

    #[test]
    fn artifact_keys_differ_by_path_and_name_the_commit() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(GitCache::artifact_key(c, ""), c);
        assert!(GitCache::artifact_key(c, "db").starts_with(c));
        assert_ne!(
            GitCache::artifact_key(c, "db"),
            GitCache::artifact_key(c, "db2")
        );
    }
}
