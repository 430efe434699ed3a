//! The proxy's and the twin's `GET /metrics` scraped by a real Prometheus server: the values read
//! back through Prometheus's HTTP API equal the traffic sent, and `promtool check metrics` accepts
//! both expositions.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::{Http, Kid, between, poll_until};

const NOT_INSTALLED: &str = "this test needs a Prometheus server and promtool: install them with \
     `apt-get install -y prometheus` (Debian/Ubuntu; .ci/run does it), or put `prometheus` and \
     `promtool` on PATH";

/// GET `url` with an optional Accept header: (status, Content-Type, body).
fn get_raw(h: &Http, url: &str, accept: Option<&str>) -> (u16, String, String) {
    h.rt.block_on(async {
        let mut req = http::Request::get(url);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let resp = h
            .client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ctype, String::from_utf8_lossy(&bytes).into_owned())
    })
}

/// POST a JSON body, returning the response body as text (asserting a 2xx).
fn post_raw(h: &Http, url: &str, body: &Value) -> String {
    h.rt.block_on(async {
        let req = http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = h
            .client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(status.is_success(), "POST {url}: {status} {text}");
        text
    })
}

/// The SSE events of a response body and the JSON of their `data:` lines.
fn sse_events(body: &str) -> Vec<Value> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|block| block.lines().any(|l| l.starts_with("data:")))
        .map(|block| {
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            serde_json::from_str(&data.join("\n")).unwrap_or(Value::Null)
        })
        .collect()
}

/// Adds a response's `usage` (prompt, completion) to `sum`.
fn add_usage(sum: &mut (u64, u64), usage: Option<&Value>) {
    if let Some(u) = usage.filter(|u| u.is_object()) {
        sum.0 += u["prompt_tokens"].as_u64().unwrap_or(0);
        sum.1 += u["completion_tokens"].as_u64().unwrap_or(0);
    }
}

fn encode_query(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An instant query through Prometheus's HTTP API: each series' labels and value.
fn query(h: &Http, prom: &str, q: &str) -> Vec<(Value, f64)> {
    let v = h.get(&format!("{prom}/api/v1/query?query={}", encode_query(q)));
    assert_eq!(v["status"], "success", "query {q}: {v}");
    v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("query {q}: {v}"))
        .iter()
        .map(|s| {
            let value = s["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (s["metric"].clone(), value)
        })
        .collect()
}

/// The single value of a query that sums to one series (`None` while it has no sample).
fn scalar(h: &Http, prom: &str, q: &str) -> Option<f64> {
    let r = query(h, prom, q);
    assert!(r.len() <= 1, "query {q} returned {r:?}");
    r.first().map(|(_, v)| *v)
}

/// `promtool check metrics` on an exposition (the body on its stdin).
fn promtool_check(what: &str, body: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool does not start ({e}): {NOT_INSTALLED}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refuses the {what}'s exposition:\n{}{}\n--- exposition ---\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn prometheus_scrapes_the_proxy_and_the_twin() {
    for tool in ["prometheus", "promtool"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "`{tool}` is not installed: {NOT_INSTALLED}");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.duckdb");
    let (_twin, line) = Kid::start(
        "twin",
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--latency",
            "zero",
            "--exit-on-stdin-close",
        ],
        &dir.path().join("twin.err"),
    );
    let twin = line.rsplit(' ').next().unwrap().to_string();
    assert!(twin.starts_with("http://127.0.0.1:"), "{line}");
    let (_proxy, line) = Kid::start(
        "proxy",
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--upstream",
            &twin,
            "--db",
            db.to_str().unwrap(),
        ],
        &dir.path().join("proxy.err"),
    );
    let base = format!("http://{}", between(&line, "listening on http://", " ->"));
    let admin = between(&line, "admin ", ")").to_string();

    // Traffic: non-streamed and streamed conversation starts; what the client saw is the truth.
    let h = Http::new();
    const PLAIN: usize = 3;
    const STREAMED: usize = 2;
    let mut tokens = (0u64, 0u64);
    let mut events = 0usize;
    for i in 0..PLAIN {
        let body = post_raw(
            &h,
            &format!("{base}/v1/conversations"),
            &json!({"model": "mistral-medium-latest", "inputs": format!("question {i}")}),
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        add_usage(&mut tokens, v.get("usage"));
    }
    for i in 0..STREAMED {
        let body = post_raw(
            &h,
            &format!("{base}/v1/conversations"),
            &json!({"model": "mistral-medium-latest", "inputs": format!("streamed {i}"), "stream": true}),
        );
        let evs = sse_events(&body);
        assert!(!evs.is_empty(), "a streamed start with no event: {body}");
        events += evs.len();
        for e in &evs {
            add_usage(&mut tokens, e.get("usage"));
        }
    }
    assert!(
        tokens.0 > 0 && tokens.1 > 0,
        "the twin reported no usage: {tokens:?}"
    );
    eprintln!(
        "sent {PLAIN} plain and {STREAMED} streamed starts: {events} SSE events, tokens {tokens:?}"
    );
    // Everything derived and committed before Prometheus starts: its first scrape sees the final
    // values.
    post_raw(&h, &format!("{admin}/flush"), &json!({}));

    // The expositions: classic text by default, OpenMetrics on request, the JSON stats moved.
    let (status, ctype, text) = get_raw(&h, &format!("{admin}/metrics"), None);
    assert_eq!(status, 200, "{text}");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert!(
        text.contains("# TYPE agentcap_requests_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    promtool_check("proxy", &text);
    let (_, ctype, om) = get_raw(
        &h,
        &format!("{admin}/metrics"),
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    let stats = h.get(&format!("{admin}/metrics.json"));
    assert_eq!(
        stats["exchanges_written"].as_u64(),
        Some((PLAIN + STREAMED) as u64),
        "{stats}"
    );
    let (status, ctype, twin_text) = get_raw(&h, &format!("{twin}/metrics"), None);
    assert_eq!(status, 200, "{twin_text}");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    promtool_check("twin", &twin_text);

    // A Prometheus server scraping both every second.
    let port = free_port();
    let prom = format!("http://127.0.0.1:{port}");
    let target = |url: &str| url.trim_start_matches("http://").to_string();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
         - job_name: proxy\n    static_configs:\n      - targets: ['{}']\n  \
         - job_name: twin\n    static_configs:\n      - targets: ['{}']\n",
        target(&admin),
        target(&twin)
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("prometheus does not start ({e}): {NOT_INSTALLED}"));
    let mut server = Kid {
        name: "prometheus",
        child,
    };
    let prom_err =
        || std::fs::read_to_string(dir.path().join("prometheus.err")).unwrap_or_default();
    poll_until(
        "Prometheus to scrape both targets",
        Duration::from_secs(120),
        || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", prom_err());
            }
            let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && get_raw(&h, &format!("{prom}/-/ready"), None).0 == 200;
            ready
                && scalar(&h, &prom, "sum(agentcap_requests_total{job=\"proxy\"})").is_some()
                && scalar(&h, &prom, "sum(agentcap_sim_requests_total{job=\"twin\"})").is_some()
        },
    );

    // Requests by operation, read back through Prometheus.
    let by_op = |q: &str| -> Vec<(String, f64)> {
        let mut r: Vec<(String, f64)> = query(&h, &prom, q)
            .into_iter()
            .map(|(m, v)| (m["operation"].as_str().unwrap_or("").to_string(), v))
            .collect();
        r.sort_by(|a, b| a.0.cmp(&b.0));
        r
    };
    let expected = vec![
        ("conversations.start".to_string(), PLAIN as f64),
        ("conversations.start_stream".to_string(), STREAMED as f64),
    ];
    assert_eq!(
        by_op("sum by (operation) (agentcap_requests_total{job=\"proxy\"})"),
        expected
    );
    assert_eq!(
        by_op("sum by (operation) (agentcap_sim_requests_total{job=\"twin\"})"),
        expected
    );
    assert_eq!(
        scalar(
            &h,
            &prom,
            "sum(agentcap_requests_total{job=\"proxy\",status_class=\"2xx\",outcome=\"complete\"})"
        ),
        Some((PLAIN + STREAMED) as f64)
    );
    // SSE events and tokens.
    assert_eq!(
        scalar(&h, &prom, "sum(agentcap_sse_events_total{job=\"proxy\"})"),
        Some(events as f64)
    );
    let token_sum = |ty: &str| {
        scalar(
            &h,
            &prom,
            &format!(
                "sum(gen_ai_client_token_usage_sum{{job=\"proxy\",gen_ai_token_type=\"{ty}\"}})"
            ),
        )
    };
    assert_eq!(token_sum("input"), Some(tokens.0 as f64));
    assert_eq!(token_sum("output"), Some(tokens.1 as f64));
    // Every exchange observed once in each latency histogram, and by the GenAI duration.
    for h_name in [
        "agentcap_request_duration_seconds",
        "agentcap_upstream_duration_seconds",
        "agentcap_proxy_overhead_seconds",
        "gen_ai_client_operation_duration_seconds",
    ] {
        assert_eq!(
            scalar(&h, &prom, &format!("sum({h_name}_count{{job=\"proxy\"}})")),
            Some((PLAIN + STREAMED) as f64),
            "{h_name}"
        );
    }
    assert_eq!(
        scalar(
            &h,
            &prom,
            "sum(agentcap_time_to_first_event_seconds_count{job=\"proxy\"})"
        ),
        Some(STREAMED as f64)
    );
    // The recorder's own series.
    assert_eq!(
        scalar(
            &h,
            &prom,
            "agentcap_recorder_records_dropped_total{job=\"proxy\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        scalar(
            &h,
            &prom,
            "agentcap_recorder_exchanges_written_total{job=\"proxy\"}"
        ),
        Some((PLAIN + STREAMED) as f64)
    );
    drop(server);
}
