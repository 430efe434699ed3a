//! Cassette mode: a recording served back as if it were the API (`agentcap replay`).
//!
//! [`start`] reads the selected exchanges of a recording into a [`cassette::Cassette`] (the DuckDB file
//! opened read-only through `proxy::recorder::open_db`, then closed), and answers every request with
//! the recorded exchange whose method, path (with its query) and canonical body ([`canon`]) match:
//! status, the headers that matter, and the body, or the stream event by event at the recorded
//! offsets ([`Timing`]). Identical requests get their recorded answers in order; the last one then
//! repeats. A request nothing matches gets an error in the API's error shape naming the closest
//! recorded request and the first differing JSON path, or, with [`OnMiss::Upstream`], goes to that
//! upstream through an embedded recording proxy that appends it to the same file (after the
//! cassette was read; the new exchanges are not served back within the same run).

pub mod canon;
pub mod cassette;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use cassette::{Cassette, Selection, Summary};

/// What can go wrong starting or running the replay (who failed is in the variant).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Bad configuration (the operator's input).
    #[error("invalid replay configuration: {0}")]
    Config(String),
    /// The `--where` predicate was refused or failed (the operator's input).
    #[error("the exchange selection failed: {0}")]
    Selection(String),
    /// The recording could not be read.
    #[error("cannot read the recording: {0}")]
    Db(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The embedded recording proxy for `--on-miss upstream` failed.
    #[error("the recording proxy for misses: {0}")]
    Proxy(#[from] agentcap_proxy::ProxyError),
}

/// How recorded time is reproduced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timing {
    /// The response head after its recorded delay, each event at its recorded offset from the
    /// request's arrival (so the recorded inter-event gaps).
    Recorded,
    /// Everything at once.
    Fast,
    /// The recorded delays multiplied by the factor (`scale:0.5` replays twice as fast).
    Scale(f64),
}

impl Timing {
    /// The factor applied to recorded delays.
    pub fn factor(self) -> f64 {
        match self {
            Timing::Recorded => 1.0,
            Timing::Fast => 0.0,
            Timing::Scale(x) => x,
        }
    }

    /// A recorded delay in µs, scaled.
    pub fn delay(self, us: u64) -> Duration {
        let f = self.factor();
        if f <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((us as f64 / 1e6 * f).min(86_400.0 * 365.0))
    }
}

impl FromStr for Timing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "recorded" => Ok(Timing::Recorded),
            "fast" => Ok(Timing::Fast),
            _ => match s.strip_prefix("scale:").map(str::parse::<f64>) {
                Some(Ok(x)) if x.is_finite() && x >= 0.0 => Ok(Timing::Scale(x)),
                _ => Err(format!(
                    "{s:?}: expected recorded, fast or scale:X with X a number >= 0"
                )),
            },
        }
    }
}

/// What a request that matches no recorded exchange gets.
#[derive(Debug, Clone, PartialEq)]
pub enum OnMiss {
    /// An error in the API's shape (status 501) naming the closest recorded request.
    Error,
    /// Forwarded to this upstream through a recording proxy that appends the exchange to the
    /// recording.
    Upstream(http::Uri),
}

/// The replay's configuration.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// The recording.
    pub db: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Which exchanges to serve.
    pub selection: Selection,
    /// How recorded time is reproduced.
    pub timing: Timing,
    /// What a miss gets.
    pub on_miss: OnMiss,
    /// JSON pointers removed from request bodies before matching (values the app generates).
    pub ignore_fields: Vec<String>,
}

impl ReplayConfig {
    /// A config with the documented defaults: every exchange of `db`, listening on
    /// 127.0.0.1:8791, recorded timing, misses answered with an error.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        ReplayConfig {
            db: db.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8791)),
            selection: Selection::All,
            timing: Timing::Recorded,
            on_miss: OnMiss::Error,
            ignore_fields: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), ReplayError> {
        for p in &self.ignore_fields {
            if !p.starts_with('/') {
                return Err(ReplayError::Config(format!(
                    "--ignore-field {p:?} is not a JSON pointer (it starts with '/', e.g. /metadata/ts)"
                )));
            }
        }
        if let OnMiss::Upstream(u) = &self.on_miss
            && !matches!(u.scheme_str(), Some("http" | "https"))
        {
            return Err(ReplayError::Config(format!(
                "--on-miss upstream {u} must be an http:// or https:// URL"
            )));
        }
        Ok(())
    }
}

/// A running replay.
#[derive(Debug)]
pub struct RunningReplay {
    addr: SocketAddr,
    summary: Summary,
    stop: watch::Sender<bool>,
    serve: JoinHandle<()>,
    proxy: Option<agentcap_proxy::RunningProxy>,
}

impl RunningReplay {
    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the cassette holds.
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// Stops listening, ends open connections and, with `--on-miss upstream`, stops the recording
    /// proxy (which commits what it recorded).
    pub async fn shutdown(self) -> Result<(), ReplayError> {
        let _ = self.stop.send(true);
        let _ = self.serve.await;
        if let Some(p) = self.proxy {
            p.shutdown().await?;
        }
        Ok(())
    }
}

/// Loads the cassette and starts serving it.
pub async fn start(cfg: ReplayConfig) -> Result<RunningReplay, ReplayError> {
    cfg.validate()?;
    let db = cfg.db.clone();
    if !db.is_file() {
        return Err(ReplayError::Config(format!(
            "{} is not a recording (no such file)",
            db.display()
        )));
    }
    let selection = cfg.selection.clone();
    let ignore = cfg.ignore_fields.clone();
    let cassette = tokio::task::spawn_blocking(move || Cassette::load(&db, &selection, ignore))
        .await
        .map_err(|e| ReplayError::Db(format!("the loading thread failed: {e}")))??;
    let summary = cassette.summary();
    let proxy = match &cfg.on_miss {
        OnMiss::Error => None,
        OnMiss::Upstream(uri) => {
            // The cassette's read-only connection is closed: the proxy may now open the file.
            let mut pc = agentcap_proxy::ProxyConfig::new(
                uri.clone(),
                agentcap_proxy::recorder::RecorderConfig::new(cfg.db.clone()),
            );
            pc.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            pc.admin_listen = None;
            Some(agentcap_proxy::start(pc).await?)
        }
    };
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ReplayError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ReplayError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let (stop, stopped) = watch::channel(false);
    let state = Arc::new(serve::State::new(
        cassette,
        cfg.timing,
        proxy.as_ref().map(agentcap_proxy::RunningProxy::addr),
    ));
    let serve = tokio::spawn(serve::accept_loop(listener, state, stopped));
    Ok(RunningReplay {
        addr,
        summary,
        stop,
        serve,
        proxy,
    })
}

/// Runs the replay until `shutdown` resolves; `on_ready` gets the address and the summary once it
/// listens.
pub async fn run(
    cfg: ReplayConfig,
    on_ready: impl FnOnce(SocketAddr, Summary),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ReplayError> {
    let r = start(cfg).await?;
    on_ready(r.addr(), r.summary());
    shutdown.await;
    r.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_parses() {
        assert_eq!("recorded".parse(), Ok(Timing::Recorded));
        assert_eq!("fast".parse(), Ok(Timing::Fast));
        assert_eq!("scale:0.5".parse(), Ok(Timing::Scale(0.5)));
        assert!("scale:-1".parse::<Timing>().is_err());
        assert!("scale:nan".parse::<Timing>().is_err());
        assert!("slow".parse::<Timing>().is_err());
        assert_eq!(Timing::Scale(2.0).delay(1_000), Duration::from_millis(2));
        assert_eq!(Timing::Fast.delay(1_000_000), Duration::ZERO);
    }
}
