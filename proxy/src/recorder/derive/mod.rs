//! Derives the database rows of one exchange from its messages: the `exchanges` row, its SSE
//! events, conversation entries (request inputs and response / stream outputs), usage, agent
//! version snapshots and the conversation lineage update.
//!
//! This is a pure function of the messages (plus the capture settings), so the live writer, the
//! replay of a journal after a crash and the re-derivation after a long DuckDB outage all produce
//! the same rows.
//!
//! - this file: an exchange's messages folded into its bounded copy ([`ExchangeMsgs`]), then
//!   [`derive`], which builds the `exchanges` row and puts the others together;
//! - `rows`: the row types; `stream`: the stream path (frame by frame); `entities`: usage,
//!   entries, agents and conversations from JSON values.

mod entities;
mod rows;
mod stream;

use agentcap_wire::Entry;
use bytes::Bytes;
use serde_json::Value;

use crate::record::{ExchangeId, HttpVersion, Msg, OffsetUs, Outcome, RequestInfo, Timings};

use super::body::{BodyCopy, Redactor, StoredBody, header, headers_json, pairs_json};
use super::journal::system_time_to_us;
use super::ops;

use entities::{
    agent_rows, chat_usage_row, conversation_info, entries_of, entry_row, inputs_of,
    usage_from_value,
};
pub use rows::{AgentRow, ConvUpdate, Derived, EntryRow, EventRow, ExchangeRow, UsageRow};
pub use stream::STREAM_INFLATE_FACTOR;
use stream::{StreamDeriver, StreamKind};

/// Rows per chunk of `sse_events` rows a long stream hands to DuckDB while it runs
/// ([`ExchangeMsgs::take_event_chunk`]): about 0.5 MB of rows held per stream at most.
pub const EVENT_CHUNK_ROWS: usize = 4096;

/// Error text of exchanges the proxy never saw end.
pub const STOPPED_EARLY: &str = "proxy stopped before the exchange ended";

/// What derivation needs from the recorder configuration.
#[derive(Debug, Clone)]
pub struct DeriveCtx {
    /// Max stored bytes per body.
    pub capture_cap: usize,
    /// `--redact` patterns.
    pub redactor: Redactor,
    /// SSE event size limit.
    pub max_sse_event: usize,
}

/// The response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Receive offset.
    pub at_us: OffsetUs,
    /// HTTP version of the upstream leg (`None` for a response the proxy made up).
    pub upstream_version: Option<HttpVersion>,
}

/// The fields of `Msg::End`.
#[derive(Debug, Clone)]
pub struct EndInfo {
    /// How it ended.
    pub outcome: Outcome,
    /// Error text.
    pub error: Option<String>,
    /// Timings.
    pub timings: Timings,
    /// Request bytes.
    pub bytes_in: u64,
    /// Response bytes.
    pub bytes_out: u64,
}

/// A frame copied into an allocation of its own. The hot path hands over `Bytes` that share the
/// connection's read buffer (hyper splits each frame off a buffer of 8 KiB or more and reserves a new
/// one for the next read); kept until the exchange ends, a 300-byte event of a slow stream would pin
/// a whole buffer, and 1,000 open streams held about 220 KB each. Copying here, on the writer thread,
/// releases the buffer at once and keeps the hot path to a reference-count increment.
fn own(bytes: Bytes) -> Bytes {
    Bytes::copy_from_slice(&bytes)
}

/// What the recorder keeps of a response body while the exchange runs.
#[derive(Debug, Default)]
enum ResponseCopy {
    /// No body frame yet.
    #[default]
    Empty,
    /// A non-stream body: its bounded decoded copy.
    Body(BodyCopy),
    /// A stream's frames with their receive offsets, while they add up to at most the capture cap.
    Frames(Vec<(OffsetUs, Bytes)>, usize),
    /// A stream past the capture cap: derived as its frames arrive, frames not kept.
    Stream(Box<StreamDeriver>),
}

/// An exchange's messages, folded in `seq` order into a bounded copy.
///
/// Architecture Invariant: an exchange's copy stays bounded by the capture cap whatever the peers
/// send. Request and non-stream response bodies keep at most `capture_cap + 1` decoded bytes
/// ([`BodyCopy`]). A stream keeps its frames until they pass `capture_cap` bytes; from then on it
/// is decoded as its frames arrive ([`StreamDeriver`]) and only derived rows are kept, with event
/// data and assembled entry content each limited to `capture_cap` bytes per exchange.
#[derive(Debug)]
pub struct ExchangeMsgs {
    /// Exchange id.
    pub id: ExchangeId,
    /// The request (seq 0), if it was recorded.
    pub request: Option<Box<RequestInfo>>,
    request_body: Option<BodyCopy>,
    /// The response head.
    pub response: Option<ResponseHead>,
    response_body: ResponseCopy,
    response_wire: u64,
    response_frames: u64,
    last_at: OffsetUs,
    events_taken: usize,
    /// The end, if it was recorded.
    pub end: Option<EndInfo>,
}

/// The kind of stream an exchange's request asks for (the operation's base does not depend on the
/// body's `stream` flag).
fn stream_kind(request: Option<&RequestInfo>) -> StreamKind {
    let base = request.map_or("other", |r| {
        ops::base(ops::operation(&r.method, &r.path, false))
    });
    match base {
        "conversations.start" | "conversations.append" | "conversations.restart" => {
            StreamKind::Conversation
        }
        "chat.completions" | "agents.completions" => StreamKind::Chat,
        _ => StreamKind::Other,
    }
}

fn is_event_stream(headers: &[(String, String)]) -> bool {
    header(headers, "content-type").is_some_and(|ct| {
        ct.trim()
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
    })
}

impl ExchangeMsgs {
    /// An exchange with no messages yet.
    pub fn new(id: ExchangeId) -> Self {
        ExchangeMsgs {
            id,
            request: None,
            request_body: None,
            response: None,
            response_body: ResponseCopy::Empty,
            response_wire: 0,
            response_frames: 0,
            last_at: 0,
            events_taken: 0,
            end: None,
        }
    }

    /// Response body frames seen.
    pub fn response_frame_count(&self) -> u64 {
        self.response_frames
    }

    /// Takes the `sse_events` rows derived so far, once there are at least `min_rows` of them
    /// (only a stream past the capture cap derives rows before the exchange ends). The rows come
    /// out in `seq` order, each once; [`derive`] returns the rows not taken, and counts all of them
    /// in `event_count`. This is what keeps a long stream's memory bounded: the owner hands each
    /// chunk to DuckDB while the stream runs.
    pub fn take_event_chunk(&mut self, min_rows: usize) -> Option<Vec<EventRow>> {
        match &mut self.response_body {
            ResponseCopy::Stream(s) => {
                let rows = s.take_events(min_rows)?;
                self.events_taken += rows.len();
                Some(rows)
            }
            _ => None,
        }
    }

    /// Event rows handed out by [`ExchangeMsgs::take_event_chunk`] so far.
    pub fn events_taken(&self) -> usize {
        self.events_taken
    }

    /// About how many bytes of memory the copy holds (for the queue gauges and bounds).
    pub fn approx_bytes(&self) -> usize {
        let req = self.request_body.as_ref().map_or(0, BodyCopy::held_bytes);
        let resp = match &self.response_body {
            ResponseCopy::Empty => 0,
            ResponseCopy::Body(b) => b.held_bytes(),
            ResponseCopy::Frames(f, kept) => kept + f.len() * 48,
            ResponseCopy::Stream(s) => s.approx_bytes(),
        };
        512 + req + resp
    }

    /// Folds the next message in (callers feed them in `seq` order); body frames are reduced to
    /// the bounded copy `ctx` allows as they come.
    pub fn push(&mut self, msg: Msg, ctx: &DeriveCtx) {
        match msg {
            Msg::Request { info } => self.request = Some(info),
            Msg::RequestBody { bytes, .. } => {
                let headers = self.request.as_ref().map_or(&[][..], |r| &r.headers[..]);
                self.request_body
                    .get_or_insert_with(|| BodyCopy::new(headers, ctx.capture_cap))
                    .push(&bytes);
            }
            Msg::Response {
                status,
                headers,
                at_us,
                upstream_version,
                ..
            } => {
                self.response = Some(ResponseHead {
                    status,
                    headers,
                    at_us,
                    upstream_version,
                })
            }
            Msg::ResponseBody { at_us, bytes, .. } => self.push_response(at_us, bytes, ctx),
            Msg::End {
                outcome,
                error,
                timings,
                bytes_in,
                bytes_out,
                ..
            } => {
                self.end = Some(EndInfo {
                    outcome,
                    error,
                    timings,
                    bytes_in,
                    bytes_out,
                })
            }
        }
    }

    fn push_response(&mut self, at_us: OffsetUs, bytes: Bytes, ctx: &DeriveCtx) {
        self.response_wire += bytes.len() as u64;
        self.response_frames += 1;
        self.last_at = at_us;
        let headers = self.response.as_ref().map_or(&[][..], |r| &r.headers[..]);
        if let ResponseCopy::Empty = self.response_body {
            self.response_body = if is_event_stream(headers) {
                ResponseCopy::Frames(Vec::new(), 0)
            } else {
                ResponseCopy::Body(BodyCopy::new(headers, ctx.capture_cap))
            };
        }
        match &mut self.response_body {
            ResponseCopy::Empty => {}
            ResponseCopy::Body(b) => b.push(&bytes),
            ResponseCopy::Stream(s) => s.push(at_us, &bytes),
            ResponseCopy::Frames(frames, kept) => {
                *kept += bytes.len();
                frames.push((at_us, own(bytes)));
                if *kept > ctx.capture_cap {
                    let kind = stream_kind(self.request.as_deref());
                    let mut s = StreamDeriver::new(headers, kind, ctx);
                    for (at, f) in frames.drain(..) {
                        s.push(at, &f);
                    }
                    self.response_body = ResponseCopy::Stream(Box::new(s));
                }
            }
        }
    }

    /// The latest receive offset seen.
    fn last_offset(&self) -> OffsetUs {
        let head = self.response.as_ref().map_or(0, |r| r.at_us);
        self.last_at.max(head)
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn str_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// A JSON scalar as text (`agent_version` may be an integer or an alias).
fn scalar_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn body_parts(b: &mut StoredBody) -> (Option<String>, Option<String>, Option<String>, bool) {
    (
        b.take_json_text(),
        b.raw.take(),
        b.parse_error.take(),
        b.truncated,
    )
}

/// Derives every row of an exchange. An exchange without an `End` is recorded as a
/// `proxy_error` with [`STOPPED_EARLY`].
pub fn derive(mut x: ExchangeMsgs, ctx: &DeriveCtx) -> Derived {
    let end = x.end.clone().unwrap_or_else(|| EndInfo {
        outcome: Outcome::ProxyError,
        error: Some(STOPPED_EARLY.to_owned()),
        timings: Timings {
            response_headers_us: x.response.as_ref().map(|r| r.at_us),
            total_us: x.last_offset(),
            upstream_us: x.last_offset(),
        },
        bytes_in: 0,
        bytes_out: 0,
    });
    let redactor = &ctx.redactor;
    let mut row = ExchangeRow {
        id: x.id.to_string(),
        outcome: end.outcome.as_str().to_owned(),
        error: end.error.as_deref().map(|e| redactor.text(e).into_owned()),
        ..Default::default()
    };

    // Request.
    let empty = Vec::new();
    let req_headers = x.request.as_ref().map_or(&empty, |r| &r.headers);
    let mut req_body = x
        .request_body
        .take()
        .map_or_else(StoredBody::default, |b| b.store(req_headers, redactor));
    (
        row.request_body,
        row.request_body_raw,
        row.request_parse_error,
        row.request_truncated,
    ) = body_parts(&mut req_body);
    row.request_bytes = to_i64(req_body.wire_bytes.max(end.bytes_in));
    let req_value = req_body.value.as_ref();
    let stream_flag = req_value
        .and_then(|v| v.get("stream"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(info) = &x.request {
        row.started_at_us = Some(system_time_to_us(info.started_at));
        row.method = Some(info.method.clone());
        row.path = Some(info.path.clone());
        row.query = info.query.as_deref().map(|q| redactor.text(q).into_owned());
        row.client_addr = Some(info.client_addr.clone());
        row.request_headers = Some(headers_json(&info.headers, redactor));
        row.key_fingerprint = info.key_fingerprint.clone();
        row.session = info.session.clone();
        row.tags = Some(pairs_json(&info.tags, redactor));
        row.operation = ops::operation(&info.method, &info.path, stream_flag).to_owned();
    } else {
        row.operation = "other".to_owned();
    }

    // Response.
    let op = row.operation.clone();
    let base = ops::base(&op);
    let path_id = x
        .request
        .as_ref()
        .and_then(|r| ops::path_id(&r.path))
        .map(|(group, id)| (group, id.to_owned()));
    let status = x.response.as_ref().map(|r| r.status);
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    let resp_headers = x.response.as_ref().map_or(&empty, |r| &r.headers);
    row.status = status.map(i32::from);
    row.upstream_version = x
        .response
        .as_ref()
        .and_then(|r| r.upstream_version)
        .map(|v| v.as_str().to_owned());
    row.response_headers = x
        .response
        .as_ref()
        .map(|r| headers_json(&r.headers, redactor));
    row.is_stream = is_event_stream(resp_headers);
    row.response_bytes = to_i64(x.response_wire.max(end.bytes_out));
    let response_copy = std::mem::take(&mut x.response_body);

    let mut derived = Derived::default();
    let mut outputs: Option<(Vec<(Entry, Value)>, &'static str)> = None;
    let mut truncated_outputs: Vec<usize> = Vec::new();
    let mut response_conversation_id: Option<String> = None;
    let mut response_model: Option<String> = None;
    let mut response_agent: Option<(String, Option<String>)> = None;
    let mut response_value: Option<Value> = None;

    if row.is_stream {
        let s = match response_copy {
            ResponseCopy::Stream(s) => s.finish(),
            ResponseCopy::Frames(frames, _) => {
                let mut s =
                    StreamDeriver::new(resp_headers, stream_kind(x.request.as_deref()), ctx);
                for (at, f) in frames {
                    s.push(at, &f);
                }
                s.finish()
            }
            ResponseCopy::Empty | ResponseCopy::Body(_) => {
                StreamDeriver::new(resp_headers, stream_kind(x.request.as_deref()), ctx).finish()
            }
        };
        row.event_count = Some(i32::try_from(s.event_total).unwrap_or(i32::MAX));
        row.first_event_us = s.first_event_us;
        row.stream_error = s.stream_error;
        row.response_parse_error = s.error;
        row.response_truncated = s.truncated;
        truncated_outputs = s.truncated_outputs;
        derived.events = s.events;
        derived.usage = s.usage;
        response_conversation_id = s.conversation_id;
        response_model = s.model;
        if let Some(outs) = s.outputs {
            let with_raw = outs
                .into_iter()
                .map(|e| {
                    let raw = e.to_value();
                    (e, raw)
                })
                .collect();
            outputs = Some((with_raw, "stream"));
        }
    } else {
        let mut resp_body = match response_copy {
            ResponseCopy::Body(b) => b.store(resp_headers, redactor),
            _ => StoredBody::default(),
        };
        (
            row.response_body,
            row.response_body_raw,
            row.response_parse_error,
            row.response_truncated,
        ) = body_parts(&mut resp_body);
        response_value = resp_body.value;
    }

    if let Some(v) = &response_value {
        match base {
            "conversations.start" | "conversations.append" | "conversations.restart" => {
                response_conversation_id = str_of(v.get("conversation_id"));
                if let Some(items) = v.get("outputs").and_then(Value::as_array) {
                    outputs = Some((entries_of(items), "response"));
                }
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    derived.usage = Some(usage_from_value(u));
                }
            }
            "chat.completions" | "agents.completions" => {
                response_model = str_of(v.get("model"));
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    derived.usage = Some(chat_usage_row(u));
                }
            }
            _ if op.starts_with("agents.") && ok => {
                derived.agents = agent_rows(&op, v);
                if v.is_object() {
                    response_agent = str_of(v.get("id")).map(|id| (id, str_of(v.get("model"))));
                }
            }
            "conversations.get" if ok => {
                derived.conversations.extend(conversation_info(v));
            }
            "conversations.list" if ok => {
                if let Some(items) = v.as_array() {
                    derived
                        .conversations
                        .extend(items.iter().filter_map(conversation_info));
                }
            }
            _ => {}
        }
    }
    if !ok {
        derived.agents.clear();
    }

    // Conversation id of the exchange.
    let path_conversation = match &path_id {
        Some(("conversations", id)) => Some(id.clone()),
        _ => None,
    };
    row.conversation_id = match base {
        "conversations.start" | "conversations.restart" => response_conversation_id.clone(),
        _ => path_conversation
            .clone()
            .or(response_conversation_id.clone()),
    };

    // Entries: the turn's inputs and outputs, for successful turns.
    let is_turn = matches!(
        base,
        "conversations.start" | "conversations.append" | "conversations.restart"
    );
    let output_agent = outputs.as_ref().and_then(|(outs, _)| {
        outs.iter()
            .find_map(|(_, raw)| str_of(raw.get("agent_id")).map(|a| (a, str_of(raw.get("model")))))
    });
    let output_model = outputs
        .as_ref()
        .and_then(|(outs, _)| outs.iter().find_map(|(_, raw)| str_of(raw.get("model"))));
    if is_turn && ok {
        if let Some(inputs) = req_value.and_then(|v| v.get("inputs")) {
            for (i, (entry, raw)) in inputs_of(inputs).iter().enumerate() {
                derived
                    .entries
                    .push(entry_row(entry, raw, "input", i, "request"));
            }
        }
        if let Some((outs, source)) = &outputs {
            for (i, (entry, raw)) in outs.iter().enumerate() {
                let mut r = entry_row(entry, raw, "output", i, source);
                r.truncated = truncated_outputs.contains(&i);
                derived.entries.push(r);
            }
        }
    }

    // Agent and model of the exchange.
    let req_agent = str_of(req_value.and_then(|v| v.get("agent_id")));
    let req_model = str_of(req_value.and_then(|v| v.get("model")));
    let path_agent = match &path_id {
        Some(("agents", id)) => Some(id.clone()),
        _ => None,
    };
    row.agent_id = req_agent
        .clone()
        .or(path_agent)
        .or_else(|| response_agent.as_ref().map(|(id, _)| id.clone()))
        .or_else(|| output_agent.as_ref().map(|(a, _)| a.clone()))
        .or_else(|| {
            derived
                .conversations
                .first()
                .filter(|_| base == "conversations.get")
                .and_then(|c| c.agent_id.clone())
        });
    row.model = req_model
        .clone()
        .or_else(|| response_agent.as_ref().and_then(|(_, m)| m.clone()))
        .or_else(|| output_model.clone())
        .or(response_model)
        .or_else(|| {
            derived
                .conversations
                .first()
                .filter(|_| base == "conversations.get")
                .and_then(|c| c.model.clone())
        });

    // Conversation lineage.
    if is_turn
        && ok
        && let Some(conv_id) = row.conversation_id.clone()
    {
        let mut u = ConvUpdate {
            id: conv_id,
            agent_id: req_agent.or_else(|| output_agent.as_ref().map(|(a, _)| a.clone())),
            agent_version: scalar_text(req_value.and_then(|v| v.get("agent_version"))),
            model: req_model.or(output_model),
            exchange_id: Some(row.id.clone()),
            seen_us: row.started_at_us,
            turns: 1,
            ..Default::default()
        };
        if base == "conversations.restart" {
            u.parent_conversation_id = path_conversation;
            u.from_entry_id = str_of(req_value.and_then(|v| v.get("from_entry_id")));
        }
        derived.conversations.push(u);
    }
    for c in &mut derived.conversations {
        if c.seen_us.is_none() {
            c.seen_us = row.started_at_us;
        }
    }

    // Timings.
    let t = end.timings;
    row.response_headers_us = t
        .response_headers_us
        .or(x.response.as_ref().map(|r| r.at_us))
        .map(to_i64);
    row.total_us = Some(to_i64(t.total_us));
    row.upstream_us = Some(to_i64(t.upstream_us));
    row.overhead_us = Some(to_i64(t.total_us.saturating_sub(t.upstream_us)));

    derived.exchange = row;
    derived
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn ctx() -> DeriveCtx {
        DeriveCtx {
            capture_cap: 1 << 20,
            redactor: Redactor::default(),
            max_sse_event: 1 << 20,
        }
    }

    fn exchange(
        method: &str,
        path: &str,
        req: &str,
        status: u16,
        ct: &str,
        frames: &[&str],
    ) -> ExchangeMsgs {
        let id = ExchangeId::now_v7();
        let mut x = ExchangeMsgs::new(id);
        x.push(
            Msg::Request {
                info: Box::new(RequestInfo {
                    id,
                    started_at: SystemTime::now(),
                    method: method.into(),
                    path: path.into(),
                    query: None,
                    client_addr: "127.0.0.1:1".into(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    key_fingerprint: None,
                    session: None,
                    tags: vec![],
                }),
            },
            &ctx(),
        );
        x.push(
            Msg::RequestBody {
                id,
                seq: 1,
                bytes: Bytes::copy_from_slice(req.as_bytes()),
            },
            &ctx(),
        );
        x.push(
            Msg::Response {
                id,
                seq: 2,
                status,
                headers: vec![("content-type".into(), ct.into())],
                at_us: 100,
                upstream_version: None,
            },
            &ctx(),
        );
        for (i, f) in frames.iter().enumerate() {
            x.push(
                Msg::ResponseBody {
                    id,
                    seq: 3 + i as u32,
                    at_us: 200 + i as u64,
                    bytes: Bytes::copy_from_slice(f.as_bytes()),
                },
                &ctx(),
            );
        }
        x
    }

    #[test]
    fn missing_end_is_a_proxy_error() {
        let x = exchange("GET", "/v1/agents", "", 200, "application/json", &["[]"]);
        let d = derive(x, &ctx());
        assert_eq!(d.exchange.outcome, "proxy_error");
        assert_eq!(d.exchange.error.as_deref(), Some(STOPPED_EARLY));
        assert_eq!(d.exchange.total_us, Some(200));
    }

    #[test]
    fn chat_stream_usage_and_done_sentinel() {
        let frames = [
            "data: {\"id\":\"c\",\"model\":\"m-small\",\"choices\":[]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\ndata: [DONE]\n\n",
        ];
        let x = exchange(
            "POST",
            "/v1/chat/completions",
            r#"{"stream":true,"messages":[]}"#,
            200,
            "text/event-stream",
            &frames,
        );
        let d = derive(x, &ctx());
        assert_eq!(d.exchange.operation, "chat.completions_stream");
        assert_eq!(d.events.len(), 3);
        assert_eq!(d.events[2].data.as_deref(), Some("\"[DONE]\""));
        assert_eq!(d.events[2].parse_error, None);
        assert_eq!(d.usage.as_ref().unwrap().total_tokens, Some(7));
        assert_eq!(d.exchange.model.as_deref(), Some("m-small"));
        assert_eq!(d.exchange.first_event_us, Some(200));
        assert_eq!(d.events[1].offset_us, 201);
    }

    /// The fast paths (no JSON tree) and the generic one (forced by a redaction pattern that
    /// matches nothing) must derive the same rows.
    #[test]
    fn fast_and_generic_event_paths_agree() {
        let events = [
            r#"{"type":"conversation.response.started","conversation_id":"c1"}"#,
            r#"{"type":"message.output.delta","output_index":0,"id":"m1","content_index":0,"model":"m","agent_id":null,"role":"assistant","content":"Hel","extra_key":[1,{"a":2}]}"#,
            r#"{"type":"message.output.delta","output_index":0,"id":"m1","content_index":0,"content":"lo \u00e9\n"}"#,
            r#"{"type":"message.output.delta","output_index":0,"id":"m1","content_index":1,"content":{"type":"tool_reference","tool":"web_search","title":"t"}}"#,
            r#"{"type":"conversation.response.done","usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        ];
        let wire: String = events
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_str(e).unwrap();
                String::from_utf8(agentcap_wire::encode_conversation_event(&v).to_vec()).unwrap()
            })
            .collect();
        let x = || {
            exchange(
                "POST",
                "/v1/conversations",
                r#"{"inputs":"hi","stream":true}"#,
                200,
                "text/event-stream",
                &[wire.as_str()],
            )
        };
        let fast = derive(x(), &ctx());
        let mut generic_ctx = ctx();
        generic_ctx.redactor = Redactor::new(vec![regex::Regex::new("NEVER-MATCHES-x9").unwrap()]);
        let generic = derive(x(), &generic_ctx);
        assert_eq!(fast.entries, generic.entries);
        assert_eq!(fast.usage, generic.usage);
        assert_eq!(fast.exchange.conversation_id.as_deref(), Some("c1"));
        assert_eq!(fast.events.len(), 5);
        for (a, b) in fast.events.iter().zip(&generic.events) {
            assert_eq!(a.event_type, b.event_type);
            assert_eq!(a.parse_error, b.parse_error);
            let (va, vb): (Value, Value) = (
                serde_json::from_str(a.data.as_deref().unwrap()).unwrap(),
                serde_json::from_str(b.data.as_deref().unwrap()).unwrap(),
            );
            assert_eq!(va, vb);
        }
        let out = fast
            .entries
            .iter()
            .find(|e| e.direction == "output")
            .unwrap();
        assert_eq!(out.text.as_deref(), Some("Hello é\n"));
    }

    /// The exchange row carries the first error event's data, or says the capture cap left it out; a stream
    /// without an error event has none.
    #[test]
    fn a_stream_error_event_is_on_the_exchange_row() {
        let events = [
            r#"{"type":"conversation.response.started","conversation_id":"c1"}"#,
            r#"{"type":"conversation.response.error","message":"first","code":3000}"#,
            r#"{"type":"conversation.response.error","message":"second","code":3000}"#,
        ];
        let wire: String = events
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_str(e).unwrap();
                String::from_utf8(agentcap_wire::encode_conversation_event(&v).to_vec()).unwrap()
            })
            .collect();
        let x = |frames: &[&str]| {
            exchange(
                "POST",
                "/v1/conversations",
                r#"{"inputs":"hi","stream":true}"#,
                200,
                "text/event-stream",
                frames,
            )
        };
        let d = derive(x(&[wire.as_str()]), &ctx());
        assert_eq!(d.exchange.stream_error.as_deref(), Some(events[1]));
        let mut capped = ctx();
        capped.capture_cap = 70;
        let d = derive(x(&[wire.as_str()]), &capped);
        assert!(d.events[1].data_truncated);
        assert_eq!(
            d.exchange.stream_error.as_deref(),
            Some(r#""error event data not stored: capture cap reached""#)
        );
        let fine = &wire[..wire.find("event: conversation.response.error").unwrap()];
        assert_eq!(derive(x(&[fine]), &ctx()).exchange.stream_error, None);
    }

    #[test]
    fn failed_turns_record_no_entries() {
        let x = exchange(
            "POST",
            "/v1/conversations",
            r#"{"inputs":"hi","model":"m"}"#,
            422,
            "application/json",
            &[r#"{"detail":[]}"#],
        );
        let d = derive(x, &ctx());
        assert!(d.entries.is_empty());
        assert!(d.conversations.is_empty());
        assert_eq!(d.exchange.status, Some(422));
    }
}
