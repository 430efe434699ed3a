//! The twin: a faithful local simulator of the Mistral Agents & Conversations API ("simulated upstream").
//!
//! [`start`] binds a listener and serves every Agents and Conversations operation, streaming included,
//! plus `POST /v1/chat/completions` (so a judge model can be served). Answers are deterministic; with a
//! knowledge file the twin answers dataset questions right with configured probabilities. See
//! `docs/twin.md` for the triggers and fault injection.

pub mod agents;
pub mod capture;
pub mod chat;
pub mod config;
pub mod conversations;
pub mod det;
pub mod engine;
pub mod http;
pub mod ids;
pub mod judge;
pub mod knowledge;
pub mod metrics;
pub mod route;
pub mod server;
pub mod state;
pub mod tls;
pub mod turn;
pub mod twin;
pub mod validate;

pub use config::{
    FaultKind, FaultRate, LatencyModel, LatencyOverrides, LatencyPreset, SimConfig, ToolLatency,
};
pub use server::{RunningSim, start};
pub use twin::{FAULT_HEADER, Sim};

/// What can go wrong starting the twin.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is invalid.
    #[error("invalid twin configuration: {0}")]
    Config(String),
    /// A file or socket could not be opened.
    #[error("twin I/O error: {0}")]
    Io(String),
}

/// The label every user-visible output of the twin carries (the workspace's one definition).
pub use agentcap_wire::vocab::SIMULATED_LABEL;
/// The response header the twin puts on every response (errors and streams included), so that a
/// client or the recording can tell the twin from a real upstream; the official SDKs ignore it.
pub use agentcap_wire::vocab::headers::UPSTREAM as UPSTREAM_HEADER;
/// The value of [`UPSTREAM_HEADER`].
pub use agentcap_wire::vocab::headers::UPSTREAM_SIMULATED;

/// Runs the twin until `shutdown` resolves; `on_ready` gets the bound address once it accepts connections.
pub async fn run(
    cfg: SimConfig,
    on_ready: impl FnOnce(std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SimError> {
    let running = start(cfg).await?;
    on_ready(running.addr());
    shutdown.await;
    running.shutdown().await;
    Ok(())
}
