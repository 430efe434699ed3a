//! The read-only web UI over a recording: exchanges (filters, keyset paging, live tail), an exchange's
//! headers, bodies and SSE timeline, conversations as trees of turns and branches.
//!
//! Server-rendered HTML (`maud`: checked at compile time, escapes every value by default), charts as SVG
//! drawn here, one small embedded script. The data comes through [`Db`], so the same [`handle`] serves a
//! DuckDB file opened read-only (`agentcap ui --db`) or a running proxy's recording ([`admin_mount`], on its
//! admin listener).
//!
//! Architecture Invariant: recorded content is hostile. It reaches a page only through maud's escaping
//! (never `PreEscaped`), every response carries [`guard::CSP`] (no inline script), and requests whose
//! `Host` is not this machine's or whose `Origin` is another site are refused before any query runs.

pub mod db;
pub mod guard;
mod pages;
pub mod report;
pub mod svg;
mod tail;
pub mod text;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentcap_proxy::admin::{AdminMount, MountContext, MountedHandler};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use db::{ConnDb, Db, GateDb, Param};
pub use pages::SQL_ROWS;
pub use web::UiBody;

/// What can go wrong serving the UI (who failed is in the variant).
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The operator's configuration is unusable.
    #[error("ui configuration: {0}")]
    Config(String),
    /// The request asked for something malformed (the client's fault).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The requested record does not exist (the client's fault).
    #[error("not found: {0}")]
    NotFound(String),
    /// DuckDB failed (internal).
    #[error("DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    /// The read-only query path refused or failed a statement (the SQL console's text, or a limit).
    #[error("{0}")]
    Query(String),
    /// Anything else internal.
    #[error("internal: {0}")]
    Internal(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Settings of the UI.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// Listen address (default 127.0.0.1:8790).
    pub listen: SocketAddr,
    /// Required token (`Authorization: Bearer`, or the cookie `/login?token=` sets); mandatory when
    /// `listen` is not a loopback address.
    pub auth_token: Option<String>,
    /// Extra `Host` names accepted besides loopback names and the listen address.
    pub allowed_hosts: Vec<String>,
    /// Exchanges per page (default 50, at most 500).
    pub page_rows: usize,
    /// Bytes of a body shown on a page before it is cut (default 64 KiB).
    pub body_preview_bytes: usize,
    /// SSE events drawn on one timeline page, and listed (default 2,000; a "more" link pages on).
    pub timeline_events: usize,
    /// How often a live tail polls the database (default 500 ms).
    pub tail_interval: Duration,
    /// Live tails open at once (default 16); more are answered 503.
    pub max_tails: usize,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8790)),
            auth_token: None,
            allowed_hosts: Vec::new(),
            page_rows: 50,
            body_preview_bytes: 64 * 1024,
            timeline_events: 2000,
            tail_interval: Duration::from_millis(500),
            max_tails: 16,
        }
    }
}

impl UiConfig {
    /// Refuses a non-loopback listen address without a token, an empty token, and zero bounds.
    pub fn validate(&self) -> Result<(), UiError> {
        if self
            .auth_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(UiError::Config("--auth-token must not be empty".into()));
        }
        if !guard::is_loopback(&self.listen) && self.auth_token.is_none() {
            return Err(UiError::Config(format!(
                "{} is reachable from other machines: give --auth-token (or listen on 127.0.0.1)",
                self.listen
            )));
        }
        if self.page_rows == 0
            || self.page_rows > 500
            || self.body_preview_bytes == 0
            || self.timeline_events == 0
            || self.max_tails == 0
        {
            return Err(UiError::Config(
                "page_rows (1..=500), body_preview_bytes, timeline_events and max_tails must be positive"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Everything a request needs: the data source and the settings. Cheap to clone.
#[derive(Clone)]
pub struct UiState {
    db: Arc<dyn Db>,
    cfg: Arc<UiConfig>,
    tails: Arc<Semaphore>,
}

impl std::fmt::Debug for UiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiState")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl UiState {
    /// A state over `db` with `cfg` (validated).
    pub fn new(db: Arc<dyn Db>, cfg: UiConfig) -> Result<Self, UiError> {
        cfg.validate()?;
        Ok(UiState {
            db,
            tails: Arc::new(Semaphore::new(cfg.max_tails)),
            cfg: Arc::new(cfg),
        })
    }

    /// The settings.
    pub fn config(&self) -> &UiConfig {
        &self.cfg
    }

    /// Runs a query on a blocking thread.
    pub(crate) async fn query(
        &self,
        sql: String,
        params: Vec<Param>,
    ) -> Result<agentcap_proxy::recorder::QueryResult, UiError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.query(&sql, &params))
            .await
            .map_err(|e| UiError::Internal(format!("query thread failed: {e}")))?
    }

    /// Runs `f` with the data source on a blocking thread.
    pub(crate) async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Db) -> T + Send + 'static,
    ) -> Result<T, UiError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(db.as_ref()))
            .await
            .map_err(|e| UiError::Internal(format!("query thread failed: {e}")))
    }
}

/// Serves one request: the guards (method, Host, Origin, token), then the page. Every response, refusals
/// included, carries the security headers ([`guard::secure_headers`]). The request body is never read.
pub async fn handle<B>(state: &UiState, req: Request<B>) -> Response<UiBody> {
    let mut resp = route(state, req).await;
    guard::secure_headers(resp.headers_mut());
    resp
}

async fn route<B>(state: &UiState, req: Request<B>) -> Response<UiBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = web::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the UI is read-only: GET only\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let host_value = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let Some(host_value) = host_value else {
        return web::text(StatusCode::BAD_REQUEST, "missing Host header\n");
    };
    let host_ok = guard::host_name(&host_value)
        .is_some_and(|h| guard::host_allowed(&h, &state.cfg.listen, &state.cfg.allowed_hosts));
    if !host_ok {
        return web::text(
            StatusCode::MISDIRECTED_REQUEST,
            "this Host is not served here (open the UI through a loopback address)\n",
        );
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let same = origin
            .to_str()
            .is_ok_and(|o| guard::same_origin(o, &host_value));
        if !same {
            return web::text(StatusCode::FORBIDDEN, "cross-origin request refused\n");
        }
    }
    let path = req.uri().path().to_string();
    let query = web::Query::parse(req.uri().query());
    if let Some(expected) = &state.cfg.auth_token {
        if path == "/login" {
            return login(&query, expected);
        }
        let ok = guard::presented_token(req.headers())
            .is_some_and(|t| guard::token_matches(&t, expected));
        if !ok {
            return web::html(StatusCode::UNAUTHORIZED, pages::unauthorized());
        }
    }
    pages::dispatch(state, &path, &query).await
}

fn login(query: &web::Query, expected: &str) -> Response<UiBody> {
    let ok = query
        .get("token")
        .is_some_and(|t| guard::token_matches(t, expected));
    if !ok {
        return web::html(StatusCode::UNAUTHORIZED, pages::unauthorized());
    }
    let mut r = web::text(StatusCode::SEE_OTHER, "logged in\n");
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        guard::COOKIE,
        web::enc(expected)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    r
}

/// The UI as a mount on a running proxy's admin listener (`AdminConfig::mount`): the pages over the live
/// recording through the listener's [`QueryGate`](agentcap_proxy::admin::QueryGate) (the path, limits and
/// permits of `POST /query`), answering the listener's Host names. The listener checks Host, Origin and the
/// token (header, or the cookie of its `/login`) before any request gets here; the UI checks Host and Origin
/// again. `base` gives the page bounds; its listen address, token and hosts are the listener's.
pub fn admin_mount(base: UiConfig) -> AdminMount {
    AdminMount::new(move |ctx: MountContext| {
        let cfg = UiConfig {
            listen: ctx.addr,
            auth_token: None,
            allowed_hosts: ctx.allowed_hosts.clone(),
            ..base.clone()
        };
        let state =
            UiState::new(Arc::new(GateDb::new(ctx.gate)), cfg).map_err(|e| e.to_string())?;
        let handler: MountedHandler = Arc::new(move |req| {
            let st = state.clone();
            Box::pin(async move { handle(&st, req).await })
        });
        Ok(handler)
    })
}

/// A bound, running UI server.
#[derive(Debug)]
pub struct RunningUi {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    serve: tokio::task::JoinHandle<()>,
}

impl RunningUi {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops accepting and waits for the accept loop to end (open connections end with their clients).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.serve.await;
    }
}

/// Binds `state`'s listen address and serves until [`RunningUi::shutdown`].
pub async fn start(state: UiState) -> Result<RunningUi, UiError> {
    let listen = state.cfg.listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| UiError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| UiError::Bind {
        addr: listen,
        source,
    })?;
    // The Host check compares against the bound address (port 0 resolved).
    let mut cfg = (*state.cfg).clone();
    cfg.listen = addr;
    let state = UiState {
        cfg: Arc::new(cfg),
        ..state
    };
    let (stop, stop_rx) = watch::channel(false);
    let serve = tokio::spawn(serve(listener, state, stop_rx));
    Ok(RunningUi { addr, stop, serve })
}

/// Serves the UI on `listener` until `stop` flips.
pub async fn serve(listener: TcpListener, state: UiState, mut stop: watch::Receiver<bool>) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let st = state.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&st, req).await) }
                    });
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        }
    }
}
