//! The recording proxy: forwards every request to one configured upstream with bytes unchanged, and records
//! every exchange, SSE event and conversation entry into DuckDB off the hot path.
//!
//! [`start`] binds the client listener (and the loopback admin listener) and returns a [`RunningProxy`];
//! [`run`] does the same until a shutdown future resolves. See ARCHITECTURE.md, "Life of a recorded request".

pub mod admin;
pub mod config;
pub mod conn;
pub mod exchange;
pub mod export;
pub mod forward;
pub mod gen_ai;
pub mod otel;
pub mod record;
pub mod recorder;
pub mod server;
pub mod ship;
pub mod tee;
pub mod upstream;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::ProxyConfig;
use recorder::{Recorder, RecorderHandle, RecorderStats};

/// What can go wrong running the proxy (who failed is in the variant).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Bad configuration (the operator's input).
    #[error("invalid proxy configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The recorder failed (internal).
    #[error("recorder: {0}")]
    Recorder(#[from] recorder::RecorderError),
    /// A thread or task of the proxy itself failed (internal: a bug, never the operator's input).
    #[error("internal error: {0}")]
    Internal(String),
}

/// A running proxy.
#[derive(Debug)]
pub struct RunningProxy {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    serve: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
    recorder: Option<Recorder>,
    shipper: Option<ship::ShipperThread>,
    handle: RecorderHandle,
    client_conns: Arc<conn::ConnCounters>,
    admin_conns: Arc<conn::ConnCounters>,
}

impl RunningProxy {
    /// The client listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The recorder (stats, flush, queries, test hooks).
    pub fn recorder(&self) -> &RecorderHandle {
        &self.handle
    }

    /// The client listener's connection counters.
    pub fn client_connections(&self) -> conn::ConnStats {
        self.client_conns.snapshot()
    }

    /// The admin listener's connection counters (all zero when it is disabled).
    pub fn admin_connections(&self) -> conn::ConnStats {
        self.admin_conns.snapshot()
    }

    /// Stops accepting, lets in-flight exchanges finish (up to the grace period), flushes the recorder.
    pub async fn shutdown(mut self) -> Result<RecorderStats, ProxyError> {
        let _ = self.stop.send(true);
        let _ = (&mut self.serve).await;
        if let Some(a) = self.admin.take() {
            let _ = a.await;
        }
        let rec = self.recorder.take().expect("shut down once");
        let stats = tokio::task::spawn_blocking(move || rec.shutdown())
            .await
            .map_err(|e| ProxyError::Internal(format!("recorder shutdown panicked: {e}")))??;
        // Everything is committed now: the shipper ships it (bounded), then stops.
        if let Some(s) = self.shipper.take() {
            let _ = tokio::task::spawn_blocking(move || s.finish(SHIP_FINISH_GRACE)).await;
        }
        Ok(stats)
    }
}

/// Validates `cfg`, opens the recorder (replaying any journal), binds the listeners and starts serving.
pub async fn start(cfg: ProxyConfig) -> Result<RunningProxy, ProxyError> {
    cfg.validate()?;
    let client = forward::client(&cfg)?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(server::tls_acceptor(c, k)?),
        _ => None,
    };
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ProxyError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ProxyError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let admin_listener = match cfg.admin_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|source| ProxyError::Bind { addr: a, source })?,
        ),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let mut rcfg = cfg.recorder.clone();
    // The admin listener's `POST /export` copies into the instance's private scratch directory.
    rcfg.export_scratch |= admin_listener.is_some();
    rcfg.ship_spool |= cfg.ship.is_some();
    let recorder = tokio::task::spawn_blocking(move || Recorder::open(rcfg))
        .await
        .map_err(|e| ProxyError::Internal(format!("recorder start panicked: {e}")))??;
    let handle = recorder.handle();
    let shipper = match &cfg.ship {
        Some(sc) => {
            let (h, sc) = (handle.clone(), sc.clone());
            let started = tokio::task::spawn_blocking(move || {
                ship::Shipper::open(&h, sc).and_then(|s| ship::spawn(s, h))
            })
            .await
            .map_err(|e| ProxyError::Internal(format!("shipper start panicked: {e}")))?;
            match started {
                Ok(t) => Some(t),
                Err(e) => {
                    let _ = tokio::task::spawn_blocking(move || recorder.shutdown()).await;
                    return Err(ProxyError::Config(e.to_string()));
                }
            }
        }
        None => None,
    };
    let (stop, stop_rx) = watch::channel(false);
    let client_conns = Arc::new(conn::ConnCounters::default());
    let admin_conns = Arc::new(conn::ConnCounters::default());
    let client_limits = cfg.client_limits();
    report_connection_cap(&cfg, client_limits.max_connections);
    let admin_limits = cfg.admin_limits();
    let mut admin = None;
    if let (Some(tcp), Some(bound)) = (admin_listener, admin_addr) {
        let l = conn::Listener {
            tcp,
            name: "admin",
            limits: admin_limits,
            tls: None,
            counters: admin_conns.clone(),
            cap_flag: "the admin listener's cap",
        };
        let db = &cfg.recorder.db_path;
        let db = std::fs::canonicalize(db).unwrap_or_else(|_| db.clone());
        let mut st = admin::AdminState::new(
            handle.clone(),
            cfg.upstream.to_string(),
            db.display().to_string(),
            cfg.auth_token.clone(),
            cfg.admin.clone(),
        );
        if let Err(e) = st.mount(bound) {
            let _ = tokio::task::spawn_blocking(move || recorder.shutdown()).await;
            return Err(ProxyError::Config(format!(
                "the admin listener's mount: {e}"
            )));
        }
        admin = Some(tokio::spawn(admin::serve(l, Arc::new(st), stop_rx.clone())));
    }
    let shared = Arc::new(server::Shared::new(cfg, client, handle.clone()));
    let listener = conn::Listener {
        tcp: listener,
        name: "client",
        limits: client_limits,
        tls,
        counters: client_conns.clone(),
        cap_flag: "--max-connections",
    };
    let serve = tokio::spawn(server::serve(listener, shared, stop_rx));
    Ok(RunningProxy {
        addr,
        admin_addr,
        stop,
        serve,
        admin,
        recorder: Some(recorder),
        shipper,
        handle,
        client_conns,
        admin_conns,
    })
}

/// On shutdown, the shipper gets this long to ship what is committed; the rest waits for the next
/// start.
const SHIP_FINISH_GRACE: Duration = Duration::from_secs(60);

/// Says at start when the connection cap and the open-file limit do not agree.
fn report_connection_cap(cfg: &ProxyConfig, cap: usize) {
    let Some(limit) = conn::open_file_limit() else {
        return;
    };
    let fits = conn::fitting_max_connections(limit);
    match cfg.max_connections {
        Some(n) if n > fits => tracing::warn!(
            "--max-connections {n} is more than the open-file limit (ulimit -n: {limit}) can hold (about {fits}: \
             two descriptors per connection plus {} in reserve); the proxy may run out of descriptors",
            conn::FD_RESERVE
        ),
        None if cap < config::DEFAULT_MAX_CONNECTIONS => tracing::info!(
            "at most {cap} client connections (the open-file limit, ulimit -n, is {limit}); raise the limit or set --max-connections"
        ),
        _ => {}
    }
}

/// Runs the proxy until `shutdown` resolves; `on_ready` gets the client and admin addresses.
pub async fn run(
    cfg: ProxyConfig,
    on_ready: impl FnOnce(SocketAddr, Option<SocketAddr>),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RecorderStats, ProxyError> {
    let p = start(cfg).await?;
    on_ready(p.addr(), p.admin_addr());
    shutdown.await;
    p.shutdown().await
}
