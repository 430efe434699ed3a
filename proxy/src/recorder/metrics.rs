//! Prometheus metrics of the proxy, served by the admin listener's `GET /metrics`.
//!
//! Built on the `prometheus-client` crate: it keeps no global registry (each proxy, and each test,
//! owns its own [`Metrics`]), its counters, gauges and histograms are lock-free atomics, and it
//! encodes OpenMetrics natively ([`encode`] turns that into the classic text format when the scraper
//! does not ask for OpenMetrics).
//!
//! Per-exchange values are observed once per exchange, by the recorder's derivation (the first
//! one, never a replay or a re-derivation): the operation depends on the request body's `stream`
//! flag and the tokens on the response body, which only derivation parses. The hot path therefore
//! pays nothing for them. The recorder's gauges and counters are read from
//! [`super::RecorderStats`] when a scrape encodes them.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::derive::Derived;
use super::stats::RecorderStats;

pub use agentcap_wire::exposition::{
    OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, openmetrics_to_text, wants_openmetrics,
};

pub use crate::gen_ai::{GEN_AI_PROVIDER, gen_ai_operation};
pub use crate::otel::counters::OtlpCounters;

type L1 = [(&'static str, &'static str); 1];
type L2 = [(&'static str, &'static str); 2];
type L3 = [(&'static str, &'static str); 3];

/// Buckets of the latency histograms, in seconds: 50 µs doubling up to about 105 s.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 22))
}

/// The GenAI conventions' advised buckets of `gen_ai.client.operation.duration`.
fn gen_ai_duration_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// The GenAI conventions' advised buckets of `gen_ai.client.token.usage`.
fn gen_ai_token_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 4.0, 14))
}

/// Reads one value of a [`RecorderStats`].
type Get = fn(&RecorderStats) -> u64;

/// The recorder's counters and gauges, mirrored from a [`RecorderStats`] snapshot at each scrape.
#[derive(Debug, Default)]
struct RecorderMirror {
    counters: Vec<(Get, Counter)>,
    gauges: Vec<(Get, Gauge)>,
    /// Gauges of microsecond stats, exposed in seconds.
    seconds: Vec<(Get, Gauge<f64, AtomicU64>)>,
}

/// The proxy's metric registry and the handles derivation observes (all atomics: observing never
/// blocks another thread).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<L3, Counter>,
    sse_events: Family<L1, Counter>,
    request_bytes: Counter,
    response_bytes: Counter,
    total: Family<L1, Histogram>,
    upstream: Family<L1, Histogram>,
    overhead: Family<L1, Histogram>,
    first_event: Family<L1, Histogram>,
    gen_ai_duration: Family<L2, Histogram>,
    gen_ai_tokens: Family<L3, Histogram>,
    otlp: OtlpCounters,
    recorder: RecorderMirror,
    /// The shipper's (see [`crate::ship`]); they stay 0 when the proxy does not ship.
    pub(crate) ship: ShipMetrics,
}

/// The shipper's metrics: updated by the shipper thread only.
#[derive(Debug, Clone, Default)]
pub struct ShipMetrics {
    /// Segments shipped (every file of each uploaded).
    pub segments: Counter,
    /// Parquet files uploaded.
    pub objects: Counter,
    /// Bytes uploaded.
    pub bytes: Counter,
    /// Shipping rounds that failed (retried later under the same names).
    pub failures: Counter,
    /// Seconds since the shipper was last caught up, while exchanges wait (0 when none does).
    pub lag_seconds: Gauge<f64, AtomicU64>,
}

impl ShipMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = ShipMetrics::default();
        registry.register(
            "agentcap_ship_segments",
            "Segments shipped to the object store",
            m.segments.clone(),
        );
        registry.register(
            "agentcap_ship_objects",
            "Parquet files uploaded to the object store",
            m.objects.clone(),
        );
        registry.register(
            "agentcap_ship_bytes",
            "Bytes uploaded to the object store",
            m.bytes.clone(),
        );
        registry.register(
            "agentcap_ship_failures",
            "Shipping rounds that failed (retried under the same object names)",
            m.failures.clone(),
        );
        registry.register(
            "agentcap_ship_lag_seconds",
            "Seconds since the shipper was last caught up, while committed exchanges wait to be shipped",
            m.lag_seconds.clone(),
        );
        m
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric of the proxy registered (and no sample yet).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<L3, Counter>::default();
        registry.register(
            "agentcap_requests",
            "Recorded exchanges by operation, HTTP status class and outcome",
            requests.clone(),
        );
        let sse_events = Family::<L1, Counter>::default();
        registry.register(
            "agentcap_sse_events",
            "SSE events of streamed responses, by operation",
            sse_events.clone(),
        );
        let request_bytes = Counter::default();
        registry.register(
            "agentcap_request_bytes",
            "Request body bytes received from clients",
            request_bytes.clone(),
        );
        let response_bytes = Counter::default();
        registry.register(
            "agentcap_response_bytes",
            "Response body bytes sent to clients",
            response_bytes.clone(),
        );
        let hist = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<L1, Histogram>::new_with_constructor(latency_buckets as fn() -> _);
            registry.register(name, help, f.clone());
            f
        };
        let total = hist(
            &mut registry,
            "agentcap_request_duration_seconds",
            "Time from the request's arrival to the response's last byte, by operation",
        );
        let upstream = hist(
            &mut registry,
            "agentcap_upstream_duration_seconds",
            "Time from sending the request upstream to the upstream's last byte, by operation",
        );
        let overhead = hist(
            &mut registry,
            "agentcap_proxy_overhead_seconds",
            "Time the proxy added (total minus upstream), by operation",
        );
        let first_event = hist(
            &mut registry,
            "agentcap_time_to_first_event_seconds",
            "Time from the request's arrival to the first SSE event of a streamed response",
        );
        let gen_ai_duration =
            Family::<L2, Histogram>::new_with_constructor(gen_ai_duration_buckets as fn() -> _);
        registry.register(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration (OpenTelemetry GenAI conventions)",
            gen_ai_duration.clone(),
        );
        let gen_ai_tokens =
            Family::<L3, Histogram>::new_with_constructor(gen_ai_token_buckets as fn() -> _);
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens used per GenAI operation, by token type (OpenTelemetry GenAI conventions)",
            gen_ai_tokens.clone(),
        );
        let otlp = OtlpCounters::default();
        for (name, help, c) in [
            (
                "agentcap_otlp_spans_queued",
                "Spans put on the OTLP export queue",
                &otlp.queued,
            ),
            (
                "agentcap_otlp_spans_exported",
                "Spans the OTLP collector accepted",
                &otlp.exported,
            ),
            (
                "agentcap_otlp_spans_dropped",
                "Spans dropped: the export queue was full, or they were still queued at shutdown",
                &otlp.dropped,
            ),
            (
                "agentcap_otlp_spans_failed",
                "Spans of export batches the OTLP collector refused or could not be reached for",
                &otlp.failed,
            ),
        ] {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "agentcap_otlp_queue_spans",
            "Spans waiting in the OTLP export queue",
            otlp.queue.clone(),
        );
        let recorder = RecorderMirror::register(&mut registry);
        let ship = ShipMetrics::register(&mut registry);
        Metrics {
            registry,
            requests,
            sse_events,
            request_bytes,
            response_bytes,
            total,
            upstream,
            overhead,
            first_event,
            gen_ai_duration,
            gen_ai_tokens,
            otlp,
            recorder,
            ship,
        }
    }

    /// Observes one derived exchange (called once per exchange, by its first derivation).
    pub fn observe(&self, d: &Derived) {
        let x = &d.exchange;
        let op = agentcap_wire::vocab::Operation::from_name(&x.operation).name();
        let status = status_class(x.status);
        let outcome = outcome_name(&x.outcome);
        self.requests
            .get_or_create(&[
                ("operation", op),
                ("status_class", status),
                ("outcome", outcome),
            ])
            .inc();
        let opl: L1 = [("operation", op)];
        if let Some(n) = x.event_count.filter(|n| *n > 0) {
            self.sse_events.get_or_create(&opl).inc_by(n as u64);
        }
        self.request_bytes.inc_by(x.request_bytes.max(0) as u64);
        self.response_bytes.inc_by(x.response_bytes.max(0) as u64);
        let secs = |us: Option<i64>| us.map(|v| v.max(0) as f64 / 1e6);
        let total = secs(x.total_us);
        if let Some(v) = total {
            self.total.get_or_create(&opl).observe(v);
        }
        if let Some(v) = secs(x.upstream_us) {
            self.upstream.get_or_create(&opl).observe(v);
        }
        if let Some(v) = secs(x.overhead_us) {
            self.overhead.get_or_create(&opl).observe(v);
        }
        if let Some(v) = secs(x.first_event_us) {
            self.first_event.get_or_create(&opl).observe(v);
        }
        let Some(gen_op) = gen_ai_operation(op, x.agent_id.is_some()) else {
            return;
        };
        if let Some(v) = total {
            self.gen_ai_duration
                .get_or_create(&[
                    ("gen_ai_operation_name", gen_op),
                    ("gen_ai_provider_name", GEN_AI_PROVIDER),
                ])
                .observe(v);
        }
        if let Some(u) = &d.usage {
            for (ty, n) in [("input", u.prompt_tokens), ("output", u.completion_tokens)] {
                if let Some(n) = n.filter(|n| *n >= 0) {
                    self.gen_ai_tokens
                        .get_or_create(&[
                            ("gen_ai_operation_name", gen_op),
                            ("gen_ai_provider_name", GEN_AI_PROVIDER),
                            ("gen_ai_token_type", ty),
                        ])
                        .observe(n as f64);
                }
            }
        }
    }

    /// The span export's counters, for [`crate::otel::Tracer::start`].
    pub fn otlp_counters(&self) -> OtlpCounters {
        self.otlp.clone()
    }

    /// Encodes every metric, with the recorder's taken from `stats`: OpenMetrics text when
    /// `openmetrics`, else the classic Prometheus text format.
    pub fn encode(&self, stats: &RecorderStats, openmetrics: bool) -> String {
        self.recorder.mirror(stats);
        encode(&self.registry, openmetrics)
    }
}

/// Encodes `registry` as OpenMetrics text, or (`openmetrics == false`) as the classic Prometheus
/// text format ([`openmetrics_to_text`]).
pub fn encode(registry: &Registry, openmetrics: bool) -> String {
    let mut om = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut om, registry);
    if openmetrics {
        om
    } else {
        openmetrics_to_text(&om)
    }
}

fn status_class(status: Option<i32>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "none",
    }
}

fn outcome_name(o: &str) -> &'static str {
    use crate::record::Outcome as O;
    [
        O::Complete,
        O::CancelledByClient,
        O::UpstreamError,
        O::ProxyError,
        O::Timeout,
        O::ClientError,
    ]
    .into_iter()
    .map(O::as_str)
    .find(|n| *n == o)
    .unwrap_or("other")
}

impl RecorderMirror {
    fn register(registry: &mut Registry) -> Self {
        let counters: [(&str, &str, Get); 20] = [
            ("received", "Messages handed to the recorder", |s| {
                s.received
            }),
            (
                "spilled",
                "Messages that found the channel full and went to the spill file",
                |s| s.spilled,
            ),
            (
                "journal_written_bytes",
                "Bytes appended to journal segments and spill files",
                |s| s.journal_bytes,
            ),
            ("journal_errors", "Journal or spill I/O errors", |s| {
                s.journal_errors
            }),
            ("exchanges_written", "Exchanges committed to DuckDB", |s| {
                s.exchanges_written
            }),
            (
                "rows_written",
                "Rows committed to DuckDB, all tables",
                |s| s.rows_written,
            ),
            ("sse_events_written", "sse_events rows committed", |s| {
                s.sse_events_written
            }),
            ("entries_written", "entries rows committed", |s| {
                s.entries_written
            }),
            ("usage_written", "usage rows committed", |s| s.usage_written),
            ("agents_written", "agents rows inserted", |s| {
                s.agents_written
            }),
            ("conversations_written", "conversations upserts", |s| {
                s.conversations_written
            }),
            ("db_errors", "Failed DuckDB batch attempts", |s| s.db_errors),
            (
                "records_dropped",
                "Records lost (stays 0 unless something is sent after shutdown)",
                |s| s.records_dropped,
            ),
            (
                "exchanges_rederived",
                "Exchanges whose rows did not fit in memory while DuckDB was behind, derived again from the journal",
                |s| s.exchanges_rederived,
            ),
            (
                "exchanges_derived_by_writer",
                "Exchanges the journal writer derived itself because the derive queue was full",
                |s| s.exchanges_derived_by_writer,
            ),
            (
                "replayed_exchanges",
                "Exchanges recovered from a previous run's journal",
                |s| s.replayed_exchanges,
            ),
            (
                "journal_corrupt_segments",
                "Damaged journal files kept aside",
                |s| s.journal_corrupt_segments,
            ),
            (
                "journal_corrupt_bytes",
                "Bytes of damaged journal data skipped while reading",
                |s| s.journal_corrupt_bytes,
            ),
            (
                "strict_not_durable",
                "Strict durability: responses ended with an error because their record was not durable",
                |s| s.strict_not_durable,
            ),
            (
                "exchanges_incomplete",
                "Exchanges written with a message missing",
                |s| s.exchanges_incomplete,
            ),
        ];
        let gauges: [(&str, &str, Get); 8] = [
            (
                "channel_messages",
                "Messages in the channel from the hot path to the writer",
                |s| s.channel_messages,
            ),
            (
                "channel_bytes",
                "Body bytes in the channel from the hot path to the writer",
                |s| s.channel_bytes,
            ),
            (
                "spill_queue_messages",
                "Messages waiting for the spill thread",
                |s| s.spill_queue,
            ),
            (
                "spill_queue_bytes",
                "Body bytes waiting for the spill thread",
                |s| s.spill_queue_bytes,
            ),
            (
                "derive_queue_bytes",
                "Bytes of finished exchanges queued for a deriver thread",
                |s| s.derive_queue_bytes,
            ),
            (
                "db_queue_bytes",
                "Bytes of derived rows waiting for a DuckDB commit",
                |s| s.db_queue_bytes,
            ),
            (
                "journal_pending_bytes",
                "Body bytes handed over by the hot path and not journaled yet (channel plus spill queue)",
                |s| s.channel_bytes + s.spill_queue_bytes,
            ),
            (
                "pending_exchanges",
                "Exchanges in memory not committed to DuckDB yet",
                |s| s.pending_exchanges,
            ),
        ];
        let seconds: [(&str, &str, Get); 2] = [
            (
                "db_commit_lag_seconds",
                "Age of the oldest derived row waiting for a DuckDB commit (0 when none waits)",
                |s| s.db_commit_lag_us,
            ),
            (
                "db_busy_seconds",
                "Time the DuckDB thread spent in successful batch transactions (only grows)",
                |s| s.db_busy_us,
            ),
        ];
        let mut m = RecorderMirror::default();
        for (name, help, get) in counters {
            let c = Counter::default();
            registry.register(format!("agentcap_recorder_{name}"), help, c.clone());
            m.counters.push((get, c));
        }
        for (name, help, get) in gauges {
            let g = Gauge::default();
            registry.register(format!("agentcap_recorder_{name}"), help, g.clone());
            m.gauges.push((get, g));
        }
        for (name, help, get) in seconds {
            let g = Gauge::<f64, AtomicU64>::default();
            registry.register(format!("agentcap_recorder_{name}"), help, g.clone());
            m.seconds.push((get, g));
        }
        m
    }

    fn mirror(&self, s: &RecorderStats) {
        for (get, c) in &self.counters {
            c.inner().store(get(s), Ordering::Relaxed);
        }
        for (get, g) in &self.gauges {
            g.set(i64::try_from(get(s)).unwrap_or(i64::MAX));
        }
        for (get, g) in &self.seconds {
            g.set(get(s) as f64 / 1e6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the proxy exposes is in the README's table, and every `agentcap_` or
    /// `gen_ai_` name of the table (but the twin's) is exposed.
    #[test]
    fn readme_documents_every_metric() {
        let m = Metrics::new();
        let mut d = Derived::default();
        d.exchange.operation = "conversations.start_stream".into();
        d.exchange.status = Some(200);
        d.exchange.outcome = "complete".into();
        d.exchange.event_count = Some(3);
        d.exchange.total_us = Some(2_000);
        d.exchange.upstream_us = Some(1_500);
        d.exchange.overhead_us = Some(500);
        d.exchange.first_event_us = Some(900);
        d.usage = Some(crate::recorder::derive::UsageRow {
            prompt_tokens: Some(7),
            completion_tokens: Some(11),
            ..Default::default()
        });
        m.observe(&d);
        let text = m.encode(&RecorderStats::default(), false);
        assert!(
            text.contains("gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_provider_name=\"mistral_ai\",gen_ai_token_type=\"output\"} 11.0"),
            "{text}"
        );
        let exposed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
            .collect();
        let readme = include_str!("../../../README.md");
        let documented: Vec<&str> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .filter(|n| n.starts_with("agentcap_") || n.starts_with("gen_ai_"))
            .filter(|n| !n.starts_with("agentcap_sim_"))
            .collect();
        for name in &exposed {
            assert!(
                documented.contains(name),
                "{name} is not in the README's table"
            );
        }
        for name in &documented {
            assert!(
                exposed.contains(name),
                "the README lists {name}, not exposed"
            );
        }
        assert!(exposed.len() > 30, "{exposed:?}");
    }

    #[test]
    fn outcome_and_status_names() {
        assert_eq!(outcome_name("cancelled_by_client"), "cancelled_by_client");
        assert_eq!(outcome_name("???"), "other");
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(None), "none");
        assert_eq!(
            gen_ai_operation("conversations.start_stream", true),
            Some("invoke_agent")
        );
        assert_eq!(gen_ai_operation("agents.list", false), None);
    }
}
