//! OpenTelemetry traces of the recorded exchanges, exported over OTLP/HTTP (protobuf) (`agentcap
//! proxy --otlp-endpoint URL`): spans as `opentelemetry_sdk`'s `SpanData`, exported by
//! `opentelemetry-otlp`'s span exporter.
//!
//! Spans are built from what the recorder derives ([`spans::spans_of`]), by the exchange's first
//! derivation, like the Prometheus series (deriver thread or writer; never the hot path, never a
//! journal replay or re-derivation). They go to a bounded queue ([`OtlpConfig::queue_spans`]);
//! when it is full a span is dropped and counted (`agentcap_otlp_spans_dropped_total`), never
//! waited for. One export thread of its own (with a one-thread Tokio runtime for the HTTP client)
//! takes batches of [`OtlpConfig::batch_spans`] spans, or what it has every
//! [`OtlpConfig::export_interval`], and POSTs them to the collector; a batch the collector refuses
//! or cannot be reached for within [`OtlpConfig::export_timeout`] is counted
//! (`agentcap_otlp_spans_failed_total`) and let go (the exporter retries a 429 or 5xx answer within the
//! timeout; after that the next batch is the next try).
//!
//! Architecture Invariant: exporting never blocks forwarding or recording. The queue is filled with
//! `try_send` from a background thread, the export has a thread of its own, and an unreachable or
//! slow collector only fills the queue, whose overflow is counted.
//!
//! The exporter's HTTP transport is the workspace's one client ([`crate::upstream::http_client`]:
//! rustls, h2 by ALPN) behind `opentelemetry-http`'s `HttpClient` trait, so no second HTTP or TLS
//! stack comes with the export.

pub mod counters;
pub mod spans;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use parking_lot::Mutex;

use crate::recorder::body::Redactor;
use crate::recorder::derive::Derived;
pub use counters::OtlpCounters;
use spans::{AttrValue, Kind, SpanOptions, SpanRecord};

/// The path of the traces endpoint under an OTLP/HTTP base URL.
pub const TRACES_PATH: &str = "/v1/traces";
/// `service.name` unless configured (`--otlp-service-name`, `OTEL_SERVICE_NAME`).
pub const DEFAULT_SERVICE_NAME: &str = "agentcap";
/// Spans the export queue holds at most unless configured.
pub const DEFAULT_QUEUE_SPANS: usize = 4096;
/// Spans per export request at most.
pub const DEFAULT_BATCH_SPANS: usize = 512;

/// Why span export could not start (the operator's input).
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The endpoint, a header or a setting is invalid.
    #[error("OTLP export: {0}")]
    Config(String),
}

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The traces URL spans are POSTed to (see [`traces_url`]).
    pub endpoint: String,
    /// Extra request headers (authentication of a hosted collector).
    pub headers: Vec<(String, String)>,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Export message content (`--otlp-content`), always through `--redact`.
    pub content: bool,
    /// A CA certificate file (PEM) trusted for the collector besides the webpki roots.
    pub ca: Option<std::path::PathBuf>,
    /// Bound of the export queue, in spans; when full, spans are dropped and counted.
    pub queue_spans: usize,
    /// Spans per export request at most.
    pub batch_spans: usize,
    /// A partial batch is exported this long after the previous export at most.
    pub export_interval: Duration,
    /// One export request (retries included) may take this long.
    pub export_timeout: Duration,
}

impl OtlpConfig {
    /// Export to the traces URL `traces_url` (as is; [`traces_url`] makes one of a base URL) with
    /// the defaults.
    pub fn new(traces_url: &str) -> OtlpConfig {
        OtlpConfig {
            endpoint: traces_url.trim().to_owned(),
            headers: Vec::new(),
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            content: false,
            ca: None,
            queue_spans: DEFAULT_QUEUE_SPANS,
            batch_spans: DEFAULT_BATCH_SPANS,
            export_interval: Duration::from_secs(1),
            export_timeout: Duration::from_secs(10),
        }
    }

    /// Checks the endpoint (an `http://` or `https://` URL with a host) and the bounds.
    pub fn validate(&self) -> Result<(), OtlpError> {
        let bad = |m: String| Err(OtlpError::Config(m));
        let uri: http::Uri = match self.endpoint.parse() {
            Ok(u) => u,
            Err(e) => return bad(format!("endpoint {:?} is not a URL: {e}", self.endpoint)),
        };
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return bad(format!(
                "endpoint {:?} must be an http:// or https:// URL with a host",
                self.endpoint
            ));
        }
        for (k, v) in &self.headers {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                return bad(format!("header {k:?} is not a valid HTTP header"));
            }
        }
        if self.queue_spans == 0 || self.batch_spans == 0 {
            return bad("the queue and batch sizes must be at least 1".into());
        }
        if self.export_interval.is_zero() || self.export_timeout.is_zero() {
            return bad("the export interval and timeout must be positive".into());
        }
        Ok(())
    }
}

/// The traces URL of an OTLP/HTTP endpoint: `base` with [`TRACES_PATH`] appended, as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` means it, unless its path already ends with it.
pub fn traces_url(base: &str) -> String {
    let base = base.trim();
    if base.trim_end_matches('/').ends_with(TRACES_PATH) {
        base.to_owned()
    } else {
        format!("{}{TRACES_PATH}", base.trim_end_matches('/'))
    }
}

/// Parses `OTEL_EXPORTER_OTLP_HEADERS`' format: `key=value` pairs separated by commas, values
/// percent-decoded, spaces around keys and values ignored.
pub fn parse_headers(s: &str) -> Result<Vec<(String, String)>, OtlpError> {
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(OtlpError::Config(format!(
                "header {pair:?} is not key=value"
            )));
        };
        let v = percent_encoding::percent_decode_str(v.trim())
            .decode_utf8()
            .map_err(|e| OtlpError::Config(format!("header {:?}: {e}", k.trim())))?;
        out.push((k.trim().to_owned(), v.into_owned()));
    }
    Ok(out)
}

/// A collector's answer is read up to this many bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// `opentelemetry-otlp`'s HTTP transport over the workspace's one client.
struct Transport {
    client: crate::upstream::HttpClient<Full<Bytes>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Transport {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let resp = self
            .client
            .request(http::Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = resp.into_parts();
        // A collector's answer is small; a larger one is cut, not buffered (the export only needs
        // its status and the start of its text).
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok(http::Response::from_parts(parts, body))
    }
}

/// The collector's side: `opentelemetry-otlp`'s span exporter (OTLP/HTTP, protobuf).
struct Collector {
    exporter: opentelemetry_otlp::SpanExporter,
}

impl Collector {
    fn new(cfg: &OtlpConfig) -> Result<Collector, OtlpError> {
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
        use opentelemetry_sdk::trace::SpanExporter as _;
        let opts = crate::upstream::ClientOptions {
            connect_timeout: cfg.export_timeout.min(Duration::from_secs(10)),
            extra_ca: cfg.ca.clone(),
            ..Default::default()
        };
        let client =
            crate::upstream::http_client(&opts).map_err(|e| OtlpError::Config(e.to_string()))?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Transport { client })
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(cfg.endpoint.clone())
            .with_timeout(cfg.export_timeout)
            .with_headers(cfg.headers.iter().cloned().collect())
            .build()
            .map_err(|e| OtlpError::Config(e.to_string()))?;
        exporter.set_resource(
            &opentelemetry_sdk::Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        );
        Ok(Collector { exporter })
    }

    /// Exports one batch; `Err` says why the collector did not take it.
    async fn send(&self, spans: Vec<SpanData>) -> Result<(), String> {
        use opentelemetry_sdk::trace::SpanExporter as _;
        self.exporter.export(spans).await.map_err(|e| e.to_string())
    }
}

/// The span export: the bounded queue's sending side and the export thread.
pub struct Tracer {
    tx: Sender<SpanRecord>,
    opts: SpanOptions,
    counters: OtlpCounters,
    stop: Mutex<Option<(Sender<()>, std::thread::JoinHandle<()>)>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

impl Tracer {
    /// Starts the export thread. Nothing is sent until spans are offered; a collector that cannot be
    /// reached is not an error here (its batches are counted as failed).
    pub fn start(
        cfg: &OtlpConfig,
        redactor: Redactor,
        counters: OtlpCounters,
    ) -> Result<Tracer, OtlpError> {
        cfg.validate()?;
        let collector = Collector::new(cfg)?;
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_spans);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let worker = ExportThread {
            rx,
            stop: stop_rx,
            collector,
            counters: counters.clone(),
            batch: cfg.batch_spans,
            interval: cfg.export_interval,
            timeout: cfg.export_timeout,
            last_warning: None,
        };
        let handle = std::thread::Builder::new()
            .name("agentcap-otlp".into())
            .spawn(move || worker.run())
            .map_err(|e| OtlpError::Config(format!("cannot start the export thread: {e}")))?;
        Ok(Tracer {
            tx,
            opts: SpanOptions {
                content: cfg.content,
                redactor,
            },
            counters,
            stop: Mutex::new(Some((stop_tx, handle))),
        })
    }

    /// Maps a derived exchange to its spans and queues them; a span that finds the queue full is
    /// dropped and counted. Never blocks.
    pub fn offer(&self, d: &Derived) {
        for span in spans::spans_of(d, &self.opts) {
            match self.tx.try_send(span) {
                Ok(()) => {
                    self.counters.queued.inc();
                }
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.counters.dropped.inc();
                }
            }
        }
        self.counters.queue.set(self.tx.len() as i64);
    }

    /// Exports what is queued (within one export timeout) and stops the thread. Idempotent.
    pub fn shutdown(&self) {
        if let Some((stop, handle)) = self.stop.lock().take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct ExportThread {
    rx: Receiver<SpanRecord>,
    stop: Receiver<()>,
    collector: Collector,
    counters: OtlpCounters,
    batch: usize,
    interval: Duration,
    timeout: Duration,
    last_warning: Option<Instant>,
}

impl ExportThread {
    fn run(mut self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "agentcap otlp: cannot start the export runtime; spans are dropped");
                return self.drain_dropped();
            }
        };
        let mut batch: Vec<SpanRecord> = Vec::with_capacity(self.batch);
        let mut due = Instant::now() + self.interval;
        loop {
            let wait = due.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(self.rx) -> span => match span {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                },
                recv(self.stop) -> _ => break,
                default(wait) => {}
            }
            if batch.len() >= self.batch || Instant::now() >= due {
                if !batch.is_empty() {
                    self.export(&rt, std::mem::take(&mut batch), self.timeout);
                }
                due = Instant::now() + self.interval;
            }
            self.counters.queue.set(self.rx.len() as i64);
        }
        // Stopping: what is queued gets one export, within one export timeout in all.
        let deadline = Instant::now() + self.timeout;
        batch.extend(self.rx.try_iter());
        for chunk in batch.chunks(self.batch) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.counters.dropped.inc_by(chunk.len() as u64);
            } else {
                self.export(&rt, chunk.to_vec(), left);
            }
        }
        self.counters.queue.set(0);
    }

    fn drain_dropped(self) {
        for _ in self.rx.iter() {
            self.counters.dropped.inc();
        }
    }

    fn export(&mut self, rt: &tokio::runtime::Runtime, batch: Vec<SpanRecord>, timeout: Duration) {
        let n = batch.len() as u64;
        let data: Vec<SpanData> = batch.into_iter().map(span_data).collect();
        let result = rt.block_on(async {
            match tokio::time::timeout(timeout, self.collector.send(data)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        });
        match result {
            Ok(()) => {
                self.counters.exported.inc_by(n);
            }
            Err(e) => {
                self.counters.failed.inc_by(n);
                let quiet = self
                    .last_warning
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(60));
                if !quiet {
                    self.last_warning = Some(Instant::now());
                    tracing::warn!(error = %e, spans = n, "agentcap otlp: export failed (counted in agentcap_otlp_spans_failed_total; further failures are logged at most once a minute)");
                }
            }
        }
    }
}

fn time_of(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn key_value(key: &'static str, v: AttrValue) -> KeyValue {
    match v {
        AttrValue::Str(s) => KeyValue::new(key, s),
        AttrValue::Int(i) => KeyValue::new(key, i),
        AttrValue::F64(f) => KeyValue::new(key, f),
    }
}

static SCOPE: std::sync::LazyLock<InstrumentationScope> = std::sync::LazyLock::new(|| {
    InstrumentationScope::builder("agentcap")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
});

/// A [`SpanRecord`] as the exporter's [`SpanData`].
fn span_data(s: SpanRecord) -> SpanData {
    let mut events = SpanEvents::default();
    for e in s.events {
        events.events.push(opentelemetry::trace::Event::new(
            e.name,
            time_of(e.at_us),
            Vec::new(),
            0,
        ));
    }
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(s.trace_id),
            SpanId::from_bytes(s.span_id),
            TraceFlags::new(s.trace_flags),
            false,
            TraceState::default(),
        ),
        parent_span_id: s.parent_span_id.map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: s.parent_is_remote,
        span_kind: match s.kind {
            Kind::Client => SpanKind::Client,
            Kind::Internal => SpanKind::Internal,
        },
        name: s.name.into(),
        start_time: time_of(s.start_us),
        end_time: time_of(s.end_us.max(s.start_us)),
        attributes: s
            .attributes
            .into_iter()
            .map(|(k, v)| key_value(k, v))
            .collect(),
        dropped_attributes_count: 0,
        events,
        links: SpanLinks::default(),
        status: match s.error {
            Some(why) => Status::error(why),
            None => Status::Unset,
        },
        instrumentation_scope: SCOPE.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::derive::ExchangeRow;

    fn exchange(n: u128) -> Derived {
        Derived {
            exchange: ExchangeRow {
                id: uuid::Uuid::from_u128(n + 1).to_string(),
                started_at_us: Some(1),
                operation: "conversations.get".into(),
                outcome: "complete".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// A collector that takes the connection and never answers holds the export thread: the queue
    /// fills, and every span that does not fit is dropped and counted, while `offer` returns at once.
    #[test]
    fn a_stuck_collector_fills_the_queue_and_the_overflow_is_counted() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cfg = OtlpConfig::new(&format!("http://{}", silent.local_addr().unwrap()));
        cfg.queue_spans = 2;
        cfg.batch_spans = 1;
        cfg.export_interval = Duration::from_millis(1);
        cfg.export_timeout = Duration::from_secs(2);
        let counters = OtlpCounters::default();
        let tracer = Tracer::start(&cfg, Redactor::default(), counters.clone()).unwrap();
        for n in 0..50 {
            tracer.offer(&exchange(n));
        }
        // One span in the export thread's hands, at most two in the queue: the rest was dropped.
        assert!(counters.dropped.get() >= 47, "{}", counters.dropped.get());
        assert_eq!(counters.queued.get() + counters.dropped.get(), 50);
        tracer.shutdown();
        assert_eq!(counters.exported.get(), 0);
        assert_eq!(
            counters.failed.get() + counters.dropped.get(),
            50,
            "every span is accounted for"
        );
        drop(silent);
    }

    #[test]
    fn endpoints_and_headers() {
        assert_eq!(traces_url("http://h:4318"), "http://h:4318/v1/traces");
        assert_eq!(traces_url("http://h:4318/"), "http://h:4318/v1/traces");
        assert_eq!(traces_url("http://h/otlp"), "http://h/otlp/v1/traces");
        assert_eq!(traces_url("http://h/v1/traces"), "http://h/v1/traces");
        assert_eq!(
            parse_headers("a=1,b = x%3Dy ,,").unwrap(),
            [("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
        assert!(parse_headers("novalue").is_err());
        assert!(OtlpConfig::new("ftp://h").validate().is_err());
        assert!(OtlpConfig::new("http://127.0.0.1:1").validate().is_ok());
    }
}
