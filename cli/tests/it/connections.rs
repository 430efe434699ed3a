//! The proxy under a low open-file limit: slow clients exhaust its descriptors, it says so once, clearly, and
//! recovers by itself once the slow clients are timed out.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use super::{BIN, Kid, agentcap, between};

/// Reads until the server closes the connection (EOF or reset), bounded.
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("the proxy kept a slow connection open for 60 s")
            }
            Err(_) => return got,
        }
    }
}

#[test]
fn out_of_descriptors_the_proxy_says_so_once_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
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
        &dir.join("twin.err"),
    );
    let twin_url = line.rsplit(' ').next().unwrap().to_string();
    let db = dir.join("fd.duckdb");
    // The proxy under `ulimit -n 96`, with a connection cap the limit cannot hold.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -n 96 && exec \"$0\" \"$@\"", BIN]);
    cmd.args([
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--no-admin",
        "--upstream",
        &twin_url,
        "--db",
        db.to_str().unwrap(),
        "--header-read-timeout-ms",
        "500",
        "--max-connections",
        "1000",
        "--exit-on-stdin-close",
    ]);
    for (k, v) in agentcap().get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let err = dir.join("proxy.err");
    let (mut proxy, line) = Kid::start_cmd("proxy", cmd, &err);
    let addr = between(&line, "listening on http://", " ->").to_string();

    // More slow clients than the proxy has descriptors: half a request head each, then silence.
    let mut slow: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /v1/agents HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // Each is timed out in turn as descriptors free up.
    for s in &mut slow {
        read_until_closed(s);
    }
    drop(slow);
    // A normal client is served again.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /v1/agents HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let got = String::from_utf8_lossy(&read_until_closed(&mut s)).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");

    assert!(proxy.terminate().success());
    let log = std::fs::read_to_string(&err).unwrap();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("too many open files"))
        .collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("ERROR"), "{log}");
    assert!(errors[0].contains("ulimit -n: 96"), "{log}");
    assert!(errors[0].contains("--max-connections"), "{log}");
    assert!(
        log.contains("--max-connections 1000 is more than the open-file limit"),
        "{log}"
    );
}
