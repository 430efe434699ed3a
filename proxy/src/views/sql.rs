//! The statements behind the views, each with the values bound to its `?` placeholders.
//!
//! Every text here is a compile-time constant: conversation ids, limits, the turn operations (named by
//! [`agentcap_wire::vocab::Operation`]) and the simulated-upstream header pattern (from
//! [`agentcap_wire::vocab::headers`]) are parameters, so nothing a recording contains can change a statement.

use agentcap_wire::vocab::{Operation, headers};
use serde_json::Value;

/// A statement and the values of its `?` placeholders, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    /// The statement.
    pub text: &'static str,
    /// The values of its placeholders, in order of appearance.
    pub params: Vec<Value>,
}

/// The recorded names of the operations that make a turn ([`Operation::is_turn`]).
pub fn turn_ops() -> Vec<&'static str> {
    Operation::ALL
        .into_iter()
        .filter(|o| o.is_turn())
        .map(Operation::name)
        .collect()
}

/// The one parameter of the `turn_ops` CTE: the turn operations' names joined by `,` (no name contains one).
fn turn_ops_param() -> Value {
    Value::String(turn_ops().join(","))
}

/// A `LIKE` pattern that matches `exchanges.response_headers` (compact JSON, lowercased names) when the
/// response carried the twin's `x-agentcap-upstream: simulated` header (see `docs/twin.md`).
pub fn simulated_header_pattern() -> String {
    let pair = serde_json::to_string(
        &serde_json::json!({ headers::UPSTREAM: headers::UPSTREAM_SIMULATED }),
    )
    .unwrap_or_default();
    format!("%{}%", pair.trim_start_matches('{').trim_end_matches('}'))
}

/// The CTE of the turn operations, bound to [`turn_ops_param`]; every statement starts with it.
macro_rules! with_turn_ops {
    ($($rest:literal),* $(,)?) => {
        concat!(
            "WITH turn_ops AS (SELECT unnest(string_split(?, ',')) AS op)",
            $($rest),*
        )
    };
}

/// The summary statement: `$cs` (the `SELECT id FROM conversations …` choosing the conversations summarised)
/// is a literal. Placeholders, in order: turn operations, those of `$cs`, the simulated-header pattern.
///
/// Every aggregate reads only the rows of the chosen conversations: their exchanges first (`xs`, whose rows
/// say whether a stream ended by an error event), then the usage rows of those exchanges. Aggregating the whole recording and keeping a few rows
/// would make a conversation page's and the list's cost grow with the recording.
///
/// An exchange failed when it had an HTTP error, an end other than complete (a client that went away chose
/// to; that is no failure) or a stream ended by an error event.
macro_rules! summary_sql {
    ($cs:literal) => {
        with_turn_ops!(
            ", cs AS MATERIALIZED (",
            $cs,
            "
), xs AS MATERIALIZED (
  SELECT id, conversation_id, operation, status, outcome, started_at, total_us,
         CAST(response_headers AS VARCHAR) LIKE ? AS simulated, stream_error IS NOT NULL AS stream_failed
  FROM exchanges WHERE conversation_id IN (SELECT id FROM cs)
), x AS (
  SELECT e.conversation_id,
         COUNT(*) AS exchanges,
         COUNT(t.op) AS turn_exchanges,
         COUNT(*) FILTER (WHERE (e.status >= 400 OR e.outcome NOT IN ('complete', 'cancelled_by_client'))
                          OR e.stream_failed) AS errors,
         MIN(e.started_at) AS first_started,
         MAX(e.started_at) AS last_started,
         arg_max(e.total_us, e.started_at) AS last_total_us,
         COUNT(*) FILTER (WHERE e.simulated) AS simulated
  FROM xs e
  LEFT JOIN turn_ops t ON t.op = e.operation
  GROUP BY e.conversation_id
), u AS (
  SELECT COALESCE(u.conversation_id, e.conversation_id) AS conversation_id, SUM(u.total_tokens) AS total_tokens
  FROM usage u LEFT JOIN xs e ON e.id = u.exchange_id
  WHERE u.conversation_id IN (SELECT id FROM cs) OR e.id IS NOT NULL
  GROUP BY ALL
)
SELECT c.id AS conversation_id,
       c.agent_id,
       CAST(c.agent_version AS VARCHAR) AS agent_version,
       c.model,
       CAST(COALESCE(c.turns, x.turn_exchanges, 0) AS BIGINT) AS turns,
       CAST(COALESCE(u.total_tokens, 0) AS BIGINT) AS total_tokens,
       CAST(c.first_seen AS VARCHAR) AS first_seen,
       CAST(c.last_seen AS VARCHAR) AS last_seen,
       CAST(x.first_started AS VARCHAR) AS first_started,
       CAST(x.last_started AS VARCHAR) AS last_started,
       CAST(x.last_total_us AS BIGINT) AS last_total_us,
       CAST(COALESCE(x.exchanges, 0) AS BIGINT) AS exchanges,
       CAST(COALESCE(x.errors, 0) AS BIGINT) AS errors,
       c.parent_conversation_id,
       c.from_entry_id,
       CAST(COALESCE(x.simulated, 0) AS BIGINT) AS simulated_exchanges
FROM conversations c
LEFT JOIN x ON x.conversation_id = c.id
LEFT JOIN u ON u.conversation_id = c.id
WHERE c.id IN (SELECT id FROM cs)
ORDER BY c.last_seen DESC NULLS LAST, c.first_seen DESC NULLS LAST, c.id DESC"
        )
    };
}

/// `conversations list`: the `limit` most recently seen conversations, newest first.
pub fn list_sql(limit: usize) -> Sql {
    Sql {
        text: summary_sql!(
            "
  SELECT id FROM conversations
  ORDER BY last_seen DESC NULLS LAST, first_seen DESC NULLS LAST, id DESC LIMIT ?"
        ),
        params: vec![
            turn_ops_param(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
            simulated_header_pattern().into(),
        ],
    }
}

/// One conversation's summary row.
pub fn summary_by_id_sql(id: &str) -> Sql {
    Sql {
        text: summary_sql!("SELECT id FROM conversations WHERE id = ?"),
        params: vec![
            turn_ops_param(),
            id.into(),
            simulated_header_pattern().into(),
        ],
    }
}

/// The conversations restarted from `id`, oldest first.
pub fn branches_sql(id: &str) -> Sql {
    Sql {
        text: "SELECT id AS conversation_id FROM conversations WHERE parent_conversation_id = ? \
               ORDER BY first_seen NULLS LAST, id",
        params: vec![id.into()],
    }
}

/// The parent link of `id`.
pub fn parent_sql(id: &str) -> Sql {
    Sql {
        text: "SELECT parent_conversation_id, from_entry_id FROM conversations WHERE id = ?",
        params: vec![id.into()],
    }
}

/// When the exchanges of a conversation started: the earliest and the latest `started_at` (as the summary
/// statement reads them, `first_started` and `last_started`). Every exchange of the conversation lies within,
/// so a statement may bound its scan of `exchanges` with it: `started_at` grows with the table, so DuckDB skips
/// the row groups outside by their min / max without changing the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedSpan {
    /// The earliest `started_at`, as text.
    pub first: String,
    /// The latest `started_at`, as text.
    pub last: String,
}

/// The turn exchanges of `id` with their usage, in order. The usage rows read are those of the conversation's
/// exchanges (`xs`, found once within `span`), not the whole recording's; a stream's error event is on its
/// exchange row.
pub fn turns_sql(id: &str, span: &StartedSpan) -> Sql {
    Sql {
        text: with_turn_ops!(
            ", xs AS MATERIALIZED (
  SELECT id FROM exchanges
  WHERE conversation_id = ?
    AND started_at BETWEEN CAST(? AS TIMESTAMPTZ) AND CAST(? AS TIMESTAMPTZ)
)
SELECT CAST(x.id AS VARCHAR) AS exchange_id,
       x.operation,
       CAST(x.started_at AS VARCHAR) AS started_at,
       CAST(x.status AS BIGINT) AS status,
       x.outcome,
       x.error,
       COALESCE(CAST(x.is_stream AS BOOLEAN), false) AS is_stream,
       CAST(x.event_count AS BIGINT) AS event_count,
       CAST(x.total_us AS BIGINT) AS total_us,
       CAST(x.response_headers_us AS BIGINT) AS response_headers_us,
       CAST(x.first_event_us AS BIGINT) AS first_event_us,
       CAST(x.upstream_us AS BIGINT) AS upstream_us,
       CAST(x.overhead_us AS BIGINT) AS overhead_us,
       u.n AS usage_rows,
       CAST(u.prompt_tokens AS BIGINT) AS prompt_tokens,
       CAST(u.completion_tokens AS BIGINT) AS completion_tokens,
       CAST(u.total_tokens AS BIGINT) AS total_tokens,
       CAST(u.connector_tokens AS BIGINT) AS connector_tokens,
       x.stream_error
FROM exchanges x
JOIN turn_ops t ON t.op = x.operation
LEFT JOIN (
  SELECT exchange_id, COUNT(*) AS n, SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens,
         SUM(total_tokens) AS total_tokens, SUM(connector_tokens) AS connector_tokens
  FROM usage WHERE exchange_id IN (SELECT id FROM xs)
  GROUP BY exchange_id
) u ON u.exchange_id = x.id
WHERE x.conversation_id = ?
  AND x.started_at BETWEEN CAST(? AS TIMESTAMPTZ) AND CAST(? AS TIMESTAMPTZ)
ORDER BY x.started_at, x.id"
        ),
        params: vec![
            turn_ops_param(),
            id.into(),
            span.first.as_str().into(),
            span.last.as_str().into(),
            id.into(),
            span.first.as_str().into(),
            span.last.as_str().into(),
        ],
    }
}

/// The entries of the turn exchanges of `id`, inputs before outputs, by position.
///
/// The recorder writes each entry row with its exchange's `conversation_id`, so the scan of `entries` filters
/// on that column (a constant the scan applies before reading the wide columns) instead of joining every
/// entry of the recording to its exchange.
pub fn entries_sql(id: &str, span: &StartedSpan) -> Sql {
    Sql {
        text: with_turn_ops!(
            ", xs AS MATERIALIZED (
  SELECT id, started_at FROM exchanges
  WHERE conversation_id = ? AND operation IN (SELECT op FROM turn_ops)
    AND started_at BETWEEN CAST(? AS TIMESTAMPTZ) AND CAST(? AS TIMESTAMPTZ)
)
SELECT CAST(e.exchange_id AS VARCHAR) AS exchange_id,
       e.entry_id,
       e.direction,
       CAST(e.position AS BIGINT) AS position,
       e.type,
       e.role,
       e.agent_id,
       e.model,
       e.text,
       e.name,
       e.tool_call_id,
       CAST(e.arguments AS VARCHAR) AS arguments,
       CAST(e.created_at AS VARCHAR) AS created_at,
       CAST(e.completed_at AS VARCHAR) AS completed_at,
       e.source,
       CAST(e.raw AS VARCHAR) AS raw
FROM entries e
JOIN xs x ON x.id = e.exchange_id
WHERE e.conversation_id = ?
ORDER BY x.started_at, x.id, CASE e.direction WHEN 'input' THEN 0 ELSE 1 END, e.position"
        ),
        params: vec![
            turn_ops_param(),
            id.into(),
            span.first.as_str().into(),
            span.last.as_str().into(),
            id.into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement has exactly as many placeholders as parameters, and no value in its text.
    #[test]
    fn placeholders_match_parameters_and_values_stay_out() {
        let hostile = "x' OR 1=1 --";
        let span = StartedSpan {
            first: hostile.to_owned(),
            last: hostile.to_owned(),
        };
        for q in [
            list_sql(7),
            summary_by_id_sql(hostile),
            branches_sql(hostile),
            parent_sql(hostile),
            turns_sql(hostile, &span),
            entries_sql(hostile, &span),
        ] {
            assert_eq!(q.text.matches('?').count(), q.params.len(), "{}", q.text);
            assert!(!q.text.contains(hostile));
            assert!(!q.text.contains("conversations.start"));
        }
        assert_eq!(list_sql(7).params[1], 7);
    }

    #[test]
    fn turn_operations_and_the_simulated_header_come_from_the_vocabulary() {
        let ops = turn_ops();
        assert_eq!(ops.len(), 6);
        assert!(ops.contains(&"conversations.restart_stream"));
        assert!(ops.iter().all(|o| !o.contains(',')));
        assert_eq!(
            simulated_header_pattern(),
            r#"%"x-agentcap-upstream":"simulated"%"#
        );
    }
}
