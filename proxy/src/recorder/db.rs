//! Writes batches of derived rows to DuckDB in one transaction: appenders for the append-only
//! tables (`exchanges`, `sse_events`, `entries`, `usage`), a staged upsert for `conversations`
//! and a prepared insert for `agents`.

use std::collections::{HashMap, HashSet};

use duckdb::types::{TimeUnit, Value as DbValue};
use duckdb::{Connection, params};

use super::RecorderError;
use super::derive::{ConvUpdate, Derived, EventRow};

/// Rows written by one batch, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// `exchanges` rows.
    pub exchanges: u64,
    /// `sse_events` rows.
    pub sse_events: u64,
    /// `entries` rows.
    pub entries: u64,
    /// `usage` rows.
    pub usage: u64,
    /// `agents` rows.
    pub agents: u64,
    /// `conversations` rows.
    pub conversations: u64,
    /// Exchanges skipped because they were already in the database.
    pub skipped: u64,
}

impl BatchCounts {
    /// All rows.
    pub fn rows(&self) -> u64 {
        self.exchanges
            + self.sse_events
            + self.entries
            + self.usage
            + self.agents
            + self.conversations
    }
}

fn ts(us: Option<i64>) -> DbValue {
    us.map_or(DbValue::Null, |u| {
        DbValue::Timestamp(TimeUnit::Microsecond, u)
    })
}

/// Ids (UUID text) among `ids` that already have an `exchanges` row.
pub fn existing_ids(conn: &Connection, ids: &[&str]) -> Result<HashSet<String>, RecorderError> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(1000) {
        // The ids are UUIDs formatted by this crate (hex digits and dashes), so `,` separates them; the
        // list is one parameter, never part of the statement's text.
        let list = chunk
            .iter()
            .filter(|id| id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
            .copied()
            .collect::<Vec<_>>()
            .join(",");
        if list.is_empty() {
            continue;
        }
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM exchanges WHERE id IN (SELECT unnest(string_split(?, ',')))",
        )?;
        let rows = stmt.query_map([list], |r| r.get::<_, String>(0))?;
        for id in rows {
            found.insert(id?);
        }
    }
    Ok(found)
}

/// Appends chunks of `sse_events` rows (exchange id, rows) in one transaction; returns the rows
/// written. With `dedupe` (a retry after a failed COMMIT that may have landed), each chunk's `seq`
/// range of its exchange is deleted first, so a chunk is never written twice.
pub fn write_event_chunks(
    conn: &Connection,
    chunks: &[(&str, &[EventRow])],
    dedupe: bool,
) -> Result<u64, RecorderError> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    let result = (|| {
        if dedupe {
            let mut del = conn.prepare_cached(
                "DELETE FROM sse_events WHERE exchange_id = ? AND seq BETWEEN ? AND ?",
            )?;
            for (id, rows) in chunks {
                if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
                    del.execute(params![id, first.seq, last.seq])?;
                }
            }
        }
        let mut n = 0u64;
        let mut app = conn.appender("sse_events")?;
        for (id, rows) in chunks {
            for e in *rows {
                append_event(&mut app, id, e)?;
            }
            n += rows.len() as u64;
        }
        app.flush()?;
        Ok::<_, RecorderError>(n)
    })();
    finish_transaction(conn, result)
}

/// Deletes the `sse_events` rows of one exchange (before they are written again in full).
pub fn delete_events(conn: &Connection, exchange_id: &str) -> Result<(), RecorderError> {
    conn.prepare_cached("DELETE FROM sse_events WHERE exchange_id = ?")?
        .execute([exchange_id])?;
    Ok(())
}

/// Deletes the `sse_events` rows whose exchange has no `exchanges` row: the chunks of a long
/// stream written before a stop that left the exchange itself to the journal's replay.
pub fn delete_orphan_events(conn: &Connection) -> Result<u64, RecorderError> {
    let n = conn.execute(
        "DELETE FROM sse_events WHERE exchange_id NOT IN (SELECT id FROM exchanges)",
        [],
    )?;
    Ok(n as u64)
}

fn append_event(app: &mut duckdb::Appender<'_>, id: &str, e: &EventRow) -> duckdb::Result<()> {
    app.append_row(params![
        id,
        e.seq,
        e.event_type,
        e.data,
        e.parse_error,
        e.offset_us,
        e.size,
        e.data_truncated
    ])
}

/// A conversation's updates within one batch, merged.
#[derive(Debug, Clone, Default)]
struct ConvMerged {
    id: String,
    agent_id: Option<String>,
    agent_version: Option<String>,
    model: Option<String>,
    first_exchange_id: Option<String>,
    first_seen: Option<i64>,
    last_exchange_id: Option<String>,
    last_seen: Option<i64>,
    turns: i64,
    parent: Option<String>,
    from_entry_id: Option<String>,
}

impl ConvMerged {
    fn add(&mut self, u: &ConvUpdate) {
        fn fill(slot: &mut Option<String>, v: &Option<String>) {
            if slot.is_none() {
                slot.clone_from(v);
            }
        }
        fill(&mut self.agent_id, &u.agent_id);
        fill(&mut self.agent_version, &u.agent_version);
        fill(&mut self.model, &u.model);
        fill(&mut self.parent, &u.parent_conversation_id);
        fill(&mut self.from_entry_id, &u.from_entry_id);
        self.turns += u.turns;
        match &u.exchange_id {
            Some(x) => {
                let t = u.seen_us;
                if self.first_exchange_id.is_none() || t < self.first_seen {
                    self.first_exchange_id = Some(x.clone());
                    self.first_seen = t;
                }
                if self.last_exchange_id.is_none() || t >= self.last_seen {
                    self.last_exchange_id = Some(x.clone());
                    self.last_seen = t;
                }
            }
            None => {
                // Information only (GET / list): times matter only if the row is new.
                if self.first_seen.is_none() {
                    self.first_seen = u.seen_us;
                }
                if self.last_seen.is_none() {
                    self.last_seen = u.seen_us;
                }
            }
        }
    }
}

/// The connection's staging table for conversation updates: a batch's merged updates are appended
/// to it, then one `INSERT … SELECT … ON CONFLICT` moves them into `conversations`. A statement with
/// one parameter per value costs DuckDB binding and planning in proportion to its size (a 256-row
/// `VALUES` upsert took more than half of the proxy's CPU at 1,000 exchanges/s); the appender does
/// not plan, and the two statements below are planned once per batch whatever its size.
const CONV_STAGE: &str = "agentcap_conv_stage";

const CREATE_CONV_STAGE: &str = "
CREATE TEMP TABLE IF NOT EXISTS agentcap_conv_stage (
    id VARCHAR, agent_id VARCHAR, agent_version VARCHAR, model VARCHAR,
    first_exchange_id VARCHAR, last_exchange_id VARCHAR, first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ,
    turns BIGINT, parent_conversation_id VARCHAR, from_entry_id VARCHAR
)";

const CLEAR_CONV_STAGE: &str = "DELETE FROM temp.main.agentcap_conv_stage";

/// Moves the staged updates (ids unique: the batch is merged per id) into `conversations`.
const UPSERT_CONVERSATIONS: &str = "
INSERT INTO conversations (id, agent_id, agent_version, model, first_exchange_id, last_exchange_id,
                           first_seen, last_seen, turns, parent_conversation_id, from_entry_id)
SELECT id, agent_id, agent_version, model, first_exchange_id, last_exchange_id,
       first_seen, last_seen, turns, parent_conversation_id, from_entry_id
FROM temp.main.agentcap_conv_stage
ON CONFLICT (id) DO UPDATE SET
    agent_id = COALESCE(agent_id, EXCLUDED.agent_id),
    agent_version = COALESCE(agent_version, EXCLUDED.agent_version),
    model = COALESCE(model, EXCLUDED.model),
    first_exchange_id = CASE
        WHEN first_exchange_id IS NULL
          OR (EXCLUDED.first_exchange_id IS NOT NULL AND EXCLUDED.first_seen < first_seen)
        THEN EXCLUDED.first_exchange_id ELSE first_exchange_id END,
    first_seen = CASE
        WHEN EXCLUDED.first_exchange_id IS NOT NULL
          AND (first_exchange_id IS NULL OR EXCLUDED.first_seen < first_seen)
        THEN EXCLUDED.first_seen ELSE first_seen END,
    last_exchange_id = CASE
        WHEN EXCLUDED.last_exchange_id IS NOT NULL
          AND (last_exchange_id IS NULL OR EXCLUDED.last_seen >= last_seen)
        THEN EXCLUDED.last_exchange_id ELSE last_exchange_id END,
    last_seen = CASE
        WHEN EXCLUDED.last_exchange_id IS NOT NULL
          AND (last_exchange_id IS NULL OR EXCLUDED.last_seen >= last_seen)
        THEN EXCLUDED.last_seen ELSE last_seen END,
    turns = turns + EXCLUDED.turns,
    parent_conversation_id = COALESCE(parent_conversation_id, EXCLUDED.parent_conversation_id),
    from_entry_id = COALESCE(from_entry_id, EXCLUDED.from_entry_id)
";

const INSERT_AGENT: &str = "
INSERT INTO agents (agent_id, version, snapshot, first_seen, exchange_id)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
";

/// Writes the rows of `batch` in one transaction (rolled back on any error). With `dedupe`,
/// exchanges that already have an `exchanges` row are skipped entirely.
pub fn write_batch(
    conn: &Connection,
    batch: &[&Derived],
    dedupe: bool,
) -> Result<BatchCounts, RecorderError> {
    // Outside the transaction, so a rolled-back batch never takes the staging table with it.
    conn.execute_batch(CREATE_CONV_STAGE)?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    finish_transaction(conn, write_in_tx(conn, batch, dedupe))
}

fn write_in_tx(
    conn: &Connection,
    batch: &[&Derived],
    dedupe: bool,
) -> Result<BatchCounts, RecorderError> {
    let mut counts = BatchCounts::default();
    let skip = if dedupe {
        let ids: Vec<&str> = batch.iter().map(|d| d.exchange.id.as_str()).collect();
        existing_ids(conn, &ids)?
    } else {
        HashSet::new()
    };
    let mut seen_here = HashSet::new();
    let batch: Vec<&Derived> = batch
        .iter()
        .copied()
        .filter(|d| {
            let fresh = !skip.contains(&d.exchange.id) && seen_here.insert(d.exchange.id.as_str());
            if !fresh {
                counts.skipped += 1;
            }
            fresh
        })
        .collect();
    if batch.is_empty() {
        return Ok(counts);
    }

    {
        let mut app = conn.appender("exchanges")?;
        for d in &batch {
            let x = &d.exchange;
            app.append_row(params![
                x.id,
                ts(x.started_at_us),
                x.method,
                x.path,
                x.query,
                x.operation,
                x.client_addr,
                x.request_headers,
                x.request_body,
                x.request_body_raw,
                x.request_parse_error,
                x.request_truncated,
                x.request_bytes,
                x.status,
                x.response_headers,
                x.response_body,
                x.response_body_raw,
                x.response_parse_error,
                x.response_truncated,
                x.response_bytes,
                x.is_stream,
                x.response_headers_us,
                x.first_event_us,
                x.total_us,
                x.upstream_us,
                x.overhead_us,
                x.outcome,
                x.error,
                x.key_fingerprint,
                x.session,
                x.tags,
                x.conversation_id,
                x.agent_id,
                x.model,
                x.event_count,
                x.upstream_version,
                x.stream_error,
            ])?;
            counts.exchanges += 1;
        }
        app.flush()?;
    }
    if batch.iter().any(|d| !d.events.is_empty()) {
        let mut app = conn.appender("sse_events")?;
        for d in &batch {
            let id = d.exchange.id.as_str();
            for e in &d.events {
                append_event(&mut app, id, e)?;
            }
            counts.sse_events += d.events.len() as u64;
        }
        app.flush()?;
    }
    if batch.iter().any(|d| !d.entries.is_empty()) {
        let mut app = conn.appender("entries")?;
        for d in &batch {
            let id = d.exchange.id.as_str();
            let conv = d.exchange.conversation_id.as_deref();
            for e in &d.entries {
                app.append_row(params![
                    id,
                    conv,
                    e.entry_id,
                    e.direction,
                    e.position,
                    e.entry_type,
                    e.role,
                    e.agent_id,
                    e.model,
                    e.text,
                    e.name,
                    e.tool_call_id,
                    e.arguments,
                    e.created_at,
                    e.completed_at,
                    e.source,
                    e.raw,
                    e.truncated,
                ])?;
            }
            counts.entries += d.entries.len() as u64;
        }
        app.flush()?;
    }
    if batch.iter().any(|d| d.usage.is_some()) {
        let mut app = conn.appender("usage")?;
        for d in &batch {
            if let Some(u) = &d.usage {
                app.append_row(params![
                    d.exchange.id,
                    d.exchange.conversation_id,
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.total_tokens,
                    u.connector_tokens,
                    u.connectors,
                ])?;
                counts.usage += 1;
            }
        }
        app.flush()?;
    }

    // Agents: first snapshot of each version wins.
    if batch.iter().any(|d| !d.agents.is_empty()) {
        let mut agent_keys = HashSet::new();
        let mut stmt = conn.prepare_cached(INSERT_AGENT)?;
        for d in &batch {
            for a in &d.agents {
                if !agent_keys.insert((a.agent_id.as_str(), a.version)) {
                    continue;
                }
                counts.agents += stmt.execute(params![
                    a.agent_id,
                    a.version,
                    a.snapshot,
                    ts(d.exchange.started_at_us),
                    d.exchange.id,
                ])? as u64;
            }
        }
    }

    // Conversations: merge the batch's updates per id, stage them, then one upsert for all.
    let mut order = Vec::new();
    let mut merged: HashMap<&str, ConvMerged> = HashMap::new();
    for d in &batch {
        for u in &d.conversations {
            let m = merged.entry(u.id.as_str()).or_insert_with(|| {
                order.push(u.id.as_str());
                ConvMerged {
                    id: u.id.clone(),
                    ..Default::default()
                }
            });
            m.add(u);
        }
    }
    if !order.is_empty() {
        let mut app = conn.appender_to_catalog_and_db(CONV_STAGE, "temp", "main")?;
        for id in &order {
            let m = &merged[id];
            let text = |v: &Option<String>| v.clone().map_or(DbValue::Null, DbValue::Text);
            app.append_row([
                DbValue::Text(m.id.clone()),
                text(&m.agent_id),
                text(&m.agent_version),
                text(&m.model),
                text(&m.first_exchange_id),
                text(&m.last_exchange_id),
                ts(m.first_seen),
                ts(m.last_seen),
                DbValue::BigInt(m.turns),
                text(&m.parent),
                text(&m.from_entry_id),
            ])?;
        }
        app.flush()?;
        drop(app);
        conn.prepare_cached(UPSERT_CONVERSATIONS)?.execute([])?;
        conn.prepare_cached(CLEAR_CONV_STAGE)?.execute([])?;
        counts.conversations += order.len() as u64;
    }
    Ok(counts)
}

/// Ends the open transaction: COMMIT when `result` is Ok (rolled back if the COMMIT fails), ROLLBACK otherwise.
fn finish_transaction<T>(
    conn: &Connection,
    result: Result<T, RecorderError>,
) -> Result<T, RecorderError> {
    let committed =
        result.and_then(|v| conn.execute_batch("COMMIT").map(|()| v).map_err(Into::into));
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    committed
}
