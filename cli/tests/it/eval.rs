//! `agentcap eval`, `datasets` and `demo` as a user runs them: a run interrupted by SIGINT and
//! resumed, list / show / compare, cutoffs as exit codes, a verified dataset fetch (and a
//! checksum failure) from a local HTTP server, and the demo.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Kid, agentcap, run, stdout_of};

fn shared(rel: &str) -> PathBuf {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo test"));
    let p = dir.join("../../shared/datasets").join(rel);
    assert!(
        p.exists(),
        "{} is missing; these tests need the shared datasets",
        p.display()
    );
    p
}

fn twin(dir: &Path, name: &'static str, extra: &[&str]) -> (Kid, String) {
    let csv = shared("simpleqa/simple_qa_test_set.csv");
    let mut args = vec![
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--latency",
        "zero",
        "--exit-on-stdin-close",
        "--knowledge",
        csv.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (kid, line) = Kid::start(name, &args, &dir.join(format!("{name}.err")));
    let url = line.rsplit(' ').next().unwrap().to_string();
    (kid, url)
}

const CONFIGS: &str = r#"
[[config]]
name = "no-tools"
model = "mistral-medium-latest"

[[config]]
name = "web"
model = "mistral-medium-latest"
tools = ["web_search"]
"#;

/// Serves `body` to `n` GET requests on 127.0.0.1:0 from a thread; returns the base URL.
fn serve(body: Vec<u8>, n: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/csv\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn interrupted_by_sigint_then_resumed_listed_shown_compared_and_gated() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();
    // The dataset comes from the cache, filled offline from a local copy (grader template included).
    let simpleqa_dir = shared("simpleqa");
    let fetched = stdout_of(&[
        "datasets",
        "fetch",
        "simpleqa",
        "--from-dir",
        simpleqa_dir.to_str().unwrap(),
        "--data-dir",
        cache_s,
    ]);
    assert!(
        fetched.contains("simple_qa_test_set.csv: fetched from"),
        "{fetched}"
    );
    assert!(
        fetched.contains("grader_template.txt: fetched from"),
        "{fetched}"
    );

    // A slow twin (100 ms before each answer and each judge reply), so the run is surely still
    // going when SIGINT arrives; a fast one for the resume.
    let (_slow, slow_url) = twin(dir.path(), "slow-twin", &["--ttft-ms", "100"]);
    let (_fast, fast_url) = twin(dir.path(), "fast-twin", &[]);
    let configs = dir.path().join("configs.toml");
    std::fs::write(&configs, CONFIGS).unwrap();
    let db = dir.path().join("evals.duckdb");
    let db_s = db.to_str().unwrap();
    let out_file = dir.path().join("run.out");
    let err_file = dir.path().join("run.err");
    let mut child = agentcap()
        .args([
            "eval",
            "run",
            "--dataset",
            "simpleqa",
            "--data-dir",
            cache_s,
            "--configs",
            configs.to_str().unwrap(),
            "--limit",
            "100",
            "--concurrency",
            "2",
            "--upstream",
            &slow_url,
            "--db",
            db_s,
            "--simulated-upstream",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .spawn()
        .unwrap();
    // 400 requests of at least 100 ms, two at a time: at least 20 s of work.
    std::thread::sleep(Duration::from_secs(3));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "eval run did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err_file).unwrap();
    let stdout = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    assert!(
        stdout.contains("no-tools"),
        "the partial report is printed:\n{stdout}"
    );
    let marker = "agentcap eval resume ";
    let at = stderr
        .find(marker)
        .unwrap_or_else(|| panic!("no resume hint in\n{stderr}"));
    let run_id = stderr[at + marker.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(run_id.starts_with("run_"), "{run_id}");

    let list = stdout_of(&["eval", "list", "--db", db_s]);
    assert!(
        list.contains(&run_id) && list.contains("interrupted"),
        "{list}"
    );

    // Resume against the fast twin.
    let html = dir.path().join("report.html");
    let resumed = run(&[
        "eval",
        "resume",
        &run_id,
        "--db",
        db_s,
        "--data-dir",
        cache_s,
        "--upstream",
        &fast_url,
        "--out",
        html.to_str().unwrap(),
    ]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(std::fs::read_to_string(&html).unwrap().contains("<html"));

    let list: Value =
        serde_json::from_str(&stdout_of(&["eval", "list", "--db", db_s, "--json"])).unwrap();
    assert_eq!(list[0]["run_id"], run_id.as_str());
    assert_eq!(list[0]["status"], "complete");
    assert_eq!(list[0]["finished_items"], 200);

    let shown: Value = serde_json::from_str(&stdout_of(&[
        "eval", "show", &run_id, "--db", db_s, "--format", "json",
    ]))
    .unwrap();
    assert_eq!(shown["run"]["complete"], true);
    assert_eq!(shown["run"]["grader"], "simpleqa");
    assert_eq!(shown["run"]["simulated_upstream"], true);
    assert_eq!(shown["configs"][0]["summary"]["n"], 100);
    assert_eq!(shown["configs"][1]["summary"]["n"], 100);
    assert_eq!(shown["comparisons"][0]["candidate"], "web");

    let compared: Value = serde_json::from_str(&stdout_of(&[
        "eval",
        "compare",
        &format!("{run_id}:no-tools"),
        &format!("{run_id}:web"),
        "--db",
        db_s,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(compared["comparisons"][0]["n_paired"], 100);
    assert_eq!(
        compared["comparisons"][0]["accuracy_delta"],
        shown["comparisons"][0]["accuracy_delta"]
    );

    // Cutoffs decide the exit code.
    let pass = run(&[
        "eval",
        "show",
        &run_id,
        "--db",
        db_s,
        "--cutoff",
        "web.accuracy>=0.5",
    ]);
    assert_eq!(pass.status.code(), Some(0));
    let fail = run(&[
        "eval",
        "show",
        &run_id,
        "--db",
        db_s,
        "--cutoff",
        "web.accuracy>=0.5",
        "--cutoff",
        "no-tools.accuracy>=0.99",
    ]);
    assert_eq!(fail.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&fail.stdout).contains("cutoff FAILED: no-tools.accuracy>=0.99")
    );
    let bad = run(&[
        "eval",
        "show",
        &run_id,
        "--db",
        db_s,
        "--cutoff",
        "nope.accuracy>=1",
    ]);
    assert!(!bad.status.success());
    let missing = run(&["eval", "show", "run_nope", "--db", db_s]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no eval run run_nope"));
}

#[test]
fn datasets_fetch_verifies_checksums_from_a_local_server() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();
    let listed = stdout_of(&["datasets", "list", "--data-dir", cache_s]);
    assert!(
        listed.contains("simpleqa") && listed.contains("not fetched"),
        "{listed}"
    );
    assert!(
        listed.contains("mini-qa") && listed.contains("built in"),
        "{listed}"
    );

    let csv = std::fs::read(shared("simpleqa/simple_qa_test_set.csv")).unwrap();
    let mut tampered = csv.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 0x20;
    let bad_url = serve(tampered, 1);
    let out = run(&[
        "datasets",
        "fetch",
        "simpleqa",
        "--url",
        &format!("{bad_url}/simple_qa_test_set.csv"),
        "--data-dir",
        cache_s,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(
        !cache.join("simpleqa/simple_qa_test_set.csv").exists(),
        "nothing is put in place"
    );
    assert!(
        match std::fs::read_dir(cache.join("simpleqa")) {
            Ok(mut d) => d.next().is_none(),
            Err(_) => true,
        },
        "no partial file is left either"
    );

    let url = serve(csv, 1);
    let fetched = stdout_of(&[
        "datasets",
        "fetch",
        "simpleqa",
        "--url",
        &format!("{url}/simple_qa_test_set.csv"),
        "--data-dir",
        cache_s,
    ]);
    assert!(
        fetched.contains("fetched from http://127.0.0.1:"),
        "{fetched}"
    );
    assert!(
        fetched.contains("grader_template.txt: skipped"),
        "{fetched}"
    );
    let listed: Value = serde_json::from_str(&stdout_of(&[
        "datasets",
        "list",
        "--data-dir",
        cache_s,
        "--json",
    ]))
    .unwrap();
    assert_eq!(listed[0]["name"], "simpleqa");
    assert_eq!(listed[0]["state"], "cached");
    // A second fetch finds the verified copy and downloads nothing (the server is gone).
    let again = stdout_of(&[
        "datasets",
        "fetch",
        "simpleqa",
        "--url",
        &format!("{url}/x"),
        "--data-dir",
        cache_s,
    ]);
    assert!(
        again.contains("simple_qa_test_set.csv: present, verified"),
        "{again}"
    );
    let unknown = run(&["datasets", "fetch", "nope", "--data-dir", cache_s]);
    assert!(!unknown.status.success());
}

#[test]
fn demo_compares_no_tools_with_web_search_on_the_twin() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("demo");
    let csv = shared("simpleqa/simple_qa_test_set.csv");
    let out = stdout_of(&[
        "demo",
        "--latency",
        "zero",
        "--limit",
        "60",
        "--knowledge",
        csv.to_str().unwrap(),
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--data-dir",
        dir.path().join("empty-cache").to_str().unwrap(),
    ]);
    assert!(out.contains("simulated upstream"), "{out}");
    assert!(
        out.contains("no-tools") && out.contains("web-search"),
        "{out}"
    );
    assert!(
        std::fs::read_to_string(out_dir.join("report.html"))
            .unwrap()
            .contains("<html")
    );
    assert!(out_dir.join("agentcap.duckdb").exists());
    let q = stdout_of(&[
        "query",
        "--admin",
        "http://127.0.0.1:1",
        "--db",
        out_dir.join("agentcap.duckdb").to_str().unwrap(),
        "--format",
        "json",
        "SELECT count(*) AS n FROM eval_items i JOIN conversations c ON c.id = i.conversation_id",
    ]);
    let n: Value = serde_json::from_str(&q).unwrap();
    assert_eq!(
        n[0]["n"], 120,
        "every demo item links to its recorded conversation"
    );

    // Without SimpleQA at hand, the demo falls back to the team-written set.
    let fallback_dir = dir.path().join("demo2");
    let out = stdout_of(&[
        "demo",
        "--latency",
        "zero",
        "--out-dir",
        fallback_dir.to_str().unwrap(),
        "--data-dir",
        dir.path().join("empty-cache").to_str().unwrap(),
    ]);
    assert!(out.contains("mini-qa"), "{out}");
    assert!(out.contains("simulated upstream"), "{out}");
}

#[test]
fn a_run_killed_with_sigkill_is_resumed_from_what_reached_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let csv = shared("simpleqa/simple_qa_test_set.csv");
    let (_slow, slow_url) = twin(dir.path(), "slow-twin", &["--ttft-ms", "100"]);
    let (_fast, fast_url) = twin(dir.path(), "fast-twin", &[]);
    let configs = dir.path().join("configs.toml");
    std::fs::write(&configs, CONFIGS).unwrap();
    let db = dir.path().join("evals.duckdb");
    let db_s = db.to_str().unwrap();
    let mut child = agentcap()
        .args([
            "eval",
            "run",
            "--dataset",
            csv.to_str().unwrap(),
            "--configs",
            configs.to_str().unwrap(),
            "--limit",
            "60",
            "--concurrency",
            "2",
            "--upstream",
            &slow_url,
            "--db",
            db_s,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // 240 requests of at least 100 ms, two at a time: at least 12 s of work.
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap();
    child.wait().unwrap();

    let list: Value =
        serde_json::from_str(&stdout_of(&["eval", "list", "--db", db_s, "--json"])).unwrap();
    assert_eq!(list[0]["status"], "running", "a crashed run never ended");
    let run_id = list[0]["run_id"].as_str().unwrap().to_string();
    let before = list[0]["finished_items"].as_u64().unwrap();
    assert!(before < 120, "{before}");

    let resumed = run(&[
        "eval",
        "resume",
        &run_id,
        "--db",
        db_s,
        "--upstream",
        &fast_url,
        "--format",
        "json",
    ]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let report: Value = serde_json::from_slice(
        &resumed.stdout[..resumed
            .stdout
            .iter()
            .rposition(|b| *b == b'}')
            .map_or(0, |i| i + 1)],
    )
    .unwrap();
    assert_eq!(report["run"]["complete"], true);
    assert_eq!(report["configs"][0]["summary"]["n"], 60);
    assert_eq!(report["configs"][1]["summary"]["n"], 60);
    let q = stdout_of(&[
        "query",
        "--admin",
        "http://127.0.0.1:1",
        "--db",
        db_s,
        "--format",
        "json",
        "SELECT count(*) AS n, count(DISTINCT (config, item_id)) AS pairs, count(c.id) AS linked FROM eval_items i LEFT JOIN conversations c ON c.id = i.conversation_id",
    ]);
    let n: Value = serde_json::from_str(&q).unwrap();
    assert_eq!(n[0]["n"], 120);
    assert_eq!(n[0]["pairs"], 120, "no item was written twice");
    assert_eq!(
        n[0]["linked"], 120,
        "the proxy's journal replay recorded the killed session's conversations too"
    );
}
