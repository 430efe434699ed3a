//! The tool union (`function`, `web_search`, `web_search_premium`, `code_interpreter`,
//! `image_generation`, `document_library`, `connector`) and tool configuration.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Maybe;

tagged_union! {
    /// A tool an agent or model conversation may use, discriminated by `type`.
    ///
    /// Unknown tool types are kept verbatim in [`Tool::Other`].
    pub enum Tool ("tool", serde) {
        /// A client-side function the model may call.
        "function" => Function(FunctionTool),
        /// Built-in web search.
        "web_search" => WebSearch(BuiltInTool),
        /// Built-in web search with premium news sources.
        "web_search_premium" => WebSearchPremium(BuiltInTool),
        /// Built-in code interpreter.
        "code_interpreter" => CodeInterpreter(BuiltInTool),
        /// Built-in image generation.
        "image_generation" => ImageGeneration(BuiltInTool),
        /// Search in document libraries.
        "document_library" => DocumentLibrary(DocumentLibraryTool),
        /// A custom connector (for example an MCP server registered as a connector).
        "connector" => Connector(ConnectorTool),
    }
}

/// Body of a `function` tool.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionTool {
    /// The function definition.
    pub function: FunctionDefinition,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A function definition (`Function` in the spec).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionDefinition {
    /// Function name.
    pub name: String,
    /// Description (default `""`).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub description: Maybe<String>,
    /// Strict schema adherence (default `false`; agents echo it back filled in).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub strict: Maybe<bool>,
    /// JSON schema of the parameters.
    pub parameters: Map<String, Value>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of the built-in tools that only take a `tool_configuration`
/// (`web_search`, `web_search_premium`, `code_interpreter`, `image_generation`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BuiltInTool {
    /// Optional include/exclude/confirmation settings.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub tool_configuration: Maybe<ToolConfiguration>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of a `document_library` tool.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DocumentLibraryTool {
    /// Library ids (UUIDs) to search in; at least one.
    pub library_ids: Vec<String>,
    /// Optional include/exclude/confirmation settings.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub tool_configuration: Maybe<ToolConfiguration>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Body of a `connector` tool (`CustomConnector` in the spec).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConnectorTool {
    /// Connector name or UUID.
    pub connector_id: String,
    /// Credentials passed to the connector.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub authorization: Maybe<ConnectorAuthorization>,
    /// Optional include/exclude/confirmation settings.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub tool_configuration: Maybe<ToolConfiguration>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Connector credentials: `{"type": "oauth2-token" | "api-key", "value": …}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConnectorAuthorization {
    /// `oauth2-token` or `api-key` (the spec gives each a default, so it may be absent).
    #[serde(rename = "type", default, skip_serializing_if = "Maybe::is_absent")]
    pub kind: Maybe<String>,
    /// The token or key.
    pub value: String,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ToolConfiguration`: which tool functions to expose and which need confirmation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolConfiguration {
    /// Only expose these (use `include` or `exclude`, not both).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub include: Maybe<Vec<String>>,
    /// Expose everything except these.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub exclude: Maybe<Vec<String>>,
    /// Tool names that need a client confirmation before they run.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub requires_confirmation: Maybe<Vec<String>>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
