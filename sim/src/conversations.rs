//! The Conversations operations: start, append, restart (streamed or not), list, get, delete, history.

use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::agents::{
    full_completion_args, metadata_filter, metadata_matches, normalize_tools, page_params,
};
use crate::config::FaultKind;
use crate::engine::{self, Speaker, TurnInput};
use crate::http::{Query, error_body, no_content};
use crate::ids;
use crate::state::{Conversation, Party, State};
use crate::turn::{self, Emitter, Ended};
use crate::twin::{Ctx, Reply};
use crate::validate::{self, Problems};

// ---------------------------------------------------------------------------------------------
// Conversations

pub(crate) fn id_prefix(ty: &str) -> &'static str {
    match ty {
        "function.call" => "fc_",
        "function.result" => "fr_",
        "tool.execution" => "tool_exec_",
        "agent.handoff" => "handoff_",
        _ => "msg_",
    }
}

/// Turns `inputs` (a string or entries that may omit `object`/`type`) into stored entries.
pub(crate) fn normalize_inputs(inputs: Option<&Value>) -> Vec<Value> {
    let now = ids::now();
    match inputs {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![
            json!({"role": "user", "content": s, "object": "entry", "type": "message.input", "created_at": now, "completed_at": null, "id": ids::new_id("msg_")}),
        ],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_object)
            .map(|e| {
                let ty = e
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("message.input")
                    .to_string();
                let mut out = Map::new();
                for (k, v) in e {
                    if !matches!(
                        k.as_str(),
                        "object" | "type" | "created_at" | "completed_at" | "id"
                    ) {
                        out.insert(k.clone(), v.clone());
                    }
                }
                out.insert("object".into(), json!("entry"));
                out.insert("type".into(), json!(ty));
                out.insert(
                    "created_at".into(),
                    e.get("created_at").cloned().unwrap_or_else(|| json!(now)),
                );
                out.insert(
                    "completed_at".into(),
                    e.get("completed_at").cloned().unwrap_or(Value::Null),
                );
                out.insert(
                    "id".into(),
                    e.get("id")
                        .cloned()
                        .unwrap_or_else(|| json!(ids::new_id(id_prefix(&ty)))),
                );
                Value::Object(out)
            })
            .collect(),
        Some(_) => Vec::new(),
    }
}

pub(crate) fn check_input_entries(entries: &[Value]) -> Problems {
    let mut p = Problems::default();
    for (i, e) in entries.iter().enumerate() {
        let ty = e.get("type").and_then(Value::as_str).unwrap_or("");
        let missing: &[&str] = match ty {
            "message.input" => &["role", "content"],
            "message.output" => &["content"],
            "function.result" => &["tool_call_id", "result"],
            "function.call" => &["tool_call_id", "name", "arguments"],
            "tool.execution" => &["name", "arguments"],
            "agent.handoff" => &[
                "previous_agent_id",
                "previous_agent_name",
                "next_agent_id",
                "next_agent_name",
            ],
            _ => {
                p.0.push(json!({"type": "union_tag_invalid", "loc": ["body", "inputs", i], "msg": format!("Input tag '{ty}' found using 'type' does not match any of the expected tags"), "input": e}));
                continue;
            }
        };
        for k in missing {
            if e.get(*k).is_none() {
                p.0.push(json!({"type": "missing", "loc": ["body", "inputs", i, ty, k], "msg": "Field required", "input": e}));
            }
        }
        if ty == "message.input"
            && let Some(r) = e.get("role")
            && !matches!(r.as_str(), Some("user" | "assistant"))
        {
            p.0.push(json!({"type": "literal_error", "loc": ["body", "inputs", i, ty, "role"], "msg": "Input should be 'user' or 'assistant'", "input": r}));
        }
    }
    p
}

pub(crate) fn speaker_for_agent(
    st: &State,
    agent_id: &str,
    version: Option<u64>,
    with_handoffs: bool,
) -> Option<Speaker> {
    let rec = st.agents.get(agent_id)?;
    let c = rec.config(version);
    let handoffs = if with_handoffs {
        c.get("handoffs")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|h| speaker_for_agent(st, h, None, false))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Some(Speaker {
        agent_id: Some(agent_id.to_string()),
        agent_name: c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        model: c
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        tools: c
            .get("tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        handoffs,
    })
}

pub(crate) fn speaker_and_instructions(st: &State, party: &Party) -> Option<(Speaker, String)> {
    match party {
        Party::Agent {
            agent_id,
            agent_version,
        } => {
            let sp = speaker_for_agent(st, agent_id, Some(*agent_version), true)?;
            let instr = st
                .agents
                .get(agent_id)?
                .config(Some(*agent_version))
                .get("instructions")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Some((sp, instr))
        }
        Party::Model {
            model,
            instructions,
            tools,
            ..
        } => Some((
            Speaker {
                agent_id: None,
                agent_name: String::new(),
                model: model.clone(),
                tools: tools.as_array().cloned().unwrap_or_default(),
                handoffs: Vec::new(),
            },
            instructions.as_str().unwrap_or("").to_string(),
        )),
    }
}

/// Runs a turn on a conversation that already holds its input entries (when stored), and answers.
// The arguments are the turn's distinct inputs; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_turn(
    ctx: Ctx,
    conv_id: String,
    speaker: Speaker,
    instructions: String,
    history: Vec<Value>,
    inputs: Vec<Value>,
    handoff_client: bool,
    store: bool,
    stream: bool,
) -> Reply {
    let plan = engine::plan(
        &TurnInput {
            speaker: &speaker,
            history: &history,
            inputs: &inputs,
            handoff_client,
            instructions: &instructions,
        },
        ctx.sim.knowledge.as_ref(),
        ctx.sim.cfg.seed,
    );
    let sim = ctx.sim.clone();
    let store_fn = {
        let sim = sim.clone();
        let conv_id = conv_id.clone();
        move |outputs: &[Value]| {
            if !store {
                return;
            }
            let mut st = sim.state.lock();
            if let Some(c) = st.conversations.get_mut(&conv_id) {
                c.entries.extend_from_slice(outputs);
                c.updated_at = ids::now();
            }
        }
    };
    if !stream {
        return match ctx.fault {
            Some(FaultKind::Reset) => Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset")),
            Some(FaultKind::Stall) => {
                tokio::time::sleep(sim.cfg.stall).await;
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "injected stall"))
            }
            Some(FaultKind::ErrorEvent) => ctx.json(StatusCode::INTERNAL_SERVER_ERROR, error_body("Simulated upstream error (injected fault)", "server_error", Value::Null)),
            _ => match turn::play(&sim, &plan, &conv_id, None, store_fn).await {
                Ended::Complete { outputs, usage } => ctx.json(StatusCode::OK, json!({"conversation_id": conv_id, "outputs": outputs, "usage": usage, "object": "conversation.response"})),
                Ended::Faulted(_) => Err(std::io::Error::other("fault")),
            },
        };
    }
    let (tx, mut rx) = mpsc::channel(64);
    let mut emitter = Emitter::new(tx, ctx.origin.clone(), ctx.fault, &plan);
    tokio::spawn(async move {
        if let Ended::Faulted(kind) =
            turn::play(&sim, &plan, &conv_id, Some(&mut emitter), store_fn).await
        {
            emitter.fail(&sim, kind).await;
        }
    });
    let body = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

pub(crate) fn handoff_client(body: &Value) -> bool {
    body.get("handoff_execution").and_then(Value::as_str) == Some("client")
}

/// Validates a start / append / restart body and returns its input entries, normalised.
pub(crate) fn turn_inputs(
    body: &Value,
    fields: &[validate::Field],
) -> Result<Vec<Value>, Problems> {
    let p = validate::check_body(body, fields);
    if !p.is_empty() {
        return Err(p);
    }
    let inputs = normalize_inputs(body.get("inputs"));
    let p = check_input_entries(&inputs);
    if p.is_empty() { Ok(inputs) } else { Err(p) }
}

pub(crate) async fn conv_start(ctx: Ctx, body: Value, stream: bool) -> Reply {
    let inputs = match turn_inputs(&body, validate::START) {
        Ok(i) => i,
        Err(p) => return ctx.invalid(p),
    };
    let agent_id = body.get("agent_id").and_then(Value::as_str);
    let model = body.get("model").and_then(Value::as_str);
    let store = body.get("store").and_then(Value::as_bool).unwrap_or(true);
    let now = ids::now();
    let conv_id = ids::new_id("conv_");
    let (speaker, instructions, party) = {
        let st = ctx.sim.state.lock();
        match (agent_id, model) {
            (Some(_), Some(_)) => {
                drop(st);
                return ctx.bad_request("Provide either agent_id or model, not both");
            }
            (None, None) => {
                drop(st);
                return ctx.bad_request("Either agent_id or model must be provided");
            }
            (Some(aid), None) => {
                let Some(rec) = st.agents.get(aid) else {
                    drop(st);
                    return ctx.not_found(&format!("Agent {aid}"));
                };
                let version = match body.get("agent_version").filter(|v| !v.is_null()) {
                    None => rec.active,
                    Some(v) => match rec.resolve_version(v) {
                        Some(v) => v,
                        None => {
                            drop(st);
                            return ctx.not_found(&format!("Version {v} of agent {aid}"));
                        }
                    },
                };
                let party = Party::Agent {
                    agent_id: aid.to_string(),
                    agent_version: version,
                };
                let (sp, instr) = speaker_and_instructions(&st, &party).expect("agent exists");
                (sp, instr, party)
            }
            (None, Some(m)) => {
                let party = Party::Model {
                    model: m.to_string(),
                    instructions: body.get("instructions").cloned().unwrap_or(Value::Null),
                    tools: normalize_tools(body.get("tools")),
                    completion_args: full_completion_args(
                        body.get("completion_args").filter(|v| !v.is_null()),
                    ),
                    guardrails: body.get("guardrails").cloned().unwrap_or(Value::Null),
                };
                let (sp, instr) = speaker_and_instructions(&st, &party).expect("model party");
                (sp, instr, party)
            }
        }
    };
    if store {
        let conv = Conversation {
            id: conv_id.clone(),
            created_at: now.clone(),
            updated_at: now,
            party,
            name: body.get("name").cloned().unwrap_or(Value::Null),
            description: body.get("description").cloned().unwrap_or(Value::Null),
            metadata: body.get("metadata").cloned().unwrap_or(Value::Null),
            entries: inputs.clone(),
        };
        let mut st = ctx.sim.state.lock();
        st.conversation_order.push(conv_id.clone());
        st.conversations.insert(conv_id.clone(), conv);
    }
    run_turn(
        ctx,
        conv_id,
        speaker,
        instructions,
        Vec::new(),
        inputs,
        handoff_client(&body),
        store,
        stream,
    )
    .await
}

pub(crate) async fn conv_append(ctx: Ctx, id: String, body: Value, stream: bool) -> Reply {
    let inputs = match turn_inputs(&body, validate::APPEND) {
        Ok(i) => i,
        Err(p) => return ctx.invalid(p),
    };
    let store = body.get("store").and_then(Value::as_bool).unwrap_or(true);
    let (speaker, instructions, history) = {
        let mut st = ctx.sim.state.lock();
        let Some(conv) = st.conversations.get(&id) else {
            drop(st);
            return ctx.not_found(&format!("Conversation {id}"));
        };
        let party = conv.party.clone();
        let history = conv.entries.clone();
        let Some((sp, instr)) = speaker_and_instructions(&st, &party) else {
            drop(st);
            return ctx.not_found("The conversation's agent");
        };
        if store && let Some(c) = st.conversations.get_mut(&id) {
            c.entries.extend(inputs.iter().cloned());
            c.updated_at = ids::now();
        }
        (sp, instr, history)
    };
    run_turn(
        ctx,
        id,
        speaker,
        instructions,
        history,
        inputs,
        handoff_client(&body),
        store,
        stream,
    )
    .await
}

pub(crate) async fn conv_restart(ctx: Ctx, id: String, body: Value, stream: bool) -> Reply {
    let inputs = match turn_inputs(&body, validate::RESTART) {
        Ok(i) => i,
        Err(p) => return ctx.invalid(p),
    };
    let from = body
        .get("from_entry_id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let store = body.get("store").and_then(Value::as_bool).unwrap_or(true);
    let new_id = ids::new_id("conv_");
    let (speaker, instructions, history) = {
        let mut st = ctx.sim.state.lock();
        let Some(conv) = st.conversations.get(&id) else {
            drop(st);
            return ctx.not_found(&format!("Conversation {id}"));
        };
        let Some(pos) = conv
            .entries
            .iter()
            .position(|e| e.get("id").and_then(Value::as_str) == Some(from))
        else {
            drop(st);
            return ctx.not_found(&format!("Entry {from} in conversation {id}"));
        };
        let mut party = conv.party.clone();
        if let (
            Party::Agent {
                agent_id,
                agent_version,
            },
            Some(v),
        ) = (
            &mut party,
            body.get("agent_version").filter(|v| !v.is_null()),
        ) {
            match st
                .agents
                .get(agent_id.as_str())
                .and_then(|r| r.resolve_version(v))
            {
                Some(n) => *agent_version = n,
                None => {
                    drop(st);
                    return ctx.not_found(&format!("Version {v} of the conversation's agent"));
                }
            }
        }
        let history: Vec<Value> = conv.entries[..=pos].to_vec();
        let now = ids::now();
        let branch = Conversation {
            id: new_id.clone(),
            created_at: now.clone(),
            updated_at: now,
            party: party.clone(),
            name: conv.name.clone(),
            description: conv.description.clone(),
            metadata: body
                .get("metadata")
                .cloned()
                .filter(|m| !m.is_null())
                .unwrap_or_else(|| conv.metadata.clone()),
            entries: history
                .iter()
                .cloned()
                .chain(inputs.iter().cloned())
                .collect(),
        };
        let Some((sp, instr)) = speaker_and_instructions(&st, &party) else {
            drop(st);
            return ctx.not_found("The conversation's agent");
        };
        if store {
            st.conversation_order.push(new_id.clone());
            st.conversations.insert(new_id.clone(), branch);
        }
        (sp, instr, history)
    };
    run_turn(
        ctx,
        new_id,
        speaker,
        instructions,
        history,
        inputs,
        handoff_client(&body),
        store,
        stream,
    )
    .await
}

pub(crate) fn conv_list(ctx: &Ctx, q: &Query) -> Reply {
    let (page, size) = match page_params(q, 100, 10_000) {
        Ok(p) => p,
        Err(p) => return ctx.invalid(p),
    };
    let meta = match metadata_filter(q.get("metadata")) {
        Ok(m) => m,
        Err(p) => return ctx.invalid(p),
    };
    let st = ctx.sim.state.lock();
    let mut out = Vec::new();
    let mut skipped = 0;
    for id in st.conversation_order.iter().rev() {
        let Some(c) = st.conversations.get(id) else {
            continue;
        };
        if !metadata_matches(Some(&c.metadata), meta.as_ref()) {
            continue;
        }
        if skipped < page * size {
            skipped += 1;
            continue;
        }
        out.push(c.render());
        if out.len() == size {
            break;
        }
    }
    drop(st);
    ctx.json(StatusCode::OK, Value::Array(out))
}

pub(crate) fn conv_get(ctx: &Ctx, id: &str) -> Reply {
    let out = ctx
        .sim
        .state
        .lock()
        .conversations
        .get(id)
        .map(Conversation::render);
    match out {
        Some(v) => ctx.json(StatusCode::OK, v),
        None => ctx.not_found(&format!("Conversation {id}")),
    }
}

pub(crate) fn conv_delete(ctx: &Ctx, id: &str) -> Reply {
    let mut st = ctx.sim.state.lock();
    let removed = st.conversations.remove(id).is_some();
    st.compact_orders();
    drop(st);
    if removed {
        Ok(no_content())
    } else {
        ctx.not_found(&format!("Conversation {id}"))
    }
}

pub(crate) fn conv_history(ctx: &Ctx, id: &str, messages_only: bool) -> Reply {
    let entries = ctx.sim.state.lock().conversations.get(id).map(|c| {
        c.entries
            .iter()
            .filter(|e| {
                !messages_only
                    || matches!(
                        e.get("type").and_then(Value::as_str),
                        Some("message.input" | "message.output")
                    )
            })
            .cloned()
            .collect::<Vec<_>>()
    });
    match entries {
        None => ctx.not_found(&format!("Conversation {id}")),
        Some(e) if messages_only => ctx.json(
            StatusCode::OK,
            json!({"object": "conversation.messages", "conversation_id": id, "messages": e}),
        ),
        Some(e) => ctx.json(
            StatusCode::OK,
            json!({"object": "conversation.history", "conversation_id": id, "entries": e}),
        ),
    }
}
