//! The controller's Prometheus metrics (prometheus-client), and the admin port that serves
//! them with `/healthz` and `/readyz`.
//!
//! Labels stay bounded: kinds, reasons and results are closed sets. Never names or URLs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels naming a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `DatabaseProject`, `Environment` or `Promotion`.
    pub kind: String,
}

/// Labels naming a kind and a failure reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The kind.
    pub kind: String,
    /// The condition reason of the failure.
    pub reason: String,
}

/// Labels naming a promotion result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `succeeded`, `failed` or `blocked` (promotions); `accepted`, `ignored` or
    /// `rejected` (webhooks).
    pub result: String,
}

/// The controller's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Count of reconciles started, by kind.
    pub reconcile_runs: Family<KindLabels, Counter>,
    /// Count of reconciles that failed, by kind and reason.
    pub reconcile_failures: Family<FailureLabels, Counter>,
    /// Reconcile durations, by kind.
    pub reconcile_duration: Family<KindLabels, Histogram>,
    /// Count of changes deployed.
    pub changes_applied: Counter,
    /// Count of deploys refused because another deployer held the project's lock.
    pub lock_waits: Counter,
    /// Time spent connecting and taking the registry lock.
    pub registry_lock_wait: Histogram,
    /// Count of promotions, by result.
    pub promotions: Family<ResultLabels, Counter>,
    /// Count of git ref lookups (one per look at a remote).
    pub git_ref_lookups: Counter,
    /// Count of git packs fetched.
    pub git_fetches: Counter,
    /// Count of webhook requests, by result.
    pub webhook_requests: Family<ResultLabels, Counter>,
}

/// Histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

impl Metrics {
    /// Creates the metrics and registers them under the `switchyard` prefix.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            reconcile_runs: Family::default(),
            reconcile_failures: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            changes_applied: Counter::default(),
            lock_waits: Counter::default(),
            registry_lock_wait: Histogram::new(BUCKETS),
            promotions: Family::default(),
            git_ref_lookups: Counter::default(),
            git_fetches: Counter::default(),
            webhook_requests: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("switchyard");
        r.register(
            "reconcile_runs",
            "Count of reconciles started",
            metrics.reconcile_runs.clone(),
        );
        r.register(
            "reconcile_failures",
            "Count of reconciles that failed, by kind and reason",
            metrics.reconcile_failures.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Reconcile duration in seconds, by kind",
            metrics.reconcile_duration.clone(),
        );
        r.register(
            "changes_applied",
            "Count of changes deployed",
            metrics.changes_applied.clone(),
        );
        r.register(
            "lock_waits",
            "Count of deploys refused because the project's lock was held",
            metrics.lock_waits.clone(),
        );
        r.register(
            "registry_lock_wait_seconds",
            "Time spent connecting to the database and taking the registry lock",
            metrics.registry_lock_wait.clone(),
        );
        r.register(
            "promotions",
            "Count of promotions, by result",
            metrics.promotions.clone(),
        );
        r.register(
            "git_ref_lookups",
            "Count of git ref lookups (one per look at a remote that found nothing new)",
            metrics.git_ref_lookups.clone(),
        );
        r.register(
            "git_fetches",
            "Count of git packs fetched",
            metrics.git_fetches.clone(),
        );
        r.register(
            "webhook_requests",
            "Count of webhook requests, by result (accepted, ignored, rejected)",
            metrics.webhook_requests.clone(),
        );
        metrics
    }

    /// Counts what one git source read did on the network.
    pub fn git(&self, ref_lookups: u32, packs: u32) {
        self.git_ref_lookups.inc_by(u64::from(ref_lookups));
        self.git_fetches.inc_by(u64::from(packs));
    }

    /// Counts a webhook request with `result`.
    pub fn webhook(&self, result: &str) {
        self.webhook_requests
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Counts a reconcile of `kind` and returns a guard that observes its duration on drop.
    pub fn reconcile(&self, kind: &str) -> ReconcileTimer {
        let labels = KindLabels {
            kind: kind.to_string(),
        };
        self.reconcile_runs.get_or_create(&labels).inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.reconcile_duration.get_or_create(&labels).clone(),
        }
    }

    /// Counts a failure of `kind` with `reason`.
    pub fn failure(&self, kind: &str, reason: &str) {
        self.reconcile_failures
            .get_or_create(&FailureLabels {
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }
}

/// Observes a reconcile's duration when dropped.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// What answers `POST /hooks/…` on the admin port (the webhook receiver).
pub trait Hooks: Send + Sync {
    /// Handles a request to `path` with headers (names lowercase) and body; returns the
    /// status code and a short body.
    fn handle<'a>(
        &'a self,
        path: &'a str,
        headers: &'a std::collections::BTreeMap<String, String>,
        body: &'a [u8],
    ) -> futures::future::BoxFuture<'a, (u16, String)>;
}

/// The largest webhook body read (GitHub caps payloads at 25 MB; pushes are far smaller).
const MAX_HOOK_BODY: usize = 10 * 1024 * 1024;

/// What the admin port serves.
pub struct Admin {
    /// The registry behind `/metrics`.
    pub registry: Registry,
    /// `/readyz` answers 200 once this is true (the controller started and found its CRDs).
    pub ready: AtomicBool,
    /// The webhook receiver; `/hooks/…` is 404 without one.
    pub hooks: Option<Arc<dyn Hooks>>,
}

/// Serves `/metrics`, `/healthz`, `/readyz` and `POST /hooks/<provider>` on `addr` until
/// the task is dropped.
pub async fn serve(addr: SocketAddr, admin: Arc<Admin>) -> std::io::Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};

    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "Admin port listening");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(error) => {
                tracing::debug!(%error, "Admin accept failed");
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |req: hyper::Request<hyper::body::Incoming>| {
                    let admin = admin.clone();
                    async move {
                        if req.uri().path().starts_with("/hooks/") {
                            return Ok(hook(&admin, req).await);
                        }
                        let (status, ctype, body) = match req.uri().path() {
                            "/metrics" => {
                                let mut text = String::new();
                                match prometheus_client::encoding::text::encode(
                                    &mut text,
                                    &admin.registry,
                                ) {
                                    Ok(()) => (
                                        StatusCode::OK,
                                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                        text,
                                    ),
                                    Err(_) => (
                                        StatusCode::INTERNAL_SERVER_ERROR,
                                        "text/plain",
                                        "encoding failed\n".into(),
                                    ),
                                }
                            }
                            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".into()),
                            "/readyz" if admin.ready.load(Ordering::Relaxed) => {
                                (StatusCode::OK, "text/plain", "ok\n".into())
                            }
                            "/readyz" => (
                                StatusCode::SERVICE_UNAVAILABLE,
                                "text/plain",
                                "starting\n".into(),
                            ),
                            _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
                        };
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = status;
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static(ctype),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    }
                },
            );
            let io = hyper_util::rt::TokioIo::new(stream);
            // NB: http1 keep-alive stays on: GitHub and GitLab reuse connections.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

async fn hook(
    admin: &Admin,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    use http_body_util::{BodyExt, Full, Limited};
    use hyper::body::Bytes;
    let reply = |status: u16, body: String| {
        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        response
    };
    let Some(hooks) = admin.hooks.clone() else {
        return reply(
            404,
            "webhooks are off: start the controller with --webhook-secret-file\n".into(),
        );
    };
    if req.method() != hyper::Method::POST {
        return reply(405, "POST only\n".into());
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_HOOK_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(413, "body too large or unreadable\n".into()),
    };
    let headers: std::collections::BTreeMap<String, String> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect();
    let (status, text) = hooks.handle(parts.uri.path(), &headers, &body).await;
    reply(status, text)
}
