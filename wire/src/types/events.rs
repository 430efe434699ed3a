//! Streaming events: the ten conversation SSE payloads and the `ConversationEvent` union.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Maybe;
use crate::sse::{SseEvent, encode_conversation_event};
use crate::types::chunks::DeltaContent;
use crate::types::entries::{ConfirmationStatus, Role};
use crate::types::usage::ConversationUsageInfo;

tagged_union! {
    /// One streamed conversation event, discriminated by the `type` in its data.
    ///
    /// Unknown event types are kept verbatim in [`ConversationEvent::Other`].
    pub enum ConversationEvent ("conversation event", serde) {
        /// First event; carries the conversation id.
        "conversation.response.started" => ResponseStarted(ResponseStartedEvent),
        /// Last event on success; carries usage.
        "conversation.response.done" => ResponseDone(ResponseDoneEvent),
        /// The run failed.
        "conversation.response.error" => ResponseError(ResponseErrorEvent),
        /// A text fragment or chunk of a `message.output` entry.
        "message.output.delta" => MessageOutputDelta(MessageOutputEvent),
        /// A built-in / connector tool started.
        "tool.execution.started" => ToolExecutionStarted(ToolExecutionStartedEvent),
        /// A fragment of a tool's arguments.
        "tool.execution.delta" => ToolExecutionDelta(ToolExecutionDeltaEvent),
        /// A tool finished.
        "tool.execution.done" => ToolExecutionDone(ToolExecutionDoneEvent),
        /// A fragment of a client function call.
        "function.call.delta" => FunctionCallDelta(FunctionCallEvent),
        /// A handoff started.
        "agent.handoff.started" => AgentHandoffStarted(AgentHandoffStartedEvent),
        /// A handoff finished.
        "agent.handoff.done" => AgentHandoffDone(AgentHandoffDoneEvent),
    }
}

impl ConversationEvent {
    /// Parses the `data` of an SSE event. The `type` inside the data decides the variant;
    /// the SSE `event:` name is not consulted.
    pub fn from_sse(event: &SseEvent) -> Result<Self, serde_json::Error> {
        serde_json::from_str(&event.data)
    }

    /// The event as a JSON value.
    pub fn to_value(&self) -> Value {
        // Cannot fail: all maps have string keys and no impl returns an error.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Encodes the event for the wire: `event: <type>\ndata: <compact json>\n\n`.
    pub fn to_sse(&self) -> Bytes {
        encode_conversation_event(&self.to_value())
    }

    /// The `output_index` of events that belong to an output entry (default 0 when absent);
    /// `None` for response-level and unknown events.
    pub fn output_index(&self) -> Option<u64> {
        let idx = match self {
            ConversationEvent::MessageOutputDelta(e) => &e.output_index,
            ConversationEvent::ToolExecutionStarted(e) => &e.output_index,
            ConversationEvent::ToolExecutionDelta(e) => &e.output_index,
            ConversationEvent::ToolExecutionDone(e) => &e.output_index,
            ConversationEvent::FunctionCallDelta(e) => &e.output_index,
            ConversationEvent::AgentHandoffStarted(e) => &e.output_index,
            ConversationEvent::AgentHandoffDone(e) => &e.output_index,
            _ => return None,
        };
        Some(idx.get().copied().unwrap_or(0))
    }

    /// The event's `created_at`, if present and non-null.
    pub fn created_at(&self) -> Option<&str> {
        let c = match self {
            ConversationEvent::ResponseStarted(e) => &e.created_at,
            ConversationEvent::ResponseDone(e) => &e.created_at,
            ConversationEvent::ResponseError(e) => &e.created_at,
            ConversationEvent::MessageOutputDelta(e) => &e.created_at,
            ConversationEvent::ToolExecutionStarted(e) => &e.created_at,
            ConversationEvent::ToolExecutionDelta(e) => &e.created_at,
            ConversationEvent::ToolExecutionDone(e) => &e.created_at,
            ConversationEvent::FunctionCallDelta(e) => &e.created_at,
            ConversationEvent::AgentHandoffStarted(e) => &e.created_at,
            ConversationEvent::AgentHandoffDone(e) => &e.created_at,
            ConversationEvent::Other(v) => return v.get("created_at").and_then(Value::as_str),
        };
        c.get().map(String::as_str)
    }

    /// `true` for `conversation.response.done` and `conversation.response.error`.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ConversationEvent::ResponseDone(_) | ConversationEvent::ResponseError(_)
        )
    }
}

/// `conversation.response.started`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResponseStartedEvent {
    /// Event time.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub created_at: Maybe<String>,
    /// The conversation (new for start/restart, the same for append).
    pub conversation_id: String,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `conversation.response.done`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResponseDoneEvent {
    /// Event time.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub created_at: Maybe<String>,
    /// Token usage of the turn.
    pub usage: ConversationUsageInfo,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `conversation.response.error`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResponseErrorEvent {
    /// Event time.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub created_at: Maybe<String>,
    /// Error message.
    pub message: String,
    /// Error code.
    pub code: i64,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `message.output.delta` (`MessageOutputEvent`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MessageOutputEvent {
    /// Event time.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub created_at: Maybe<String>,
    /// Position of the entry in the turn's outputs (default 0).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub output_index: Maybe<u64>,
    /// Entry id (`msg_…`).
    pub id: String,
    /// Position of the chunk in the entry's final content array (default 0).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub content_index: Maybe<u64>,
    /// Model.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub model: Maybe<String>,
    /// Agent.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub agent_id: Maybe<String>,
    /// Always `assistant`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub role: Maybe<Role>,
    /// A text fragment or one whole chunk.
    pub content: DeltaContent,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tool.execution.started`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolExecutionStartedEvent {
    /// Event time.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub created_at: Maybe<String>,
    /// Position of the entry in the turn's outputs (default 0).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub output_index: Maybe<u64>,
    /// Entry id (`tool_exec_…`).
    pub id: String,
    /// Model.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub model: Maybe<String>,
    /// Agent.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub agent_id: Maybe<String>,
    /// Tool name.
    pub name: String,
    /// Tool arguments. Required by the current spec but missing from the captured stream.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub arguments: Maybe<String>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tool.execution.delta`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolExecutionDeltaEvent {
    /// Event time.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub created_at: Maybe<String>,
    /// Position of the entry in the turn's outputs (default 0).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub output_index: Maybe<u64>,
    /// Entry id (`tool_exec_…`).
    pub id: String,
    /// Tool name.
    pub name: String,
    /// A fragment of the arguments string.
    pub arguments: String,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tool.execution.done`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolExecutionDoneEvent {
    /// Event time.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub created_at: Maybe<String>,
    /// Position of the entry in the turn's outputs (default 0).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub output_index: Maybe<u64>,
    /// Entry id (`tool_exec_…`).
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Free-form result info.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub info: Maybe<Map<String, Value>>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `function.call.delta` (`FunctionCallEvent`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionCallEvent {
    /// Event time.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub created_at: Maybe<String>,
    /// Position of the entry in the turn's outputs (default 0).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub output_index: Maybe<u64>,
    /// Entry id (`fc_…`).
    pub id: String,
    /// Model.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub model: Maybe<String>,
    /// Agent.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub agent_id: Maybe<String>,
    /// Function name.
    pub name: String,
    /// Tool call id.
    pub tool_call_id: String,
    /// A fragment of the arguments string.
    pub arguments: String,
    /// Human-in-the-loop state.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub confirmation_status: Maybe<ConfirmationStatus>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `agent.handoff.started`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentHandoffStartedEvent {
    /// Event time.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub created_at: Maybe<String>,
    /// Position of the entry in the turn's outputs (default 0).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub output_index: Maybe<u64>,
    /// Entry id (`handoff_…`).
    pub id: String,
    /// Agent handing over.
    pub previous_agent_id: String,
    /// Its name.
    pub previous_agent_name: String,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `agent.handoff.done`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentHandoffDoneEvent {
    /// Event time.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub created_at: Maybe<String>,
    /// Position of the entry in the turn's outputs (default 0).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub output_index: Maybe<u64>,
    /// Entry id (`handoff_…`).
    pub id: String,
    /// Agent taking over.
    pub next_agent_id: String,
    /// Its name.
    pub next_agent_name: String,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
