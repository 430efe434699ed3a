//! Derives the database rows of one exchange from its messages: the `exchanges` row, its SSE
//! events, conversation entries (request inputs and response / stream outputs), usage, agent
//! version snapshots and the conversation lineage update.
//!
//! This is a pure function of the messages (plus the capture settings), so the live writer, the
//! replay of a journal after a crash and the re-derivation after a long DuckDB outage all produce
//! the same rows.

use std::borrow::Cow;

use agentcap_wire::{
    ConversationEvent, ConversationUsageInfo, DeltaContent, Entry, EntryAssembler,
    FunctionArguments, Maybe, MessageOutputEvent, Role, SseDecoder, SseEvent,
};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::record::{ExchangeId, HttpVersion, Msg, OffsetUs, Outcome, RequestInfo, Timings};

use super::body::{
    BodyCopy, Encoding, Redactor, StoredBody, StreamDecoder, header, headers_json, pairs_json,
};
use super::journal::system_time_to_us;
use super::ops;

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

/// One `exchanges` row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExchangeRow {
    /// Exchange id: a UUIDv7 (time-ordered) in text form.
    pub id: String,
    /// When the request arrived (wall clock), in µs since the Unix epoch (`started_at`).
    pub started_at_us: Option<i64>,
    /// HTTP method.
    pub method: Option<String>,
    /// Path without the query string.
    pub path: Option<String>,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// API operation, e.g. `conversations.append_stream` (see `ops.rs`), or `other`.
    pub operation: String,
    /// Client socket address.
    pub client_addr: Option<String>,
    /// JSON object of request headers (lower-cased names; credentials replaced by `[REDACTED]`).
    pub request_headers: Option<String>,
    /// Request body as JSON text, when it parsed as JSON (after `--redact`).
    pub request_body: Option<String>,
    /// Request body text when it is not JSON, does not parse, or was truncated.
    pub request_body_raw: Option<String>,
    /// Why `request_body_raw` is set (parse error, truncation, encoding).
    pub request_parse_error: Option<String>,
    /// The request body was longer than the capture cap.
    pub request_truncated: bool,
    /// Request body bytes on the wire.
    pub request_bytes: i64,
    /// Upstream HTTP status (`None` when no response arrived).
    pub status: Option<i32>,
    /// JSON object of response headers, like `request_headers`.
    pub response_headers: Option<String>,
    /// Response body as JSON text, when JSON (never set for SSE: see `sse_events`).
    pub response_body: Option<String>,
    /// Response body text when not JSON, unparsable or truncated.
    pub response_body_raw: Option<String>,
    /// Why `response_body_raw` is set; for streams, an SSE decoding error.
    pub response_parse_error: Option<String>,
    /// The response body was longer than the capture cap.
    pub response_truncated: bool,
    /// Response body bytes on the wire (SSE included).
    pub response_bytes: i64,
    /// The response was `text/event-stream`.
    pub is_stream: bool,
    /// µs from start until the response head arrived.
    pub response_headers_us: Option<i64>,
    /// µs from start until the first SSE event was complete.
    pub first_event_us: Option<i64>,
    /// µs from start until the exchange ended.
    pub total_us: Option<i64>,
    /// µs spent waiting on the upstream.
    pub upstream_us: Option<i64>,
    /// `total_us - upstream_us`, floored at 0.
    pub overhead_us: Option<i64>,
    /// `complete`, `cancelled_by_client`, `upstream_error`, `proxy_error` or `timeout`.
    pub outcome: String,
    /// Error text when not complete.
    pub error: Option<String>,
    /// First 12 hex characters of the SHA-256 of the bearer key (never the key).
    pub key_fingerprint: Option<String>,
    /// The `X-Agentcap-Session` header.
    pub session: Option<String>,
    /// JSON object of the `X-Agentcap-Tag-<name>` values.
    pub tags: Option<String>,
    /// Conversation the exchange is about (the new id for start / restart).
    pub conversation_id: Option<String>,
    /// Agent involved, when known.
    pub agent_id: Option<String>,
    /// Model involved, when known.
    pub model: Option<String>,
    /// Number of SSE events (`None` for non-streamed responses).
    pub event_count: Option<i32>,
    /// HTTP version the upstream answered over (`HTTP/1.1`, `HTTP/2`, ...); `None` when the proxy answered itself.
    pub upstream_version: Option<String>,
}

/// One `sse_events` row (the exchange id comes from the owning [`Derived`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Position of the event in the stream, from 0.
    pub seq: i32,
    /// The `event:` field (or the data's `"type"` when the field is missing).
    pub event_type: Option<String>,
    /// JSON text: the event data, or a JSON string holding the raw text when it is not JSON;
    /// `None` once the exchange's stored event data reached the capture cap.
    pub data: Option<String>,
    /// Why `data` is a string (`None` for JSON and for the `[DONE]` sentinel).
    pub parse_error: Option<String>,
    /// Receive offset (µs from exchange start) of the frame that completed the event.
    pub offset_us: i64,
    /// Wire bytes the event took.
    pub size: i32,
    /// The data (and parse error) is not stored: the exchange's event data reached the cap.
    pub data_truncated: bool,
}

impl EventRow {
    /// About how many bytes of memory the row takes.
    pub fn approx_bytes(&self) -> usize {
        let o = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        std::mem::size_of::<EventRow>() + o(&self.data) + o(&self.parse_error) + o(&self.event_type)
    }
}

/// One `entries` row (exchange and conversation ids come from the owning [`Derived`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntryRow {
    /// Server-assigned id (`None` for inputs the server has not named).
    pub entry_id: Option<String>,
    /// `input` or `output`.
    pub direction: &'static str,
    /// Index within the turn's inputs or outputs.
    pub position: i32,
    /// The entry type: `message.input`, `message.output`, `function.call`, `tool.execution`, ...
    pub entry_type: Option<String>,
    /// `user` or `assistant` (messages).
    pub role: Option<String>,
    /// Producing agent (outputs); the next agent for handoffs.
    pub agent_id: Option<String>,
    /// Producing model (outputs).
    pub model: Option<String>,
    /// Message text (text chunks concatenated) or function result.
    pub text: Option<String>,
    /// Tool or function name.
    pub name: Option<String>,
    /// Function call or result id.
    pub tool_call_id: Option<String>,
    /// Tool or function arguments, as a string.
    pub arguments: Option<String>,
    /// The entry's `created_at` as the server sent it (RFC 3339).
    pub created_at: Option<String>,
    /// The entry's `completed_at` as the server sent it.
    pub completed_at: Option<String>,
    /// `request`, `response` or `stream` (rebuilt from the events).
    pub source: &'static str,
    /// The entry itself, as JSON text.
    pub raw: String,
    /// The entry's content was cut at the assembler's budget (the capture cap).
    pub truncated: bool,
}

/// One `usage` row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageRow {
    /// Prompt tokens.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens.
    pub completion_tokens: Option<i64>,
    /// Total tokens.
    pub total_tokens: Option<i64>,
    /// Connector tokens (`None` when absent or null).
    pub connector_tokens: Option<i64>,
    /// JSON object of tool name to call count (`None` when absent).
    pub connectors: Option<String>,
}

/// One `agents` row (first_seen and exchange id come from the owning [`Derived`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    /// Agent id.
    pub agent_id: String,
    /// Agent version.
    pub version: i64,
    /// The agent object as returned, as JSON text.
    pub snapshot: String,
}

/// What an exchange tells about a conversation; merged into the `conversations` row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConvUpdate {
    /// Conversation id.
    pub id: String,
    /// Agent, for agent conversations.
    pub agent_id: Option<String>,
    /// Requested agent version (integer or alias), when known.
    pub agent_version: Option<String>,
    /// Model, for model conversations (or the agent's).
    pub model: Option<String>,
    /// Set for turns (start / append / restart); `None` for information from GET / list.
    pub exchange_id: Option<String>,
    /// When the exchange started, in µs since the Unix epoch.
    pub seen_us: Option<i64>,
    /// Start / append / restart turns this exchange adds.
    pub turns: i64,
    /// For restarts: the conversation branched from.
    pub parent_conversation_id: Option<String>,
    /// For restarts: the entry branched from.
    pub from_entry_id: Option<String>,
}

/// All rows of one exchange.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    /// The `exchanges` row.
    pub exchange: ExchangeRow,
    /// The `sse_events` rows.
    pub events: Vec<EventRow>,
    /// The `entries` rows.
    pub entries: Vec<EntryRow>,
    /// The `usage` row, when the response reports usage.
    pub usage: Option<UsageRow>,
    /// The `agents` rows (agent versions the response showed).
    pub agents: Vec<AgentRow>,
    /// What the exchange tells about conversations.
    pub conversations: Vec<ConvUpdate>,
}

impl Derived {
    /// About how many bytes of memory the rows take (for the DuckDB queue's gauge and bound).
    pub fn approx_bytes(&self) -> usize {
        let o = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let x = &self.exchange;
        let exchange = 512
            + o(&x.request_headers)
            + o(&x.request_body)
            + o(&x.request_body_raw)
            + o(&x.response_headers)
            + o(&x.response_body)
            + o(&x.response_body_raw)
            + o(&x.error);
        let events: usize = self.events.iter().map(EventRow::approx_bytes).sum();
        let entries: usize = self
            .entries
            .iter()
            .map(|e| 256 + o(&e.text) + o(&e.arguments) + e.raw.len())
            .sum();
        let agents: usize = self.agents.iter().map(|a| 64 + a.snapshot.len()).sum();
        exchange + events + entries + agents + 128 * (self.conversations.len() + 1)
    }

    /// Rows this exchange adds across all tables.
    pub fn row_count(&self) -> usize {
        1 + self.events.len()
            + self.entries.len()
            + usize::from(self.usage.is_some())
            + self.agents.len()
            + self.conversations.len()
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

/// The streamed part of a response, decoded.
#[derive(Default)]
struct StreamResult {
    /// Event rows not handed out yet (see [`ExchangeMsgs::take_event_chunk`]).
    events: Vec<EventRow>,
    /// Event rows derived so far, handed out or not: the next row's `seq`.
    event_total: usize,
    first_event_us: Option<i64>,
    error: Option<String>,
    conversation_id: Option<String>,
    outputs: Option<Vec<Entry>>,
    /// Positions in `outputs` whose content was cut.
    truncated_outputs: Vec<usize>,
    usage: Option<UsageRow>,
    model: Option<String>,
    /// Something of the stream is not stored in full (event data, entry content, inflation).
    truncated: bool,
    /// Event data bytes (and parse error text) that may still be stored.
    data_room: usize,
    /// Event data bytes stored so far.
    data_used: usize,
}

/// What kind of payload the stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Conversation,
    Chat,
    Other,
}

/// An encoded stream is inflated up to this many times the capture cap; past that, no more of it
/// is decoded (the exchange is flagged `response_truncated`). Derivation does not keep the inflated
/// bytes, so this bounds CPU, not memory.
pub const STREAM_INFLATE_FACTOR: u64 = 64;

/// Decodes a stream frame by frame: `Content-Encoding`, SSE events, event rows, entry assembly.
/// Holds the SSE decoder's pending event (bounded by the maximum event size), the assembler
/// (bounded by the capture cap), the stored event data (bounded by the capture cap) and one small
/// row per event.
pub(crate) struct StreamDeriver {
    bytes_dec: StreamDecoder,
    sse: SseDecoder,
    assembler: Option<EntryAssembler>,
    chat_usage: Option<Value>,
    out: StreamResult,
    last_at: OffsetUs,
    redactor: Redactor,
    inflate_budget: u64,
}

impl std::fmt::Debug for StreamDeriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDeriver")
            .field("events", &self.out.events.len())
            .finish_non_exhaustive()
    }
}

impl StreamDeriver {
    fn new(headers: &[(String, String)], kind: StreamKind, ctx: &DeriveCtx) -> Self {
        let encoding = Encoding::from_headers(headers);
        let inflate_budget = match encoding {
            Encoding::Identity => u64::MAX,
            _ => (ctx.capture_cap as u64).saturating_mul(STREAM_INFLATE_FACTOR),
        };
        StreamDeriver {
            bytes_dec: StreamDecoder::with_budget(&encoding, inflate_budget),
            sse: SseDecoder::with_max_event_size(ctx.max_sse_event),
            assembler: (kind == StreamKind::Conversation)
                .then(|| EntryAssembler::with_budget(ctx.capture_cap)),
            chat_usage: None,
            out: StreamResult {
                data_room: ctx.capture_cap,
                ..Default::default()
            },
            last_at: 0,
            redactor: ctx.redactor.clone(),
            inflate_budget,
        }
    }

    /// About how many bytes of memory it holds.
    fn approx_bytes(&self) -> usize {
        let events: usize = self.out.events.len() * std::mem::size_of::<EventRow>();
        // Stored data is what the budget let through; the decoders hold their windows.
        events + self.out.data_used + 64 * 1024
    }

    /// The event rows derived since the last call, once there are at least `min_rows` of them.
    fn take_events(&mut self, min_rows: usize) -> Option<Vec<EventRow>> {
        (!self.out.events.is_empty() && self.out.events.len() >= min_rows)
            .then(|| std::mem::take(&mut self.out.events))
    }

    fn push(&mut self, at_us: OffsetUs, frame: &[u8]) {
        self.last_at = at_us;
        if self.out.error.is_some() || self.bytes_dec.capped() {
            return;
        }
        let decoded = self.bytes_dec.push(frame);
        match self.sse.push(&decoded) {
            Ok(events) => {
                for ev in events {
                    handle_event(
                        ev,
                        at_us,
                        &mut self.out,
                        self.assembler.as_mut(),
                        &mut self.chat_usage,
                        &self.redactor,
                    );
                }
            }
            Err(e) => self.out.error = Some(e.to_string()),
        }
    }

    fn finish(mut self) -> StreamResult {
        let mut out = self.out;
        let capped = self.bytes_dec.capped();
        if out.error.is_none() && !capped {
            let tail = self.bytes_dec.finish();
            let mut events = match self.sse.push(&tail) {
                Ok(evs) => evs,
                Err(e) => {
                    out.error = Some(e.to_string());
                    Vec::new()
                }
            };
            if out.error.is_none() {
                match self.sse.finish() {
                    Ok(Some(ev)) => events.push(ev),
                    Ok(None) => {}
                    Err(e) => out.error = Some(e.to_string()),
                }
            }
            for ev in events {
                handle_event(
                    ev,
                    self.last_at,
                    &mut out,
                    self.assembler.as_mut(),
                    &mut self.chat_usage,
                    &self.redactor,
                );
            }
        }
        if let Some(e) = self.bytes_dec.error() {
            out.error.get_or_insert_with(|| e.to_owned());
        }
        if capped {
            out.truncated = true;
            out.error.get_or_insert_with(|| {
                format!(
                    "the decoded stream passed {} bytes ({STREAM_INFLATE_FACTOR} x the capture cap): the rest was forwarded but not decoded",
                    self.inflate_budget
                )
            });
        }
        if let Some(asm) = self.assembler {
            let turn = asm.finish();
            out.truncated |= !turn.truncated.is_empty() || turn.dropped_outputs > 0;
            out.conversation_id = turn.conversation_id.clone();
            out.usage = turn.usage.as_ref().map(usage_row);
            out.truncated_outputs = turn.truncated;
            out.outputs = Some(turn.outputs);
        }
        if let Some(u) = self.chat_usage {
            out.usage = Some(chat_usage_row(&u));
        }
        out
    }
}

/// A `message.output.delta` whose content is a text fragment (the bulk of every stream), read
/// straight from the event text instead of through a JSON tree. Keys it does not name are skipped:
/// the assembler does not use them. Anything else goes through the generic path.
#[derive(Deserialize)]
struct TextDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    created_at: Maybe<String>,
    #[serde(default)]
    output_index: Maybe<u64>,
    id: String,
    #[serde(default)]
    content_index: Maybe<u64>,
    #[serde(default)]
    model: Maybe<String>,
    #[serde(default)]
    agent_id: Maybe<String>,
    #[serde(default)]
    role: Maybe<Role>,
    #[serde(borrow)]
    content: Cow<'a, str>,
}

impl TextDelta<'_> {
    fn into_event(self) -> ConversationEvent {
        ConversationEvent::MessageOutputDelta(MessageOutputEvent {
            created_at: self.created_at,
            output_index: self.output_index,
            id: self.id,
            content_index: self.content_index,
            model: self.model,
            agent_id: self.agent_id,
            role: self.role,
            content: DeltaContent::Text(self.content.into_owned()),
            extra: serde_json::Map::new(),
        })
    }
}

/// What the recorder needs from a chat-completion chunk.
#[derive(Deserialize)]
struct ChatChunk<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
}

/// Handles an event without building a JSON tree when its shape allows (a text delta of a
/// conversation stream, or a chat chunk). Gives the event back when it does not.
fn fast_event(
    ev: SseEvent,
    row: &mut EventRow,
    out: &mut StreamResult,
    assembler: Option<&mut EntryAssembler>,
    chat_usage: &mut Option<Value>,
) -> Option<SseEvent> {
    match assembler {
        Some(asm) => {
            if ev.event.as_deref() != Some("message.output.delta") {
                return Some(ev);
            }
            match serde_json::from_str::<TextDelta>(&ev.data) {
                Ok(d) if d.kind == "message.output.delta" => asm.push(&d.into_event()),
                _ => return Some(ev),
            }
        }
        None => match serde_json::from_str::<ChatChunk>(&ev.data) {
            Ok(c) => {
                if out.model.is_none() {
                    out.model = c.model.map(Cow::into_owned);
                }
                if ev.event.is_none() {
                    row.event_type = c.kind.map(Cow::into_owned);
                }
                if let Some(u) = c.usage
                    && let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(u.get())
                {
                    *chat_usage = Some(v);
                }
            }
            Err(_) => return Some(ev),
        },
    }
    // The data parsed, so it is valid JSON: it is stored as it came.
    if ev.event.is_some() {
        row.event_type = ev.event;
    }
    row.data = Some(ev.data);
    None
}

fn handle_event(
    ev: SseEvent,
    at_us: OffsetUs,
    out: &mut StreamResult,
    assembler: Option<&mut EntryAssembler>,
    chat_usage: &mut Option<Value>,
    redactor: &Redactor,
) {
    let seq = i32::try_from(out.event_total).unwrap_or(i32::MAX);
    let size = i32::try_from(ev.raw_len).unwrap_or(i32::MAX);
    let offset_us = to_i64(at_us);
    out.first_event_us.get_or_insert(offset_us);
    let done_sentinel = ev.is_done_sentinel();
    let mut row = EventRow {
        seq,
        event_type: None,
        data: None,
        parse_error: None,
        offset_us,
        size,
        data_truncated: false,
    };
    let mut assembler = assembler;
    let ev = if redactor.is_empty() && !done_sentinel {
        match fast_event(ev, &mut row, out, assembler.as_deref_mut(), chat_usage) {
            Some(ev) => ev,
            None => {
                push_row(out, row);
                return;
            }
        }
    } else {
        ev
    };
    let SseEvent { event, data, .. } = ev;
    row.event_type = event;
    match serde_json::from_str::<Value>(&data) {
        Ok(mut v) => {
            if redactor.is_empty() {
                row.data = Some(data);
            } else {
                redactor.value(&mut v);
                row.data = Some(v.to_string());
            }
            if row.event_type.is_none() {
                row.event_type = str_of(v.get("type"));
            }
            if let Some(asm) = assembler {
                match ConversationEvent::from_value(v) {
                    Ok(ce) => asm.push(&ce),
                    Err(e) => {
                        row.parse_error = Some(format!(
                            "not a valid {} event: {e}",
                            row.event_type.as_deref().unwrap_or("conversation")
                        ))
                    }
                }
            } else {
                if out.model.is_none() {
                    out.model = str_of(v.get("model"));
                }
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    *chat_usage = Some(u.clone());
                }
            }
        }
        Err(e) => {
            row.data = Some(Value::String(redactor.text(&data).into_owned()).to_string());
            if !done_sentinel {
                row.parse_error = Some(e.to_string());
            }
        }
    }
    push_row(out, row);
}

/// Adds an event row, storing its data (and parse error) while the exchange's event data stays
/// within the capture cap; once a row does not fit, it and every later row keep only their
/// type, offset and size, flagged `data_truncated`.
fn push_row(out: &mut StreamResult, mut row: EventRow) {
    let need =
        row.data.as_ref().map_or(0, String::len) + row.parse_error.as_ref().map_or(0, String::len);
    if need <= out.data_room {
        out.data_room -= need;
        out.data_used += need;
    } else {
        out.data_room = 0;
        row.data = None;
        row.parse_error = None;
        row.data_truncated = true;
        out.truncated = true;
    }
    out.events.push(row);
    out.event_total += 1;
}

fn usage_row(u: &ConversationUsageInfo) -> UsageRow {
    UsageRow {
        prompt_tokens: Some(to_i64(u.prompt())),
        completion_tokens: Some(to_i64(u.completion())),
        total_tokens: Some(to_i64(u.total())),
        connector_tokens: u.connector_tokens.get().copied().map(to_i64),
        connectors: u
            .connectors
            .get()
            .map(|m| Value::Object(m.clone()).to_string()),
    }
}

fn chat_usage_row(u: &Value) -> UsageRow {
    let int = |k: &str| u.get(k).and_then(Value::as_i64);
    UsageRow {
        prompt_tokens: int("prompt_tokens"),
        completion_tokens: int("completion_tokens"),
        total_tokens: int("total_tokens"),
        connector_tokens: int("connector_tokens"),
        connectors: u
            .get("connectors")
            .filter(|c| c.is_object())
            .map(Value::to_string),
    }
}

/// A usage row from a non-streamed response's `usage` value.
fn usage_from_value(u: &Value) -> UsageRow {
    match serde_json::from_value::<ConversationUsageInfo>(u.clone()) {
        Ok(info) => usage_row(&info),
        Err(_) => chat_usage_row(u),
    }
}

/// Parses a list of entries, keeping each item's JSON as `raw`.
fn entries_of(items: &[Value]) -> Vec<(Entry, Value)> {
    items
        .iter()
        .map(|item| {
            let entry =
                Entry::from_value(item.clone()).unwrap_or_else(|_| Entry::Other(item.clone()));
            (entry, item.clone())
        })
        .collect()
}

/// The request `inputs` as entries: a string is one user `message.input`.
fn inputs_of(inputs: &Value) -> Vec<(Entry, Value)> {
    match inputs {
        Value::String(_) => match serde_json::from_value::<agentcap_wire::Inputs>(inputs.clone()) {
            Ok(parsed) => parsed
                .to_entries()
                .into_iter()
                .map(|e| {
                    let raw = e.to_value();
                    (e, raw)
                })
                .collect(),
            Err(_) => Vec::new(),
        },
        Value::Array(items) => entries_of(items),
        _ => Vec::new(),
    }
}

fn entry_row(
    entry: &Entry,
    raw: &Value,
    direction: &'static str,
    position: usize,
    source: &'static str,
) -> EntryRow {
    let mut row = EntryRow {
        entry_id: entry.id().map(str::to_owned),
        direction,
        position: i32::try_from(position).unwrap_or(i32::MAX),
        entry_type: entry.type_name().map(str::to_owned),
        created_at: entry.created_at().map(str::to_owned),
        completed_at: entry.completed_at().map(str::to_owned),
        source,
        raw: raw.to_string(),
        ..Default::default()
    };
    match entry {
        Entry::MessageInput(e) => {
            row.role = Some(e.role.as_str().to_owned());
            row.text = Some(e.content.text());
        }
        Entry::MessageOutput(e) => {
            row.role = e.role.get().map(|r| r.as_str().to_owned());
            row.agent_id = e.agent_id.get().cloned();
            row.model = e.model.get().cloned();
            row.text = Some(e.content.text());
        }
        Entry::FunctionCall(e) => {
            row.agent_id = e.agent_id.get().cloned();
            row.model = e.model.get().cloned();
            row.name = Some(e.name.clone());
            row.tool_call_id = Some(e.tool_call_id.clone());
            row.arguments = Some(match &e.arguments {
                FunctionArguments::Text(s) => s.clone(),
                FunctionArguments::Object(m) => Value::Object(m.clone()).to_string(),
            });
        }
        Entry::FunctionResult(e) => {
            row.tool_call_id = Some(e.tool_call_id.clone());
            row.text = Some(e.result.clone());
        }
        Entry::ToolExecution(e) => {
            row.agent_id = e.agent_id.get().cloned();
            row.model = e.model.get().cloned();
            row.name = Some(e.name.clone());
            row.arguments = e.arguments.get().cloned();
        }
        Entry::AgentHandoff(e) => {
            row.agent_id = Some(e.next_agent_id.clone());
        }
        Entry::Other(v) => {
            row.role = str_of(v.get("role"));
            row.agent_id = str_of(v.get("agent_id"));
            row.model = str_of(v.get("model"));
            row.name = str_of(v.get("name"));
            row.tool_call_id = str_of(v.get("tool_call_id"));
            row.arguments = match v.get("arguments") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) if !other.is_null() => Some(other.to_string()),
                _ => None,
            };
            row.text = match v.get("content") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => str_of(v.get("result")),
            };
        }
    }
    row
}

/// Agent snapshots in a response: one agent object, a list, or a page.
fn agent_rows(op: &str, body: &Value) -> Vec<AgentRow> {
    let one = |v: &Value| -> Option<AgentRow> {
        let id = v.get("id")?.as_str()?;
        let version = v.get("version")?.as_i64()?;
        Some(AgentRow {
            agent_id: id.to_owned(),
            version,
            snapshot: v.to_string(),
        })
    };
    match op {
        "agents.create"
        | "agents.update"
        | "agents.get"
        | "agents.update_version"
        | "agents.get_version" => one(body).into_iter().collect(),
        "agents.list" | "agents.list_versions" => body
            .as_array()
            .map(|a| a.iter().filter_map(one).collect())
            .unwrap_or_default(),
        "agents.list_pages" => body
            .get("data")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(one).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Conversation information in a GET / list response.
fn conversation_info(body: &Value) -> Option<ConvUpdate> {
    Some(ConvUpdate {
        id: str_of(body.get("id"))?,
        agent_id: str_of(body.get("agent_id")),
        agent_version: scalar_text(body.get("agent_version")),
        model: str_of(body.get("model")),
        ..Default::default()
    })
}

fn body_parts(b: &StoredBody) -> (Option<String>, Option<String>, Option<String>, bool) {
    (
        b.json_text(),
        b.raw.clone(),
        b.parse_error.clone(),
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
    let req_body = x
        .request_body
        .take()
        .map_or_else(StoredBody::default, |b| b.store(req_headers, redactor));
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
    (
        row.request_body,
        row.request_body_raw,
        row.request_parse_error,
        row.request_truncated,
    ) = body_parts(&req_body);
    row.request_bytes = to_i64(req_body.wire_bytes.max(end.bytes_in));

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
        let resp_body = match response_copy {
            ResponseCopy::Body(b) => b.store(resp_headers, redactor),
            _ => StoredBody::default(),
        };
        (
            row.response_body,
            row.response_body_raw,
            row.response_parse_error,
            row.response_truncated,
        ) = body_parts(&resp_body);
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
