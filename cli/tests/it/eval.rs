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

/// Judge replies the twin has sent, read from its `--capture` file.
fn judge_replies(capture: &Path) -> usize {
    std::fs::read_to_string(capture)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(r#""operation":"chat_completion_v1_chat_completions_post""#))
        .count()
}

/// Waits until the twin has sent at least `n` judge replies; fails after two minutes.
fn until_judge_replies(capture: &Path, n: usize) {
    crate::poll_until(
        &format!("{n} judge replies from the twin"),
        Duration::from_secs(120),
        || judge_replies(capture) >= n,
    );
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
    let capture = dir.path().join("slow.capture.jsonl");
    let (_slow, slow_url) = twin(
        dir.path(),
        "slow-twin",
        &["--ttft-ms", "100", "--capture", capture.to_str().unwrap()],
    );
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
    // Two pairs run at once and a pair ends with its judge reply: once three replies were sent,
    // a third pair had started, so one had finished (and is written by the graceful stop). 400
    // requests of at least 100 ms, two at a time, are at least 20 s of work: the run goes on.
    until_judge_replies(&capture, 3);
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
    let list: Value =
        serde_json::from_str(&stdout_of(&["eval", "list", "--db", db_s, "--json"])).unwrap();
    let before = list[0]["finished_items"].as_u64().unwrap();
    assert!(before > 0 && before < 200, "{before}");

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
    let capture = dir.path().join("slow.capture.jsonl");
    let (_slow, slow_url) = twin(
        dir.path(),
        "slow-twin",
        &["--ttft-ms", "100", "--capture", capture.to_str().unwrap()],
    );
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
    // 240 requests of at least 100 ms, two at a time: at least 12 s of work. A pair ends with its
    // judge reply and two run at once, so after the 20th reply the first pairs had finished
    // at least eight pairs (1.6 s of twin latency) earlier; the results writer commits every
    // 100 ms.
    until_judge_replies(&capture, 20);
    child.kill().unwrap();
    child.wait().unwrap();

    let list: Value =
        serde_json::from_str(&stdout_of(&["eval", "list", "--db", db_s, "--json"])).unwrap();
    assert_eq!(list[0]["status"], "running", "a crashed run never ended");
    let run_id = list[0]["run_id"].as_str().unwrap().to_string();
    let before = list[0]["finished_items"].as_u64().unwrap();
    assert!(before > 0 && before < 120, "{before}");

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

/// A scripted judge in front of a twin, on 127.0.0.1:0: chat completions (the judge) get the
/// script's reply for the grader prompt's question, or a 500 while that question is `down`;
/// everything else is passed to the twin. Stops when dropped.
struct ScriptedJudge {
    url: String,
    state: std::sync::Arc<JudgeState>,
    _rt: tokio::runtime::Runtime,
}

struct JudgeState {
    script: std::collections::HashMap<String, String>,
    down: std::sync::Mutex<std::collections::HashSet<String>>,
}

type FrontBody = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;

fn front_response(status: u16, body: String) -> http::Response<FrontBody> {
    use http_body_util::BodyExt;
    let mut r = http::Response::new(
        http_body_util::Full::new(bytes::Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

impl ScriptedJudge {
    fn start(twin: &str, state: JudgeState) -> ScriptedJudge {
        use http_body_util::BodyExt;
        use hyper_util::client::legacy::Client;
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = std::sync::Arc::new(state);
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (twin, st) = (twin.to_string(), state.clone());
        rt.spawn(async move {
            let client = Client::builder(TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
            while let Ok((stream, _)) = listener.accept().await {
                let (client, twin, st) = (client.clone(), twin.clone(), st.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (client, twin, st) = (client.clone(), twin.clone(), st.clone());
                        async move {
                            let (mut parts, body) = req.into_parts();
                            let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
                                return Ok::<_, std::convert::Infallible>(front_response(502, "{}".into()));
                            };
                            if parts.uri.path() == "/v1/chat/completions" {
                                let req: Value = serde_json::from_slice(&body).unwrap_or_default();
                                let prompt = req.pointer("/messages/0/content").and_then(Value::as_str).unwrap_or("");
                                let question = agentcap_sim::chat::parse_grader_prompt(prompt)
                                    .map(|g| g.question.to_string())
                                    .unwrap_or_default();
                                if st.down.lock().unwrap().contains(&question) {
                                    return Ok(front_response(500, r#"{"object":"error","message":"scripted judge down","type":"server_error"}"#.into()));
                                }
                                let reply = st.script.get(&question).map_or("no script", String::as_str);
                                let v = serde_json::json!({
                                    "id": "scripted", "object": "chat.completion", "model": "judge", "created": 0,
                                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                                    "choices": [{"index": 0, "finish_reason": "stop",
                                                 "message": {"role": "assistant", "content": reply}}],
                                });
                                return Ok(front_response(200, v.to_string()));
                            }
                            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                            parts.uri = format!("{twin}{path}").parse().unwrap();
                            parts.headers.remove(http::header::HOST);
                            Ok(match client
                                .request(http::Request::from_parts(parts, http_body_util::Full::new(body)))
                                .await
                            {
                                Ok(resp) => resp.map(BodyExt::boxed),
                                Err(_) => front_response(502, "{}".into()),
                            })
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        ScriptedJudge {
            url,
            state,
            _rt: rt,
        }
    }
}

/// The scripted judge's replies by an item's position in the sample (cycled). Strictly read:
/// correct, incorrect, not attempted, correct (the template's word), unparseable. Read as
/// simple-evals does (first `A`, `B` or `C` anywhere, else `C`): A, B, C, C, C.
const SCRIPT: [&str; 5] = ["A", "B", "C", "CORRECT", "the grade is a"];

/// (correct, incorrect, not attempted, unparseable, judge errors) of a JSON report's first config.
fn counts(report: &Value) -> (u64, u64, u64, u64, u64) {
    let s = &report["configs"][0]["summary"];
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k} in {s}"));
    (
        n("correct"),
        n("incorrect"),
        n("not_attempted"),
        n("unparseable"),
        n("judge_errors"),
    )
}

/// The JSON report a command printed (the last `}` ends it).
fn json_report(stdout: &[u8]) -> Value {
    let end = stdout.iter().rposition(|b| *b == b'}').map_or(0, |i| i + 1);
    serde_json::from_slice(&stdout[..end])
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(stdout)))
}

#[test]
fn simple_evals_compat_is_stored_with_the_run_and_read_again_by_resume() {
    let dir = tempfile::tempdir().unwrap();
    let csv = shared("simpleqa/simple_qa_test_set.csv");
    let items = agentcap_datasets::load_path(&csv).unwrap();
    let n = 10;
    let sample = agentcap_datasets::sample::simple_evals_sample(items.len(), n, 0);
    let question = |pos: usize| items[sample[pos]].question.clone();
    let script = (0..n)
        .map(|p| (question(p), SCRIPT[p % 5].to_string()))
        .collect();
    // The judge is down, at first, for the two replies the modes read differently.
    let down = (0..n).filter(|p| p % 5 >= 3).map(question).collect();
    let (_twin, twin_url) = twin(dir.path(), "twin", &[]);
    let judge = ScriptedJudge::start(
        &twin_url,
        JudgeState {
            script,
            down: std::sync::Mutex::new(down),
        },
    );
    let configs = dir.path().join("configs.toml");
    std::fs::write(
        &configs,
        "[[config]]\nname = \"closed\"\nmodel = \"m\"\nmode = \"sync\"\n[runner]\nmax_attempts = 1\n",
    )
    .unwrap();
    let eval_run = |db: &Path, compat: bool| -> (String, Value) {
        let mut args = vec![
            "eval",
            "run",
            "--dataset",
            csv.to_str().unwrap(),
            "--configs",
            configs.to_str().unwrap(),
            "--limit",
            "10",
            "--upstream",
            &judge.url,
            "--db",
            db.to_str().unwrap(),
            "--format",
            "json",
        ];
        if compat {
            args.push("--simple-evals-compat");
        }
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        let run_id = stderr
            .lines()
            .find_map(|l| l.strip_prefix("run ")?.split(':').next())
            .unwrap_or_else(|| panic!("no run line in\n{stderr}"))
            .to_string();
        (run_id, json_report(&out.stdout))
    };

    // Compat: the first run keeps 4 answers ungraded (judge errors); the resume grades them, in the
    // mode stored with the run. Read strictly they would be 2 correct and 2 unparseable.
    let db = dir.path().join("compat.duckdb");
    let (run_id, first) = eval_run(&db, true);
    assert_eq!(counts(&first), (2, 2, 2, 0, 4));
    judge.state.down.lock().unwrap().clear();
    let resumed = run(&[
        "eval",
        "resume",
        &run_id,
        "--retry-errors",
        "--db",
        db.to_str().unwrap(),
        "--upstream",
        &judge.url,
        "--format",
        "json",
    ]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(counts(&json_report(&resumed.stdout)), (2, 2, 6, 0, 0));
    let shown = json_report(
        &run(&[
            "eval",
            "show",
            &run_id,
            "--db",
            db.to_str().unwrap(),
            "--format",
            "json",
        ])
        .stdout,
    );
    assert_eq!(counts(&shown), (2, 2, 6, 0, 0));
    let q = stdout_of(&[
        "query",
        "--admin",
        "http://127.0.0.1:1",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
        "SELECT r.judge_parse, count(*) AS n, count(*) FILTER (WHERE g.judge_reply = 'CORRECT' AND g.outcome = 'not_attempted') AS quirk FROM eval_runs r JOIN eval_grades g USING (run_id) GROUP BY ALL",
    ]);
    let q: Value = serde_json::from_str(&q).unwrap();
    assert_eq!(q[0]["judge_parse"], "simple-evals-compat");
    assert_eq!(
        (q[0]["n"].as_u64(), q[0]["quirk"].as_u64()),
        (Some(10), Some(2))
    );

    // Strict (the default), everything up: the reply that is no grade is reported as unparseable.
    let db = dir.path().join("strict.duckdb");
    let (_, strict) = eval_run(&db, false);
    assert_eq!(counts(&strict), (4, 2, 2, 2, 0));
}

/// One GET over a fresh connection: the status and the whole answer.
fn get(base: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).expect("the UI listens");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[test]
fn eval_run_with_ui_serves_the_web_ui_while_the_run_goes() {
    let dir = tempfile::tempdir().unwrap();
    // Slow answers (300 ms each, one item at a time): the run is still going while the test reads the UI.
    let (_twin, url) = twin(dir.path(), "ui-twin", &["--ttft-ms", "300"]);
    let configs = dir.path().join("configs.toml");
    std::fs::write(&configs, CONFIGS).unwrap();
    let db = dir.path().join("ui.duckdb");
    let mut child = agentcap()
        .args([
            "eval",
            "run",
            "--dataset",
            "mini-qa",
            "--configs",
            configs.to_str().unwrap(),
            "--concurrency",
            "1",
            "--upstream",
            &url,
            "--db",
            db.to_str().unwrap(),
            "--no-progress",
            "--ui",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let ui = loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        assert!(n > 0, "eval run ended without printing the UI's URL");
        if let Some(rest) = line.split("web UI on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep reading stderr so the child never blocks on a full pipe.
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        rest
    });
    let (status, page) = get(&ui, "/");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("content-security-policy"), "{page}");
    // The run appears on the live recording's run list while it goes.
    crate::poll_until("the run on /runs", Duration::from_secs(60), || {
        get(&ui, "/runs").1.contains("href=\"/runs/run_")
    });
    let status = child.wait().unwrap();
    let rest = drain.join().unwrap();
    assert!(status.success(), "{rest}");
}

#[test]
fn a_recorded_set_run_killed_with_sigkill_resumes_only_the_missing_items() {
    let dir = tempfile::tempdir().unwrap();
    let csv = shared("simpleqa/simple_qa_test_set.csv");
    let (_fast, fast_url) = twin(dir.path(), "fast-twin", &[]);
    let db = dir.path().join("prod.duckdb");
    let db_s = db.to_str().unwrap();
    // Production traffic: 30 conversations with config A, recorded by the embedded proxy.
    let a = dir.path().join("a.toml");
    std::fs::write(
        &a,
        "[[config]]\nname = \"A\"\nmodel = \"mistral-medium-latest\"\n",
    )
    .unwrap();
    let recorded = run(&[
        "eval",
        "run",
        "--dataset",
        csv.to_str().unwrap(),
        "--configs",
        a.to_str().unwrap(),
        "--limit",
        "30",
        "--grader",
        "exact",
        "--upstream",
        &fast_url,
        "--db",
        db_s,
    ]);
    assert!(recorded.status.success());
    let set = dir.path().join("set.jsonl");
    let out = stdout_of(&[
        "datasets",
        "from-recording",
        "--db",
        db_s,
        "--turns",
        "first",
        "--out",
        set.to_str().unwrap(),
    ]);
    assert!(out.starts_with("30 items from 30 conversations"), "{out}");

    let capture = dir.path().join("slow.capture.jsonl");
    let (_slow, slow_url) = twin(
        dir.path(),
        "slow-twin",
        &["--ttft-ms", "100", "--capture", capture.to_str().unwrap()],
    );
    let configs = dir.path().join("configs.toml");
    std::fs::write(&configs, CONFIGS).unwrap();
    let dataset = format!("recorded:{}", set.display());
    let mut child = agentcap()
        .args([
            "eval",
            "run",
            "--dataset",
            &dataset,
            "--configs",
            configs.to_str().unwrap(),
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
    // 90 pairs (recorded, no-tools, web), each judged once by agreement, the candidates' answers
    // taking at least 100 ms each: the 20th judge reply comes well before the end.
    until_judge_replies(&capture, 20);
    child.kill().unwrap();
    child.wait().unwrap();

    let list: Value =
        serde_json::from_str(&stdout_of(&["eval", "list", "--db", db_s, "--json"])).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["dataset"]
                .as_str()
                .is_some_and(|d| d.starts_with("recorded:"))
        })
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(entry["status"], "running", "a crashed run never ended");
    let run_id = entry["run_id"].as_str().unwrap().to_string();
    let before = entry["finished_items"].as_u64().unwrap();
    assert!(before > 0 && before < 90, "{before}");

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
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    let missing = 90 - before;
    assert!(
        stderr.contains(&format!(
            "{missing} of {missing} items finished this session"
        )),
        "only the {missing} missing pairs run: {stderr}"
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
    assert_eq!(report["baseline"], "recorded");
    for c in report["configs"].as_array().unwrap() {
        assert_eq!(c["summary"]["n"], 30, "{}", c["name"]);
    }
    assert_eq!(report["versus_recorded"].as_array().unwrap().len(), 2);
    let q = stdout_of(&[
        "query",
        "--admin",
        "http://127.0.0.1:1",
        "--db",
        db_s,
        "--format",
        "json",
        "SELECT count(*) AS n, count(DISTINCT (config, item_id)) AS pairs FROM eval_items \
         WHERE run_id IN (SELECT run_id FROM eval_runs WHERE dataset LIKE 'recorded:%')",
    ]);
    let n: Value = serde_json::from_str(&q).unwrap();
    assert_eq!(n[0]["n"], 90);
    assert_eq!(n[0]["pairs"], 90, "no item was written twice");
}
