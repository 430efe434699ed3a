//! Benchmark: how closely `--timing recorded` reproduces a recording's inter-event gaps.
//!
//! Records streamed conversations through the proxy against the twin (both in-process, the twin at
//! `--ttft-ms 50 --tokens-per-sec 100`), stops both, serves the recording with `Timing::Recorded`,
//! streams every conversation again and compares each gap between consecutive events as the client
//! received them with the gap the proxy recorded (`sse_events.offset_us`). Prints the distribution of
//! |replayed gap − recorded gap|.
//!
//! ```text
//! cargo run -p agentcap-replay --example replay_gaps [-- STREAMS]
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentcap_replay::cassette::Payload;
use agentcap_replay::{Cassette, ReplayConfig, Selection, Timing};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type Http = Client<HttpConnector, Full<Bytes>>;

fn body(i: usize) -> String {
    serde_json::json!({
        "model": "mistral-medium-latest",
        "inputs": format!("Stream me a short answer about topic {i}."),
        "stream": true,
    })
    .to_string()
}

/// Streams one conversation start; returns the arrival time of each complete event.
async fn stream(http: &Http, base: SocketAddr, i: usize) -> Vec<Instant> {
    let req = http::Request::post(format!("http://{base}/v1/conversations"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body(i))))
        .expect("a valid request");
    let mut resp = http
        .request(req)
        .await
        .expect("the stream starts")
        .into_body();
    let mut pending = Vec::new();
    let mut arrivals = Vec::new();
    while let Some(frame) = resp.frame().await {
        let now = Instant::now();
        if let Ok(data) = frame.expect("the stream continues").into_data() {
            pending.extend_from_slice(&data);
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                pending.drain(..end + 2);
                arrivals.push(now);
            }
        }
    }
    arrivals
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let streams: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("gaps.duckdb");

    let mut latency = agentcap_sim::config::LatencyModel::zero();
    latency.ttft = Duration::from_millis(50);
    latency.tokens_per_sec = 100.0;
    let twin = agentcap_sim::start(agentcap_sim::config::SimConfig {
        latency,
        ..Default::default()
    })
    .await
    .expect("the twin starts");
    let mut pc = agentcap_proxy::ProxyConfig::new(
        format!("http://{}", twin.addr()).parse().expect("a URI"),
        agentcap_proxy::recorder::RecorderConfig::new(db.clone()),
    );
    pc.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    pc.admin_listen = None;
    let proxy = agentcap_proxy::start(pc).await.expect("the proxy starts");
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    for i in 0..streams {
        stream(&http, proxy.addr(), i).await;
    }
    proxy.shutdown().await.expect("the proxy stops");
    twin.shutdown().await;

    let cassette = Cassette::load(&db, &Selection::All, Vec::new()).expect("the recording loads");
    let recorded: Vec<Vec<u64>> = cassette
        .exchanges()
        .iter()
        .filter_map(|x| match &x.payload {
            Payload::Events(evs) => Some(evs.iter().map(|e| e.offset_us).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(recorded.len(), streams, "every stream was recorded");

    let mut cfg = ReplayConfig::new(db.clone());
    cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.timing = Timing::Recorded;
    let replay = agentcap_replay::start(cfg)
        .await
        .expect("the replay starts");
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let mut errors_ms = Vec::new();
    let mut gaps_ms = Vec::new();
    for (i, offsets) in recorded.iter().enumerate() {
        let arrivals = stream(&http, replay.addr(), i).await;
        assert_eq!(
            arrivals.len(),
            offsets.len(),
            "stream {i}: every event replayed"
        );
        for k in 1..offsets.len() {
            let want = offsets[k].saturating_sub(offsets[k - 1]) as f64 / 1e3;
            let got = (arrivals[k] - arrivals[k - 1]).as_secs_f64() * 1e3;
            gaps_ms.push(want);
            errors_ms.push((got - want).abs());
        }
    }
    replay.shutdown().await.expect("the replay stops");
    errors_ms.sort_by(f64::total_cmp);
    gaps_ms.sort_by(f64::total_cmp);
    println!(
        "replay --timing recorded: {} streams, {} gaps (recorded gap p50 {:.2} ms)",
        streams,
        errors_ms.len(),
        percentile(&gaps_ms, 50.0)
    );
    println!(
        "|replayed gap - recorded gap|: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        percentile(&errors_ms, 50.0),
        percentile(&errors_ms, 90.0),
        percentile(&errors_ms, 99.0),
        errors_ms.last().copied().unwrap_or(f64::NAN)
    );
}
