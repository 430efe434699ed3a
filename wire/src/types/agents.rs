//! Agents API objects: `Agent`, create/update requests, the paged list and aliases.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Maybe;
use crate::types::completion::{CompletionArgs, GuardrailConfig};
use crate::types::tools::Tool;

/// The `object` value of an agent.
pub const AGENT_OBJECT: &str = "agent";

/// An agent (response of create / get / update / version endpoints).
///
/// `versions`, `deployment_chat` and `source` are required by the current spec but missing
/// from older doc captures, so they are optional here; a simulator should always set them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Agent {
    /// Always `"agent"`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object: Maybe<String>,
    /// `ag_…`.
    pub id: String,
    /// Active version (starts at 0).
    pub version: u64,
    /// All existing versions.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub versions: Maybe<Vec<u64>>,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// Model.
    pub model: String,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub description: Maybe<String>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub instructions: Maybe<String>,
    /// Tools (`[]` when none).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub tools: Maybe<Vec<Tool>>,
    /// Default completion arguments.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub completion_args: Maybe<CompletionArgs>,
    /// Guardrails.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub guardrails: Maybe<Vec<GuardrailConfig>>,
    /// Agent ids this agent may hand over to.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub handoffs: Maybe<Vec<String>>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub metadata: Maybe<Map<String, Value>>,
    /// Whether the agent is deployed to Le Chat.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub deployment_chat: Maybe<bool>,
    /// `api`, `playground` or `agent_builder_v1`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub source: Maybe<RequestSource>,
    /// Message of the active version.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub version_message: Maybe<String>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

string_enum! {
    /// `RequestSource`: where an agent was created.
    pub enum RequestSource {
        /// `api`
        Api = "api",
        /// `playground`
        Playground = "playground",
        /// `agent_builder_v1`
        AgentBuilderV1 = "agent_builder_v1",
    }
}

/// Body of `POST /v1/agents`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CreateAgentRequest {
    /// Model (required).
    pub model: String,
    /// Name (required).
    pub name: String,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub instructions: Maybe<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub description: Maybe<String>,
    /// Tools.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub tools: Maybe<Vec<Tool>>,
    /// Default completion arguments.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub completion_args: Maybe<CompletionArgs>,
    /// Guardrails.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub guardrails: Maybe<Vec<GuardrailConfig>>,
    /// Handoff targets (at least one when a list).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub handoffs: Maybe<Vec<String>>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub metadata: Maybe<Map<String, Value>>,
    /// Version message (≤ 500 chars).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub version_message: Maybe<String>,
    /// Fields not modelled here (the real API rejects them with 422 `extra_forbidden`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of `PATCH /v1/agents/{agent_id}`; every field is optional. Creates a new version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdateAgentRequest {
    /// Model.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub model: Maybe<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub name: Maybe<String>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub instructions: Maybe<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub description: Maybe<String>,
    /// Tools.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub tools: Maybe<Vec<Tool>>,
    /// Default completion arguments.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub completion_args: Maybe<CompletionArgs>,
    /// Guardrails.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub guardrails: Maybe<Vec<GuardrailConfig>>,
    /// Handoff targets.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub handoffs: Maybe<Vec<String>>,
    /// Le Chat deployment flag.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub deployment_chat: Maybe<bool>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub metadata: Maybe<Map<String, Value>>,
    /// Version message (≤ 500 chars).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub version_message: Maybe<String>,
    /// Fields not modelled here (the real API rejects them with 422 `extra_forbidden`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Response of `GET /v1/agents/pages`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentListPage {
    /// Always `"list"`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object: Maybe<String>,
    /// The agents of this page.
    pub data: Vec<Agent>,
    /// Cursor of the next page, `null` on the last page.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub next_page_token: Maybe<String>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An agent version alias.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentAliasResponse {
    /// Alias name (`^[a-z]([a-z0-9_-]*[a-z0-9])?$`, 1–64 chars).
    pub alias: String,
    /// Version it points to.
    pub version: u64,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
