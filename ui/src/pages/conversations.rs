//! `/conversations` and `/conversations/<id>`: the recorded conversations, and one as a tree of turns,
//! entries and restart branches. The queries and the tree are `agentcap_proxy::views`' (the same as
//! `agentcap conversations list / show`); this file only renders them.

use agentcap_proxy::views::{
    self, ConversationSummary, ConversationTree, EntryNode, SIMULATED_LABEL, Turn,
};
use maud::{Markup, html};

use super::{clip, fmt_ts, fmt_us, layout};
use crate::db::Param;
use crate::web::enc;
use crate::{UiError, UiState};

/// Conversations listed at most.
const LIST_LIMIT: usize = 200;
/// Turns drawn per conversation (branches included) at most.
const MAX_TURNS: usize = 1000;
/// Bytes of an entry's text or arguments shown.
const TEXT_BYTES: usize = 4096;

/// The views' JSON parameters as the UI's (text, or integers).
fn params(values: &[serde_json::Value]) -> Vec<Param> {
    values
        .iter()
        .map(|v| match v {
            serde_json::Value::Number(n) => n
                .as_i64()
                .map_or_else(|| Param::Text(n.to_string()), Param::Int),
            serde_json::Value::String(s) => Param::Text(s.clone()),
            other => Param::Text(other.to_string()),
        })
        .collect()
}

/// The list.
pub async fn list(state: &UiState) -> Result<Markup, UiError> {
    let rows = state
        .with_db(|db| views::list(|sql, p| db.query(sql, &params(p)), LIST_LIMIT))
        .await??;
    Ok(layout(
        "Conversations",
        html! {
            @if rows.is_empty() { p.empty { "No conversations recorded." } }
            @else {
                p.muted { "The " (rows.len()) " most recently seen (at most " (LIST_LIMIT) ")." }
                table.list #conversations {
                    thead { tr {
                        th { "Conversation" } th { "Agent" } th { "Model" } th.num { "Turns" } th.num { "Tokens" }
                        th.num { "Duration" } th { "Last seen (UTC)" } th.num { "Errors" } th { "Branch of" } th { "Upstream" }
                    } }
                    tbody { @for c in &rows { (summary_row(c)) } }
                }
            }
        },
    ))
}

fn summary_row(c: &ConversationSummary) -> Markup {
    html! {
        tr {
            td.mono { a href={ "/conversations/" (enc(&c.id)) } { (c.id) } }
            td { (c.agent_id.as_deref().unwrap_or("")) }
            td { (c.model.as_deref().unwrap_or("")) }
            td.num { (c.turns) }
            td.num { (c.total_tokens) }
            td.num { (fmt_us(c.duration_us)) }
            td { (fmt_ts(c.last_seen.as_deref())) }
            td.num { (c.errors) }
            td.mono { @if let Some(p) = &c.parent_conversation_id { a href={ "/conversations/" (enc(p)) } { (p) } } }
            td { @if c.simulated_upstream { span.sim { (SIMULATED_LABEL) } } }
        }
    }
}

/// One conversation as a tree.
pub async fn show(state: &UiState, id: &str) -> Result<Markup, UiError> {
    let owned = id.to_string();
    let tree = state
        .with_db(move |db| views::show(|sql, p| db.query(sql, &params(p)), &owned))
        .await??;
    let Some(tree) = tree else {
        return Err(UiError::NotFound(format!("no conversation {id}")));
    };
    let mut budget = MAX_TURNS;
    Ok(layout(
        &format!("Conversation {id}"),
        html! {
            @if !tree.ancestors.is_empty() {
                p.ancestors { "Branch of: "
                    @for a in &tree.ancestors {
                        a href={ "/conversations/" (enc(&a.conversation_id)) } { (a.conversation_id) }
                        @if let Some(e) = &a.from_entry_id { " (from entry " code { (e) } ")" }
                        " › "
                    }
                    (id)
                }
            }
            (conversation(&tree, &mut budget))
        },
    ))
}

fn conversation(t: &ConversationTree, budget: &mut usize) -> Markup {
    let c = &t.conversation;
    let mut turns = Vec::new();
    let mut skipped = 0usize;
    for (i, turn) in t.turns.iter().enumerate() {
        if *budget == 0 {
            skipped += 1;
            continue;
        }
        *budget -= 1;
        turns.push(turn_view(i + 1, turn, budget));
    }
    html! {
        div.conv data-conversation=(c.id) {
            p.convhead {
                @if let Some(a) = &c.agent_id { "agent " code { (a) } " " }
                @if let Some(m) = &c.model { "model " code { (m) } " " }
                "· " (c.turns) " turns · " (c.total_tokens) " tokens · " (fmt_us(c.duration_us))
                @if c.simulated_upstream { " · " span.sim { (SIMULATED_LABEL) } }
            }
            ol.turns {
                @for m in turns { li.turn { (m) } }
                @if skipped > 0 { li.cut { "… " (skipped) " more turns not shown (at most " (MAX_TURNS) " per page)" } }
            }
            @for b in &t.detached_branches {
                div.branch.detached {
                    p { "↳ branch restarted from an entry not among the recorded ones ("
                        code { (b.conversation.from_entry_id.as_deref().unwrap_or("?")) } ")" }
                    (branch(b, budget))
                }
            }
        }
    }
}

fn branch(b: &ConversationTree, budget: &mut usize) -> Markup {
    html! {
        p.branchhead { "↳ branch "
            a href={ "/conversations/" (enc(&b.conversation.id)) } { (b.conversation.id) } }
        (conversation(b, budget))
    }
}

fn turn_view(n: usize, t: &Turn, budget: &mut usize) -> Markup {
    html! {
        div.turnhead {
            "Turn " (n) " · "
            a href={ "/exchanges/" (enc(&t.exchange_id)) } { (t.operation.as_deref().unwrap_or("exchange")) }
            " · " (t.status.map(|s| s.to_string()).unwrap_or_default()) " " (t.outcome.as_deref().unwrap_or(""))
            " · " (fmt_ts(t.started_at.as_deref()))
            " · total " (fmt_us(t.timings.total_us))
            @if t.is_stream { " · first event " (fmt_us(t.timings.first_event_us)) " · " (t.event_count.unwrap_or(0)) " events" }
            @if let Some(u) = &t.usage { " · " (u.total_tokens.unwrap_or(0)) " tokens" }
            @if let Some(e) = &t.stream_error { div.error { "stream error: " (e) } }
            @if let Some(e) = &t.error { div.error { (e) } }
        }
        ul.entries {
            @for e in &t.entries {
                li class={ "entry " (kind_class(&e.kind)) } {
                    (entry_view(e))
                    @for b in &e.branches {
                        div.branch { (branch(b, budget)) }
                    }
                }
            }
        }
    }
}

/// A CSS class from an entry type (letters only, so no recorded text reaches the class list unfiltered).
fn kind_class(kind: &str) -> String {
    let k: String = kind
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("k-{k}")
}

fn long(s: &str) -> Markup {
    let (shown, cut) = clip(s, TEXT_BYTES);
    html! { (shown) @if cut { span.cut { " … (" (s.len()) " bytes)" } } }
}

fn entry_view(e: &EntryNode) -> Markup {
    let dir = if e.direction == "input" { "→" } else { "←" };
    html! {
        span.dir { (dir) } " "
        span.etype { (e.kind) } " "
        @if let Some(id) = &e.entry_id { code.eid { (id) } " " }
        @match e.kind.as_str() {
            "function.call" => {
                "call " b { (e.name.as_deref().unwrap_or("?")) }
                @if let Some(c) = &e.tool_call_id { " (" code { (c) } ")" }
                @if let Some(a) = &e.arguments { pre.args { (long(a)) } }
            }
            "function.result" => {
                "result of " code { (e.tool_call_id.as_deref().unwrap_or("?")) }
                @if let Some(t) = &e.text { pre.text { (long(t)) } }
            }
            "tool.execution" => {
                "connector " b { (e.name.as_deref().unwrap_or("?")) }
                @if let Some(a) = &e.arguments { pre.args { (long(a)) } }
            }
            "agent.handoff" => {
                @if let Some(h) = &e.handoff {
                    "handoff "
                    b { (h.previous_agent_name.clone().or(h.previous_agent_id.clone()).unwrap_or_else(|| "?".into())) }
                    " → "
                    b { (h.next_agent_name.clone().or(h.next_agent_id.clone()).unwrap_or_else(|| "?".into())) }
                }
            }
            _ => {
                @if let Some(r) = &e.role { span.role { (r) } " " }
                @if let Some(a) = &e.agent_id { "(" (a) ") " }
                @if let Some(t) = &e.text { div.text { (long(t)) } }
            }
        }
    }
}
