//! Faults the harness injects into its own answers, for tests of how a client survives an
//! unreliable API server: 409 Conflict on writes, 500 InternalError, watches that end with
//! 410 Expired or are cut short, and slow responses. Off until a test calls
//! [`Faults::enable`] with a seed and a [`Profile`]; the same seed and the same sequence of
//! requests give the same faults. Requests from `kubectl` (the test's own eyes) are never
//! touched. Every other request is recorded, so a test can count what a client sent per
//! minute and see which faults it met.
//!
//! The only hook is in `http::handle`: [`Faults::decide`] before routing, and
//! [`Injected::respond`] / [`Injected::wrap`] around the response.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use super::http::Body;
use super::status::ApiError;
use crate::chaos::Rng;

/// How often each fault strikes: a probability per request it applies to.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// 409 Conflict ("the object has been modified") on writes: POST, PUT, PATCH, DELETE.
    pub conflict: f64,
    /// 500 InternalError on any request but a watch.
    pub server_error: f64,
    /// A watch answered by one ERROR event carrying 410 Expired, then closed.
    pub gone: f64,
    /// A watch cut after a random time up to `drop_after`.
    pub drop_watch: f64,
    /// The longest a cut watch lives.
    pub drop_after: Duration,
    /// A response delayed by a random time up to `slow_max`.
    pub slow: f64,
    /// The longest delay.
    pub slow_max: Duration,
}

impl Profile {
    /// Every fault at once, often enough that a few minutes of a controller's life meet
    /// each many times: 10% conflicts, 5% server errors, 10% watches gone, 30% watches
    /// cut within 5 s, 10% of responses up to 2 s late.
    pub fn chaos() -> Profile {
        Profile {
            conflict: 0.10,
            server_error: 0.05,
            gone: 0.10,
            drop_watch: 0.30,
            drop_after: Duration::from_secs(5),
            slow: 0.10,
            slow_max: Duration::from_secs(2),
        }
    }
}

/// A fault, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// 409 Conflict.
    Conflict,
    /// 500 InternalError.
    ServerError,
    /// 410 Expired in a watch.
    Gone,
    /// A watch cut short.
    DropWatch,
    /// A slow response.
    Slow,
}

/// One request a client (not kubectl) sent.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// `GET`, `PATCH`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Whether it was a watch.
    pub watch: bool,
    /// The fault it met, if any.
    pub fault: Option<Kind>,
}

/// The injector: one per server, off by default.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    on: Option<(Profile, Rng)>,
    seen: Vec<Seen>,
}

/// What [`Faults::decide`] chose for one request.
#[derive(Debug, Default)]
pub struct Injected {
    respond: Option<(Kind, bool)>,
    cut_after: Option<Duration>,
}

impl Faults {
    /// Starts injecting faults drawn from `seed` at the rates of `profile`.
    pub fn enable(&self, seed: u64, profile: Profile) {
        self.lock().on = Some((profile, Rng::new(seed)));
    }

    /// Stops injecting (recording goes on).
    pub fn disable(&self) {
        self.lock().on = None;
    }

    /// The requests seen since `t`.
    pub fn seen_since(&self, t: Instant) -> Vec<Seen> {
        self.lock()
            .seen
            .iter()
            .filter(|s| s.at >= t)
            .cloned()
            .collect()
    }

    /// How many of each fault were injected so far.
    pub fn injected(&self) -> BTreeMap<Kind, usize> {
        let mut counts = BTreeMap::new();
        for kind in self.lock().seen.iter().filter_map(|s| s.fault) {
            *counts.entry(kind).or_default() += 1;
        }
        counts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a request and picks its fault; sleeps here when the fault is a delay.
    pub async fn decide(
        &self,
        method: &Method,
        path: &str,
        watch: bool,
        user_agent: &str,
    ) -> Injected {
        if user_agent.starts_with("kubectl") {
            return Injected::default();
        }
        let (injected, delay, kind) = {
            let mut state = self.lock();
            let (injected, delay, kind) = match state.on.as_mut() {
                Some((profile, rng)) => draw(profile, rng, method, watch),
                None => (Injected::default(), None, None),
            };
            state.seen.push(Seen {
                at: Instant::now(),
                method: method.to_string(),
                path: path.to_string(),
                watch,
                fault: kind,
            });
            (injected, delay, kind)
        };
        if let Some(delay) = delay {
            tracing::debug!(?kind, path, ?delay, "Injected a slow response");
            tokio::time::sleep(delay).await;
        }
        injected
    }
}

fn draw(
    profile: &Profile,
    rng: &mut Rng,
    method: &Method,
    watch: bool,
) -> (Injected, Option<Duration>, Option<Kind>) {
    let write = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let mut injected = Injected::default();
    if write && rng.chance(profile.conflict) {
        injected.respond = Some((Kind::Conflict, false));
        return (injected, None, Some(Kind::Conflict));
    }
    if !watch && rng.chance(profile.server_error) {
        injected.respond = Some((Kind::ServerError, false));
        return (injected, None, Some(Kind::ServerError));
    }
    if watch && rng.chance(profile.gone) {
        injected.respond = Some((Kind::Gone, true));
        return (injected, None, Some(Kind::Gone));
    }
    if watch && rng.chance(profile.drop_watch) {
        let after = rng.between(Duration::ZERO, profile.drop_after);
        injected.cut_after = Some(after);
        return (injected, None, Some(Kind::DropWatch));
    }
    if rng.chance(profile.slow) {
        let delay = rng.between(Duration::ZERO, profile.slow_max);
        return (injected, Some(delay), Some(Kind::Slow));
    }
    (injected, None, None)
}

impl Injected {
    /// The answer that replaces the real one, when the fault is an error.
    pub fn respond(&self, path: &str) -> Option<Response<Body>> {
        let (kind, _) = self.respond?;
        let error = match kind {
            Kind::Conflict => {
                let (group, plural, name) = object_of(path);
                ApiError::conflict(
                    group,
                    plural,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            }
            Kind::Gone => {
                // As a real server ends a watch whose resourceVersion it no longer has.
                let error = ApiError::expired("too old resource version (injected)");
                let mut line = json!({"type": "ERROR", "object": error.to_status()}).to_string();
                line.push('\n');
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.try_send(Bytes::from(line));
                let mut r = Response::new(Body::Stream(rx));
                set_json(&mut r);
                return Some(r);
            }
            _ => ApiError::internal(
                "an error on the server (\"injected fault\") has prevented the request from succeeding",
            ),
        };
        let mut r = Response::new(Body::Full(Some(Bytes::from(error.to_status().to_string()))));
        *r.status_mut() =
            StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        set_json(&mut r);
        Some(r)
    }

    /// The real answer, with a watch cut short when that is the fault.
    pub fn wrap(&self, response: Response<Body>) -> Response<Body> {
        let Some(after) = self.cut_after else {
            return response;
        };
        let (parts, body) = response.into_parts();
        let Body::Stream(mut upstream) = body else {
            return Response::from_parts(parts, body);
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(after);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => return,
                    chunk = upstream.recv() => {
                        let Some(chunk) = chunk else { return };
                        if tx.send(chunk).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Response::from_parts(parts, Body::Stream(rx))
    }
}

/// (group, plural, name) of an object path, as far as it has them.
fn object_of(path: &str) -> (&str, &str, &str) {
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.last() == Some(&"status") {
        segs.pop();
    }
    let group = match segs.first() {
        Some(&"apis") => segs.get(1).copied().unwrap_or_default(),
        _ => "",
    };
    let n = segs.len();
    let name = segs.last().copied().unwrap_or_default();
    let plural = n.checked_sub(2).and_then(|i| segs.get(i)).copied();
    (group, plural.unwrap_or_default(), name)
}

fn set_json(r: &mut Response<Body>) {
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
}
