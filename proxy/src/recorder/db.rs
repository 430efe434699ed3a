//! Writes batches of derived rows to DuckDB in one transaction: appenders fed Arrow record batches
//! (`columns.rs`) for the append-only tables (`exchanges`, `sse_events`, `entries`, `usage`), a
//! staged upsert for `conversations` and a prepared insert for `agents`.

use std::collections::{HashMap, HashSet};

use duckdb::types::{TimeUnit, Value as DbValue};
use duckdb::{Connection, params};

use super::derive::{ConvUpdate, Derived, EventRow};
use super::{RecorderError, columns};

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
        let rows: Vec<(&str, &EventRow)> = chunks
            .iter()
            .flat_map(|(id, rows)| rows.iter().map(move |e| (*id, e)))
            .collect();
        columns::append_events(conn, &rows)
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
    /// Merges `later`, the updates written after this one's, as `conversations`' upsert would.
    fn absorb(&mut self, later: ConvMerged) {
        fn fill(slot: &mut Option<String>, v: Option<String>) {
            if slot.is_none() {
                *slot = v;
            }
        }
        fill(&mut self.agent_id, later.agent_id);
        fill(&mut self.agent_version, later.agent_version);
        fill(&mut self.model, later.model);
        fill(&mut self.parent, later.parent);
        fill(&mut self.from_entry_id, later.from_entry_id);
        self.turns += later.turns;
        match later.first_exchange_id {
            Some(x) if self.first_exchange_id.is_none() || later.first_seen < self.first_seen => {
                self.first_exchange_id = Some(x);
                self.first_seen = later.first_seen;
            }
            Some(_) => {}
            None if self.first_exchange_id.is_none() && self.first_seen.is_none() => {
                self.first_seen = later.first_seen;
            }
            None => {}
        }
        match later.last_exchange_id {
            Some(x) if self.last_exchange_id.is_none() || later.last_seen >= self.last_seen => {
                self.last_exchange_id = Some(x);
                self.last_seen = later.last_seen;
            }
            Some(_) => {}
            None if self.last_exchange_id.is_none() && self.last_seen.is_none() => {
                self.last_seen = later.last_seen;
            }
            None => {}
        }
    }
}

impl From<&ConvUpdate> for ConvMerged {
    /// One update on its own: a turn is the conversation's first and last exchange at once.
    fn from(u: &ConvUpdate) -> Self {
        ConvMerged {
            id: u.id.clone(),
            agent_id: u.agent_id.clone(),
            agent_version: u.agent_version.clone(),
            model: u.model.clone(),
            first_exchange_id: u.exchange_id.clone(),
            first_seen: u.seen_us,
            last_exchange_id: u.exchange_id.clone(),
            last_seen: u.seen_us,
            turns: u.turns,
            parent: u.parent_conversation_id.clone(),
            from_entry_id: u.from_entry_id.clone(),
        }
    }
}

/// Updates merged per conversation ([`ConvMerged::absorb`], in the order given), in the order each
/// conversation first appears.
fn merge_in_order(updates: impl IntoIterator<Item = ConvMerged>) -> Vec<ConvMerged> {
    let mut order: Vec<ConvMerged> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for u in updates {
        match at.get(&u.id) {
            Some(&i) => order[i].absorb(u),
            None => {
                at.insert(u.id.clone(), order.len());
                order.push(u);
            }
        }
    }
    order
}

/// The connection's staging table for [`fold_conversations`]: the merged updates are appended to it, then one
/// `INSERT … SELECT … ON CONFLICT` moves them into `conversations`. A statement with one parameter per value
/// costs DuckDB binding and planning in proportion to its size (a 256-row `VALUES` upsert took more than half
/// of the proxy's CPU at 1,000 exchanges/s); the appender does not plan.
const CONV_STAGE: &str = "agentcap_conv_stage";

const CREATE_CONV_STAGE: &str = "
CREATE TEMP TABLE IF NOT EXISTS agentcap_conv_stage (
    id VARCHAR, agent_id VARCHAR, agent_version VARCHAR, model VARCHAR,
    first_exchange_id VARCHAR, last_exchange_id VARCHAR, first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ,
    turns BIGINT, parent_conversation_id VARCHAR, from_entry_id VARCHAR
)";

/// Dropped after every fold (and made again by the next): rows deleted from a temporary table keep
/// their memory until the table goes (a temporary table is never checkpointed), so a `DELETE` here
/// grew DuckDB's memory by about 100 bytes for every conversation ever folded.
const DROP_CONV_STAGE: &str = "DROP TABLE IF EXISTS temp.main.agentcap_conv_stage";

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

    // The append-only tables, column by column (`columns.rs`).
    counts.exchanges = columns::append_exchanges(conn, &batch)?;
    let events: Vec<(&str, &EventRow)> = batch
        .iter()
        .flat_map(|d| d.events.iter().map(|e| (d.exchange.id.as_str(), e)))
        .collect();
    counts.sse_events = columns::append_events(conn, &events)?;
    let entries: Vec<columns::EntryOf<'_>> = batch
        .iter()
        .flat_map(|d| {
            let conv = d.exchange.conversation_id.as_deref();
            d.entries
                .iter()
                .map(move |e| (d.exchange.id.as_str(), conv, e))
        })
        .collect();
    counts.entries = columns::append_entries(conn, &entries)?;
    let usage: Vec<columns::UsageOf<'_>> = batch
        .iter()
        .filter_map(|d| {
            let x = &d.exchange;
            d.usage
                .as_ref()
                .map(|u| (x.id.as_str(), x.conversation_id.as_deref(), u))
        })
        .collect();
    counts.usage = columns::append_usage(conn, &usage)?;

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

    // Conversations: the batch's updates merged per id, kept in `conversation_updates` until the next
    // `fold_conversations`.
    let merged = merge_in_order(
        batch
            .iter()
            .flat_map(|d| &d.conversations)
            .map(ConvMerged::from),
    );
    if !merged.is_empty() {
        let mut app = conn.appender("conversation_updates")?;
        for m in &merged {
            append_merged(&mut app, m)?;
        }
        app.flush()?;
        counts.conversations += merged.len() as u64;
    }
    Ok(counts)
}

fn append_merged(app: &mut duckdb::Appender<'_>, m: &ConvMerged) -> duckdb::Result<()> {
    app.append_row(params![
        m.id,
        m.agent_id,
        m.agent_version,
        m.model,
        m.first_exchange_id,
        m.last_exchange_id,
        ts(m.first_seen),
        ts(m.last_seen),
        m.turns,
        m.parent,
        m.from_entry_id,
    ])
}

/// Moves the updates waiting in `conversation_updates` into `conversations`, in one transaction: merged per
/// conversation in the order they were written, then one upsert, then deleted. Returns the conversations
/// updated.
///
/// Why not per batch: DuckDB plans the upsert as a join that scans the whole `conversations` table, so its
/// cost grows with the recording (a 200-exchange batch took 14 ms on an empty table, 42 ms at 1 M and 120 ms
/// at 4 M conversations, debug build). Batches append their updates (constant cost) and the DuckDB thread
/// folds them at most every few seconds (`committer.rs`), on `flush` and on shutdown.
pub fn fold_conversations(conn: &Connection) -> Result<u64, RecorderError> {
    // Made and dropped outside the transaction, so a rolled-back fold never takes the staging table
    // with it, and a failed one leaves none behind.
    conn.execute_batch(CREATE_CONV_STAGE)?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    let folded = finish_transaction(conn, fold_in_tx(conn));
    let dropped = conn.execute_batch(DROP_CONV_STAGE);
    let folded = folded?;
    dropped?;
    Ok(folded)
}

fn fold_in_tx(conn: &Connection) -> Result<u64, RecorderError> {
    let merged = {
        let mut stmt = conn.prepare_cached(
            "SELECT id, agent_id, agent_version, model, first_exchange_id, last_exchange_id, \
             epoch_us(first_seen), epoch_us(last_seen), turns, parent_conversation_id, from_entry_id \
             FROM conversation_updates ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ConvMerged {
                id: r.get(0)?,
                agent_id: r.get(1)?,
                agent_version: r.get(2)?,
                model: r.get(3)?,
                first_exchange_id: r.get(4)?,
                last_exchange_id: r.get(5)?,
                first_seen: r.get(6)?,
                last_seen: r.get(7)?,
                turns: r.get(8)?,
                parent: r.get(9)?,
                from_entry_id: r.get(10)?,
            })
        })?;
        let mut failed = None;
        let merged = merge_in_order(rows.map_while(|r| r.map_err(|e| failed = Some(e)).ok()));
        if let Some(e) = failed {
            return Err(e.into());
        }
        merged
    };
    if merged.is_empty() {
        return Ok(0);
    }
    let mut app = conn.appender_to_catalog_and_db(CONV_STAGE, "temp", "main")?;
    for m in &merged {
        append_merged(&mut app, m)?;
    }
    app.flush()?;
    drop(app);
    conn.prepare_cached(UPSERT_CONVERSATIONS)?.execute([])?;
    conn.prepare_cached("DELETE FROM conversation_updates")?
        .execute([])?;
    Ok(merged.len() as u64)
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

#[cfg(test)]
mod tests {
    use super::super::derive::{ConvUpdate, Derived};
    use super::super::{DbAccess, open_db, schema};
    use super::{fold_conversations, write_batch};

    fn update(exchange: Option<&str>, seen: i64, agent: Option<&str>, turns: i64) -> Derived {
        let mut d = Derived::default();
        d.exchange.id = format!("0190a000-0000-7000-8000-{seen:012}");
        d.exchange.operation = "conversations.append".to_owned();
        d.exchange.outcome = "complete".to_owned();
        d.conversations.push(ConvUpdate {
            id: "conv_m".to_owned(),
            agent_id: agent.map(str::to_owned),
            exchange_id: exchange.map(str::to_owned),
            seen_us: Some(seen),
            turns,
            ..Default::default()
        });
        d
    }

    fn conversation(fold_each_batch: bool) -> String {
        let conn = open_db(None, DbAccess::ReadWrite).unwrap();
        schema::migrate(&conn).unwrap();
        // Information first (a GET), then two turns, the second seen earlier than the first, then a
        // later GET naming another agent.
        let batches = [
            update(None, 5, None, 0),
            update(Some("x10"), 10, Some("ag_1"), 1),
            update(Some("x7"), 7, Some("ag_2"), 1),
            update(None, 20, Some("ag_3"), 0),
        ];
        for d in &batches {
            write_batch(&conn, &[d], false).unwrap();
            if fold_each_batch {
                fold_conversations(&conn).unwrap();
            }
        }
        fold_conversations(&conn).unwrap();
        conn.query_row(
            "SELECT concat_ws(' ', id, agent_id, first_exchange_id, epoch_us(first_seen), \
             last_exchange_id, epoch_us(last_seen), turns) FROM conversations",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// Folds keep no memory behind: 100,000 conversations staged over 20 folds leave DuckDB's
    /// temporary tables empty (a staging table emptied with `DELETE` kept them all).
    #[test]
    fn folds_leave_no_staged_rows_in_memory() {
        // A file: in an in-memory database every table is an in-memory table.
        let dir = tempfile::tempdir().unwrap();
        let conn = open_db(Some(&dir.path().join("rec.duckdb")), DbAccess::ReadWrite).unwrap();
        schema::migrate(&conn).unwrap();
        let temp_bytes = || -> i64 {
            conn.query_row(
                "SELECT coalesce(sum(memory_usage_bytes), 0)::BIGINT FROM duckdb_memory() \
                 WHERE tag = 'IN_MEMORY_TABLE'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        for fold in 0..20 {
            conn.execute(
                "INSERT INTO conversation_updates (id, agent_id, model, first_exchange_id, \
                 last_exchange_id, first_seen, last_seen, turns) \
                 SELECT printf('conv_%d_%d', ?, i), 'ag_1', 'm', printf('x%d', i), printf('x%d', i), \
                 to_timestamp(i), to_timestamp(i), 1 FROM range(5000) t(i)",
                [fold],
            )
            .unwrap();
            assert_eq!(fold_conversations(&conn).unwrap(), 5000);
        }
        let n: i64 = conn
            .query_row("SELECT count(*) FROM conversations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 100_000);
        // The recording's own tables leave memory for their blocks once written.
        conn.execute_batch("CHECKPOINT").unwrap();
        assert_eq!(temp_bytes(), 0);
    }

    /// Folding many batches' updates at once gives the row that folding after every batch gives.
    #[test]
    fn one_fold_of_many_batches_equals_a_fold_per_batch() {
        let per_batch = conversation(true);
        assert_eq!(per_batch, "conv_m ag_1 x7 7 x10 10 2");
        assert_eq!(conversation(false), per_batch);
    }
}
