//! Running the views' statements through a query function: `conversations list`, and `conversations show`'s
//! tree (turns, entries, the branches restarted from its entries, the ancestor chain).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::decode::{Cols, entries, summaries, turns};
use super::sql::{
    Sql, StartedSpan, branches_sql, entries_sql, list_sql, parent_sql, summary_by_id_sql, turns_sql,
};
use super::{Ancestor, ConversationSummary, ConversationTree};
use crate::recorder::QueryResult;

/// Branches nest at most this deep (and ancestor chains are followed this far): a guard against cycles in
/// a damaged recording.
const MAX_DEPTH: usize = 64;

/// What runs the views' statements: SQL text and the values of its `?` placeholders, in order (the admin
/// listener's `/query`, a file opened read-only, the UI's connection).
pub type QueryFn<'q, E> = dyn Fn(&str, &[Value]) -> Result<QueryResult, E> + 'q;

fn run<E>(q: &QueryFn<'_, E>, s: Sql) -> Result<QueryResult, E> {
    q(s.text, &s.params)
}

/// `conversations list`: runs [`list_sql`] and decodes it.
pub fn list<E>(
    query: impl Fn(&str, &[Value]) -> Result<QueryResult, E>,
    limit: usize,
) -> Result<Vec<ConversationSummary>, E> {
    Ok(summaries(&run(&query, list_sql(limit))?))
}

/// `conversations show`: the tree of conversation `id` — its turns and entries, the branches restarted from
/// its entries (recursively), and its ancestor chain when it is a branch. `None` when the recording has no
/// such conversation.
pub fn show<E>(
    query: impl Fn(&str, &[Value]) -> Result<QueryResult, E>,
    id: &str,
) -> Result<Option<ConversationTree>, E> {
    let q: &QueryFn<'_, E> = &query;
    let mut seen = HashSet::new();
    let Some(mut tree) = subtree(q, id, &mut seen, 0)? else {
        return Ok(None);
    };
    tree.ancestors = ancestors(q, id)?;
    Ok(Some(tree))
}

fn ancestors<E>(q: &QueryFn<'_, E>, id: &str) -> Result<Vec<Ancestor>, E> {
    let mut chain = Vec::new();
    let mut seen: HashSet<String> = HashSet::from([id.to_string()]);
    let mut cur = id.to_string();
    while chain.len() < MAX_DEPTH {
        let r = run(q, parent_sql(&cur))?;
        let c = Cols::new(&r);
        let Some(row) = r.rows.first() else { break };
        let Some(parent) = c.text(row, "parent_conversation_id") else {
            break;
        };
        if !seen.insert(parent.clone()) {
            break;
        }
        chain.push(Ancestor {
            conversation_id: parent.clone(),
            from_entry_id: c.text(row, "from_entry_id"),
        });
        cur = parent;
    }
    chain.reverse();
    Ok(chain)
}

fn subtree<E>(
    q: &QueryFn<'_, E>,
    id: &str,
    seen: &mut HashSet<String>,
    depth: usize,
) -> Result<Option<ConversationTree>, E> {
    if depth > MAX_DEPTH || !seen.insert(id.to_string()) {
        return Ok(None);
    }
    let summary = run(q, summary_by_id_sql(id))?;
    let Some(conversation) = summaries(&summary).into_iter().next() else {
        return Ok(None);
    };
    // The summary read when the conversation's exchanges started: the turns' and entries' statements scan
    // only that stretch of `exchanges` (no exchange: no turn, nothing to read).
    let span = summary.rows.first().and_then(|row| {
        let c = Cols::new(&summary);
        Some(StartedSpan {
            first: c.text(row, "first_started")?,
            last: c.text(row, "last_started")?,
        })
    });
    let mut turns = match &span {
        Some(span) => turns(&run(q, turns_sql(id, span))?),
        None => Vec::new(),
    };
    let pos: HashMap<String, usize> = turns
        .iter()
        .enumerate()
        .map(|(i, t)| (t.exchange_id.clone(), i))
        .collect();
    if let Some(span) = &span {
        for (exchange_id, e) in entries(&run(q, entries_sql(id, span))?) {
            if let Some(&i) = pos.get(&exchange_id) {
                turns[i].entries.push(e);
            }
        }
    }

    let mut detached_branches = Vec::new();
    let children = run(q, branches_sql(id))?;
    let c = Cols::new(&children);
    for row in &children.rows {
        let Some(child_id) = c.text(row, "conversation_id") else {
            continue;
        };
        let Some(child) = subtree(q, &child_id, seen, depth + 1)? else {
            continue;
        };
        let target = child.conversation.from_entry_id.clone();
        let slot = target.as_deref().and_then(|from| {
            turns
                .iter_mut()
                .flat_map(|t| t.entries.iter_mut())
                .find(|e| e.entry_id.as_deref() == Some(from))
        });
        match slot {
            Some(entry) => entry.branches.push(child),
            None => detached_branches.push(child),
        }
    }
    Ok(Some(ConversationTree {
        conversation,
        ancestors: Vec::new(),
        turns,
        detached_branches,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn qr(columns: &[&str], rows: Vec<Vec<Value>>) -> QueryResult {
        QueryResult::new(columns.iter().map(|c| c.to_string()).collect(), rows)
    }

    /// A fake recording: conversations A → B (from a_out) → C (from b_out), and D from an unknown entry.
    /// It answers by the statement's shape and reads the conversation id from the parameters.
    fn fake(sql: &str, params: &[Value]) -> Result<QueryResult, String> {
        let convs = [
            ("A", None, None),
            ("B", Some("A"), Some("a_out")),
            ("C", Some("B"), Some("b_out")),
            ("D", Some("A"), Some("zzz")),
        ];
        let param = |i: usize| {
            params
                .get(i)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("no text parameter {i} for: {sql}"))
        };
        if sql.contains("FROM conversations WHERE parent_conversation_id") {
            let p = param(0)?;
            let rows = convs
                .iter()
                .filter(|c| c.1 == Some(p.as_str()))
                .map(|c| vec![json!(c.0)])
                .collect();
            return Ok(qr(&["conversation_id"], rows));
        }
        if sql.starts_with("SELECT parent_conversation_id") {
            let id = param(0)?;
            let c = convs.iter().find(|c| c.0 == id).unwrap();
            return Ok(qr(
                &["parent_conversation_id", "from_entry_id"],
                vec![vec![json!(c.1), json!(c.2)]],
            ));
        }
        if sql.contains("FROM conversations c") {
            let id = param(1)?;
            let c = convs.iter().find(|c| c.0 == id).unwrap();
            return Ok(qr(
                &[
                    "conversation_id",
                    "turns",
                    "parent_conversation_id",
                    "from_entry_id",
                    "first_started",
                    "last_started",
                ],
                vec![vec![
                    json!(c.0),
                    json!(1),
                    json!(c.1),
                    json!(c.2),
                    json!("2026-01-01 10:00:00+00"),
                    json!("2026-01-01 10:00:00+00"),
                ]],
            ));
        }
        let id = param(1)?;
        if sql.contains("FROM entries") {
            let lower = id.to_lowercase();
            return Ok(qr(
                &[
                    "exchange_id",
                    "entry_id",
                    "direction",
                    "position",
                    "type",
                    "text",
                    "raw",
                ],
                vec![
                    vec![
                        json!(format!("x{id}")),
                        Value::Null,
                        json!("input"),
                        json!(0),
                        json!("message.input"),
                        json!("hi"),
                        Value::Null,
                    ],
                    vec![
                        json!(format!("x{id}")),
                        json!(format!("{lower}_out")),
                        json!("output"),
                        json!(0),
                        json!("message.output"),
                        json!("hello"),
                        Value::Null,
                    ],
                ],
            ));
        }
        Ok(qr(
            &[
                "exchange_id",
                "operation",
                "total_us",
                "usage_rows",
                "total_tokens",
            ],
            vec![vec![
                json!(format!("x{id}")),
                json!("conversations.start"),
                json!(1200),
                json!(1),
                json!(9),
            ]],
        ))
    }

    #[test]
    fn show_attaches_branches_under_their_entry_recursively() {
        let t = show(fake, "A").unwrap().unwrap();
        assert!(t.ancestors.is_empty());
        assert_eq!(t.turns.len(), 1);
        let out = &t.turns[0].entries[1];
        assert_eq!(out.entry_id.as_deref(), Some("a_out"));
        assert_eq!(out.branches.len(), 1);
        let b = &out.branches[0];
        assert_eq!(b.conversation.id, "B");
        assert_eq!(b.turns[0].entries[1].branches[0].conversation.id, "C");
        assert_eq!(t.detached_branches.len(), 1);
        assert_eq!(t.detached_branches[0].conversation.id, "D");

        assert_eq!(t.turns[0].timings.total_us, Some(1200));

        let c = show(fake, "C").unwrap().unwrap();
        let chain: Vec<_> = c
            .ancestors
            .iter()
            .map(|a| (a.conversation_id.as_str(), a.from_entry_id.as_deref()))
            .collect();
        assert_eq!(chain, vec![("A", Some("a_out")), ("B", Some("b_out"))]);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["turns"][0]["entries"][0]["type"], "message.input");
    }

    #[test]
    fn unknown_conversation_is_none() {
        let none = |_: &str, _: &[Value]| Ok::<_, String>(qr(&["conversation_id"], vec![]));
        assert!(show(none, "nope").unwrap().is_none());
    }
}
