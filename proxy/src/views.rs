//! Read-side views over the recording: the SQL behind `agentcap conversations list` and `show`, the typed
//! shapes of what comes back, and the renderers (tables for these and for `agentcap query`, trees).
//!
//! Everything here is pure: a view builds SQL, hands it to a `query` function (the admin listener of a
//! running proxy, or the DuckDB file opened read-only) and shapes the [`QueryResult`]. The SQL sticks to
//! DuckDB's core (no ICU, no JSON extension): timestamps and JSON come back cast to text, counts cast to
//! `BIGINT`, and time arithmetic happens here.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use comfy_table::{CellAlignment, Table, presets};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::recorder::QueryResult;

/// Branches nest at most this deep (and ancestor chains are followed this far): a guard against cycles in
/// a damaged recording.
const MAX_DEPTH: usize = 64;

// ---------------------------------------------------------------------------------------------------------
// Typed results
// ---------------------------------------------------------------------------------------------------------

/// One row of `conversations list`: a recorded conversation and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationSummary {
    /// Conversation id.
    pub id: String,
    /// Agent spoken to (none for model conversations).
    pub agent_id: Option<String>,
    /// Agent version, as recorded.
    pub agent_version: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Turns (start / append / restart exchanges) recorded.
    pub turns: i64,
    /// Tokens used by every recorded exchange of the conversation.
    pub total_tokens: i64,
    /// First time the recording saw it (RFC 3339, UTC).
    pub first_seen: Option<String>,
    /// Last time the recording saw it (RFC 3339, UTC).
    pub last_seen: Option<String>,
    /// From the start of its first exchange to the end of its last one.
    pub duration_us: Option<i64>,
    /// Recorded exchanges (turns, reads, deletes).
    pub exchanges: i64,
    /// Exchanges that failed: an HTTP error status, a stream ended by an error event, or an upstream / proxy
    /// error or timeout (a client going away is not counted).
    pub errors: i64,
    /// The conversation this one was restarted from, if it is a branch.
    pub parent_conversation_id: Option<String>,
    /// The parent's entry the branch starts after.
    pub from_entry_id: Option<String>,
    /// Some exchange of it was answered by agentcap's twin (its responses carry
    /// [`SIMULATED_HEADER_JSON`]): what it shows is a "simulated upstream".
    pub simulated_upstream: bool,
}

/// How the twin's `x-agentcap-upstream: simulated` response header (see `docs/twin.md`) reads in
/// `exchanges.response_headers` (compact JSON, lowercased names).
pub const SIMULATED_HEADER_JSON: &str = r#""x-agentcap-upstream":"simulated""#;

/// The label of conversations answered by the twin.
pub const SIMULATED_LABEL: &str = "simulated upstream";

/// Where a branch comes from: one step of the ancestor chain, root first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ancestor {
    /// An ancestor conversation.
    pub conversation_id: String,
    /// Its entry the next conversation of the chain was restarted from.
    pub from_entry_id: Option<String>,
}

/// Hot-path timings of a turn's exchange, in microseconds from its start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TurnTimings {
    /// Until the last byte reached the client.
    pub total_us: Option<i64>,
    /// Until the upstream's response headers arrived.
    pub response_headers_us: Option<i64>,
    /// Until the first SSE event arrived (streams only).
    pub first_event_us: Option<i64>,
    /// Time spent waiting on the upstream.
    pub upstream_us: Option<i64>,
    /// What the proxy added.
    pub overhead_us: Option<i64>,
}

/// Tokens of one exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TurnUsage {
    /// Prompt tokens.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens.
    pub completion_tokens: Option<i64>,
    /// Total tokens.
    pub total_tokens: Option<i64>,
    /// Tokens spent by connectors (web search, …).
    pub connector_tokens: Option<i64>,
}

/// Both agents of an `agent.handoff` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handoff {
    /// Agent handing over.
    pub previous_agent_id: Option<String>,
    /// Its name.
    pub previous_agent_name: Option<String>,
    /// Agent taking over.
    pub next_agent_id: Option<String>,
    /// Its name.
    pub next_agent_name: Option<String>,
}

/// One conversation entry of a turn, with the branches restarted from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryNode {
    /// Entry id (input entries usually have none on the wire).
    pub entry_id: Option<String>,
    /// `input` (sent by the client) or `output` (produced by the turn).
    pub direction: String,
    /// Position among the exchange's inputs or outputs.
    pub position: i64,
    /// Entry type: `message.input`, `message.output`, `tool.execution`, `function.call`, `function.result`,
    /// `agent.handoff`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Message role.
    pub role: Option<String>,
    /// Agent that produced it.
    pub agent_id: Option<String>,
    /// Model that produced it.
    pub model: Option<String>,
    /// Message text (chunks flattened), or a function result.
    pub text: Option<String>,
    /// Tool or function name.
    pub name: Option<String>,
    /// Function call id.
    pub tool_call_id: Option<String>,
    /// Tool or function arguments (JSON text).
    pub arguments: Option<String>,
    /// Creation time (RFC 3339, UTC).
    pub created_at: Option<String>,
    /// Completion time (RFC 3339, UTC).
    pub completed_at: Option<String>,
    /// `completed_at - created_at`.
    pub duration_us: Option<i64>,
    /// Where the recorder read it: `request`, `response` or `stream`.
    pub source: Option<String>,
    /// The agents of a handoff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Handoff>,
    /// Conversations restarted from this entry, in the order they were first seen.
    pub branches: Vec<ConversationTree>,
}

/// One turn: a start, append or restart exchange and its entries, inputs first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Turn {
    /// Exchange id.
    pub exchange_id: String,
    /// Operation (`conversations.append_stream`, …).
    pub operation: Option<String>,
    /// When the request arrived (RFC 3339, UTC).
    pub started_at: Option<String>,
    /// HTTP status.
    pub status: Option<i64>,
    /// How the exchange ended (`complete`, `upstream_error`, …).
    pub outcome: Option<String>,
    /// Error text, if any (the exchange's, e.g. a client that went away).
    pub error: Option<String>,
    /// The message of a `conversation.response.error` event that ended the stream.
    pub stream_error: Option<String>,
    /// `true` for an SSE response.
    pub is_stream: bool,
    /// SSE events received.
    pub event_count: Option<i64>,
    /// Timings.
    pub timings: TurnTimings,
    /// Tokens.
    pub usage: Option<TurnUsage>,
    /// Entries: the request's inputs, then the response's outputs.
    pub entries: Vec<EntryNode>,
}

/// `conversations show`: a conversation, its turns, and the branches restarted from it, recursively.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationTree {
    /// The conversation.
    pub conversation: ConversationSummary,
    /// When it is a branch: the chain of conversations it comes from, root first (only on the shown root).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Ancestor>,
    /// Turns in the order they happened.
    pub turns: Vec<Turn>,
    /// Branches whose `from_entry_id` is none of the recorded entries of this conversation (an input entry,
    /// whose id the traffic never showed, or an entry inherited from an ancestor).
    pub detached_branches: Vec<ConversationTree>,
}

// ---------------------------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------------------------

/// `s` as a SQL string literal.
pub fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The operations that make a turn (with or without `_stream`).
const TURN_OPS: &str = "'conversations.start', 'conversations.start_stream', 'conversations.append', \
                        'conversations.append_stream', 'conversations.restart', 'conversations.restart_stream'";

/// The SSE event that ends a stream with an error.
const STREAM_ERROR: &str = "'conversation.response.error'";

/// An exchange that failed (over `exchanges e`): an HTTP error, or an end other than complete. A client that
/// went away chose to; that is no failure.
const FAILED: &str = "(e.status >= 400 OR e.outcome NOT IN ('complete', 'cancelled_by_client'))";

/// The summary rows; with `one`, of that conversation only: the aggregates then read only its exchanges,
/// instead of aggregating every conversation and keeping one (the cost of a conversation page would grow with
/// the whole recording).
fn summary_sql(one: Option<&str>, limit: Option<usize>) -> String {
    let limit = limit.map(|n| format!("\nLIMIT {n}")).unwrap_or_default();
    let (ev_scope, x_scope, u_scope, filter) = match one {
        Some(id) => {
            let id = sql_str(id);
            (
                format!(
                    " AND exchange_id IN (SELECT id FROM exchanges WHERE conversation_id = {id})"
                ),
                format!(" AND e.conversation_id = {id}"),
                format!("\n  WHERE COALESCE(u.conversation_id, e.conversation_id) = {id}"),
                format!("WHERE c.id = {id}"),
            )
        }
        None => Default::default(),
    };
    format!(
        "WITH ev AS (
  SELECT DISTINCT exchange_id FROM sse_events WHERE event_type = {STREAM_ERROR}{ev_scope}
), x AS (
  SELECT e.conversation_id,
         COUNT(*) AS exchanges,
         COUNT(*) FILTER (WHERE e.operation IN ({TURN_OPS})) AS turn_exchanges,
         COUNT(*) FILTER (WHERE {FAILED} OR ev.exchange_id IS NOT NULL) AS errors,
         MIN(e.started_at) AS first_started,
         MAX(e.started_at) AS last_started,
         arg_max(e.total_us, e.started_at) AS last_total_us,
         COUNT(*) FILTER (WHERE CAST(e.response_headers AS VARCHAR) LIKE {simulated}) AS simulated
  FROM exchanges e LEFT JOIN ev ON ev.exchange_id = e.id
  WHERE e.conversation_id IS NOT NULL{x_scope}
  GROUP BY e.conversation_id
), u AS (
  SELECT COALESCE(u.conversation_id, e.conversation_id) AS conversation_id, SUM(u.total_tokens) AS total_tokens
  FROM usage u LEFT JOIN exchanges e ON e.id = u.exchange_id{u_scope}
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
{filter}
ORDER BY c.last_seen DESC NULLS LAST, c.first_seen DESC NULLS LAST, c.id DESC{limit}",
        simulated = sql_str(&format!("%{SIMULATED_HEADER_JSON}%"))
    )
}

/// `conversations list`: the `limit` most recently seen conversations, newest first.
pub fn list_sql(limit: usize) -> String {
    summary_sql(None, Some(limit))
}

/// One conversation's summary row.
pub fn summary_by_id_sql(id: &str) -> String {
    summary_sql(Some(id), None)
}

/// The conversations restarted from `id`, oldest first.
pub fn branches_sql(id: &str) -> String {
    format!(
        "SELECT id AS conversation_id FROM conversations WHERE parent_conversation_id = {} \
         ORDER BY first_seen NULLS LAST, id",
        sql_str(id)
    )
}

/// The parent link of `id`.
pub fn parent_sql(id: &str) -> String {
    format!(
        "SELECT parent_conversation_id, from_entry_id FROM conversations WHERE id = {}",
        sql_str(id)
    )
}

/// The turn exchanges of `id` with their usage, in order.
pub fn turns_sql(id: &str) -> String {
    format!(
        "SELECT CAST(x.id AS VARCHAR) AS exchange_id,
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
       ev.stream_error
FROM exchanges x
LEFT JOIN (
  SELECT exchange_id, COUNT(*) AS n, SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens,
         SUM(total_tokens) AS total_tokens, SUM(connector_tokens) AS connector_tokens
  FROM usage WHERE exchange_id IN (SELECT id FROM exchanges WHERE conversation_id = {id}) GROUP BY exchange_id
) u ON u.exchange_id = x.id
LEFT JOIN (
  SELECT exchange_id, CAST(arg_min(data, seq) AS VARCHAR) AS stream_error
  FROM sse_events WHERE event_type = {STREAM_ERROR}
    AND exchange_id IN (SELECT id FROM exchanges WHERE conversation_id = {id})
  GROUP BY exchange_id
) ev ON ev.exchange_id = x.id
WHERE x.conversation_id = {id} AND x.operation IN ({TURN_OPS})
ORDER BY x.started_at, x.id",
        id = sql_str(id)
    )
}

/// The entries of the turn exchanges of `id`, inputs before outputs, by position.
pub fn entries_sql(id: &str) -> String {
    format!(
        "SELECT CAST(e.exchange_id AS VARCHAR) AS exchange_id,
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
JOIN exchanges x ON x.id = e.exchange_id
WHERE x.conversation_id = {id} AND x.operation IN ({TURN_OPS})
ORDER BY x.started_at, x.id, CASE e.direction WHEN 'input' THEN 0 ELSE 1 END, e.position",
        id = sql_str(id)
    )
}

// ---------------------------------------------------------------------------------------------------------
// Decoding query results
// ---------------------------------------------------------------------------------------------------------

/// Column access by name over a [`QueryResult`].
struct Cols<'a> {
    idx: HashMap<&'a str, usize>,
}

impl<'a> Cols<'a> {
    fn new(r: &'a QueryResult) -> Self {
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

    fn text(&self, row: &[Value], col: &str) -> Option<String> {
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
fn normalize_ts(s: &str) -> String {
    parse_ts(s)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_else(|| s.to_string())
}

fn micros_between(from: Option<&str>, to: Option<&str>) -> Option<i64> {
    let (a, b) = (parse_ts(from?)?, parse_ts(to?)?);
    (b - a).num_microseconds()
}

/// The rows of [`list_sql`] (or [`summary_by_id_sql`]).
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

/// `conversations list`: runs [`list_sql`] and decodes it.
pub fn list<E>(
    query: impl Fn(&str) -> Result<QueryResult, E>,
    limit: usize,
) -> Result<Vec<ConversationSummary>, E> {
    Ok(summaries(&query(&list_sql(limit))?))
}

fn turns(r: &QueryResult) -> Vec<Turn> {
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
        Ok(v) => v
            .get("message")
            .and_then(value_text)
            .unwrap_or_else(|| v.to_string()),
        Err(_) => data.to_string(),
    }
}

/// Entries keyed by exchange id, in query order.
fn entries(r: &QueryResult) -> Vec<(String, EntryNode)> {
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

// ---------------------------------------------------------------------------------------------------------
// conversations show
// ---------------------------------------------------------------------------------------------------------

type QueryFn<'q, E> = dyn Fn(&str) -> Result<QueryResult, E> + 'q;

/// `conversations show`: the tree of conversation `id` — its turns and entries, the branches restarted from
/// its entries (recursively), and its ancestor chain when it is a branch. `None` when the recording has no
/// such conversation.
pub fn show<E>(
    query: impl Fn(&str) -> Result<QueryResult, E>,
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
        let r = q(&parent_sql(&cur))?;
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
    let Some(conversation) = summaries(&q(&summary_by_id_sql(id))?).into_iter().next() else {
        return Ok(None);
    };
    let mut turns = turns(&q(&turns_sql(id))?);
    let pos: HashMap<String, usize> = turns
        .iter()
        .enumerate()
        .map(|(i, t)| (t.exchange_id.clone(), i))
        .collect();
    for (exchange_id, e) in entries(&q(&entries_sql(id))?) {
        if let Some(&i) = pos.get(&exchange_id) {
            turns[i].entries.push(e);
        }
    }

    let mut detached_branches = Vec::new();
    let children = q(&branches_sql(id))?;
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

// ---------------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------------

/// A value as one table or CSV cell: text as it is, `NULL`-free (empty), anything else as compact JSON.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Any query result as a text table.
pub fn render_table(r: &QueryResult) -> String {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    t.set_header(r.columns.clone());
    for row in &r.rows {
        t.add_row(row.iter().map(|v| match v {
            Value::Null => "NULL".to_string(),
            v => cell_text(v),
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
        t.add_row(vec![
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
        ]);
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
            n.label
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
    let mut out = format!("conversation {}\n", summary_label(&t.conversation));
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
        let _ = writeln!(out, "branch of {}", chain.join(" › "));
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
    use serde_json::json;

    fn qr(columns: &[&str], rows: Vec<Vec<Value>>) -> QueryResult {
        QueryResult::new(columns.iter().map(|c| c.to_string()).collect(), rows)
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(sql_str("a'b"), "'a''b'");
        assert!(summary_by_id_sql("x' OR 1=1 --").contains("'x'' OR 1=1 --'"));
        assert!(list_sql(7).ends_with("LIMIT 7"));
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
    fn durations_read_well() {
        assert_eq!(human_us(850), "850 µs");
        assert_eq!(human_us(12_345), "12.3 ms");
        assert_eq!(human_us(4_560_000), "4.56 s");
        assert_eq!(human_us(185_000_000), "3m 05s");
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

    /// A fake recording: conversations A → B (from a_out) → C (from b_out), and D from an unknown entry.
    fn fake(sql: &str) -> Result<QueryResult, String> {
        let convs = [
            ("A", None, None),
            ("B", Some("A"), Some("a_out")),
            ("C", Some("B"), Some("b_out")),
            ("D", Some("A"), Some("zzz")),
        ];
        let target = |sql: &str, key: &str| {
            convs
                .iter()
                .map(|c| c.0)
                .find(|id| sql.contains(&format!("{key} = '{id}'")))
                .map(str::to_string)
        };
        if sql.contains("FROM conversations WHERE parent_conversation_id") {
            let p = target(sql, "parent_conversation_id").unwrap();
            let rows = convs
                .iter()
                .filter(|c| c.1 == Some(p.as_str()))
                .map(|c| vec![json!(c.0)])
                .collect();
            return Ok(qr(&["conversation_id"], rows));
        }
        if sql.starts_with("SELECT parent_conversation_id") {
            let id = target(sql, "WHERE id").unwrap();
            let c = convs.iter().find(|c| c.0 == id).unwrap();
            return Ok(qr(
                &["parent_conversation_id", "from_entry_id"],
                vec![vec![json!(c.1), json!(c.2)]],
            ));
        }
        if sql.contains("FROM conversations c") {
            let id = target(sql, "c.id").unwrap();
            let c = convs.iter().find(|c| c.0 == id).unwrap();
            return Ok(qr(
                &[
                    "conversation_id",
                    "turns",
                    "parent_conversation_id",
                    "from_entry_id",
                ],
                vec![vec![json!(c.0), json!(1), json!(c.1), json!(c.2)]],
            ));
        }
        let id =
            target(sql, "x.conversation_id").ok_or_else(|| format!("unexpected SQL: {sql}"))?;
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

        let text = render_tree(&t);
        assert!(text.starts_with("conversation A"), "{text}");
        assert!(text.contains("└─ ⑂ branch B"), "{text}");
        assert!(text.contains("⑂ branch C"), "{text}");
        assert!(text.contains("not among the recorded ones"), "{text}");
        assert!(text.contains("total 1.2 ms"), "{text}");

        let c = show(fake, "C").unwrap().unwrap();
        let chain: Vec<_> = c
            .ancestors
            .iter()
            .map(|a| (a.conversation_id.as_str(), a.from_entry_id.as_deref()))
            .collect();
        assert_eq!(chain, vec![("A", Some("a_out")), ("B", Some("b_out"))]);
        assert!(render_tree(&c).contains("branch of A @ a_out › B @ b_out"));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["turns"][0]["entries"][0]["type"], "message.input");
    }

    #[test]
    fn unknown_conversation_is_none() {
        let none = |_: &str| Ok::<_, String>(qr(&["conversation_id"], vec![]));
        assert!(show(none, "nope").unwrap().is_none());
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
