//! Graceful shutdown of the proxy: on SIGTERM it stops accepting, lets an in-flight stream finish
//! (or ends it, recorded as such, once the grace period runs out), flushes and exits 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Kid, between, stdout_of};

/// A twin streaming at `tokens_per_sec` and a proxy in front of it with the given grace period.
fn twin_and_proxy(dir: &Path, tokens_per_sec: &str, grace_ms: &str) -> (Kid, Kid, String) {
    let (twin, line) = Kid::start(
        "twin",
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--latency",
            "zero",
            "--ttft-ms",
            "50",
            "--tokens-per-sec",
            tokens_per_sec,
            "--exit-on-stdin-close",
        ],
        &dir.join("twin.err"),
    );
    let twin_url = line.rsplit(' ').next().unwrap().to_string();
    let db = dir.join("s.duckdb");
    let (proxy, line) = Kid::start(
        "proxy",
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--no-admin",
            "--upstream",
            &twin_url,
            "--db",
            db.to_str().unwrap(),
            "--shutdown-grace-ms",
            grace_ms,
        ],
        &dir.join("proxy.err"),
    );
    let addr = between(&line, "listening on http://", " ->").to_string();
    (twin, proxy, addr)
}

/// Starts a streamed conversation over a raw HTTP/1.1 connection and reads until the first SSE
/// event has arrived; returns the connection and what was read.
fn start_stream(addr: &str) -> (TcpStream, Vec<u8>) {
    let body = r#"{"model":"mistral-medium-latest","inputs":"Tell me a long story about the sea.","stream":true}"#;
    let req = format!(
        "POST /v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("message.output.delta") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended before its first delta");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    (s, got)
}

/// Reads to the end of the connection; an error (a reset) ends it too.
fn read_rest(s: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return rest,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
        }
    }
}

fn sigterm(kid: &Kid) {
    let pid = kid.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits (bounded) for the process to exit.
fn wait_exit(kid: &mut Kid) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = kid.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the proxy did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The counters the proxy prints on stderr when it stops.
fn final_stats(dir: &Path) -> Value {
    let err = std::fs::read_to_string(dir.join("proxy.err")).unwrap();
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("agentcap proxy stopped: "))
        .unwrap_or_else(|| panic!("no final stats in:\n{err}"));
    serde_json::from_str(line).unwrap()
}

fn recorded(dir: &Path) -> Vec<Value> {
    let db = dir.join("s.duckdb");
    let out = stdout_of(&[
        "query",
        "--admin",
        "http://127.0.0.1:1",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
        "SELECT outcome, error, event_count FROM exchanges WHERE is_stream",
    ]);
    serde_json::from_str::<Vec<Value>>(&out).unwrap()
}

#[test]
fn sigterm_lets_an_in_flight_stream_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (_twin, mut proxy, addr) = twin_and_proxy(dir.path(), "10", "30000");
    let (mut s, head) = start_stream(&addr);
    sigterm(&proxy);
    // It stops accepting while the stream goes on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the proxy still accepts after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "the proxy waits for the in-flight stream"
    );
    let rest = read_rest(&mut s);
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.contains("message.output.delta"),
        "the stream went on after SIGTERM: {text}"
    );
    assert!(
        text.contains("conversation.response.done") && text.ends_with("0\r\n\r\n"),
        "the client's stream completes normally; got after {} bytes:\n{text}",
        head.len()
    );
    let status = wait_exit(&mut proxy);
    assert!(status.success(), "exit status {status}");
    assert_eq!(final_stats(dir.path())["records_dropped"], 0);
    let rows = recorded(dir.path());
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "complete", "{rows:?}");
    assert!(rows[0]["event_count"].as_i64().unwrap() > 3, "{rows:?}");
}

#[test]
fn sigterm_ends_a_stream_that_outlasts_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    // About two tokens a second: the stream lasts far longer than the 300 ms grace period.
    let (_twin, mut proxy, addr) = twin_and_proxy(dir.path(), "2", "300");
    let (mut s, _head) = start_stream(&addr);
    sigterm(&proxy);
    let rest = read_rest(&mut s);
    let text = String::from_utf8_lossy(&rest);
    assert!(
        !text.contains("conversation.response.done") && !text.ends_with("0\r\n\r\n"),
        "the stream was cut, not completed:\n{text}"
    );
    let status = wait_exit(&mut proxy);
    assert!(status.success(), "exit status {status}");
    assert_eq!(final_stats(dir.path())["records_dropped"], 0);
    let rows = recorded(dir.path());
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "proxy_error", "{rows:?}");
    let error = rows[0]["error"].as_str().unwrap();
    assert!(
        error.contains("shut down") && error.contains("grace period (300 ms)"),
        "{error}"
    );
    assert!(rows[0]["event_count"].as_i64().unwrap() >= 1, "{rows:?}");
}
