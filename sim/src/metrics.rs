//! The twin's own Prometheus metrics, served on its `GET /metrics` (the API itself lives under
//! `/v1/`, so the path cannot clash with an API route).
//!
//! Built on `prometheus-client`, like the proxy's: no global registry, atomic counters, OpenMetrics
//! encoding (classic text unless the scraper asks for OpenMetrics).

use agentcap_wire::exposition::{
    OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, openmetrics_to_text, wants_openmetrics,
};
use agentcap_wire::vocab::Operation;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type L2 = [(&'static str, &'static str); 2];

/// The twin's registry: requests served, by operation and HTTP status class.
#[derive(Debug)]
pub struct SimMetrics {
    registry: Registry,
    requests: Family<L2, Counter>,
}

impl Default for SimMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<L2, Counter>::default();
        registry.register(
            "agentcap_sim_requests",
            "Requests the twin answered, by operation and HTTP status class",
            requests.clone(),
        );
        SimMetrics { registry, requests }
    }
}

impl SimMetrics {
    /// Counts one answered request (`status` `None`: the connection failed before an answer).
    pub fn count(&self, op: Operation, status: Option<u16>) {
        let class = match status {
            Some(100..=199) => "1xx",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            _ => "none",
        };
        self.requests
            .get_or_create(&[("operation", op.name()), ("status_class", class)])
            .inc();
    }

    /// The exposition and its Content-Type: OpenMetrics when `accept` asks for it, else the
    /// classic text format.
    pub fn encode(&self, accept: Option<&str>) -> (String, &'static str) {
        let mut om = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut om, &self.registry);
        if wants_openmetrics(accept) {
            (om, OPENMETRICS_CONTENT_TYPE)
        } else {
            (openmetrics_to_text(&om), TEXT_CONTENT_TYPE)
        }
    }
}
