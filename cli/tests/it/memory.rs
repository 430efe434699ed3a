//! The proxy's memory stays under a bound whatever the peers send: the real `agentcap proxy` forwards
//! long streamed responses and large uploads while a watchdog reads the child's VmRSS from /proc and
//! fails the test the moment it passes the bound.
//!
//! Sizes (defaults keep the debug build's test time short):
//! - `AGENTCAP_MEMORY_STREAM_MB` (default 64): bytes of each of the two streamed responses;
//! - `AGENTCAP_MEMORY_UPLOAD_MB` (default 128): bytes of uploads, sent as 4 concurrent uploads;
//! - `AGENTCAP_MEMORY_BOUND_MB` (default 300): the RSS bound.
//!
//! The full-size run: `AGENTCAP_MEMORY_STREAM_MB=1024 AGENTCAP_MEMORY_UPLOAD_MB=1024
//! cargo test -p agentcap --test it memory -- --nocapture` (debug build: peak 254 MB under the 300 MB bound,
//! 150 s, 1.88 million event rows written in chunks while the streams ran). `AGENTCAP_MEMORY_TRACE=1` prints
//! the RSS and the recorder's gauges twice a second.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn env_mb(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        * 1024
        * 1024
}

/// One SSE event of a conversation stream carrying `n` bytes of text.
fn delta(n: usize) -> Vec<u8> {
    let text = "y".repeat(n);
    format!(
        "event: message.output.delta\ndata: {{\"type\":\"message.output.delta\",\"output_index\":0,\"id\":\"msg_1\",\"content_index\":0,\"model\":\"m\",\"content\":\"{text}\"}}\n\n"
    )
    .into_bytes()
}

/// Reads a request head; returns its path and content length.
fn read_head(r: &mut BufReader<TcpStream>) -> Option<(String, u64)> {
    let mut len = 0;
    let mut first = String::new();
    r.read_line(&mut first).ok()?;
    let path = first.split_whitespace().nth(1)?.to_owned();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Some((path, len));
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
}

/// A minimal HTTP/1.1 upstream on 127.0.0.1:0: drains each request body (counting it into
/// `received`); answers `/v1/conversations` with an SSE stream of `stream_bytes` bytes (generated as
/// it goes, closed-delimited) and anything else with `{}`. Stops when `stop` is set.
fn upstream(stream_bytes: u64, received: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // Blocking accepts; the test wakes the loop with one last connection once `stop` is set.
        while let Ok((s, _)) = listener.accept() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let received = received.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                let Some((path, len)) = read_head(&mut r) else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                let mut left = len;
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    match r.read(&mut buf[..want]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            left -= n as u64;
                            received.fetch_add(n as u64, Ordering::SeqCst);
                        }
                    }
                }
                if path != "/v1/conversations" {
                    let _ = w.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                    );
                    return;
                }
                let _ = w.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
                );
                let _ = w.write_all(
                    b"event: conversation.response.started\ndata: {\"type\":\"conversation.response.started\",\"conversation_id\":\"conv_big\"}\n\n",
                );
                let ev = delta(1000);
                let batch: Vec<u8> = ev.repeat(16);
                let mut sent = 0u64;
                while sent < stream_bytes {
                    if w.write_all(&batch).is_err() {
                        return;
                    }
                    sent += batch.len() as u64;
                }
                let _ = w.write_all(
                    b"event: conversation.response.done\ndata: {\"type\":\"conversation.response.done\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n",
                );
            });
        }
    });
    format!("http://{addr}")
}

/// Sends a raw request to `addr` and reads the whole response, returning its byte count.
fn exchange(addr: &str, head: &str, body_bytes: u64) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'u'; 64 * 1024];
    let mut left = body_bytes;
    while left > 0 {
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        s.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
}

/// `VmRSS` and `VmHWM` of a process, in bytes.
fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[test]
fn proxy_memory_stays_bounded_under_long_streams_and_uploads() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("no /proc: the RSS watchdog needs Linux");
        return;
    }
    let stream_bytes = env_mb("AGENTCAP_MEMORY_STREAM_MB", 64);
    let upload_bytes = env_mb("AGENTCAP_MEMORY_UPLOAD_MB", 128);
    let bound = env_mb("AGENTCAP_MEMORY_BOUND_MB", 300);
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let up = upstream(stream_bytes, received.clone(), stop.clone());

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.duckdb");
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentcap"))
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--upstream",
            &up,
            "--db",
            db.to_str().unwrap(),
            "--capture-cap",
            "1048576",
        ])
        .env_remove("AGENTCAP_PROXY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("agentcap proxy starts");
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child = Reap(child);
    let pid = child.0.id();
    let addr = super::between(&line, "listening on http://", " ->").to_string();
    let admin = super::between(&line, "admin ", ")").to_string();

    // The watchdog: samples RSS every 20 ms until told to stop.
    let peak = Arc::new(AtomicU64::new(0));
    let watching = Arc::new(AtomicBool::new(true));
    let trace = std::env::var_os("AGENTCAP_MEMORY_TRACE").is_some();
    let dog = {
        let (peak, watching, admin) = (peak.clone(), watching.clone(), admin.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            // Samples the RSS until the load is over (a day at most: the watchdog only measures).
            crate::poll_until("the load to end", Duration::from_secs(86_400), || {
                if let Some((now, _)) = rss(pid) {
                    peak.fetch_max(now, Ordering::SeqCst);
                    n += 1;
                    if trace && n.is_multiple_of(25) {
                        let host = admin.trim_start_matches("http://").to_string();
                        let mut m = String::new();
                        if let Ok(mut s) = TcpStream::connect(&host) {
                            let _ = s.write_all(
                                format!("GET /metrics.json HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n")
                                    .as_bytes(),
                            );
                            let _ = s.read_to_string(&mut m);
                        }
                        let body = m.split("\r\n\r\n").nth(1).unwrap_or("");
                        eprintln!("rss {} MB {body}", now >> 20);
                    }
                    assert!(
                        now <= bound,
                        "proxy RSS {} MB passed the bound of {} MB",
                        now >> 20,
                        bound >> 20
                    );
                }
                !watching.load(Ordering::SeqCst)
            });
        })
    };
    let start_rss = rss(pid).map_or(0, |r| r.0);

    // Two long streams at once.
    let streams: Vec<_> = (0..2)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let body = r#"{"inputs":"hi","stream":true,"model":"m"}"#;
                let head = format!(
                    "POST /v1/conversations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                exchange(&addr, &head, 0)
            })
        })
        .collect();
    // Concurrent uploads.
    let per = upload_bytes / 4;
    let uploads: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let head = format!(
                    "POST /v1/files HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: {per}\r\nconnection: close\r\n\r\n"
                );
                exchange(&addr, &head, per)
            })
        })
        .collect();
    for s in streams {
        let got = s.join().expect("stream client");
        assert!(got >= stream_bytes, "a stream arrived short: {got} bytes");
    }
    for u in uploads {
        assert!(u.join().expect("upload client") > 0);
    }
    assert!(received.load(Ordering::SeqCst) >= per * 4);

    // Until everything is in DuckDB (the recorder's share of the memory peaks there).
    let h = super::Http::new();
    h.post(&format!("{admin}/flush"), serde_json::json!({}));
    watching.store(false, Ordering::SeqCst);
    dog.join().expect("the RSS stayed under the bound");
    let (_, hwm) = rss(pid).unwrap_or((0, 0));
    let events = super::stdout_of(&[
        "query",
        "--admin",
        &admin,
        "--format",
        "csv",
        "SELECT count(*) FROM sse_events",
    ]);
    println!(
        "memory: streams 2 x {} MB, uploads {} MB: RSS at start {} MB, peak sampled {} MB, VmHWM {} MB; sse_events {}",
        stream_bytes >> 20,
        upload_bytes >> 20,
        start_rss >> 20,
        peak.load(Ordering::SeqCst) >> 20,
        hwm >> 20,
        events.trim().replace('\n', " ")
    );
    assert!(hwm <= bound, "VmHWM {} MB passed the bound", hwm >> 20);
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect(up.trim_start_matches("http://"));
    drop(child);
}
