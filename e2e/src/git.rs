//! Git servers for tests, started per test and never left running: `git daemon` (git://),
//! `git http-backend` behind a small HTTP server (http, or https with a CA made for the
//! test, with basic or bearer auth), and an `sshd` on a free port when Debian's
//! openssh-server is installed. Plus repositories to serve: a bare repository and a work
//! tree that commits and pushes into it with the real `git`.
//!
//! Each server's process (and a watchdog that kills it when the test binary exits, even
//! after a kill) goes away with the value.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A `git` command isolated from any user or system configuration, with a fixed identity
/// and dates, so commits are reproducible.
pub fn git_command(dir: &Path) -> Command {
    let home = std::env::temp_dir().join("switchyard-git-home");
    let _ = std::fs::create_dir_all(&home);
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    c
}

/// Runs `git args` in `dir`; returns trimmed stdout or fails with stderr.
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = git_command(dir)
        .args(args)
        .output()
        .with_context(|| format!("running git {args:?}"))?;
    if !out.status.success() {
        bail!(
            "git {args:?} in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

// === impl Repos ===

/// A directory of bare repositories that servers serve.
pub struct Repos {
    root: tempfile::TempDir,
}

impl Repos {
    /// An empty directory of repositories.
    pub fn new() -> Result<Repos> {
        Ok(Repos {
            root: tempfile::tempdir()?,
        })
    }

    /// The directory servers serve.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A new bare repository `<name>.git` and a work tree that pushes into it.
    pub fn create(&self, name: &str) -> Result<Work> {
        let bare = self.root().join(format!("{name}.git"));
        std::fs::create_dir_all(&bare)?;
        git(
            &bare,
            &["init", "--bare", "--quiet", "--initial-branch=main"],
        )?;
        // Tests delete the default branch on purpose.
        git(&bare, &["config", "receive.denyDeleteCurrent", "ignore"])?;
        // Serve over http(s) too (http-backend checks this unless GIT_HTTP_EXPORT_ALL).
        std::fs::write(bare.join("git-daemon-export-ok"), "")?;
        let dir = tempfile::tempdir()?;
        git(dir.path(), &["init", "--quiet", "--initial-branch=main"])?;
        git(
            dir.path(),
            &["remote", "add", "origin", &bare.display().to_string()],
        )?;
        Ok(Work { dir, bare, tick: 0 })
    }
}

// === impl Work ===

/// A work tree whose `origin` is a served bare repository.
pub struct Work {
    dir: tempfile::TempDir,
    bare: PathBuf,
    tick: u32,
}

impl Work {
    /// The work tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The bare repository it pushes to.
    pub fn bare(&self) -> &Path {
        &self.bare
    }

    /// Runs git in the work tree.
    pub fn git(&self, args: &[&str]) -> Result<String> {
        git(self.path(), args)
    }

    /// Writes a file (creating directories).
    pub fn write(&self, relative: &str, content: impl AsRef<[u8]>) -> Result<&Self> {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, content)?;
        Ok(self)
    }

    /// Copies a directory's files (e.g. a `tools::Fixture`) under `relative` (`""` for the top).
    pub fn copy_dir(&self, from: &Path, relative: &str) -> Result<&Self> {
        let to = self.path().join(relative);
        copy_tree(from, &to)?;
        Ok(self)
    }

    /// Creates a symbolic link at `relative` pointing at `target`.
    pub fn symlink(&self, relative: &str, target: &str) -> Result<&Self> {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink(target, path)?;
        Ok(self)
    }

    /// Commits everything (`git add -A`) and returns the commit id. Dates advance a second
    /// per commit, so ids are reproducible.
    pub fn commit(&mut self, message: &str) -> Result<String> {
        self.tick += 1;
        let date = format!("@{} +0000", 1_700_000_000 + self.tick);
        self.git(&["add", "-A"])?;
        let out = git_command(self.path())
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args(["commit", "--quiet", "--allow-empty", "-m", message])
            .output()?;
        if !out.status.success() {
            bail!(
                "git commit failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.git(&["rev-parse", "HEAD"])
    }

    /// Pushes HEAD to `branch`, forced when `force`.
    pub fn push(&self, branch: &str, force: bool) -> Result<()> {
        let spec = format!("{}HEAD:refs/heads/{branch}", if force { "+" } else { "" });
        self.git(&["push", "--quiet", "origin", &spec]).map(drop)
    }

    /// Tags HEAD (annotated when `annotated`) and pushes the tag, moving it when it exists.
    pub fn tag(&self, name: &str, annotated: bool) -> Result<()> {
        if annotated {
            self.git(&["tag", "-f", "-a", "-m", name, name])?;
        } else {
            self.git(&["tag", "-f", name])?;
        }
        self.git(&[
            "push",
            "--quiet",
            "--force",
            "origin",
            &format!("refs/tags/{name}"),
        ])
        .map(drop)
    }

    /// Deletes `refs/heads/<branch>` on the server.
    pub fn delete_branch(&self, branch: &str) -> Result<()> {
        self.git(&[
            "push",
            "--quiet",
            "origin",
            &format!(":refs/heads/{branch}"),
        ])
        .map(drop)
    }

    /// Resets the work tree to the commit before HEAD (for force-push tests).
    pub fn reset_back(&self) -> Result<()> {
        self.git(&["reset", "--quiet", "--hard", "HEAD~1"])
            .map(drop)
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Feeds a `git fast-import` stream into the bare repository `bare` (the fast way to make
/// repositories with many commits or files, or big files).
pub fn fast_import(
    bare: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut child = git_command(bare)
        .args(["fast-import", "--quiet", "--force"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("git fast-import")?;
    {
        let stdin = child.stdin.as_mut().context("stdin")?;
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, stdin);
        write(&mut buffered)?;
        buffered.flush()?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "git fast-import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

// === crafted trees ===

/// A tree written with git's plumbing, whose names git's porcelain would never write:
/// for repositories that try to escape (`..`, `.git`, links out), or are huge.
pub enum Node {
    /// A file with this content.
    Blob(Vec<u8>),
    /// A file of this many zero bytes (streamed, never held in memory).
    Zeros(u64),
    /// A symbolic link to this target.
    Link(String),
    /// A directory. Names are written as given.
    Tree(Vec<(String, Node)>),
    /// The same file (one blob) under `count` names `prefix00001.sql`, ….
    Many {
        /// The names' prefix.
        prefix: String,
        /// How many.
        count: usize,
    },
}

fn hash_object(
    bare: &Path,
    args: &[&str],
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<String> {
    let mut child = git_command(bare)
        .args(["hash-object", "-w", "--stdin"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        let stdin = child.stdin.as_mut().context("stdin")?;
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, stdin);
        write(&mut buffered)?;
        buffered.flush()?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("git hash-object: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn mktree(bare: &Path, lines: &str) -> Result<String> {
    let mut child = git_command(bare)
        .args(["mktree"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .as_mut()
        .context("stdin")?
        .write_all(lines.as_bytes())?;
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("git mktree: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Writes `node` into `bare`; returns (mode, type, id).
pub fn write_node(bare: &Path, node: &Node) -> Result<(&'static str, &'static str, String)> {
    Ok(match node {
        Node::Blob(data) => (
            "100644",
            "blob",
            hash_object(bare, &[], |w| w.write_all(data))?,
        ),
        Node::Zeros(size) => {
            let id = hash_object(bare, &[], |w| {
                let chunk = vec![0u8; 1 << 20];
                let mut left = *size;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    w.write_all(&chunk[..n])?;
                    left -= n as u64;
                }
                Ok(())
            })?;
            ("100644", "blob", id)
        }
        Node::Link(target) => (
            "120000",
            "blob",
            hash_object(bare, &[], |w| w.write_all(target.as_bytes()))?,
        ),
        Node::Tree(entries) => {
            let mut lines = String::new();
            for (name, child) in entries {
                let (mode, kind, id) = write_node(bare, child)?;
                lines.push_str(&format!("{mode} {kind} {id}\t{name}\n"));
            }
            ("040000", "tree", mktree(bare, &lines)?)
        }
        Node::Many { prefix, count } => {
            let blob = hash_object(bare, &[], |w| w.write_all(b"select 1;\n"))?;
            let mut lines = String::with_capacity(count * 70);
            for i in 0..*count {
                lines.push_str(&format!("100644 blob {blob}\t{prefix}{i:06}.sql\n"));
            }
            ("040000", "tree", mktree(bare, &lines)?)
        }
    })
}

/// Commits the tree `root` onto `branch` of `bare` (no parent); returns the commit id.
pub fn commit_tree(bare: &Path, root: &Node, branch: &str, message: &str) -> Result<String> {
    let (_, _, tree) = write_node(bare, root)?;
    let commit = git(bare, &["commit-tree", &tree, "-m", message])?;
    git(
        bare,
        &["update-ref", &format!("refs/heads/{branch}"), &commit],
    )?;
    Ok(commit)
}

// === watchdog ===

/// A detached shell that kills `pid` once this test process has exited.
fn watchdog(pid: u32) {
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill {pid} 2>/dev/null",
        me = std::process::id()
    );
    let _ = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// `git --exec-path`: where git's own programs (git-daemon, git-http-backend) live.
fn exec_path() -> Result<PathBuf> {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .context("git --exec-path")?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{what} did not listen on {port}")
}

// === impl GitDaemon ===

/// `git daemon` serving a [`Repos`] directory on a free port.
pub struct GitDaemon {
    child: Child,
    port: u16,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl GitDaemon {
    /// Starts `git daemon` for `root`.
    pub fn start(root: &Path) -> Result<GitDaemon> {
        let logdir = tempfile::tempdir()?;
        let log = logdir.path().join("daemon.log");
        let _ = std::fs::create_dir_all(std::env::temp_dir().join("switchyard-git-home"));
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let file = std::fs::File::create(&log)?;
            // NB: git-daemon itself, not `git daemon`, whose wrapper process would be the
            // one killed, leaving the daemon behind.
            let mut child = Command::new(exec_path()?.join("git-daemon"))
                .current_dir(root)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", std::env::temp_dir().join("switchyard-git-home"))
                .args([
                    "--reuseaddr",
                    "--export-all",
                    "--informative-errors",
                    "--verbose",
                    "--listen=127.0.0.1",
                ])
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", root.display()))
                .arg(root)
                .stdout(Stdio::null())
                .stderr(file)
                .spawn()
                .context("git daemon")?;
            watchdog(child.id());
            match wait_for_port(port, &mut child, "git daemon") {
                Ok(()) => {
                    return Ok(GitDaemon {
                        child,
                        port,
                        log,
                        _logdir: logdir,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("git daemon did not start")))
    }

    /// `git://127.0.0.1:<port>/<name>.git`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }

    /// How many upload-pack requests (ref lookups or fetches, one per connection) the
    /// daemon has served.
    pub fn upload_packs(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("Request upload-pack")
            .count()
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === impl GitHttp ===

/// How [`GitHttp`] authenticates and serves.
#[derive(Clone, Debug, Default)]
pub struct HttpConfig {
    /// Serve https with a CA made for this server (see [`GitHttp::ca_pem`]).
    pub tls: bool,
    /// Require basic auth with this user and password.
    pub basic: Option<(String, String)>,
    /// Require `Authorization: Bearer <token>`.
    pub bearer: Option<String>,
}

/// `git http-backend` (CGI) behind a small HTTP server, and static files under `/files/`.
pub struct GitHttp {
    port: u16,
    tls: bool,
    ca_pem: Vec<u8>,
    requests: Arc<Mutex<Vec<String>>>,
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GitHttp {
    /// Starts a server for the repositories under `root`.
    pub fn start(root: &Path, config: HttpConfig) -> Result<GitHttp> {
        let (ca_pem, acceptor) = if config.tls {
            let (ca, acceptor) = tls_acceptor()?;
            (ca, Some(acceptor))
        } else {
            (Vec::new(), None)
        };
        let acceptor_made = acceptor.is_some();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let files = Arc::new(Mutex::new(BTreeMap::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let state = Arc::new(State {
            root: root.to_path_buf(),
            config,
            requests: requests.clone(),
            files: files.clone(),
        });
        let thread = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(serve(listener, acceptor, state, rx));
        });
        Ok(GitHttp {
            port,
            tls: acceptor_made,
            ca_pem,
            requests,
            files,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http(s)://127.0.0.1:<port>/<name>.git`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}.git", self.base())
    }

    /// `http(s)://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The PEM of the CA that signed the server's certificate (https only).
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// Serves `content` at `/files/<name>`; returns its URL.
    pub fn serve_file(&self, name: &str, content: Vec<u8>) -> String {
        if let Ok(mut files) = self.files.lock() {
            files.insert(name.to_string(), content);
        }
        format!("{}/files/{name}", self.base())
    }

    /// Every request so far, as `METHOD /path?query -> status`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    root: PathBuf,
    config: HttpConfig,
    requests: Arc<Mutex<Vec<String>>>,
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

async fn serve(
    listener: std::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => {
                    // As real servers do: no Nagle delay on small responses.
                    let _ = s.set_nodelay(true);
                    s
                }
                Err(_) => continue,
            },
        };
        let state = state.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

type Body = http_body_util::Full<bytes::Bytes>;

fn response(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

async fn handle(
    state: &State,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Body> {
    use http_body_util::BodyExt;
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header("authorization");
    let git_protocol = header("git-protocol");
    let content_type = header("content-type");
    let content_encoding = header("content-encoding");
    let record = |status: u16| {
        if let Ok(mut r) = state.requests.lock() {
            r.push(format!("{method} {path}?{query} -> {status}"));
        }
    };

    if let Some(name) = path.strip_prefix("/files/") {
        let content = state.files.lock().ok().and_then(|f| f.get(name).cloned());
        let status = if content.is_some() { 200 } else { 404 };
        record(status);
        return response(status, &[], content.unwrap_or_default());
    }
    let wanted = match (&state.config.basic, &state.config.bearer) {
        (Some((user, pass)), _) => Some(format!("Basic {}", base64(&format!("{user}:{pass}")))),
        (None, Some(token)) => Some(format!("Bearer {token}")),
        (None, None) => None,
    };
    if let Some(wanted) = wanted
        && authorization.as_deref() != Some(wanted.as_str())
    {
        record(401);
        let challenge = if state.config.basic.is_some() {
            "Basic realm=\"git\""
        } else {
            "Bearer realm=\"git\""
        };
        return response(
            401,
            &[("WWW-Authenticate", challenge)],
            b"unauthorized\n".to_vec(),
        );
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => {
            record(400);
            return response(400, &[], Vec::new());
        }
    };
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REMOTE_USER", "test")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(ct) = content_type {
        cgi.env("CONTENT_TYPE", ct);
    }
    if let Some(p) = git_protocol {
        cgi.env("HTTP_GIT_PROTOCOL", p);
    }
    if let Some(e) = content_encoding {
        cgi.env("HTTP_CONTENT_ENCODING", e);
    }
    let output = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut child = cgi.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&body)?;
        }
        Ok(child.wait_with_output()?.stdout)
    })
    .await;
    let Ok(Ok(out)) = output else {
        record(502);
        return response(502, &[], Vec::new());
    };
    // CGI: headers, a blank line, the body.
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        record(502);
        return response(502, &[], out);
    };
    let head = String::from_utf8_lossy(&out[..end]).to_string();
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("status") {
                status = v
                    .trim()
                    .split(' ')
                    .next()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(500);
            } else {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    record(status);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    response(status, &headers, out[end + sep..].to_vec())
}

fn base64(text: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with the `openssl` program;
/// returns the CA's PEM and an acceptor for the server.
fn tls_acceptor() -> Result<(Vec<u8>, tokio_rustls::TlsAcceptor)> {
    use rustls_pki_types::pem::PemObject;
    let pki = crate::pki::Pki::new("switchyard test CA")?;
    let server = pki.server("server", &["127.0.0.1", "localhost"])?;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(&server.cert)?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&server.key)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    let ca_pem = std::fs::read(pki.ca())?;
    Ok((ca_pem, tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

// === impl Sshd ===

/// Debian's `sshd` on a free port, serving the repositories by absolute path to the
/// current user, with one authorized key. `None` when openssh-server is not installed.
pub struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    user: String,
}

impl Sshd {
    /// Starts sshd, or returns None when `/usr/sbin/sshd` is missing.
    pub fn start() -> Result<Option<Sshd>> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
            return Ok(None);
        }
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let keygen = |file: &str| -> Result<()> {
            let out = Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "switchyard-test",
                    "-f",
                ])
                .arg(d.join(file))
                .output()?;
            if !out.status.success() {
                bail!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        keygen("host_key")?;
        keygen("client_key")?;
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))?;
        let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?
            .trim()
            .to_string();
        // NB: sshd as root needs its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile none\nAuthorizedKeysFile {auth}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nAllowUsers {user}\nAcceptEnv GIT_PROTOCOL\nLogLevel VERBOSE\n",
                host = d.join("host_key").display(),
                auth = d.join("authorized_keys").display(),
            );
            std::fs::write(d.join("sshd_config"), config)?;
            let log = std::fs::File::create(d.join("sshd.log"))?;
            let mut child = Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            watchdog(child.id());
            match wait_for_port(port, &mut child, "sshd") {
                Ok(()) => {
                    return Ok(Some(Sshd {
                        child,
                        port,
                        dir,
                        user,
                    }));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("sshd did not start")))
    }

    /// `ssh://<user>@127.0.0.1:<port><absolute path of bare>`.
    pub fn url(&self, bare: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            bare.display()
        )
    }

    /// The client's private key (OpenSSH format).
    pub fn client_key(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("client_key"))?)
    }

    /// A `known_hosts` line for this server's host key.
    pub fn known_hosts(&self) -> Result<String> {
        let key = std::fs::read_to_string(self.dir.path().join("host_key.pub"))?;
        let mut parts = key.split_whitespace();
        let (kind, body) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        Ok(format!("[127.0.0.1]:{} {kind} {body}\n", self.port))
    }

    /// A `known_hosts` line for this port with some other key (a host-key mismatch).
    pub fn wrong_known_hosts(&self) -> Result<String> {
        let key = std::fs::read_to_string(self.dir.path().join("client_key.pub"))?;
        let mut parts = key.split_whitespace();
        let (kind, body) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        Ok(format!("[127.0.0.1]:{} {kind} {body}\n", self.port))
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648() {
        for (text, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(super::base64(text), want);
        }
    }
}
