//! Conversations API objects: start / append / restart requests, the turn response,
//! history, messages and conversation objects.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::Maybe;
use crate::macros::into_object;
use crate::types::completion::{CompletionArgs, GuardrailConfig};
use crate::types::entries::{Entry, Inputs};
use crate::types::tools::Tool;
use crate::types::usage::ConversationUsageInfo;

/// The `object` value of a turn response.
pub const CONVERSATION_RESPONSE_OBJECT: &str = "conversation.response";
/// The `object` value of a history response.
pub const CONVERSATION_HISTORY_OBJECT: &str = "conversation.history";
/// The `object` value of a messages response.
pub const CONVERSATION_MESSAGES_OBJECT: &str = "conversation.messages";
/// The `object` value of a conversation.
pub const CONVERSATION_OBJECT: &str = "conversation";

string_enum! {
    /// `handoff_execution`: who runs a handoff.
    pub enum HandoffExecution {
        /// The caller handles the handoff.
        Client = "client",
        /// The platform runs the target agent (default).
        Server = "server",
    }
}

string_enum! {
    /// A client's answer to a pending tool call.
    pub enum Confirmation {
        /// Let the tool run.
        Allow = "allow",
        /// Do not run it.
        Deny = "deny",
    }
}

/// `agent_version`: a version number or an alias.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AgentVersion {
    /// A version number.
    Number(u64),
    /// An alias name (or a version number written as a string).
    Alias(String),
}

/// Body of `POST /v1/conversations` (start). The streaming variant is the same body with
/// `"stream": true`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConversationRequest {
    /// The new input(s) (required).
    pub inputs: Inputs,
    /// `true` for an SSE response.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub stream: Maybe<bool>,
    /// `false` to not store the conversation (server default: store).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub store: Maybe<bool>,
    /// Who runs handoffs.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub handoff_execution: Maybe<HandoffExecution>,
    /// Instructions (model conversations).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub instructions: Maybe<String>,
    /// Tools (model conversations).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub tools: Maybe<Vec<Tool>>,
    /// Completion arguments.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub completion_args: Maybe<CompletionArgs>,
    /// Guardrails (override the agent's).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub guardrails: Maybe<Vec<GuardrailConfig>>,
    /// Conversation name.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub name: Maybe<String>,
    /// Conversation description.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub description: Maybe<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub metadata: Maybe<Map<String, Value>>,
    /// Agent to talk to (use either this or `model`).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub agent_id: Maybe<String>,
    /// Agent version or alias.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub agent_version: Maybe<AgentVersion>,
    /// Model to talk to (a model conversation).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub model: Maybe<String>,
    /// Fields not modelled here (the real API rejects them with 422 `extra_forbidden`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ConversationRequest {
    /// `true` when the body asks for an SSE response.
    pub fn is_stream(&self) -> bool {
        self.stream.get().copied().unwrap_or(false)
    }
}

/// Body of `POST /v1/conversations/{id}` (append). Every field is optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConversationAppendRequest {
    /// The new input(s); may be left out for a pure tool-confirmation turn.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub inputs: Maybe<Inputs>,
    /// `true` for an SSE response.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub stream: Maybe<bool>,
    /// Store the new entries (default `true`).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub store: Maybe<bool>,
    /// Who runs handoffs (default `server`).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub handoff_execution: Maybe<HandoffExecution>,
    /// Per-turn completion arguments.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub completion_args: Maybe<CompletionArgs>,
    /// Answers to pending tool calls.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub tool_confirmations: Maybe<Vec<ToolCallConfirmation>>,
    /// Fields not modelled here (the real API rejects them with 422 `extra_forbidden`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ConversationAppendRequest {
    /// `true` when the body asks for an SSE response.
    pub fn is_stream(&self) -> bool {
        self.stream.get().copied().unwrap_or(false)
    }
}

/// One entry of `tool_confirmations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallConfirmation {
    /// The pending call.
    pub tool_call_id: String,
    /// `allow` or `deny`.
    pub confirmation: Confirmation,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `POST /v1/conversations/{id}/restart` (branch into a new conversation).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConversationRestartRequest {
    /// Entry to branch from (kept, with everything before it).
    pub from_entry_id: String,
    /// The new input(s).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub inputs: Maybe<Inputs>,
    /// `true` for an SSE response.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub stream: Maybe<bool>,
    /// Store the new conversation (default `true`).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub store: Maybe<bool>,
    /// Who runs handoffs (default `server`).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub handoff_execution: Maybe<HandoffExecution>,
    /// Completion arguments.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub completion_args: Maybe<CompletionArgs>,
    /// Guardrails.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub guardrails: Maybe<Vec<GuardrailConfig>>,
    /// Metadata of the new conversation.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub metadata: Maybe<Map<String, Value>>,
    /// Agent version or alias (default: the agent's current version).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub agent_version: Maybe<AgentVersion>,
    /// Fields not modelled here (the real API rejects them with 422 `extra_forbidden`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ConversationRestartRequest {
    /// `true` when the body asks for an SSE response.
    pub fn is_stream(&self) -> bool {
        self.stream.get().copied().unwrap_or(false)
    }
}

/// Non-streamed result of start / append / restart.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConversationResponse {
    /// Always `"conversation.response"`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object: Maybe<String>,
    /// The conversation (new for start / restart).
    pub conversation_id: String,
    /// Entries created by this turn, in order (inputs are not echoed).
    pub outputs: Vec<Entry>,
    /// Token usage.
    pub usage: ConversationUsageInfo,
    /// Guardrail evaluation results.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub guardrails: Maybe<Vec<Map<String, Value>>>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /v1/conversations/{id}/history`: every entry, inputs included.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConversationHistory {
    /// Always `"conversation.history"`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object: Maybe<String>,
    /// The conversation.
    pub conversation_id: String,
    /// All entries in order.
    pub entries: Vec<Entry>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `GET /v1/conversations/{id}/messages`: the history filtered to message entries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConversationMessages {
    /// Always `"conversation.messages"`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object: Maybe<String>,
    /// The conversation.
    pub conversation_id: String,
    /// `message.input` and `message.output` entries in order.
    pub messages: Vec<Entry>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A conversation object (`GET /v1/conversations[/{id}]`).
///
/// There is no discriminator on the wire: an object with a string `agent_id` is an
/// [`AgentConversation`], otherwise one with `model` is a [`ModelConversation`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(
    clippy::large_enum_variant,
    reason = "listed a page at a time; boxing would only make matching clumsier"
)]
pub enum Conversation {
    /// A conversation with an agent.
    Agent(AgentConversation),
    /// A conversation with a bare model.
    Model(ModelConversation),
}

impl Conversation {
    /// Conversation id.
    pub fn id(&self) -> &str {
        match self {
            Conversation::Agent(c) => &c.id,
            Conversation::Model(c) => &c.id,
        }
    }

    /// Parses a conversation object, choosing the shape as described on [`Conversation`].
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        let map = into_object(value, "conversation")?;
        if map.get("agent_id").is_some_and(Value::is_string) {
            serde_json::from_value(Value::Object(map)).map(Conversation::Agent)
        } else if map.contains_key("model") {
            serde_json::from_value(Value::Object(map)).map(Conversation::Model)
        } else {
            Err(serde_json::Error::custom(
                "conversation has neither `agent_id` nor `model`",
            ))
        }
    }
}

impl<'de> Deserialize<'de> for Conversation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Conversation::from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// `AgentConversation`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentConversation {
    /// Always `"conversation"`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object: Maybe<String>,
    /// `conv_…`.
    pub id: String,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// The agent.
    pub agent_id: String,
    /// Agent version or alias.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub agent_version: Maybe<AgentVersion>,
    /// Name.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub name: Maybe<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub description: Maybe<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub metadata: Maybe<Map<String, Value>>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ModelConversation`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelConversation {
    /// Always `"conversation"`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object: Maybe<String>,
    /// `conv_…`.
    pub id: String,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// The model.
    pub model: String,
    /// Instructions.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub instructions: Maybe<String>,
    /// Tools.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub tools: Maybe<Vec<Tool>>,
    /// Completion arguments.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub completion_args: Maybe<CompletionArgs>,
    /// Guardrails.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub guardrails: Maybe<Vec<GuardrailConfig>>,
    /// Name.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub name: Maybe<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub description: Maybe<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub metadata: Maybe<Map<String, Value>>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
