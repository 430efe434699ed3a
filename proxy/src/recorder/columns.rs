//! Derived rows as Arrow record batches, column by column, for DuckDB's data-chunk appends: one typed array
//! per column instead of one `ToSql` conversion and one appender call per cell.
//!
//! Each builder lists its table's columns in the table's order (`schema.rs`, the migrations' `ADD COLUMN`s
//! last); the appender matches them by position and DuckDB checks their count and types (a `VARCHAR` array
//! goes into a `JSON` column unchanged). Rows are cut into record batches of at most [`CHUNK_ROWS`] rows and
//! [`CHUNK_BYTES`] bytes of text, so the copy a batch makes stays bounded whatever the bodies hold.

use std::sync::Arc;

use duckdb::Connection;
use duckdb::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use duckdb::arrow::error::ArrowError;
use duckdb::arrow::record_batch::RecordBatch;

use super::RecorderError;
use super::derive::{Derived, EntryRow, EventRow, ExchangeRow, UsageRow};

/// Rows per record batch: DuckDB's vector size, so a batch is one data chunk.
pub const CHUNK_ROWS: usize = 2048;

/// Text bytes per record batch (at least one row each).
pub const CHUNK_BYTES: usize = 8 * 1024 * 1024;

fn text<'a, T>(rows: &[T], f: impl Fn(&T) -> Option<&'a str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn int64<T>(rows: &[T], f: impl Fn(&T) -> Option<i64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int64Array>())
}

fn int32<T>(rows: &[T], f: impl Fn(&T) -> Option<i32>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int32Array>())
}

fn boolean<T>(rows: &[T], f: impl Fn(&T) -> bool) -> ArrayRef {
    Arc::new(rows.iter().map(|r| Some(f(r))).collect::<BooleanArray>())
}

/// `TIMESTAMPTZ`: µs since the Unix epoch, UTC.
fn timestamp<T>(rows: &[T], f: impl Fn(&T) -> Option<i64>) -> ArrayRef {
    Arc::new(
        rows.iter()
            .map(f)
            .collect::<TimestampMicrosecondArray>()
            .with_timezone("UTC"),
    )
}

/// Appends `rows` to `table` through one appender, cut into record batches by `bytes` (a row's text bytes)
/// and built by `build`, then flushes it; returns the rows appended (no appender without rows).
fn append_chunked<T>(
    conn: &Connection,
    table: &str,
    rows: &[T],
    bytes: impl Fn(&T) -> usize,
    build: impl Fn(&[T]) -> Result<RecordBatch, ArrowError>,
) -> Result<u64, RecorderError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut app = conn.appender(table)?;
    let mut start = 0;
    while start < rows.len() {
        let mut end = start;
        let mut taken = 0usize;
        while end < rows.len() && end - start < CHUNK_ROWS {
            let b = bytes(&rows[end]);
            if end > start && taken + b > CHUNK_BYTES {
                break;
            }
            taken += b;
            end += 1;
        }
        let batch = build(&rows[start..end])?;
        app.append_record_batch(batch)?;
        start = end;
    }
    app.flush()?;
    Ok(rows.len() as u64)
}

fn len(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

/// Writes the `exchanges` rows of `rows`.
pub fn append_exchanges(conn: &Connection, rows: &[&Derived]) -> Result<u64, RecorderError> {
    let rows: Vec<&ExchangeRow> = rows.iter().map(|d| &d.exchange).collect();
    let bytes = |x: &&ExchangeRow| x.approx_bytes();
    append_chunked(conn, "exchanges", &rows, bytes, |x| {
        RecordBatch::try_from_iter([
            ("id", text(x, |r| Some(r.id.as_str()))),
            ("started_at", timestamp(x, |r| r.started_at_us)),
            ("method", text(x, |r| r.method.as_deref())),
            ("path", text(x, |r| r.path.as_deref())),
            ("query", text(x, |r| r.query.as_deref())),
            ("operation", text(x, |r| Some(r.operation.as_str()))),
            ("client_addr", text(x, |r| r.client_addr.as_deref())),
            ("request_headers", text(x, |r| r.request_headers.as_deref())),
            ("request_body", text(x, |r| r.request_body.as_deref())),
            (
                "request_body_raw",
                text(x, |r| r.request_body_raw.as_deref()),
            ),
            (
                "request_parse_error",
                text(x, |r| r.request_parse_error.as_deref()),
            ),
            ("request_truncated", boolean(x, |r| r.request_truncated)),
            ("request_bytes", int64(x, |r| Some(r.request_bytes))),
            ("status", int32(x, |r| r.status)),
            (
                "response_headers",
                text(x, |r| r.response_headers.as_deref()),
            ),
            ("response_body", text(x, |r| r.response_body.as_deref())),
            (
                "response_body_raw",
                text(x, |r| r.response_body_raw.as_deref()),
            ),
            (
                "response_parse_error",
                text(x, |r| r.response_parse_error.as_deref()),
            ),
            ("response_truncated", boolean(x, |r| r.response_truncated)),
            ("response_bytes", int64(x, |r| Some(r.response_bytes))),
            ("is_stream", boolean(x, |r| r.is_stream)),
            ("response_headers_us", int64(x, |r| r.response_headers_us)),
            ("first_event_us", int64(x, |r| r.first_event_us)),
            ("total_us", int64(x, |r| r.total_us)),
            ("upstream_us", int64(x, |r| r.upstream_us)),
            ("overhead_us", int64(x, |r| r.overhead_us)),
            ("outcome", text(x, |r| Some(r.outcome.as_str()))),
            ("error", text(x, |r| r.error.as_deref())),
            ("key_fingerprint", text(x, |r| r.key_fingerprint.as_deref())),
            ("session", text(x, |r| r.session.as_deref())),
            ("tags", text(x, |r| r.tags.as_deref())),
            ("conversation_id", text(x, |r| r.conversation_id.as_deref())),
            ("agent_id", text(x, |r| r.agent_id.as_deref())),
            ("model", text(x, |r| r.model.as_deref())),
            ("event_count", int32(x, |r| r.event_count)),
            (
                "upstream_version",
                text(x, |r| r.upstream_version.as_deref()),
            ),
            ("stream_error", text(x, |r| r.stream_error.as_deref())),
        ])
    })
}

/// Writes `sse_events` rows: each with its exchange's id.
pub fn append_events(conn: &Connection, rows: &[(&str, &EventRow)]) -> Result<u64, RecorderError> {
    let bytes = |(_, e): &(&str, &EventRow)| e.approx_bytes();
    append_chunked(conn, "sse_events", rows, bytes, |e| {
        RecordBatch::try_from_iter([
            ("exchange_id", text(e, |(id, _)| Some(*id))),
            ("seq", int32(e, |(_, r)| Some(r.seq))),
            ("event_type", text(e, |(_, r)| r.event_type.as_deref())),
            ("data", text(e, |(_, r)| r.data.as_deref())),
            ("parse_error", text(e, |(_, r)| r.parse_error.as_deref())),
            ("offset_us", int64(e, |(_, r)| Some(r.offset_us))),
            ("size", int32(e, |(_, r)| Some(r.size))),
            ("data_truncated", boolean(e, |(_, r)| r.data_truncated)),
        ])
    })
}

/// An `entries` row with its exchange's id and conversation.
pub type EntryOf<'a> = (&'a str, Option<&'a str>, &'a EntryRow);

/// Writes `entries` rows.
pub fn append_entries(conn: &Connection, rows: &[EntryOf<'_>]) -> Result<u64, RecorderError> {
    let bytes = |(_, _, e): &EntryOf<'_>| 256 + len(&e.text) + len(&e.arguments) + e.raw.len();
    append_chunked(conn, "entries", rows, bytes, |e| {
        RecordBatch::try_from_iter([
            ("exchange_id", text(e, |(id, _, _)| Some(*id))),
            ("conversation_id", text(e, |(_, c, _)| *c)),
            ("entry_id", text(e, |(_, _, r)| r.entry_id.as_deref())),
            ("direction", text(e, |(_, _, r)| Some(r.direction))),
            ("position", int32(e, |(_, _, r)| Some(r.position))),
            ("type", text(e, |(_, _, r)| r.entry_type.as_deref())),
            ("role", text(e, |(_, _, r)| r.role.as_deref())),
            ("agent_id", text(e, |(_, _, r)| r.agent_id.as_deref())),
            ("model", text(e, |(_, _, r)| r.model.as_deref())),
            ("text", text(e, |(_, _, r)| r.text.as_deref())),
            ("name", text(e, |(_, _, r)| r.name.as_deref())),
            (
                "tool_call_id",
                text(e, |(_, _, r)| r.tool_call_id.as_deref()),
            ),
            ("arguments", text(e, |(_, _, r)| r.arguments.as_deref())),
            ("created_at", text(e, |(_, _, r)| r.created_at.as_deref())),
            (
                "completed_at",
                text(e, |(_, _, r)| r.completed_at.as_deref()),
            ),
            ("source", text(e, |(_, _, r)| Some(r.source))),
            ("raw", text(e, |(_, _, r)| Some(r.raw.as_str()))),
            ("truncated", boolean(e, |(_, _, r)| r.truncated)),
        ])
    })
}

/// A `usage` row with its exchange's id and conversation.
pub type UsageOf<'a> = (&'a str, Option<&'a str>, &'a UsageRow);

/// Writes `usage` rows.
pub fn append_usage(conn: &Connection, rows: &[UsageOf<'_>]) -> Result<u64, RecorderError> {
    let bytes = |(_, _, u): &UsageOf<'_>| 64 + len(&u.connectors);
    append_chunked(conn, "usage", rows, bytes, |u| {
        RecordBatch::try_from_iter([
            ("exchange_id", text(u, |(id, _, _)| Some(*id))),
            ("conversation_id", text(u, |(_, c, _)| *c)),
            ("prompt_tokens", int64(u, |(_, _, r)| r.prompt_tokens)),
            (
                "completion_tokens",
                int64(u, |(_, _, r)| r.completion_tokens),
            ),
            ("total_tokens", int64(u, |(_, _, r)| r.total_tokens)),
            ("connector_tokens", int64(u, |(_, _, r)| r.connector_tokens)),
            ("connectors", text(u, |(_, _, r)| r.connectors.as_deref())),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::super::derive::{ConvUpdate, Derived, EntryRow, EventRow, ExchangeRow, UsageRow};
    use super::super::{DbAccess, db, open_db, schema};
    use super::{CHUNK_BYTES, CHUNK_ROWS};

    /// Every column set, each to a value no other column has, so a column out of place shows.
    fn full(i: usize) -> Derived {
        let s = |name: &str| Some(format!("{name}-{i}"));
        let json = |name: &str| Some(format!("{{\"{name}\":{i}}}"));
        Derived {
            exchange: ExchangeRow {
                id: format!("0190a000-0000-7000-8000-{i:012}"),
                started_at_us: Some(1_700_000_000_000_000 + i as i64),
                method: s("method"),
                path: s("path"),
                query: s("query"),
                operation: format!("operation-{i}"),
                client_addr: s("client_addr"),
                request_headers: json("request_headers"),
                request_body: json("request_body"),
                request_body_raw: s("request_body_raw"),
                request_parse_error: s("request_parse_error"),
                request_truncated: true,
                request_bytes: 11 + i as i64,
                status: Some(200 + i as i32),
                response_headers: json("response_headers"),
                response_body: json("response_body"),
                response_body_raw: s("response_body_raw"),
                response_parse_error: s("response_parse_error"),
                response_truncated: false,
                response_bytes: 13 + i as i64,
                is_stream: true,
                response_headers_us: Some(17),
                first_event_us: Some(19),
                total_us: Some(23),
                upstream_us: Some(29),
                overhead_us: Some(31),
                outcome: format!("outcome-{i}"),
                error: s("error"),
                key_fingerprint: s("key_fingerprint"),
                session: s("session"),
                tags: json("tags"),
                conversation_id: s("conversation_id"),
                agent_id: s("agent_id"),
                model: s("model"),
                event_count: Some(37),
                upstream_version: s("upstream_version"),
                stream_error: json("stream_error"),
            },
            events: vec![EventRow {
                seq: 41,
                event_type: s("event_type"),
                data: json("data"),
                parse_error: s("parse_error"),
                offset_us: 43,
                size: 47,
                data_truncated: true,
            }],
            entries: vec![EntryRow {
                entry_id: s("entry_id"),
                direction: "output",
                position: 53,
                entry_type: s("type"),
                role: s("role"),
                agent_id: s("entry_agent"),
                model: s("entry_model"),
                text: s("text"),
                name: s("name"),
                tool_call_id: s("tool_call_id"),
                arguments: s("arguments"),
                created_at: s("created_at"),
                completed_at: s("completed_at"),
                source: "stream",
                raw: "{\"raw\":1}".to_owned(),
                truncated: true,
            }],
            usage: Some(UsageRow {
                prompt_tokens: Some(59),
                completion_tokens: Some(61),
                total_tokens: Some(67),
                connector_tokens: Some(71),
                connectors: json("connectors"),
            }),
            agents: Vec::new(),
            conversations: vec![ConvUpdate {
                id: format!("conversation-{i}"),
                ..Default::default()
            }],
        }
    }

    fn rows(conn: &duckdb::Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn every_column_lands_in_its_place_and_nulls_stay_null() {
        let conn = open_db(None, DbAccess::ReadWrite).unwrap();
        schema::migrate(&conn).unwrap();
        let (a, mut b) = (full(1), Derived::default());
        b.exchange.id = "0190a000-0000-7000-8000-000000000002".to_owned();
        b.exchange.operation = "other".to_owned();
        b.exchange.outcome = "complete".to_owned();
        let counts = db::write_batch(&conn, &[&a, &b], false).unwrap();
        assert_eq!(
            (
                counts.exchanges,
                counts.sse_events,
                counts.entries,
                counts.usage
            ),
            (2, 1, 1, 1)
        );

        // Each table's row as JSON: names and values, the column order of the table.
        let x = rows(
            &conn,
            "SELECT to_json(x)::VARCHAR FROM exchanges x ORDER BY id",
        );
        assert_eq!(
            x[0],
            concat!(
                r#"{"id":"0190a000-0000-7000-8000-000000000001","started_at":"2023-11-14 22:13:20.000001+00","#,
                r#""method":"method-1","path":"path-1","query":"query-1","operation":"operation-1","#,
                r#""client_addr":"client_addr-1","request_headers":"{\"request_headers\":1}","#,
                r#""request_body":"{\"request_body\":1}","request_body_raw":"request_body_raw-1","#,
                r#""request_parse_error":"request_parse_error-1","request_truncated":true,"request_bytes":12,"#,
                r#""status":201,"response_headers":"{\"response_headers\":1}","response_body":"{\"response_body\":1}","#,
                r#""response_body_raw":"response_body_raw-1","response_parse_error":"response_parse_error-1","#,
                r#""response_truncated":false,"response_bytes":14,"is_stream":true,"response_headers_us":17,"#,
                r#""first_event_us":19,"total_us":23,"upstream_us":29,"overhead_us":31,"outcome":"outcome-1","#,
                r#""error":"error-1","key_fingerprint":"key_fingerprint-1","session":"session-1","#,
                r#""tags":"{\"tags\":1}","conversation_id":"conversation_id-1","agent_id":"agent_id-1","#,
                r#""model":"model-1","event_count":37,"upstream_version":"upstream_version-1","#,
                r#""stream_error":"{\"stream_error\":1}"}"#
            )
        );
        assert_eq!(
            x[1],
            concat!(
                r#"{"id":"0190a000-0000-7000-8000-000000000002","started_at":null,"method":null,"path":null,"#,
                r#""query":null,"operation":"other","client_addr":null,"request_headers":null,"request_body":null,"#,
                r#""request_body_raw":null,"request_parse_error":null,"request_truncated":false,"request_bytes":0,"#,
                r#""status":null,"response_headers":null,"response_body":null,"response_body_raw":null,"#,
                r#""response_parse_error":null,"response_truncated":false,"response_bytes":0,"is_stream":false,"#,
                r#""response_headers_us":null,"first_event_us":null,"total_us":null,"upstream_us":null,"#,
                r#""overhead_us":null,"outcome":"complete","error":null,"key_fingerprint":null,"session":null,"#,
                r#""tags":null,"conversation_id":null,"agent_id":null,"model":null,"event_count":null,"#,
                r#""upstream_version":null,"stream_error":null}"#
            )
        );
        assert_eq!(
            rows(&conn, "SELECT to_json(e)::VARCHAR FROM sse_events e"),
            [concat!(
                r#"{"exchange_id":"0190a000-0000-7000-8000-000000000001","seq":41,"event_type":"event_type-1","#,
                r#""data":"{\"data\":1}","parse_error":"parse_error-1","offset_us":43,"size":47,"data_truncated":true}"#
            )]
        );
        assert_eq!(
            rows(&conn, "SELECT to_json(e)::VARCHAR FROM entries e"),
            [concat!(
                r#"{"exchange_id":"0190a000-0000-7000-8000-000000000001","conversation_id":"conversation_id-1","#,
                r#""entry_id":"entry_id-1","direction":"output","position":53,"type":"type-1","role":"role-1","#,
                r#""agent_id":"entry_agent-1","model":"entry_model-1","text":"text-1","name":"name-1","#,
                r#""tool_call_id":"tool_call_id-1","arguments":"arguments-1","created_at":"created_at-1","#,
                r#""completed_at":"completed_at-1","source":"stream","raw":"{\"raw\":1}","truncated":true}"#
            )]
        );
        assert_eq!(
            rows(&conn, "SELECT to_json(u)::VARCHAR FROM usage u"),
            [concat!(
                r#"{"exchange_id":"0190a000-0000-7000-8000-000000000001","conversation_id":"conversation_id-1","#,
                r#""prompt_tokens":59,"completion_tokens":61,"total_tokens":67,"connector_tokens":71,"#,
                r#""connectors":"{\"connectors\":1}"}"#
            )]
        );
    }

    #[test]
    fn batches_are_cut_by_rows_and_by_bytes() {
        let conn = open_db(None, DbAccess::ReadWrite).unwrap();
        schema::migrate(&conn).unwrap();
        // More rows than one chunk holds, and bodies that fill a chunk's bytes in a few rows.
        let big = "x".repeat(CHUNK_BYTES / 3);
        let batch: Vec<Derived> = (0..CHUNK_ROWS + 10)
            .map(|i| {
                let mut d = full(i);
                if i % 100 == 0 {
                    d.exchange.request_body_raw = Some(big.clone());
                }
                d
            })
            .collect();
        let refs: Vec<&Derived> = batch.iter().collect();
        let counts = db::write_batch(&conn, &refs, false).unwrap();
        assert_eq!(counts.exchanges, (CHUNK_ROWS + 10) as u64);
        let got = rows(
            &conn,
            "SELECT count(*)::VARCHAR || '/' || count(DISTINCT id)::VARCHAR || '/' || \
             sum(length(request_body_raw))::VARCHAR FROM exchanges",
        );
        let bigs = (CHUNK_ROWS + 10).div_ceil(100);
        let small: usize = (0..CHUNK_ROWS + 10)
            .filter(|i| i % 100 != 0)
            .map(|i| format!("request_body_raw-{i}").len())
            .sum();
        assert_eq!(
            got,
            [format!(
                "{}/{}/{}",
                CHUNK_ROWS + 10,
                CHUNK_ROWS + 10,
                bigs * big.len() + small
            )]
        );
    }
}
