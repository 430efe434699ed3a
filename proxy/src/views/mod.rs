//! Read-side views over the recording: the data behind `agentcap conversations list` and `show` (and the
//! UI's conversation pages). This module holds the typed shapes; [`sql`] the statements and their
//! parameters, [`decode`] the decoding of their rows, [`tree`] the assembly of a conversation's tree.
//! Rendering them as text is the `ui` crate's (`agentcap_ui::text`).
//!
//! Everything here is pure: a view hands SQL and its parameters to a `query` function (the admin listener of
//! a running proxy, or the DuckDB file opened read-only) and shapes the [`QueryResult`](crate::recorder::QueryResult).
//! Architecture Invariant: every value reaches the SQL as a `?` parameter, never pasted into its text. The
//! SQL sticks to DuckDB's core (no ICU, no JSON extension): timestamps and JSON come back cast to text,
//! counts cast to `BIGINT`, and time arithmetic happens in [`decode`].

use serde::Serialize;

pub mod decode;
pub mod sql;
pub mod tree;

pub use agentcap_wire::vocab::SIMULATED_LABEL;
pub use decode::{parse_ts, summaries};
pub use tree::{QueryFn, list, show};

// ---------------------------------------------------------------------------------------------------------
// Typed results
// ---------------------------------------------------------------------------------------------------------

/// One row of `conversations list`: a recorded conversation and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationSummary {
    /// Conversation id.
    pub id: String,
    /// Agent spoken to (none for model conversations).
    pub agent_id: Option<String>,
    /// Agent version, as recorded.
    pub agent_version: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Turns (start / append / restart exchanges) recorded.
    pub turns: i64,
    /// Tokens used by every recorded exchange of the conversation.
    pub total_tokens: i64,
    /// First time the recording saw it (RFC 3339, UTC).
    pub first_seen: Option<String>,
    /// Last time the recording saw it (RFC 3339, UTC).
    pub last_seen: Option<String>,
    /// From the start of its first exchange to the end of its last one.
    pub duration_us: Option<i64>,
    /// Recorded exchanges (turns, reads, deletes).
    pub exchanges: i64,
    /// Exchanges that failed: an HTTP error status, a stream ended by an error event, or an upstream / proxy
    /// error or timeout (a client going away is not counted).
    pub errors: i64,
    /// The conversation this one was restarted from, if it is a branch.
    pub parent_conversation_id: Option<String>,
    /// The parent's entry the branch starts after.
    pub from_entry_id: Option<String>,
    /// Some exchange of it was answered by agentcap's twin (its responses carry the
    /// `x-agentcap-upstream: simulated` header): what it shows is a "simulated upstream".
    pub simulated_upstream: bool,
}

/// Where a branch comes from: one step of the ancestor chain, root first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ancestor {
    /// An ancestor conversation.
    pub conversation_id: String,
    /// Its entry the next conversation of the chain was restarted from.
    pub from_entry_id: Option<String>,
}

/// Hot-path timings of a turn's exchange, in microseconds from its start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TurnTimings {
    /// Until the last byte reached the client.
    pub total_us: Option<i64>,
    /// Until the upstream's response headers arrived.
    pub response_headers_us: Option<i64>,
    /// Until the first SSE event arrived (streams only).
    pub first_event_us: Option<i64>,
    /// Time spent waiting on the upstream.
    pub upstream_us: Option<i64>,
    /// What the proxy added.
    pub overhead_us: Option<i64>,
}

/// Tokens of one exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TurnUsage {
    /// Prompt tokens.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens.
    pub completion_tokens: Option<i64>,
    /// Total tokens.
    pub total_tokens: Option<i64>,
    /// Tokens spent by connectors (web search, …).
    pub connector_tokens: Option<i64>,
}

/// Both agents of an `agent.handoff` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handoff {
    /// Agent handing over.
    pub previous_agent_id: Option<String>,
    /// Its name.
    pub previous_agent_name: Option<String>,
    /// Agent taking over.
    pub next_agent_id: Option<String>,
    /// Its name.
    pub next_agent_name: Option<String>,
}

/// One conversation entry of a turn, with the branches restarted from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryNode {
    /// Entry id (input entries usually have none on the wire).
    pub entry_id: Option<String>,
    /// `input` (sent by the client) or `output` (produced by the turn).
    pub direction: String,
    /// Position among the exchange's inputs or outputs.
    pub position: i64,
    /// Entry type: `message.input`, `message.output`, `tool.execution`, `function.call`, `function.result`,
    /// `agent.handoff`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Message role.
    pub role: Option<String>,
    /// Agent that produced it.
    pub agent_id: Option<String>,
    /// Model that produced it.
    pub model: Option<String>,
    /// Message text (chunks flattened), or a function result.
    pub text: Option<String>,
    /// Tool or function name.
    pub name: Option<String>,
    /// Function call id.
    pub tool_call_id: Option<String>,
    /// Tool or function arguments (JSON text).
    pub arguments: Option<String>,
    /// Creation time (RFC 3339, UTC).
    pub created_at: Option<String>,
    /// Completion time (RFC 3339, UTC).
    pub completed_at: Option<String>,
    /// `completed_at - created_at`.
    pub duration_us: Option<i64>,
    /// Where the recorder read it: `request`, `response` or `stream`.
    pub source: Option<String>,
    /// The agents of a handoff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Handoff>,
    /// Conversations restarted from this entry, in the order they were first seen.
    pub branches: Vec<ConversationTree>,
}

/// One turn: a start, append or restart exchange and its entries, inputs first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Turn {
    /// Exchange id.
    pub exchange_id: String,
    /// Operation (`conversations.append_stream`, …).
    pub operation: Option<String>,
    /// When the request arrived (RFC 3339, UTC).
    pub started_at: Option<String>,
    /// HTTP status.
    pub status: Option<i64>,
    /// How the exchange ended (`complete`, `upstream_error`, …).
    pub outcome: Option<String>,
    /// Error text, if any (the exchange's, e.g. a client that went away).
    pub error: Option<String>,
    /// The message of a `conversation.response.error` event that ended the stream.
    pub stream_error: Option<String>,
    /// `true` for an SSE response.
    pub is_stream: bool,
    /// SSE events received.
    pub event_count: Option<i64>,
    /// Timings.
    pub timings: TurnTimings,
    /// Tokens.
    pub usage: Option<TurnUsage>,
    /// Entries: the request's inputs, then the response's outputs.
    pub entries: Vec<EntryNode>,
}

/// `conversations show`: a conversation, its turns, and the branches restarted from it, recursively.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationTree {
    /// The conversation.
    pub conversation: ConversationSummary,
    /// When it is a branch: the chain of conversations it comes from, root first (only on the shown root).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Ancestor>,
    /// Turns in the order they happened.
    pub turns: Vec<Turn>,
    /// Branches whose `from_entry_id` is none of the recorded entries of this conversation (an input entry,
    /// whose id the traffic never showed, or an entry inherited from an ancestor).
    pub detached_branches: Vec<ConversationTree>,
}
