//! Decoding the rows of [`super::sql`]'s statements into the typed shapes, by column name. Timestamps come
//! back as text in either of DuckDB's spellings and are normalised to RFC 3339 here.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::{ConversationSummary, EntryNode, Handoff, Turn, TurnTimings, TurnUsage};
use crate::recorder::QueryResult;

/// Column access by name over a [`QueryResult`].
pub(super) struct Cols<'a> {
    idx: HashMap<&'a str, usize>,
}

impl<'a> Cols<'a> {
    pub(super) fn new(r: &'a QueryResult) -> Self {
        Self {
            idx: r
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect(),
        }
    }

    fn get<'r>(&self, row: &'r [Value], col: &str) -> &'r Value {
        self.idx
            .get(col)
            .and_then(|&i| row.get(i))
            .unwrap_or(&Value::Null)
    }

    pub(super) fn text(&self, row: &[Value], col: &str) -> Option<String> {
        value_text(self.get(row, col))
    }

    fn int(&self, row: &[Value], col: &str) -> Option<i64> {
        value_int(self.get(row, col))
    }

    fn ts(&self, row: &[Value], col: &str) -> Option<String> {
        self.text(row, col).map(|s| normalize_ts(&s))
    }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn value_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
            .or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn value_bool(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64().is_some_and(|i| i != 0),
        Value::String(s) => matches!(s.as_str(), "true" | "t" | "1"),
        _ => false,
    }
}

/// Parses a timestamp as RFC 3339 (`2025-06-01T10:00:00.5Z`) or as DuckDB prints one
/// (`2025-06-01 10:00:00.5+00`, or without an offset, meaning UTC).
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// A timestamp as RFC 3339 in UTC with microseconds; text that is no timestamp stays as it is.
pub(super) fn normalize_ts(s: &str) -> String {
    parse_ts(s)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_else(|| s.to_string())
}

pub(super) fn micros_between(from: Option<&str>, to: Option<&str>) -> Option<i64> {
    let (a, b) = (parse_ts(from?)?, parse_ts(to?)?);
    (b - a).num_microseconds()
}

/// The rows of [`list_sql`](super::sql::list_sql) (or [`summary_by_id_sql`](super::sql::summary_by_id_sql)).
pub fn summaries(r: &QueryResult) -> Vec<ConversationSummary> {
    let c = Cols::new(r);
    r.rows
        .iter()
        .map(|row| {
            let first_started = c.ts(row, "first_started");
            let last_started = c.ts(row, "last_started");
            let duration_us = match (
                first_started.as_deref().and_then(parse_ts),
                last_started.as_deref().and_then(parse_ts),
            ) {
                (Some(a), Some(b)) => (b - a)
                    .num_microseconds()
                    .map(|d| d + c.int(row, "last_total_us").unwrap_or(0)),
                _ => micros_between(
                    c.ts(row, "first_seen").as_deref(),
                    c.ts(row, "last_seen").as_deref(),
                ),
            };
            ConversationSummary {
                id: c.text(row, "conversation_id").unwrap_or_default(),
                agent_id: c.text(row, "agent_id"),
                agent_version: c.text(row, "agent_version"),
                model: c.text(row, "model"),
                turns: c.int(row, "turns").unwrap_or(0),
                total_tokens: c.int(row, "total_tokens").unwrap_or(0),
                first_seen: c.ts(row, "first_seen").or(first_started),
                last_seen: c.ts(row, "last_seen").or(last_started),
                duration_us,
                exchanges: c.int(row, "exchanges").unwrap_or(0),
                errors: c.int(row, "errors").unwrap_or(0),
                parent_conversation_id: c.text(row, "parent_conversation_id"),
                from_entry_id: c.text(row, "from_entry_id"),
                simulated_upstream: c.int(row, "simulated_exchanges").unwrap_or(0) > 0,
            }
        })
        .collect()
}

/// The rows of [`turns_sql`](super::sql::turns_sql), without their entries.
pub fn turns(r: &QueryResult) -> Vec<Turn> {
    let c = Cols::new(r);
    r.rows
        .iter()
        .map(|row| {
            let usage = (c.int(row, "usage_rows").unwrap_or(0) > 0).then(|| TurnUsage {
                prompt_tokens: c.int(row, "prompt_tokens"),
                completion_tokens: c.int(row, "completion_tokens"),
                total_tokens: c.int(row, "total_tokens"),
                connector_tokens: c.int(row, "connector_tokens"),
            });
            Turn {
                exchange_id: c.text(row, "exchange_id").unwrap_or_default(),
                operation: c.text(row, "operation"),
                started_at: c.ts(row, "started_at"),
                status: c.int(row, "status"),
                outcome: c.text(row, "outcome"),
                error: c.text(row, "error"),
                stream_error: c.text(row, "stream_error").map(|t| error_message(&t)),
                is_stream: value_bool(c.get(row, "is_stream")),
                event_count: c.int(row, "event_count"),
                timings: TurnTimings {
                    total_us: c.int(row, "total_us"),
                    response_headers_us: c.int(row, "response_headers_us"),
                    first_event_us: c.int(row, "first_event_us"),
                    upstream_us: c.int(row, "upstream_us"),
                    overhead_us: c.int(row, "overhead_us"),
                },
                usage,
                entries: Vec::new(),
            }
        })
        .collect()
}

/// The `message` of an error event's data, or the data as it is.
fn error_message(data: &str) -> String {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::String(s)) => s,
        Ok(v) => v
            .get("message")
            .and_then(value_text)
            .unwrap_or_else(|| v.to_string()),
        Err(_) => data.to_string(),
    }
}

/// The rows of [`entries_sql`](super::sql::entries_sql), with the exchange id of each, in query order.
pub fn entries(r: &QueryResult) -> Vec<(String, EntryNode)> {
    let c = Cols::new(r);
    r.rows
        .iter()
        .map(|row| {
            let kind = c.text(row, "type").unwrap_or_default();
            let raw: Option<Map<String, Value>> = c
                .text(row, "raw")
                .and_then(|s| serde_json::from_str(&s).ok());
            let from_raw = |k: &str| raw.as_ref().and_then(|m| m.get(k)).and_then(value_text);
            let handoff = (kind == "agent.handoff").then(|| Handoff {
                previous_agent_id: from_raw("previous_agent_id"),
                previous_agent_name: from_raw("previous_agent_name"),
                next_agent_id: from_raw("next_agent_id"),
                next_agent_name: from_raw("next_agent_name"),
            });
            let mut text = c.text(row, "text");
            if text.is_none() && kind == "function.result" {
                text = from_raw("result");
            }
            let created_at = c.ts(row, "created_at");
            let completed_at = c.ts(row, "completed_at");
            let node = EntryNode {
                entry_id: c.text(row, "entry_id"),
                direction: c.text(row, "direction").unwrap_or_default(),
                position: c.int(row, "position").unwrap_or(0),
                kind,
                role: c.text(row, "role"),
                agent_id: c.text(row, "agent_id"),
                model: c.text(row, "model"),
                text,
                name: c.text(row, "name"),
                tool_call_id: c.text(row, "tool_call_id"),
                arguments: c.text(row, "arguments"),
                duration_us: micros_between(created_at.as_deref(), completed_at.as_deref()),
                created_at,
                completed_at,
                source: c.text(row, "source"),
                handoff,
                branches: Vec::new(),
            };
            (c.text(row, "exchange_id").unwrap_or_default(), node)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn qr(columns: &[&str], rows: Vec<Vec<Value>>) -> QueryResult {
        QueryResult::new(columns.iter().map(|c| c.to_string()).collect(), rows)
    }

    #[test]
    fn timestamps_parse_in_both_spellings() {
        let a = parse_ts("2025-06-01 10:00:00.25+00").unwrap();
        let b = parse_ts("2025-06-01T10:00:00.250Z").unwrap();
        let c = parse_ts("2025-06-01 12:00:00.25+02:00").unwrap();
        let d = parse_ts("2025-06-01 10:00:00.25").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d);
        assert_eq!(
            normalize_ts("2025-06-01 10:00:00+00"),
            "2025-06-01T10:00:00.000000Z"
        );
        assert_eq!(normalize_ts("not a time"), "not a time");
    }

    #[test]
    fn summaries_decode_by_column_name() {
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
        assert_eq!(s[0].id, "conv_1");
        assert_eq!(s[0].total_tokens, 150);
        assert_eq!(s[0].duration_us, Some(1_500_000));
        assert_eq!(
            s[0].first_seen.as_deref(),
            Some("2025-06-01T10:00:00.000000Z")
        );
        assert_eq!(s[0].model, None);
    }
}
