//! `CompletionArgs` (sampling and output-format settings) and `GuardrailConfig`.
//!
//! Float settings such as `temperature` are kept as [`serde_json::Number`] rather than `f64`
//! so that an integer on the wire (`"temperature": 1`) is written back as an integer.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::Maybe;

/// `CompletionArgs`: per-agent defaults, overridable per request. Every field is optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CompletionArgs {
    /// Stop sequence(s).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub stop: Maybe<Stop>,
    /// −2..2.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub presence_penalty: Maybe<Number>,
    /// −2..2.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub frequency_penalty: Maybe<Number>,
    /// 0..1.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub temperature: Maybe<Number>,
    /// 0..1.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub top_p: Maybe<Number>,
    /// Maximum number of generated tokens.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub max_tokens: Maybe<u64>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub random_seed: Maybe<u64>,
    /// Expected completion (`{"type":"content","content":…}`).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub prediction: Maybe<Prediction>,
    /// Output format (text / JSON / JSON schema).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub response_format: Maybe<ResponseFormat>,
    /// Tool choice (default `auto`).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub tool_choice: Maybe<ToolChoice>,
    /// Reasoning effort for reasoning models.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub reasoning_effort: Maybe<ReasoningEffort>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop sequence.
    One(String),
    /// Several stop sequences.
    Many(Vec<String>),
}

/// `Prediction`: `{"type": "content", "content": …}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Prediction {
    /// Always `content` (has a default, so may be absent).
    #[serde(rename = "type", default, skip_serializing_if = "Maybe::is_absent")]
    pub kind: Maybe<String>,
    /// The predicted text.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub content: Maybe<String>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ResponseFormat`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResponseFormat {
    /// `text` (default), `json_object` or `json_schema`.
    #[serde(rename = "type", default, skip_serializing_if = "Maybe::is_absent")]
    pub kind: Maybe<ResponseFormatType>,
    /// The schema, for `json_schema`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub json_schema: Maybe<JsonSchema>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `JsonSchema` for `response_format.json_schema`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JsonSchema {
    /// Schema name.
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub description: Maybe<String>,
    /// The JSON schema itself.
    pub schema: Map<String, Value>,
    /// Strict adherence (default `false`).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub strict: Maybe<bool>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

string_enum! {
    /// `ResponseFormats`.
    pub enum ResponseFormatType {
        /// `text`
        Text = "text",
        /// `json_object`
        JsonObject = "json_object",
        /// `json_schema`
        JsonSchema = "json_schema",
    }
}

string_enum! {
    /// `ToolChoiceEnum`.
    pub enum ToolChoice {
        /// `auto`
        Auto = "auto",
        /// `none`
        None = "none",
        /// `any`
        Any = "any",
        /// `required`
        Required = "required",
    }
}

string_enum! {
    /// `ReasoningEffort`.
    pub enum ReasoningEffort {
        /// `none`
        None = "none",
        /// `minimal`
        Minimal = "minimal",
        /// `low`
        Low = "low",
        /// `medium`
        Medium = "medium",
        /// `high`
        High = "high",
        /// `xhigh`
        Xhigh = "xhigh",
    }
}

/// `GuardrailConfig`: moderation settings for an agent or a request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GuardrailConfig {
    /// Block with HTTP 403 when moderation itself fails (default `false`).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub block_on_error: Maybe<bool>,
    /// Moderation with the v1 model.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub moderation_llm_v1: Maybe<ModerationConfig>,
    /// Moderation with the v2 model.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub moderation_llm_v2: Maybe<ModerationConfig>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ModerationLLMV1Config` / `ModerationLLMV2Config` (same shape, different categories).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModerationConfig {
    /// Model override (should normally be left out).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub model_name: Maybe<String>,
    /// Category name → threshold (number or null).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub custom_category_thresholds: Maybe<Map<String, Value>>,
    /// Only evaluate the categories in `custom_category_thresholds`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub ignore_other_categories: Maybe<bool>,
    /// `none` (default) or `block`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub action: Maybe<ModerationAction>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

string_enum! {
    /// `ModerationLLMAction`.
    pub enum ModerationAction {
        /// `none`
        None = "none",
        /// `block`
        Block = "block",
    }
}
