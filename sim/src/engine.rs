//! The simulated model: turns a conversation's context and new inputs into this turn's outputs.
//!
//! Planning is pure and deterministic (no clock, no I/O); `turn.rs` then plays the plan out in time.

use serde_json::{Map, Value, json};

use crate::det;
use crate::knowledge::{Knowledge, Verdict};

/// The agent (or model) producing a turn.
#[derive(Debug, Clone)]
pub struct Speaker {
    /// `ag_…`, or `None` for a model conversation.
    pub agent_id: Option<String>,
    /// Agent name (for handoff entries).
    pub agent_name: String,
    /// Model name.
    pub model: String,
    /// Tools available.
    pub tools: Vec<Value>,
    /// Agent ids this agent may hand off to, with their speakers resolved.
    pub handoffs: Vec<Speaker>,
}

/// Everything the model sees for one turn.
#[derive(Debug)]
pub struct TurnInput<'a> {
    /// Who answers.
    pub speaker: &'a Speaker,
    /// Prior entries (for token counts and function-call lookups).
    pub history: &'a [Value],
    /// This turn's input entries (already normalised).
    pub inputs: &'a [Value],
    /// `server` (default) or `client`.
    pub handoff_client: bool,
    /// Instructions text, counted in prompt tokens.
    pub instructions: &'a str,
}

/// One content piece of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Streamed as string deltas.
    Text(String),
    /// A non-text chunk (`tool_reference`, `tool_file`), sent as one delta.
    Chunk(Value),
}

/// What one output entry of the turn is.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// `message.output`.
    Message {
        /// The content pieces in order.
        pieces: Vec<Piece>,
    },
    /// `tool.execution` (a connector).
    Tool {
        /// Tool name (`web_search`, …).
        name: String,
        /// Arguments JSON string.
        arguments: String,
        /// `info` object.
        info: Value,
        /// Connector tokens this execution costs.
        connector_tokens: u64,
    },
    /// `function.call` (the turn ends here).
    FunctionCall {
        /// 9-char id.
        tool_call_id: String,
        /// Function name.
        name: String,
        /// Arguments JSON string.
        arguments: String,
    },
    /// `agent.handoff`.
    Handoff {
        /// From.
        previous_agent_id: String,
        /// From.
        previous_agent_name: String,
        /// To.
        next_agent_id: String,
        /// To.
        next_agent_name: String,
    },
}

/// One output entry with the speaker that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The entry.
    pub kind: StepKind,
    /// The producing agent (null for model conversations).
    pub agent_id: Option<String>,
    /// The producing model.
    pub model: String,
}

/// A planned turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Output entries in order.
    pub steps: Vec<Step>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
}

/// Rough token count: one token per four characters, at least one for non-empty text.
pub fn tokens(s: &str) -> u64 {
    (s.chars().count() as u64).div_ceil(4)
}

/// The text of a content value (string or chunk array).
pub fn content_text(c: &Value) -> String {
    match c {
        Value::String(s) => s.clone(),
        Value::Array(chunks) => chunks
            .iter()
            .filter_map(|ch| ch.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn entry_text(e: &Value) -> String {
    match e.get("type").and_then(Value::as_str) {
        Some("function.result") => e
            .get("result")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        Some("function.call") | Some("tool.execution") => e
            .get("arguments")
            .map(|a| {
                a.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| a.to_string())
            })
            .unwrap_or_default(),
        _ => e.get("content").map(content_text).unwrap_or_default(),
    }
}

fn tool_type(t: &Value) -> &str {
    t.get("type").and_then(Value::as_str).unwrap_or("function")
}

/// Plans the turn.
pub fn plan(input: &TurnInput<'_>, knowledge: Option<&Knowledge>, seed: u64) -> Plan {
    let prompt_text: usize = input.instructions.len()
        + input
            .history
            .iter()
            .chain(input.inputs)
            .map(|e| entry_text(e).len())
            .sum::<usize>();
    let prompt_tokens = (prompt_text as u64).div_ceil(4) + 8;
    let mut steps = Vec::new();
    plan_speaker(input, input.speaker, knowledge, seed, 0, &mut steps);
    Plan {
        steps,
        prompt_tokens,
    }
}

/// The new question: the user messages after the last entry of another kind. Inputs that carry a
/// conversation's earlier turns (a start replaying a history) end with the new question, and the
/// earlier questions are context, not the question.
fn user_text(inputs: &[Value]) -> String {
    let is_user = |e: &Value| {
        e.get("type")
            .and_then(Value::as_str)
            .unwrap_or("message.input")
            == "message.input"
            && e.get("role").and_then(Value::as_str) == Some("user")
    };
    let from = inputs
        .iter()
        .rposition(|e| !is_user(e))
        .map_or(0, |i| i + 1);
    inputs[from..]
        .iter()
        .filter(|e| is_user(e))
        .map(|e| e.get("content").map(content_text).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn plan_speaker(
    input: &TurnInput<'_>,
    sp: &Speaker,
    knowledge: Option<&Knowledge>,
    seed: u64,
    depth: usize,
    steps: &mut Vec<Step>,
) {
    let step = |kind: StepKind| Step {
        kind,
        agent_id: sp.agent_id.clone(),
        model: sp.model.clone(),
    };
    let text = user_text(input.inputs);
    let lower = text.to_lowercase();

    // 1. Function results with no new question: answer from them.
    let results: Vec<(&str, &str)> = input
        .inputs
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("function.result"))
        .map(|e| {
            (
                e.get("tool_call_id").and_then(Value::as_str).unwrap_or(""),
                e.get("result").and_then(Value::as_str).unwrap_or(""),
            )
        })
        .collect();
    if !results.is_empty() && text.trim().is_empty() {
        let parts: Vec<String> = results
            .iter()
            .map(|(call_id, result)| {
                let name = input
                    .history
                    .iter()
                    .rev()
                    .find(|e| {
                        e.get("tool_call_id").and_then(Value::as_str) == Some(call_id)
                            && e.get("type").and_then(Value::as_str) == Some("function.call")
                    })
                    .and_then(|e| e.get("name").and_then(Value::as_str))
                    .unwrap_or("the function");
                format!("{name} returned: {result}")
            })
            .collect();
        steps.push(step(StepKind::Message {
            pieces: vec![Piece::Text(format!(
                "According to the tool results, {}.",
                parts.join("; ")
            ))],
        }));
        return;
    }

    // 2. Handoff.
    if depth < 2 && !sp.handoffs.is_empty() {
        let target = sp
            .handoffs
            .iter()
            .find(|h| !h.agent_name.is_empty() && lower.contains(&h.agent_name.to_lowercase()))
            .or_else(|| {
                (lower.contains("handoff") || lower.contains("hand off")).then(|| &sp.handoffs[0])
            });
        if let Some(next) = target {
            steps.push(step(StepKind::Handoff {
                previous_agent_id: sp.agent_id.clone().unwrap_or_default(),
                previous_agent_name: sp.agent_name.clone(),
                next_agent_id: next.agent_id.clone().unwrap_or_default(),
                next_agent_name: next.agent_name.clone(),
            }));
            if !input.handoff_client {
                plan_speaker(input, next, knowledge, seed, depth + 1, steps);
            }
            return;
        }
    }

    // 3. Function tools mentioned by name.
    for t in sp.tools.iter().filter(|t| tool_type(t) == "function") {
        let Some(func) = t.get("function") else {
            continue;
        };
        let Some(name) = func.get("name").and_then(Value::as_str) else {
            continue;
        };
        if !name.is_empty() && lower.contains(&name.to_lowercase()) {
            let arguments =
                sample_arguments(func.get("parameters").unwrap_or(&Value::Null)).to_string();
            let seed_text = format!("{seed}/{name}/{text}/{}", input.history.len());
            steps.push(step(StepKind::FunctionCall {
                tool_call_id: crate::ids::tool_call_id(&seed_text),
                name: name.to_string(),
                arguments,
            }));
            return;
        }
    }

    // 4. Connectors, then the answer.
    let has = |ty: &str| sp.tools.iter().any(|t| tool_type(t) == ty);
    let search = ["web_search_premium", "web_search"]
        .into_iter()
        .find(|t| has(t));
    let known = knowledge.and_then(|k| k.find(&text).map(|it| (k, it)));
    let question = text.trim();
    let seed_b = seed.to_le_bytes();
    let mut answer: String = match &known {
        Some((k, it)) => match k.answer(it, search.is_some()) {
            Verdict::Correct(a) | Verdict::Wrong(a) | Verdict::Abstain(a) => a,
        },
        None => canned_answer(question, &seed_b),
    };
    let mut refs: Vec<Value> = Vec::new();

    if let Some(tool) = search {
        let query = if question.is_empty() {
            "latest news".to_string()
        } else {
            shorten(question, 120)
        };
        let n_results = 2 + det::index(&[&seed_b, b"nres", question.as_bytes()], 3);
        let results: Vec<Value> = (0..n_results)
            .map(|i| search_result(tool, &query, i, &seed_b))
            .collect();
        refs = results.clone();
        let ctoks = 1500 + det::index(&[&seed_b, b"ctok", question.as_bytes()], 5600) as u64;
        steps.push(step(StepKind::Tool {
            name: tool.to_string(),
            arguments: json!({ "query": query }).to_string(),
            info: json!({}),
            connector_tokens: ctoks,
        }));
    }
    if has("document_library") {
        let query = shorten(question, 120);
        refs.push(json!({"type": "tool_reference", "tool": "document_library", "title": "Library document 1", "description": "A passage from the library that matches the question."}));
        steps.push(step(StepKind::Tool {
            name: "document_library".into(),
            arguments: json!({ "query": query }).to_string(),
            info: json!({}),
            connector_tokens: 400 + question.len() as u64,
        }));
    }
    for t in sp.tools.iter().filter(|t| tool_type(t) == "connector") {
        let name = t
            .get("connector_id")
            .and_then(Value::as_str)
            .unwrap_or("connector");
        steps.push(step(StepKind::Tool {
            name: name.to_string(),
            arguments: json!({ "input": shorten(question, 120) }).to_string(),
            info: json!({}),
            connector_tokens: 200,
        }));
    }
    let wants_code = has("code_interpreter")
        && (sp.tools.len() == 1
            || lower.chars().any(|c| c.is_ascii_digit())
            || [
                "calculate",
                "compute",
                "code",
                "python",
                "plot",
                "sum",
                "count",
            ]
            .iter()
            .any(|w| lower.contains(w)));
    if wants_code {
        let words = question.split_whitespace().count();
        let escaped = question.replace('\\', "\\\\").replace('"', "\\\"");
        let code = format!("text = \"{escaped}\"\nwords = len(text.split())\nprint(words)");
        steps.push(step(StepKind::Message {
            pieces: vec![Piece::Text(
                "Let me run some Python to work that out.".into(),
            )],
        }));
        steps.push(step(StepKind::Tool {
            name: "code_interpreter".into(),
            arguments: json!({ "code": code }).to_string(),
            info: json!({ "code": code, "code_output": format!("{words}\n") }),
            connector_tokens: 80 + (code.len() as u64).div_ceil(4),
        }));
        if known.is_none() {
            answer = format!("The code ran: your message has {words} words.");
        }
    }
    let wants_image = has("image_generation")
        && (sp.tools.len() == 1
            || ["image", "draw", "picture", "paint"]
                .iter()
                .any(|w| lower.contains(w)));
    let mut file_chunk = None;
    if wants_image {
        let file_id = uuid_like(&[&seed_b, b"img", question.as_bytes()]);
        steps.push(step(StepKind::Tool {
            name: "image_generation".into(),
            arguments: json!({ "prompt": shorten(question, 200) }).to_string(),
            info: json!({}),
            connector_tokens: 100,
        }));
        file_chunk = Some(
            json!({"type": "tool_file", "tool": "image_generation", "file_id": file_id, "file_name": "image_generated_0", "file_type": "png"}),
        );
        if known.is_none() {
            answer = "Here is the generated image.".into();
        }
    }

    let mut pieces = vec![Piece::Text(answer)];
    if !refs.is_empty() {
        pieces.extend(refs.into_iter().map(Piece::Chunk));
        pieces.push(Piece::Text(".".into()));
    }
    if let Some(fc) = file_chunk {
        pieces.push(Piece::Chunk(fc));
    }
    steps.push(step(StepKind::Message { pieces }));
}

fn shorten(s: &str, max_chars: usize) -> String {
    let t: String = s.chars().take(max_chars).collect();
    t.trim().to_string()
}

fn uuid_like(parts: &[&[u8]]) -> String {
    let a = det::hash64(parts);
    let b = det::hash64(&[parts.concat().as_slice(), b"2"]);
    let h = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-7{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

const SITES: [(&str, &str); 6] = [
    ("en.wikipedia.org", "Wikipedia"),
    ("www.britannica.com", "Britannica"),
    ("www.reuters.com", "Reuters"),
    ("www.bbc.com", "BBC"),
    ("www.nationalgeographic.com", "National Geographic"),
    ("www.theguardian.com", "The Guardian"),
];

fn search_result(tool: &str, query: &str, i: usize, seed: &[u8]) -> Value {
    let (host, site) =
        SITES[det::index(&[seed, b"site", query.as_bytes(), &[i as u8]], SITES.len())];
    let slug: String = query
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .take(6)
        .collect::<Vec<_>>()
        .join("-");
    let mut m = Map::new();
    m.insert("type".into(), json!("tool_reference"));
    m.insert("tool".into(), json!(tool));
    m.insert(
        "title".into(),
        json!(format!("{} - {site}", shorten(query, 60))),
    );
    m.insert("url".into(), json!(format!("https://{host}/{slug}-{i}")));
    Value::Object(m)
}

fn canned_answer(question: &str, seed: &[u8]) -> String {
    const OPENERS: [&str; 3] = [
        "This is a simulated answer from the agentcap twin.",
        "Simulated upstream reply: no real model was called.",
        "The agentcap twin received your message and answers deterministically.",
    ];
    let opener = OPENERS[det::index(&[seed, b"canned", question.as_bytes()], OPENERS.len())];
    if question.is_empty() {
        opener.to_string()
    } else {
        format!("{opener} You said: \"{}\".", shorten(question, 200))
    }
}

/// Arguments for a function call from its JSON-schema `parameters`: each required property gets a
/// sample value of its type (the first `enum` value when there is one).
pub fn sample_arguments(params: &Value) -> Value {
    let mut out = Map::new();
    let props = params.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = params
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = props {
        for name in required {
            let schema = props.get(name).unwrap_or(&Value::Null);
            out.insert(name.to_string(), sample_value(schema));
        }
    }
    Value::Object(out)
}

fn sample_value(schema: &Value) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let ty = match schema.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string"),
        _ => {
            if let Some(any) = schema
                .get("anyOf")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|s| s.get("type") != Some(&json!("null"))))
            {
                return sample_value(any);
            }
            "string"
        }
    };
    match ty {
        "integer" => json!(1),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "array" => json!([]),
        "object" => sample_arguments(schema),
        _ => json!("sample"),
    }
}

/// Splits text into stream deltas the way a tokenizer would roughly cut it: words with their leading space.
pub fn split_deltas(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_ws = true;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if ws && !prev_ws && i > start {
            out.push(&text[start..i]);
            start = i;
        }
        prev_ws = ws;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speaker(tools: Vec<Value>) -> Speaker {
        Speaker {
            agent_id: Some("ag_1".into()),
            agent_name: "one".into(),
            model: "m".into(),
            tools,
            handoffs: vec![],
        }
    }

    fn user(text: &str) -> Vec<Value> {
        vec![json!({"type": "message.input", "role": "user", "content": text})]
    }

    #[test]
    fn deltas_rebuild_the_text() {
        let t = "The last  European\nFootball cup.";
        let d = split_deltas(t);
        assert_eq!(d.concat(), t);
        assert_eq!(d[0], "The");
        assert_eq!(d[1], " last");
    }

    #[test]
    fn function_tool_mentioned_gives_a_call_with_schema_arguments() {
        let sp = speaker(vec![
            json!({"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "days", "unit"]}}}),
        ]);
        let inputs = user("Please call get_weather for me");
        let p = plan(
            &TurnInput {
                speaker: &sp,
                history: &[],
                inputs: &inputs,
                handoff_client: false,
                instructions: "",
            },
            None,
            0,
        );
        match &p.steps[..] {
            [
                Step {
                    kind:
                        StepKind::FunctionCall {
                            name,
                            arguments,
                            tool_call_id,
                        },
                    ..
                },
            ] => {
                assert_eq!(name, "get_weather");
                assert_eq!(
                    serde_json::from_str::<Value>(arguments).unwrap(),
                    json!({"city": "sample", "days": 1, "unit": "c"})
                );
                assert_eq!(tool_call_id.len(), 9);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn function_results_are_quoted() {
        let sp = speaker(vec![]);
        let history = vec![
            json!({"type": "function.call", "tool_call_id": "abc", "name": "get_weather", "arguments": "{}"}),
        ];
        let inputs =
            vec![json!({"type": "function.result", "tool_call_id": "abc", "result": "sunny"})];
        let p = plan(
            &TurnInput {
                speaker: &sp,
                history: &history,
                inputs: &inputs,
                handoff_client: false,
                instructions: "",
            },
            None,
            0,
        );
        let StepKind::Message { pieces } = &p.steps[0].kind else {
            panic!()
        };
        assert_eq!(
            pieces,
            &[Piece::Text(
                "According to the tool results, get_weather returned: sunny.".into()
            )]
        );
    }

    #[test]
    fn a_start_replaying_a_history_answers_only_its_last_question() {
        let sp = speaker(vec![]);
        let answer = |inputs: &[Value]| {
            let p = plan(
                &TurnInput {
                    speaker: &sp,
                    history: &[],
                    inputs,
                    handoff_client: false,
                    instructions: "",
                },
                None,
                0,
            );
            format!("{:?}", p.steps)
        };
        let alone = user("What is the tallest mountain in Wales?");
        let replayed = vec![
            json!({"type": "message.input", "role": "user", "content": "Who painted the ceiling?"}),
            json!({"type": "message.output", "role": "assistant", "content": "Michelangelo"}),
            json!({"type": "message.input", "role": "user", "content": "What is the tallest mountain in Wales?"}),
        ];
        assert_eq!(answer(&replayed), answer(&alone));
        // Several new user messages after the context are still read together.
        let two = vec![
            json!({"type": "message.input", "role": "user", "content": "Hello."}),
            json!({"type": "message.input", "role": "user", "content": "What is the tallest mountain in Wales?"}),
        ];
        assert_ne!(answer(&two), answer(&alone));
    }

    #[test]
    fn web_search_gives_tool_execution_then_cited_message() {
        let sp = speaker(vec![json!({"type": "web_search"})]);
        let inputs = user("Who won the last European football cup?");
        let p = plan(
            &TurnInput {
                speaker: &sp,
                history: &[],
                inputs: &inputs,
                handoff_client: false,
                instructions: "",
            },
            None,
            3,
        );
        assert!(matches!(&p.steps[0].kind, StepKind::Tool { name, .. } if name == "web_search"));
        let StepKind::Message { pieces } = &p.steps[1].kind else {
            panic!()
        };
        assert!(
            pieces
                .iter()
                .any(|p| matches!(p, Piece::Chunk(c) if c["type"] == "tool_reference"))
        );
    }

    #[test]
    fn handoff_in_server_mode_continues_with_the_next_agent() {
        let mut sp = speaker(vec![]);
        sp.handoffs.push(Speaker {
            agent_id: Some("ag_2".into()),
            agent_name: "Finance".into(),
            model: "m2".into(),
            tools: vec![],
            handoffs: vec![],
        });
        let inputs = user("Let finance answer this");
        let server = plan(
            &TurnInput {
                speaker: &sp,
                history: &[],
                inputs: &inputs,
                handoff_client: false,
                instructions: "",
            },
            None,
            0,
        );
        assert!(
            matches!(&server.steps[0].kind, StepKind::Handoff { next_agent_id, .. } if next_agent_id == "ag_2")
        );
        assert_eq!(server.steps[1].agent_id.as_deref(), Some("ag_2"));
        let client = plan(
            &TurnInput {
                speaker: &sp,
                history: &[],
                inputs: &inputs,
                handoff_client: true,
                instructions: "",
            },
            None,
            0,
        );
        assert_eq!(client.steps.len(), 1);
    }
}
