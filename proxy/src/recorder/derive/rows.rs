//! The rows derivation produces, one struct per table row, and [`Derived`], all rows of one
//! exchange. Plain data: nothing here parses or decides.

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
    /// The data of the stream's first `conversation.response.error` event (JSON text), or, when the capture
    /// cap left that data out, a JSON string saying so; `None` when no error event came.
    pub stream_error: Option<String>,
}

impl ExchangeRow {
    /// About how many bytes of memory the row takes: its long texts and a fixed share for the rest.
    pub fn approx_bytes(&self) -> usize {
        let o = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        512 + o(&self.request_headers)
            + o(&self.request_body)
            + o(&self.request_body_raw)
            + o(&self.response_headers)
            + o(&self.response_body)
            + o(&self.response_body_raw)
            + o(&self.error)
            + o(&self.stream_error)
    }
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
        let exchange = self.exchange.approx_bytes();
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
