//! The Agents operations: create, list, get, update, version switch, versions, aliases.

use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::http::{Query, no_content};
use crate::ids;
use crate::state::{AgentRecord, AgentVersion, Alias};
use crate::twin::{Ctx, Reply};
use crate::validate::{self, Problems};

// ---------------------------------------------------------------------------------------------
// Agents

const COMPLETION_ARG_KEYS: [&str; 11] = [
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "temperature",
    "top_p",
    "max_tokens",
    "random_seed",
    "prediction",
    "response_format",
    "tool_choice",
    "reasoning_effort",
];

/// A full completion-args object: every key present, null unless set, `tool_choice` defaulting to `auto`.
pub fn full_completion_args(given: Option<&Value>) -> Value {
    let mut out = Map::new();
    for k in COMPLETION_ARG_KEYS {
        let v = given.and_then(|g| g.get(k)).cloned().unwrap_or(Value::Null);
        let v = if k == "tool_choice" && v.is_null() {
            json!("auto")
        } else {
            v
        };
        out.insert(k.to_string(), v);
    }
    Value::Object(out)
}

/// Tools as the API echoes them: `type` filled in, function tools with `strict` defaulting to false.
pub fn normalize_tools(tools: Option<&Value>) -> Value {
    let Some(Value::Array(list)) = tools else {
        return json!([]);
    };
    Value::Array(
        list.iter()
            .map(|t| {
                let mut t = t.as_object().cloned().unwrap_or_default();
                let ty = t
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("function")
                    .to_string();
                if ty == "function" {
                    let mut out = Map::new();
                    out.insert("type".into(), json!("function"));
                    let mut func = t
                        .remove("function")
                        .and_then(|f| f.as_object().cloned())
                        .unwrap_or_default();
                    func.entry("strict").or_insert(json!(false));
                    out.insert("function".into(), Value::Object(func));
                    Value::Object(out)
                } else {
                    let mut out = Map::new();
                    out.insert("type".into(), json!(ty));
                    t.remove("type");
                    out.extend(t);
                    Value::Object(out)
                }
            })
            .collect(),
    )
}

pub(crate) fn agent_config(
    body: &Map<String, Value>,
    prev: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let pick = |k: &str, default: Value| -> Value {
        match (body.get(k), prev.and_then(|p| p.get(k))) {
            (Some(v), Some(old)) if v.is_null() && matches!(k, "model" | "name") => old.clone(),
            (Some(v), _) => v.clone(),
            (None, Some(old)) => old.clone(),
            (None, None) => default,
        }
    };
    let mut c = Map::new();
    c.insert("model".into(), pick("model", json!("")));
    c.insert("name".into(), pick("name", json!("")));
    c.insert("description".into(), pick("description", Value::Null));
    c.insert("instructions".into(), pick("instructions", Value::Null));
    let tools = match body.get("tools") {
        Some(t) => normalize_tools(Some(t)),
        None => prev
            .and_then(|p| p.get("tools"))
            .cloned()
            .unwrap_or_else(|| json!([])),
    };
    c.insert("tools".into(), tools);
    let ca = match body.get("completion_args") {
        Some(g) => full_completion_args(Some(g)),
        None => prev
            .and_then(|p| p.get("completion_args"))
            .cloned()
            .unwrap_or_else(|| full_completion_args(None)),
    };
    c.insert("completion_args".into(), ca);
    c.insert("guardrails".into(), pick("guardrails", Value::Null));
    c.insert("handoffs".into(), pick("handoffs", Value::Null));
    c.insert("metadata".into(), pick("metadata", Value::Null));
    c.insert(
        "deployment_chat".into(),
        match body.get("deployment_chat") {
            Some(Value::Bool(b)) => json!(b),
            _ => prev
                .and_then(|p| p.get("deployment_chat"))
                .cloned()
                .unwrap_or(json!(false)),
        },
    );
    c.insert("source".into(), json!("api"));
    c.insert(
        "version_message".into(),
        body.get("version_message").cloned().unwrap_or(Value::Null),
    );
    c
}

pub(crate) fn agents_create(ctx: &Ctx, body: &Value) -> Reply {
    let p = validate::check_body(body, validate::CREATE_AGENT);
    if !p.is_empty() {
        return ctx.invalid(p);
    }
    let obj = body.as_object().expect("validated object");
    let now = ids::now();
    let rec = AgentRecord {
        id: ids::new_id("ag_"),
        versions: vec![AgentVersion {
            config: agent_config(obj, None),
            created_at: now.clone(),
        }],
        active: 0,
        created_at: now.clone(),
        updated_at: now,
        aliases: Vec::new(),
    };
    let out = rec.render(None);
    let mut st = ctx.sim.state.lock();
    st.agent_order.push(rec.id.clone());
    st.agents.insert(rec.id.clone(), rec);
    drop(st);
    ctx.json(StatusCode::OK, out)
}

/// Parses the `metadata` query filter once: a JSON object filters; absent, `null` or a JSON string (the
/// Python SDK sends its "unset" sentinel as a JSON string on every list call) means no filter.
pub(crate) fn metadata_filter(raw: Option<&str>) -> Result<Option<Map<String, Value>>, Problems> {
    let Some(text) = raw else { return Ok(None) };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(Value::Null | Value::String(_)) => Ok(None),
        _ => Err(Problems(vec![
            json!({"type": "json_invalid", "loc": ["query", "metadata"], "msg": "Invalid JSON object", "input": text}),
        ])),
    }
}

pub(crate) fn metadata_matches(meta: Option<&Value>, filter: Option<&Map<String, Value>>) -> bool {
    let Some(want) = filter else { return true };
    let have = meta.and_then(Value::as_object);
    want.iter()
        .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
}

pub(crate) fn page_params(
    q: &Query,
    default_size: usize,
    max: usize,
) -> Result<(usize, usize), Problems> {
    let parse = |k: &str, d: usize| -> Result<usize, Problems> {
        match q.get(k) {
            None => Ok(d),
            Some(s) => s.parse::<usize>().map_err(|_| {
                Problems(vec![json!({"type": "int_parsing", "loc": ["query", k], "msg": "Input should be a valid integer, unable to parse string as an integer", "input": s})])
            }),
        }
    };
    let page = parse("page", 0)?;
    let size = parse("page_size", default_size)?;
    if size == 0 || size > max {
        return Err(Problems(vec![
            json!({"type": "less_than_equal", "loc": ["query", "page_size"], "msg": format!("Input should be between 1 and {max}"), "input": size.to_string()}),
        ]));
    }
    Ok((page, size))
}

pub(crate) fn agents_list(ctx: &Ctx, q: &Query, pages: bool) -> Reply {
    let (page, size) = match page_params(q, 20, 1000) {
        Ok(p) => p,
        Err(p) => return ctx.invalid(p),
    };
    let offset = if pages {
        match q.get("page_token") {
            None | Some("") => 0,
            Some(t) => match usize::from_str_radix(t.trim_start_matches("off_"), 16) {
                Ok(n) if t.starts_with("off_") => n,
                _ => return ctx.bad_request("Invalid page_token"),
            },
        }
    } else {
        page * size
    };
    let meta = match metadata_filter(q.get("metadata")) {
        Ok(m) => m,
        Err(p) => return ctx.invalid(p),
    };
    let st = ctx.sim.state.lock();
    let sources = q.all("sources");
    let mut matched = Vec::new();
    for id in st.agent_order.iter().rev() {
        let Some(rec) = st.agents.get(id) else {
            continue;
        };
        let c = rec.config(None);
        if let Some(n) = q.get("name")
            && c.get("name").and_then(Value::as_str) != Some(n)
        {
            continue;
        }
        if let Some(s) = q.get("search") {
            let s = s.to_lowercase();
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_lowercase();
            if !name.contains(&s) && !rec.id.contains(&s) {
                continue;
            }
        }
        if let Some(want) = q.get("id")
            && want != rec.id
        {
            continue;
        }
        if let Some(dc) = q.get("deployment_chat")
            && c.get("deployment_chat").and_then(Value::as_bool) != Some(dc == "true")
        {
            continue;
        }
        if !sources.is_empty()
            && !sources.contains(&c.get("source").and_then(Value::as_str).unwrap_or(""))
        {
            continue;
        }
        if !metadata_matches(c.get("metadata"), meta.as_ref()) {
            continue;
        }
        matched.push(rec.render(None));
    }
    drop(st);
    let total = matched.len();
    let data: Vec<Value> = matched.into_iter().skip(offset).take(size).collect();
    if pages {
        let next = (offset + size < total).then(|| format!("off_{:x}", offset + size));
        ctx.json(
            StatusCode::OK,
            json!({"object": "list", "data": data, "next_page_token": next}),
        )
    } else {
        ctx.json(StatusCode::OK, Value::Array(data))
    }
}

pub(crate) fn agents_get(ctx: &Ctx, id: &str, version: Option<&str>) -> Reply {
    let st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let v = match version {
        None => None,
        Some(s) => match rec.resolve_version(&json!(s)) {
            Some(v) => Some(v),
            None => {
                drop(st);
                return ctx.not_found(&format!("Version {s} of agent {id}"));
            }
        },
    };
    let out = rec.render(v);
    drop(st);
    ctx.json(StatusCode::OK, out)
}

pub(crate) fn agents_update(ctx: &Ctx, id: &str, body: &Value) -> Reply {
    let p = validate::check_body(body, validate::UPDATE_AGENT);
    if !p.is_empty() {
        return ctx.invalid(p);
    }
    let obj = body.as_object().expect("validated object");
    let mut st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get_mut(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let now = ids::now();
    let config = agent_config(obj, Some(rec.config(None)));
    rec.versions.push(AgentVersion {
        config,
        created_at: now.clone(),
    });
    rec.active = rec.versions.len() as u64 - 1;
    rec.updated_at = now;
    let out = rec.render(None);
    drop(st);
    ctx.json(StatusCode::OK, out)
}

pub(crate) fn agents_delete(ctx: &Ctx, id: &str) -> Reply {
    let mut st = ctx.sim.state.lock();
    if st.agents.remove(id).is_none() {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    }
    st.compact_orders();
    Ok(no_content())
}

pub(crate) fn agents_switch(ctx: &Ctx, id: &str, q: &Query, body: &Value) -> Reply {
    let raw = q
        .get("version")
        .map(|s| json!(s))
        .or_else(|| body.get("version").cloned());
    let Some(raw) = raw else {
        return ctx.invalid(Problems(vec![json!({"type": "missing", "loc": ["query", "version"], "msg": "Field required", "input": null})]));
    };
    let mut st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get_mut(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let Some(v) = rec.resolve_version(&raw) else {
        drop(st);
        return ctx.not_found(&format!("Version {raw} of agent {id}"));
    };
    rec.active = v;
    rec.updated_at = ids::now();
    let out = rec.render(None);
    drop(st);
    ctx.json(StatusCode::OK, out)
}

pub(crate) fn agents_versions(ctx: &Ctx, id: &str, q: &Query) -> Reply {
    let (page, size) = match page_params(q, 20, 100) {
        Ok(p) => p,
        Err(p) => return ctx.invalid(p),
    };
    let st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let out: Vec<Value> = (0..rec.versions.len() as u64)
        .rev()
        .skip(page * size)
        .take(size)
        .map(|v| rec.render(Some(v)))
        .collect();
    drop(st);
    ctx.json(StatusCode::OK, Value::Array(out))
}

pub(crate) fn valid_alias(a: &str) -> bool {
    let b = a.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
        && (b.len() == 1 || b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
}

pub(crate) fn alias_json(name: &str, a: &Alias) -> Value {
    json!({"alias": name, "version": a.version, "created_at": a.created_at, "updated_at": a.updated_at})
}

pub(crate) fn alias_put(ctx: &Ctx, id: &str, q: &Query) -> Reply {
    let Some(alias) = q.get("alias") else {
        return ctx.invalid(Problems(vec![json!({"type": "missing", "loc": ["query", "alias"], "msg": "Field required", "input": null})]));
    };
    if !valid_alias(alias) {
        return ctx.invalid(Problems(vec![json!({"type": "string_pattern_mismatch", "loc": ["query", "alias"], "msg": "String should match pattern '^[a-z]([a-z0-9_-]*[a-z0-9])?$'", "input": alias, "ctx": {"pattern": "^[a-z]([a-z0-9_-]*[a-z0-9])?$"}})]));
    }
    let Some(version) = q.get("version").and_then(|v| v.parse::<u64>().ok()) else {
        return ctx.invalid(Problems(vec![json!({"type": "missing", "loc": ["query", "version"], "msg": "Field required", "input": null})]));
    };
    let mut st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get_mut(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    if version as usize >= rec.versions.len() {
        drop(st);
        return ctx.not_found(&format!("Version {version} of agent {id}"));
    }
    let now = ids::now();
    let out = match rec.aliases.iter_mut().find(|(n, _)| n == alias) {
        Some((n, a)) => {
            a.version = version;
            a.updated_at = now;
            alias_json(n, a)
        }
        None => {
            let a = Alias {
                version,
                created_at: now.clone(),
                updated_at: now,
            };
            let out = alias_json(alias, &a);
            rec.aliases.push((alias.to_string(), a));
            out
        }
    };
    drop(st);
    ctx.json(StatusCode::OK, out)
}

pub(crate) fn alias_list(ctx: &Ctx, id: &str) -> Reply {
    let st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let out: Vec<Value> = rec.aliases.iter().map(|(n, a)| alias_json(n, a)).collect();
    drop(st);
    ctx.json(StatusCode::OK, Value::Array(out))
}

pub(crate) fn alias_delete(ctx: &Ctx, id: &str, q: &Query) -> Reply {
    let alias = q.get("alias").unwrap_or("");
    let mut st = ctx.sim.state.lock();
    let Some(rec) = st.agents.get_mut(id) else {
        drop(st);
        return ctx.not_found(&format!("Agent {id}"));
    };
    let before = rec.aliases.len();
    rec.aliases.retain(|(n, _)| n != alias);
    let removed = rec.aliases.len() != before;
    drop(st);
    if removed {
        Ok(no_content())
    } else {
        ctx.not_found(&format!("Alias {alias} of agent {id}"))
    }
}
