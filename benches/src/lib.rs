//! agentcap's benchmarks as a library: the load generators behind `agentcap bench stream` (streamed
//! conversations timed per event) and `agentcap bench load` (open-loop fixed-rate requests, latency free of
//! coordinated omission), their statistics and reports. The criterion micro-benches live in `benches/`.

pub mod client;
pub mod load;
pub mod stats;
pub mod stream;

pub use client::{RequestSpec, Speaker, Target, parse_duration, parse_header};
pub use load::{LoadOptions, LoadReport};
pub use stats::Summary;
pub use stream::{StreamOptions, StreamReport};

/// What can go wrong setting up a bench (failures of individual requests are counted, not raised).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A target URL is unusable.
    #[error("invalid URL {url:?}: {why}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why.
        why: String,
    },
    /// An option is out of range or malformed.
    #[error("{0}")]
    InvalidOption(String),
    /// The TLS configuration (extra CA) could not be built.
    #[error("TLS: {0}")]
    Tls(String),
}
