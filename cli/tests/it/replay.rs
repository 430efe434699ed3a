//! `agentcap replay` (cassette mode) against a recording written row by row: matching by method, path
//! and canonical body, recorded order for identical requests, `--ignore-field`, the selections, the
//! timing modes (their behaviour, never durations), the miss error and the refusal of an exchange the
//! capture cap truncated.

use std::path::Path;
use std::time::Duration;

use agentcap_proxy::recorder::{DbAccess, open_db, schema};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{Kid, between};

const STARTED: &str = r#"{"type":"conversation.response.started","conversation_id":"conv_a","created_at":"2026-01-01T00:00:00Z"}"#;
const DELTA: &str =
    r#"{"type":"message.output.delta","id":"msg_1","content":"Hi","output_index":0}"#;
const DONE: &str = r#"{"type":"conversation.response.done","usage":{"total_tokens":3}}"#;
/// A recorded gap no test waits for: `--timing recorded` must hold the second event back.
const HOUR_US: i64 = 3_600_000_000;

fn sse(event: &str, data: &str) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

fn stream_body() -> String {
    [
        sse("conversation.response.started", STARTED),
        sse("message.output.delta", DELTA),
        sse("conversation.response.done", DONE),
    ]
    .concat()
}

/// One `exchanges` row (the columns the replay reads).
struct Row<'a> {
    id: &'a str,
    second: i64,
    method: &'a str,
    path: &'a str,
    request: Option<&'a str>,
    status: i32,
    headers: &'a str,
    response: Option<&'a str>,
    stream: bool,
    truncated: bool,
    session: &'a str,
}

fn insert(conn: &duckdb::Connection, r: &Row<'_>) {
    let bytes = if r.stream {
        stream_body().len() as i64
    } else {
        r.response.map_or(0, |b| b.len() as i64)
    };
    conn.execute(
        "INSERT INTO exchanges (id, started_at, method, path, request_body, status, response_headers, \
         response_body, response_bytes, is_stream, response_truncated, response_body_raw, \
         response_headers_us, outcome, session) \
         VALUES (?, to_timestamp(1767225600 + CAST(? AS DOUBLE)), ?, ?, ?, ?, ?, ?, ?, ?, ?, \
         CASE WHEN ? THEN 'cut' END, 0, 'complete', ?)",
        (
            r.id,
            r.second,
            r.method,
            r.path,
            r.request,
            r.status,
            r.headers,
            r.response,
            bytes,
            r.stream,
            r.truncated,
            r.truncated,
            r.session,
        ),
    )
    .unwrap();
}

/// Writes the recording every test replays.
fn cassette(path: &Path) {
    let conn = open_db(Some(path), DbAccess::ReadWrite).unwrap();
    schema::migrate(&conn).unwrap();
    let json = r#"{"content-type":"application/json","x-request-id":"req-1"}"#;
    let rows = [
        Row {
            id: "x1",
            second: 1,
            method: "POST",
            path: "/v1/conversations",
            request: Some(r#"{"model":"m","inputs":"hi","metadata":{"ts":1}}"#),
            status: 200,
            headers: json,
            response: Some(r#"{"conversation_id":"conv_a","n":1}"#),
            stream: false,
            truncated: false,
            session: "main",
        },
        Row {
            id: "x2",
            second: 2,
            method: "POST",
            path: "/v1/conversations",
            request: Some(r#"{"model":"m","inputs":"hi","metadata":{"ts":2}}"#),
            status: 200,
            headers: r#"{"content-type":"application/json","x-request-id":"req-2"}"#,
            response: Some(r#"{"conversation_id":"conv_a","n":2}"#),
            stream: false,
            truncated: false,
            session: "main",
        },
        Row {
            id: "x3",
            second: 3,
            method: "GET",
            path: "/v1/conversations/conv_gone",
            request: None,
            status: 404,
            headers: json,
            response: Some(
                r#"{"object":"error","message":"Conversation not found","type":"invalid_request_error","param":null,"code":"3001"}"#,
            ),
            stream: false,
            truncated: false,
            session: "main",
        },
        Row {
            id: "x4",
            second: 4,
            method: "POST",
            path: "/v1/conversations/conv_a",
            request: Some(r#"{"inputs":"stream please","stream":true}"#),
            status: 200,
            headers: r#"{"content-type":"text/event-stream","x-request-id":"req-4"}"#,
            response: None,
            stream: true,
            truncated: false,
            session: "main",
        },
        Row {
            id: "x5",
            second: 5,
            method: "POST",
            path: "/v1/conversations",
            request: Some(r#"{"model":"m","inputs":"big"}"#),
            status: 200,
            headers: json,
            response: None,
            stream: false,
            truncated: true,
            session: "main",
        },
        Row {
            id: "x6",
            second: 6,
            method: "GET",
            path: "/v1/agents",
            request: None,
            status: 200,
            headers: json,
            response: Some("[]"),
            stream: false,
            truncated: false,
            session: "other",
        },
    ];
    for r in &rows {
        insert(&conn, r);
    }
    let events = [
        ("conversation.response.started", STARTED, 1_000),
        ("message.output.delta", DELTA, HOUR_US),
        ("conversation.response.done", DONE, HOUR_US + 100),
    ];
    for (seq, (ty, data, offset)) in events.into_iter().enumerate() {
        conn.execute(
            "INSERT INTO sse_events (exchange_id, seq, event_type, data, offset_us, size, data_truncated) \
             VALUES ('x4', ?, ?, ?, ?, ?, false)",
            (seq as i32, ty, data, offset, sse(ty, data).len() as i32),
        )
        .unwrap();
    }
}

/// A running `agentcap replay` and a client for it.
struct Replay {
    _kid: Kid,
    base: String,
    rt: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
    line: String,
}

/// A response: status, a header's value, body.
struct Answer {
    status: u16,
    request_id: Option<String>,
    content_type: Option<String>,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Replay {
    fn start(dir: &Path, db: &Path, extra: &[&str]) -> Replay {
        let mut args = vec![
            "replay",
            "--db",
            db.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--exit-on-stdin-close",
        ];
        args.extend_from_slice(extra);
        let (kid, line) = Kid::start(
            "replay",
            &args,
            &dir.join(format!("replay-{}.err", extra.join("_").replace('/', "~"))),
        );
        let base = format!("http://{}", between(&line, "listening on http://", " (db"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = {
            let _guard = rt.enter();
            Client::builder(TokioExecutor::new()).build_http()
        };
        Replay {
            _kid: kid,
            base,
            rt,
            client,
            line,
        }
    }

    fn request(&self, method: &str, path: &str, body: &str) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    }

    fn call(&self, method: &str, path: &str, body: &str) -> Answer {
        self.rt.block_on(async {
            let resp = self
                .client
                .request(self.request(method, path, body))
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (status, request_id, content_type) = (
                resp.status().as_u16(),
                header("x-request-id"),
                header("content-type"),
            );
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            Answer {
                status,
                request_id,
                content_type,
                body,
            }
        })
    }

    /// Reads a stream frame by frame: the bytes of the frames that arrive before `wait` passes
    /// without a new one, and whether the body ended.
    fn read_stream(&self, path: &str, body: &str, wait: Duration) -> (String, bool) {
        self.rt.block_on(async {
            let resp = self
                .client
                .request(self.request("POST", path, body))
                .await
                .unwrap();
            let mut body = resp.into_body();
            let mut got = Vec::new();
            loop {
                match tokio::time::timeout(wait, body.frame()).await {
                    Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
                    Ok(None) => return (String::from_utf8_lossy(&got).into_owned(), true),
                    Ok(Some(f)) => {
                        if let Ok(d) = f.unwrap().into_data() {
                            got.extend_from_slice(&d);
                        }
                    }
                }
            }
        })
    }
}

fn recording() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cassette.duckdb");
    cassette(&db);
    (dir, db)
}

const STREAM_REQ: &str = r#"{"stream":true,"inputs":"stream please"}"#;

#[test]
fn replay_matches_canonical_bodies_in_recorded_order_and_replays_status_and_headers() {
    let (dir, db) = recording();
    let r = Replay::start(
        dir.path(),
        &db,
        &["--timing", "fast", "--ignore-field", "/metadata/ts"],
    );
    assert!(
        r.line
            .contains("6 exchanges, 1 streamed, 1 not replayable, 0 not byte-exact"),
        "{}",
        r.line
    );
    // Key order, whitespace and the ignored field do not matter; identical requests get the
    // recorded answers in order, then the last one repeats.
    let body = "{ \"metadata\": {\"ts\": 99}, \"inputs\": \"hi\",\n \"model\": \"m\" }";
    let first = r.call("POST", "/v1/conversations", body);
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), r#"{"conversation_id":"conv_a","n":1}"#);
    assert_eq!(first.request_id.as_deref(), Some("req-1"));
    assert_eq!(first.content_type.as_deref(), Some("application/json"));
    let second = r.call("POST", "/v1/conversations", body);
    assert_eq!(
        (second.json()["n"].clone(), second.request_id),
        (Value::from(2), Some("req-2".into()))
    );
    let third = r.call("POST", "/v1/conversations", body);
    assert_eq!(third.json()["n"], 2, "the last recorded answer repeats");

    // Errors are replayed with their status and body.
    let gone = r.call("GET", "/v1/conversations/conv_gone", "");
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["code"], "3001");

    // A stream comes back event by event, byte-identical to the recorded events.
    let stream = r.call("POST", "/v1/conversations/conv_a", STREAM_REQ);
    assert_eq!(stream.content_type.as_deref(), Some("text/event-stream"));
    assert_eq!(stream.text(), stream_body());
    assert_eq!(stream.request_id.as_deref(), Some("req-4"));

    // An exchange whose response the capture cap truncated is refused, not served cut.
    let big = r.call(
        "POST",
        "/v1/conversations",
        r#"{"inputs":"big","model":"m"}"#,
    );
    assert_eq!(big.status, 501, "{}", big.text());
    let err = big.json();
    assert_eq!(
        (err["code"].as_str(), err["exchange_id"].as_str()),
        (Some("replay_unfaithful"), Some("x5"))
    );
    assert!(
        err["message"].as_str().unwrap().contains("capture cap"),
        "{err}"
    );
}

#[test]
fn replay_miss_names_the_closest_request_and_the_first_differing_path() {
    let (dir, db) = recording();
    let r = Replay::start(dir.path(), &db, &["--timing", "fast"]);
    let miss = r.call(
        "POST",
        "/v1/conversations",
        r#"{"model":"m","inputs":"hi","metadata":{"ts":7}}"#,
    );
    assert_eq!(miss.status, 501, "{}", miss.text());
    let err = miss.json();
    assert_eq!(err["object"], "error");
    assert_eq!(err["type"], "replay_error");
    assert_eq!(err["code"], "replay_miss");
    assert_eq!(
        err["differing_path"], "/metadata/ts",
        "without --ignore-field the value counts: {err}"
    );
    assert_eq!(err["closest_exchange_id"], "x1");
    assert_eq!(err["closest_request"], "POST /v1/conversations");
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("\"/metadata/ts\": recorded 1, got 7"),
        "{message}"
    );

    let other_path = r.call("GET", "/v1/conversations/conv_nope", "");
    let err = other_path.json();
    assert_eq!(err["code"], "replay_miss");
    assert_eq!(err["closest_request"], "GET /v1/conversations/conv_gone");
    assert!(err.get("differing_path").is_none(), "{err}");
}

#[test]
fn replay_serves_only_the_selected_exchanges() {
    let (dir, db) = recording();
    let r = Replay::start(dir.path(), &db, &["--timing", "fast", "--session", "other"]);
    assert_eq!(r.call("GET", "/v1/agents", "").text(), "[]");
    assert_eq!(r.call("GET", "/v1/conversations/conv_gone", "").status, 501);
    drop(r);
    let r = Replay::start(
        dir.path(),
        &db,
        &["--timing", "fast", "--where", "method = 'GET'"],
    );
    assert!(r.line.contains("2 exchanges"), "{}", r.line);
    assert_eq!(r.call("GET", "/v1/conversations/conv_gone", "").status, 404);
    assert_eq!(
        r.call("POST", "/v1/conversations/conv_a", STREAM_REQ)
            .status,
        501
    );
    drop(r);
    // The predicate runs as a read-only query: a statement that writes is refused at start.
    let out = super::run(&[
        "replay",
        "--db",
        db.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--where",
        "true; DELETE FROM exchanges",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("selection"), "{err}");
}

#[test]
fn replay_timing_modes_hold_or_skip_the_recorded_gaps() {
    let (dir, db) = recording();
    // Recorded: the first event comes, the second is an hour away (checked only for not arriving
    // early; nothing here measures a duration).
    let r = Replay::start(dir.path(), &db, &["--timing", "recorded"]);
    let (got, ended) = r.read_stream(
        "/v1/conversations/conv_a",
        STREAM_REQ,
        Duration::from_millis(500),
    );
    assert_eq!(got, sse("conversation.response.started", STARTED));
    assert!(!ended, "the recorded hour-long gap was not honoured");
    drop(r);
    // Scaled down by 10^9 and fast: the whole stream, in order.
    for timing in ["scale:0.000000001", "fast"] {
        let r = Replay::start(dir.path(), &db, &["--timing", timing]);
        let (got, ended) = r.read_stream(
            "/v1/conversations/conv_a",
            STREAM_REQ,
            Duration::from_secs(60),
        );
        assert!(ended, "{timing}: the stream did not end");
        assert_eq!(got, stream_body(), "{timing}");
    }
}

#[test]
fn replay_forwards_a_miss_upstream_and_records_it_into_the_cassette() {
    let (dir, db) = recording();
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
    let new_turn = r#"{"model":"mistral-medium-latest","inputs":"A question the cassette lacks."}"#;
    let mut r = Replay::start(
        dir.path(),
        &db,
        &["--timing", "fast", "--on-miss", "upstream", &twin],
    );
    // Recorded exchanges are still served from the cassette.
    assert_eq!(r.call("GET", "/v1/conversations/conv_gone", "").status, 404);
    let forwarded = r.call("POST", "/v1/conversations", new_turn);
    assert_eq!(forwarded.status, 200, "{}", forwarded.text());
    let conversation = forwarded.json()["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(r._kid.terminate().success());
    drop(r);

    // The forwarded exchange was recorded into the file (tagged) and a new replay serves it.
    let tags = super::stdout_of(&[
        "query",
        "--db",
        db.to_str().unwrap(),
        "--admin",
        "http://127.0.0.1:9",
        "--format",
        "json",
        "SELECT tags FROM exchanges WHERE conversation_id IS NOT NULL AND path = '/v1/conversations' AND status = 200 AND id NOT LIKE 'x%'",
    ]);
    let rows: Value = serde_json::from_str(&tags).unwrap();
    let tag: Value = serde_json::from_str(rows[0]["tags"].as_str().unwrap()).unwrap();
    assert_eq!(tag["replay"], "miss", "{tags}");
    let r = Replay::start(dir.path(), &db, &["--timing", "fast"]);
    let replayed = r.call("POST", "/v1/conversations", new_turn);
    assert_eq!(replayed.status, 200, "{}", replayed.text());
    assert_eq!(
        replayed.body, forwarded.body,
        "the new episode replays byte-identical"
    );
    assert_eq!(replayed.json()["conversation_id"], conversation.as_str());
}

#[test]
fn replay_refuses_a_body_longer_than_every_recorded_request() {
    let (dir, db) = recording();
    let r = Replay::start(dir.path(), &db, &["--timing", "fast"]);
    let huge = format!(r#"{{"inputs":"{}"}}"#, "x".repeat(3 << 20));
    let answer = r.call("POST", "/v1/conversations", &huge);
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert_eq!(answer.json()["code"], "replay_bad_request");
    // The listener still serves.
    assert_eq!(r.call("GET", "/v1/conversations/conv_gone", "").status, 404);
}
