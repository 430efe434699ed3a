//! End-to-end tests of the `agentcap` binary: a twin and a recording proxy as subprocesses on 127.0.0.1:0,
//! then `agentcap query` and `agentcap conversations` through the admin listener and, once the proxy has
//! stopped, straight from the DuckDB file.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

mod bench;
mod config;
mod connections;
mod durability;
mod eval;
mod memory;
mod prometheus;
mod replay;
mod shutdown;
mod tidy;

const BIN: &str = env!("CARGO_BIN_EXE_agentcap");

/// Polls `cond` until it holds, failing with `what` after `bound`: the one way these tests wait for
/// another process (never a timing assertion).
fn poll_until(what: &str, bound: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is killed and reaped when dropped, whatever happened.
struct Kid {
    name: &'static str,
    child: Child,
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Kid {
    /// Starts `agentcap ARGS`, stderr into `err_file`, and returns it with its first stdout line.
    fn start(name: &'static str, args: &[&str], err_file: &Path) -> (Kid, String) {
        let mut cmd = agentcap();
        cmd.args(args);
        Kid::start_cmd(name, cmd, err_file)
    }

    /// Starts `cmd` (stdin piped, stderr into `err_file`) and returns it with its first stdout line.
    fn start_cmd(name: &'static str, mut cmd: Command, err_file: &Path) -> (Kid, String) {
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(err_file).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let mut kid = Kid { name, child };
        let stdout = kid.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_default();
        assert!(
            !line.is_empty(),
            "{} printed no start line; stderr:\n{}",
            kid.name,
            std::fs::read_to_string(err_file).unwrap_or_default()
        );
        (kid, line.trim().to_string())
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `agentcap` with no read-side settings inherited from the environment.
fn agentcap() -> Command {
    let mut c = Command::new(BIN);
    for var in [
        "AGENTCAP_ADMIN",
        "AGENTCAP_DB",
        "AGENTCAP_LOG",
        "AGENTCAP_PROXY_CONFIG",
        "AGENTCAP_PROXY_TOKEN",
        "AGENTCAP_UPSTREAM",
    ] {
        c.env_remove(var);
    }
    c
}

fn run<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S]) -> Output {
    agentcap()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("agentcap runs")
}

fn stdout_of<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "agentcap {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `between(line, "a", "b")`: the text after `a` up to the next `b`.
fn between<'a>(line: &'a str, start: &str, end: &str) -> &'a str {
    let from = line
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in {line:?}"))
        + start.len();
    let len = line[from..]
        .find(end)
        .unwrap_or_else(|| panic!("{end:?} not after {start:?} in {line:?}"));
    &line[from..from + len]
}

struct Http {
    rt: tokio::runtime::Runtime,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Http {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = {
            let _guard = rt.enter();
            Client::builder(TokioExecutor::new()).build_http()
        };
        Self { rt, client }
    }

    fn get(&self, url: &str) -> Value {
        self.rt.block_on(async {
            let resp = self
                .client
                .get(url.parse().unwrap())
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice(&bytes).unwrap()
        })
    }

    fn post(&self, url: &str, body: Value) -> Value {
        self.rt.block_on(async {
            let req = http::Request::post(url)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap();
            let resp = self
                .client
                .request(req)
                .await
                .unwrap_or_else(|e| panic!("POST {url}: {e}"));
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            assert!(
                status.is_success(),
                "POST {url}: {status} {}",
                String::from_utf8_lossy(&bytes)
            );
            serde_json::from_slice(&bytes).unwrap()
        })
    }
}

#[test]
fn query_and_conversations_through_the_admin_then_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.duckdb");
    let db = db.to_str().unwrap();
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
        &dir.path().join("twin.err"),
    );
    let twin = line.rsplit(' ').next().unwrap().to_string();
    assert!(twin.starts_with("http://127.0.0.1:"), "{line}");
    let (mut proxy, line) = Kid::start(
        "proxy",
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--upstream",
            &twin,
            "--db",
            db,
            "--admin-query-timeout-ms",
            "3600000",
        ],
        &dir.path().join("proxy.err"),
    );
    let base = format!("http://{}", between(&line, "listening on http://", " ->"));
    let admin = between(&line, "admin ", ")").to_string();
    assert!(admin.starts_with("http://127.0.0.1:"), "{line}");

    // Traffic: an agent, a conversation of two turns, and a branch from its first answer.
    let h = Http::new();
    let agent = h.post(&format!("{base}/v1/agents"), json!({"model": "mistral-medium-latest", "name": "Searcher", "tools": [{"type": "web_search"}]}));
    let start = h.post(
        &format!("{base}/v1/conversations"),
        json!({"agent_id": agent["id"], "inputs": "Who won, in the end?"}),
    );
    let conv = start["conversation_id"].as_str().unwrap().to_string();
    let first_answer = start["outputs"][1]["id"].as_str().unwrap().to_string();
    h.post(
        &format!("{base}/v1/conversations/{conv}"),
        json!({"inputs": "And the year before?"}),
    );
    let branch = h.post(
        &format!("{base}/v1/conversations/{conv}/restart"),
        json!({"from_entry_id": first_answer, "inputs": "Who came second?"}),
    );
    let branch = branch["conversation_id"].as_str().unwrap().to_string();
    h.post(&format!("{admin}/flush"), json!({}));

    let q = "SELECT operation, status, 'a,\"b\"' AS odd FROM exchanges ORDER BY started_at";
    // Every read goes to the admin listener first.
    let a = |parts: &[&str]| -> Vec<String> {
        parts
            .iter()
            .chain(&["--admin", admin.as_str(), "--db", db])
            .map(|s| s.to_string())
            .collect()
    };

    // query: a table, JSON objects, CSV.
    let table = stdout_of(&a(&["query", q]));
    for want in [
        "operation",
        "agents.create",
        "conversations.start",
        "conversations.append",
        "conversations.restart",
        "(4 rows)",
        "│",
    ] {
        assert!(table.contains(want), "{want:?} not in\n{table}");
    }
    let j: Value = serde_json::from_str(&stdout_of(&a(&["query", q, "--format", "json"]))).unwrap();
    let ops: Vec<&str> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "agents.create",
            "conversations.start",
            "conversations.append",
            "conversations.restart"
        ]
    );
    assert_eq!(j[0]["status"], 200);
    let csv = stdout_of(&a(&["query", q, "--format", "csv"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert_eq!(lines[0], "operation,status,odd");
    assert_eq!(lines[1], "agents.create,200,\"a,\"\"b\"\"\"");

    // Writes are refused, clearly.
    let out = run(&a(&["query", "DELETE FROM exchanges"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DELETE statements are not allowed"), "{err}");
    // Other local files are out of the queries' reach.
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "a,b\n1,2\n").unwrap();
    let read_other = format!("SELECT * FROM read_csv('{}')", other.display());
    let out = run(&a(&["query", &read_other]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("queries read the recording only"), "{err}");

    // conversations list / show.
    let list = stdout_of(&a(&["conversations", "list"]));
    // The twin announces itself in a response header: every conversation is labelled.
    for want in [
        conv.as_str(),
        branch.as_str(),
        "simulated upstream",
        "(2 conversations, all from a simulated upstream)",
    ] {
        assert!(list.contains(want), "{want:?} not in\n{list}");
    }
    let lj: Value = serde_json::from_str(&stdout_of(&a(&[
        "conversations",
        "list",
        "--format",
        "json",
        "--limit",
        "1",
    ])))
    .unwrap();
    assert_eq!(lj.as_array().unwrap().len(), 1);
    assert_eq!(lj[0]["id"], branch.as_str(), "newest first");
    assert_eq!(lj[0]["parent_conversation_id"], conv.as_str());
    assert_eq!(lj[0]["simulated_upstream"], true);
    let tree = stdout_of(&a(&["conversations", "show", &conv]));
    assert!(
        tree.starts_with(&format!("conversation {conv} · (simulated upstream) · ")),
        "{tree}"
    );
    for want in [
        format!("[{first_answer}]"),
        format!("⑂ branch {branch}"),
        "turn 2".to_string(),
        "web_search(".to_string(),
    ] {
        assert!(tree.contains(&want), "{want:?} not in\n{tree}");
    }
    let tj: Value = serde_json::from_str(&stdout_of(&a(&[
        "conversations",
        "show",
        &conv,
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(tj["conversation"]["id"], conv.as_str());
    assert_eq!(
        tj["turns"][0]["entries"][2]["branches"][0]["conversation"]["id"],
        branch.as_str()
    );
    let out = run(&a(&["conversations", "show", "conv_nope"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no conversation conv_nope"));

    // --db names the file that answers, even while a proxy recording into another file listens at
    // --admin: an empty recording answers 0, not the proxy's 4.
    let other_db = dir.path().join("other.duckdb");
    agentcap_proxy::recorder::Recorder::open(agentcap_proxy::recorder::RecorderConfig::new(
        &other_db,
    ))
    .unwrap()
    .shutdown()
    .unwrap();
    let other_db = other_db.to_str().unwrap();
    let n: Value = serde_json::from_str(&stdout_of(&[
        "query",
        "SELECT count(*) AS n FROM exchanges",
        "--format",
        "json",
        "--admin",
        admin.as_str(),
        "--db",
        other_db,
    ]))
    .unwrap();
    assert_eq!(n, json!([{"n": 0}]), "answered from {other_db}");
    // Without --db, the answer says which database answered.
    let out = run(&["query", "SELECT 1", "--admin", admin.as_str()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("answered from db ") && err.contains("a.duckdb"),
        "{err}"
    );

    // A 10^12-row cross join is running when SIGTERM comes: the proxy still exits.
    let mut long = agentcap()
        .args([
            "query",
            "SELECT count(*) FROM range(1000000) a, range(1000000) b",
            "--admin",
            admin.as_str(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll_until("the cross join to start", Duration::from_secs(120), || {
        h.get(&format!("{admin}/health"))["queries_running"] == json!(1)
    });

    // Stop the proxy: it exits 0, and the file is then read directly.
    let status = proxy.terminate();
    assert!(
        status.success(),
        "proxy exit: {status}; stderr:\n{}",
        std::fs::read_to_string(dir.path().join("proxy.err")).unwrap_or_default()
    );
    let nobody = ["--admin", "http://127.0.0.1:1", "--db", db];
    let n: Value = serde_json::from_str(&stdout_of(
        &[
            &[
                "query",
                "SELECT count(*) AS n FROM exchanges",
                "--format",
                "json",
            ][..],
            &nobody[..],
        ]
        .concat(),
    ))
    .unwrap();
    assert_eq!(n, json!([{"n": 4}]));
    let from_file =
        stdout_of(&[&["conversations", "show", conv.as_str()][..], &nobody[..]].concat());
    assert_eq!(from_file, tree, "the same tree from the file");
    let out = run(&[&["query", "DROP TABLE exchanges"][..], &nobody[..]].concat());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DROP statements are not allowed"));
    let out = run(&[&["query", read_other.as_str()][..], &nobody[..]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("queries read the recording only"), "{err}");
    let missing = dir.path().join("none.duckdb");
    let out = run(&[
        "query",
        "SELECT 1",
        "--admin",
        "http://127.0.0.1:1",
        "--db",
        missing.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no recording at"));
    let status = long.wait().unwrap();
    assert!(!status.success(), "the interrupted query failed");
}

#[test]
fn the_proxy_stops_gracefully_when_its_stdin_closes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.duckdb");
    let err = dir.path().join("proxy.err");
    let (mut proxy, line) = Kid::start(
        "proxy",
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:1",
            "--db",
            db.to_str().unwrap(),
            "--exit-on-stdin-close",
        ],
        &err,
    );
    assert!(line.starts_with("agentcap proxy listening on "), "{line}");
    drop(proxy.child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy did not stop when its stdin closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(status.success(), "proxy exit: {status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("agentcap proxy stopped: "),
        "a graceful stop reports its stats; stderr:\n{stderr}"
    );
}

#[test]
fn help_mentions_the_flags() {
    let cases: [(&[&str], &[&str]); 5] = [
        (&["--help"], &["query", "conversations", "proxy", "sim"]),
        (
            &["query", "--help"],
            &[
                "--format",
                "--admin",
                "--db",
                "AGENTCAP_ADMIN",
                "AGENTCAP_DB",
            ],
        ),
        (&["conversations", "--help"], &["list", "show"]),
        (
            &["conversations", "list", "--help"],
            &["--limit", "--format", "--admin", "--db"],
        ),
        (
            &["conversations", "show", "--help"],
            &["--format", "--admin", "--db", "tree"],
        ),
    ];
    for (args, wants) in cases {
        let text = stdout_of(args);
        for want in wants {
            assert!(
                text.contains(want),
                "agentcap {args:?}: {want:?} not in\n{text}"
            );
        }
    }
}
