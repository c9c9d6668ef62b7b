//! The admin port: `/metrics` (Prometheus text), `/healthz`, `/readyz`, and the webhook
//! receiver's `/hooks/*` when one is configured. One port for everything that is not the
//! Kubernetes API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::registry::Registry;

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
