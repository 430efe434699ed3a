//! The span export's Prometheus counters, registered by [`crate::recorder::metrics::Metrics`].

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// The span export's counters (see [`crate::otel`]): shared with its queue and export thread, which
/// update them as they go (atomics; zero while export is off).
#[derive(Debug, Clone, Default)]
pub struct OtlpCounters {
    /// Spans put on the export queue.
    pub queued: Counter,
    /// Spans the collector accepted.
    pub exported: Counter,
    /// Spans dropped: the queue was full, or they were still queued when the export stopped.
    pub dropped: Counter,
    /// Spans of batches the collector refused or could not be reached for (after retries).
    pub failed: Counter,
    /// Spans waiting in the queue.
    pub queue: Gauge,
}
