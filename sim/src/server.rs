//! The twin's listener: binds, accepts (HTTP/1.1 and h2, optional TLS), marks every response as the
//! simulated upstream's, and hands each request to [`crate::route`].

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Response};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::SimError;
use crate::config::SimConfig;
use crate::http::Body;
use crate::route::handle;
use crate::twin::Sim;
use agentcap_wire::vocab::headers;

/// A running twin; dropping it without [`RunningSim::shutdown`] leaves it serving until the runtime ends.
#[derive(Debug)]
pub struct RunningSim {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    sim: Arc<Sim>,
}

impl RunningSim {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, or `https://ADDR` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.sim.cfg.tls_ca_out.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The shared state (for tests and embedding).
    pub fn sim(&self) -> &Arc<Sim> {
        &self.sim
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the accept loop ends (it ends on shutdown).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds `cfg.listen` and serves until shut down.
pub async fn start(cfg: SimConfig) -> Result<RunningSim, SimError> {
    let listen = cfg.listen;
    let sim = Arc::new(Sim::new(cfg)?);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| SimError::Io(format!("bind {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| SimError::Io(e.to_string()))?;
    let tls = match &sim.cfg.tls_ca_out {
        Some(path) => {
            let t = crate::tls::generate()?;
            std::fs::write(path, &t.ca_pem)
                .map_err(|e| SimError::Io(format!("write CA to {}: {e}", path.display())))?;
            Some(t.acceptor)
        }
        None => None,
    };
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let sim2 = sim.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                accepted = listener.accept() => {
                    let Ok((stream, _peer)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let sim = sim2.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let sim = sim.clone();
                            async move { handle(sim, req).await.map(announce) }
                        });
                        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        let served = match tls {
                            None => builder.serve_connection(TokioIo::new(stream), svc).await,
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(s) => builder.serve_connection(TokioIo::new(s), svc).await,
                                Err(e) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    return;
                                }
                            },
                        };
                        if let Err(e) = served {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
            }
        }
    });
    Ok(RunningSim {
        addr,
        stop: Some(stop_tx),
        task,
        sim,
    })
}

/// Marks a response as the twin's (`x-agentcap-upstream: simulated`), whatever the route or status.
fn announce(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(
        headers::UPSTREAM,
        HeaderValue::from_static(headers::UPSTREAM_SIMULATED),
    );
    r
}
