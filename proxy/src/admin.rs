//! The admin listener (loopback only): health, metrics, read-only SQL over the recorder's database
//! and flush; and [`Client`], the protocol's client half (what `agentcap query` and
//! `agentcap conversations` use).
//!
//! Every request passes [`check_request`] before any endpoint runs:
//! - `Host` must name a loopback address (`localhost`, `127.0.0.1`, `[::1]`, any port) or one of
//!   [`AdminConfig::allowed_hosts`]: a page on another name that rebinds its DNS to 127.0.0.1
//!   cannot read the answers.
//! - `Origin`, when present, must be this listener's own (`http://` + the `Host` sent), and
//!   `Sec-Fetch-Site`, when present, `same-origin` or `none`: a web page the user visits cannot
//!   drive the listener (403).
//! - When the proxy has an `--auth-token`, every request must carry it in `X-Agentcap-Token`
//!   (compared in constant time; 401 otherwise).
//! - `POST` requests (`/query`, `/export`, `/flush`) take `Content-Type: application/json` only (415 otherwise),
//!   so a browser cannot send them as a "simple" cross-origin request; bodies are capped (413).
//!
//! `POST /query` takes `{"sql": "...", "params": [...]}` (params optional, bound to `?`), runs on a
//! thread of its own within [`QueryLimits`], at most [`AdminConfig::max_concurrent_queries`] at once
//! (429 beyond), and is interrupted when its client goes away.
//!
//! `POST /export` takes an [`ExportRequest`] (one file of `agentcap export`), produces it with
//! [`crate::export::produce`] into the recorder's scratch directory under the same permits, within
//! [`AdminConfig::export`], and streams it back (row count and cap in `x-agentcap-export-*` headers).
//!
//! Every other path goes to the [`AdminMount`] when one is configured (the CLI mounts the web UI there;
//! this crate knows nothing of it), after the same checks. It reads the recording through a [`QueryGate`]:
//! the `/query` path, limits and permits. A browser cannot send `X-Agentcap-Token`, so with a token
//! `GET /login?token=T` sets an `HttpOnly`, `SameSite=Strict` cookie holding the token's SHA-256, which
//! `GET` and `HEAD` requests may present instead of the header (never `POST`: the JSON endpoints stay
//! header-only).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, oneshot, watch};

use crate::conn::{self, same_secret};
use crate::export::{
    ExportError, ExportLimits, ExportOptions, ExportReport, ExportRequest, Produced,
    move_into_place,
};
use crate::recorder::{
    QueryCancel, QueryLimits, QueryResult, RecorderError, RecorderHandle, StopReason,
};

/// The header that carries the token on the admin listener (the same as on the client listener).
pub const TOKEN_HEADER: &str = agentcap_wire::vocab::headers::TOKEN;

/// The cookie `GET /login?token=` sets for browsers: the hex SHA-256 of the token, `HttpOnly`,
/// `SameSite=Strict`. Accepted instead of [`TOKEN_HEADER`] on `GET` and `HEAD` only.
pub const TOKEN_COOKIE: &str = "agentcap_admin";

/// The body of every admin response: the endpoints' JSON, or a mounted handler's (possibly streamed).
pub type AdminBody = BoxBody<Bytes, Infallible>;

/// A mounted handler, serving one request that passed [`check_request`].
pub type MountedHandler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<AdminBody>> + Send>>
        + Send
        + Sync,
>;

/// What a mount is given once, when the admin listener starts.
#[derive(Debug, Clone)]
pub struct MountContext {
    /// The read-only query path of `POST /query`, with its limits and permits.
    pub gate: QueryGate,
    /// The listener's bound address.
    pub addr: SocketAddr,
    /// [`AdminConfig::allowed_hosts`].
    pub allowed_hosts: Vec<String>,
}

type MountFactory = dyn Fn(MountContext) -> Result<MountedHandler, String> + Send + Sync;

/// A handler for every path the admin API does not own (e.g. a web UI), built once when the listener
/// starts. Its requests pass the same Host / Origin / token checks first.
#[derive(Clone)]
pub struct AdminMount(Arc<MountFactory>);

impl AdminMount {
    /// A mount built by `f` when the listener starts (an error stops the proxy's start).
    pub fn new(
        f: impl Fn(MountContext) -> Result<MountedHandler, String> + Send + Sync + 'static,
    ) -> Self {
        AdminMount(Arc::new(f))
    }

    fn build(&self, ctx: MountContext) -> Result<MountedHandler, String> {
        (self.0)(ctx)
    }
}

impl std::fmt::Debug for AdminMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminMount")
    }
}

impl PartialEq for AdminMount {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for AdminMount {}

/// The read-only query path `POST /query` uses (the recorder's four layers, [`AdminConfig::limits`],
/// at most [`AdminConfig::max_concurrent_queries`] at once), for a mounted handler. Cheap to clone.
#[derive(Debug, Clone)]
pub struct QueryGate {
    rec: RecorderHandle,
    limits: QueryLimits,
    permits: Arc<Semaphore>,
}

/// Why a [`QueryGate`] query failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Every permit stayed taken for the query timeout (the listener is busy).
    #[error("the admin listener is busy: every query permit stayed taken for {0:?}")]
    Busy(std::time::Duration),
    /// The recorder refused or failed the query.
    #[error(transparent)]
    Query(#[from] RecorderError),
}

impl QueryGate {
    /// The bounds each query runs within.
    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// The recorder (its `connection()` is for the embedding program's own reads; see its docs).
    pub fn recorder(&self) -> &RecorderHandle {
        &self.rec
    }

    /// Runs one read-only statement on the calling thread, which it blocks: waits for a permit (at most
    /// the query timeout, from a thread inside a tokio runtime's context; elsewhere it does not wait),
    /// then runs through [`RecorderHandle::query_with`] within the limits, interruptible by `cancel`.
    pub fn query_blocking(
        &self,
        sql: &str,
        params: &[Value],
        cancel: &QueryCancel,
    ) -> Result<QueryResult, GateError> {
        let busy = GateError::Busy(self.limits.timeout);
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match tokio::runtime::Handle::try_current() {
                Ok(rt) => rt
                    .block_on(tokio::time::timeout(
                        self.limits.timeout,
                        self.permits.clone().acquire_owned(),
                    ))
                    .map_err(|_| GateError::Busy(self.limits.timeout))?
                    .map_err(|_| busy)?,
                Err(_) => return Err(busy),
            },
        };
        let r = self.rec.query_with(sql, params, &self.limits, cancel);
        drop(permit);
        Ok(r?)
    }
}

/// Settings of the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Host names (without port) accepted besides the loopback ones, e.g. a name in /etc/hosts
    /// that points at 127.0.0.1. Compared case-insensitively.
    pub allowed_hosts: Vec<String>,
    /// Bounds on each query.
    pub limits: QueryLimits,
    /// Largest request body accepted, in bytes (default 1 MiB).
    pub max_body_bytes: usize,
    /// Queries running at once (default 4); more are answered 429.
    pub max_concurrent_queries: usize,
    /// The handler of every other path (none by default: 404).
    pub mount: Option<AdminMount>,
    /// Bounds of each `POST /export` file (rows, bytes, time).
    pub export: ExportLimits,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            allowed_hosts: Vec::new(),
            limits: QueryLimits::default(),
            max_body_bytes: 1 << 20,
            max_concurrent_queries: 4,
            mount: None,
            export: ExportLimits::default(),
        }
    }
}

impl AdminConfig {
    /// Checks the settings once, at start.
    pub fn validate(&self) -> Result<(), String> {
        if self.limits.max_rows == 0 || self.limits.max_bytes == 0 || self.limits.timeout.is_zero()
        {
            return Err("the admin query limits (rows, bytes, timeout) must be positive".into());
        }
        if self.max_body_bytes == 0 || self.max_concurrent_queries == 0 {
            return Err("the admin body limit and query concurrency must be positive".into());
        }
        Ok(())
    }
}

/// What the admin endpoints read.
pub struct AdminState {
    /// The recorder.
    pub rec: RecorderHandle,
    /// When the proxy started.
    pub started: Instant,
    /// The upstream URL (for `/health`).
    pub upstream: String,
    /// The DuckDB file, as an absolute path when it can be resolved.
    pub db_path: String,
    /// The proxy's `--auth-token`, required here too when set.
    pub token: Option<String>,
    /// Settings.
    pub cfg: AdminConfig,
    /// Permits for running queries.
    pub queries: Arc<Semaphore>,
    /// The handler of the paths the admin API does not own, once built ([`AdminState::mount`]).
    pub mounted: Option<MountedHandler>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("upstream", &self.upstream)
            .field("db_path", &self.db_path)
            .field("cfg", &self.cfg)
            .field("mounted", &self.mounted.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// One of the permits `/query` and `/export` share, or, when they are all taken, the message that says so.
    fn query_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, String> {
        self.queries.clone().try_acquire_owned().map_err(|_| {
            format!(
                "{} queries are already running; try again when one ends",
                self.cfg.max_concurrent_queries
            )
        })
    }

    /// The state for `rec`, with a query semaphore sized from `cfg`.
    pub fn new(
        rec: RecorderHandle,
        upstream: String,
        db_path: String,
        token: Option<String>,
        cfg: AdminConfig,
    ) -> Self {
        let queries = Arc::new(Semaphore::new(cfg.max_concurrent_queries));
        AdminState {
            rec,
            started: Instant::now(),
            upstream,
            db_path,
            token,
            cfg,
            queries,
            mounted: None,
        }
    }

    /// The read-only query path of `POST /query`, for a mounted handler.
    pub fn gate(&self) -> QueryGate {
        QueryGate {
            rec: self.rec.clone(),
            limits: self.cfg.limits,
            permits: self.queries.clone(),
        }
    }

    /// Builds [`AdminConfig::mount`], if any, for the listener bound at `addr`.
    pub fn mount(&mut self, addr: SocketAddr) -> Result<(), String> {
        if let Some(m) = &self.cfg.mount {
            let ctx = MountContext {
                gate: self.gate(),
                addr,
                allowed_hosts: self.cfg.allowed_hosts.clone(),
            };
            self.mounted = Some(m.build(ctx)?);
        }
        Ok(())
    }
}

/// `GET /health`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The upstream URL.
    pub upstream: String,
    /// The DuckDB file the proxy records into.
    pub db: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Queries running now.
    #[serde(default)]
    pub queries_running: usize,
}

/// `POST /query`'s request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One read-only statement.
    pub sql: String,
    /// Values bound to its `?` placeholders, in order.
    #[serde(default)]
    pub params: Vec<Value>,
}

/// `POST /query`'s answer: the result, and which database answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryAnswer {
    /// The rows.
    #[serde(flatten)]
    pub result: QueryResult,
    /// The DuckDB file that answered.
    pub db: String,
}

fn reply(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn error(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Response<Full<Bytes>> {
    reply(status, &json!({"error": message.to_string(), "kind": kind}))
}

/// The host of a `Host` value (`name[:port]`, `[v6][:port]`), lowercased; `None` when malformed.
fn host_name(authority: &str) -> Option<String> {
    let a = authority.trim();
    let (host, rest) = if let Some(v6) = a.strip_prefix('[') {
        let end = v6.find(']')?;
        (&a[..end + 2], &v6[end + 1..])
    } else {
        match a.find(':') {
            Some(i) => (&a[..i], &a[i..]),
            None => (a, ""),
        }
    };
    let port_ok = rest.is_empty()
        || rest.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
    (!host.is_empty() && port_ok).then(|| host.to_ascii_lowercase())
}

fn loopback_name(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The Host the request names (the header, or the URI's authority over HTTP/2).
fn request_host<B>(req: &Request<B>) -> Option<String> {
    match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok().map(str::to_owned),
        None => req.uri().authority().map(|a| a.as_str().to_owned()),
    }
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// Why [`check_request`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status to answer.
    pub status: StatusCode,
    /// A short machine-readable kind (`forbidden`, `unauthorized`, `unsupported_media_type`).
    pub kind: &'static str,
    /// The explanation.
    pub message: String,
}

fn refuse(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        kind,
        message: message.into(),
    }
}

/// The checks every admin request passes before an endpoint runs (see the module's
/// documentation).
pub fn check_request<B>(st: &AdminState, req: &Request<B>) -> Result<(), Refusal> {
    let Some(host) = request_host(req) else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a Host header is required",
        ));
    };
    let allowed = host_name(&host).is_some_and(|name| {
        loopback_name(&name)
            || st
                .cfg
                .allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&name))
    });
    if !allowed {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "Host {host:?} is not a loopback name this listener answers to (see --admin-allow-host)"
            ),
        ));
    }
    let h = req.headers();
    if let Some(origin) = header_str(h, header::ORIGIN) {
        let own = format!("http://{host}");
        if !origin.eq_ignore_ascii_case(&own) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("cross-origin requests are refused (Origin {origin:?} is not {own:?})"),
            ));
        }
    }
    if let Some(site) = header_str(h, "sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("cross-site requests are refused (Sec-Fetch-Site: {site})"),
        ));
    }
    if let Some(token) = &st.token {
        let header_ok = h
            .get(TOKEN_HEADER)
            .is_some_and(|v| same_secret(v.as_bytes(), token.as_bytes()));
        let safe = req.method() == Method::GET || req.method() == Method::HEAD;
        let cookie_ok = safe
            && cookie(h, TOKEN_COOKIE)
                .is_some_and(|c| same_secret(c.as_bytes(), cookie_value(token).as_bytes()));
        // `/login` checks the token it is given itself.
        let login = safe && st.mounted.is_some() && req.uri().path() == "/login";
        if !(header_ok || cookie_ok || login) {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this proxy has an auth token: send it in X-Agentcap-Token (in a browser, open /login?token=TOKEN once)",
            ));
        }
    }
    if req.method() == Method::POST {
        let json = header_str(h, header::CONTENT_TYPE).is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Err(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json",
            ));
        }
    }
    Ok(())
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// What [`TOKEN_COOKIE`] holds for `token`: its SHA-256 in hex (the token itself never sits in the browser).
fn cookie_value(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `GET /login?token=T`: with the right token, sets [`TOKEN_COOKIE`] and redirects to `/`.
fn login(st: &AdminState, query: Option<&str>) -> Response<Full<Bytes>> {
    let Some(expected) = &st.token else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this proxy has no token",
        );
    };
    let given = query.unwrap_or("").split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "token").then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    });
    if !given.is_some_and(|g| same_secret(g.as_bytes(), expected.as_bytes())) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "open /login?token=TOKEN with the proxy's --auth-token",
        );
    }
    let mut r = reply(StatusCode::SEE_OTHER, &json!({"logged_in": true}));
    let set = format!(
        "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        cookie_value(expected)
    );
    if let Ok(v) = HeaderValue::from_str(&set) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    r
}

/// Interrupts the query when the handler's future is dropped (the client went away) before
/// [`CancelOnDrop::disarm`].
struct CancelOnDrop(Option<QueryCancel>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel(StopReason::ClientGone);
        }
    }
}

async fn query(st: &AdminState, body: Bytes) -> Response<Full<Bytes>> {
    let q: QueryRequest = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("send {{\"sql\": \"SELECT ...\", \"params\": [...]}} ({e})"),
            );
        }
    };
    let permit = match st.query_permit() {
        Ok(p) => p,
        Err(busy) => return error(StatusCode::TOO_MANY_REQUESTS, "busy", busy),
    };
    let cancel = QueryCancel::new();
    let on_drop = CancelOnDrop(Some(cancel.clone()));
    let (tx, rx) = oneshot::channel();
    let rec = st.rec.clone();
    let limits = st.cfg.limits;
    // A thread of its own, not tokio's blocking pool: the runtime's shutdown never waits on it.
    let spawned = std::thread::Builder::new()
        .name("agentcap-query".into())
        .spawn(move || {
            let r = rec.query_with(&q.sql, &q.params, &limits, &cancel);
            drop(permit);
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        on_drop.disarm();
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "internal",
            format!("no query thread: {e}"),
        );
    }
    let outcome = rx.await;
    on_drop.disarm();
    match outcome {
        Ok(Ok(result)) => reply(
            StatusCode::OK,
            &serde_json::to_value(QueryAnswer {
                result,
                db: st.db_path.clone(),
            })
            .unwrap_or(Value::Null),
        ),
        Ok(Err(e @ RecorderError::QueryRefused { .. })) => {
            error(StatusCode::BAD_REQUEST, "refused", e)
        }
        Ok(Err(e @ RecorderError::QueryStopped { reason })) => match reason {
            StopReason::Timeout(_) => error(StatusCode::GATEWAY_TIMEOUT, "timeout", e),
            _ => error(StatusCode::SERVICE_UNAVAILABLE, "stopped", e),
        },
        Ok(Err(e @ RecorderError::Stopped)) => error(StatusCode::SERVICE_UNAVAILABLE, "stopped", e),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, "query_error", e),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the query thread ended without an answer",
        ),
    }
}

async fn handle(
    st: Arc<AdminState>,
    req: Request<Incoming>,
) -> Result<Response<AdminBody>, Infallible> {
    if let Err(r) = check_request(&st, &req) {
        return Ok(error(r.status, r.kind, r.message).map(BodyExt::boxed));
    }
    let own = matches!(
        (req.method(), req.uri().path()),
        (&Method::GET, "/health" | "/metrics" | "/metrics.json")
            | (&Method::POST, "/query" | "/flush" | "/export")
    ) || (req.method() == Method::GET
        && req.uri().path() == "/login"
        && st.token.is_some()
        && st.mounted.is_some());
    if (req.method(), req.uri().path()) == (&Method::POST, "/export") {
        return Ok(match read_body(&st, req).await {
            Ok(body) => export(&st, body).await,
            Err(r) => r.map(BodyExt::boxed),
        });
    }
    match &st.mounted {
        Some(mounted) if !own => Ok(mounted(req).await),
        _ => Ok(endpoint(&st, req).await.map(BodyExt::boxed)),
    }
}

async fn endpoint(st: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/login") => login(st, req.uri().query()),
        (Method::GET, "/health") => reply(
            StatusCode::OK,
            &json!({"status": "ok", "upstream": st.upstream, "db": st.db_path, "uptime_s": st.started.elapsed().as_secs(), "queries_running": st.rec.running_queries()}),
        ),
        (Method::GET, "/metrics") => {
            let om = crate::recorder::metrics::wants_openmetrics(
                req.headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            let mut r = reply(StatusCode::OK, &Value::Null);
            *r.body_mut() = Full::new(Bytes::from(st.rec.encode_metrics(om)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(if om {
                    crate::recorder::metrics::OPENMETRICS_CONTENT_TYPE
                } else {
                    crate::recorder::metrics::TEXT_CONTENT_TYPE
                }),
            );
            r
        }
        (Method::GET, "/metrics.json") => reply(
            StatusCode::OK,
            &serde_json::to_value(st.rec.stats()).unwrap_or(Value::Null),
        ),
        (Method::POST, "/flush") => match st.rec.flush().await {
            Ok(()) => reply(StatusCode::OK, &json!({"flushed": true})),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "stopped", e),
        },
        (Method::POST, "/query") => match read_body(st, req).await {
            Ok(body) => query(st, body).await,
            Err(r) => r,
        },
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown admin endpoint; endpoints: GET /health, GET /metrics, GET /metrics.json, POST /query, POST /export, POST /flush",
        ),
    }
}

/// A request body, at most [`AdminConfig::max_body_bytes`] (413 beyond).
async fn read_body(
    st: &AdminState,
    req: Request<Incoming>,
) -> Result<Bytes, Response<Full<Bytes>>> {
    match Limited::new(req.into_body(), st.cfg.max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            Err(if too_big {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is larger than {} bytes", st.cfg.max_body_bytes),
                )
            } else {
                error(StatusCode::BAD_REQUEST, "bad_request", e)
            })
        }
    }
}

/// The response headers of `POST /export` that describe the file.
pub const EXPORT_ROWS_HEADER: &str = "x-agentcap-export-rows";
/// `true` when the row cap was reached (see [`EXPORT_ROWS_HEADER`]).
pub const EXPORT_CAPPED_HEADER: &str = "x-agentcap-export-capped";
/// The DuckDB file that answered.
pub const EXPORT_DB_HEADER: &str = "x-agentcap-db";

/// A response body fed by a thread that reads a file in chunks (bounded channel: the thread
/// waits for the client).
struct FileBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// Chunk size of a streamed export file.
const EXPORT_CHUNK: usize = 256 * 1024;

/// `POST /export`: one file ([`ExportRequest`]) produced on a thread of its own with a fresh
/// read-only connection into the recorder's scratch directory, under a query permit (429 when
/// none is free), within [`AdminConfig::export`], interrupted when the client leaves; then
/// streamed back and removed (it is unlinked once open).
async fn export(st: &AdminState, body: Bytes) -> Response<AdminBody> {
    let fail = |status, kind: &str, msg: String| error(status, kind, msg).map(BodyExt::boxed);
    let req: ExportRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "send {{\"format\": \"parquet|jsonl|har\", \"table\": \"...\", \"filter\": {{...}}}} ({e})"
                ),
            );
        }
    };
    let permit = match st.query_permit() {
        Ok(p) => p,
        Err(busy) => return fail(StatusCode::TOO_MANY_REQUESTS, "busy", busy),
    };
    let cancel = QueryCancel::new();
    let on_drop = CancelOnDrop(Some(cancel.clone()));
    let (tx, rx) = oneshot::channel();
    let rec = st.rec.clone();
    let limits = st.cfg.export;
    let spawned = std::thread::Builder::new()
        .name("agentcap-export".into())
        .spawn(move || {
            let mut produced = None;
            let r = rec.with_read_connection(&cancel, |conn, dir| {
                let Some(dir) = dir else {
                    produced = Some(Err(ExportError::Invalid(
                        "this recorder has no export directory".to_owned(),
                    )));
                    return Ok(());
                };
                produced = Some(crate::export::produce(conn, dir, &req, &limits, &cancel));
                Ok(())
            });
            drop(permit);
            let out = match (r, produced) {
                (Err(e), _) => Err(ExportError::Db(e)),
                (Ok(()), Some(p)) => p,
                (Ok(()), None) => Err(ExportError::Invalid("nothing was produced".to_owned())),
            };
            // A client that left before the file was ready leaves nothing behind.
            if let Err(Ok(p)) = tx.send(out) {
                let _ = std::fs::remove_file(&p.path);
            }
        });
    if let Err(e) = spawned {
        on_drop.disarm();
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "internal",
            format!("no export thread: {e}"),
        );
    }
    let outcome = rx.await;
    on_drop.disarm();
    let produced = match outcome {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            let (status, kind) = match &e {
                ExportError::Invalid(_) => (StatusCode::BAD_REQUEST, "refused"),
                ExportError::Db(RecorderError::QueryRefused { .. }) => {
                    (StatusCode::BAD_REQUEST, "refused")
                }
                ExportError::Db(RecorderError::QueryStopped {
                    reason: StopReason::Timeout(_),
                }) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
                ExportError::Db(RecorderError::QueryStopped { .. } | RecorderError::Stopped) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "stopped")
                }
                ExportError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                _ => (StatusCode::BAD_REQUEST, "export_error"),
            };
            return fail(status, kind, e.to_string());
        }
        Err(_) => {
            return fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the export thread ended without an answer".to_owned(),
            );
        }
    };
    let media = req_format_type(&produced);
    stream_file(st, media, produced)
}

fn req_format_type(p: &Produced) -> &'static str {
    match p.path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => crate::export::ExportFormat::Parquet.media_type(),
        Some("jsonl") => crate::export::ExportFormat::Jsonl.media_type(),
        _ => crate::export::ExportFormat::Har.media_type(),
    }
}

/// Streams a produced file back (the file is unlinked as soon as it is open).
fn stream_file(st: &AdminState, media_type: &str, p: Produced) -> Response<AdminBody> {
    let file = std::fs::File::open(&p.path);
    let _ = std::fs::remove_file(&p.path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e).map(BodyExt::boxed);
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let spawned = std::thread::Builder::new()
        .name("agentcap-export-send".into())
        .spawn(move || {
            use std::io::Read as _;
            let mut buf = vec![0u8; EXPORT_CHUNK];
            loop {
                match file.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        return error(StatusCode::SERVICE_UNAVAILABLE, "internal", e).map(BodyExt::boxed);
    }
    let mut r = Response::new(FileBody(rx).boxed());
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(p.bytes));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(EXPORT_ROWS_HEADER, HeaderValue::from(p.rows));
    h.insert(
        EXPORT_CAPPED_HEADER,
        HeaderValue::from_static(if p.capped { "true" } else { "false" }),
    );
    if let Ok(v) = HeaderValue::from_str(&st.db_path) {
        h.insert(EXPORT_DB_HEADER, v);
    }
    r
}

/// Serves the admin endpoints until `stop` flips (under the listener's limits, see [`crate::conn`]).
pub async fn serve(listener: conn::Listener, st: Arc<AdminState>, stop: watch::Receiver<bool>) {
    let drain = conn::serve(listener, stop, move |req, _peer| handle(st.clone(), req)).await;
    drain.start();
    let _ = tokio::time::timeout(ADMIN_DRAIN, drain.finished()).await;
}

/// On shutdown, how long admin requests in progress get to finish.
const ADMIN_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a [`Client`] call failed (who failed is in the variant).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The admin URL is not usable (the caller's input).
    #[error("--admin {0:?} is not a usable URL")]
    BadUrl(String),
    /// Nothing listens at the address.
    #[error("no proxy answers at {url}")]
    Unreachable {
        /// The admin URL.
        url: String,
    },
    /// The connection failed after connecting.
    #[error("the admin listener at {url} failed: {message}")]
    Transport {
        /// The admin URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The listener answered with an error status.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `kind` of the answer (`refused`, `timeout`, `unauthorized`, ...).
        kind: String,
        /// The listener's explanation.
        message: String,
    },
    /// The answer is not what the protocol says.
    #[error("the admin listener at {url} answered something unexpected: {message}")]
    Protocol {
        /// The admin URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

/// The admin protocol's client half.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client of the admin listener at `base` (e.g. `http://127.0.0.1:8788`), sending `token`
    /// when given. Nothing is contacted yet.
    pub fn new(base: &str, token: Option<String>) -> Self {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The listener's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ClientError> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            b = b.header(TOKEN_HEADER, t);
        }
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        let req = b
            .body(Full::new(Bytes::from(
                body.map(|v| v.to_string()).unwrap_or_default(),
            )))
            .map_err(|_| ClientError::BadUrl(self.base.clone()))?;
        let resp = match self.http.request(req).await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(ClientError::Unreachable {
                    url: self.base.clone(),
                });
            }
            Err(e) => {
                return Err(ClientError::Transport {
                    url: self.base.clone(),
                    message: e.to_string(),
                });
            }
        };
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport {
                url: self.base.clone(),
                message: e.to_string(),
            })?
            .to_bytes();
        let protocol = |message: String| ClientError::Protocol {
            url: self.base.clone(),
            message,
        };
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            protocol(format!(
                "{status} with a body that is not JSON: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })?;
        if !status.is_success() {
            let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
            return Err(ClientError::Refused {
                status: status.as_u16(),
                kind: text("kind").unwrap_or_default(),
                message: text("error").unwrap_or_else(|| v.to_string()),
            });
        }
        serde_json::from_value(v).map_err(|e| protocol(e.to_string()))
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/health", None).await
    }

    /// `POST /query`: one read-only statement with `params` bound to its `?` placeholders.
    pub async fn query(&self, sql: &str, params: &[Value]) -> Result<QueryAnswer, ClientError> {
        let body = serde_json::to_value(QueryRequest {
            sql: sql.to_owned(),
            params: params.to_vec(),
        })
        .unwrap_or(Value::Null);
        self.call(Method::POST, "/query", Some(body)).await
    }

    /// `POST /export`: one file of an export, streamed into `dest` (created or truncated; removed
    /// when the transfer fails). The answer's `path` is `dest`.
    pub async fn export(&self, req: &ExportRequest, dest: &Path) -> Result<Produced, ClientError> {
        let transport = |message: String| ClientError::Transport {
            url: self.base.clone(),
            message,
        };
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/export", self.base))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            b = b.header(TOKEN_HEADER, t);
        }
        let body = serde_json::to_vec(req).unwrap_or_default();
        let http_req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| ClientError::BadUrl(self.base.clone()))?;
        let resp = match self.http.request(http_req).await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(ClientError::Unreachable {
                    url: self.base.clone(),
                });
            }
            Err(e) => return Err(transport(e.to_string())),
        };
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(e.to_string()))?
                .to_bytes();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
            return Err(ClientError::Refused {
                status: status.as_u16(),
                kind: text("kind").unwrap_or_default(),
                message: text("error").unwrap_or_else(|| format!("{status}")),
            });
        }
        let head = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let rows = head(EXPORT_ROWS_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let capped = head(EXPORT_CAPPED_HEADER).as_deref() == Some("true");
        let what = req.table.clone().unwrap_or_else(|| "har".to_owned());
        let io_err = |e: std::io::Error| transport(format!("{}: {e}", dest.display()));
        let mut file = tokio::fs::File::create(dest).await.map_err(io_err)?;
        let mut body = resp.into_body();
        let mut bytes = 0u64;
        let copied: Result<(), ClientError> = async {
            use tokio::io::AsyncWriteExt as _;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| transport(e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    bytes += data.len() as u64;
                    file.write_all(&data).await.map_err(io_err)?;
                }
            }
            file.flush().await.map_err(io_err)
        }
        .await;
        if let Err(e) = copied {
            drop(file);
            let _ = tokio::fs::remove_file(dest).await;
            return Err(e);
        }
        Ok(Produced {
            what,
            path: dest.to_owned(),
            rows,
            bytes,
            capped,
        })
    }

    /// `POST /flush`: resolves once everything the proxy received is committed to DuckDB.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let _: Value = self.call(Method::POST, "/flush", Some(json!({}))).await?;
        Ok(())
    }
}

/// Why a [`Source`] read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The named file does not exist (the caller's input).
    #[error("there is no recording at {0}")]
    NoFile(String),
    /// Neither a proxy nor the default file (the caller's setup).
    #[error("no proxy answers at {admin} and there is no recording at {db} (pass --db FILE)")]
    Nothing {
        /// The admin URL tried.
        admin: String,
        /// The default file looked for.
        db: String,
    },
    /// The admin listener refused or failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Another process (a proxy) holds the file.
    #[error(
        "{path} is held by another process ({source}); if a proxy records into it, point --admin at that proxy's admin listener"
    )]
    Locked {
        /// The file.
        path: String,
        /// DuckDB's refusal.
        source: RecorderError,
    },
    /// The query failed on the file.
    #[error("query failed on {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: RecorderError,
    },
    /// The export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The thread running the query on the file died (internal).
    #[error("the query thread failed")]
    Thread,
}

/// Which database answers a [`Source`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The proxy's admin listener; it records into `db`.
    Admin {
        /// The file the proxy records into.
        db: String,
    },
    /// The file, opened read-only.
    File(PathBuf),
}

/// The recording a command reads, chosen once: with `db` given, that file only (through the proxy at
/// `admin` when that proxy records into it, otherwise opened read-only); without, the recording of the
/// proxy at `admin`, or `agentcap.duckdb` when no proxy answers.
#[derive(Debug)]
pub struct Source {
    admin: String,
    db: Option<PathBuf>,
    client: Client,
    route: tokio::sync::OnceCell<Route>,
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

impl Source {
    /// A source (nothing is contacted yet).
    pub fn new(admin: &str, token: Option<String>, db: Option<PathBuf>) -> Self {
        Source {
            admin: admin.to_owned(),
            db,
            client: Client::new(admin, token),
            route: tokio::sync::OnceCell::new(),
        }
    }

    async fn decide(&self) -> Result<Route, SourceError> {
        let health = self.client.health().await;
        match &self.db {
            Some(db) => {
                if !db.exists() {
                    return Err(SourceError::NoFile(db.display().to_string()));
                }
                match health {
                    Ok(h) if same_file(Path::new(&h.db), db) => Ok(Route::Admin { db: h.db }),
                    Ok(h) => {
                        tracing::debug!(proxy_db = %h.db, "the proxy at --admin records into another file; reading --db directly");
                        Ok(Route::File(db.clone()))
                    }
                    // A proxy that wants a token may be the one holding the file: say so.
                    Err(e @ ClientError::Refused { status: 401, .. }) => Err(e.into()),
                    Err(e) => {
                        tracing::debug!(error = %e, "no usable admin listener; reading --db directly");
                        Ok(Route::File(db.clone()))
                    }
                }
            }
            None => match health {
                Ok(h) => Ok(Route::Admin { db: h.db }),
                Err(ClientError::Unreachable { .. }) => {
                    let db = PathBuf::from(crate::recorder::DEFAULT_DB_PATH);
                    if !db.exists() {
                        return Err(SourceError::Nothing {
                            admin: self.admin.clone(),
                            db: db.display().to_string(),
                        });
                    }
                    Ok(Route::File(db))
                }
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Which database answers (decided on first use).
    pub async fn route(&self) -> Result<&Route, SourceError> {
        self.route.get_or_try_init(|| self.decide()).await
    }

    /// Which database answers, for people: `db FILE via the proxy at URL` or `db FILE (opened read-only)`.
    pub async fn describe(&self) -> Result<String, SourceError> {
        Ok(match self.route().await? {
            Route::Admin { db } => format!("db {db} via the proxy at {}", self.admin),
            Route::File(f) => format!("db {} (opened read-only)", f.display()),
        })
    }

    /// Runs one read-only query with `params` bound to its `?` placeholders.
    pub async fn query_with(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<QueryResult, SourceError> {
        let r = match self.route().await? {
            Route::Admin { .. } => self.client.query(sql, params).await?.result,
            Route::File(db) => {
                let path = db.display().to_string();
                let (db, sql, params) = (db.clone(), sql.to_owned(), params.to_vec());
                tokio::task::spawn_blocking(move || {
                    crate::recorder::query_file_read_only(
                        &db,
                        &sql,
                        &params,
                        &QueryLimits::default(),
                    )
                })
                .await
                .map_err(|_| SourceError::Thread)?
                .map_err(|source| match source {
                    RecorderError::Db(e) if e.to_string().contains("lock") => SourceError::Locked {
                        path: path.clone(),
                        source: RecorderError::Db(e),
                    },
                    source => SourceError::File { path, source },
                })?
            }
        };
        if r.truncated {
            tracing::warn!(
                reason = r
                    .truncated_reason
                    .as_deref()
                    .unwrap_or("a limit was reached"),
                "agentcap: the answer is truncated"
            );
        }
        Ok(r)
    }

    /// Exports the recording ([`crate::export`]): through the admin listener (one `POST /export`
    /// per file) when the proxy holds the file, otherwise from the file opened read-only. The
    /// report says which database answered.
    pub async fn export(&self, opts: &ExportOptions) -> Result<ExportReport, SourceError> {
        let requests = opts.requests()?;
        let answered_by = self.describe().await?;
        match self.route().await? {
            Route::Admin { .. } => {
                opts.out_dir()?;
                let mut files = Vec::new();
                for req in &requests {
                    let dest = opts.destination(req);
                    let part = dest.with_extension("partial");
                    let mut p = self.client.export(req, &part).await?;
                    move_into_place(&part, &dest)?;
                    p.path = dest;
                    files.push(p);
                }
                Ok(ExportReport { answered_by, files })
            }
            Route::File(db) => {
                let (db, opts) = (db.clone(), opts.clone());
                let path = db.display().to_string();
                tokio::task::spawn_blocking(move || crate::export::export_file(&db, &opts))
                    .await
                    .map_err(|_| SourceError::Thread)?
                    .map_err(|e| match e {
                        ExportError::Db(RecorderError::Db(d)) if d.to_string().contains("lock") => {
                            SourceError::Locked {
                                path,
                                source: RecorderError::Db(d),
                            }
                        }
                        e => SourceError::Export(e),
                    })
            }
        }
    }

    /// Runs one read-only query.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, SourceError> {
        self.query_with(sql, &[]).await
    }

    /// Runs a query from a blocking thread (for views that query step by step).
    pub fn query_blocking(
        &self,
        rt: &tokio::runtime::Handle,
        sql: &str,
    ) -> Result<QueryResult, SourceError> {
        rt.block_on(self.query(sql))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for (h, want) in [
            ("localhost:8788", Some("localhost")),
            ("LOCALHOST", Some("localhost")),
            ("127.0.0.1:1", Some("127.0.0.1")),
            ("[::1]:8788", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("evil.example:8788", Some("evil.example")),
            ("localhost:", None),
            ("localhost:88x", None),
            ("[::1", None),
            ("", None),
        ] {
            assert_eq!(host_name(h).as_deref(), want, "{h:?}");
        }
        assert!(loopback_name("localhost"));
        assert!(loopback_name("127.0.0.1"));
        assert!(loopback_name("127.1.2.3"));
        assert!(loopback_name("[::1]"));
        assert!(!loopback_name("localhost.evil.example"));
        assert!(!loopback_name("10.0.0.1"));
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
