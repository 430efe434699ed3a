//! The database schema, as an ordered list of migrations, and the code that applies the pending
//! ones when a database is opened.
//!
//! Columns documented as JSON are `VARCHAR` holding valid JSON text. DuckDB's `json` extension is
//! built into agentcap's DuckDB and loaded in every connection `open_db` returns, and its operators
//! and functions (`->`, `->>`, `json_extract…`) take `VARCHAR` as they take `JSON`
//! (`recorded_json_columns_answer_the_json_operators` checks it); the `JSON` type would only
//! change how a client sees a bare column, so the schema does not use it. A database created by an
//! older build may have `JSON` columns instead: the same text, read the same way.

use std::time::SystemTime;

use duckdb::Connection;
use duckdb::types::{TimeUnit, Value as DbValue};

use super::RecorderError;
use super::journal::system_time_to_us;

/// Placeholder in the migration SQL for the type of the columns holding JSON text.
const JSON_TYPE: &str = "{json}";

/// Schema version 1.
const V1: &str = r#"
-- One row per HTTP exchange that went through the proxy.
-- No primary key on purpose (the append-only tables are loaded with appenders, and indexes slow
-- them down); the recorder itself never writes an id twice.
CREATE TABLE exchanges (
    id                   VARCHAR,      -- exchange id: a UUIDv7 (time-ordered) in text form
    started_at           TIMESTAMPTZ,  -- when the request arrived (wall clock)
    method               VARCHAR,      -- HTTP method
    path                 VARCHAR,      -- path without the query string
    query                VARCHAR,      -- raw query string, if any
    operation            VARCHAR,      -- API operation, e.g. conversations.append_stream (see ops.rs), or 'other'
    client_addr          VARCHAR,      -- client socket address
    request_headers      {json},       -- object name -> value (lowercased names; credentials replaced by [REDACTED])
    request_body         {json},       -- request body when it parsed as JSON (after --redact)
    request_body_raw     VARCHAR,      -- request body text when it is not JSON, does not parse, or was truncated
    request_parse_error  VARCHAR,      -- why request_body_raw is set (parse error, truncation, encoding)
    request_truncated    BOOLEAN,      -- the body was longer than the capture cap
    request_bytes        BIGINT,       -- request body bytes on the wire
    status               INTEGER,      -- upstream HTTP status (NULL when no response arrived)
    response_headers     {json},       -- like request_headers
    response_body        {json},       -- response body when JSON (never set for SSE: see sse_events)
    response_body_raw    VARCHAR,      -- response body text when not JSON / unparsable / truncated
    response_parse_error VARCHAR,      -- why response_body_raw is set; for streams, an SSE decoding error
    response_truncated   BOOLEAN,      -- the body was longer than the capture cap
    response_bytes       BIGINT,       -- response body bytes on the wire (SSE included)
    is_stream            BOOLEAN,      -- the response was text/event-stream
    response_headers_us  BIGINT,       -- µs from start until the response head arrived
    first_event_us       BIGINT,       -- µs from start until the first SSE event was complete
    total_us             BIGINT,       -- µs from start until the exchange ended
    upstream_us          BIGINT,       -- µs spent waiting on the upstream
    overhead_us          BIGINT,       -- total_us - upstream_us, floored at 0
    outcome              VARCHAR,      -- complete | cancelled_by_client | client_error | upstream_error | proxy_error | timeout
    error                VARCHAR,      -- error text when not complete
    key_fingerprint      VARCHAR,      -- first 12 hex chars of SHA-256 of the bearer key (never the key)
    session              VARCHAR,      -- X-Agentcap-Session
    tags                 {json},       -- object of X-Agentcap-Tag-<name> values
    conversation_id      VARCHAR,      -- conversation the exchange is about (new id for start/restart)
    agent_id             VARCHAR,      -- agent involved, when known
    model                VARCHAR,      -- model involved, when known
    event_count          INTEGER       -- number of SSE events (NULL for non-streamed responses)
);

-- One row per SSE event of a streamed response.
CREATE TABLE sse_events (
    exchange_id  VARCHAR,  -- exchanges.id
    seq          INTEGER,  -- position of the event in the stream, from 0
    event_type   VARCHAR,  -- the event: field (or the data's "type" when the field is missing)
    data         {json},   -- the data as JSON; when it is not JSON, a JSON string holding the raw text
    parse_error  VARCHAR,  -- why data is a string (NULL for JSON and for the [DONE] sentinel)
    offset_us    BIGINT,   -- receive offset (µs from exchange start) of the frame that completed the event
    size         INTEGER   -- wire bytes the event took (SseEvent::raw_len)
);

-- Conversation entries: the inputs a turn sent and the outputs it produced.
CREATE TABLE entries (
    exchange_id     VARCHAR,  -- exchanges.id
    conversation_id VARCHAR,  -- conversation the turn belongs to
    entry_id        VARCHAR,  -- server-assigned id (NULL for inputs the server has not named)
    direction       VARCHAR,  -- 'input' | 'output'
    position        INTEGER,  -- index within the turn's inputs or outputs
    type            VARCHAR,  -- message.input | message.output | function.call | function.result | tool.execution | agent.handoff | …
    role            VARCHAR,  -- user | assistant (messages)
    agent_id        VARCHAR,  -- producing agent (outputs); next agent for handoffs
    model           VARCHAR,  -- producing model (outputs)
    text            VARCHAR,  -- message text (text chunks concatenated) or function result
    name            VARCHAR,  -- tool / function name
    tool_call_id    VARCHAR,  -- function call / result id
    arguments       VARCHAR,  -- tool / function arguments as a string
    created_at      VARCHAR,  -- entry created_at as sent by the server (RFC 3339)
    completed_at    VARCHAR,  -- entry completed_at as sent by the server
    source          VARCHAR,  -- 'request' | 'response' | 'stream' (rebuilt from the events)
    raw             {json}    -- the entry itself
);

-- One row per conversation seen; lineage of restarts.
CREATE TABLE conversations (
    id                     VARCHAR PRIMARY KEY,
    agent_id               VARCHAR,      -- agent, for agent conversations
    agent_version          VARCHAR,      -- requested agent version (integer or alias), when known
    model                  VARCHAR,      -- model, for model conversations (or the agent's)
    first_exchange_id      VARCHAR,      -- first turn seen
    last_exchange_id       VARCHAR,      -- latest turn seen
    first_seen             TIMESTAMPTZ,
    last_seen              TIMESTAMPTZ,
    turns                  INTEGER,      -- start / append / restart turns recorded
    parent_conversation_id VARCHAR,      -- for restarts: the conversation branched from
    from_entry_id          VARCHAR       -- for restarts: the entry branched from
);

-- One row per agent version seen in an agents API response.
CREATE TABLE agents (
    agent_id    VARCHAR,
    version     INTEGER,
    snapshot    {json},       -- the agent object as returned
    first_seen  TIMESTAMPTZ,  -- start of the first exchange that showed this version
    exchange_id VARCHAR,      -- that exchange
    PRIMARY KEY (agent_id, version)
);

-- Token usage per turn / completion.
CREATE TABLE usage (
    exchange_id       VARCHAR,
    conversation_id   VARCHAR,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    total_tokens      BIGINT,
    connector_tokens  BIGINT,  -- NULL when absent or null
    connectors        {json}   -- tool name -> call count, NULL when absent
);
"#;

/// Schema version 2: the upstream leg's HTTP version.
const V2: &str = r#"
-- HTTP version the upstream answered over: 'HTTP/1.1', 'HTTP/2' (h2 chosen by ALPN), …;
-- NULL when no upstream response arrived (the proxy answered 502 / 504 itself).
ALTER TABLE exchanges ADD COLUMN upstream_version VARCHAR;
"#;

/// Schema version 3: what the capture cap left out of streamed events and assembled entries.
const V3: &str = r#"
-- The event's data (and parse error) is not stored (NULL): the exchange's stored event data had
-- reached the capture cap. The row keeps seq, event_type, offset_us and size.
ALTER TABLE sse_events ADD COLUMN data_truncated BOOLEAN;
-- The entry's content (text, arguments) was cut: the exchange's assembled content had reached
-- the capture cap.
ALTER TABLE entries ADD COLUMN truncated BOOLEAN;
"#;

/// Schema version 4: a stream's error event on its exchange row, so reading which exchanges failed does not
/// scan `sse_events`. Recordings made before it get the column filled from their events.
const V4: &str = r#"
-- The data of the stream's first 'conversation.response.error' event (JSON text), or a JSON string saying
-- the capture cap left it out; NULL when the stream had no error event (and for non-streamed exchanges).
ALTER TABLE exchanges ADD COLUMN stream_error VARCHAR;
UPDATE exchanges SET stream_error = ev.stream_error
FROM (
  SELECT exchange_id,
         COALESCE(CAST(arg_min(data, seq) AS VARCHAR),
                  '"error event data not stored: capture cap reached"') AS stream_error
  FROM sse_events WHERE event_type = 'conversation.response.error'
  GROUP BY exchange_id
) ev
WHERE exchanges.id = ev.exchange_id;
"#;

/// Schema version 5: conversation updates wait in a table of their own until they are folded into
/// `conversations` (`db::fold_conversations`), so a batch's cost does not grow with the recording.
const V5: &str = r#"
-- Conversation updates committed with their batch and not yet folded into conversations (the DuckDB thread
-- folds them every few seconds, on flush and on shutdown; a recording opened after a crash folds them
-- first). One row per conversation per batch; the columns are those of conversations.
CREATE TABLE conversation_updates (
    id                     VARCHAR,
    agent_id               VARCHAR,
    agent_version          VARCHAR,
    model                  VARCHAR,
    first_exchange_id      VARCHAR,
    last_exchange_id       VARCHAR,
    first_seen             TIMESTAMPTZ,
    last_seen              TIMESTAMPTZ,
    turns                  INTEGER,
    parent_conversation_id VARCHAR,
    from_entry_id          VARCHAR
);
"#;

/// Every migration, in order; index + 1 is the version.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The latest schema version.
pub fn latest_version() -> i32 {
    i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX)
}

/// `true` when DuckDB's `json` extension is loaded in `conn`. It asks one of the extension's
/// functions: `duckdb_extensions()` lists the extension directory on disk, which the configuration
/// of [`crate::recorder::open_db`] forbids (it fails there, whatever is loaded).
pub fn json_available(conn: &Connection) -> bool {
    conn.query_row("SELECT json_valid('{}')", [], |r| r.get::<_, bool>(0))
        .unwrap_or(false)
}

/// The SQL of a migration with the JSON-text column type (`VARCHAR`) filled in.
pub fn migration_sql(sql: &str) -> String {
    sql.replace(JSON_TYPE, "VARCHAR")
}

/// The schema version of an open database (0: not a recording, no migration table).
pub fn version(conn: &Connection) -> Result<i32, RecorderError> {
    let has_table: bool = conn.query_row(
        "SELECT count(*) > 0 FROM information_schema.tables WHERE table_name = 'schema_migrations'",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT COALESCE(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?)
}

/// Brings the recording at `path` to the latest schema (the file must not be open elsewhere). Returns the
/// versions before and after.
pub fn migrate_file(path: &std::path::Path) -> Result<(i32, i32), RecorderError> {
    let conn = super::open_db(Some(path), super::DbAccess::ReadWrite)?;
    let before = version(&conn)?;
    Ok((before, migrate(&conn)?))
}

/// Applies the pending migrations, each in its own transaction. Returns the version reached.
pub fn migrate(conn: &Connection) -> Result<i32, RecorderError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER, applied_at TIMESTAMP)",
    )?;
    let current: i32 = conn.query_row(
        "SELECT COALESCE(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    if current > latest_version() {
        return Err(RecorderError::SchemaTooNew {
            found: current,
            supported: latest_version(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        conn.execute_batch("BEGIN TRANSACTION")?;
        let applied = conn
            .execute_batch(&migration_sql(sql))
            .and_then(|()| {
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?)",
                    duckdb::params![
                        version,
                        DbValue::Timestamp(
                            TimeUnit::Microsecond,
                            system_time_to_us(SystemTime::now())
                        )
                    ],
                )
            })
            .and_then(|_| conn.execute_batch("COMMIT"));
        if let Err(e) = applied {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(RecorderError::Migration { version, source: e });
        }
    }
    Ok(latest_version())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{DbAccess, open_db};

    fn memory() -> Connection {
        open_db(None, DbAccess::ReadWrite).unwrap()
    }

    #[test]
    fn migrations_apply_once() {
        let conn = memory();
        assert_eq!(migrate(&conn).unwrap(), latest_version());
        assert_eq!(migrate(&conn).unwrap(), latest_version());
        let applied: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(applied, i64::from(latest_version()));
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name IN \
                 ('exchanges', 'sse_events', 'entries', 'conversations', 'agents', 'usage')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 6);
    }

    /// The json extension is loaded under `open_db`'s locked configuration (the probe used to
    /// ask `duckdb_extensions()`, which fails there, and said "not loaded"), and its operators
    /// work on the `VARCHAR` columns holding JSON text.
    #[test]
    fn json_columns_are_varchar_and_the_json_operators_read_them() {
        let conn = memory();
        assert!(json_available(&conn));
        migrate(&conn).unwrap();
        let ty: String = conn
            .query_row(
                "SELECT data_type FROM information_schema.columns \
                 WHERE table_name = 'exchanges' AND column_name = 'request_body'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(ty, "VARCHAR");
        conn.execute_batch(
            r#"INSERT INTO exchanges (id, outcome, tags, request_body)
               VALUES ('x', 'complete', '{"i": "7"}', '{"model": "m", "n": [1, 2]}')"#,
        )
        .unwrap();
        let got: (String, String, i64) = conn
            .query_row(
                "SELECT tags->>'i', request_body->>'$.model', json_array_length(request_body->'n') \
                 FROM exchanges",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(got, ("7".to_owned(), "m".to_owned(), 2));
    }

    #[test]
    fn a_version_1_database_gains_upstream_version() {
        let conn = memory();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER, applied_at TIMESTAMP)",
        )
        .unwrap();
        conn.execute_batch(&migration_sql(V1)).unwrap();
        conn.execute_batch(
            "INSERT INTO schema_migrations VALUES (1, NULL); \
             INSERT INTO exchanges (id, outcome) VALUES ('old', 'complete')",
        )
        .unwrap();
        assert_eq!(migrate(&conn).unwrap(), latest_version());
        let (id, version): (String, Option<String>) = conn
            .query_row("SELECT id, upstream_version FROM exchanges", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((id.as_str(), version), ("old", None));
        let last: String = conn
            .query_row(
                "SELECT column_name FROM information_schema.columns \
                 WHERE table_name = 'exchanges' ORDER BY ordinal_position DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            last, "stream_error",
            "appenders fill columns in table order"
        );
        for (table, column) in [("sse_events", "data_truncated"), ("entries", "truncated")] {
            let last: String = conn
                .query_row(
                    "SELECT column_name FROM information_schema.columns \
                     WHERE table_name = ? ORDER BY ordinal_position DESC LIMIT 1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(last, column, "version 3 appends {column} to {table}");
        }
    }

    #[test]
    fn a_version_3_database_gains_stream_error_from_its_error_events() {
        let conn = memory();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER, applied_at TIMESTAMP)",
        )
        .unwrap();
        for (i, m) in MIGRATIONS[..3].iter().enumerate() {
            conn.execute_batch(&migration_sql(m)).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, NULL)",
                [i64::try_from(i + 1).unwrap()],
            )
            .unwrap();
        }
        conn.execute_batch(
            r#"INSERT INTO exchanges (id, outcome) VALUES ('failed', 'complete'), ('capped', 'complete'),
                                                            ('fine', 'complete');
               INSERT INTO sse_events (exchange_id, seq, event_type, data, data_truncated) VALUES
                 ('failed', 0, 'conversation.response.started', '{}', false),
                 ('failed', 2, 'conversation.response.error', '{"message": "second"}', false),
                 ('failed', 1, 'conversation.response.error', '{"message": "first"}', false),
                 ('capped', 0, 'conversation.response.error', NULL, true),
                 ('fine', 0, 'conversation.response.done', '{}', false)"#,
        )
        .unwrap();
        assert_eq!(migrate(&conn).unwrap(), latest_version());
        let mut st = conn
            .prepare("SELECT id, stream_error FROM exchanges ORDER BY id")
            .unwrap();
        let got: Vec<(String, Option<String>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            got,
            [
                (
                    "capped".to_owned(),
                    Some(r#""error event data not stored: capture cap reached""#.to_owned())
                ),
                (
                    "failed".to_owned(),
                    Some(r#"{"message": "first"}"#.to_owned())
                ),
                ("fine".to_owned(), None),
            ]
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let conn = memory();
        migrate(&conn).unwrap();
        conn.execute_batch("INSERT INTO schema_migrations VALUES (99, NULL)")
            .unwrap();
        assert!(matches!(
            migrate(&conn),
            Err(RecorderError::SchemaTooNew { found: 99, .. })
        ));
    }
}
