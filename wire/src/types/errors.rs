//! Error bodies: the FastAPI-style 422 `HTTPValidationError` and the generic
//! `{"object":"error",…}` body.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Maybe;

/// 422 body: `{"detail": [ValidationErrorItem, …]}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HttpValidationError {
    /// One item per validation failure.
    pub detail: Vec<ValidationErrorItem>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One validation failure (`ValidationError` in the spec).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ValidationErrorItem {
    /// Path to the offending value, e.g. `["body", "inputs", 0, "role"]`.
    pub loc: Vec<LocSegment>,
    /// Human-readable message, e.g. `Extra inputs are not permitted`.
    pub msg: String,
    /// Machine-readable kind, e.g. `extra_forbidden`, `missing`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending input value.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub input: Maybe<Value>,
    /// Extra context, e.g. `{"expected": "'user' or 'assistant'"}`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub ctx: Maybe<Map<String, Value>>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One segment of a validation error location.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LocSegment {
    /// An array index.
    Index(i64),
    /// An object key (or `body` / `query` / `path`).
    Key(String),
}

impl From<&str> for LocSegment {
    fn from(s: &str) -> Self {
        LocSegment::Key(s.to_owned())
    }
}

impl From<i64> for LocSegment {
    fn from(i: i64) -> Self {
        LocSegment::Index(i)
    }
}

/// Generic error body: `{"object":"error","message":…,"type":…,"param":…,"code":…}`.
///
/// Every field is optional so that the gateway variants seen in the wild
/// (`{"message":"Unauthorized","request_id":…}`) parse too; unknown keys such as
/// `request_id` or `raw_status_code` are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ApiError {
    /// `"error"` (one guardrail variant writes `"Error"`).
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub object: Maybe<String>,
    /// A message string; some 422 variants put a `{"detail": […]}` object here instead.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub message: Maybe<ErrorMessage>,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`, `server_error`, …
    #[serde(rename = "type", default, skip_serializing_if = "Maybe::is_absent")]
    pub kind: Maybe<String>,
    /// The offending parameter.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub param: Maybe<String>,
    /// Error code: a string such as `"unknown_model"` / `"1300"`, or an integer such as `3201`.
    #[serde(default, skip_serializing_if = "Maybe::is_absent")]
    pub code: Maybe<ErrorCode>,
    /// Fields not modelled here, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// A documented-style error body with `object: "error"` and `param: null`.
    pub fn new(
        message: impl Into<String>,
        kind: impl Into<String>,
        code: Option<ErrorCode>,
    ) -> Self {
        ApiError {
            object: Maybe::Present("error".to_owned()),
            message: Maybe::Present(ErrorMessage::Text(message.into())),
            kind: Maybe::Present(kind.into()),
            param: Maybe::Null,
            code: Maybe::some_or_null(code),
            extra: Map::new(),
        }
    }

    /// The message if it is a plain string.
    pub fn message_text(&self) -> Option<&str> {
        match self.message.get()? {
            ErrorMessage::Text(s) => Some(s),
            ErrorMessage::Structured(_) => None,
        }
    }
}

/// The `message` of an [`ApiError`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorMessage {
    /// A plain message.
    Text(String),
    /// Any other JSON (for example a wrapped `{"detail": […]}`).
    Structured(Value),
}

/// The `code` of an [`ApiError`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorCode {
    /// An integer code.
    Int(i64),
    /// A string code.
    Text(String),
}

impl From<&str> for ErrorCode {
    fn from(s: &str) -> Self {
        ErrorCode::Text(s.to_owned())
    }
}

impl From<i64> for ErrorCode {
    fn from(i: i64) -> Self {
        ErrorCode::Int(i)
    }
}

/// Any error body the API returns, told apart by shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ErrorBody {
    /// A body whose `detail` is an array of validation items.
    Validation(HttpValidationError),
    /// A generic error object.
    Api(ApiError),
    /// Anything else (non-object bodies, `{"detail": "Unauthorized"}`, …), kept verbatim.
    Other(Value),
}

impl ErrorBody {
    /// Classifies a parsed error body; never fails.
    pub fn from_value(value: Value) -> Self {
        let has_detail = value.get("detail").is_some();
        let is_validation = value.get("detail").is_some_and(Value::is_array);
        if is_validation || (value.is_object() && !has_detail) {
            let parsed = if is_validation {
                serde_json::from_value(value.clone()).map(ErrorBody::Validation)
            } else {
                serde_json::from_value(value.clone()).map(ErrorBody::Api)
            };
            if let Ok(body) = parsed {
                return body;
            }
        }
        ErrorBody::Other(value)
    }

    /// Parses and classifies raw body bytes; `None` if they are not JSON.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok().map(Self::from_value)
    }
}
