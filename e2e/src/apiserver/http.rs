//! HTTP: authentication, routing of Kubernetes REST paths to discovery, OpenAPI and the store,
//! query parameters, content negotiation (JSON, Table, aggregated discovery) and response
//! bodies (full or streamed). Holds no state of its own.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::resources::ResourceType;
use super::selector::Selector;
use super::ssa::{self, ManagedOp};
use super::status::{ApiError, ApiResult};
use super::store::{Store, WriteOpts};
use super::{discovery, openapi, patch, table, watch};

/// A response body: all at once, or a stream of watch events.
pub enum Body {
    /// Complete body.
    Full(Option<Bytes>),
    /// Streamed chunks.
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// Shared by all connections.
pub struct Server {
    /// The objects.
    pub store: Arc<Store>,
    /// What was asked of it.
    pub requests: Arc<super::requests::RequestLog>,
    /// Required bearer token, if any.
    pub token: Option<String>,
    /// How often watches get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// `host:port` for `/api`.
    pub addr: String,
    /// Whether to answer aggregated discovery requests.
    pub aggregated_discovery: bool,
    /// Flips to true on shutdown; ends watches.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Injected faults; off unless a test turns them on.
    pub faults: Arc<super::faults::Faults>,
}

fn respond(code: u16, content_type: &str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(body)));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    respond(code, "application/json", Bytes::from(v.to_string()))
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// Percent-decoded query parameters.
pub fn query_params(q: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = q else { return vec![] };
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1" | ""))
    }
}

fn parse_body(body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(je) => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("request body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text).map_err(|ye| {
                ApiError::bad_request(format!(
                    "unable to decode request body: json: {je}; yaml: {ye}"
                ))
            })
        }
    }
}

/// Handles one request.
pub async fn handle(
    srv: Arc<Server>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Some(token) = &srv.token {
        let ok = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {token}"));
        if !ok {
            return Ok(error_response(&ApiError::unauthorized()));
        }
    }
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "reading body: {e}"
            ))));
        }
    };
    let header = |name: hyper::header::HeaderName| -> String {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let ctx = Ctx {
        method: parts.method.clone(),
        accept: header(hyper::header::ACCEPT),
        content_type: header(hyper::header::CONTENT_TYPE),
        user_agent: header(hyper::header::USER_AGENT),
        query: Query(query_params(parts.uri.query())),
    };
    let path = parts.uri.path().to_string();
    let ct = ctx.content_type.split(';').next().unwrap_or("").trim();
    let mut body = body;
    if !body.is_empty() && (ct.contains("protobuf") || ct.contains("cbor")) {
        // JSON and YAML bodies, plus the few protobuf ones kubectl's typed commands send.
        match super::proto::decode(&body).filter(|_| ct == "application/vnd.kubernetes.protobuf") {
            Some(v) => body = Bytes::from(v.to_string()),
            None => {
                return Ok(error_response(&ApiError::unsupported_media_type(&[
                    "application/json",
                    "application/yaml",
                ])));
            }
        }
    }
    let fault = srv
        .faults
        .decide(&ctx.method, &path, ctx.query.flag("watch"), &ctx.user_agent)
        .await;
    if let Some(r) = fault.respond(&path) {
        return Ok(r);
    }
    let res = route(&srv, &ctx, &path, &body);
    Ok(match res {
        Ok(r) => fault.wrap(r),
        Err(e) => {
            tracing::debug!(method = %ctx.method, path, code = e.code, message = %e.message, "Request failed");
            error_response(&e)
        }
    })
}

struct Ctx {
    method: Method,
    accept: String,
    content_type: String,
    user_agent: String,
    query: Query,
}

impl Ctx {
    fn wants_table(&self) -> bool {
        self.accept
            .split(',')
            .next()
            .is_some_and(|first| first.contains("as=Table"))
    }

    fn manager(&self) -> String {
        match self.query.get("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => self
                .user_agent
                .split('/')
                .next()
                .unwrap_or("unknown")
                .to_string(),
        }
    }
}

fn route(srv: &Arc<Server>, ctx: &Ctx, path: &str, body: &[u8]) -> ApiResult<Response<Body>> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let types = srv.store.types();
    let get_only = |r: Response<Body>| {
        if ctx.method == Method::GET {
            Ok(r)
        } else {
            Err(ApiError::method_not_allowed(ctx.method.as_str()))
        }
    };
    let aggregated = srv.aggregated_discovery
        && ctx
            .accept
            .split(',')
            .next()
            .is_some_and(|a| a.contains("as=APIGroupDiscoveryList") && a.contains("v=v2;"));
    match segs.as_slice() {
        ["version"] => get_only(json_response(200, &discovery::version())),
        ["healthz" | "readyz" | "livez"] => {
            get_only(respond(200, "text/plain", Bytes::from_static(b"ok")))
        }
        ["api"] if aggregated => get_only(respond(
            200,
            discovery::AGGREGATED_V2,
            Bytes::from(discovery::aggregated(&types, true).to_string()),
        )),
        ["apis"] if aggregated => get_only(respond(
            200,
            discovery::AGGREGATED_V2,
            Bytes::from(discovery::aggregated(&types, false).to_string()),
        )),
        ["api"] => get_only(json_response(200, &discovery::core_versions(&srv.addr))),
        ["apis"] => get_only(json_response(200, &discovery::group_list(&types))),
        ["api", "v1"] => get_only(json_response(
            200,
            &discovery::resource_list(&types, "", "v1").ok_or_else(ApiError::no_route)?,
        )),
        ["apis", g] => get_only(json_response(
            200,
            &discovery::group(&types, g).ok_or_else(ApiError::no_route)?,
        )),
        ["apis", g, v] => get_only(json_response(
            200,
            &discovery::resource_list(&types, g, v).ok_or_else(ApiError::no_route)?,
        )),
        ["openapi", "v2"] => {
            let json_ok =
                ctx.accept.is_empty() || ctx.accept.contains("json") || ctx.accept.contains("*/*");
            if !json_ok {
                // kubectl asks for protobuf; it falls back when told it is not acceptable.
                return Err(ApiError::not_acceptable(
                    "only application/json is supported for /openapi/v2",
                ));
            }
            get_only(json_response(200, &openapi::v2(&types)))
        }
        ["openapi", "v3"] => get_only(json_response(200, &openapi::v3_root(&types))),
        ["openapi", "v3", "api", v] => get_only(json_response(
            200,
            &openapi::v3_group_version(&types, "", v).ok_or_else(ApiError::no_route)?,
        )),
        ["openapi", "v3", "apis", g, v] => get_only(json_response(
            200,
            &openapi::v3_group_version(&types, g, v).ok_or_else(ApiError::no_route)?,
        )),
        ["api", "v1", rest @ ..] => resource(srv, ctx, &types, "", "v1", rest, body),
        ["apis", g, v, rest @ ..] => resource(srv, ctx, &types, g, v, rest, body),
        _ => Err(ApiError::no_route()),
    }
}

fn resource(
    srv: &Arc<Server>,
    ctx: &Ctx,
    types: &[ResourceType],
    group: &str,
    version: &str,
    rest: &[&str],
    body: &[u8],
) -> ApiResult<Response<Body>> {
    let (ns, rest) = match rest {
        ["namespaces", ns, r @ ..]
            if !r.is_empty() && !(r.len() == 1 && (r[0] == "status" || r[0] == "finalize")) =>
        {
            (Some(*ns), r)
        }
        r => (None, r),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return Err(ApiError::no_route()),
    };
    // Recorded before the type is looked up: RBAC is checked for kinds that do not exist too.
    srv.requests.record(super::requests::Request {
        verb: super::requests::verb(ctx.method.as_str(), name.is_some(), ctx.query.flag("watch"))
            .into(),
        group: group.into(),
        resource: plural.into(),
        subresource: sub.unwrap_or("").into(),
        namespace: ns.unwrap_or("").into(),
        user_agent: ctx.user_agent.clone(),
    });
    let rt = types
        .iter()
        .find(|t| t.group == group && t.version == version && t.plural == plural)
        .ok_or_else(ApiError::no_route)?;
    if (!rt.namespaced && ns.is_some()) || (rt.namespaced && ns.is_none() && name.is_some()) {
        return Err(ApiError::no_route());
    }
    match sub {
        None => {}
        Some("status") if rt.status_subresource => {}
        Some(_) => return Err(ApiError::no_route()),
    }
    let ns_str = ns.unwrap_or("");
    let q = &ctx.query;
    let dry_run = q.get("dryRun") == Some("All");
    let strict = q.get("fieldValidation") == Some("Strict");
    let store = &srv.store;
    let opts = |managed: ManagedOp| WriteOpts {
        rt,
        namespace: ns_str,
        subresource: sub,
        dry_run,
        managed,
        strict,
    };
    match (&ctx.method, name) {
        (&Method::GET, None) if q.flag("watch") => {
            let params = watch::WatchParams {
                resource_version: q.get("resourceVersion").map(String::from),
                send_initial_events: q.flag("sendInitialEvents"),
                bookmarks: q.flag("allowWatchBookmarks"),
                timeout: q
                    .get("timeoutSeconds")
                    .and_then(|s| s.parse().ok())
                    .map(Duration::from_secs),
                namespace: ns.map(String::from),
                labels: Selector::labels(q.get("labelSelector").unwrap_or(""))?,
                fields: Selector::fields(q.get("fieldSelector").unwrap_or(""))?,
            };
            let rx = watch::start(
                store,
                rt,
                params,
                srv.bookmark_interval,
                srv.shutdown.clone(),
            )?;
            let mut r = Response::new(Body::Stream(rx));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        (&Method::GET, None) => {
            let labels = Selector::labels(q.get("labelSelector").unwrap_or(""))?;
            let fields = Selector::fields(q.get("fieldSelector").unwrap_or(""))?;
            let (items, rv) = store.list(rt, ns);
            let items: Vec<Value> = items
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .collect();
            if ctx.wants_table() {
                return Ok(json_response(
                    200,
                    &table::table(
                        rt,
                        &items,
                        Some(rv),
                        q.get("includeObject").unwrap_or("Metadata"),
                    ),
                ));
            }
            Ok(json_response(
                200,
                &json!({"kind": rt.list_kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            ))
        }
        (&Method::GET, Some(n)) => {
            let obj = store.get(rt, ns_str, n)?;
            if ctx.wants_table() {
                return Ok(json_response(
                    200,
                    &table::table(
                        rt,
                        &[obj],
                        None,
                        q.get("includeObject").unwrap_or("Metadata"),
                    ),
                ));
            }
            Ok(json_response(200, &obj))
        }
        (&Method::POST, None) => {
            let obj = parse_body(body)?;
            let created = store.create(&opts(ManagedOp::Update(ctx.manager())), obj)?;
            Ok(json_response(201, &created))
        }
        (&Method::PUT, Some(n)) => {
            let obj = parse_body(body)?;
            let (updated, _) = store.update(&opts(ManagedOp::Update(ctx.manager())), n, obj)?;
            Ok(json_response(200, &updated))
        }
        (&Method::PATCH, Some(n)) => patch_request(ctx, rt, &opts(ManagedOp::Keep), store, n, body),
        (&Method::DELETE, Some(n)) => {
            let options = parse_body(body)?;
            let obj = store.delete(rt, ns_str, n, &options, dry_run)?;
            Ok(json_response(200, &obj))
        }
        (&Method::DELETE, None) => {
            let labels = Selector::labels(q.get("labelSelector").unwrap_or(""))?;
            let fields = Selector::fields(q.get("fieldSelector").unwrap_or(""))?;
            let options = parse_body(body)?;
            let (items, _) = store.list(rt, ns);
            let mut deleted = vec![];
            for o in items
                .into_iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
            {
                let n = o["metadata"]["name"].as_str().unwrap_or("").to_string();
                let ons = o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                match store.delete(rt, &ons, &n, &options, dry_run) {
                    Ok(d) => deleted.push(d),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let (_, rv) = store.list(rt, ns);
            Ok(json_response(
                200,
                &json!({"kind": rt.list_kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": deleted}),
            ))
        }
        (m, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

fn patch_request(
    ctx: &Ctx,
    rt: &ResourceType,
    base: &WriteOpts<'_>,
    store: &Store,
    name: &str,
    body: &[u8],
) -> ApiResult<Response<Body>> {
    let ct = ctx
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let manager = ctx.manager();
    let accepted: &[&str] = if rt.custom {
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]
    } else {
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ]
    };
    if !accepted.contains(&ct.as_str()) {
        return Err(ApiError::unsupported_media_type(accepted));
    }
    let patch_body = parse_body(body)?;
    if ct == "application/apply-patch+yaml" {
        let force = ctx.query.flag("force");
        let field_manager = ctx.query.get("fieldManager").unwrap_or("").to_string();
        let (obj, created) = store.modify(base, name, true, |live| {
            ssa::apply(
                live,
                patch_body,
                &field_manager,
                force,
                base.subresource,
                rt.status_subresource,
                rt.schema.as_ref(),
                (rt.group.as_str(), rt.kind.as_str(), name),
            )
        })?;
        return Ok(json_response(if created { 201 } else { 200 }, &obj));
    }
    let (obj, _) = store.modify(base, name, false, |live| {
        let mut obj = live.cloned().unwrap_or(Value::Null);
        match ct.as_str() {
            "application/json-patch+json" => patch::json_patch(&mut obj, &patch_body)?,
            "application/merge-patch+json" => patch::merge_patch(&mut obj, &patch_body),
            _ => patch::strategic_merge_patch(&mut obj, &patch_body),
        }
        Ok((obj, ManagedOp::Update(manager)))
    })?;
    Ok(json_response(200, &obj))
}
