//! The entities an exchange mentions, as rows: usage, conversation entries (request inputs,
//! response outputs), agent version snapshots and conversation information.

use agentcap_wire::{ConversationUsageInfo, Entry, FunctionArguments};
use serde_json::Value;

use super::rows::{AgentRow, ConvUpdate, EntryRow, UsageRow};
use super::{scalar_text, str_of, to_i64};

pub(super) fn usage_row(u: &ConversationUsageInfo) -> UsageRow {
    UsageRow {
        prompt_tokens: Some(to_i64(u.prompt())),
        completion_tokens: Some(to_i64(u.completion())),
        total_tokens: Some(to_i64(u.total())),
        connector_tokens: u.connector_tokens.get().copied().map(to_i64),
        connectors: u
            .connectors
            .get()
            .map(|m| Value::Object(m.clone()).to_string()),
    }
}

pub(super) fn chat_usage_row(u: &Value) -> UsageRow {
    let int = |k: &str| u.get(k).and_then(Value::as_i64);
    UsageRow {
        prompt_tokens: int("prompt_tokens"),
        completion_tokens: int("completion_tokens"),
        total_tokens: int("total_tokens"),
        connector_tokens: int("connector_tokens"),
        connectors: u
            .get("connectors")
            .filter(|c| c.is_object())
            .map(Value::to_string),
    }
}

/// A usage row from a non-streamed response's `usage` value.
pub(super) fn usage_from_value(u: &Value) -> UsageRow {
    match serde_json::from_value::<ConversationUsageInfo>(u.clone()) {
        Ok(info) => usage_row(&info),
        Err(_) => chat_usage_row(u),
    }
}

/// Parses a list of entries, keeping each item's JSON as `raw`.
pub(super) fn entries_of(items: &[Value]) -> Vec<(Entry, Value)> {
    items
        .iter()
        .map(|item| {
            let entry =
                Entry::from_value(item.clone()).unwrap_or_else(|_| Entry::Other(item.clone()));
            (entry, item.clone())
        })
        .collect()
}

/// The request `inputs` as entries: a string is one user `message.input`.
pub(super) fn inputs_of(inputs: &Value) -> Vec<(Entry, Value)> {
    match inputs {
        Value::String(_) => match serde_json::from_value::<agentcap_wire::Inputs>(inputs.clone()) {
            Ok(parsed) => parsed
                .to_entries()
                .into_iter()
                .map(|e| {
                    let raw = e.to_value();
                    (e, raw)
                })
                .collect(),
            Err(_) => Vec::new(),
        },
        Value::Array(items) => entries_of(items),
        _ => Vec::new(),
    }
}

pub(super) fn entry_row(
    entry: &Entry,
    raw: &Value,
    direction: &'static str,
    position: usize,
    source: &'static str,
) -> EntryRow {
    let mut row = EntryRow {
        entry_id: entry.id().map(str::to_owned),
        direction,
        position: i32::try_from(position).unwrap_or(i32::MAX),
        entry_type: entry.type_name().map(str::to_owned),
        created_at: entry.created_at().map(str::to_owned),
        completed_at: entry.completed_at().map(str::to_owned),
        source,
        raw: raw.to_string(),
        ..Default::default()
    };
    match entry {
        Entry::MessageInput(e) => {
            row.role = Some(e.role.as_str().to_owned());
            row.text = Some(e.content.text());
        }
        Entry::MessageOutput(e) => {
            row.role = e.role.get().map(|r| r.as_str().to_owned());
            row.agent_id = e.agent_id.get().cloned();
            row.model = e.model.get().cloned();
            row.text = Some(e.content.text());
        }
        Entry::FunctionCall(e) => {
            row.agent_id = e.agent_id.get().cloned();
            row.model = e.model.get().cloned();
            row.name = Some(e.name.clone());
            row.tool_call_id = Some(e.tool_call_id.clone());
            row.arguments = Some(match &e.arguments {
                FunctionArguments::Text(s) => s.clone(),
                FunctionArguments::Object(m) => Value::Object(m.clone()).to_string(),
            });
        }
        Entry::FunctionResult(e) => {
            row.tool_call_id = Some(e.tool_call_id.clone());
            row.text = Some(e.result.clone());
        }
        Entry::ToolExecution(e) => {
            row.agent_id = e.agent_id.get().cloned();
            row.model = e.model.get().cloned();
            row.name = Some(e.name.clone());
            row.arguments = e.arguments.get().cloned();
        }
        Entry::AgentHandoff(e) => {
            row.agent_id = Some(e.next_agent_id.clone());
        }
        Entry::Other(v) => {
            row.role = str_of(v.get("role"));
            row.agent_id = str_of(v.get("agent_id"));
            row.model = str_of(v.get("model"));
            row.name = str_of(v.get("name"));
            row.tool_call_id = str_of(v.get("tool_call_id"));
            row.arguments = match v.get("arguments") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) if !other.is_null() => Some(other.to_string()),
                _ => None,
            };
            row.text = match v.get("content") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => str_of(v.get("result")),
            };
        }
    }
    row
}

/// Agent snapshots in a response: one agent object, a list, or a page.
pub(super) fn agent_rows(op: &str, body: &Value) -> Vec<AgentRow> {
    let one = |v: &Value| -> Option<AgentRow> {
        let id = v.get("id")?.as_str()?;
        let version = v.get("version")?.as_i64()?;
        Some(AgentRow {
            agent_id: id.to_owned(),
            version,
            snapshot: v.to_string(),
        })
    };
    match op {
        "agents.create"
        | "agents.update"
        | "agents.get"
        | "agents.update_version"
        | "agents.get_version" => one(body).into_iter().collect(),
        "agents.list" | "agents.list_versions" => body
            .as_array()
            .map(|a| a.iter().filter_map(one).collect())
            .unwrap_or_default(),
        "agents.list_pages" => body
            .get("data")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(one).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Conversation information in a GET / list response.
pub(super) fn conversation_info(body: &Value) -> Option<ConvUpdate> {
    Some(ConvUpdate {
        id: str_of(body.get("id"))?,
        agent_id: str_of(body.get("agent_id")),
        agent_version: scalar_text(body.get("agent_version")),
        model: str_of(body.get("model")),
        ..Default::default()
    })
}
