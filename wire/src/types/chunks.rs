//! Content chunks (`text`, `image_url`, `document_url`, `tool_file`, `tool_reference`,
//! `thinking`, `reference`) and the string-or-chunks message content.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::Maybe;
use crate::macros::json_kind;

tagged_union! {
    /// One content chunk, discriminated by `type`.
    ///
    /// Unknown chunk types (and objects without `type`) are kept verbatim in
    /// [`ContentChunk::Other`].
    pub enum ContentChunk ("content chunk", serde) {
        /// `{"type":"text","text":…}`
        "text" => Text(TextChunk),
        /// `{"type":"image_url","image_url":"<url>" | {url, detail?}}`
        "image_url" => ImageUrl(ImageUrlChunk),
        /// `{"type":"document_url","document_url":…,"document_name"?}`
        "document_url" => DocumentUrl(DocumentUrlChunk),
        /// A file produced by a built-in tool (code interpreter plot, generated image).
        "tool_file" => ToolFile(ToolFileChunk),
        /// A citation produced by a tool (for example a web search result).
        "tool_reference" => ToolReference(ToolReferenceChunk),
        /// Model reasoning; holds nested text / tool_reference / reference chunks.
        "thinking" => Thinking(ThinkChunk),
        /// Reference ids; appears inside `thinking` chunks.
        "reference" => Reference(ReferenceChunk),
    }
}

impl ContentChunk {
    /// A `text` chunk with the given text and no extra fields.
    pub fn text(text: impl Into<String>) -> Self {
        ContentChunk::Text(TextChunk {
            text: text.into(),
            extra: Map::new(),
        })
    }
}

/// `text` chunk body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TextChunk {
    /// The text.
    pub text: String,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `image_url` chunk body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrlChunk {
    /// A URL / data URI, or an object with `url` and `detail`.
    pub image_url: ImageUrl,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `image_url` value: a bare URL string or an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageUrl {
    /// `"https://…"` or `"data:image/png;base64,…"`.
    Url(String),
    /// `{"url": …, "detail": "low"|"auto"|"high"}`.
    Object(ImageUrlObject),
}

/// The object form of an `image_url` value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrlObject {
    /// URL or data URI.
    pub url: String,
    /// Requested resolution.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub detail: Maybe<ImageDetail>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

string_enum! {
    /// Image resolution hint (`ImageDetail`).
    pub enum ImageDetail {
        /// `low`
        Low = "low",
        /// `auto`
        Auto = "auto",
        /// `high`
        High = "high",
    }
}

/// `document_url` chunk body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DocumentUrlChunk {
    /// URL of the document.
    pub document_url: String,
    /// File name of the document.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub document_name: Maybe<String>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tool_file` chunk body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolFileChunk {
    /// The tool that made the file (a built-in connector name or any string).
    pub tool: String,
    /// File id (a UUID with dashes).
    pub file_id: String,
    /// File name, e.g. `plot_0.png`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub file_name: Maybe<String>,
    /// File type, e.g. `png`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub file_type: Maybe<String>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tool_reference` chunk body (a citation).
///
/// Observed web_search references carry an undocumented `"source": "brave"`; it ends up in
/// [`ToolReferenceChunk::extra`] and is written back unchanged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolReferenceChunk {
    /// The tool that produced the reference.
    pub tool: String,
    /// Title of the cited resource.
    pub title: String,
    /// URL of the cited resource.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub url: Maybe<String>,
    /// Favicon URL.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub favicon: Maybe<String>,
    /// Short description.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub description: Maybe<String>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `thinking` chunk body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ThinkChunk {
    /// Nested chunks: `text`, `tool_reference` and `reference` per the spec.
    pub thinking: Vec<ContentChunk>,
    /// Signature used to replay reasoning across turns.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub signature: Maybe<String>,
    /// Whether the thinking block is closed (default `true`; used for prefixing).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub closed: Maybe<bool>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `reference` chunk body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReferenceChunk {
    /// Referenced ids (integers or strings).
    pub reference_ids: Vec<ReferenceId>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One id in a `reference` chunk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReferenceId {
    /// An integer id.
    Int(i64),
    /// A string id.
    Text(String),
}

/// Entry content: a plain string or a list of chunks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text (the usual shape for answers without citations or files).
    Text(String),
    /// A list of chunks.
    Chunks(Vec<ContentChunk>),
}

impl Default for MessageContent {
    fn default() -> Self {
        MessageContent::Text(String::new())
    }
}

impl From<&str> for MessageContent {
    fn from(s: &str) -> Self {
        MessageContent::Text(s.to_owned())
    }
}

impl From<String> for MessageContent {
    fn from(s: String) -> Self {
        MessageContent::Text(s)
    }
}

impl MessageContent {
    /// The text of the content: the string itself, or the concatenation of all top-level
    /// `text` chunks (other chunks are skipped).
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(s) => s.clone(),
            MessageContent::Chunks(chunks) => chunks
                .iter()
                .filter_map(|c| match c {
                    ContentChunk::Text(t) => Some(t.text.as_str()),
                    _ => None,
                })
                .collect(),
        }
    }
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(MessageContent::Text(s)),
            Value::Array(items) => items
                .into_iter()
                .map(ContentChunk::from_value)
                .collect::<Result<Vec<_>, _>>()
                .map(MessageContent::Chunks)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "content must be a string or an array of chunks, found {}",
                json_kind(&other)
            ))),
        }
    }
}

/// The `content` of one `message.output.delta` event: a string or a single chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DeltaContent {
    /// A text fragment.
    Text(String),
    /// One whole chunk (for example a `tool_reference`).
    Chunk(ContentChunk),
}

impl Default for DeltaContent {
    fn default() -> Self {
        DeltaContent::Text(String::new())
    }
}

impl<'de> Deserialize<'de> for DeltaContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(DeltaContent::Text(s)),
            v @ Value::Object(_) => ContentChunk::from_value(v)
                .map(DeltaContent::Chunk)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "delta content must be a string or a chunk object, found {}",
                json_kind(&other)
            ))),
        }
    }
}
