//! Connection hygiene of the client listener (slow and silent clients, idle keep-alive, the connection cap) and
//! who gets the blame when the client's request body fails.

use std::time::Duration;

use agentcap_sim::SimConfig;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Rig, rig_with};

/// Generous bound for anything the server should do by itself (never a timing assertion).
const BOUND: Duration = Duration::from_secs(60);

/// Reads until the server closes the connection (EOF or reset); panics if it is still open after [`BOUND`].
async fn read_until_closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "{what}: the server kept the connection open for {BOUND:?}"
    );
    got
}

async fn connect(r: &Rig) -> TcpStream {
    TcpStream::connect(r.proxy().addr()).await.unwrap()
}

async fn short_timeouts(header_ms: u64, keep_alive_ms: u64, max: Option<usize>) -> Rig {
    rig_with(SimConfig::default(), |c| {
        c.header_read_timeout = Duration::from_millis(header_ms);
        c.keep_alive_timeout = Duration::from_millis(keep_alive_ms);
        c.max_connections = max;
    })
    .await
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off_after_the_header_read_timeout() {
    let r = short_timeouts(300, 120_000, None).await;
    let mut s = connect(&r).await;
    // Half a request head, then silence: the slowloris pattern.
    s.write_all(b"GET /v1/agents HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    read_until_closed(&mut s, "slow head").await;
    assert!(r.proxy().client_connections().header_timeouts >= 1);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_read_timeout() {
    let r = short_timeouts(300, 120_000, None).await;
    // Not a byte: the listener cannot even tell HTTP/1.1 from HTTP/2 yet.
    let mut s = connect(&r).await;
    read_until_closed(&mut s, "silent connection").await;
    // An HTTP/2 preface cut short stalls at the same point.
    let mut s = connect(&r).await;
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    read_until_closed(&mut s, "partial HTTP/2 preface").await;
    assert!(r.proxy().client_connections().header_timeouts >= 2);
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_off_after_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let r = rig_with(SimConfig::default(), |c| {
        c.header_read_timeout = Duration::from_millis(300);
        c.keep_alive_timeout = Duration::from_secs(120);
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await;
    let mut s = connect(&r).await;
    // The start of a TLS record header, then silence.
    s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    read_until_closed(&mut s, "stalled TLS handshake").await;
    assert!(r.proxy().client_connections().header_timeouts >= 1);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let r = short_timeouts(120_000, 300, None).await;
    let mut s = connect(&r).await;
    s.write_all(b"GET /v1/agents HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut s, "idle HTTP/1.1 keep-alive connection").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(r.proxy().client_connections().idle_closed >= 1);
}

#[tokio::test]
async fn an_idle_h2_connection_gets_a_goaway_after_the_keep_alive_timeout() {
    let r = short_timeouts(120_000, 300, None).await;
    let tcp = connect(&r).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("http://{}/v1/agents", r.proxy().addr()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.unwrap();
    // The sender stays alive: only the server can end this connection.
    let ended = tokio::time::timeout(BOUND, conn).await;
    assert!(ended.is_ok(), "the idle h2 connection stayed open");
    drop(sender);
    assert!(r.proxy().client_connections().idle_closed >= 1);
}

#[tokio::test]
async fn at_the_connection_cap_new_clients_wait_for_a_slot_and_are_served() {
    let cap = 2;
    let r = short_timeouts(500, 120_000, Some(cap)).await;
    let mut slow = Vec::new();
    for _ in 0..cap + 3 {
        let mut s = connect(&r).await;
        s.write_all(b"GET /v1/agents HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // A well-behaved client behind them is served once slots free up (the slow ones time out).
    let ok = tokio::time::timeout(BOUND, r.via_proxy(Method::GET, "/v1/agents", None, &[]))
        .await
        .expect("the normal client was served")
        .expect("request succeeds");
    assert_eq!(ok.status, StatusCode::OK);
    for (i, s) in slow.iter_mut().enumerate() {
        read_until_closed(s, &format!("slow connection {i}")).await;
    }
    let st = r.proxy().client_connections();
    assert!(st.peak <= cap as u64, "{st:?}");
    assert!(st.header_timeouts >= cap as u64 + 3, "{st:?}");
    assert_eq!(st.fd_exhausted, 0, "{st:?}");
}

async fn recorded(r: &Rig) -> Vec<Vec<serde_json::Value>> {
    r.flush().await;
    r.rows("SELECT outcome, status, error FROM exchanges")
}

/// Waits (bounded) until the recorder has one exchange, and returns it.
async fn the_exchange(r: &Rig) -> Vec<serde_json::Value> {
    crate::harness::poll_until("a single recorded exchange", BOUND, async || {
        let rows = recorded(r).await;
        (rows.len() == 1).then(|| rows[0].clone())
    })
    .await
}

#[tokio::test]
async fn a_malformed_chunk_size_is_a_client_error_answered_with_400() {
    let r = short_timeouts(10_000, 10_000, None).await;
    let mut s = connect(&r).await;
    s.write_all(
        b"POST /v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut s, "malformed chunked body").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("agentcap_bad_request_body"), "{text}");
    let row = the_exchange(&r).await;
    assert_eq!(row[0], json!("client_error"), "{row:?}");
    assert_eq!(row[1], json!(400), "{row:?}");
    assert!(
        !row[2].as_str().unwrap_or_default().contains("upstream"),
        "{row:?}"
    );
}

#[tokio::test]
async fn a_client_aborting_mid_upload_is_cancelled_by_client_not_an_upstream_error() {
    let r = short_timeouts(10_000, 10_000, None).await;
    let mut s = connect(&r).await;
    s.write_all(
        b"POST /v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"inputs\": \"hel",
    )
    .await
    .unwrap();
    // The client stops sending (half-close), so the body ends 990 bytes short.
    s.shutdown().await.unwrap();
    let got = read_until_closed(&mut s, "aborted upload").await;
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains(" 502 "), "{text}");
    let row = the_exchange(&r).await;
    assert_eq!(row[0], json!("cancelled_by_client"), "{row:?}");
    assert_ne!(row[1], json!(502), "{row:?}");
}
