//! The stream path: a streamed response decoded frame by frame (content encoding, SSE events, event
//! rows, entry assembly), with fast paths for the two event shapes that make up the bulk of every
//! stream (a conversation text delta, a chat chunk) that skip building a JSON tree.

use std::borrow::Cow;

use agentcap_wire::{
    ConversationEvent, DeltaContent, Entry, EntryAssembler, Maybe, MessageOutputEvent, Role,
    SseDecoder, SseEvent,
};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::record::OffsetUs;

use super::entities::{chat_usage_row, usage_row};
use super::rows::{EventRow, UsageRow};
use super::{DeriveCtx, str_of, to_i64};
use crate::recorder::body::{Encoding, Redactor, StreamDecoder};

/// The streamed part of a response, decoded.
#[derive(Default)]
pub(super) struct StreamResult {
    /// Event rows not handed out yet (see [`super::ExchangeMsgs::take_event_chunk`]).
    pub(super) events: Vec<EventRow>,
    /// Event rows derived so far, handed out or not: the next row's `seq`.
    pub(super) event_total: usize,
    pub(super) first_event_us: Option<i64>,
    pub(super) error: Option<String>,
    pub(super) conversation_id: Option<String>,
    pub(super) outputs: Option<Vec<Entry>>,
    /// Positions in `outputs` whose content was cut.
    pub(super) truncated_outputs: Vec<usize>,
    pub(super) usage: Option<UsageRow>,
    pub(super) model: Option<String>,
    /// Something of the stream is not stored in full (event data, entry content, inflation).
    pub(super) truncated: bool,
    /// Event data bytes (and parse error text) that may still be stored.
    pub(super) data_room: usize,
    /// Event data bytes stored so far.
    pub(super) data_used: usize,
    /// The first error event's data (see [`super::ExchangeRow::stream_error`]).
    pub(super) stream_error: Option<String>,
}

/// What kind of payload the stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamKind {
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
    pub(super) fn new(headers: &[(String, String)], kind: StreamKind, ctx: &DeriveCtx) -> Self {
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
    pub(super) fn approx_bytes(&self) -> usize {
        let events: usize = self.out.events.len() * std::mem::size_of::<EventRow>();
        // Stored data is what the budget let through; the decoders hold their windows.
        events + self.out.data_used + 64 * 1024
    }

    /// The event rows derived since the last call, once there are at least `min_rows` of them.
    pub(super) fn take_events(&mut self, min_rows: usize) -> Option<Vec<EventRow>> {
        (!self.out.events.is_empty() && self.out.events.len() >= min_rows)
            .then(|| std::mem::take(&mut self.out.events))
    }

    pub(super) fn push(&mut self, at_us: OffsetUs, frame: &[u8]) {
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

    pub(super) fn finish(mut self) -> StreamResult {
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
    if out.stream_error.is_none() && row.event_type.as_deref() == Some(STREAM_ERROR_EVENT) {
        out.stream_error = Some(
            row.data
                .clone()
                .unwrap_or_else(|| STREAM_ERROR_NOT_CAPTURED.to_owned()),
        );
    }
    out.events.push(row);
    out.event_total += 1;
}

/// The event type of a conversation stream's error event.
const STREAM_ERROR_EVENT: &str = "conversation.response.error";

/// `stream_error` when the error event's data was past the capture cap (a JSON string).
const STREAM_ERROR_NOT_CAPTURED: &str = "\"error event data not stored: capture cap reached\"";
