//! The span mapping: one derived exchange ([`Derived`]: its `exchanges` row, entries, events and
//! usage) to the spans exported for it, in the OpenTelemetry GenAI conventions. A pure function
//! ([`spans_of`]): ids are derived from the exchange id, times from the recording, so the same
//! exchange always maps to the same spans.
//!
//! - One span per exchange, kind `CLIENT`, from the request's arrival to the response's last byte.
//!   GenAI operations (`invoke_agent`, `chat`, `create_agent`) are named `{operation} {agent or
//!   model}`; any other API call is named by its recorded operation (`conversations.get`).
//!   Time to first token is the attribute `gen_ai.response.time_to_first_chunk` (seconds) and the
//!   event `gen_ai.first_chunk` at that instant.
//! - One child span per output entry of type `tool.execution`, `function.call` or
//!   `agent.handoff`, kind `INTERNAL`: `execute_tool {name}` for the first two (tool type
//!   `extension` for a tool the API ran, `function` for a call the model asks the client to run)
//!   and `invoke_agent {next agent}` for a handoff. Their times are the receive offsets of their
//!   stream events when the turn was streamed, else the entry's `created_at` / `completed_at`,
//!   kept within the exchange's span; the exchange's times when neither is known.
//! - A valid `traceparent` request header makes the exchange's span a child of the caller's span
//!   in the caller's trace; a caller that did not sample its trace gets no spans. Without one, the
//!   trace id is the exchange id's 16 bytes.
//! - Message content (`gen_ai.input.messages`, `gen_ai.output.messages`,
//!   `gen_ai.tool.call.arguments`) only when asked for, and always through `--redact`.

use agentcap_wire::trace_context::TraceParent;
use agentcap_wire::vocab::headers::TRACEPARENT;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::gen_ai::{GEN_AI_PROVIDER, gen_ai_operation};
use crate::recorder::body::Redactor;
use crate::recorder::derive::{Derived, EntryRow, EventRow};

/// The kind of a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The exchange: a call to the API.
    Client,
    /// An entry inside the exchange.
    Internal,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    F64(f64),
}

/// One attribute.
pub type Attr = (&'static str, AttrValue);

/// A span event.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    /// Its name.
    pub name: &'static str,
    /// When, in µs since the Unix epoch.
    pub at_us: i64,
}

/// One span, as plain data (turned into the exporter's type on the export thread).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// Parent span id (the caller's for the exchange span, the exchange's for an entry).
    pub parent_span_id: Option<[u8; 8]>,
    /// The parent is the caller's span, in another process.
    pub parent_is_remote: bool,
    /// W3C trace flags (sampled).
    pub trace_flags: u8,
    /// Span name.
    pub name: String,
    /// Span kind.
    pub kind: Kind,
    /// Start, in µs since the Unix epoch.
    pub start_us: i64,
    /// End, in µs since the Unix epoch (never before the start).
    pub end_us: i64,
    /// Attributes.
    pub attributes: Vec<Attr>,
    /// Events.
    pub events: Vec<SpanEvent>,
    /// `Some(description)` when the span failed (status `ERROR`).
    pub error: Option<String>,
}

impl SpanRecord {
    /// The value of attribute `key`, if set.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// The string value of attribute `key`, if set and a string.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        match self.attr(key)? {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// What the mapping needs beyond the rows.
#[derive(Debug, Clone, Default)]
pub struct SpanOptions {
    /// Export message content (`--otlp-content`).
    pub content: bool,
    /// `--redact`: applied to every piece of content exported.
    pub redactor: Redactor,
}

/// Entry types that get a span of their own.
const TOOL_EXECUTION: &str = "tool.execution";
const FUNCTION_CALL: &str = "function.call";
const HANDOFF: &str = "agent.handoff";

/// Stream events that carry an entry's progress (`output_index`), by entry type. Deltas of
/// messages are not read: messages get no span of their own.
fn progress_event(event_type: &str) -> bool {
    matches!(
        event_type,
        "tool.execution.started"
            | "tool.execution.done"
            | "tool.execution.delta"
            | "function.call.delta"
            | "agent.handoff.started"
            | "agent.handoff.done"
    )
}

/// 8 bytes of SHA-256 over the exchange id and a label: a stable span id, never all zero.
fn span_id(exchange_id: &str, label: &str) -> [u8; 8] {
    let h = Sha256::new()
        .chain_update(exchange_id.as_bytes())
        .chain_update([0])
        .chain_update(label.as_bytes())
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// The trace id of an exchange without a caller's trace: its UUID's bytes (a hash of the id when
/// it is not a UUID).
fn own_trace_id(exchange_id: &str) -> [u8; 16] {
    if let Ok(u) = uuid::Uuid::parse_str(exchange_id)
        && !u.is_nil()
    {
        return *u.as_bytes();
    }
    let h = Sha256::digest(exchange_id.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

/// The caller's `traceparent`, read from the recorded request headers (a JSON object of lower-case
/// names); `None` when absent or invalid.
pub fn traceparent_of(request_headers: Option<&str>) -> Option<TraceParent> {
    let headers: Value = serde_json::from_str(request_headers?).ok()?;
    TraceParent::parse(headers.get(TRACEPARENT)?.as_str()?)
}

fn rfc3339_us(s: Option<&str>) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s?)
        .ok()
        .map(|t| t.timestamp_micros())
}

fn str_attr(attrs: &mut Vec<Attr>, key: &'static str, v: Option<&str>) {
    if let Some(v) = v.filter(|v| !v.is_empty()) {
        attrs.push((key, AttrValue::Str(v.to_owned())));
    }
}

/// `(first, last)` receive offsets (µs from the exchange's start) of the progress events of each
/// output index.
fn progress_offsets(events: &[EventRow]) -> Vec<(i64, i64, i64)> {
    let mut out: Vec<(i64, i64, i64)> = Vec::new();
    for ev in events {
        if !ev.event_type.as_deref().is_some_and(progress_event) {
            continue;
        }
        let Some(index) = ev
            .data
            .as_deref()
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .and_then(|v| v.get("output_index").and_then(Value::as_i64))
        else {
            continue;
        };
        match out.iter_mut().find(|(i, _, _)| *i == index) {
            Some((_, first, last)) => {
                *first = (*first).min(ev.offset_us);
                *last = (*last).max(ev.offset_us);
            }
            None => out.push((index, ev.offset_us, ev.offset_us)),
        }
    }
    out
}

/// The content of message entries as the conventions' message list (role and text parts),
/// redacted.
fn messages(entries: &[&EntryRow], redactor: &Redactor) -> Option<String> {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| {
            e.entry_type
                .as_deref()
                .is_some_and(|t| t.starts_with("message."))
        })
        .map(|e| {
            let text = redactor.text(e.text.as_deref().unwrap_or_default());
            json!({
                "role": e.role.as_deref().unwrap_or("user"),
                "parts": [{"type": "text", "content": text}],
            })
        })
        .collect();
    (!list.is_empty()).then(|| Value::Array(list).to_string())
}

/// The spans of one exchange, the exchange's first; empty when the caller's trace is not sampled
/// or the exchange has no start time.
pub fn spans_of(d: &Derived, opts: &SpanOptions) -> Vec<SpanRecord> {
    let x = &d.exchange;
    let Some(start_us) = x.started_at_us else {
        return Vec::new();
    };
    let end_us = start_us.saturating_add(x.total_us.unwrap_or(0).max(0));
    let caller = traceparent_of(x.request_headers.as_deref());
    if caller.is_some_and(|c| !c.sampled()) {
        return Vec::new();
    }
    let trace_id = caller.map_or_else(|| own_trace_id(&x.id), |c| c.trace_id);
    let root_id = span_id(&x.id, "exchange");
    let op = agentcap_wire::vocab::Operation::from_name(&x.operation).name();
    let gen_op = gen_ai_operation(op, x.agent_id.is_some());

    let mut attrs: Vec<Attr> = Vec::new();
    let create_name = (gen_op == Some("create_agent"))
        .then(|| {
            x.request_body
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
                .and_then(|v| v.get("name")?.as_str().map(str::to_owned))
        })
        .flatten();
    let name = match gen_op {
        Some(g) => {
            attrs.push(("gen_ai.operation.name", AttrValue::Str(g.to_owned())));
            attrs.push((
                "gen_ai.provider.name",
                AttrValue::Str(GEN_AI_PROVIDER.into()),
            ));
            let target = match g {
                "invoke_agent" => x.agent_id.as_deref(),
                "create_agent" => create_name.as_deref(),
                _ => x.model.as_deref(),
            };
            match target {
                Some(t) if !t.is_empty() => format!("{g} {t}"),
                _ => g.to_owned(),
            }
        }
        None => op.to_owned(),
    };
    str_attr(
        &mut attrs,
        "gen_ai.conversation.id",
        x.conversation_id.as_deref(),
    );
    str_attr(&mut attrs, "gen_ai.agent.id", x.agent_id.as_deref());
    str_attr(&mut attrs, "gen_ai.agent.name", create_name.as_deref());
    str_attr(&mut attrs, "gen_ai.request.model", x.model.as_deref());
    let response_model = d
        .entries
        .iter()
        .rev()
        .find(|e| e.direction == "output")
        .and_then(|e| e.model.as_deref());
    str_attr(&mut attrs, "gen_ai.response.model", response_model);
    let response_id = d
        .entries
        .iter()
        .rev()
        .find(|e| e.direction == "output" && e.entry_type.as_deref() == Some("message.output"))
        .and_then(|e| e.entry_id.as_deref());
    str_attr(&mut attrs, "gen_ai.response.id", response_id);
    if let Some(u) = &d.usage {
        if let Some(n) = u.prompt_tokens.filter(|n| *n >= 0) {
            attrs.push(("gen_ai.usage.input_tokens", AttrValue::Int(n)));
        }
        if let Some(n) = u.completion_tokens.filter(|n| *n >= 0) {
            attrs.push(("gen_ai.usage.output_tokens", AttrValue::Int(n)));
        }
    }
    let mut events = Vec::new();
    if let Some(t) = x.first_event_us.filter(|t| *t >= 0) {
        attrs.push((
            "gen_ai.response.time_to_first_chunk",
            AttrValue::F64(t as f64 / 1e6),
        ));
        events.push(SpanEvent {
            name: "gen_ai.first_chunk",
            at_us: start_us.saturating_add(t).min(end_us),
        });
    }
    str_attr(&mut attrs, "http.request.method", x.method.as_deref());
    str_attr(&mut attrs, "url.path", x.path.as_deref());
    if let Some(s) = x.status {
        attrs.push(("http.response.status_code", AttrValue::Int(i64::from(s))));
    }
    attrs.push(("agentcap.exchange.id", AttrValue::Str(x.id.clone())));
    attrs.push(("agentcap.operation", AttrValue::Str(x.operation.clone())));
    attrs.push(("agentcap.outcome", AttrValue::Str(x.outcome.clone())));
    let error = if x.outcome != "complete" {
        Some((x.outcome.clone(), x.error.clone().unwrap_or_default()))
    } else {
        x.status
            .filter(|s| *s >= 400)
            .map(|s| (s.to_string(), format!("HTTP {s}")))
    };
    if let Some((ty, _)) = &error {
        attrs.push(("error.type", AttrValue::Str(ty.clone())));
    }
    if opts.content {
        let inputs: Vec<&EntryRow> = d
            .entries
            .iter()
            .filter(|e| e.direction == "input")
            .collect();
        let outputs: Vec<&EntryRow> = d
            .entries
            .iter()
            .filter(|e| e.direction == "output")
            .collect();
        if let Some(m) = messages(&inputs, &opts.redactor) {
            attrs.push(("gen_ai.input.messages", AttrValue::Str(m)));
        }
        if let Some(m) = messages(&outputs, &opts.redactor) {
            attrs.push(("gen_ai.output.messages", AttrValue::Str(m)));
        }
    }
    let flags = caller.map_or(1, |c| c.flags);
    let mut spans = vec![SpanRecord {
        trace_id,
        span_id: root_id,
        parent_span_id: caller.map(|c| c.parent_id),
        parent_is_remote: caller.is_some(),
        trace_flags: flags,
        name,
        kind: Kind::Client,
        start_us,
        end_us,
        attributes: attrs,
        events,
        error: error.map(|(_, why)| why),
    }];

    let offsets = if x.is_stream {
        progress_offsets(&d.events)
    } else {
        Vec::new()
    };
    let clamp = |t: i64| t.clamp(start_us, end_us);
    for e in d.entries.iter().filter(|e| e.direction == "output") {
        let ty = e.entry_type.as_deref().unwrap_or_default();
        if ![TOOL_EXECUTION, FUNCTION_CALL, HANDOFF].contains(&ty) {
            continue;
        }
        let (s, t) = match offsets.iter().find(|(i, _, _)| *i == i64::from(e.position)) {
            Some((_, first, last)) => (
                clamp(start_us.saturating_add(*first)),
                clamp(start_us.saturating_add(*last)),
            ),
            None => match rfc3339_us(e.created_at.as_deref()) {
                Some(c) => {
                    let done = rfc3339_us(e.completed_at.as_deref()).unwrap_or(c);
                    (clamp(c), clamp(done.max(c)))
                }
                None => (start_us, end_us),
            },
        };
        let mut a: Vec<Attr> = Vec::new();
        let name = if ty == HANDOFF {
            let raw: Value = serde_json::from_str(&e.raw).unwrap_or(Value::Null);
            let next_name = raw.get("next_agent_name").and_then(Value::as_str);
            a.push((
                "gen_ai.operation.name",
                AttrValue::Str("invoke_agent".into()),
            ));
            a.push((
                "gen_ai.provider.name",
                AttrValue::Str(GEN_AI_PROVIDER.into()),
            ));
            str_attr(&mut a, "gen_ai.agent.id", e.agent_id.as_deref());
            str_attr(&mut a, "gen_ai.agent.name", next_name);
            str_attr(
                &mut a,
                "agentcap.handoff.previous_agent_id",
                raw.get("previous_agent_id").and_then(Value::as_str),
            );
            match next_name.or(e.agent_id.as_deref()) {
                Some(n) => format!("invoke_agent {n}"),
                None => "invoke_agent".to_owned(),
            }
        } else {
            let tool = e.name.as_deref().unwrap_or_default();
            a.push((
                "gen_ai.operation.name",
                AttrValue::Str("execute_tool".into()),
            ));
            a.push((
                "gen_ai.provider.name",
                AttrValue::Str(GEN_AI_PROVIDER.into()),
            ));
            str_attr(&mut a, "gen_ai.tool.name", Some(tool));
            let (call_id, tool_type) = if ty == FUNCTION_CALL {
                (e.tool_call_id.as_deref(), "function")
            } else {
                (e.entry_id.as_deref(), "extension")
            };
            str_attr(&mut a, "gen_ai.tool.call.id", call_id);
            a.push(("gen_ai.tool.type", AttrValue::Str(tool_type.into())));
            str_attr(&mut a, "gen_ai.agent.id", e.agent_id.as_deref());
            str_attr(&mut a, "gen_ai.request.model", e.model.as_deref());
            if opts.content {
                let args = e
                    .arguments
                    .as_deref()
                    .map(|s| opts.redactor.text(s).into_owned());
                str_attr(&mut a, "gen_ai.tool.call.arguments", args.as_deref());
            }
            if tool.is_empty() {
                "execute_tool".to_owned()
            } else {
                format!("execute_tool {tool}")
            }
        };
        str_attr(
            &mut a,
            "gen_ai.conversation.id",
            x.conversation_id.as_deref(),
        );
        str_attr(&mut a, "agentcap.entry.id", e.entry_id.as_deref());
        a.push(("agentcap.entry.type", AttrValue::Str(ty.to_owned())));
        a.push((
            "agentcap.entry.position",
            AttrValue::Int(i64::from(e.position)),
        ));
        spans.push(SpanRecord {
            trace_id,
            span_id: span_id(&x.id, &format!("output/{}", e.position)),
            parent_span_id: Some(root_id),
            parent_is_remote: false,
            trace_flags: flags,
            name,
            kind: Kind::Internal,
            start_us: s,
            end_us: t,
            attributes: a,
            events: Vec::new(),
            error: None,
        });
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::derive::{ExchangeRow, UsageRow};

    const ID: &str = "019a0000-0000-7000-8000-000000000001";
    const START: i64 = 1_700_000_000_000_000;

    fn entry(direction: &'static str, position: i32, ty: &str) -> EntryRow {
        EntryRow {
            direction,
            position,
            entry_type: Some(ty.into()),
            ..Default::default()
        }
    }

    fn event(ty: &str, index: i64, offset_us: i64) -> EventRow {
        EventRow {
            seq: 0,
            event_type: Some(ty.into()),
            data: Some(json!({"type": ty, "output_index": index}).to_string()),
            parse_error: None,
            offset_us,
            size: 10,
            data_truncated: false,
        }
    }

    /// A streamed agent turn: a web_search execution, a message, a function call, a handoff.
    fn turn(traceparent: Option<&str>) -> Derived {
        let headers = match traceparent {
            Some(t) => json!({"content-type": "application/json", "traceparent": t}),
            None => json!({"content-type": "application/json"}),
        };
        let mut input = entry("input", 0, "message.input");
        input.role = Some("user".into());
        input.text = Some("What about SECRET-42?".into());
        let mut tool = entry("output", 0, "tool.execution");
        tool.entry_id = Some("tool_exec_1".into());
        tool.name = Some("web_search".into());
        tool.arguments = Some(r#"{"query":"SECRET-42"}"#.into());
        tool.agent_id = Some("ag_1".into());
        tool.model = Some("mistral-medium-latest".into());
        let mut msg = entry("output", 1, "message.output");
        msg.entry_id = Some("msg_1".into());
        msg.role = Some("assistant".into());
        msg.text = Some("Here it is".into());
        msg.model = Some("mistral-medium-latest".into());
        let mut call = entry("output", 2, "function.call");
        call.entry_id = Some("fc_1".into());
        call.name = Some("get_weather".into());
        call.tool_call_id = Some("call_9".into());
        call.created_at = Some("2023-11-14T22:13:20.000500Z".into());
        let mut handoff = entry("output", 3, "agent.handoff");
        handoff.agent_id = Some("ag_2".into());
        handoff.raw = json!({"type": "agent.handoff", "previous_agent_id": "ag_1", "next_agent_id": "ag_2", "next_agent_name": "helper"}).to_string();
        Derived {
            exchange: ExchangeRow {
                id: ID.into(),
                started_at_us: Some(START),
                operation: "conversations.start_stream".into(),
                method: Some("POST".into()),
                path: Some("/v1/conversations".into()),
                request_headers: Some(headers.to_string()),
                status: Some(200),
                is_stream: true,
                first_event_us: Some(250),
                total_us: Some(1_000),
                outcome: "complete".into(),
                conversation_id: Some("conv_1".into()),
                agent_id: Some("ag_1".into()),
                model: Some("mistral-medium-latest".into()),
                ..Default::default()
            },
            events: vec![
                event("conversation.response.started", 0, 50),
                event("tool.execution.started", 0, 100),
                event("tool.execution.done", 0, 300),
                event("message.output.delta", 1, 400),
                event("agent.handoff.started", 3, 900),
                event("agent.handoff.done", 3, 950),
            ],
            entries: vec![input, tool, msg, call, handoff],
            usage: Some(UsageRow {
                prompt_tokens: Some(12),
                completion_tokens: Some(34),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn opts(content: bool) -> SpanOptions {
        SpanOptions {
            content,
            redactor: Redactor::new(vec![regex::Regex::new("SECRET-[0-9]+").unwrap()]),
        }
    }

    #[test]
    fn an_agent_turn_is_one_client_span_with_a_child_per_tool_call_and_handoff() {
        let spans = spans_of(&turn(None), &opts(false));
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "invoke_agent ag_1",
                "execute_tool web_search",
                "execute_tool get_weather",
                "invoke_agent helper"
            ]
        );
        let root = &spans[0];
        assert_eq!(root.kind, Kind::Client);
        assert_eq!(root.parent_span_id, None);
        assert_eq!(
            root.trace_id,
            *uuid::Uuid::parse_str(ID).unwrap().as_bytes()
        );
        assert_eq!((root.start_us, root.end_us), (START, START + 1_000));
        for (k, v) in [
            ("gen_ai.operation.name", "invoke_agent"),
            ("gen_ai.provider.name", "mistral_ai"),
            ("gen_ai.conversation.id", "conv_1"),
            ("gen_ai.agent.id", "ag_1"),
            ("gen_ai.request.model", "mistral-medium-latest"),
            ("gen_ai.response.id", "msg_1"),
        ] {
            assert_eq!(root.attr_str(k), Some(v), "{k}");
        }
        assert_eq!(
            root.attr("gen_ai.usage.input_tokens"),
            Some(&AttrValue::Int(12))
        );
        assert_eq!(
            root.attr("gen_ai.usage.output_tokens"),
            Some(&AttrValue::Int(34))
        );
        assert_eq!(
            root.attr("gen_ai.response.time_to_first_chunk"),
            Some(&AttrValue::F64(250e-6))
        );
        assert_eq!(root.events[0].at_us, START + 250);
        assert_eq!(root.error, None);
        for child in &spans[1..] {
            assert_eq!(child.kind, Kind::Internal);
            assert_eq!(child.trace_id, root.trace_id);
            assert_eq!(child.parent_span_id, Some(root.span_id));
            assert_ne!(child.span_id, root.span_id);
            assert!(child.start_us >= root.start_us && child.end_us <= root.end_us);
        }
        // A streamed entry's times are its events' receive offsets.
        let tool = &spans[1];
        assert_eq!((tool.start_us, tool.end_us), (START + 100, START + 300));
        assert_eq!(tool.attr_str("gen_ai.tool.type"), Some("extension"));
        assert_eq!(tool.attr_str("gen_ai.tool.call.id"), Some("tool_exec_1"));
        // Without events, the entry's created_at (no completed_at: a point in time).
        let call = &spans[2];
        assert_eq!((call.start_us, call.end_us), (START + 500, START + 500));
        assert_eq!(call.attr_str("gen_ai.tool.type"), Some("function"));
        assert_eq!(call.attr_str("gen_ai.tool.call.id"), Some("call_9"));
        let handoff = &spans[3];
        assert_eq!(handoff.attr_str("gen_ai.agent.id"), Some("ag_2"));
        assert_eq!(
            handoff.attr_str("agentcap.handoff.previous_agent_id"),
            Some("ag_1")
        );
        assert_eq!(
            (handoff.start_us, handoff.end_us),
            (START + 900, START + 950)
        );
        // The same exchange maps to the same spans.
        assert_eq!(spans, spans_of(&turn(None), &opts(false)));
    }

    #[test]
    fn the_callers_traceparent_parents_the_exchange_and_unsampled_traces_are_not_exported() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let spans = spans_of(&turn(Some(tp)), &opts(false));
        let caller = TraceParent::parse(tp).unwrap();
        assert_eq!(spans[0].trace_id, caller.trace_id);
        assert_eq!(spans[0].parent_span_id, Some(caller.parent_id));
        assert!(spans[0].parent_is_remote);
        assert!(spans.iter().all(|s| s.trace_id == caller.trace_id));
        assert!(!spans[1].parent_is_remote);
        let unsampled = tp.replace("-01", "-00");
        assert!(spans_of(&turn(Some(&unsampled)), &opts(false)).is_empty());
        // An invalid header is ignored: the exchange starts its own trace.
        let bad = spans_of(&turn(Some("00-zz")), &opts(false));
        assert_eq!(bad[0].parent_span_id, None);
    }

    #[test]
    fn content_only_when_asked_and_always_redacted() {
        let quiet = spans_of(&turn(None), &opts(false));
        let text = format!("{quiet:?}");
        assert!(
            !text.contains("SECRET") && !text.contains("What about"),
            "{text}"
        );
        assert!(quiet[0].attr("gen_ai.input.messages").is_none());
        let loud = spans_of(&turn(None), &opts(true));
        let inputs: Value =
            serde_json::from_str(loud[0].attr_str("gen_ai.input.messages").unwrap()).unwrap();
        assert_eq!(inputs[0]["role"], "user");
        assert_eq!(inputs[0]["parts"][0]["content"], "What about [REDACTED]?");
        let outputs: Value =
            serde_json::from_str(loud[0].attr_str("gen_ai.output.messages").unwrap()).unwrap();
        assert_eq!(outputs[0]["parts"][0]["content"], "Here it is");
        assert_eq!(
            loud[1].attr_str("gen_ai.tool.call.arguments"),
            Some(r#"{"query":"[REDACTED]"}"#)
        );
        assert!(!format!("{loud:?}").contains("SECRET"));
    }

    #[test]
    fn failures_set_error_type_and_other_operations_are_named_by_operation() {
        let mut d = turn(None);
        d.exchange.outcome = "upstream_error".into();
        d.exchange.error = Some("connection reset".into());
        let s = &spans_of(&d, &opts(false))[0];
        assert_eq!(s.attr_str("error.type"), Some("upstream_error"));
        assert_eq!(s.error.as_deref(), Some("connection reset"));
        let mut d = turn(None);
        d.exchange.status = Some(429);
        let s = &spans_of(&d, &opts(false))[0];
        assert_eq!(s.attr_str("error.type"), Some("429"));
        let get = Derived {
            exchange: ExchangeRow {
                id: ID.into(),
                started_at_us: Some(START),
                operation: "conversations.get".into(),
                status: Some(200),
                outcome: "complete".into(),
                total_us: Some(10),
                ..Default::default()
            },
            ..Default::default()
        };
        let spans = spans_of(&get, &opts(false));
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "conversations.get");
        assert!(spans[0].attr("gen_ai.operation.name").is_none());
        let chat = Derived {
            exchange: ExchangeRow {
                operation: "chat.completions".into(),
                model: Some("mistral-small-latest".into()),
                ..get.exchange.clone()
            },
            ..Default::default()
        };
        assert_eq!(
            spans_of(&chat, &opts(false))[0].name,
            "chat mistral-small-latest"
        );
        let create = Derived {
            exchange: ExchangeRow {
                operation: "agents.create".into(),
                request_body: Some(json!({"name": "router", "model": "m"}).to_string()),
                ..get.exchange.clone()
            },
            ..Default::default()
        };
        let s = &spans_of(&create, &opts(false))[0];
        assert_eq!(s.name, "create_agent router");
        assert_eq!(s.attr_str("gen_ai.agent.name"), Some("router"));
    }
}
