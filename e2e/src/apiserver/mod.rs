//! A Kubernetes API server for tests: plain HTTP on 127.0.0.1, objects in memory, held to what
//! kube-rs and a real `kubectl` do. See `e2e/README.md` for what it covers and what it leaves
//! out on purpose.
//!
//! Modules: `store` (objects, resourceVersion, history, write semantics), `resources` (which
//! kinds exist), `discovery`, `openapi`, `validation` and `cel` (CRD schema admission), `patch`
//! and `ssa` (PATCH bodies, server-side apply, managedFields), `watch`, `table`, `selector`,
//! `status` (errors), `events` (core and `events.k8s.io` Events as one store), `requests`
//! (the request log) and `http` (routing). [`ApiServer`] runs it on its own thread and runtime,
//! so sync and async tests alike can use it; [`cluster`] picks it or a real cluster.

pub mod cel;
pub mod discovery;
pub mod events;
pub mod faults;
pub mod http;
pub mod openapi;
pub mod patch;
pub mod proto;
pub mod requests;
pub mod resources;
pub mod selector;
pub mod ssa;
pub mod status;
pub mod store;
pub mod table;
pub mod testing;
pub mod validation;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use serde_json::json;

use self::store::Store;

/// How to run the server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where to write the kubeconfig; None: a file in a temporary directory the server owns.
    pub kubeconfig: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// How many watch events to keep for resuming watches; older resourceVersions get 410.
    pub history_limit: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Answer aggregated discovery (`apidiscovery.k8s.io/v2`) when a client asks for it.
    pub aggregated_discovery: bool,
    /// A file every resource request is appended to (default: `$KUBE_HARNESS_REQUEST_LOG`).
    pub request_log: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubeconfig: None,
            token: None,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
            aggregated_discovery: true,
            request_log: std::env::var_os(requests::LOG_ENV).map(PathBuf::from),
        }
    }
}

/// A running server. Dropping it stops it.
pub struct ApiServer {
    url: String,
    kubeconfig: PathBuf,
    store: Arc<Store>,
    requests: Arc<requests::RequestLog>,
    faults: Arc<faults::Faults>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// The kubeconfig for a server URL (JSON, which every YAML reader takes).
pub fn kubeconfig_for(url: &str, token: Option<&str>) -> String {
    let user = match token {
        Some(t) => json!({"token": t}),
        None => json!({}),
    };
    let v = json!({
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "harness", "cluster": {"server": url}}],
        "users": [{"name": "harness", "user": user}],
        "contexts": [{"name": "harness", "context": {"cluster": "harness", "user": "harness", "namespace": "default"}}],
        "current-context": "harness",
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

impl ApiServer {
    /// Starts a server with the defaults: 127.0.0.1, a free port, a temporary kubeconfig.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(Config::default())
    }

    /// Starts a server. Returns once it accepts connections and the kubeconfig is written.
    pub fn start_with(config: Config) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let (dir, kubeconfig) = match &config.kubeconfig {
            Some(p) => (None, p.clone()),
            None => {
                let d = tempfile::tempdir()?;
                let p = d.path().join("kubeconfig");
                (Some(d), p)
            }
        };
        let store = Arc::new(Store::new(config.history_limit));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let requests = Arc::new(requests::RequestLog::new(config.request_log.clone()));
        let faults = Arc::new(faults::Faults::default());
        let srv = Arc::new(http::Server {
            store: store.clone(),
            requests: requests.clone(),
            token: config.token.clone(),
            bookmark_interval: config.bookmark_interval,
            addr: addr.to_string(),
            aggregated_discovery: config.aggregated_discovery,
            shutdown: stop_rx,
            faults: faults.clone(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kube-harness")
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("kube-harness".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => serve(l, srv).await,
                        Err(e) => tracing::error!(%e, "Listener unusable"),
                    }
                });
                // Open connections and watches end with the runtime.
                runtime.shutdown_timeout(Duration::from_millis(200));
            })?;
        std::fs::write(&kubeconfig, kubeconfig_for(&url, config.token.as_deref()))
            .with_context(|| format!("writing {}", kubeconfig.display()))?;
        Ok(Self {
            url,
            kubeconfig,
            store,
            requests,
            faults,
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kubeconfig that points at this server.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The store, for tests that look underneath the API.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Every resource request served so far (see [`requests`]).
    pub fn requests(&self) -> Vec<requests::Request> {
        self.requests.entries()
    }

    /// The fault injector (off until a test enables it; see `faults`).
    pub fn faults(&self) -> &Arc<faults::Faults> {
        &self.faults
    }

    /// A kube-rs client for this server.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// Stops the server and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Accepts connections until the server's shutdown signal flips.
pub async fn serve(listener: tokio::net::TcpListener, srv: Arc<http::Server>) {
    let mut stop = srv.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let srv = srv.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| http::handle(srv.clone(), req));
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(%e, "Connection ended");
                    }
                });
            }
            _ = stop.changed() => return,
        }
    }
}

async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

/// The cluster e2e tests run against: a real one when `KUBECONFIG` is set, else a fresh
/// [`ApiServer`].
pub struct Cluster {
    kubeconfig: PathBuf,
    harness: Option<ApiServer>,
}

impl Cluster {
    /// The kubeconfig to hand to kubectl or the controller.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kube-rs client.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        match std::env::var_os("KUBECONFIG") {
            Some(_) if self.harness.is_none() => Ok(kube::Client::try_default().await?),
            _ => client_from_kubeconfig(&self.kubeconfig).await,
        }
    }

    /// The in-process server, when there is no real cluster.
    pub fn harness(&self) -> Option<&ApiServer> {
        self.harness.as_ref()
    }
}

/// One switch for a real cluster: `KUBECONFIG` set means that cluster, unchanged; otherwise a
/// fresh harness server on a free port.
pub fn cluster() -> anyhow::Result<Cluster> {
    if let Some(kc) = std::env::var_os("KUBECONFIG") {
        let first = std::env::split_paths(&kc).next().unwrap_or_default();
        return Ok(Cluster {
            kubeconfig: first,
            harness: None,
        });
    }
    let server = ApiServer::start()?;
    Ok(Cluster {
        kubeconfig: server.kubeconfig().to_path_buf(),
        harness: Some(server),
    })
}
