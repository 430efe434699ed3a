//! Memory bounded by configuration whatever the peers send: a compressed SSE bomb, a long stream and
//! large uploads go through the proxy untouched while the recorder keeps a copy capped by
//! `capture_cap` (every exchange and every SSE event still gets its row).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agentcap_proxy::RunningProxy;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::harness::proxy_config;

type Frames = StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, Infallible>>>,
>;

/// What the test upstream answers: headers and the body's frames.
type Answer = (Vec<(&'static str, String)>, Vec<Bytes>);

/// An upstream on 127.0.0.1:0 that drains each request body (counting its bytes into `received`)
/// and answers with `answer()`.
async fn upstream(
    received: Arc<AtomicU64>,
    answer: impl Fn() -> Answer + Send + Sync + 'static,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let (answer, received) = (answer.clone(), received.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (answer, received) = (answer.clone(), received.clone());
                    async move {
                        let mut body = req.into_body();
                        while let Some(f) = body.frame().await {
                            let Ok(f) = f else { break };
                            if let Some(d) = f.data_ref() {
                                received.fetch_add(d.len() as u64, Ordering::SeqCst);
                            }
                        }
                        let (headers, frames) = answer();
                        let mut b = Response::builder();
                        for (k, v) in headers {
                            b = b.header(k, v);
                        }
                        let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = frames
                            .into_iter()
                            .map(|f| Ok(http_body::Frame::data(f)))
                            .collect();
                        let body: Frames = StreamBody::new(futures_util::stream::iter(frames));
                        Ok::<_, Infallible>(b.body(body).unwrap())
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

const CAP: usize = 64 * 1024;

async fn proxy(addr: SocketAddr, dir: &std::path::Path) -> RunningProxy {
    let mut cfg = proxy_config(&format!("http://{addr}"), dir);
    cfg.recorder.capture_cap = CAP;
    agentcap_proxy::start(cfg).await.unwrap()
}

async fn post(proxy: &RunningProxy, path: &str, body: Bytes) -> (StatusCode, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = Request::post(format!("http://{}{path}", proxy.addr()))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

fn rows(proxy: &RunningProxy, sql: &str) -> Vec<Vec<Value>> {
    proxy
        .recorder()
        .query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn chunks(data: &[u8], size: usize) -> Vec<Bytes> {
    data.chunks(size).map(Bytes::copy_from_slice).collect()
}

/// Issue 10 point 6: a gzip SSE response that inflates 1,000 times is forwarded compressed and
/// unchanged; the recorder inflates at most 64 x the cap, flags the exchange and stores at most the
/// cap of event data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_sse_bomb_is_forwarded_untouched_and_its_copy_capped() {
    let event = {
        let mut e = b"data: \"".to_vec();
        e.extend(std::iter::repeat_n(b'a', 64 * 1024));
        e.extend_from_slice(b"\"\n\n");
        e
    };
    let events = 1024; // 64 MiB inflated.
    let gz = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for _ in 0..events {
            enc.write_all(&event).unwrap();
        }
        Bytes::from(enc.finish().unwrap())
    };
    let gz2 = gz.clone();
    let addr = upstream(Arc::default(), move || {
        (
            vec![
                ("content-type", "text/event-stream".to_owned()),
                ("content-encoding", "gzip".to_owned()),
            ],
            chunks(&gz2, 16 * 1024),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy(addr, dir.path()).await;
    let (status, got) = post(&proxy, "/v1/chat/completions", Bytes::from_static(b"{}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(got == gz, "the compressed bytes reach the client unchanged");
    proxy.recorder().flush().await.unwrap();

    let r = rows(
        &proxy,
        "SELECT response_truncated, response_parse_error, response_bytes, event_count FROM exchanges",
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0][0], json!(true), "the exchange is flagged: {r:?}");
    assert!(
        r[0][1]
            .as_str()
            .unwrap_or("")
            .contains("decoded stream passed"),
        "{r:?}"
    );
    assert_eq!(int(&r[0][2]), gz.len() as i64);
    let decoded_events = int(&r[0][3]);
    assert!(
        decoded_events > 0 && decoded_events < events,
        "only the inflated budget is decoded: {decoded_events}"
    );
    let e = rows(
        &proxy,
        "SELECT count(*), COALESCE(sum(length(data::VARCHAR)), 0), count(*) FILTER (WHERE data_truncated) FROM sse_events",
    );
    assert_eq!(int(&e[0][0]), decoded_events, "a row per decoded event");
    assert!(
        int(&e[0][1]) <= CAP as i64,
        "stored event data is capped: {e:?}"
    );
    assert!(int(&e[0][2]) > 0);
    assert_eq!(proxy.recorder().stats().records_dropped, 0);
}

/// Issue 10 point 7: a long uncompressed conversation stream keeps one row per event, stores at most
/// the cap of event data and of assembled entry text, and flags what it left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_stream_gets_every_event_row_with_capped_data_and_entries() {
    let deltas = 4000usize;
    let piece = "x".repeat(1000);
    let mut wire = Vec::new();
    let mut push = |v: Value| {
        wire.extend_from_slice(&agentcap_wire::encode_conversation_event(&v));
    };
    push(json!({"type": "conversation.response.started", "conversation_id": "conv_long"}));
    for _ in 0..deltas {
        push(
            json!({"type": "message.output.delta", "output_index": 0, "id": "msg_1",
            "content_index": 0, "model": "m", "role": "assistant", "content": piece}),
        );
    }
    push(json!({"type": "conversation.response.done",
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}));
    let wire = Bytes::from(wire);
    let wire2 = wire.clone();
    let addr = upstream(Arc::default(), move || {
        (
            vec![("content-type", "text/event-stream".to_owned())],
            chunks(&wire2, 8 * 1024),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy(addr, dir.path()).await;
    let (status, got) = post(
        &proxy,
        "/v1/conversations",
        Bytes::from_static(br#"{"inputs":"hi","stream":true,"model":"m"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(got == wire, "the stream reaches the client unchanged");
    proxy.recorder().flush().await.unwrap();

    let x = rows(
        &proxy,
        "SELECT event_count, response_truncated, conversation_id, response_bytes FROM exchanges",
    );
    assert_eq!(int(&x[0][0]), deltas as i64 + 2);
    assert_eq!(x[0][1], json!(true));
    assert_eq!(x[0][2], json!("conv_long"));
    assert_eq!(int(&x[0][3]), wire.len() as i64);
    let e = rows(
        &proxy,
        "SELECT count(*), COALESCE(sum(length(data::VARCHAR)), 0), count(*) FILTER (WHERE data_truncated AND data IS NULL), max(seq) FROM sse_events",
    );
    assert_eq!(int(&e[0][0]), deltas as i64 + 2, "a row per event");
    assert!(
        int(&e[0][1]) <= CAP as i64,
        "stored event data is capped: {e:?}"
    );
    assert!(int(&e[0][2]) > 0);
    assert_eq!(int(&e[0][3]), deltas as i64 + 1);
    let last = rows(
        &proxy,
        "SELECT event_type, size FROM sse_events ORDER BY seq DESC LIMIT 1",
    );
    assert_eq!(
        last[0][0],
        json!("conversation.response.done"),
        "types are kept past the cap"
    );
    assert!(int(&last[0][1]) > 0);
    let out = rows(
        &proxy,
        "SELECT length(text), truncated FROM entries WHERE direction = 'output'",
    );
    assert_eq!(out.len(), 1);
    assert!(
        int(&out[0][0]) <= CAP as i64,
        "entry text is capped: {out:?}"
    );
    assert!(int(&out[0][0]) > 0);
    assert_eq!(out[0][1], json!(true));
    let usage = rows(&proxy, "SELECT total_tokens FROM usage");
    assert_eq!(int(&usage[0][0]), 3, "the final event is still derived");
    assert_eq!(proxy.recorder().stats().records_dropped, 0);
}

/// Issue 10 point 8: uploads far beyond the cap reach the upstream in full, but the recorder gets
/// (and journals) only about the cap of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_cap_are_forwarded_but_not_copied() {
    let received = Arc::new(AtomicU64::new(0));
    let addr = upstream(received.clone(), || {
        (
            vec![("content-type", "application/json".to_owned())],
            vec![Bytes::from_static(b"{}")],
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy(addr, dir.path()).await;
    let size = 16 * 1024 * 1024;
    let uploads = 4;
    let body = Bytes::from(vec![b'u'; size]);
    let mut tasks = Vec::new();
    for _ in 0..uploads {
        let (body, url) = (body.clone(), format!("http://{}/v1/files", proxy.addr()));
        tasks.push(tokio::spawn(async move {
            let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build_http::<Full<Bytes>>();
            let req = Request::post(url)
                .header("content-type", "application/octet-stream")
                .body(Full::new(body))
                .unwrap();
            client.request(req).await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(received.load(Ordering::SeqCst), (size * uploads) as u64);
    // A client may see its response complete just before the proxy ends the exchange (a flush
    // leaves exchanges in flight out): flush until all four are ended and written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        proxy.recorder().flush().await.unwrap();
        let n = rows(&proxy, "SELECT count(*) FROM exchanges");
        if int(&n[0][0]) == uploads as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "exchanges never ended"
        );
        tokio::task::yield_now().await;
    }
    let r = rows(
        &proxy,
        "SELECT request_bytes, request_truncated, length(request_body_raw) FROM exchanges",
    );
    assert_eq!(r.len(), uploads);
    for row in &r {
        assert_eq!(
            int(&row[0]),
            size as i64,
            "the wire size is recorded: {row:?}"
        );
        assert_eq!(row[1], json!(true));
        assert_eq!(int(&row[2]), CAP as i64);
    }
    let stats = proxy.recorder().stats();
    assert!(
        stats.journal_bytes < (uploads * 4 * CAP) as u64 + 256 * 1024,
        "the recorder journaled {} bytes for {} bytes of uploads",
        stats.journal_bytes,
        size * uploads
    );
    assert_eq!(stats.records_dropped, 0);
}
