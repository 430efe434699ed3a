//! `agentcap bench load`: non-streamed requests at a fixed rate (open loop) or back to back (closed loop),
//! against one target or two interleaved. Latency is measured from each request's *intended* send time, so a
//! stall that delays later requests shows up in their latency (no coordinated omission); service time (from
//! the actual send) is reported next to it.
//!
//! The schedule runs on its own OS thread with `std::thread::sleep` (tens of microseconds late at worst on
//! Linux) rather than on tokio's millisecond timer; each request is spawned onto the runtime at its due time
//! whatever the earlier ones are doing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use comfy_table::{CellAlignment, Table, presets};
use http_body_util::BodyExt;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::BenchError;
use crate::client::{self, HttpClient, RequestSpec, Target};
use crate::stats::{Delta, Ratio, SHOWN, Summary, fmt_ratio, fmt_us};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The target, then optionally the baseline (`--compare`).
    pub targets: Vec<Target>,
    /// The request (normally a non-streamed conversation start).
    pub request: RequestSpec,
    /// Requests per second **per target**; 0 means closed loop (`concurrency` requests back to back).
    pub rate: f64,
    /// Measured duration.
    pub duration: Duration,
    /// Unmeasured lead-in at the same load.
    pub warmup: Duration,
    /// Closed loop only: requests in flight at once (over all targets).
    pub concurrency: usize,
    /// A request not finished after this long counts as a `timeout` error.
    pub timeout: Duration,
    /// Extra CA certificate (PEM) for HTTPS targets.
    pub ca: Option<PathBuf>,
}

/// One request's measurements, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadSample {
    /// Index into [`LoadOptions::targets`].
    pub target: usize,
    /// Intended send time to end of the response body (open loop); equals `service_ns` in closed loop.
    pub latency_ns: u64,
    /// Actual send time to end of the response body.
    pub service_ns: u64,
    /// How late the request actually left versus its schedule.
    pub send_lag_ns: u64,
    /// Error category (`http 500`, `connect`, `timeout`, …), `None` for a 2xx response read in full.
    pub error: Option<String>,
}

/// The summary of one target.
#[derive(Debug, Clone, Serialize)]
pub struct LoadTargetReport {
    /// `target` or `compare`.
    pub label: String,
    /// Base URL.
    pub url: String,
    /// Measured requests.
    pub requests: usize,
    /// Of those, 2xx responses read in full.
    pub ok: usize,
    /// Failed requests by category.
    pub errors: BTreeMap<String, usize>,
    /// Completed requests per second over the measured window.
    pub achieved_rps: f64,
    /// From the intended send time (the one to quote).
    pub latency: Summary,
    /// From the actual send time.
    pub service: Summary,
    /// Lateness of the sender versus the schedule.
    pub send_lag: Summary,
}

/// Target versus baseline.
#[derive(Debug, Clone, Serialize)]
pub struct LoadComparison {
    /// Latency from the intended send time: target − compare (`None` when a side had no successful request).
    pub added_latency: Option<Delta>,
    /// Service time: target − compare.
    pub added_service: Option<Delta>,
    /// Latency: target / compare.
    pub ratio_latency: Ratio,
}

/// The result of `agentcap bench load`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Always `load`.
    pub bench: &'static str,
    /// `open` (fixed rate) or `closed` (back to back).
    pub mode: &'static str,
    /// Requests per second per target (open loop).
    pub rate_per_target: f64,
    /// Requests in flight (closed loop).
    pub concurrency: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// One entry per target, the target first.
    pub targets: Vec<LoadTargetReport>,
    /// Present with `--compare`.
    pub comparison: Option<LoadComparison>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Sends one request, reads the whole response; `due` is when it was meant to leave (`None`: now, closed loop).
pub async fn measure(
    client: &HttpClient,
    target: &Target,
    target_index: usize,
    spec: &RequestSpec,
    due: Option<Instant>,
    timeout: Duration,
) -> LoadSample {
    let sent = Instant::now();
    let due = due.unwrap_or(sent);
    let error = match tokio::time::timeout(timeout, exchange(client, target, spec)).await {
        Ok(r) => r,
        Err(_) => Some("timeout".to_owned()),
    };
    let end = Instant::now();
    LoadSample {
        target: target_index,
        latency_ns: ns(end.saturating_duration_since(due)),
        service_ns: ns(end - sent),
        send_lag_ns: ns(sent.saturating_duration_since(due)),
        error,
    }
}

async fn exchange(client: &HttpClient, target: &Target, spec: &RequestSpec) -> Option<String> {
    let req = match spec.request(target) {
        Ok(r) => r,
        Err(e) => return Some(format!("request: {e}")),
    };
    let resp = match client.request(req).await {
        Ok(r) => r,
        Err(e) => {
            return Some(
                if e.is_connect() {
                    "connect"
                } else {
                    "request failed"
                }
                .to_owned(),
            );
        }
    };
    let status = resp.status();
    if resp.into_body().collect().await.is_err() {
        return Some("body".to_owned());
    }
    (!status.is_success()).then(|| format!("http {}", status.as_u16()))
}

/// Runs the bench and summarises it.
pub async fn run(opts: &LoadOptions) -> Result<LoadReport, BenchError> {
    validate(opts)?;
    let clients = opts
        .targets
        .iter()
        .map(|_| client::client(opts.ca.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let clients = Arc::new(clients);
    let samples = if opts.rate > 0.0 {
        open_loop(opts, &clients).await
    } else {
        closed_loop(opts, &clients).await
    };
    Ok(report(opts, &samples))
}

fn validate(opts: &LoadOptions) -> Result<(), BenchError> {
    if opts.targets.is_empty() || opts.targets.len() > 2 {
        return Err(BenchError::InvalidOption(
            "one target, optionally one to compare with".into(),
        ));
    }
    if !opts.rate.is_finite() || opts.rate < 0.0 {
        return Err(BenchError::InvalidOption("--rate must be 0 or more".into()));
    }
    if opts.rate == 0.0 && opts.concurrency == 0 {
        return Err(BenchError::InvalidOption(
            "closed loop (--rate 0) needs --concurrency of at least 1".into(),
        ));
    }
    if opts.duration.is_zero() {
        return Err(BenchError::InvalidOption(
            "--duration must be positive".into(),
        ));
    }
    if opts.rate > 0.0 && opts.rate * opts.duration.as_secs_f64() < 1.0 {
        return Err(BenchError::InvalidOption(
            "--rate × --duration is less than one request".into(),
        ));
    }
    Ok(())
}

/// Open loop: request `i` is due at `start + i / (rate × targets)` and goes to target `i % targets`. The first
/// `warmup` of the schedule is sent but not kept.
async fn open_loop(opts: &LoadOptions, clients: &Arc<Vec<HttpClient>>) -> Vec<LoadSample> {
    let n = opts.targets.len();
    let period = 1.0 / (opts.rate * n as f64);
    let warm = (opts.warmup.as_secs_f64() / period).round() as usize;
    let measured = (opts.duration.as_secs_f64() / period).round() as usize;
    let total = warm + measured;
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, LoadSample)>();
    let handle = tokio::runtime::Handle::current();
    let targets = opts.targets.clone();
    let spec = opts.request.clone();
    let timeout = opts.timeout;
    let clients = clients.clone();
    let start = Instant::now() + Duration::from_millis(20);
    let scheduler = std::thread::Builder::new()
        .name("agentcap-bench-schedule".into())
        .spawn(move || {
            for i in 0..total {
                let due = start + Duration::from_secs_f64(period * i as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let t = i % targets.len();
                let (clients, target, spec, tx) = (
                    clients.clone(),
                    targets[t].clone(),
                    spec.clone(),
                    tx.clone(),
                );
                handle.spawn(async move {
                    let s = measure(&clients[t], &target, t, &spec, Some(due), timeout).await;
                    let _ = tx.send((i, s));
                });
            }
        });
    if scheduler.is_err() {
        return Vec::new();
    }
    let mut got = Vec::with_capacity(measured);
    // Every spawned request reports exactly once (its timeout bounds it), so wait for all of them.
    let mut seen = 0;
    while seen < total {
        match rx.recv().await {
            Some((i, s)) => {
                seen += 1;
                if i >= warm {
                    got.push((i, s));
                }
            }
            None => break,
        }
    }
    if let Ok(t) = scheduler {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    got.sort_by_key(|(i, _)| *i);
    got.into_iter().map(|(_, s)| s).collect()
}

/// Closed loop: `concurrency` workers send back to back for warm-up + duration; request `i` goes to target
/// `i % targets`. Samples of requests started during the warm-up are not kept.
async fn closed_loop(opts: &LoadOptions, clients: &Arc<Vec<HttpClient>>) -> Vec<LoadSample> {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let begin = Instant::now();
    let measure_from = begin + opts.warmup;
    let end = measure_from + opts.duration;
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency {
        let (next, stop, clients) = (next.clone(), stop.clone(), clients.clone());
        let (targets, spec, timeout) = (opts.targets.clone(), opts.request.clone(), opts.timeout);
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let t = i % targets.len();
                let s = measure(&clients[t], &targets[t], t, &spec, None, timeout).await;
                if now >= measure_from {
                    mine.push((i, s));
                }
            }
            mine
        }));
    }
    let mut got = Vec::new();
    for w in workers {
        if let Ok(v) = w.await {
            got.extend(v);
        }
    }
    stop.store(true, Ordering::Relaxed);
    got.sort_by_key(|(i, _)| *i);
    got.into_iter().map(|(_, s)| s).collect()
}

/// Summarises samples into the report.
pub fn report(opts: &LoadOptions, samples: &[LoadSample]) -> LoadReport {
    let secs = opts.duration.as_secs_f64();
    let targets: Vec<LoadTargetReport> = opts
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mine: Vec<&LoadSample> = samples.iter().filter(|s| s.target == i).collect();
            let mut errors = BTreeMap::new();
            for s in &mine {
                if let Some(e) = &s.error {
                    *errors.entry(e.clone()).or_insert(0) += 1;
                }
            }
            let ok: Vec<&&LoadSample> = mine.iter().filter(|s| s.error.is_none()).collect();
            let of = |f: fn(&LoadSample) -> u64| {
                Summary::of_unsigned_ns(&ok.iter().map(|s| f(s)).collect::<Vec<_>>())
            };
            LoadTargetReport {
                label: t.label.clone(),
                url: t.url.clone(),
                requests: mine.len(),
                ok: ok.len(),
                errors,
                achieved_rps: ok.len() as f64 / secs,
                latency: of(|s| s.latency_ns),
                service: of(|s| s.service_ns),
                send_lag: Summary::of_unsigned_ns(
                    &mine.iter().map(|s| s.send_lag_ns).collect::<Vec<_>>(),
                ),
            }
        })
        .collect();
    let comparison = (targets.len() == 2).then(|| LoadComparison {
        added_latency: targets[0].latency.minus(&targets[1].latency),
        added_service: targets[0].service.minus(&targets[1].service),
        ratio_latency: targets[0].latency.ratio(&targets[1].latency),
    });
    LoadReport {
        bench: "load",
        mode: if opts.rate > 0.0 { "open" } else { "closed" },
        rate_per_target: opts.rate,
        concurrency: opts.concurrency,
        duration_s: secs,
        warmup_s: opts.warmup.as_secs_f64(),
        targets,
        comparison,
    }
}

/// The report as text.
pub fn render_table(r: &LoadReport) -> String {
    let mut out = if r.mode == "open" {
        format!(
            "agentcap bench load: open loop, {} req/s per target for {:.1} s (+{:.1} s warm-up); latency from the intended send time\n",
            r.rate_per_target, r.duration_s, r.warmup_s
        )
    } else {
        format!(
            "agentcap bench load: closed loop, {} in flight for {:.1} s (+{:.1} s warm-up)\n",
            r.concurrency, r.duration_s, r.warmup_s
        )
    };
    for t in &r.targets {
        let errors = if t.errors.is_empty() {
            "0 errors".to_owned()
        } else {
            let parts: Vec<String> = t.errors.iter().map(|(k, v)| format!("{v} {k}")).collect();
            format!("errors: {}", parts.join(", "))
        };
        out.push_str(&format!(
            "{:<8} {}: {}/{} ok, {errors}, {:.0} req/s achieved\n",
            t.label, t.url, t.ok, t.requests, t.achieved_rps
        ));
    }
    let mut table = Table::new();
    table.load_style(presets::UTF8_FULL_CONDENSED);
    let mut header = vec!["metric".to_owned(), "".to_owned()];
    header.extend(SHOWN.iter().map(|(n, _)| (*n).to_owned()));
    table.set_header(header);
    type Get = fn(&LoadTargetReport) -> &Summary;
    let rows: [(&str, Get); 3] = [
        ("latency", |t| &t.latency),
        ("service time", |t| &t.service),
        ("send lag", |t| &t.send_lag),
    ];
    for (name, get) in rows {
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
            row.extend(SHOWN.iter().map(|(_, f)| {
                if s.n == 0 {
                    "–".to_owned()
                } else {
                    fmt_us(f(s))
                }
            }));
            table.add_row(row);
        }
        if let Some(c) = &r.comparison {
            let d = match name {
                "latency" => c.added_latency.as_ref(),
                "service time" => c.added_service.as_ref(),
                _ => None,
            };
            if let Some(d) = d {
                let mut row = vec![String::new(), "added".to_owned()];
                row.extend(
                    [d.p50_us, d.p90_us, d.p99_us, d.p999_us, d.max_us]
                        .iter()
                        .map(|v| fmt_us(*v)),
                );
                table.add_row(row);
            }
            if name == "latency" {
                let q = &c.ratio_latency;
                let mut row = vec![String::new(), "ratio".to_owned()];
                row.extend(
                    [q.p50, q.p90, q.p99, q.p999, q.max]
                        .iter()
                        .map(|v| fmt_ratio(*v)),
                );
                table.add_row(row);
            }
        }
    }
    for i in 2..2 + SHOWN.len() {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    out.push_str(&table.to_string());
    out.push('\n');
    if r.targets.len() == 2 {
        out.push_str(&format!(
            "added = {} − {}, ratio = {} / {}, percentile by percentile\n",
            r.targets[0].label, r.targets[1].label, r.targets[0].label, r.targets[1].label
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(rate: f64) -> LoadOptions {
        LoadOptions {
            targets: vec![
                Target::parse("target", "http://127.0.0.1:1").unwrap(),
                Target::parse("compare", "http://127.0.0.1:2").unwrap(),
            ],
            request: RequestSpec::default(),
            rate,
            duration: Duration::from_secs(2),
            warmup: Duration::ZERO,
            concurrency: 1,
            timeout: Duration::from_secs(1),
            ca: None,
        }
    }

    #[test]
    fn latency_counts_from_the_intended_time() {
        let s = LoadSample {
            target: 0,
            latency_ns: 3_000_000,
            service_ns: 1_000_000,
            send_lag_ns: 2_000_000,
            error: None,
        };
        let b = LoadSample {
            target: 1,
            latency_ns: 1_000_000,
            service_ns: 1_000_000,
            send_lag_ns: 0,
            error: None,
        };
        let e = LoadSample {
            target: 1,
            error: Some("http 503".into()),
            ..b.clone()
        };
        let r = report(&opts(10.0), &[s, b, e]);
        assert_eq!(r.targets[0].latency.p50_us, 3000.0);
        assert_eq!(r.targets[0].service.p50_us, 1000.0);
        assert_eq!(r.targets[1].ok, 1);
        assert_eq!(r.targets[1].errors["http 503"], 1);
        assert_eq!(r.targets[1].achieved_rps, 0.5);
        let c = r.comparison.as_ref().unwrap();
        assert_eq!(c.added_latency.unwrap().p50_us, 2000.0);
        assert_eq!(c.added_service.unwrap().p50_us, 0.0);
        assert_eq!(c.ratio_latency.p50, Some(3.0));
        let text = render_table(&r);
        for want in [
            "open loop",
            "intended send time",
            "1 http 503",
            "added",
            "ratio",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
    }

    #[test]
    fn nothing_to_subtract_when_a_side_has_no_success() {
        let failed = LoadSample {
            target: 0,
            latency_ns: 1_000,
            service_ns: 1_000,
            send_lag_ns: 0,
            error: Some("connect".into()),
        };
        let ok = LoadSample {
            target: 1,
            error: None,
            ..failed.clone()
        };
        let r = report(&opts(10.0), &[failed, ok]);
        let c = r.comparison.as_ref().unwrap();
        assert!(c.added_latency.is_none() && c.added_service.is_none());
        assert_eq!(c.ratio_latency.p50, None);
        let text = render_table(&r);
        assert!(
            text.contains("1 connect") && !text.contains("added  "),
            "{text}"
        );
    }

    #[test]
    fn options_are_checked() {
        assert!(validate(&opts(10.0)).is_ok());
        assert!(validate(&opts(-1.0)).is_err());
        assert!(validate(&opts(0.1)).is_err(), "less than one request");
        let mut o = opts(0.0);
        o.concurrency = 0;
        assert!(validate(&o).is_err());
        o.concurrency = 2;
        assert!(validate(&o).is_ok());
    }
}
