//! Durability through the proxy: strict mode with a failing journal, batched mode with a failing
//! journal, and the race between a request-body frame and the end of its exchange.

use std::time::{Duration, Instant, SystemTime};

use agentcap_proxy::exchange::Exchange;
use agentcap_proxy::record::{ExchangeId, Msg, Outcome, RequestInfo};
use agentcap_proxy::recorder::{Durability, Recorder, RecorderConfig};
use agentcap_sim::SimConfig;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;

use crate::harness::{proxy_config, rig_with};

fn start_body(stream: bool) -> Option<serde_json::Value> {
    Some(json!({"model": "m", "inputs": "hello", "stream": stream}))
}

#[tokio::test]
async fn strict_mode_with_a_failing_journal_ends_responses_with_an_error() {
    let r = rig_with(SimConfig::default(), |c| {
        c.recorder.durability = Durability::Strict;
    })
    .await;
    let rec = r.proxy().recorder().clone();
    let ok = r
        .via_proxy(Method::POST, "/v1/conversations", start_body(false), &[])
        .await
        .expect("a healthy journal: the response arrives in full");
    assert_eq!(ok.status, StatusCode::OK);

    rec.set_journal_fault(true);
    for stream in [false, true] {
        let got = r
            .via_proxy(Method::POST, "/v1/conversations", start_body(stream), &[])
            .await;
        assert!(
            got.is_err(),
            "stream={stream}: a response the journal could not record ended cleanly: {:?}",
            got.map(|g| (g.status, g.body))
        );
    }
    let s = rec.stats();
    assert!(s.strict_not_durable >= 2, "{s:?}");
    assert!(s.journal_errors >= 1, "{s:?}");

    // Once the disk has room again, the journal recovers after its back-off.
    rec.set_journal_fault(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(g) = r
            .via_proxy(Method::POST, "/v1/conversations", start_body(false), &[])
            .await
        {
            assert_eq!(g.status, StatusCode::OK);
            break;
        }
        assert!(Instant::now() < deadline, "the journal never recovered");
    }
}

/// A response the proxy makes itself (here a 502: nothing listens upstream) is held for its record
/// in strict mode too: whole with a healthy journal, ended with an error when the journal fails
/// (it used to go out in full whatever the journal did).
#[tokio::test]
async fn strict_mode_holds_the_proxys_own_responses_for_their_record() {
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut cfg = proxy_config(&format!("http://127.0.0.1:{port}"), dir.path());
    cfg.recorder.durability = Durability::Strict;
    let proxy = agentcap_proxy::start(cfg).await.unwrap();
    let rec = proxy.recorder().clone();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let send = || async {
        let req = http::Request::post(format!("http://{}/v1/conversations", proxy.addr()))
            .body(http_body_util::Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| (status, b.to_bytes()))
            .map_err(|e| e.to_string())
    };
    let (status, body) = send()
        .await
        .expect("a healthy journal: the 502 arrives in full");
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "agentcap_upstream_unreachable");
    assert_eq!(rec.stats().strict_not_durable, 0);

    rec.set_journal_fault(true);
    let got = send().await;
    assert!(
        got.is_err(),
        "a 502 the journal could not record ended cleanly: {got:?}"
    );
    let s = rec.stats();
    assert_eq!(s.strict_not_durable, 1, "{s:?}");
    rec.set_journal_fault(false);
    proxy.shutdown().await.unwrap();
}

#[tokio::test]
async fn batched_mode_with_a_failing_journal_keeps_forwarding() {
    let r = rig_with(SimConfig::default(), |_| {}).await;
    let rec = r.proxy().recorder().clone();
    rec.set_journal_fault(true);
    for i in 0..20 {
        let g = r
            .via_proxy(
                Method::POST,
                "/v1/conversations",
                start_body(i % 2 == 1),
                &[],
            )
            .await
            .expect("batched mode forwards whatever the journal does");
        assert_eq!(g.status, StatusCode::OK);
    }
    assert!(rec.stats().journal_errors >= 1);
    assert_eq!(rec.stats().strict_not_durable, 0);
    rec.set_journal_fault(false);
    r.flush().await;
    assert_eq!(r.one("SELECT count(*) FROM exchanges"), json!(20));
}

/// The interleaving behind a lost request-body frame: the request tee numbers a frame, the
/// response ends the exchange (the upstream answered before reading the whole upload), and only
/// then is the frame handed over. The writer must not wait forever for that number.
#[tokio::test]
async fn a_frame_numbered_before_the_end_is_recorded_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RecorderConfig {
        db_path: dir.path().join("rec.duckdb"),
        durability: Durability::Strict,
        ..RecorderConfig::default()
    };
    let recorder = Recorder::open(cfg).unwrap();
    let h = recorder.handle();
    let id = ExchangeId::now_v7();
    h.send(Msg::Request {
        info: Box::new(RequestInfo {
            id,
            started_at: SystemTime::now(),
            method: "POST".into(),
            path: "/v1/files".into(),
            query: None,
            client_addr: "127.0.0.1:40000".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            key_fingerprint: None,
            session: None,
            tags: Vec::new(),
        }),
    });
    let ex = Exchange::new(id, std::time::Instant::now(), h.clone(), true);
    let frame_seq = ex.next_seq();
    ex.record(Msg::Response {
        id,
        seq: ex.next_seq(),
        status: 413,
        headers: vec![("content-type".into(), "application/json".into())],
        at_us: 10,
        upstream_version: None,
    });
    let ack = ex.end(Outcome::Complete, None).expect("the first end");
    ex.record(Msg::RequestBody {
        id,
        seq: frame_seq,
        bytes: Bytes::from_static(b"late frame"),
    });
    // Numbers taken after the end are refused.
    assert_eq!(ex.try_next_seq(), None);
    let got = tokio::time::timeout(Duration::from_secs(60), ack).await;
    assert!(
        matches!(got, Ok(Ok(()))),
        "the exchange's record never completed: {got:?}"
    );
    h.flush().await.unwrap();
    let q = h
        .query(&format!(
            "SELECT request_body_raw, status FROM exchanges WHERE id = '{id}'"
        ))
        .unwrap();
    assert_eq!(q.get(0, "request_body_raw"), Some(&json!("late frame")));
    assert_eq!(q.get(0, "status"), Some(&json!(413)));
    drop(ex);
    recorder.shutdown().unwrap();
}

/// A message that never comes (a bug upstream of the recorder) does not pin the exchange: after
/// the gap limit it is written with what arrived and its strict acknowledgement fails.
#[tokio::test]
async fn a_missing_message_never_pins_an_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RecorderConfig {
        db_path: dir.path().join("rec.duckdb"),
        durability: Durability::Strict,
        message_gap_limit: Duration::from_millis(100),
        ..RecorderConfig::default()
    };
    let recorder = Recorder::open(cfg).unwrap();
    let h = recorder.handle();
    let id = ExchangeId::now_v7();
    let ex = Exchange::new(id, std::time::Instant::now(), h.clone(), true);
    h.send(Msg::Request {
        info: Box::new(RequestInfo {
            id,
            started_at: SystemTime::now(),
            method: "GET".into(),
            path: "/v1/agents".into(),
            query: None,
            client_addr: "127.0.0.1:40000".into(),
            headers: Vec::new(),
            key_fingerprint: None,
            session: None,
            tags: Vec::new(),
        }),
    });
    // Number 1 is taken and never sent.
    let _lost = ex.next_seq();
    let ack = ex.end(Outcome::Complete, None).expect("the first end");
    let got = tokio::time::timeout(Duration::from_secs(60), ack).await;
    assert!(
        matches!(
            got,
            Ok(Err(agentcap_proxy::recorder::NotDurable::Incomplete))
        ),
        "{got:?}"
    );
    assert_eq!(h.stats().exchanges_incomplete, 1);
    h.flush().await.unwrap();
    let q = h
        .query(&format!(
            "SELECT count(*) AS n FROM exchanges WHERE id = '{id}'"
        ))
        .unwrap();
    assert_eq!(q.get(0, "n"), Some(&json!(1)));
    drop(ex);
    recorder.shutdown().unwrap();
}
