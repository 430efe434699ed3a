//! The recorder on its own: synthetic message sequences into a real DuckDB file in a temp dir,
//! then checks through read-only queries.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentcap_proxy::record::{ExchangeId, HttpVersion, Msg, Outcome, RequestInfo, Timings};
use agentcap_proxy::recorder::{
    Durability, DurableAck, QueryLimits, Recorder, RecorderConfig, RecorderError, RecorderHandle,
    query_file_read_only,
};
use bytes::Bytes;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Building messages

static CLOCK: AtomicU64 = AtomicU64::new(0);

/// Strictly increasing start times, so "first" and "last" are well defined.
fn next_start() -> SystemTime {
    let n = CLOCK.fetch_add(1, Ordering::SeqCst);
    UNIX_EPOCH + Duration::from_secs(1_750_000_000) + Duration::from_millis(n)
}

/// One exchange's messages, built in order.
struct Ex {
    id: ExchangeId,
    msgs: Vec<Msg>,
    seq: u32,
    at: u64,
}

impl Ex {
    fn new(method: &str, path: &str) -> Ex {
        Ex::with_headers(method, path, &[("content-type", "application/json")])
    }

    fn with_headers(method: &str, path: &str, headers: &[(&str, &str)]) -> Ex {
        let id = ExchangeId::now_v7();
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (path.to_owned(), None),
        };
        let info = RequestInfo {
            id,
            started_at: next_start(),
            method: method.to_owned(),
            path,
            query,
            client_addr: "127.0.0.1:40000".to_owned(),
            headers: pairs(headers),
            key_fingerprint: Some("0123456789ab".to_owned()),
            session: Some("s1".to_owned()),
            tags: vec![("run".to_owned(), "7".to_owned())],
        };
        Ex {
            id,
            msgs: vec![Msg::Request {
                info: Box::new(info),
            }],
            seq: 1,
            at: 0,
        }
    }

    fn next(&mut self) -> u32 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    /// The request body, in two frames when it has at least two bytes.
    fn body(mut self, body: &[u8]) -> Ex {
        let mid = body.len() / 2;
        for part in [&body[..mid], &body[mid..]] {
            if part.is_empty() {
                continue;
            }
            let seq = self.next();
            self.msgs.push(Msg::RequestBody {
                id: self.id,
                seq,
                bytes: Bytes::copy_from_slice(part),
            });
        }
        self
    }

    fn json(self, v: &Value) -> Ex {
        self.body(v.to_string().as_bytes())
    }

    fn response(mut self, status: u16, headers: &[(&str, &str)]) -> Ex {
        let seq = self.next();
        self.at += 1000;
        self.msgs.push(Msg::Response {
            id: self.id,
            seq,
            status,
            headers: pairs(headers),
            at_us: self.at,
            upstream_version: Some(HttpVersion::Http11),
        });
        self
    }

    fn frames(mut self, frames: Vec<Vec<u8>>) -> Ex {
        for f in frames {
            let seq = self.next();
            self.at += 250;
            self.msgs.push(Msg::ResponseBody {
                id: self.id,
                seq,
                at_us: self.at,
                bytes: Bytes::from(f),
            });
        }
        self
    }

    /// A JSON response.
    fn reply(self, status: u16, v: &Value) -> Ex {
        self.response(status, &[("content-type", "application/json")])
            .frames(vec![v.to_string().into_bytes()])
    }

    /// An SSE response split into frames at pseudo-random points.
    fn stream(self, events: &[Value], seed: u64) -> Ex {
        self.response(200, &[("content-type", "text/event-stream")])
            .frames(split(&sse(events), seed))
    }

    fn end(self) -> Ex {
        self.end_with(Outcome::Complete, None)
    }

    fn end_with(mut self, outcome: Outcome, error: Option<&str>) -> Ex {
        let seq = self.next();
        let total = self.at + 500;
        self.msgs.push(Msg::End {
            id: self.id,
            seq,
            outcome,
            error: error.map(str::to_owned),
            timings: Timings {
                response_headers_us: Some(1000),
                total_us: total,
                upstream_us: total.saturating_sub(100),
            },
            bytes_in: 0,
            bytes_out: 0,
        });
        self
    }

    fn send(self, h: &RecorderHandle) -> ExchangeId {
        for m in self.msgs {
            h.send(m);
        }
        self.id
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn sse(events: &[Value]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|e| agentcap_wire::encode_conversation_event(e).to_vec())
        .collect()
}

/// Splits `data` into frames of 1..=64 bytes chosen by a small LCG.
fn split(data: &[u8], seed: u64) -> Vec<Vec<u8>> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = 1 + ((state >> 33) % 64) as usize;
        let end = (i + n).min(data.len());
        out.push(data[i..end].to_vec());
        i = end;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Fixtures

const MODEL: &str = "mistral-medium-latest";
const T0: &str = "2025-06-16T09:16:16.726715Z";
const T1: &str = "2025-06-16T09:16:17.100000Z";

/// The outputs of a turn: a web search, a message, and a function call.
fn turn_outputs() -> Value {
    json!([
        {"type": "tool.execution", "object": "entry", "id": "tool_exec_1", "name": "web_search",
         "arguments": "{\"query\": \"weather\"}", "info": {"results": 2},
         "agent_id": "ag_1", "model": MODEL, "created_at": T0, "completed_at": T1},
        {"type": "message.output", "object": "entry", "id": "msg_1", "role": "assistant",
         "content": "It is sunny.", "agent_id": "ag_1", "model": MODEL,
         "created_at": T0, "completed_at": T1},
        {"type": "function.call", "object": "entry", "id": "fc_1", "tool_call_id": "AbC123xyZ",
         "name": "get_forecast", "arguments": "{\"days\": 3}", "agent_id": "ag_1", "model": MODEL,
         "created_at": T0, "completed_at": T1}
    ])
}

fn turn_response(conv: &str, usage: Value) -> Value {
    json!({"object": "conversation.response", "conversation_id": conv,
           "outputs": turn_outputs(), "usage": usage})
}

/// The same turn as SSE events.
fn turn_events(conv: &str, usage: Value) -> Vec<Value> {
    vec![
        json!({"type": "conversation.response.started", "conversation_id": conv}),
        json!({"type": "tool.execution.started", "output_index": 0, "id": "tool_exec_1",
               "name": "web_search", "arguments": "{\"query\": \"weather\"}",
               "model": MODEL, "agent_id": "ag_1"}),
        json!({"type": "tool.execution.done", "output_index": 0, "id": "tool_exec_1",
               "name": "web_search", "info": {"results": 2}}),
        json!({"type": "message.output.delta", "output_index": 1, "id": "msg_1",
               "content_index": 0, "model": MODEL, "agent_id": "ag_1", "role": "assistant",
               "content": "It is "}),
        json!({"type": "message.output.delta", "output_index": 1, "id": "msg_1",
               "content_index": 0, "model": MODEL, "agent_id": "ag_1", "role": "assistant",
               "content": "sunny."}),
        json!({"type": "function.call.delta", "output_index": 2, "id": "fc_1",
               "name": "get_forecast", "tool_call_id": "AbC123xyZ", "arguments": "{\"days\"",
               "model": MODEL, "agent_id": "ag_1"}),
        json!({"type": "function.call.delta", "output_index": 2, "id": "fc_1",
               "name": "get_forecast", "tool_call_id": "AbC123xyZ", "arguments": ": 3}"}),
        json!({"type": "conversation.response.done", "usage": usage}),
    ]
}

fn small_usage() -> Value {
    json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
}

fn agent(version: i64, instructions: &str) -> Value {
    json!({"object": "agent", "id": "ag_1", "version": version, "versions": (0..=version.max(1)).collect::<Vec<_>>(),
           "created_at": T0, "updated_at": T1, "model": MODEL, "name": "helper",
           "instructions": instructions, "tools": [], "deployment_chat": false, "source": "api"})
}

// ---------------------------------------------------------------------------------------------
// Recorder and query helpers

fn config(dir: &Path) -> RecorderConfig {
    RecorderConfig {
        db_path: dir.join("rec.duckdb"),
        ..RecorderConfig::default()
    }
}

fn rows(h: &RecorderHandle, sql: &str) -> Vec<Vec<Value>> {
    h.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).rows
}

fn scalar(h: &RecorderHandle, sql: &str) -> Value {
    rows(h, sql)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .unwrap_or(Value::Null)
}

fn count(h: &RecorderHandle, sql: &str) -> i64 {
    scalar(h, sql)
        .as_i64()
        .unwrap_or_else(|| panic!("{sql} is not a count"))
}

/// A JSON column's value, whether DuckDB returned it parsed or as text.
fn j(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        other => other.clone(),
    }
}

fn without_times(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.shift_remove("created_at");
        m.shift_remove("completed_at");
    }
    v
}

/// Polls until `cond` holds (generous deadline; only to wait for background work, never a
/// timing assertion).
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

const OUTPUT_COLUMNS: &str =
    "position, type, entry_id, role, agent_id, model, text, name, tool_call_id, arguments";

fn outputs_of(h: &RecorderHandle, id: ExchangeId) -> Vec<Vec<Value>> {
    rows(
        h,
        &format!(
            "SELECT {OUTPUT_COLUMNS} FROM entries WHERE exchange_id = '{id}' AND direction = 'output' ORDER BY position"
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn streamed_and_non_streamed_turns_give_the_same_output_rows() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();

    let plain = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": "weather?", "agent_id": "ag_1"}))
        .reply(200, &turn_response("conv_plain", small_usage()))
        .end()
        .send(&h);
    let mut streamed = Vec::new();
    for seed in [1, 2, 3] {
        let id = Ex::new("POST", "/v1/conversations")
            .json(&json!({"inputs": "weather?", "agent_id": "ag_1", "stream": true}))
            .stream(&turn_events(&format!("conv_s{seed}"), small_usage()), seed)
            .end()
            .send(&h);
        streamed.push(id);
    }
    h.flush().await.unwrap();

    let expected = outputs_of(&h, plain);
    assert_eq!(expected.len(), 3);
    assert_eq!(
        expected[0],
        vec![
            json!(0),
            json!("tool.execution"),
            json!("tool_exec_1"),
            Value::Null,
            json!("ag_1"),
            json!(MODEL),
            Value::Null,
            json!("web_search"),
            Value::Null,
            json!("{\"query\": \"weather\"}")
        ]
    );
    assert_eq!(expected[1][6], json!("It is sunny."));
    assert_eq!(expected[2][9], json!("{\"days\": 3}"));
    for id in &streamed {
        assert_eq!(outputs_of(&h, *id), expected, "streamed exchange {id}");
    }

    // The stored entries are the same JSON, timestamps aside.
    let raw = |id: ExchangeId| -> Vec<Value> {
        rows(
            &h,
            &format!("SELECT raw FROM entries WHERE exchange_id = '{id}' AND direction = 'output' ORDER BY position"),
        )
        .into_iter()
        .map(|r| without_times(j(&r[0])))
        .collect()
    };
    assert_eq!(raw(plain), raw(streamed[0]));

    // Sources, inputs, events and the exchange rows.
    assert_eq!(
        rows(
            &h,
            &format!(
                "SELECT DISTINCT source FROM entries WHERE exchange_id = '{}' AND direction = 'output'",
                streamed[0]
            )
        ),
        vec![vec![json!("stream")]]
    );
    let input = rows(
        &h,
        &format!(
            "SELECT type, role, text, entry_id, source FROM entries WHERE exchange_id = '{plain}' AND direction = 'input'"
        ),
    );
    assert_eq!(
        input,
        vec![vec![
            json!("message.input"),
            json!("user"),
            json!("weather?"),
            Value::Null,
            json!("request")
        ]]
    );
    let x = h
        .query(&format!(
            "SELECT operation, is_stream, event_count, conversation_id, response_body, response_bytes, first_event_us, agent_id, model, outcome FROM exchanges WHERE id = '{}'",
            streamed[0]
        ))
        .unwrap();
    assert_eq!(
        x.get(0, "operation"),
        Some(&json!("conversations.start_stream"))
    );
    assert_eq!(x.get(0, "is_stream"), Some(&json!(true)));
    assert_eq!(x.get(0, "event_count"), Some(&json!(8)));
    assert_eq!(x.get(0, "conversation_id"), Some(&json!("conv_s1")));
    assert_eq!(x.get(0, "response_body"), Some(&Value::Null));
    assert_eq!(
        x.get(0, "response_bytes"),
        Some(&json!(sse(&turn_events("conv_s1", small_usage())).len()))
    );
    assert!(x.get(0, "first_event_us").unwrap().as_i64().unwrap() > 0);
    assert_eq!(x.get(0, "agent_id"), Some(&json!("ag_1")));
    assert_eq!(x.get(0, "model"), Some(&json!(MODEL)));
    let events = rows(
        &h,
        &format!(
            "SELECT seq, event_type, data, parse_error, size FROM sse_events WHERE exchange_id = '{}' ORDER BY seq",
            streamed[0]
        ),
    );
    assert_eq!(events.len(), 8);
    let total_size: i64 = events.iter().map(|r| r[4].as_i64().unwrap()).sum();
    assert_eq!(
        total_size,
        sse(&turn_events("conv_s1", small_usage())).len() as i64
    );
    assert_eq!(events[0][1], json!("conversation.response.started"));
    assert_eq!(j(&events[3][2])["content"], json!("It is "));
    assert!(events.iter().all(|r| r[3].is_null()));

    let plain_row = h
        .query(&format!("SELECT operation, is_stream, event_count, response_body, request_body, tags, request_headers, overhead_us FROM exchanges WHERE id = '{plain}'"))
        .unwrap();
    assert_eq!(
        plain_row.get(0, "operation"),
        Some(&json!("conversations.start"))
    );
    assert_eq!(plain_row.get(0, "event_count"), Some(&Value::Null));
    assert_eq!(
        j(plain_row.get(0, "response_body").unwrap())["conversation_id"],
        "conv_plain"
    );
    assert_eq!(
        j(plain_row.get(0, "request_body").unwrap())["inputs"],
        "weather?"
    );
    assert_eq!(j(plain_row.get(0, "tags").unwrap()), json!({"run": "7"}));
    assert_eq!(
        j(plain_row.get(0, "request_headers").unwrap())["content-type"],
        "application/json"
    );
    assert_eq!(plain_row.get(0, "overhead_us"), Some(&json!(100)));

    let stats = rec.shutdown().unwrap();
    assert_eq!(stats.exchanges_written, 4);
    assert_eq!(stats.sse_events_written, 24);
    assert_eq!(stats.records_dropped, 0);
}

#[tokio::test]
async fn restart_lineage_and_conversation_rows() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();

    let start = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": [{"role": "user", "content": "hi"}], "agent_id": "ag_1", "agent_version": 2}))
        .reply(200, &json!({"conversation_id": "conv_1", "outputs": [
            {"type": "message.output", "object": "entry", "id": "msg_1", "role": "assistant",
             "content": "hello", "agent_id": "ag_1", "model": MODEL}],
            "usage": small_usage()}))
        .end()
        .send(&h);
    let append = Ex::new("POST", "/v1/conversations/conv_1")
        .json(&json!({"inputs": [
            {"type": "function.result", "tool_call_id": "AbC123xyZ", "result": "{\"t\": 20}"},
            {"role": "user", "content": "and tomorrow?"}]}))
        .reply(
            200,
            &json!({"conversation_id": "conv_1", "outputs": [
            {"type": "message.output", "object": "entry", "id": "msg_3", "role": "assistant",
             "content": "rain", "agent_id": "ag_1", "model": MODEL}],
            "usage": small_usage()}),
        )
        .end()
        .send(&h);
    let restart = Ex::new("POST", "/v1/conversations/conv_1/restart")
        .json(&json!({"from_entry_id": "msg_1", "inputs": "actually, Paris", "stream": true, "agent_version": 2}))
        .stream(&[
            json!({"type": "conversation.response.started", "conversation_id": "conv_2"}),
            json!({"type": "message.output.delta", "id": "msg_9", "content": "Paris: ", "agent_id": "ag_1", "model": MODEL, "role": "assistant"}),
            json!({"type": "message.output.delta", "id": "msg_9", "content": "sunny", "agent_id": "ag_1", "model": MODEL, "role": "assistant"}),
            json!({"type": "conversation.response.done", "usage": small_usage()}),
        ], 9)
        .end()
        .send(&h);
    // A GET fills nothing new but must not count as a turn.
    Ex::new("GET", "/v1/conversations/conv_1")
        .reply(
            200,
            &json!({"object": "conversation", "id": "conv_1", "agent_id": "ag_1",
                            "agent_version": 2, "created_at": T0, "updated_at": T1}),
        )
        .end()
        .send(&h);
    h.flush().await.unwrap();

    let c1 = h
        .query("SELECT agent_id, agent_version, model, first_exchange_id, last_exchange_id, turns, parent_conversation_id, from_entry_id, first_seen < last_seen AS ordered FROM conversations WHERE id = 'conv_1'")
        .unwrap();
    assert_eq!(c1.rows.len(), 1);
    assert_eq!(c1.get(0, "agent_id"), Some(&json!("ag_1")));
    assert_eq!(c1.get(0, "agent_version"), Some(&json!("2")));
    assert_eq!(c1.get(0, "model"), Some(&json!(MODEL)));
    assert_eq!(
        c1.get(0, "first_exchange_id"),
        Some(&json!(start.to_string()))
    );
    assert_eq!(
        c1.get(0, "last_exchange_id"),
        Some(&json!(append.to_string()))
    );
    assert_eq!(c1.get(0, "turns"), Some(&json!(2)));
    assert_eq!(c1.get(0, "parent_conversation_id"), Some(&Value::Null));
    assert_eq!(c1.get(0, "ordered"), Some(&json!(true)));

    let c2 = h
        .query("SELECT agent_id, model, first_exchange_id, last_exchange_id, turns, parent_conversation_id, from_entry_id FROM conversations WHERE id = 'conv_2'")
        .unwrap();
    assert_eq!(c2.get(0, "parent_conversation_id"), Some(&json!("conv_1")));
    assert_eq!(c2.get(0, "from_entry_id"), Some(&json!("msg_1")));
    assert_eq!(c2.get(0, "turns"), Some(&json!(1)));
    assert_eq!(c2.get(0, "agent_id"), Some(&json!("ag_1")));
    assert_eq!(
        c2.get(0, "first_exchange_id"),
        Some(&json!(restart.to_string()))
    );

    // Exchanges point at the right conversations.
    let convs = rows(
        &h,
        "SELECT operation, conversation_id FROM exchanges ORDER BY started_at",
    );
    assert_eq!(
        convs,
        vec![
            vec![json!("conversations.start"), json!("conv_1")],
            vec![json!("conversations.append"), json!("conv_1")],
            vec![json!("conversations.restart_stream"), json!("conv_2")],
            vec![json!("conversations.get"), json!("conv_1")],
        ]
    );
    // The append's inputs, function result included.
    let inputs = rows(
        &h,
        &format!(
            "SELECT position, type, tool_call_id, text, conversation_id FROM entries WHERE exchange_id = '{append}' AND direction = 'input' ORDER BY position"
        ),
    );
    assert_eq!(
        inputs,
        vec![
            vec![
                json!(0),
                json!("function.result"),
                json!("AbC123xyZ"),
                json!("{\"t\": 20}"),
                json!("conv_1")
            ],
            vec![
                json!(1),
                json!("message.input"),
                Value::Null,
                json!("and tomorrow?"),
                json!("conv_1")
            ],
        ]
    );
    let restart_entries = rows(
        &h,
        &format!(
            "SELECT direction, type, text, entry_id, conversation_id FROM entries WHERE exchange_id = '{restart}' ORDER BY direction, position"
        ),
    );
    assert_eq!(
        restart_entries,
        vec![
            vec![
                json!("input"),
                json!("message.input"),
                json!("actually, Paris"),
                Value::Null,
                json!("conv_2")
            ],
            vec![
                json!("output"),
                json!("message.output"),
                json!("Paris: sunny"),
                json!("msg_9"),
                json!("conv_2")
            ],
        ]
    );
    rec.shutdown().unwrap();
}

#[tokio::test]
async fn agent_version_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();

    let create = Ex::new("POST", "/v1/agents")
        .json(&json!({"model": MODEL, "name": "helper", "instructions": "be brief"}))
        .reply(200, &agent(0, "be brief"))
        .end()
        .send(&h);
    let update = Ex::new("PATCH", "/v1/agents/ag_1")
        .json(&json!({"instructions": "be very brief"}))
        .reply(200, &agent(1, "be very brief"))
        .end()
        .send(&h);
    Ex::new("GET", "/v1/agents/ag_1")
        .reply(200, &agent(1, "CHANGED? no: first snapshot wins"))
        .end()
        .send(&h);
    Ex::new("GET", "/v1/agents/ag_1/versions")
        .reply(
            200,
            &json!([agent(0, "be brief"), agent(1, "be very brief")]),
        )
        .end()
        .send(&h);
    Ex::new("PATCH", "/v1/agents/ag_1/version?version=0")
        .reply(200, &agent(0, "be brief"))
        .end()
        .send(&h);
    Ex::new("GET", "/v1/agents/pages")
        .reply(
            200,
            &json!({"object": "list", "data": [agent(0, "be brief")], "next_page_token": null}),
        )
        .end()
        .send(&h);
    // A failed update records no snapshot.
    Ex::new("PATCH", "/v1/agents/ag_1")
        .json(&json!({"bogus": true}))
        .reply(422, &json!({"detail": [{"type": "extra_forbidden"}]}))
        .end()
        .send(&h);
    h.flush().await.unwrap();

    let snaps = h
        .query("SELECT agent_id, version, snapshot, exchange_id FROM agents ORDER BY version")
        .unwrap();
    assert_eq!(snaps.rows.len(), 2);
    assert_eq!(snaps.get(0, "agent_id"), Some(&json!("ag_1")));
    assert_eq!(
        snaps.get(0, "exchange_id"),
        Some(&json!(create.to_string()))
    );
    assert_eq!(
        snaps.get(1, "exchange_id"),
        Some(&json!(update.to_string()))
    );
    assert_eq!(
        j(snaps.get(1, "snapshot").unwrap())["instructions"],
        "be very brief"
    );
    assert_eq!(j(snaps.get(0, "snapshot").unwrap())["version"], 0);

    let ops = rows(
        &h,
        "SELECT operation, agent_id FROM exchanges ORDER BY started_at",
    );
    let ops: Vec<&str> = ops.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        [
            "agents.create",
            "agents.update",
            "agents.get",
            "agents.list_versions",
            "agents.update_version",
            "agents.list_pages",
            "agents.update"
        ]
    );
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM exchanges WHERE agent_id = 'ag_1' AND operation <> 'agents.list_pages'"
        ),
        6
    );
    rec.shutdown().unwrap();
}

#[tokio::test]
async fn usage_rows_with_connector_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();

    let with_tools = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": "search", "agent_id": "ag_1"}))
        .reply(
            200,
            &turn_response(
                "conv_u1",
                json!({"prompt_tokens": 188, "completion_tokens": 55,
            "total_tokens": 7355, "connector_tokens": 7112, "connectors": {"web_search": 1}}),
            ),
        )
        .end()
        .send(&h);
    let streamed = Ex::new("POST", "/v1/conversations/conv_u1")
        .json(&json!({"inputs": "again", "stream": true}))
        .stream(&turn_events("conv_u1", json!({"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320, "connector_tokens": null})), 4)
        .end()
        .send(&h);
    let chat = Ex::new("POST", "/v1/chat/completions")
        .json(&json!({"model": "mistral-small-latest", "messages": [{"role": "user", "content": "hi"}]}))
        .reply(200, &json!({"id": "c1", "object": "chat.completion", "model": "mistral-small-latest",
            "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}))
        .end()
        .send(&h);
    h.flush().await.unwrap();

    let usage = |id: ExchangeId| {
        h.query(&format!(
            "SELECT conversation_id, prompt_tokens, completion_tokens, total_tokens, connector_tokens, connectors FROM usage WHERE exchange_id = '{id}'"
        ))
        .unwrap()
    };
    let u = usage(with_tools);
    assert_eq!(u.rows.len(), 1);
    assert_eq!(u.get(0, "conversation_id"), Some(&json!("conv_u1")));
    assert_eq!(u.get(0, "prompt_tokens"), Some(&json!(188)));
    assert_eq!(u.get(0, "total_tokens"), Some(&json!(7355)));
    assert_eq!(u.get(0, "connector_tokens"), Some(&json!(7112)));
    assert_eq!(j(u.get(0, "connectors").unwrap()), json!({"web_search": 1}));

    let u = usage(streamed);
    assert_eq!(u.get(0, "total_tokens"), Some(&json!(320)));
    assert_eq!(u.get(0, "connector_tokens"), Some(&Value::Null));
    assert_eq!(u.get(0, "connectors"), Some(&Value::Null));

    let u = usage(chat);
    assert_eq!(u.get(0, "total_tokens"), Some(&json!(7)));
    assert_eq!(u.get(0, "conversation_id"), Some(&Value::Null));
    assert_eq!(
        scalar(
            &h,
            &format!("SELECT operation || ' ' || model FROM exchanges WHERE id = '{chat}'")
        ),
        json!("chat.completions mistral-small-latest")
    );
    rec.shutdown().unwrap();
}

#[tokio::test]
async fn bodies_gzip_malformed_oversized_and_redacted() {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.capture_cap = 2048;
    cfg.redact = vec![regex::Regex::new(r"4111-\d{4}-\d{4}-\d{4}").unwrap()];
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();

    let body = json!({"object": "list", "data": [agent(0, "card 4111-1111-2222-3333 inside")], "next_page_token": null});
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(body.to_string().as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let gzipped = Ex::new("GET", "/v1/agents/pages")
        .response(
            200,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        )
        .frames(split(&gz, 5))
        .end()
        .send(&h);
    let malformed = Ex::new("POST", "/v1/conversations")
        .body(b"{\"inputs\": \"hi\",,}")
        .reply(422, &json!({"detail": []}))
        .end()
        .send(&h);
    let big_text = "é".repeat(3000); // 6000 bytes
    let oversized = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": big_text}))
        .reply(200, &turn_response("conv_big", small_usage()))
        .end()
        .send(&h);
    let cancelled = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": "x", "stream": true}))
        .stream(&turn_events("conv_c", small_usage())[..3], 2)
        .end_with(Outcome::CancelledByClient, Some("client went away"))
        .send(&h);
    h.flush().await.unwrap();

    let x = |id: ExchangeId, cols: &str| {
        h.query(&format!("SELECT {cols} FROM exchanges WHERE id = '{id}'"))
            .unwrap()
    };
    let g = x(
        gzipped,
        "response_body, response_body_raw, response_parse_error, response_bytes",
    );
    let stored = j(g.get(0, "response_body").unwrap());
    assert_eq!(stored["data"][0]["instructions"], "card [REDACTED] inside");
    assert_eq!(g.get(0, "response_parse_error"), Some(&Value::Null));
    assert_eq!(g.get(0, "response_bytes"), Some(&json!(gz.len())));
    assert_eq!(count(&h, "SELECT count(*) FROM agents"), 1);

    let m = x(
        malformed,
        "request_body, request_body_raw, request_parse_error, request_truncated",
    );
    assert_eq!(m.get(0, "request_body"), Some(&Value::Null));
    assert_eq!(
        m.get(0, "request_body_raw"),
        Some(&json!("{\"inputs\": \"hi\",,}"))
    );
    assert!(
        m.get(0, "request_parse_error")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("line 1")
    );
    assert_eq!(m.get(0, "request_truncated"), Some(&json!(false)));

    let o = x(
        oversized,
        "request_body, request_body_raw, request_parse_error, request_truncated, request_bytes",
    );
    assert_eq!(o.get(0, "request_truncated"), Some(&json!(true)));
    assert_eq!(o.get(0, "request_body"), Some(&Value::Null));
    let raw = o.get(0, "request_body_raw").unwrap().as_str().unwrap();
    assert!(
        (2046..=2048).contains(&raw.len()),
        "cut at a char boundary: {}",
        raw.len()
    );
    assert!(raw.starts_with("{\"inputs\":\"éé"));
    assert_eq!(
        o.get(0, "request_parse_error"),
        Some(&json!(format!("truncated at {} bytes", raw.len())))
    );
    assert_eq!(
        o.get(0, "request_bytes"),
        Some(&json!(
            json!({"inputs": "é".repeat(3000)}).to_string().len()
        ))
    );
    // Truncated requests have no input entries, but the outputs are still recorded.
    assert_eq!(
        count(
            &h,
            &format!(
                "SELECT count(*) FROM entries WHERE exchange_id = '{oversized}' AND direction = 'input'"
            )
        ),
        0
    );
    assert_eq!(
        count(
            &h,
            &format!(
                "SELECT count(*) FROM entries WHERE exchange_id = '{oversized}' AND direction = 'output'"
            )
        ),
        3
    );

    let c = x(cancelled, "outcome, error, event_count");
    assert_eq!(c.get(0, "outcome"), Some(&json!("cancelled_by_client")));
    assert_eq!(c.get(0, "error"), Some(&json!("client went away")));
    assert_eq!(c.get(0, "event_count"), Some(&json!(3)));
    // The partial turn's outputs so far.
    assert_eq!(
        count(
            &h,
            &format!(
                "SELECT count(*) FROM entries WHERE exchange_id = '{cancelled}' AND direction = 'output'"
            )
        ),
        1
    );
    rec.shutdown().unwrap();
}

#[tokio::test]
async fn out_of_order_messages_are_reassembled() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();
    let ex = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": "weather?", "stream": true}))
        .stream(&turn_events("conv_ooo", small_usage()), 11)
        .end();
    let id = ex.id;
    for m in ex.msgs.into_iter().rev() {
        h.send(m);
    }
    h.flush().await.unwrap();
    assert_eq!(
        scalar(
            &h,
            &format!("SELECT outcome || ' ' || event_count FROM exchanges WHERE id = '{id}'")
        ),
        json!("complete 8")
    );
    assert_eq!(outputs_of(&h, id).len(), 3);
    rec.shutdown().unwrap();
}

/// Sends `ex`, acknowledging its `End` durably; returns the id and the acknowledgement.
fn send_durable(h: &RecorderHandle, ex: Ex) -> (ExchangeId, DurableAck) {
    let id = ex.id;
    let mut msgs = ex.msgs;
    let end = msgs.pop().unwrap();
    for m in msgs {
        h.send(m);
    }
    (id, h.send_durable(end))
}

fn journal_files(dir: &Path) -> Vec<PathBuf> {
    let jdir = dir.join("rec.duckdb.journal");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&jdir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn journal_replay_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Nothing reaches DuckDB before the "crash".
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.batch_rows = 1_000_000;
    cfg.durability = Durability::Strict;
    let rec = Recorder::open(cfg.clone()).unwrap();
    let h = rec.handle();

    // An exchange the proxy never saw end: request, head and a few events.
    let partial = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": "hi", "stream": true}))
        .stream(&turn_events("conv_p", small_usage())[..4], 3);
    let partial_id = partial.id;
    for m in partial.msgs {
        h.send(m);
    }
    let mut acks = Vec::new();
    let mut done = Vec::new();
    for i in 0..3 {
        let (id, ack) = send_durable(
            &h,
            Ex::new("POST", "/v1/conversations")
                .json(&json!({"inputs": format!("q{i}"), "stream": true}))
                .stream(&turn_events(&format!("conv_{i}"), small_usage()), i)
                .end(),
        );
        done.push(id);
        acks.push(ack);
    }
    for a in acks {
        a.await.expect("durable ack");
    }
    assert_eq!(h.stats().exchanges_written, 0);
    rec.abort();
    drop(h);

    // A torn record at the end of the journal, as a crash mid-write leaves.
    let files = journal_files(dir.path());
    assert!(!files.is_empty(), "the journal survived the crash");
    let last = files
        .iter()
        .rfind(|p| p.to_string_lossy().contains("seg-"))
        .unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    drop(f);

    let rec = Recorder::open(cfg.clone()).unwrap();
    let h = rec.handle();
    assert_eq!(h.stats().replayed_exchanges, 4);
    assert!(
        journal_files(dir.path()).is_empty(),
        "replayed files are removed"
    );
    assert_eq!(count(&h, "SELECT count(*) FROM exchanges"), 4);
    for id in &done {
        assert_eq!(
            scalar(
                &h,
                &format!("SELECT outcome || ' ' || event_count FROM exchanges WHERE id = '{id}'")
            ),
            json!("complete 8")
        );
        assert_eq!(outputs_of(&h, *id).len(), 3);
    }
    let p = h
        .query(&format!(
            "SELECT outcome, error, event_count, status FROM exchanges WHERE id = '{partial_id}'"
        ))
        .unwrap();
    assert_eq!(p.get(0, "outcome"), Some(&json!("proxy_error")));
    assert_eq!(
        p.get(0, "error"),
        Some(&json!("proxy stopped before the exchange ended"))
    );
    assert_eq!(p.get(0, "event_count"), Some(&json!(4)));
    assert_eq!(p.get(0, "status"), Some(&json!(200)));
    assert_eq!(
        count(
            &h,
            &format!("SELECT count(*) FROM sse_events WHERE exchange_id = '{partial_id}'")
        ),
        4
    );
    rec.shutdown().unwrap();

    // Opening again replays nothing and duplicates nothing.
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    assert_eq!(h.stats().replayed_exchanges, 0);
    assert_eq!(count(&h, "SELECT count(*) FROM exchanges"), 4);
    assert_eq!(count(&h, "SELECT count(DISTINCT id) FROM exchanges"), 4);
    rec.shutdown().unwrap();
}

#[tokio::test]
async fn replay_skips_exchanges_already_committed() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();
    // An open exchange keeps the segment alive after the other one is committed.
    let open = Ex::new("GET", "/v1/agents");
    let open_id = open.id;
    for m in open.msgs {
        h.send(m);
    }
    let committed = Ex::new("GET", "/v1/agents/ag_1")
        .reply(200, &agent(0, "x"))
        .end()
        .send(&h);
    h.flush().await.unwrap();
    assert_eq!(h.stats().exchanges_written, 1);
    assert!(!journal_files(dir.path()).is_empty());
    rec.abort();
    drop(h);

    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();
    assert_eq!(
        h.stats().replayed_exchanges,
        1,
        "only the open exchange is new"
    );
    assert_eq!(
        count(
            &h,
            &format!("SELECT count(*) FROM exchanges WHERE id = '{committed}'")
        ),
        1
    );
    assert_eq!(
        scalar(
            &h,
            &format!("SELECT outcome FROM exchanges WHERE id = '{open_id}'")
        ),
        json!("proxy_error")
    );
    assert_eq!(count(&h, "SELECT count(*) FROM agents"), 1);
    rec.shutdown().unwrap();
}

#[tokio::test]
async fn db_fault_keeps_everything_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flush_interval = Duration::from_millis(20);
    // Far fewer than the exchanges sent: most are dropped from memory and derived again.
    cfg.max_pending_exchanges = 100;
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    h.set_db_fault(true);
    for i in 0..1000u64 {
        if i % 4 == 0 {
            Ex::new("POST", "/v1/conversations")
                .json(&json!({"inputs": format!("q{i}"), "stream": true}))
                .stream(&turn_events(&format!("conv_f{i}"), small_usage()), i)
                .end()
                .send(&h);
        } else {
            Ex::new("POST", "/v1/conversations")
                .json(&json!({"inputs": format!("q{i}")}))
                .reply(200, &turn_response(&format!("conv_f{i}"), small_usage()))
                .end()
                .send(&h);
        }
    }
    wait_until("failed DuckDB attempts with everything pending", || {
        let s = h.stats();
        s.db_errors >= 2 && s.pending_exchanges == 1000
    });
    assert_eq!(h.stats().exchanges_written, 0);
    assert!(!journal_files(dir.path()).is_empty());
    h.set_db_fault(false);
    h.flush().await.unwrap();

    let s = h.stats();
    assert_eq!(s.exchanges_written, 1000);
    assert_eq!(s.records_dropped, 0);
    assert_eq!(count(&h, "SELECT count(DISTINCT id) FROM exchanges"), 1000);
    assert_eq!(count(&h, "SELECT count(*) FROM exchanges"), 1000);
    assert_eq!(count(&h, "SELECT count(*) FROM sse_events"), 250 * 8);
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM entries WHERE direction = 'output'"
        ),
        3000
    );
    assert_eq!(count(&h, "SELECT count(*) FROM conversations"), 1000);
    assert_eq!(count(&h, "SELECT sum(turns) FROM conversations"), 1000);
    let stats = rec.shutdown().unwrap();
    assert_eq!(stats.records_dropped, 0);
    assert!(journal_files(dir.path()).is_empty());
}

/// A DuckDB slower than the traffic (here: one that takes rows in but writes nothing) costs the
/// DuckDB thread at most `max_pending_bytes` of memory: past it, the newest exchanges are kept in the
/// journal only and derived again when their batch is written. Nothing is lost.
#[tokio::test]
async fn a_duckdb_slower_than_the_traffic_holds_at_most_max_pending_bytes() {
    const CAP: u64 = 256 * 1024;
    const N: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_pending_bytes = CAP as usize;
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    h.set_db_paused(true);
    // About 8 KiB of rows each (the body twice: request body and input entry), 3 MiB in all.
    let filler = "x".repeat(4096);
    for i in 0..N {
        Ex::new("POST", "/v1/conversations")
            .json(&json!({"inputs": format!("q{i} {filler}")}))
            .reply(200, &turn_response(&format!("conv_slow{i}"), small_usage()))
            .end()
            .send(&h);
    }
    wait_until(
        "every exchange queued for DuckDB within the byte bound",
        || {
            let s = h.stats();
            s.pending_exchanges == N && s.db_queue_bytes <= CAP
        },
    );
    assert_eq!(h.stats().exchanges_written, 0);
    h.set_db_paused(false);
    h.flush().await.unwrap();
    let s = h.stats();
    assert_eq!(s.exchanges_written, N);
    assert_eq!(s.records_dropped, 0);
    assert!(
        s.exchanges_rederived > N / 2,
        "most exchanges waited in the journal only: {s:?}"
    );
    assert_eq!(
        count(&h, "SELECT count(DISTINCT id) FROM exchanges"),
        N as i64
    );
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM exchanges WHERE request_body->>'inputs' LIKE 'q% xxxx%' \
             AND length(request_body->>'inputs') > 4096"
        ),
        N as i64
    );
    assert_eq!(count(&h, "SELECT count(*) FROM conversations"), N as i64);
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM entries WHERE direction = 'output'"
        ),
        3 * N as i64
    );
    let stats = rec.shutdown().unwrap();
    assert_eq!(stats.records_dropped, 0);
    assert!(journal_files(dir.path()).is_empty());
}

#[tokio::test]
async fn shutdown_while_duckdb_fails_keeps_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();
    h.set_db_fault(true);
    let ids: Vec<ExchangeId> = (0..20)
        .map(|i| {
            Ex::new("POST", "/v1/conversations")
                .json(&json!({"inputs": format!("q{i}")}))
                .reply(200, &turn_response(&format!("conv_s{i}"), small_usage()))
                .end()
                .send(&h)
        })
        .collect();
    // One exchange is still open when the proxy stops.
    let open = Ex::new("GET", "/v1/agents");
    for m in open.msgs {
        h.send(m);
    }
    match rec.shutdown() {
        Err(RecorderError::SimulatedFault) => {}
        other => panic!("shutdown should report the failure: {other:?}"),
    }
    drop(h);
    assert!(!journal_files(dir.path()).is_empty(), "the journal is kept");

    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();
    assert_eq!(h.stats().replayed_exchanges, 21);
    assert_eq!(count(&h, "SELECT count(*) FROM exchanges"), 21);
    for id in ids {
        assert_eq!(
            scalar(
                &h,
                &format!("SELECT outcome FROM exchanges WHERE id = '{id}'")
            ),
            json!("complete")
        );
    }
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM exchanges WHERE outcome = 'proxy_error'"
        ),
        1
    );
    rec.shutdown().unwrap();
    assert!(journal_files(dir.path()).is_empty());
}

#[tokio::test]
async fn tiny_channel_spills_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.channel_capacity = 4;
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    let sender = h.clone();
    // Two senders at once, as two connections would.
    let t = std::thread::spawn(move || {
        for i in 0..1000u64 {
            Ex::new("POST", "/v1/conversations")
                .json(&json!({"inputs": format!("a{i}"), "stream": true}))
                .stream(&turn_events(&format!("conv_a{i}"), small_usage()), i)
                .end()
                .send(&sender);
        }
    });
    for _ in 0..1000 {
        Ex::new("GET", "/v1/agents/ag_1")
            .reply(200, &agent(0, "x"))
            .end()
            .send(&h);
    }
    t.join().unwrap();
    h.flush().await.unwrap();
    let s = h.stats();
    assert!(s.spilled > 0, "the tiny channel overflowed: {s:?}");
    assert_eq!(s.records_dropped, 0);
    assert_eq!(count(&h, "SELECT count(*) FROM exchanges"), 2000);
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM exchanges WHERE outcome = 'complete'"
        ),
        2000
    );
    assert_eq!(count(&h, "SELECT count(*) FROM sse_events"), 8000);
    assert_eq!(count(&h, "SELECT count(*) FROM entries"), 4000);
    let stats = rec.shutdown().unwrap();
    assert_eq!(stats.exchanges_written, 2000);
    assert!(journal_files(dir.path()).is_empty());
}

#[tokio::test]
async fn queries_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();
    Ex::new("GET", "/v1/agents/ag_1")
        .reply(200, &agent(0, "x"))
        .end()
        .send(&h);
    h.flush().await.unwrap();

    for sql in [
        "INSERT INTO exchanges (id) VALUES ('x')",
        "DROP TABLE exchanges",
        "SELECT 1; DROP TABLE exchanges",
        "DELETE FROM agents",
        "UPDATE agents SET version = 9",
        "CREATE TABLE t (x INT)",
        "ATTACH 'other.db'",
        "COPY exchanges TO 'out.csv'",
        "PRAGMA enable_profiling",
        "INSTALL httpfs",
        "LOAD httpfs",
        "EXPLAIN COPY exchanges TO 'out.csv'",
    ] {
        match h.query(sql) {
            Err(RecorderError::QueryRefused { reason }) => {
                assert!(!reason.is_empty());
                let shown = RecorderError::QueryRefused { reason }.to_string();
                assert!(shown.starts_with("query refused: "), "{shown}");
            }
            other => panic!("{sql:?} was not refused: {other:?}"),
        }
    }
    assert_eq!(count(&h, "SELECT count(*) FROM exchanges"), 1);
    assert_eq!(count(&h, "SELECT count(*) FROM agents"), 1);

    // Table functions cannot reach other local files (external access is off in DuckDB).
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "a,b\n1,2\n").unwrap();
    let file_sql = |p: &Path| {
        let p = p.display();
        [
            format!("SELECT * FROM read_csv('{p}')"),
            format!("SELECT * FROM read_text('{p}')"),
            format!("SELECT content FROM read_blob('{p}')"),
            format!("FROM '{p}'"),
            format!("SELECT * FROM glob('{p}')"),
            format!("SELECT * FROM sniff_csv('{p}')"),
        ]
    };
    for sql in file_sql(&other) {
        match h.query(&sql) {
            Err(RecorderError::QueryRefused { reason }) => {
                assert!(
                    reason.contains("read the recording only"),
                    "{sql}: {reason}"
                );
            }
            other => panic!("{sql:?} was not refused: {other:?}"),
        }
    }
    // The writer is unaffected.
    Ex::new("GET", "/v1/agents/ag_2")
        .reply(200, &agent(0, "y"))
        .end()
        .send(&h);
    h.flush().await.unwrap();
    assert_eq!(count(&h, "SELECT count(*) FROM exchanges"), 2);

    let desc = h.query("DESCRIBE exchanges").unwrap();
    assert!(desc.rows.len() >= 35);
    let tables = h.query("SHOW TABLES").unwrap();
    assert!(tables.rows.iter().any(|r| r[0] == json!("sse_events")));
    let info = h
        .query("SELECT * FROM pragma_table_info('agents')")
        .unwrap();
    assert_eq!(info.rows.len(), 5);
    let ts = scalar(&h, "SELECT min(started_at) FROM exchanges");
    assert!(ts.as_str().unwrap().starts_with("2025-06-15T"), "{ts}");
    let typed = h
        .query("SELECT [1, 2] AS l, {'a': 1} AS s, 1.5::DOUBLE AS d, DATE '2024-01-02' AS day, NULL AS n, 'x'::BLOB AS b")
        .unwrap();
    assert_eq!(typed.columns, ["l", "s", "d", "day", "n", "b"]);
    assert_eq!(
        typed.rows[0],
        vec![
            json!([1, 2]),
            json!({"a": 1}),
            json!(1.5),
            json!("2024-01-02"),
            Value::Null,
            json!("78")
        ]
    );
    // Result shapes the duckdb crate cannot decode are an error, not a panic.
    match h.query("SELECT [NULL, NULL] AS l") {
        Ok(r) => assert_eq!(r.rows.len(), 1),
        Err(RecorderError::QueryRefused { reason }) => assert!(reason.contains("CAST"), "{reason}"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    let schema_version = scalar(&h, "SELECT max(version) FROM schema_migrations");
    assert_eq!(
        schema_version,
        json!(agentcap_proxy::recorder::schema::latest_version())
    );

    let db = dir.path().join("rec.duckdb");
    rec.shutdown().unwrap();
    assert!(matches!(h.query("SELECT 1"), Err(RecorderError::Stopped)));
    let r = query_file_read_only(
        &db,
        "SELECT operation, status FROM exchanges ORDER BY started_at",
        &[],
        &QueryLimits::default(),
    )
    .unwrap();
    assert_eq!(
        r.rows,
        vec![
            vec![json!("agents.get"), json!(200)],
            vec![json!("agents.get"), json!(200)]
        ]
    );
    for sql in file_sql(&other) {
        match query_file_read_only(&db, &sql, &[], &QueryLimits::default()) {
            Err(RecorderError::QueryRefused { reason }) => {
                assert!(
                    reason.contains("read the recording only"),
                    "{sql}: {reason}"
                );
            }
            other => panic!("{sql:?} was not refused on the file: {other:?}"),
        }
    }
    assert!(matches!(
        query_file_read_only(&db, "DELETE FROM exchanges", &[], &QueryLimits::default()),
        Err(RecorderError::QueryRefused { .. })
    ));
    // Reopening the file as a recorder works: migrations are not re-applied.
    let rec = Recorder::open(config(dir.path())).unwrap();
    assert_eq!(
        count(&rec.handle(), "SELECT count(*) FROM schema_migrations"),
        i64::from(agentcap_proxy::recorder::schema::latest_version())
    );
    rec.shutdown().unwrap();
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn assert_secret_absent(dir: &Path, secret: &[u8]) -> usize {
    let files = files_under(dir);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "the secret is in {}",
            f.display()
        );
    }
    files.len()
}

#[tokio::test]
async fn credentials_never_reach_any_file() {
    const SECRET: &str = "sk-SECRETsecret0123456789XYZ";
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.channel_capacity = 2; // some messages go through the spill file too
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    let bearer = format!("Bearer {SECRET}");
    let cookie = format!("session={SECRET}");
    let headers = [
        ("content-type", "application/json"),
        ("Authorization", bearer.as_str()),
        ("Cookie", cookie.as_str()),
        ("X-Api-Key", SECRET),
        ("Proxy-Authorization", bearer.as_str()),
    ];
    // One exchange stays open so its journal segment is still on disk when we look.
    let open =
        Ex::with_headers("POST", "/v1/conversations", &headers).json(&json!({"inputs": "hi"}));
    for m in open.msgs {
        h.send(m);
    }
    for i in 0..200u64 {
        Ex::with_headers("POST", "/v1/conversations", &headers)
            .json(&json!({"inputs": format!("q{i}"), "stream": true}))
            .response(
                200,
                &[
                    ("content-type", "text/event-stream"),
                    ("set-cookie", cookie.as_str()),
                ],
            )
            .frames(split(&sse(&turn_events("conv_k", small_usage())), i))
            .end()
            .send(&h);
    }
    h.flush().await.unwrap();
    let stored = j(&scalar(&h, "SELECT request_headers FROM exchanges LIMIT 1"));
    assert_eq!(stored["authorization"], "[REDACTED]");
    assert_eq!(stored["cookie"], "[REDACTED]");
    assert_eq!(stored["content-type"], "application/json");
    assert!(
        files_under(dir.path()).iter().any(|p| {
            let name = p.to_string_lossy();
            name.contains("seg-") || name.contains("spill-")
        }),
        "the journal is on disk"
    );
    let n = assert_secret_absent(dir.path(), SECRET.as_bytes());
    assert!(n >= 2);
    rec.shutdown().unwrap();
    assert_secret_absent(dir.path(), SECRET.as_bytes());
}

#[tokio::test]
async fn redact_patterns_are_masked_in_the_journal_and_spill_files() {
    const SECRET: &str = "tok-7f3a9c1e5b";
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.redact = vec![regex::Regex::new("tok-[0-9a-f]{10}").unwrap()];
    cfg.channel_capacity = 2; // most messages go through the spill file
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    let exchange = |n: u64| {
        let mut ex = Ex::with_headers(
            "POST",
            &format!("/v1/conversations?q={SECRET}"),
            &[("content-type", "application/json"), ("x-note", SECRET)],
        );
        let seq = ex.next();
        ex.msgs.push(Msg::RequestBody {
            id: ex.id,
            seq,
            bytes: Bytes::from(format!(
                r#"{{"inputs":"my key is {SECRET}","stream":true}}"#
            )),
        });
        let events = vec![
            json!({"type": "conversation.response.started", "conversation_id": format!("conv_r{n}")}),
            json!({"type": "message.output.delta", "output_index": 0, "id": "msg_r", "content_index": 0,
                   "model": MODEL, "role": "assistant", "content": format!("café {SECRET} ok")}),
            json!({"type": "conversation.response.done", "usage": small_usage()}),
        ];
        let wire = sse(&events);
        // Cut the stream inside the two bytes of "é": one frame ends, the next starts, mid-character.
        let e = wire.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        ex.response(200, &[("content-type", "text/event-stream")])
            .frames(vec![wire[..=e].to_vec(), wire[e + 1..].to_vec()])
    };
    // One exchange stays open, so its journal segment is still on disk when we look.
    for m in exchange(0).msgs {
        h.send(m);
    }
    for i in 1..=200u64 {
        exchange(i)
            .end_with(
                Outcome::UpstreamError,
                Some(format!("failed near {SECRET}").as_str()),
            )
            .send(&h);
    }
    h.flush().await.unwrap();
    let s = h.stats();
    assert!(s.spilled > 0, "{s:?}");
    let names: Vec<String> = files_under(dir.path())
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.contains("seg-")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("spill-")), "{names:?}");
    assert_secret_absent(dir.path(), SECRET.as_bytes());
    // The database copy is masked too.
    let masked = count(
        &h,
        "SELECT count(*) FROM sse_events WHERE data::VARCHAR LIKE '%café [REDACTED] ok%'",
    );
    assert_eq!(masked, 200);
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM exchanges WHERE error = 'failed near [REDACTED]'"
        ),
        200
    );
    rec.shutdown().unwrap();
    assert_secret_absent(dir.path(), SECRET.as_bytes());
}

/// Writer throughput: `cargo test --workspace -- recorder::throughput --ignored --nocapture`
/// (an optimised build gives meaningful numbers). Prints rows/s; asserts nothing about time.
#[tokio::test]
#[ignore]
async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();
    const EXCHANGES: u64 = 2_000;
    const DELTAS: usize = 200;
    let mut events =
        vec![json!({"type": "conversation.response.started", "conversation_id": "conv_t"})];
    for i in 0..DELTAS {
        events.push(
            json!({"type": "message.output.delta", "output_index": 0, "id": "msg_t",
            "content_index": 0, "model": MODEL, "agent_id": "ag_1", "role": "assistant",
            "content": format!("token{i} ")}),
        );
    }
    events.push(json!({"type": "conversation.response.done", "usage": small_usage()}));
    let wire = sse(&events);
    let frames: Vec<Vec<u8>> = wire.chunks(512).map(<[u8]>::to_vec).collect();
    let msgs: Vec<Vec<Msg>> = (0..EXCHANGES)
        .map(|_| {
            Ex::new("POST", "/v1/conversations/conv_t")
                .json(&json!({"inputs": "go", "stream": true}))
                .response(200, &[("content-type", "text/event-stream")])
                .frames(frames.clone())
                .end()
                .msgs
        })
        .collect();
    let t0 = Instant::now();
    for m in msgs.into_iter().flatten() {
        h.send(m);
    }
    h.flush().await.unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let s = h.stats();
    let db_secs = s.db_busy_us as f64 / 1e6;
    println!(
        "{} exchanges, {} sse_events, {} rows in {secs:.2}s: {:.0} sse_event rows/s, {:.0} rows/s (spilled {}); \
         DuckDB thread busy {db_secs:.2}s: {:.0} sse_event rows/s, {:.0} rows/s of it",
        s.exchanges_written,
        s.sse_events_written,
        s.rows_written,
        s.sse_events_written as f64 / secs,
        s.rows_written as f64 / secs,
        s.spilled,
        s.sse_events_written as f64 / db_secs,
        s.rows_written as f64 / db_secs,
    );
    assert_eq!(s.sse_events_written, EXCHANGES * (DELTAS as u64 + 2));
    rec.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Journal damage, odd file names, a failing journal

/// Captured log lines of this test binary (one global subscriber, installed once).
pub(crate) fn captured_logs() -> String {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    struct W(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || W(b.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(sub);
        buf
    });
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

fn jdir(dir: &Path) -> PathBuf {
    dir.join("rec.duckdb.journal")
}

/// The journal segments (`seg-*`) in the journal directory.
fn segs_in(dir: &Path) -> Vec<PathBuf> {
    journal_files(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seg-"))
        })
        .collect()
}

fn corrupt_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(jdir(dir).join("corrupt"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Nothing reaches DuckDB before the "crash"; every acknowledged exchange is in the journal.
fn crash_config(dir: &Path) -> RecorderConfig {
    let mut cfg = config(dir);
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.batch_rows = 1_000_000;
    cfg.durability = Durability::Strict;
    cfg
}

/// Journals `n` complete exchanges durably, then crashes.
async fn journal_then_crash(dir: &Path, n: usize) -> Vec<ExchangeId> {
    let rec = Recorder::open(crash_config(dir)).unwrap();
    let h = rec.handle();
    let mut ids = Vec::new();
    let mut acks = Vec::new();
    for i in 0..n {
        let (id, ack) = send_durable(
            &h,
            Ex::new("POST", "/v1/conversations")
                .json(&json!({"inputs": format!("q{i}"), "stream": true}))
                .stream(&turn_events(&format!("conv_{i}"), small_usage()), i as u64)
                .end(),
        );
        ids.push(id);
        acks.push(ack);
    }
    for a in acks {
        a.await.expect("durable ack");
    }
    assert_eq!(h.stats().exchanges_written, 0);
    rec.abort();
    ids
}

#[tokio::test]
async fn a_flipped_byte_mid_segment_loses_only_the_record_it_hit() {
    let logs_before = captured_logs().len();
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    journal_then_crash(dir.path(), n).await;
    let segs = segs_in(dir.path());
    assert_eq!(segs.len(), 1, "{segs:?}");
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&segs[0], &bytes).unwrap();

    let rec = Recorder::open(crash_config(dir.path())).unwrap();
    let h = rec.handle();
    let s = h.stats();
    assert_eq!(s.journal_corrupt_segments, 1, "{s:?}");
    assert!(s.journal_corrupt_bytes > 0, "{s:?}");
    // Every exchange but the one whose record was hit is complete (that one may still have a row).
    let complete = count(
        &h,
        "SELECT count(*) FROM exchanges WHERE outcome = 'complete'",
    );
    assert!(complete >= n as i64 - 1, "only {complete} of {n} replayed");
    // The damaged file is kept aside, byte for byte; nothing is left to replay.
    let kept = corrupt_files(dir.path());
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), bytes);
    assert!(segs_in(dir.path()).is_empty());
    let logs = captured_logs()[logs_before..].to_owned();
    let name = segs[0].display().to_string();
    assert!(
        logs.lines()
            .any(|l| l.contains("ERROR") && l.contains(&name) && l.contains("damaged")),
        "no ERROR line about {name}"
    );
    rec.shutdown().unwrap();
    // Opening again replays nothing and duplicates nothing.
    let rec = Recorder::open(crash_config(dir.path())).unwrap();
    let h = rec.handle();
    assert_eq!(h.stats().replayed_exchanges, 0);
    assert_eq!(h.stats().journal_corrupt_segments, 0);
    assert!(count(&h, "SELECT count(*) FROM exchanges") <= n as i64);
    rec.shutdown().unwrap();
}

#[tokio::test]
async fn a_torn_tail_is_quiet_only_in_the_newest_segment() {
    // The newest segment: a cut last record is the crash's torn tail, not corruption.
    let dir = tempfile::tempdir().unwrap();
    journal_then_crash(dir.path(), 3).await;
    let seg = segs_in(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    let rec = Recorder::open(crash_config(dir.path())).unwrap();
    let h = rec.handle();
    assert_eq!(h.stats().replayed_exchanges, 3);
    assert_eq!(h.stats().journal_corrupt_segments, 0);
    assert!(corrupt_files(dir.path()).is_empty());
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM exchanges WHERE outcome = 'complete'"
        ),
        2
    );
    rec.shutdown().unwrap();

    // The same cut in a segment that has a newer one after it is corruption.
    let dir = tempfile::tempdir().unwrap();
    journal_then_crash(dir.path(), 3).await;
    let seg = segs_in(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    std::fs::write(
        jdir(dir.path()).join("seg-00000099.log"),
        agentcap_proxy::recorder::journal::segment_header(),
    )
    .unwrap();
    let rec = Recorder::open(crash_config(dir.path())).unwrap();
    let h = rec.handle();
    assert_eq!(h.stats().replayed_exchanges, 3);
    assert_eq!(h.stats().journal_corrupt_segments, 1);
    assert_eq!(corrupt_files(dir.path()).len(), 1);
    rec.shutdown().unwrap();
}

#[tokio::test]
async fn odd_segment_names_never_panic_and_are_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let j = jdir(dir.path());
    std::fs::create_dir_all(&j).unwrap();
    let header = agentcap_proxy::recorder::journal::segment_header();
    for odd in [
        "seg-18446744073709551615.log",
        "seg-+7.log",
        "spill-99999999999999999999.log",
    ] {
        std::fs::write(j.join(odd), header).unwrap();
    }
    std::fs::write(j.join("notes.txt"), b"not ours").unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();
    Ex::new("GET", "/v1/agents/ag_1")
        .reply(200, &agent(0, "x"))
        .end()
        .send(&h);
    h.flush().await.unwrap();
    assert_eq!(count(&h, "SELECT count(*) FROM exchanges"), 1);
    rec.shutdown().unwrap();
    let kept: Vec<String> = corrupt_files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        kept,
        [
            "seg-+7.log",
            "seg-18446744073709551615.log",
            "spill-99999999999999999999.log"
        ]
    );
    assert!(j.join("notes.txt").exists(), "other files are left alone");
}

#[tokio::test]
async fn a_journal_of_an_unknown_version_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let j = jdir(dir.path());
    std::fs::create_dir_all(&j).unwrap();
    let mut file = agentcap_proxy::recorder::journal::encode_segment_header(99).to_vec();
    file.extend_from_slice(b"records of a future format");
    let path = j.join("seg-00000001.log");
    std::fs::write(&path, &file).unwrap();
    match Recorder::open(config(dir.path())) {
        Err(RecorderError::JournalVersion { version, path: p }) => {
            assert_eq!(version, 99);
            assert_eq!(p, path);
        }
        other => panic!("opened anyway: {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), file, "the file is untouched");
}

#[tokio::test]
async fn a_failing_journal_in_batched_mode_reuses_its_segment_and_logs_sparingly() {
    let logs_before = captured_logs().len();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.batch_rows = 1_000_000;
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    let one = |h: &RecorderHandle| {
        Ex::new("GET", "/v1/agents/ag_1")
            .reply(200, &agent(0, "x"))
            .end()
            .send(h);
    };
    one(&h);
    let mut sent = 1;
    wait_until("the first segment", || segs_in(dir.path()).len() == 1);
    let seg = segs_in(dir.path());

    // A full disk: every write fails. Keep the traffic going while the writer backs off.
    h.set_journal_fault(true);
    wait_until("the writer to retry", || {
        one(&h);
        sent += 1;
        h.stats().journal_errors >= 6
    });
    assert_eq!(segs_in(dir.path()), seg, "no new file per failed write");
    h.set_journal_fault(false);
    // The journal is written again once its back-off is over.
    let bytes = h.stats().journal_bytes;
    wait_until("the journal to recover", || {
        one(&h);
        sent += 1;
        h.stats().journal_bytes != bytes
    });
    assert_eq!(
        segs_in(dir.path()),
        seg,
        "the same segment is written again"
    );
    // Nothing was lost on the way to DuckDB.
    h.flush().await.unwrap();
    assert_eq!(count(&h, "SELECT count(*) FROM exchanges"), sent);
    let s = h.stats();
    assert!(s.journal_errors >= 6, "{s:?}");
    assert_eq!(s.records_dropped, 0);
    // One ERROR for the first failure; no WARN per failed write.
    let logs = captured_logs()[logs_before..].to_owned();
    let d = jdir(dir.path()).display().to_string();
    let noisy = logs
        .lines()
        .filter(|l| l.contains(&d) && (l.contains("ERROR") || l.contains("WARN")))
        .count();
    assert_eq!(noisy, 1, "{logs}");
}

/// A stream longer than the capture cap is derived as it arrives and only its capped rows are kept;
/// after a crash, the journal's replay must still store exactly the rows a live run stores.
#[tokio::test]
async fn capped_long_stream_replays_to_the_same_rows() {
    let mut events =
        vec![json!({"type": "conversation.response.started", "conversation_id": "conv_cap"})];
    for i in 0..300 {
        events.push(
            json!({"type": "message.output.delta", "output_index": 0, "id": "msg_1",
            "content_index": 0, "model": MODEL, "role": "assistant",
            "content": format!("{i:04} {}", "z".repeat(100))}),
        );
    }
    events.push(json!({"type": "conversation.response.done", "usage": small_usage()}));
    let ex = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": "hi", "stream": true}))
        .stream(&events, 11)
        .end();
    let id = ex.id;
    let msgs = ex.msgs.clone();
    let stored = |h: &RecorderHandle| {
        let ev = rows(
            h,
            &format!(
                "SELECT seq, event_type, data::VARCHAR, parse_error, offset_us, size, data_truncated FROM sse_events WHERE exchange_id = '{id}' ORDER BY seq"
            ),
        );
        let en = rows(
            h,
            &format!(
                "SELECT direction, position, text, truncated, raw::VARCHAR FROM entries WHERE exchange_id = '{id}' ORDER BY direction, position"
            ),
        );
        let x = rows(
            h,
            &format!(
                "SELECT event_count, response_truncated, response_parse_error, conversation_id FROM exchanges WHERE id = '{id}'"
            ),
        );
        (ev, en, x)
    };
    let small = |dir: &Path| RecorderConfig {
        capture_cap: 4096,
        ..config(dir)
    };

    // Live.
    let live_dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(small(live_dir.path())).unwrap();
    let h = rec.handle();
    for m in msgs.clone() {
        h.send(m);
    }
    h.flush().await.unwrap();
    let live = stored(&h);
    rec.shutdown().unwrap();
    assert_eq!(live.0.len(), 302, "a row per event");
    assert!(
        live.0.iter().any(|r| r[6] == json!(true)),
        "the cap was reached"
    );
    assert_eq!(live.0[301][1], json!("conversation.response.done"));
    assert_eq!(live.2[0][1], json!(true));
    let text_len = live.1.iter().find(|r| r[0] == json!("output")).unwrap()[2]
        .as_str()
        .unwrap()
        .len();
    assert!(text_len <= 4096, "entry text capped: {text_len}");

    // Crash before anything reaches DuckDB, then replay.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small(dir.path());
    cfg.flush_interval = Duration::from_secs(3600);
    cfg.batch_rows = 1_000_000;
    cfg.durability = Durability::Strict;
    let rec = Recorder::open(cfg.clone()).unwrap();
    let h = rec.handle();
    let mut msgs = msgs;
    let end = msgs.pop().unwrap();
    for m in msgs {
        h.send(m);
    }
    h.send_durable(end).await.expect("durable ack");
    assert_eq!(h.stats().exchanges_written, 0);
    rec.abort();
    drop(h);
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    assert_eq!(h.stats().replayed_exchanges, 1);
    assert_eq!(stored(&h), live, "replay stores what the live run stored");
    assert_eq!(h.stats().records_dropped, 0);
    rec.shutdown().unwrap();
}

/// A long stream's events: a start, `n` small deltas (no end event).
fn long_stream_events(conv: &str, n: usize) -> Vec<Value> {
    let mut events =
        vec![json!({"type": "conversation.response.started", "conversation_id": conv})];
    for i in 0..n {
        events.push(
            json!({"type": "message.output.delta", "output_index": 0, "id": "msg_1",
            "content_index": 0, "model": MODEL, "content": format!("{i} ")}),
        );
    }
    events
}

/// `data` in frames of 4 KiB.
fn frames_4k(data: &[u8]) -> Vec<Vec<u8>> {
    data.chunks(4096).map(<[u8]>::to_vec).collect()
}

/// `(rows, distinct seq, max seq + 1)` of an exchange's `sse_events`.
fn event_rows(h: &RecorderHandle, id: ExchangeId) -> (i64, i64, i64) {
    let r = rows(
        h,
        &format!(
            "SELECT count(*), count(DISTINCT seq), coalesce(max(seq) + 1, 0) FROM sse_events WHERE exchange_id = '{id}'"
        ),
    );
    let n = |i: usize| r[0][i].as_i64().unwrap();
    (n(0), n(1), n(2))
}

/// A stream past the capture cap hands its event rows to DuckDB in chunks while it runs (its
/// memory does not grow with its length), and a crash in the middle of it neither loses nor
/// duplicates a row: the replay deletes the chunks written for an exchange without a row and
/// derives it again in full.
#[tokio::test]
async fn long_stream_rows_are_written_while_it_runs_and_replayed_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RecorderConfig {
        capture_cap: 4096,
        ..config(dir.path())
    };
    let rec = Recorder::open(cfg.clone()).unwrap();
    let h = rec.handle();
    let events = long_stream_events("conv_long", 10_000);
    let ex = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": "hi", "stream": true}))
        .response(200, &[("content-type", "text/event-stream")])
        .frames(frames_4k(&sse(&events)));
    let id = ex.send(&h);
    h.flush().await.unwrap();
    let (written, distinct, _) = event_rows(&h, id);
    assert!(
        written >= 8192,
        "the running stream's rows are in DuckDB: {written}"
    );
    assert_eq!(written, distinct);
    assert_eq!(
        count(
            &h,
            &format!("SELECT count(*) FROM exchanges WHERE id = '{id}'")
        ),
        0
    );
    rec.abort();
    drop(h);

    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    assert_eq!(h.stats().replayed_exchanges, 1);
    assert_eq!(event_rows(&h, id), (10_001, 10_001, 10_001));
    assert_eq!(
        rows(
            &h,
            &format!("SELECT event_count, outcome FROM exchanges WHERE id = '{id}'")
        ),
        vec![vec![json!(10_001), json!("proxy_error")]]
    );

    // A complete long stream, live.
    let ex = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": "hi", "stream": true}))
        .response(200, &[("content-type", "text/event-stream")])
        .frames(frames_4k(&sse(&long_stream_events("conv_long2", 20_000))))
        .end();
    let id = ex.send(&h);
    h.flush().await.unwrap();
    assert_eq!(event_rows(&h, id), (20_001, 20_001, 20_001));
    assert_eq!(
        count(
            &h,
            &format!("SELECT event_count FROM exchanges WHERE id = '{id}'")
        ),
        20_001
    );
    let stats = rec.shutdown().unwrap();
    assert_eq!(stats.records_dropped, 0);
}

/// A recorder holding at most 256 KiB of rows, and a 30,000-event stream through it with its first
/// third sent and flushed (a chunk of its event rows is in DuckDB); the rest of its messages are
/// returned.
async fn long_stream_a_third_written(
    dir: &Path,
    conv: &str,
) -> (Recorder, RecorderHandle, ExchangeId, Vec<Msg>) {
    let mut cfg = RecorderConfig {
        capture_cap: 4096,
        ..config(dir)
    };
    cfg.max_pending_bytes = 256 * 1024;
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    let ex = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": "hi", "stream": true}))
        .response(200, &[("content-type", "text/event-stream")])
        .frames(frames_4k(&sse(&long_stream_events(conv, 30_000))))
        .end();
    let id = ex.id;
    let mut msgs = ex.msgs;
    let rest = msgs.split_off(msgs.len() / 3);
    for m in msgs {
        h.send(m);
    }
    h.flush().await.unwrap();
    assert!(event_rows(&h, id).0 > 0, "a chunk was written");
    (rec, h, id, rest)
}

/// While DuckDB fails, a long stream's chunks are held up to `max_pending_bytes`, then dropped from
/// memory and the exchange is derived again from the journal: its rows are still written once,
/// the ones a chunk wrote before the failure included.
#[tokio::test]
async fn long_stream_under_a_failing_duckdb_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, h, id, rest) = long_stream_a_third_written(dir.path(), "conv_fail").await;
    h.set_db_fault(true);
    for m in rest {
        h.send(m);
    }
    wait_until("failed DuckDB attempts with the exchange pending", || {
        let s = h.stats();
        s.db_errors >= 3 && s.pending_exchanges == 1
    });
    h.set_db_fault(false);
    h.flush().await.unwrap();
    assert_eq!(event_rows(&h, id), (30_001, 30_001, 30_001));
    assert_eq!(
        count(
            &h,
            &format!("SELECT event_count FROM exchanges WHERE id = '{id}'")
        ),
        30_001
    );
    let stats = rec.shutdown().unwrap();
    assert_eq!(stats.records_dropped, 0);
}

/// Behind a DuckDB slower than the traffic, a long stream's event chunks past `max_pending_bytes`
/// are dropped from memory and the exchanges that follow it go to DuckDB without their rows; all of
/// them are derived again from the journal, and every row is written once, the chunks written
/// before the slowdown included.
#[tokio::test]
async fn a_long_stream_behind_a_slow_duckdb_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, h, id, rest) = long_stream_a_third_written(dir.path(), "conv_slow_stream").await;
    h.set_db_paused(true);
    for m in rest {
        h.send(m);
    }
    let filler = "y".repeat(4096);
    for i in 0..100u64 {
        Ex::new("POST", "/v1/conversations")
            .json(&json!({"inputs": format!("q{i} {filler}")}))
            .reply(
                200,
                &turn_response(&format!("conv_after{i}"), small_usage()),
            )
            .end()
            .send(&h);
    }
    wait_until("everything queued for DuckDB within the byte bound", || {
        let s = h.stats();
        s.pending_exchanges == 101 && s.db_queue_bytes <= 256 * 1024
    });
    h.set_db_paused(false);
    h.flush().await.unwrap();
    assert_eq!(event_rows(&h, id), (30_001, 30_001, 30_001));
    assert_eq!(count(&h, "SELECT count(*) FROM exchanges"), 101);
    assert_eq!(
        count(
            &h,
            &format!(
                "SELECT count(*) FROM entries WHERE direction = 'output' AND exchange_id <> '{id}'"
            )
        ),
        300
    );
    let s = h.stats();
    assert!(s.exchanges_rederived > 0, "{s:?}");
    let stats = rec.shutdown().unwrap();
    assert_eq!(stats.records_dropped, 0);
    assert!(journal_files(dir.path()).is_empty());
}

/// When the derive queue is full (4,096 jobs), the journal writer derives the exchange itself and
/// counts it in `exchanges_derived_by_writer`; every exchange is still written.
#[tokio::test]
async fn a_full_derive_queue_is_derived_by_the_writer_and_counted() {
    const N: u64 = 5_000;
    // The queue's jobs, plus one held by each of at most four derivers.
    const FLOOR: u64 = N - 4_096 - 4;
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();
    h.set_derive_paused(true);
    for i in 0..N {
        Ex::new("POST", "/v1/conversations")
            .json(&json!({"inputs": "hi", "model": MODEL}))
            .reply(200, &turn_response(&format!("conv_dq_{i}"), small_usage()))
            .end()
            .send(&h);
    }
    crate::harness::poll_until(
        "the writer deriving",
        Duration::from_secs(120),
        async || (h.stats().exchanges_derived_by_writer >= FLOOR).then_some(()),
    )
    .await;
    h.set_derive_paused(false);
    h.flush().await.unwrap();
    let s = h.stats();
    assert!(s.exchanges_derived_by_writer <= N - 4_096, "{s:?}");
    assert_eq!(count(&h, "SELECT count(*) FROM exchanges"), 5_000);
    let stats = rec.shutdown().unwrap();
    assert_eq!(stats.records_dropped, 0);
}

/// The recording's DuckDB instance takes at most `db_memory_limit` (1 GiB unless configured, not DuckDB's
/// 80 % of the machine); a query on the live recording that needs more spills to DuckDB's temporary
/// directory, external access staying off, and still answers.
#[tokio::test]
async fn the_recordings_duckdb_memory_is_bounded_and_bigger_queries_spill() {
    let setting = |h: &RecorderHandle| scalar(h, "SELECT current_setting('memory_limit')");
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::open(config(dir.path())).unwrap();
    assert_eq!(setting(&rec.handle()), json!("1.0 GiB"));
    rec.shutdown().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.db_memory_limit = 32 * 1024 * 1024;
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    assert_eq!(setting(&h), json!("32.0 MiB"));
    // About 200 MB of distinct strings in a hash table.
    let sql = "SELECT count(*) FROM (SELECT DISTINCT i::VARCHAR || repeat('x', 30) FROM range(4000000) t(i))";
    assert_eq!(count(&h, sql), 4_000_000);
    assert_eq!(
        scalar(&h, "SELECT current_setting('enable_external_access')"),
        json!(false)
    );
    rec.shutdown().unwrap();
}

/// DuckDB checkpoints the recording's write-ahead log into the file once it passes
/// `db_checkpoint_threshold` (128 MiB unless configured, not DuckDB's 16 MiB): under the threshold
/// the WAL keeps what was written, past it the commit that crossed it empties it.
#[tokio::test]
async fn the_recordings_wal_is_checkpointed_past_db_checkpoint_threshold() {
    // 200 requests of 4 KiB each, in four commits: about 3 MB of WAL.
    let kept = wal_after_200_exchanges(None, "128.0 MiB").await;
    assert!(kept > 800 * 1024, "WAL {kept} bytes");
    let checkpointed = wal_after_200_exchanges(Some(256 * 1024), "256.0 KiB").await;
    assert!(checkpointed < 256 * 1024, "WAL {checkpointed} bytes");
}

/// The size of the WAL after 200 exchanges of 4 KiB, flushed every 50, with `db_checkpoint_threshold`
/// set to `threshold` (default: `None`), which DuckDB must report as `expect`.
async fn wal_after_200_exchanges(threshold: Option<u64>, expect: &str) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    if let Some(t) = threshold {
        cfg.db_checkpoint_threshold = t;
    }
    let db = cfg.db_path.clone();
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    assert_eq!(
        scalar(&h, "SELECT current_setting('checkpoint_threshold')"),
        json!(expect)
    );
    for i in 0..200 {
        Ex::new("POST", "/v1/conversations")
            .json(&json!({"inputs": "x".repeat(4096), "model": MODEL}))
            .reply(200, &turn_response(&format!("conv_wal_{i}"), small_usage()))
            .end()
            .send(&h);
        if i % 50 == 49 {
            h.flush().await.unwrap();
        }
    }
    let wal = std::fs::metadata(db.with_extension("duckdb.wal")).map_or(0, |m| m.len());
    rec.shutdown().unwrap();
    wal
}

/// The JSON operators work on the recording's JSON-text columns, through the recorder's query path
/// (the admin `/query`) and on a file (`agentcap query --db FILE`); `duckdb_extensions()`, which
/// would list a directory on disk, is refused with the reason instead of a file-system error.
#[tokio::test]
async fn recorded_json_columns_answer_the_json_operators() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let rec = Recorder::open(cfg.clone()).unwrap();
    let h = rec.handle();
    Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": "hi", "model": MODEL}))
        .reply(200, &turn_response("conv_json", small_usage()))
        .end()
        .send(&h);
    h.flush().await.unwrap();
    let sql = "SELECT tags->>'run', request_body->>'model', json_array_length(response_body->'outputs'), \
               response_headers->>'content-type' FROM exchanges";
    let want = vec![vec![
        json!("7"),
        json!(MODEL),
        json!(3),
        json!("application/json"),
    ]];
    assert_eq!(rows(&h, sql), want);
    rec.shutdown().unwrap();

    let file = query_file_read_only(&cfg.db_path, sql, &[], &QueryLimits::default()).unwrap();
    assert_eq!(file.rows, want);
    let e = query_file_read_only(
        &cfg.db_path,
        "SELECT * FROM duckdb_extensions()",
        &[],
        &QueryLimits::default(),
    )
    .expect_err("duckdb_extensions() is refused");
    assert!(
        matches!(&e, RecorderError::QueryRefused { reason } if reason.contains("built in")),
        "{e}"
    );
}

/// A batch's conversation updates wait in `conversation_updates` until a fold; a crash in between loses
/// nothing: the next open folds them.
#[tokio::test]
async fn conversation_updates_not_yet_folded_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.conversation_fold_interval = Duration::from_secs(3600);
    let rec = Recorder::open(cfg).unwrap();
    let h = rec.handle();
    let id = Ex::new("POST", "/v1/conversations")
        .json(&json!({"inputs": "hi", "stream": true}))
        .stream(&turn_events("conv_fold", small_usage()), 0)
        .end()
        .send(&h);
    wait_until("the exchange written", || h.stats().exchanges_written == 1);
    assert_eq!(count(&h, "SELECT count(*) FROM conversations"), 0);
    assert_eq!(
        count(
            &h,
            "SELECT count(*) FROM conversation_updates WHERE id = 'conv_fold'"
        ),
        1
    );
    rec.abort();
    drop(h);

    let rec = Recorder::open(config(dir.path())).unwrap();
    let h = rec.handle();
    assert_eq!(
        scalar(
            &h,
            "SELECT turns || ' ' || first_exchange_id || ' ' || last_exchange_id FROM conversations \
             WHERE id = 'conv_fold'"
        ),
        json!(format!("1 {id} {id}"))
    );
    assert_eq!(count(&h, "SELECT count(*) FROM conversation_updates"), 0);
    rec.shutdown().unwrap();
}
