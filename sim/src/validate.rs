//! Request validation with FastAPI/pydantic-style 422 `detail` items, as the real API answers.

use serde_json::{Map, Value, json};

/// The accumulated validation errors of one request body.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Value>);

impl Problems {
    /// No errors so far.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn push(&mut self, ty: &str, loc: &[Value], msg: &str, input: &Value, ctx: Option<Value>) {
        let mut item = Map::new();
        item.insert("type".into(), json!(ty));
        item.insert("loc".into(), Value::Array(loc.to_vec()));
        item.insert("msg".into(), json!(msg));
        item.insert("input".into(), input.clone());
        if let Some(c) = ctx {
            item.insert("ctx".into(), c);
        }
        self.0.push(Value::Object(item));
    }

    /// The 422 body: `{"detail": [...]}`.
    pub fn into_body(self) -> Value {
        json!({ "detail": self.0 })
    }
}

fn loc(prefix: &[Value], key: &str) -> Vec<Value> {
    let mut l = prefix.to_vec();
    l.push(json!(key));
    l
}

/// A JSON decode failure, as FastAPI reports it.
pub fn json_invalid(err: &serde_json::Error) -> Value {
    json!({"detail": [{
        "type": "json_invalid",
        "loc": ["body", err.column()],
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": err.to_string()}
    }]})
}

/// Expected JSON kinds of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Str,
    /// A boolean.
    Bool,
    /// An integer.
    Int,
    /// An object.
    Obj,
    /// An array.
    Arr,
    /// A string or an array (e.g. `inputs`).
    StrOrArr,
    /// An int or a string (e.g. `agent_version`).
    IntOrStr,
    /// Anything.
    Any,
}

impl Kind {
    fn accepts(self, v: &Value) -> bool {
        match self {
            Kind::Str => v.is_string(),
            Kind::Bool => v.is_boolean(),
            Kind::Int => v.is_i64() || v.is_u64(),
            Kind::Obj => v.is_object(),
            Kind::Arr => v.is_array(),
            Kind::StrOrArr => v.is_string() || v.is_array(),
            Kind::IntOrStr => v.is_i64() || v.is_u64() || v.is_string(),
            Kind::Any => true,
        }
    }

    fn problem(self) -> (&'static str, &'static str) {
        match self {
            Kind::Str => ("string_type", "Input should be a valid string"),
            Kind::Bool => ("bool_type", "Input should be a valid boolean"),
            Kind::Int => ("int_type", "Input should be a valid integer"),
            Kind::Obj => ("dict_type", "Input should be a valid dictionary"),
            Kind::Arr => ("list_type", "Input should be a valid list"),
            Kind::StrOrArr => ("string_type", "Input should be a valid string or list"),
            Kind::IntOrStr => ("int_type", "Input should be a valid integer or string"),
            Kind::Any => ("any", ""),
        }
    }
}

/// A field rule: name, kind, whether null is allowed, whether required.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// JSON key.
    pub name: &'static str,
    /// Expected kind.
    pub kind: Kind,
    /// `null` accepted.
    pub nullable: bool,
    /// Must be present.
    pub required: bool,
}

const fn f(name: &'static str, kind: Kind, nullable: bool, required: bool) -> Field {
    Field {
        name,
        kind,
        nullable,
        required,
    }
}

/// `ConversationRequest` (start) fields.
pub const START: &[Field] = &[
    f("inputs", Kind::StrOrArr, false, true),
    f("stream", Kind::Bool, false, false),
    f("store", Kind::Bool, true, false),
    f("handoff_execution", Kind::Str, true, false),
    f("instructions", Kind::Str, true, false),
    f("tools", Kind::Arr, true, false),
    f("completion_args", Kind::Obj, true, false),
    f("guardrails", Kind::Arr, true, false),
    f("name", Kind::Str, true, false),
    f("description", Kind::Str, true, false),
    f("metadata", Kind::Obj, true, false),
    f("agent_id", Kind::Str, true, false),
    f("agent_version", Kind::IntOrStr, true, false),
    f("model", Kind::Str, true, false),
];

/// `ConversationAppendRequest` fields.
pub const APPEND: &[Field] = &[
    f("inputs", Kind::StrOrArr, false, false),
    f("stream", Kind::Bool, false, false),
    f("store", Kind::Bool, false, false),
    f("handoff_execution", Kind::Str, false, false),
    f("completion_args", Kind::Obj, true, false),
    f("tool_confirmations", Kind::Arr, true, false),
];

/// `ConversationRestartRequest` fields.
pub const RESTART: &[Field] = &[
    f("inputs", Kind::StrOrArr, false, false),
    f("stream", Kind::Bool, false, false),
    f("store", Kind::Bool, false, false),
    f("handoff_execution", Kind::Str, false, false),
    f("completion_args", Kind::Obj, true, false),
    f("guardrails", Kind::Arr, true, false),
    f("metadata", Kind::Obj, true, false),
    f("from_entry_id", Kind::Str, false, true),
    f("agent_version", Kind::IntOrStr, true, false),
];

/// `CreateAgentRequest` fields.
pub const CREATE_AGENT: &[Field] = &[
    f("instructions", Kind::Str, true, false),
    f("tools", Kind::Arr, false, false),
    f("completion_args", Kind::Obj, false, false),
    f("guardrails", Kind::Arr, true, false),
    f("model", Kind::Str, false, true),
    f("name", Kind::Str, false, true),
    f("description", Kind::Str, true, false),
    f("handoffs", Kind::Arr, true, false),
    f("metadata", Kind::Obj, true, false),
    f("version_message", Kind::Str, true, false),
];

/// `UpdateAgentRequest` fields.
pub const UPDATE_AGENT: &[Field] = &[
    f("instructions", Kind::Str, true, false),
    f("tools", Kind::Arr, false, false),
    f("completion_args", Kind::Obj, false, false),
    f("guardrails", Kind::Arr, true, false),
    f("model", Kind::Str, true, false),
    f("name", Kind::Str, true, false),
    f("description", Kind::Str, true, false),
    f("handoffs", Kind::Arr, true, false),
    f("deployment_chat", Kind::Bool, true, false),
    f("metadata", Kind::Obj, true, false),
    f("version_message", Kind::Str, true, false),
];

/// Chat completion request fields (the ones the twin understands; others are accepted as in the spec).
pub const CHAT: &[Field] = &[
    f("model", Kind::Str, false, true),
    f("messages", Kind::Arr, false, true),
    f("temperature", Kind::Any, true, false),
    f("top_p", Kind::Any, true, false),
    f("max_tokens", Kind::Int, true, false),
    f("stream", Kind::Bool, false, false),
    f("stop", Kind::Any, true, false),
    f("random_seed", Kind::Int, true, false),
    f("metadata", Kind::Obj, true, false),
    f("response_format", Kind::Obj, true, false),
    f("tools", Kind::Arr, true, false),
    f("tool_choice", Kind::Any, true, false),
    f("presence_penalty", Kind::Any, true, false),
    f("frequency_penalty", Kind::Any, true, false),
    f("n", Kind::Int, true, false),
    f("prediction", Kind::Obj, true, false),
    f("parallel_tool_calls", Kind::Bool, false, false),
    f("reasoning_effort", Kind::Str, true, false),
    f("prompt_mode", Kind::Str, true, false),
    f("guardrails", Kind::Arr, true, false),
    f("prompt_cache_key", Kind::Str, true, false),
    f("service_tier", Kind::Str, true, false),
    f("safe_prompt", Kind::Bool, false, false),
];

/// Checks an object against field rules: extra fields, missing fields, kinds.
pub fn check_object(
    obj: &Map<String, Value>,
    fields: &[Field],
    prefix: &[Value],
    p: &mut Problems,
) {
    for (k, v) in obj {
        match fields.iter().find(|fl| fl.name == k) {
            None => p.push(
                "extra_forbidden",
                &loc(prefix, k),
                "Extra inputs are not permitted",
                v,
                None,
            ),
            Some(fl) => {
                if v.is_null() {
                    if !fl.nullable {
                        let (ty, msg) = fl.kind.problem();
                        p.push(ty, &loc(prefix, k), msg, v, None);
                    }
                } else if !fl.kind.accepts(v) {
                    let (ty, msg) = fl.kind.problem();
                    p.push(ty, &loc(prefix, k), msg, v, None);
                }
            }
        }
    }
    for fl in fields.iter().filter(|fl| fl.required) {
        if !obj.contains_key(fl.name) {
            p.push(
                "missing",
                &loc(prefix, fl.name),
                "Field required",
                &Value::Object(obj.clone()),
                None,
            );
        }
    }
}

/// Checks the body is an object, then its fields and the nested tool / completion-args shapes.
pub fn check_body(body: &Value, fields: &[Field]) -> Problems {
    let mut p = Problems::default();
    let prefix = [json!("body")];
    let Some(obj) = body.as_object() else {
        p.push(
            "model_attributes_type",
            &prefix,
            "Input should be a valid dictionary or object to extract fields from",
            body,
            None,
        );
        return p;
    };
    check_object(obj, fields, &prefix, &mut p);
    if let Some(Value::Array(tools)) = obj.get("tools") {
        for (i, t) in tools.iter().enumerate() {
            check_tool(t, &[json!("body"), json!("tools"), json!(i)], &mut p);
        }
    }
    if let Some(Value::Object(ca)) = obj.get("completion_args") {
        check_completion_args(ca, &[json!("body"), json!("completion_args")], &mut p);
    }
    if let Some(h) = obj.get("handoff_execution")
        && !h.is_null()
        && !matches!(h.as_str(), Some("client" | "server"))
    {
        p.push(
            "enum",
            &loc(&prefix, "handoff_execution"),
            "Input should be 'client' or 'server'",
            h,
            Some(json!({"expected": "'client' or 'server'"})),
        );
    }
    if let Some(Value::Array(inputs)) = obj.get("inputs") {
        for (i, e) in inputs.iter().enumerate() {
            if !e.is_object() {
                p.push(
                    "model_attributes_type",
                    &[json!("body"), json!("inputs"), json!(i)],
                    "Input should be a valid dictionary or object to extract fields from",
                    e,
                    None,
                );
            }
        }
    }
    p
}

const TOOL_TAGS: &str = "'function', 'web_search', 'web_search_premium', 'code_interpreter', 'image_generation', 'document_library', 'connector'";

fn check_tool(t: &Value, at: &[Value], p: &mut Problems) {
    let Some(obj) = t.as_object() else {
        p.push(
            "model_attributes_type",
            at,
            "Input should be a valid dictionary or object to extract fields from",
            t,
            None,
        );
        return;
    };
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("function");
    let conf = f("tool_configuration", Kind::Obj, true, false);
    let tyf = f("type", Kind::Str, false, false);
    let fields: Vec<Field> = match ty {
        "function" => vec![tyf, f("function", Kind::Obj, false, true)],
        "web_search" | "web_search_premium" | "code_interpreter" | "image_generation" => {
            vec![tyf, conf]
        }
        "document_library" => vec![tyf, conf, f("library_ids", Kind::Arr, false, true)],
        "connector" => vec![
            tyf,
            conf,
            f("connector_id", Kind::Str, false, true),
            f("authorization", Kind::Obj, true, false),
        ],
        other => {
            p.push(
                "union_tag_invalid",
                at,
                &format!(
                    "Input tag '{other}' found using 'type' does not match any of the expected tags: {TOOL_TAGS}"
                ),
                t,
                Some(json!({"discriminator": "'type'", "tag": other, "expected_tags": TOOL_TAGS})),
            );
            return;
        }
    };
    let mut tool_at = at.to_vec();
    tool_at.push(json!(ty));
    check_object(obj, &fields, &tool_at, p);
    if ty == "function"
        && let Some(Value::Object(func)) = obj.get("function")
    {
        let mut fat = tool_at.clone();
        fat.push(json!("function"));
        check_object(
            func,
            &[
                f("name", Kind::Str, false, true),
                f("description", Kind::Str, false, false),
                f("strict", Kind::Bool, false, false),
                f("parameters", Kind::Obj, false, true),
            ],
            &fat,
            p,
        );
    }
}

fn check_completion_args(ca: &Map<String, Value>, at: &[Value], p: &mut Problems) {
    check_object(
        ca,
        &[
            f("stop", Kind::Any, true, false),
            f("presence_penalty", Kind::Any, true, false),
            f("frequency_penalty", Kind::Any, true, false),
            f("temperature", Kind::Any, true, false),
            f("top_p", Kind::Any, true, false),
            f("max_tokens", Kind::Int, true, false),
            f("random_seed", Kind::Int, true, false),
            f("prediction", Kind::Obj, true, false),
            f("response_format", Kind::Obj, true, false),
            f("tool_choice", Kind::Str, false, false),
            f("reasoning_effort", Kind::Str, true, false),
        ],
        at,
        p,
    );
    for (key, lo, hi) in [
        ("temperature", 0.0, 1.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
    ] {
        let Some(v) = ca.get(key) else { continue };
        if v.is_null() {
            continue;
        }
        match v.as_f64() {
            None => p.push(
                "float_type",
                &loc(at, key),
                "Input should be a valid number",
                v,
                None,
            ),
            Some(x) if x < lo => p.push(
                "greater_than_equal",
                &loc(at, key),
                &format!("Input should be greater than or equal to {lo}"),
                v,
                Some(json!({"ge": lo})),
            ),
            Some(x) if x > hi => p.push(
                "less_than_equal",
                &loc(at, key),
                &format!("Input should be less than or equal to {hi}"),
                v,
                Some(json!({"le": hi})),
            ),
            Some(_) => {}
        }
    }
    if let Some(tc) = ca.get("tool_choice").and_then(Value::as_str)
        && !matches!(tc, "auto" | "none" | "any" | "required")
    {
        p.push(
            "enum",
            &loc(at, "tool_choice"),
            "Input should be 'auto', 'none', 'any' or 'required'",
            &json!(tc),
            Some(json!({"expected": "'auto', 'none', 'any' or 'required'"})),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_extra_forbidden() {
        let p = check_body(&json!({"inputs": "hi", "bogus": 1}), START);
        let body = p.into_body();
        assert_eq!(body["detail"][0]["type"], "extra_forbidden");
        assert_eq!(body["detail"][0]["loc"], json!(["body", "bogus"]));
        assert_eq!(body["detail"][0]["input"], 1);
    }

    #[test]
    fn missing_and_wrong_types_are_reported() {
        let p = check_body(&json!({"stream": "yes"}), START);
        let types: Vec<_> =
            p.0.iter()
                .map(|d| d["type"].as_str().unwrap().to_string())
                .collect();
        assert_eq!(types, ["bool_type", "missing"]);
    }

    #[test]
    fn tools_and_completion_args_are_checked() {
        let p = check_body(
            &json!({"inputs": "x", "tools": [{"type": "web_search"}, {"type": "telepathy"}],
                    "completion_args": {"temperature": 3, "tool_choice": "maybe"}}),
            START,
        );
        let types: Vec<_> =
            p.0.iter()
                .map(|d| d["type"].as_str().unwrap().to_string())
                .collect();
        assert_eq!(types, ["union_tag_invalid", "less_than_equal", "enum"]);
        assert!(check_body(&json!({"inputs": "x", "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}), START).is_empty());
    }
}
