//! Conversation entries (`message.input`, `message.output`, `function.call`,
//! `function.result`, `tool.execution`, `agent.handoff`) and the `Entry` union.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::Maybe;
use crate::macros::{into_object, json_kind, serialize_tagged};
use crate::types::chunks::MessageContent;

/// The `object` value of every entry.
pub const ENTRY_OBJECT: &str = "entry";

tagged_union! {
    /// One conversation entry, discriminated by `type`.
    ///
    /// Entries sent as request `inputs` may leave out `type` (and `object`); the type is then
    /// inferred from the keys present (see [`Entry::from_value`]) and the body's
    /// `type_omitted` flag is set, so the entry serializes without `type` again.
    /// Objects whose type is unknown, or cannot be inferred, are kept verbatim in
    /// [`Entry::Other`].
    pub enum Entry ("entry") {
        /// A user (or prefilled assistant) message.
        "message.input" => MessageInput(MessageInputEntry),
        /// An assistant message.
        "message.output" => MessageOutput(MessageOutputEntry),
        /// A call of a client-side function; ends the turn.
        "function.call" => FunctionCall(FunctionCallEntry),
        /// The client's result for a function call.
        "function.result" => FunctionResult(FunctionResultEntry),
        /// A server-side (built-in or connector) tool run.
        "tool.execution" => ToolExecution(ToolExecutionEntry),
        /// A handoff from one agent to another.
        "agent.handoff" => AgentHandoff(AgentHandoffEntry),
    }
}

string_enum! {
    /// Message role.
    pub enum Role {
        /// `user`
        User = "user",
        /// `assistant`
        Assistant = "assistant",
    }
}

impl Default for Role {
    /// `user`.
    fn default() -> Self {
        Role::User
    }
}

string_enum! {
    /// `confirmation_status` of a function call that needs human confirmation.
    pub enum ConfirmationStatus {
        /// Waiting for the client to allow or deny.
        Pending = "pending",
        /// Allowed by the client.
        Allowed = "allowed",
        /// Denied by the client.
        Denied = "denied",
    }
}

/// Defines an entry body struct: the shared entry fields, the given ones, `type_omitted`
/// and `extra`.
macro_rules! entry_body {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($fields:tt)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        pub struct $name {
            /// Always `"entry"` in responses; optional on input.
            #[serde(default, skip_serializing_if = "Maybe::is_absent")]
            pub object: Maybe<String>,
            /// Creation time (RFC 3339).
            #[serde(default, skip_serializing_if = "Maybe::is_absent")]
            pub created_at: Maybe<String>,
            /// Completion time (RFC 3339) or `null`.
            #[serde(default, skip_serializing_if = "Maybe::is_absent")]
            pub completed_at: Maybe<String>,
            /// Entry id (`msg_…`, `fc_…`, `tool_exec_…`, `handoff_…`).
            #[serde(default, skip_serializing_if = "Maybe::is_absent")]
            pub id: Maybe<String>,
            $($fields)*
            /// `true` when the wire object had no `type` key and the type was inferred;
            /// the entry then serializes without `type`. Not a wire field.
            #[serde(skip)]
            pub type_omitted: bool,
            /// Fields not modelled here, kept as they came.
            #[serde(flatten)]
            pub extra: Map<String, Value>,
        }
    };
}

entry_body! {
    /// `message.input` body.
    pub struct MessageInputEntry {
        /// `user` or `assistant`.
        pub role: Role,
        /// A string, or chunks (text / image_url / tool_file / document_url / thinking).
        pub content: MessageContent,
        /// Prefix mode for an assistant message (default `false`).
        #[serde(default, skip_serializing_if = "Maybe::is_absent")]
        pub prefix: Maybe<bool>,
    }
}

entry_body! {
    /// `message.output` body.
    pub struct MessageOutputEntry {
        /// Agent that produced it (null for model conversations).
        #[serde(default, skip_serializing_if = "Maybe::is_absent")]
        pub agent_id: Maybe<String>,
        /// Model that produced it.
        #[serde(default, skip_serializing_if = "Maybe::is_absent")]
        pub model: Maybe<String>,
        /// Always `assistant`.
        #[serde(default, skip_serializing_if = "Maybe::is_absent")]
        pub role: Maybe<Role>,
        /// A string (plain answers) or chunks (citations, files, thinking).
        pub content: MessageContent,
    }
}

entry_body! {
    /// `function.call` body.
    pub struct FunctionCallEntry {
        /// Agent that made the call.
        #[serde(default, skip_serializing_if = "Maybe::is_absent")]
        pub agent_id: Maybe<String>,
        /// Model that made the call.
        #[serde(default, skip_serializing_if = "Maybe::is_absent")]
        pub model: Maybe<String>,
        /// Id the client must echo in its `function.result` (9 alphanumerics).
        pub tool_call_id: String,
        /// Function name.
        pub name: String,
        /// Arguments: a JSON string (observed) or an object.
        pub arguments: FunctionArguments,
        /// Human-in-the-loop state.
        #[serde(default, skip_serializing_if = "Maybe::is_absent")]
        pub confirmation_status: Maybe<ConfirmationStatus>,
    }
}

entry_body! {
    /// `function.result` body.
    pub struct FunctionResultEntry {
        /// The `tool_call_id` of the call being answered.
        pub tool_call_id: String,
        /// The result (usually JSON text).
        pub result: String,
    }
}

entry_body! {
    /// `tool.execution` body.
    pub struct ToolExecutionEntry {
        /// Agent that ran the tool.
        #[serde(default, skip_serializing_if = "Maybe::is_absent")]
        pub agent_id: Maybe<String>,
        /// Model that ran the tool.
        #[serde(default, skip_serializing_if = "Maybe::is_absent")]
        pub model: Maybe<String>,
        /// Tool name: a built-in connector name or any string.
        pub name: String,
        /// Tool arguments as a string. Required by the current spec, but missing from the
        /// 2025 captures, so optional here.
        #[serde(default, skip_serializing_if = "Maybe::is_absent")]
        pub arguments: Maybe<String>,
        /// Free-form result info, e.g. `{"code": …, "code_output": …}`.
        #[serde(default, skip_serializing_if = "Maybe::is_absent")]
        pub info: Maybe<Map<String, Value>>,
    }
}

entry_body! {
    /// `agent.handoff` body.
    pub struct AgentHandoffEntry {
        /// Agent handing over.
        pub previous_agent_id: String,
        /// Its name.
        pub previous_agent_name: String,
        /// Agent taking over.
        pub next_agent_id: String,
        /// Its name.
        pub next_agent_name: String,
    }
}

/// `arguments` of a `function.call` entry: a JSON-encoded string or an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FunctionArguments {
    /// JSON text, e.g. `"{\"date\": \"2024-06-06\"}"` (the observed form).
    Text(String),
    /// A JSON object.
    Object(Map<String, Value>),
}

impl Default for FunctionArguments {
    fn default() -> Self {
        FunctionArguments::Text(String::new())
    }
}

impl FunctionArguments {
    /// The arguments as a JSON value (parsing the string form; `None` if it is not JSON).
    pub fn to_json(&self) -> Option<Value> {
        match self {
            FunctionArguments::Text(s) => serde_json::from_str(s).ok(),
            FunctionArguments::Object(m) => Some(Value::Object(m.clone())),
        }
    }
}

/// Calls `$body` with the entry body bound to `$b` for every known variant.
macro_rules! with_body {
    ($entry:expr, $b:ident => $body:expr, $o:ident => $other:expr) => {
        match $entry {
            Entry::MessageInput($b) => $body,
            Entry::MessageOutput($b) => $body,
            Entry::FunctionCall($b) => $body,
            Entry::FunctionResult($b) => $body,
            Entry::ToolExecution($b) => $body,
            Entry::AgentHandoff($b) => $body,
            Entry::Other($o) => $other,
        }
    };
}

impl Entry {
    /// Guesses the type of an object without a `type` key from the keys it has, in the
    /// order the spec lists the input entry shapes:
    /// `role`+`content` → `message.input`; `content` → `message.output`;
    /// `tool_call_id`+`result` → `function.result`;
    /// `tool_call_id`+`name`+`arguments` → `function.call`;
    /// `previous_agent_id`/`next_agent_id` → `agent.handoff`;
    /// `name`+(`arguments`|`info`) → `tool.execution`.
    pub fn infer_type(map: &Map<String, Value>) -> Option<&'static str> {
        let has = |k: &str| map.contains_key(k);
        if has("role") && has("content") {
            Some("message.input")
        } else if has("content") {
            Some("message.output")
        } else if has("tool_call_id") && has("result") {
            Some("function.result")
        } else if has("tool_call_id") && has("name") && has("arguments") {
            Some("function.call")
        } else if has("previous_agent_id") || has("next_agent_id") {
            Some("agent.handoff")
        } else if has("name") && (has("arguments") || has("info")) {
            Some("tool.execution")
        } else {
            None
        }
    }

    /// Parses an entry. A known `type` must have a valid body (else an error); an unknown
    /// `type` gives [`Entry::Other`]. Without `type`, the type is inferred with
    /// [`Entry::infer_type`] and `type_omitted` is set; if nothing fits (or the inferred
    /// body does not parse) the object is kept as [`Entry::Other`].
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        let map = into_object(value, "entry")?;
        match map.get("type") {
            Some(Value::String(tag)) => {
                let tag = tag.clone();
                Entry::from_tagged_body(&tag, map)
            }
            Some(_) => Ok(Entry::Other(Value::Object(map))),
            None => {
                let Some(tag) = Entry::infer_type(&map) else {
                    return Ok(Entry::Other(Value::Object(map)));
                };
                match Entry::from_tagged_body(tag, map.clone()) {
                    Ok(mut entry) => {
                        with_body!(&mut entry, b => b.type_omitted = true, _o => ());
                        Ok(entry)
                    }
                    Err(_) => Ok(Entry::Other(Value::Object(map))),
                }
            }
        }
    }

    /// The entry as a JSON value.
    pub fn to_value(&self) -> Value {
        // Serializing these types cannot fail: every map has string keys and no custom
        // `Serialize` impl returns an error.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Entry id, if any.
    pub fn id(&self) -> Option<&str> {
        with_body!(self, b => b.id.get().map(String::as_str), v => other_str(v, "id"))
    }

    /// `created_at`, if present and non-null.
    pub fn created_at(&self) -> Option<&str> {
        with_body!(self, b => b.created_at.get().map(String::as_str),
            v => other_str(v, "created_at"))
    }

    /// `completed_at`, if present and non-null.
    pub fn completed_at(&self) -> Option<&str> {
        with_body!(self, b => b.completed_at.get().map(String::as_str),
            v => other_str(v, "completed_at"))
    }

    /// Removes `created_at` and `completed_at` (used to compare entries across runs).
    pub fn clear_timestamps(&mut self) {
        with_body!(self, b => {
            b.created_at = Maybe::Absent;
            b.completed_at = Maybe::Absent;
        }, v => {
            if let Value::Object(m) = v {
                m.shift_remove("created_at");
                m.shift_remove("completed_at");
            }
        })
    }
}

fn other_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn write<S: Serializer, T: Serialize>(
            tag: &str,
            omitted: bool,
            body: &T,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            if omitted {
                body.serialize(s)
            } else {
                serialize_tagged(tag, body, s)
            }
        }
        match self {
            Entry::MessageInput(b) => write("message.input", b.type_omitted, b, s),
            Entry::MessageOutput(b) => write("message.output", b.type_omitted, b, s),
            Entry::FunctionCall(b) => write("function.call", b.type_omitted, b, s),
            Entry::FunctionResult(b) => write("function.result", b.type_omitted, b, s),
            Entry::ToolExecution(b) => write("tool.execution", b.type_omitted, b, s),
            Entry::AgentHandoff(b) => write("agent.handoff", b.type_omitted, b, s),
            Entry::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Entry::from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// Conversation `inputs`: a string (one user message) or a list of entries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Inputs {
    /// Shorthand for a single user `message.input`.
    Text(String),
    /// Explicit entries (`type`/`object` may be left out on each).
    Entries(Vec<Entry>),
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs::Entries(Vec::new())
    }
}

impl From<&str> for Inputs {
    fn from(s: &str) -> Self {
        Inputs::Text(s.to_owned())
    }
}

impl Inputs {
    /// The inputs as entries: a string becomes one `message.input` with role `user`
    /// (`type` filled in, no id or timestamps).
    pub fn to_entries(&self) -> Vec<Entry> {
        match self {
            Inputs::Text(s) => vec![Entry::MessageInput(MessageInputEntry {
                role: Role::User,
                content: MessageContent::Text(s.clone()),
                ..Default::default()
            })],
            Inputs::Entries(e) => e.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Inputs::Text(s)),
            Value::Array(items) => items
                .into_iter()
                .map(Entry::from_value)
                .collect::<Result<Vec<_>, _>>()
                .map(Inputs::Entries)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "inputs must be a string or an array of entries, found {}",
                json_kind(&other)
            ))),
        }
    }
}
