//! The recording's views as text for a terminal: any query result as a table (`agentcap query`), the
//! conversation list (`agentcap conversations list`) and a conversation's tree (`conversations show`).
//! The data comes from `agentcap_proxy::views`; this module only lays it out.
//!
//! Recorded text is hostile here too: control characters (line breaks, escape sequences that would drive
//! the terminal) are printed escaped (`\n`, `\u{1b}`), so a tree line stays one line and nothing recorded
//! reaches the terminal as a command. Query tables keep line breaks inside a cell (the table draws them).

use std::borrow::Cow;
use std::fmt::Write as _;

use agentcap_proxy::recorder::QueryResult;
use agentcap_proxy::views::{
    ConversationSummary, ConversationTree, EntryNode, SIMULATED_LABEL, Turn, parse_ts,
};
use comfy_table::{CellAlignment, Table, presets};
use serde_json::Value;

/// A value as one table or CSV cell: text as it is, `NULL`-free (empty), anything else as compact JSON.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `s` with its control characters escaped as Rust writes them (`\r`, `\t`, `\u{1b}`, …); line breaks too,
/// unless `keep_newlines`.
pub fn printable(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let escape = |c: char| c.is_control() && !(keep_newlines && c == '\n');
    if !s.chars().any(escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if escape(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Any query result as a text table.
pub fn render_table(r: &QueryResult) -> String {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    t.set_header(r.columns.iter().map(|c| printable(c, false).into_owned()));
    for row in &r.rows {
        t.add_row(row.iter().map(|v| match v {
            Value::Null => "NULL".to_string(),
            v => printable(&cell_text(v), true).into_owned(),
        }));
    }
    for i in 0..r.columns.len() {
        let numeric = r
            .rows
            .iter()
            .any(|row| row.get(i).is_some_and(Value::is_number))
            && r.rows
                .iter()
                .all(|row| row.get(i).is_none_or(|v| v.is_number() || v.is_null()));
        right_align(&mut t, i, numeric);
    }
    format!(
        "{t}\n({} row{})",
        r.rows.len(),
        if r.rows.len() == 1 { "" } else { "s" }
    )
}

/// A duration in microseconds, for people: `850 µs`, `12.3 ms`, `4.56 s`, `3m 05s`.
pub fn human_us(us: i64) -> String {
    let a = us.unsigned_abs();
    let sign = if us < 0 { "-" } else { "" };
    if a < 1_000 {
        format!("{sign}{a} µs")
    } else if a < 1_000_000 {
        format!("{sign}{:.1} ms", a as f64 / 1e3)
    } else if a < 60_000_000 {
        format!("{sign}{:.2} s", a as f64 / 1e6)
    } else {
        let s = a / 1_000_000;
        format!("{sign}{}m {:02}s", s / 60, s % 60)
    }
}

fn short_time(ts: &str) -> String {
    parse_ts(ts)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ts.to_string())
}

fn right_align(t: &mut Table, column: usize, yes: bool) {
    if let (true, Some(c)) = (yes, t.column_mut(column)) {
        c.set_cell_alignment(CellAlignment::Right);
    }
}

/// `conversations list` as a table.
pub fn render_list(rows: &[ConversationSummary]) -> String {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "conversation",
        "agent",
        "model",
        "turns",
        "tokens",
        "first seen (UTC)",
        "last seen (UTC)",
        "duration",
        "exchanges",
        "errors",
        "parent",
        "upstream",
    ]);
    for r in rows {
        let parent = match (&r.parent_conversation_id, &r.from_entry_id) {
            (Some(p), Some(e)) => format!("{p} @ {e}"),
            (Some(p), None) => p.clone(),
            _ => String::new(),
        };
        t.add_row(
            [
                r.id.clone(),
                r.agent_id.clone().unwrap_or_default(),
                r.model.clone().unwrap_or_default(),
                r.turns.to_string(),
                r.total_tokens.to_string(),
                r.first_seen.as_deref().map(short_time).unwrap_or_default(),
                r.last_seen.as_deref().map(short_time).unwrap_or_default(),
                r.duration_us.map(human_us).unwrap_or_default(),
                r.exchanges.to_string(),
                r.errors.to_string(),
                parent,
                if r.simulated_upstream {
                    SIMULATED_LABEL.to_string()
                } else {
                    String::new()
                },
            ]
            .map(|cell| printable(&cell, false).into_owned()),
        );
    }
    for column in [3, 4, 7, 8, 9] {
        right_align(&mut t, column, true);
    }
    let simulated = rows.iter().filter(|r| r.simulated_upstream).count();
    let note = match simulated {
        0 => String::new(),
        n if n == rows.len() => format!(", all from a {SIMULATED_LABEL}"),
        n => format!(", {n} from a {SIMULATED_LABEL}"),
    };
    format!(
        "{t}\n({} conversation{}{note})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    )
}

/// One line of text, at most `max` characters (an ellipsis marks the cut).
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A line of the tree and what hangs under it.
struct Node {
    label: String,
    children: Vec<Node>,
}

fn draw(out: &mut String, nodes: &[Node], prefix: &str) {
    for (i, n) in nodes.iter().enumerate() {
        let last = i + 1 == nodes.len();
        let _ = writeln!(
            out,
            "{prefix}{}{}",
            if last { "└─ " } else { "├─ " },
            printable(&n.label, false)
        );
        let deeper = format!("{prefix}{}", if last { "   " } else { "│  " });
        draw(out, &n.children, &deeper);
    }
}

fn summary_label(c: &ConversationSummary) -> String {
    let mut parts = vec![c.id.clone()];
    if c.simulated_upstream {
        parts.push(format!("({SIMULATED_LABEL})"));
    }
    match (&c.agent_id, &c.agent_version) {
        (Some(a), Some(v)) => parts.push(format!("agent {a} v{v}")),
        (Some(a), None) => parts.push(format!("agent {a}")),
        _ => {}
    }
    if let Some(m) = &c.model {
        parts.push(format!("model {m}"));
    }
    parts.push(format!(
        "{} turn{}",
        c.turns,
        if c.turns == 1 { "" } else { "s" }
    ));
    parts.push(format!("{} tokens", c.total_tokens));
    parts.push(format!(
        "{} exchange{}",
        c.exchanges,
        if c.exchanges == 1 { "" } else { "s" }
    ));
    if c.errors > 0 {
        parts.push(format!(
            "{} error{}",
            c.errors,
            if c.errors == 1 { "" } else { "s" }
        ));
    }
    if let Some(d) = c.duration_us {
        parts.push(human_us(d));
    }
    parts.join(" · ")
}

fn turn_label(n: usize, t: &Turn) -> String {
    let mut parts = vec![format!("turn {n}")];
    parts.push(t.operation.clone().unwrap_or_else(|| "?".into()));
    if let Some(s) = &t.started_at {
        parts.push(short_time(s));
    }
    let status = t
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "no status".into());
    match &t.outcome {
        Some(o) if o != "complete" => parts.push(format!("{status} {o}")),
        _ => parts.push(status),
    }
    let tm = &t.timings;
    if let Some(v) = tm.total_us {
        parts.push(format!("total {}", human_us(v)));
    }
    if let Some(v) = tm.response_headers_us {
        parts.push(format!("headers {}", human_us(v)));
    }
    if let Some(v) = tm.first_event_us {
        parts.push(format!("first event {}", human_us(v)));
    }
    if let Some(tok) = t.usage.and_then(|u| u.total_tokens) {
        parts.push(format!("{tok} tokens"));
    }
    if let Some(e) = &t.stream_error {
        parts.push(format!("stream error: {}", one_line(e, 80)));
    }
    if let Some(e) = &t.error {
        parts.push(format!("error: {}", one_line(e, 80)));
    }
    parts.join(" · ")
}

fn entry_label(e: &EntryNode, conv_agent: Option<&str>) -> String {
    let arrow = if e.direction == "input" { "→" } else { "←" };
    let mut s = format!("{arrow} {}", e.kind);
    if let Some(id) = &e.entry_id {
        let _ = write!(s, " [{id}]");
    }
    match e.kind.as_str() {
        "message.input" | "message.output" => {
            if let Some(r) = &e.role {
                let _ = write!(s, " {r}");
            }
            if e.agent_id.is_some() && e.agent_id.as_deref() != conv_agent {
                let _ = write!(s, " (agent {})", e.agent_id.as_deref().unwrap_or_default());
            }
            if let Some(t) = &e.text {
                let _ = write!(s, ": {:?}", one_line(t, 100));
            }
        }
        "tool.execution" | "function.call" => {
            let _ = write!(
                s,
                " {}({})",
                e.name.as_deref().unwrap_or("?"),
                one_line(e.arguments.as_deref().unwrap_or(""), 80)
            );
            if let Some(id) = &e.tool_call_id {
                let _ = write!(s, " call {id}");
            }
        }
        "function.result" => {
            let _ = write!(s, " call {}", e.tool_call_id.as_deref().unwrap_or("?"));
            if let Some(t) = &e.text {
                let _ = write!(s, ": {:?}", one_line(t, 80));
            }
        }
        "agent.handoff" => {
            if let Some(h) = &e.handoff {
                let who = |name: &Option<String>, id: &Option<String>| {
                    name.clone()
                        .or_else(|| id.clone())
                        .unwrap_or_else(|| "?".into())
                };
                let _ = write!(
                    s,
                    " {} → {}",
                    who(&h.previous_agent_name, &h.previous_agent_id),
                    who(&h.next_agent_name, &h.next_agent_id)
                );
            }
        }
        _ => {
            if let Some(t) = &e.text {
                let _ = write!(s, ": {:?}", one_line(t, 100));
            }
        }
    }
    if let Some(c) = e.created_at.as_deref().and_then(parse_ts) {
        let _ = write!(s, " · {}", c.format("%H:%M:%S%.3f"));
        if let Some(d) = e.duration_us {
            let _ = write!(s, " +{}", human_us(d));
        }
    }
    s
}

fn branch_node(b: &ConversationTree) -> Node {
    let from = b.conversation.from_entry_id.as_deref().unwrap_or("?");
    Node {
        label: format!(
            "⑂ branch {} (restarted from {from})",
            summary_label(&b.conversation)
        ),
        children: tree_children(b),
    }
}

fn tree_children(t: &ConversationTree) -> Vec<Node> {
    let agent = t.conversation.agent_id.as_deref();
    let mut nodes: Vec<Node> = t
        .turns
        .iter()
        .enumerate()
        .map(|(i, turn)| Node {
            label: turn_label(i + 1, turn),
            children: turn
                .entries
                .iter()
                .map(|e| Node {
                    label: entry_label(e, agent),
                    children: e.branches.iter().map(branch_node).collect(),
                })
                .collect(),
        })
        .collect();
    nodes.extend(t.detached_branches.iter().map(|b| {
        let mut n = branch_node(b);
        n.label.push_str(" · entry not among the recorded ones");
        n
    }));
    nodes
}

/// `conversations show` as an indented tree.
pub fn render_tree(t: &ConversationTree) -> String {
    let mut out = format!(
        "conversation {}\n",
        printable(&summary_label(&t.conversation), false)
    );
    if !t.ancestors.is_empty() {
        let chain: Vec<String> = t
            .ancestors
            .iter()
            .map(|a| {
                format!(
                    "{} @ {}",
                    a.conversation_id,
                    a.from_entry_id.as_deref().unwrap_or("?")
                )
            })
            .collect();
        let _ = writeln!(out, "branch of {}", printable(&chain.join(" › "), false));
    }
    let children = tree_children(t);
    if children.is_empty() {
        out.push_str("(no turns recorded)\n");
    }
    draw(&mut out, &children, "");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentcap_proxy::views::{Ancestor, TurnTimings, summaries};
    use serde_json::json;

    fn qr(columns: &[&str], rows: Vec<Vec<Value>>) -> QueryResult {
        QueryResult::new(columns.iter().map(|c| c.to_string()).collect(), rows)
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_us(850), "850 µs");
        assert_eq!(human_us(12_345), "12.3 ms");
        assert_eq!(human_us(4_560_000), "4.56 s");
        assert_eq!(human_us(185_000_000), "3m 05s");
    }

    #[test]
    fn the_list_renders_as_a_table() {
        let r = qr(
            &[
                "conversation_id",
                "agent_id",
                "turns",
                "total_tokens",
                "first_started",
                "last_started",
                "last_total_us",
                "exchanges",
                "errors",
                "simulated_exchanges",
            ],
            vec![vec![
                json!("conv_1"),
                json!("ag_1"),
                json!(2),
                json!("150"),
                json!("2025-06-01 10:00:00+00"),
                json!("2025-06-01 10:00:01+00"),
                json!(500_000),
                json!(3),
                json!(0),
                json!(0),
            ]],
        );
        let s = summaries(&r);
        assert_eq!(s.len(), 1);
        assert!(!s[0].simulated_upstream);
        assert!(!render_list(&s).contains(SIMULATED_LABEL));
        assert_eq!(s[0].id, "conv_1");
        assert_eq!(s[0].total_tokens, 150);
        assert_eq!(s[0].duration_us, Some(1_500_000));
        assert_eq!(
            s[0].first_seen.as_deref(),
            Some("2025-06-01T10:00:00.000000Z")
        );
        assert_eq!(s[0].model, None);
        let table = render_list(&s);
        assert!(
            table.contains("conv_1")
                && table.contains("1.50 s")
                && table.contains("(1 conversation)"),
            "{table}"
        );
    }

    fn summary(id: &str, parent: Option<(&str, &str)>) -> ConversationSummary {
        ConversationSummary {
            id: id.into(),
            agent_id: Some("ag_1".into()),
            agent_version: None,
            model: None,
            turns: 1,
            total_tokens: 9,
            first_seen: None,
            last_seen: None,
            duration_us: None,
            exchanges: 1,
            errors: 0,
            parent_conversation_id: parent.map(|p| p.0.into()),
            from_entry_id: parent.map(|p| p.1.into()),
            simulated_upstream: false,
        }
    }

    fn entry(id: Option<&str>, direction: &str, kind: &str, text: &str) -> EntryNode {
        EntryNode {
            entry_id: id.map(Into::into),
            direction: direction.into(),
            position: 0,
            kind: kind.into(),
            role: None,
            agent_id: None,
            model: None,
            text: Some(text.into()),
            name: None,
            tool_call_id: None,
            arguments: None,
            created_at: None,
            completed_at: None,
            duration_us: None,
            source: None,
            handoff: None,
            branches: Vec::new(),
        }
    }

    /// Conversation `id` with one turn: an input and an output `<id>_out`, branches hung under the output.
    fn conv(
        id: &str,
        parent: Option<(&str, &str)>,
        branches: Vec<ConversationTree>,
    ) -> ConversationTree {
        let mut out = entry(
            Some(&format!("{}_out", id.to_lowercase())),
            "output",
            "message.output",
            "hello",
        );
        out.branches = branches;
        ConversationTree {
            conversation: summary(id, parent),
            ancestors: Vec::new(),
            turns: vec![Turn {
                exchange_id: format!("x{id}"),
                operation: Some("conversations.start".into()),
                started_at: None,
                status: Some(200),
                outcome: Some("complete".into()),
                error: None,
                stream_error: None,
                is_stream: false,
                event_count: None,
                timings: TurnTimings {
                    total_us: Some(1200),
                    ..TurnTimings::default()
                },
                usage: None,
                entries: vec![entry(None, "input", "message.input", "hi"), out],
            }],
            detached_branches: Vec::new(),
        }
    }

    #[test]
    fn the_tree_hangs_branches_under_their_entry() {
        let c = conv("C", Some(("B", "b_out")), vec![]);
        let b = conv("B", Some(("A", "a_out")), vec![c.clone()]);
        let mut a = conv("A", None, vec![b]);
        a.detached_branches
            .push(conv("D", Some(("A", "zzz")), vec![]));
        a.turns[0].stream_error = Some("injected fault".into());

        let text = render_tree(&a);
        assert!(text.starts_with("conversation A"), "{text}");
        assert!(text.contains("└─ ⑂ branch B"), "{text}");
        assert!(text.find("⑂ branch B") < text.find("⑂ branch C"), "{text}");
        assert!(text.contains("not among the recorded ones"), "{text}");
        assert!(text.contains("total 1.2 ms"), "{text}");
        assert!(text.contains("stream error: injected fault"), "{text}");
        assert!(text.contains("├─ ") && text.contains("│  "), "{text}");

        let mut c = c;
        c.ancestors = vec![
            Ancestor {
                conversation_id: "A".into(),
                from_entry_id: Some("a_out".into()),
            },
            Ancestor {
                conversation_id: "B".into(),
                from_entry_id: Some("b_out".into()),
            },
        ];
        assert!(render_tree(&c).contains("branch of A @ a_out › B @ b_out"));
        assert!(render_tree(&conv("E", None, vec![])).contains("→ message.input: \"hi\""));
    }

    /// Fails without `printable`: a line break in an id splits the tree line, an escape sequence reaches
    /// the terminal.
    #[test]
    fn recorded_control_characters_are_printed_escaped() {
        let hostile = "c\n└─ turn 9 · forged\x1b[2J\r";
        let mut t = conv(hostile, None, vec![]);
        t.turns[0].entries[1].entry_id = Some(hostile.into());
        t.turns[0].error = Some(hostile.into());
        let text = render_tree(&t);
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("\\u{1b}[2J"), "{text}");
        let list = render_list(&[summary(hostile, None)]);
        assert!(!list.contains('\x1b') && list.contains("c\\n└─"), "{list}");
        let r = qr(&["a\x1b"], vec![vec![json!("x\ny\x1b[31m")]]);
        let table = render_table(&r);
        assert!(
            !table.contains('\x1b') && table.contains("y\\u{1b}[31m"),
            "{table}"
        );
        assert_eq!(printable("plain", false), Cow::Borrowed("plain"));
    }

    #[test]
    fn generic_results_render() {
        let r = qr(
            &["a", "b"],
            vec![
                vec![json!(1), Value::Null],
                vec![json!("x,y"), json!({"k": [1]})],
            ],
        );
        let t = render_table(&r);
        assert!(
            t.contains("NULL") && t.contains("{\"k\":[1]}") && t.contains("(2 rows)"),
            "{t}"
        );
    }
}
