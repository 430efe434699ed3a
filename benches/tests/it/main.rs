//! The load generators against a real twin and a real recording proxy (in process, 127.0.0.1:0, a DuckDB file
//! in a temp dir): what they count and report, never how fast anything was.

use std::time::Duration;

use agentcap_benches::client::DEFAULT_INPUT;
use agentcap_benches::{
    LoadOptions, RequestSpec, Speaker, StreamOptions, Target, load, parse_header, stream,
};
use agentcap_proxy::recorder::RecorderConfig;
use agentcap_proxy::{ProxyConfig, RunningProxy};
use agentcap_sim::{RunningSim, SimConfig};
use serde_json::Value;

struct Rig {
    twin: RunningSim,
    proxy: RunningProxy,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn new() -> Rig {
        let twin = agentcap_sim::start(SimConfig::default())
            .await
            .expect("twin starts");
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ProxyConfig::new(
            twin.url().parse().unwrap(),
            RecorderConfig::new(dir.path().join("rec.duckdb")),
        );
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.admin_listen = None;
        let proxy = agentcap_proxy::start(cfg).await.expect("proxy starts");
        Rig {
            twin,
            proxy,
            _dir: dir,
        }
    }

    fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy.addr())
    }

    fn both(&self) -> Vec<Target> {
        vec![
            Target::parse("target", &self.proxy_url()).unwrap(),
            Target::parse("compare", &self.twin.url()).unwrap(),
        ]
    }

    /// Flushes the recorder and counts rows.
    async fn count(&self, sql: &str) -> i64 {
        self.proxy.recorder().flush().await.unwrap();
        let r = self.proxy.recorder().query(sql).unwrap();
        r.rows[0][0]
            .as_i64()
            .unwrap_or_else(|| panic!("{sql}: {:?}", r.rows))
    }

    async fn stop(self) {
        let stats = self.proxy.shutdown().await.unwrap();
        assert_eq!(stats.records_dropped, 0);
        self.twin.shutdown().await;
    }
}

fn stream_opts(targets: Vec<Target>, requests: usize) -> StreamOptions {
    StreamOptions {
        targets,
        request: RequestSpec::conversation_start(&Speaker::default(), DEFAULT_INPUT, true),
        requests,
        concurrency: 2,
        warmup: 1,
        timeout: Duration::from_secs(30),
        ca: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_compares_the_proxy_with_the_twin() {
    let rig = Rig::new().await;
    let r = stream::run(&stream_opts(rig.both(), 6)).await.unwrap();
    assert_eq!(r.targets.len(), 2);
    for t in &r.targets {
        assert_eq!((t.requests, t.ok), (6, 6), "{t:?}");
        assert!(t.errors.is_empty(), "{t:?}");
        for s in [&t.headers, &t.first_event, &t.ttft, &t.total] {
            assert_eq!(s.n, 6);
            assert!(s.min_us > 0.0);
        }
        // started, a delta per word of the answer, done: the default input gives dozens of events.
        assert!(t.events_per_request.min_us >= 20.0, "{t:?}");
        assert_eq!(
            t.event_gap.n as f64,
            6.0 * (t.events_per_request.mean_us - 1.0)
        );
        assert!(t.first_event.p50_us <= t.ttft.p50_us && t.ttft.p50_us <= t.total.p50_us);
    }
    // The proxy passes the same event sequence, so every pair is comparable, every event counted.
    let c = r.comparison.as_ref().expect("a comparison");
    assert_eq!((c.per_event.pairs, c.per_event.skipped_pairs), (6, 0));
    assert_eq!(
        c.per_event.added.n as f64,
        6.0 * r.targets[0].events_per_request.mean_us
    );
    for k in ["headers", "first_event", "ttft", "event_gap", "total"] {
        assert!(c.added.contains_key(k) && c.ratio[k].p50.is_some(), "{k}");
    }
    let text = stream::render_table(&r);
    for want in [
        rig.proxy_url().as_str(),
        "6/6 complete",
        "TTFT (first delta)",
        "per-event added",
        "6 pairs",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    let json: Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["targets"][0]["label"], "target");
    assert_eq!(json["comparison"]["per_event"]["pairs"], 6);
    // Only the target (the proxy) saw the requests: 6 measured + 1 warm-up, all streamed.
    assert_eq!(
        rig.count("SELECT count(*) FROM exchanges WHERE is_stream")
            .await,
        7
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_counts_errors_by_kind() {
    let rig = Rig::new().await;
    let mut opts = stream_opts(vec![Target::parse("target", &rig.proxy_url()).unwrap()], 3);
    opts.warmup = 0;
    opts.request
        .headers
        .push(parse_header("X-Agentcap-Sim-Fault: 503").unwrap());
    let r = stream::run(&opts).await.unwrap();
    assert_eq!(r.targets[0].ok, 0);
    assert_eq!(
        r.targets[0].errors.get("http 503"),
        Some(&3),
        "{:?}",
        r.targets[0]
    );
    assert_eq!(r.targets[0].ttft.n, 0);
    assert!(r.comparison.is_none());

    opts.request.headers = vec![parse_header("X-Agentcap-Sim-Fault: error-event").unwrap()];
    let r = stream::run(&opts).await.unwrap();
    assert_eq!(
        r.targets[0].errors.get("error event"),
        Some(&3),
        "{:?}",
        r.targets[0]
    );

    // Nothing listens there: connection errors, counted, no hang.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    opts.targets = vec![Target::parse("target", &format!("http://{closed}")).unwrap()];
    opts.request.headers.clear();
    let r = stream::run(&opts).await.unwrap();
    assert_eq!(
        r.targets[0].errors.get("connect"),
        Some(&3),
        "{:?}",
        r.targets[0]
    );
    assert!(stream::render_table(&r).contains("3 connect"));
    rig.stop().await;
}

fn load_opts(targets: Vec<Target>, rate: f64) -> LoadOptions {
    LoadOptions {
        targets,
        request: RequestSpec::conversation_start(&Speaker::default(), "hello", false),
        rate,
        duration: Duration::from_millis(400),
        warmup: Duration::from_millis(100),
        concurrency: 3,
        timeout: Duration::from_secs(30),
        ca: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_load_sends_the_schedule_to_both_targets() {
    let rig = Rig::new().await;
    let r = load::run(&load_opts(rig.both(), 50.0)).await.unwrap();
    assert_eq!(r.mode, "open");
    for t in &r.targets {
        // 50 req/s per target for 0.4 s.
        assert_eq!((t.requests, t.ok), (20, 20), "{t:?}");
        assert!(t.errors.is_empty());
        // Latency counts from the intended send time, service time from the actual one.
        for (l, s) in [
            (t.latency.p50_us, t.service.p50_us),
            (t.latency.p99_us, t.service.p99_us),
            (t.latency.max_us, t.service.max_us),
        ] {
            assert!(l >= s && s > 0.0, "{t:?}");
        }
    }
    assert!(r.comparison.is_some());
    let text = load::render_table(&r);
    for want in [
        "open loop",
        "50 req/s per target",
        "20/20 ok",
        "added",
        "ratio",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    // The proxy saw 5 warm-up requests and the 20 measured ones, none streamed.
    assert_eq!(
        rig.count("SELECT count(*) FROM exchanges WHERE operation = 'conversations.start' AND NOT is_stream").await,
        25
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_load_and_errors() {
    let rig = Rig::new().await;
    let r = load::run(&load_opts(rig.both(), 0.0)).await.unwrap();
    assert_eq!(r.mode, "closed");
    for t in &r.targets {
        assert!(t.requests > 0 && t.ok == t.requests, "{t:?}");
        assert_eq!(
            t.latency, t.service,
            "closed loop: no schedule to be late against"
        );
    }
    let mut opts = load_opts(
        vec![Target::parse("target", &rig.proxy_url()).unwrap()],
        50.0,
    );
    opts.request
        .headers
        .push(parse_header("X-Agentcap-Sim-Fault: 429").unwrap());
    let r = load::run(&opts).await.unwrap();
    assert_eq!(r.targets[0].ok, 0);
    assert_eq!(
        r.targets[0].errors.get("http 429"),
        Some(&20),
        "{:?}",
        r.targets[0]
    );
    rig.stop().await;
}
