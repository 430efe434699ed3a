//! `agentcap bench stream`: streaming conversation starts against one target (or two, interleaved A B A B),
//! timed per request — response headers, first event, first `message.output.delta` (TTFT), gaps between
//! events, total — and summarised as percentiles, with differences and ratios when comparing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agentcap_wire::SseDecoder;
use comfy_table::{CellAlignment, Table, presets};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde::Serialize;

use crate::BenchError;
use crate::client::{self, HttpClient, RequestSpec, Target};
use crate::stats::{Delta, Ratio, SHOWN, Summary, fmt_ratio, fmt_us};

/// What to run.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// The target, then optionally the baseline it is compared with (`--compare`).
    pub targets: Vec<Target>,
    /// The request every run sends (normally a streamed conversation start).
    pub request: RequestSpec,
    /// Measured requests per target.
    pub requests: usize,
    /// Requests in flight at once (over all targets).
    pub concurrency: usize,
    /// Requests per target sent first and not measured.
    pub warmup: usize,
    /// A request that has not ended after this long counts as a `timeout` error.
    pub timeout: Duration,
    /// Extra CA certificate (PEM) for HTTPS targets.
    pub ca: Option<PathBuf>,
}

/// The measurements of one streamed request. Offsets are nanoseconds from just before the request was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamSample {
    /// Index into [`StreamOptions::targets`].
    pub target: usize,
    /// HTTP status, once the response head arrived.
    pub status: Option<u16>,
    /// Response head received.
    pub headers_ns: Option<u64>,
    /// First SSE event complete.
    pub first_event_ns: Option<u64>,
    /// First `message.output.delta` complete (time to first token).
    pub ttft_ns: Option<u64>,
    /// Body ended (or the request failed).
    pub total_ns: u64,
    /// Receive offset of every event, in order.
    pub event_offsets_ns: Vec<u64>,
    /// Event type of every event, in order.
    pub event_types: Vec<String>,
    /// Error category when the request did not complete as a successful stream (`http 500`, `connect`,
    /// `error event`, `incomplete`, `timeout`, …).
    pub error: Option<String>,
}

impl StreamSample {
    /// Gaps between consecutive events, in nanoseconds.
    pub fn gaps_ns(&self) -> impl Iterator<Item = u64> + '_ {
        self.event_offsets_ns
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Sends one request and times its stream. Never fails: what went wrong is in [`StreamSample::error`].
pub async fn measure(
    client: &HttpClient,
    target: &Target,
    target_index: usize,
    spec: &RequestSpec,
    timeout: Duration,
) -> StreamSample {
    let t0 = Instant::now();
    let mut sample = StreamSample {
        target: target_index,
        ..StreamSample::default()
    };
    let run = measure_into(client, target, spec, t0, &mut sample);
    if tokio::time::timeout(timeout, run).await.is_err() {
        sample.error = Some("timeout".to_owned());
    }
    sample.total_ns = ns(t0.elapsed());
    sample
}

async fn measure_into(
    client: &HttpClient,
    target: &Target,
    spec: &RequestSpec,
    t0: Instant,
    s: &mut StreamSample,
) {
    let req = match spec.request(target) {
        Ok(r) => r,
        Err(e) => {
            s.error = Some(format!("request: {e}"));
            return;
        }
    };
    let resp = match client.request(req).await {
        Ok(r) => r,
        Err(e) => {
            s.error = Some(
                if e.is_connect() {
                    "connect"
                } else {
                    "request failed"
                }
                .to_owned(),
            );
            return;
        }
    };
    s.headers_ns = Some(ns(t0.elapsed()));
    let status = resp.status();
    s.status = Some(status.as_u16());
    let mut body = resp.into_body();
    if !status.is_success() {
        // Read the error body so the connection can be reused; it is not measured.
        let _ = body.collect().await;
        s.error = Some(format!("http {}", status.as_u16()));
        return;
    }
    let mut decoder = SseDecoder::new();
    let mut done = false;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(_) => {
                s.error = Some("body".to_owned());
                return;
            }
        };
        let at = ns(t0.elapsed());
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let events = match decoder.push(data) {
            Ok(evs) => evs,
            Err(_) => {
                s.error = Some("sse".to_owned());
                return;
            }
        };
        for ev in events {
            let ty = match ev.event {
                Some(t) => t,
                None => ev
                    .json()
                    .ok()
                    .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_owned)))
                    .unwrap_or_default(),
            };
            s.first_event_ns.get_or_insert(at);
            if ty == "message.output.delta" {
                s.ttft_ns.get_or_insert(at);
            }
            match ty.as_str() {
                "conversation.response.done" => done = true,
                "conversation.response.error" => s.error = Some("error event".to_owned()),
                _ => {}
            }
            s.event_offsets_ns.push(at);
            s.event_types.push(ty);
        }
    }
    if s.error.is_none() && !done {
        s.error = Some("incomplete".to_owned());
    }
}

/// The summary of one target.
#[derive(Debug, Clone, Serialize)]
pub struct StreamTargetReport {
    /// `target` or `compare`.
    pub label: String,
    /// Base URL.
    pub url: String,
    /// Measured requests.
    pub requests: usize,
    /// Of those, complete streams (`conversation.response.done` seen, no error).
    pub ok: usize,
    /// Failed requests by category.
    pub errors: BTreeMap<String, usize>,
    /// Events per complete stream (the `_us` fields hold counts).
    pub events_per_request: Summary,
    /// Time to response headers.
    pub headers: Summary,
    /// Time to the first event.
    pub first_event: Summary,
    /// Time to the first `message.output.delta` (TTFT).
    pub ttft: Summary,
    /// Gaps between consecutive events, all streams pooled.
    pub event_gap: Summary,
    /// Total time of the request.
    pub total: Summary,
}

/// Per-event added latency: for the i-th request to each target (a pair), the difference of the receive
/// offsets of event k, target − compare, over every event of every pair with the same number of events.
#[derive(Debug, Clone, Serialize)]
pub struct EventAdded {
    /// Request pairs compared (both complete, same event count).
    pub pairs: usize,
    /// Request pairs skipped (an error on either side, or different event counts).
    pub skipped_pairs: usize,
    /// The differences of offsets from the send time: includes what the request path added.
    pub added: Summary,
    /// The differences of offsets from each request's own first event (events 2..n): the request path
    /// cancels out, leaving what forwarding added to the later events.
    pub after_first: Summary,
}

/// Target versus baseline.
#[derive(Debug, Clone, Serialize)]
pub struct StreamComparison {
    /// Per metric (`headers`, `first_event`, `ttft`, `event_gap`, `total`): target − compare (metrics without
    /// samples on either side are left out).
    pub added: BTreeMap<String, Delta>,
    /// Per metric: target / compare.
    pub ratio: BTreeMap<String, Ratio>,
    /// Per-event added latency (measured from the request's send time, so it includes the request path).
    pub per_event: EventAdded,
}

/// The result of `agentcap bench stream`.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// Always `stream`.
    pub bench: &'static str,
    /// Measured requests per target.
    pub requests_per_target: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Unmeasured requests per target sent first.
    pub warmup_per_target: usize,
    /// Wall time of the measured part, in seconds.
    pub wall_s: f64,
    /// One entry per target, the target first.
    pub targets: Vec<StreamTargetReport>,
    /// Present with `--compare`.
    pub comparison: Option<StreamComparison>,
    /// The per-request samples (only when asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<StreamSample>,
}

/// Runs the bench: warm-up, then `requests` per target, interleaved A B A B when there are two targets.
pub async fn run(opts: &StreamOptions) -> Result<StreamReport, BenchError> {
    validate(opts)?;
    let clients = opts
        .targets
        .iter()
        .map(|_| client::client(opts.ca.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let clients = Arc::new(clients);
    let n = opts.targets.len();
    if opts.warmup > 0 {
        drive(opts, &clients, opts.warmup * n).await;
    }
    let started = Instant::now();
    let samples = drive(opts, &clients, opts.requests * n).await;
    let wall_s = started.elapsed().as_secs_f64();
    Ok(report(opts, samples, wall_s))
}

fn validate(opts: &StreamOptions) -> Result<(), BenchError> {
    if opts.targets.is_empty() || opts.targets.len() > 2 {
        return Err(BenchError::InvalidOption(
            "one target, optionally one to compare with".into(),
        ));
    }
    if opts.requests == 0 || opts.concurrency == 0 {
        return Err(BenchError::InvalidOption(
            "--requests and --concurrency must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Sends `total` requests, `concurrency` at a time; request `i` goes to target `i % targets`.
/// Returns the samples in request order.
async fn drive(
    opts: &StreamOptions,
    clients: &Arc<Vec<HttpClient>>,
    total: usize,
) -> Vec<StreamSample> {
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.min(total) {
        let next = next.clone();
        let out = out.clone();
        let clients = clients.clone();
        let targets = opts.targets.clone();
        let spec = opts.request.clone();
        let timeout = opts.timeout;
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = i % targets.len();
                let s = measure(&clients[t], &targets[t], t, &spec, timeout).await;
                out.lock().push((i, s));
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let mut v = std::mem::take(&mut *out.lock());
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, s)| s).collect()
}

/// Summarises samples (in request order) into the report.
pub fn report(opts: &StreamOptions, samples: Vec<StreamSample>, wall_s: f64) -> StreamReport {
    let targets: Vec<StreamTargetReport> = opts
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mine: Vec<&StreamSample> = samples.iter().filter(|s| s.target == i).collect();
            target_report(t, &mine)
        })
        .collect();
    let comparison = (targets.len() == 2).then(|| {
        let (a, b) = (&targets[0], &targets[1]);
        let metrics: [(&str, &Summary, &Summary); 5] = [
            ("headers", &a.headers, &b.headers),
            ("first_event", &a.first_event, &b.first_event),
            ("ttft", &a.ttft, &b.ttft),
            ("event_gap", &a.event_gap, &b.event_gap),
            ("total", &a.total, &b.total),
        ];
        StreamComparison {
            added: metrics
                .iter()
                .filter_map(|(k, x, y)| Some(((*k).to_owned(), x.minus(y)?)))
                .collect(),
            ratio: metrics
                .iter()
                .map(|(k, x, y)| ((*k).to_owned(), x.ratio(y)))
                .collect(),
            per_event: per_event_added(&samples),
        }
    });
    StreamReport {
        bench: "stream",
        requests_per_target: opts.requests,
        concurrency: opts.concurrency,
        warmup_per_target: opts.warmup,
        wall_s,
        targets,
        comparison,
        samples: Vec::new(),
    }
}

fn target_report(t: &Target, samples: &[&StreamSample]) -> StreamTargetReport {
    let mut errors = BTreeMap::new();
    for s in samples {
        if let Some(e) = &s.error {
            *errors.entry(e.clone()).or_insert(0) += 1;
        }
    }
    let ok: Vec<&&StreamSample> = samples.iter().filter(|s| s.error.is_none()).collect();
    let pick = |f: fn(&StreamSample) -> Option<u64>| -> Summary {
        Summary::of_unsigned_ns(&ok.iter().filter_map(|s| f(s)).collect::<Vec<_>>())
    };
    let gaps: Vec<u64> = ok.iter().flat_map(|s| s.gaps_ns()).collect();
    StreamTargetReport {
        label: t.label.clone(),
        url: t.url.clone(),
        requests: samples.len(),
        ok: ok.len(),
        errors,
        events_per_request: Summary::of_counts(
            &ok.iter()
                .map(|s| s.event_offsets_ns.len())
                .collect::<Vec<_>>(),
        ),
        headers: pick(|s| s.headers_ns),
        first_event: pick(|s| s.first_event_ns),
        ttft: pick(|s| s.ttft_ns),
        event_gap: Summary::of_unsigned_ns(&gaps),
        total: pick(|s| Some(s.total_ns)),
    }
}

/// Pairs the k-th request of target 0 with the k-th of target 1 and differences their event offsets.
pub fn per_event_added(samples: &[StreamSample]) -> EventAdded {
    let a: Vec<&StreamSample> = samples.iter().filter(|s| s.target == 0).collect();
    let b: Vec<&StreamSample> = samples.iter().filter(|s| s.target == 1).collect();
    let mut diffs = Vec::new();
    let mut rel = Vec::new();
    let (mut pairs, mut skipped) = (0, 0);
    for (x, y) in a.iter().zip(&b) {
        let comparable = x.error.is_none()
            && y.error.is_none()
            && x.event_offsets_ns.len() == y.event_offsets_ns.len()
            && x.event_types == y.event_types;
        if !comparable {
            skipped += 1;
            continue;
        }
        pairs += 1;
        let (x0, y0) = (
            x.event_offsets_ns.first().copied().unwrap_or(0),
            y.event_offsets_ns.first().copied().unwrap_or(0),
        );
        for (k, (p, q)) in x
            .event_offsets_ns
            .iter()
            .zip(&y.event_offsets_ns)
            .enumerate()
        {
            diffs.push(signed_diff(i128::from(*p), i128::from(*q)));
            if k > 0 {
                rel.push(signed_diff(
                    i128::from(*p) - i128::from(x0),
                    i128::from(*q) - i128::from(y0),
                ));
            }
        }
    }
    skipped += a.len().abs_diff(b.len());
    EventAdded {
        pairs,
        skipped_pairs: skipped,
        added: Summary::of_ns(&diffs),
        after_first: Summary::of_ns(&rel),
    }
}

fn signed_diff(a: i128, b: i128) -> i64 {
    let d = a - b;
    i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
}

/// The report as text: one line per target, then a table of percentiles (and differences and ratios).
pub fn render_table(r: &StreamReport) -> String {
    let mut out = format!(
        "agentcap bench stream: {} requests per target, concurrency {}, {:.1} s\n",
        r.requests_per_target, r.concurrency, r.wall_s
    );
    for t in &r.targets {
        out.push_str(&target_line(t));
    }
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    let mut header = vec!["metric".to_owned(), "".to_owned()];
    header.extend(SHOWN.iter().map(|(n, _)| (*n).to_owned()));
    table.set_header(header);
    type Get = fn(&StreamTargetReport) -> &Summary;
    let metrics: [(&str, &str, Get); 5] = [
        ("headers", "response headers", |t| &t.headers),
        ("first_event", "first event", |t| &t.first_event),
        ("ttft", "TTFT (first delta)", |t| &t.ttft),
        ("event_gap", "gap between events", |t| &t.event_gap),
        ("total", "total", |t| &t.total),
    ];
    for (key, name, get) in metrics {
        for (i, t) in r.targets.iter().enumerate() {
            let s = get(t);
            let mut row = vec![
                if i == 0 {
                    name.to_owned()
                } else {
                    String::new()
                },
                t.label.clone(),
            ];
            row.extend(SHOWN.iter().map(|(_, f)| cell(s, f(s))));
            table.add_row(row);
        }
        if let Some(c) = &r.comparison
            && let (Some(d), Some(q)) = (c.added.get(key), c.ratio.get(key))
        {
            let mut row = vec![String::new(), "added".to_owned()];
            row.extend(
                [d.p50_us, d.p90_us, d.p99_us, d.p999_us, d.max_us]
                    .iter()
                    .map(|v| fmt_us(*v)),
            );
            table.add_row(row);
            let mut row = vec![String::new(), "ratio".to_owned()];
            row.extend(
                [q.p50, q.p90, q.p99, q.p999, q.max]
                    .iter()
                    .map(|v| fmt_ratio(*v)),
            );
            table.add_row(row);
        }
    }
    if let Some(c) = &r.comparison {
        let s = &c.per_event.added;
        let mut row = vec![
            "per-event added".to_owned(),
            format!("{} pairs", c.per_event.pairs),
        ];
        row.extend(SHOWN.iter().map(|(_, f)| cell(s, f(s))));
        table.add_row(row);
        let s = &c.per_event.after_first;
        let mut row = vec!["  after first event".to_owned(), String::new()];
        row.extend(SHOWN.iter().map(|(_, f)| cell(s, f(s))));
        table.add_row(row);
    }
    for i in 2..2 + SHOWN.len() {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    out.push_str(&table.to_string());
    out.push('\n');
    if let Some(c) = &r.comparison {
        out.push_str(&format!(
            "added = {} − {}, ratio = {} / {}; per-event added compares the k-th event of the i-th request to each \
             (offsets from the send time; \"after first event\": from each request's first event, events 2..n; {} \
             pairs skipped: errors or different event sequences)\n",
            r.targets[0].label,
            r.targets[1].label,
            r.targets[0].label,
            r.targets[1].label,
            c.per_event.skipped_pairs
        ));
    }
    out
}

fn cell(s: &Summary, v: f64) -> String {
    if s.n == 0 {
        "–".to_owned()
    } else {
        fmt_us(v)
    }
}

fn target_line(t: &StreamTargetReport) -> String {
    let errors = if t.errors.is_empty() {
        "0 errors".to_owned()
    } else {
        let parts: Vec<String> = t.errors.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!("errors: {}", parts.join(", "))
    };
    format!(
        "{:<8} {}: {}/{} complete, {errors}, {} events per stream (median)\n",
        t.label, t.url, t.ok, t.requests, t.events_per_request.p50_us
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(target: usize, offsets: &[u64], error: Option<&str>) -> StreamSample {
        StreamSample {
            target,
            status: Some(200),
            headers_ns: Some(1_000),
            first_event_ns: offsets.first().copied(),
            ttft_ns: offsets.get(1).copied(),
            total_ns: offsets.last().copied().unwrap_or(0) + 1_000,
            event_offsets_ns: offsets.to_vec(),
            event_types: offsets
                .iter()
                .map(|_| "message.output.delta".to_owned())
                .collect(),
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn per_event_differences_pair_the_ith_requests() {
        let samples = vec![
            sample(0, &[10_000, 20_000, 30_000], None),
            sample(1, &[9_000, 18_000, 27_000], None),
            sample(0, &[10_000, 20_000], None),
            sample(1, &[10_000, 20_000, 30_000], None),
            sample(0, &[5_000], Some("http 500")),
            sample(1, &[5_000], None),
        ];
        let e = per_event_added(&samples);
        assert_eq!(e.pairs, 1);
        assert_eq!(e.skipped_pairs, 2);
        assert_eq!(e.added.n, 3);
        assert_eq!((e.added.min_us, e.added.max_us), (1.0, 3.0));
        // Relative to the first event: (20−10)−(18−9) = 1 µs, (30−10)−(27−9) = 2 µs.
        assert_eq!(e.after_first.n, 2);
        assert_eq!((e.after_first.min_us, e.after_first.max_us), (1.0, 2.0));
    }

    #[test]
    fn reports_count_errors_and_summarise_complete_streams_only() {
        let opts = StreamOptions {
            targets: vec![
                Target::parse("target", "http://127.0.0.1:1").unwrap(),
                Target::parse("compare", "http://127.0.0.1:2").unwrap(),
            ],
            request: RequestSpec::default(),
            requests: 2,
            concurrency: 1,
            warmup: 0,
            timeout: Duration::from_secs(1),
            ca: None,
        };
        let samples = vec![
            sample(0, &[10_000, 20_000, 30_000], None),
            sample(1, &[9_000, 18_000, 27_000], None),
            sample(0, &[], Some("connect")),
            sample(1, &[9_000, 18_000, 27_000], None),
        ];
        let r = report(&opts, samples, 1.0);
        assert_eq!(r.targets[0].ok, 1);
        assert_eq!(r.targets[0].errors["connect"], 1);
        assert_eq!(r.targets[1].ok, 2);
        assert_eq!(r.targets[0].event_gap.n, 2);
        assert_eq!(r.targets[0].ttft.p50_us, 20.0);
        let c = r.comparison.as_ref().unwrap();
        assert_eq!(c.added["ttft"].p50_us, 2.0);
        assert_eq!(
            c.ratio["first_event"].p50.map(|x| (x * 9.0).round()),
            Some(10.0)
        );
        let text = render_table(&r);
        for want in [
            "TTFT (first delta)",
            "per-event added",
            "1 connect",
            "ratio",
            "added",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["targets"][1]["ok"], 2);
        assert!(json.get("samples").is_none());
    }
}
