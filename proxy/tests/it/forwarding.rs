//! Forwarding through the proxy: transparency, agentcap's headers, outcomes of failures, secrets, bad input.

use std::time::Duration;

use agentcap_sim::SimConfig;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{proxy_config, rig, rig_with};

#[tokio::test]
async fn non_stream_and_stream_pass_through_and_are_recorded() {
    let r = rig().await;
    let a = r
        .ok(
            Method::POST,
            "/v1/agents",
            Some(json!({"model": "m", "name": "web", "tools": [{"type": "web_search"}]})),
        )
        .await;
    let start = r
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"agent_id": a["id"], "inputs": "Who won?"})),
        )
        .await;
    assert_eq!(start["outputs"][0]["type"], "tool.execution");
    let conv = start["conversation_id"].as_str().unwrap();
    let s = r
        .via_proxy(
            Method::POST,
            &format!("/v1/conversations/{conv}"),
            Some(json!({"inputs": "And before?", "stream": true})),
            &[("accept", "text/event-stream")],
        )
        .await
        .unwrap();
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.headers["content-type"], "text/event-stream");
    let text = String::from_utf8(s.body.to_vec()).unwrap();
    let n_events = text.matches("\n\n").count();
    assert!(text.starts_with("event: conversation.response.started\n"));
    r.flush().await;
    assert_eq!(r.one("SELECT count(*) FROM exchanges"), json!(3));
    assert_eq!(r.one("SELECT count(*) FROM sse_events"), json!(n_events));
    assert_eq!(
        r.one("SELECT outcome FROM exchanges WHERE operation = 'conversations.append_stream'"),
        json!("complete")
    );
    assert_eq!(
        r.one("SELECT is_stream FROM exchanges WHERE operation = 'conversations.append_stream'"),
        json!(true)
    );
    let stream_outputs = r.rows("SELECT type, text FROM entries WHERE direction = 'output' AND source = 'stream' ORDER BY position");
    assert_eq!(
        stream_outputs.len(),
        2,
        "tool.execution + message.output assembled from deltas"
    );
    assert_eq!(r.one("SELECT count(*) FROM agents"), json!(1));
    assert_eq!(r.one("SELECT turns FROM conversations"), json!(2));
    assert_eq!(
        r.rows("SELECT DISTINCT upstream_version FROM exchanges"),
        vec![vec![json!("HTTP/1.1")]],
        "a plain-HTTP upstream is spoken to over HTTP/1.1"
    );
}

#[tokio::test]
async fn agentcap_headers_are_recorded_and_stripped() {
    let r = rig().await;
    let resp = r
        .via_proxy(
            Method::POST,
            "/v1/conversations",
            Some(json!({"model": "m", "inputs": "hi"})),
            &[
                ("x-agentcap-session", "run-7"),
                ("x-agentcap-tag-team", "search"),
                ("authorization", "Bearer sk-test-key"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    r.flush().await;
    let row = &r.rows("SELECT session, tags, key_fingerprint, request_headers FROM exchanges")[0];
    assert_eq!(row[0], json!("run-7"));
    assert_eq!(crate::harness::as_json(&row[1]), json!({"team": "search"}));
    assert_eq!(row[2].as_str().unwrap().len(), 12);
    let headers = row[3].to_string();
    assert!(
        !headers.contains("x-agentcap-session") && !headers.contains("sk-test-key"),
        "{headers}"
    );
}

#[tokio::test]
async fn upstream_down_gives_a_clean_502_recorded_as_upstream_error() {
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let proxy = agentcap_proxy::start(proxy_config(
        &format!("http://127.0.0.1:{port}"),
        dir.path(),
    ))
    .await
    .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let req = http::Request::post(format!("http://{}/v1/conversations", proxy.addr()))
        .body(http_body_util::Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body: Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert_eq!(body["object"], "error");
    assert_eq!(body["code"], "agentcap_upstream_unreachable");
    proxy.recorder().flush().await.unwrap();
    let rows = proxy
        .recorder()
        .query("SELECT outcome, status FROM exchanges")
        .unwrap()
        .rows;
    assert_eq!(rows, vec![vec![json!("upstream_error"), json!(502)]]);
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn upstream_slow_gives_504_and_idle_streams_time_out() {
    let r = rig_with(
        SimConfig {
            stall: Duration::from_secs(5),
            ..SimConfig::default()
        },
        |c| {
            c.response_timeout = Duration::from_millis(300);
            c.idle_timeout = Duration::from_millis(300);
        },
    )
    .await;
    let resp = r
        .via_proxy(
            Method::POST,
            "/v1/conversations",
            Some(json!({"model": "m", "inputs": "x"})),
            &[("x-agentcap-sim-fault", "stall")],
        )
        .await
        .unwrap();
    assert_eq!(resp.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(resp.json()["code"], "agentcap_upstream_timeout");
    let s = r
        .via_proxy(Method::POST, "/v1/conversations", Some(json!({"model": "m", "inputs": "Tell me a long story about streams", "stream": true})), &[("x-agentcap-sim-fault", "stall")])
        .await;
    assert!(
        s.is_err(),
        "the stalled stream ends with an error, not a hang"
    );
    r.flush().await;
    let rows = r.rows("SELECT outcome, is_stream, event_count FROM exchanges ORDER BY started_at");
    assert_eq!(rows[0][0], json!("timeout"));
    assert_eq!(rows[1][0], json!("timeout"));
    assert!(
        rows[1][2].as_i64().unwrap() > 0,
        "partial events are kept: {rows:?}"
    );
}

#[tokio::test]
async fn upstream_reset_mid_stream_is_an_upstream_error_with_partial_events() {
    let r = rig().await;
    let s = r
        .via_proxy(Method::POST, "/v1/conversations", Some(json!({"model": "m", "inputs": "Tell me a long story about streams", "stream": true})), &[("x-agentcap-sim-fault", "reset")])
        .await;
    assert!(s.is_err(), "the client sees the stream cut");
    r.flush().await;
    let row = &r.rows("SELECT outcome, event_count, error FROM exchanges")[0];
    assert_eq!(row[0], json!("upstream_error"));
    assert!(row[1].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn client_cancelling_mid_stream_is_recorded_as_cancelled() {
    let r = rig_with(
        SimConfig {
            latency: agentcap_sim::LatencyModel {
                tokens_per_sec: 20.0,
                ..agentcap_sim::LatencyModel::zero()
            },
            ..SimConfig::default()
        },
        |_| {},
    )
    .await;
    let req = http::Request::post(format!("{}/v1/conversations", r.proxy_url()))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(json!({"model": "m", "inputs": "Tell me a long story about streams please", "stream": true}).to_string())))
        .unwrap();
    let resp = r.client.request(req).await.unwrap();
    let mut body = resp.into_body();
    // Read the first frame, then drop the response.
    let first = http_body_util::BodyExt::frame(&mut body)
        .await
        .unwrap()
        .unwrap();
    assert!(first.is_data());
    drop(body);
    // The exchange is written once the proxy has seen the client go: wait for its row.
    let rows = crate::harness::poll_until(
        "the cancelled exchange's row",
        Duration::from_secs(60),
        async || {
            r.flush().await;
            let rows = r.rows("SELECT outcome, event_count FROM exchanges");
            (!rows.is_empty()).then_some(rows)
        },
    )
    .await;
    let row = &rows[0];
    assert_eq!(row[0], json!("cancelled_by_client"));
    assert!(row[1].as_i64().unwrap() >= 1);
}

#[tokio::test]
async fn malformed_json_is_forwarded_verbatim_and_recorded_raw() {
    let r = rig().await;
    let raw = Bytes::from_static(b"{\"model\": \"m\", \"inputs\": ");
    let resp = r
        .send_to(
            &r.proxy_url(),
            Method::POST,
            "/v1/conversations",
            Some(raw.clone()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        resp.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the twin saw the same broken bytes"
    );
    assert_eq!(resp.json()["detail"][0]["type"], "json_invalid");
    r.flush().await;
    let row =
        &r.rows("SELECT request_body, request_body_raw, request_parse_error FROM exchanges")[0];
    assert_eq!(row[0], Value::Null);
    assert_eq!(row[1], json!("{\"model\": \"m\", \"inputs\": "));
    assert!(row[2].as_str().unwrap().contains("EOF"), "{row:?}");
}

#[tokio::test]
async fn oversized_bodies_pass_in_full_and_are_stored_capped() {
    let r = rig_with(SimConfig::default(), |c| c.recorder.capture_cap = 1024).await;
    let big = "x".repeat(50_000);
    let resp = r
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"model": "m", "inputs": big})),
        )
        .await;
    assert!(
        resp["outputs"][0]["content"]
            .as_str()
            .unwrap()
            .contains("xxxx")
    );
    let h = r
        .ok(
            Method::GET,
            &format!(
                "/v1/conversations/{}/history",
                resp["conversation_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        h["entries"][0]["content"].as_str().unwrap().len(),
        50_000,
        "the upstream got the whole body"
    );
    r.flush().await;
    let row = &r.rows("SELECT request_truncated, length(request_body_raw), request_bytes FROM exchanges WHERE operation = 'conversations.start'")[0];
    assert_eq!(row[0], json!(true));
    assert!(row[1].as_i64().unwrap() <= 1024);
    assert!(row[2].as_i64().unwrap() > 50_000);
}

#[tokio::test]
async fn not_an_open_proxy() {
    let r = rig_with(SimConfig::default(), |c| c.auth_token = Some("tok".into())).await;
    let resp = r
        .via_proxy(Method::GET, "/v1/agents", None, &[])
        .await
        .unwrap();
    assert_eq!(
        resp.status,
        StatusCode::UNAUTHORIZED,
        "the token is required"
    );
    // A wrong token, of the same length or not, is refused (compared in constant time: `conn::same_secret`).
    for wrong in ["tok2", "toc", "to", ""] {
        let resp = r
            .via_proxy(
                Method::GET,
                "/v1/agents",
                None,
                &[("x-agentcap-token", wrong)],
            )
            .await
            .unwrap();
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
    }
    let resp = r
        .via_proxy(
            Method::GET,
            "/v1/agents",
            None,
            &[("x-agentcap-token", "tok"), ("host", "evil.example")],
        )
        .await
        .unwrap();
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "the Host header selects nothing"
    );
    // CONNECT is refused.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(r.proxy().addr())
        .await
        .unwrap();
    s.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nX-Agentcap-Token: tok\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
}

#[tokio::test]
async fn the_api_key_never_reaches_disk() {
    let r = rig().await;
    let key = "sk-agentcap-SECRET-0123456789abcdef";
    let auth = format!("Bearer {key}");
    for i in 0..5 {
        let resp = r
            .via_proxy(
                Method::POST,
                "/v1/conversations",
                Some(json!({"model": "m", "inputs": format!("q{i}"), "stream": i % 2 == 0})),
                &[("authorization", &auth)],
            )
            .await
            .unwrap();
        assert_eq!(resp.status, StatusCode::OK);
    }
    r.flush().await;
    let mut r = r;
    let proxy = r.proxy.take().unwrap();
    proxy.shutdown().await.unwrap();
    let mut scanned = 0;
    for entry in walk(r.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        scanned += bytes.len();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "the key is in {}",
            entry.display()
        );
    }
    assert!(scanned > 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn tls_upstream_over_h2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("twin-ca.pem");
    let twin = agentcap_sim::start(SimConfig {
        tls_ca_out: Some(ca.clone()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    assert!(twin.url().starts_with("https://"));
    let mut cfg = proxy_config(&twin.url(), dir.path());
    cfg.upstream_ca = Some(ca);
    let proxy = agentcap_proxy::start(cfg).await.unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    for stream in [false, true] {
        let req = http::Request::post(format!("http://{}/v1/conversations", proxy.addr()))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(
                json!({"model": "m", "inputs": "hello over TLS", "stream": stream}).to_string(),
            )))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(!body.is_empty());
    }
    assert_eq!(
        twin.sim()
            .h2_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        2,
        "the upstream leg negotiated h2 by ALPN"
    );
    proxy.recorder().flush().await.unwrap();
    let versions = proxy
        .recorder()
        .query("SELECT upstream_version, count(*) FROM exchanges GROUP BY ALL")
        .unwrap()
        .rows;
    assert_eq!(
        versions,
        vec![vec![json!("HTTP/2"), json!(2)]],
        "each exchange records the upstream leg's protocol"
    );
    let dir2 = tempfile::tempdir().unwrap();
    let untrusted = agentcap_proxy::start(proxy_config(&twin.url(), dir2.path()))
        .await
        .unwrap();
    let req = http::Request::get(format!("http://{}/v1/agents", untrusted.addr()))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::BAD_GATEWAY,
        "without --upstream-ca the twin's certificate is not trusted"
    );
    untrusted.recorder().flush().await.unwrap();
    let row = untrusted
        .recorder()
        .query("SELECT status, outcome, upstream_version FROM exchanges")
        .unwrap()
        .rows;
    assert_eq!(
        row,
        vec![vec![json!(502), json!("upstream_error"), Value::Null]],
        "a response the proxy made up has no upstream version"
    );
    proxy.shutdown().await.unwrap();
    untrusted.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_blocked_writer_loses_nothing() {
    let r = rig().await;
    let rec = r.proxy().recorder().clone();
    rec.set_db_fault(true);
    let n = 1000;
    let mut tasks = tokio::task::JoinSet::new();
    let r = std::sync::Arc::new(r);
    for w in 0..8 {
        let r = r.clone();
        tasks.spawn(async move {
            for i in (w..n).step_by(8) {
                let resp = r
                    .via_proxy(
                        Method::POST,
                        "/v1/conversations",
                        Some(
                            json!({"model": "m", "inputs": format!("q{i}"), "stream": i % 4 == 0}),
                        ),
                        &[],
                    )
                    .await
                    .unwrap();
                assert_eq!(resp.status, StatusCode::OK);
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    // The exchanges' batch is due within `flush_interval` of the first one ending: it fails.
    crate::harness::poll_until(
        "a failed DuckDB write",
        Duration::from_secs(60),
        async || (rec.stats().db_errors > 0).then_some(()),
    )
    .await;
    rec.set_db_fault(false);
    rec.flush().await.unwrap();
    assert_eq!(r.one("SELECT count(*) FROM exchanges"), json!(n));
    assert_eq!(r.one("SELECT count(DISTINCT id) FROM exchanges"), json!(n));
    assert_eq!(rec.stats().records_dropped, 0);
}

/// An upstream that answers every request with its request headers as a JSON object, and with a
/// secret-carrying `set-cookie` and `x-upstream-secret` of its own.
async fn header_echo_upstream() -> std::net::SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let seen: serde_json::Map<String, Value> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("?"))))
                        .collect();
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .header("content-type", "application/json")
                            .header("set-cookie", "sid=upstream-cookie-value")
                            .header("x-upstream-secret", "upstream-secret-value")
                            .body(http_body_util::Full::new(Bytes::from(
                                Value::Object(seen).to_string(),
                            )))
                            .unwrap(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn every_secret_header_is_forwarded_unchanged_and_redacted_in_the_recording() {
    use agentcap_wire::vocab::headers;
    let upstream = header_echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = agentcap_proxy::start(proxy_config(&format!("http://{upstream}"), dir.path()))
        .await
        .unwrap();
    let mut names: Vec<&str> = headers::SECRET.to_vec();
    names.extend(["x-client-secret", "x-db-password"]);
    let sent: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.to_string(), format!("value-of-{n}")))
        .collect();
    let mut req = http::Request::post(format!("http://{}/v1/conversations", proxy.addr()))
        .header("content-type", "application/json")
        .header("x-plain", "plain-value");
    for (n, v) in &sent {
        req = req.header(n.as_str(), v.as_str());
    }
    let req = req
        .body(http_body_util::Full::new(Bytes::from_static(
            b"{\"inputs\":\"x\"}",
        )))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["set-cookie"], "sid=upstream-cookie-value");
    assert_eq!(resp.headers()["x-upstream-secret"], "upstream-secret-value");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let seen: Value = serde_json::from_slice(&body).unwrap();
    // Forwarding: every secret header reaches the upstream as sent, except the two that are taken
    // off as documented: agentcap's own token and the hop-by-hop Proxy-Authorization.
    let taken_off = |n: &str| n == headers::TOKEN || n == "proxy-authorization";
    for (n, v) in &sent {
        if taken_off(n) {
            assert!(seen.get(n).is_none(), "{n} is not forwarded: {seen}");
        } else {
            assert_eq!(seen[n.as_str()], json!(v), "{n} is forwarded unchanged");
        }
    }
    assert_eq!(seen["x-plain"], "plain-value");
    // Recording: every secret value is replaced, in the request and in the response headers.
    proxy.recorder().flush().await.unwrap();
    let rows = proxy
        .recorder()
        .query("SELECT request_headers, response_headers FROM exchanges")
        .unwrap()
        .rows;
    let req_h = crate::harness::as_json(&rows[0][0]);
    let resp_h = crate::harness::as_json(&rows[0][1]);
    for (n, v) in &sent {
        let text = req_h.to_string();
        assert!(
            !text.contains(v.as_str()),
            "{n}'s value is recorded: {text}"
        );
        if !taken_off(n) {
            assert_eq!(req_h[n.as_str()], "[REDACTED]", "{n}");
        }
    }
    assert_eq!(req_h["x-plain"], "plain-value");
    assert_eq!(resp_h["set-cookie"], "[REDACTED]");
    assert_eq!(resp_h["x-upstream-secret"], "[REDACTED]");
    proxy.shutdown().await.unwrap();
}
