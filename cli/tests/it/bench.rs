//! `agentcap bench stream` and `agentcap bench load` as a user runs them: a twin and a recording proxy as
//! subprocesses, the bench comparing the two. Checks what is reported, never how fast it was.

use serde_json::Value;

use super::{Kid, between, run, stdout_of};

fn twin_and_proxy(dir: &std::path::Path) -> (Kid, Kid, String, String) {
    let (twin, line) = Kid::start(
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
    let db = dir.join("bench.duckdb");
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
        ],
        &dir.join("proxy.err"),
    );
    let proxy_url = format!("http://{}", between(&line, "listening on http://", " ->"));
    (twin, proxy, twin_url, proxy_url)
}

#[test]
fn bench_stream_compares_proxy_and_twin() {
    let dir = tempfile::tempdir().unwrap();
    let (_twin, _proxy, twin, proxy) = twin_and_proxy(dir.path());
    let args: [&str; 8] = [
        "bench",
        "stream",
        "--target",
        proxy.as_str(),
        "--compare",
        twin.as_str(),
        "--requests",
        "8",
    ];
    let text = stdout_of(&args);
    for want in [
        format!("target   {proxy}: 8/8 complete, 0 errors"),
        format!("compare  {twin}: 8/8 complete, 0 errors"),
        "TTFT (first delta)".to_string(),
        "gap between events".to_string(),
        "per-event added".to_string(),
        "ratio".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} not in\n{text}");
    }
    let json: Value = serde_json::from_str(&stdout_of(
        &[&args[..], &["--format", "json", "--concurrency", "2"]].concat(),
    ))
    .unwrap();
    assert_eq!(json["bench"], "stream");
    assert_eq!(json["targets"][0]["url"], proxy.as_str());
    assert_eq!(json["targets"][1]["ok"], 8);
    assert_eq!(json["comparison"]["per_event"]["pairs"], 8);
    assert!(
        json["comparison"]["ratio"]["ttft"]["p50"].is_number(),
        "{json}"
    );
}

#[test]
fn bench_load_open_loop_and_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let (_twin, _proxy, twin, proxy) = twin_and_proxy(dir.path());
    let json: Value = serde_json::from_str(&stdout_of(&[
        "bench",
        "load",
        "--target",
        proxy.as_str(),
        "--compare",
        twin.as_str(),
        "--rate",
        "40",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(json["mode"], "open");
    for t in json["targets"].as_array().unwrap() {
        assert_eq!(t["requests"], 20, "{t}");
        assert_eq!(t["ok"], 20, "{t}");
    }
    assert!(json["comparison"]["added_latency"]["p99_us"].is_number());

    let out = run(&["bench", "load", "--target", "127.0.0.1:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--target"));
    let out = run(&[
        "bench",
        "load",
        "--target",
        twin.as_str(),
        "--duration",
        "ten",
    ]);
    assert!(!out.status.success());
    let out = run(&[
        "bench",
        "stream",
        "--target",
        twin.as_str(),
        "--agent-id",
        "a",
        "--model",
        "m",
    ]);
    assert!(!out.status.success(), "--agent-id and --model conflict");
}

#[test]
fn bench_help_lists_the_flags() {
    let text = stdout_of(&["bench", "stream", "--help"]);
    for want in [
        "--target",
        "--compare",
        "--agent-id",
        "--model",
        "--requests",
        "--concurrency",
        "--input",
        "--format",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    let text = stdout_of(&["bench", "load", "--help"]);
    for want in ["--rate", "--duration", "--warmup", "coordinated omission"] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
}
