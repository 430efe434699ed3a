//! `agentcap export`: the recording's tables as Parquet or JSON Lines files (DuckDB's own `COPY`,
//! one file per table, the schema kept), or its exchanges as one HAR 1.2 file
//! ([`agentcap_wire::har`]).
//!
//! Selection: `since` / `until` (bounds on `exchanges.started_at`, bound as `?` parameters) and a
//! `where` predicate over `exchanges` choose exchanges; every other table follows them (rows of
//! the chosen exchanges; conversations those exchanges are about; agent versions they first
//! showed). The predicate is the user's SQL: it must be one expression
//! ([`check_predicate`]), and the statement it goes into, `SELECT id FROM exchanges WHERE …`,
//! passes every layer of the read-only query path ([`run_read_only`]). The chosen ids then reach
//! the `COPY` statements as one parameter: no user text is ever part of a `COPY`.
//!
//! Files: `COPY` writes only into the instance's scratch directory ([`open_db_with`]'s
//! `allowed` directories, its `allowed_directories` entries), inside a read-only transaction; the caller
//! moves the file out. On a closed file ([`export_file`]) the scratch directory sits inside the
//! destination; on a running proxy the admin listener's `POST /export` produces one file with
//! [`produce`] in the recorder's scratch directory and streams it back.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentcap_wire::har;
use chrono::{DateTime, SecondsFormat, Utc};
use duckdb::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::recorder::query::{check_predicate, explain_error, run_guarded, run_read_only};
use crate::recorder::{
    DbAccess, QueryCancel, QueryLimits, RecorderError, StopReason, open_db_with, scratch_dir,
};

/// The tables an export can hold, in the order they are written.
pub const TABLES: &[&str] = &[
    "exchanges",
    "sse_events",
    "entries",
    "conversations",
    "agents",
    "usage",
];

/// What an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One Parquet file per table (zstd).
    Parquet,
    /// One JSON Lines file per table (a JSON object per row).
    Jsonl,
    /// One HAR 1.2 file of the exchanges.
    Har,
}

impl ExportFormat {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Parquet => "parquet",
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Har => "har",
        }
    }

    /// The media type of a file of this format.
    pub fn media_type(self) -> &'static str {
        match self {
            ExportFormat::Parquet => "application/vnd.apache.parquet",
            ExportFormat::Jsonl => "application/x-ndjson",
            ExportFormat::Har => "application/json",
        }
    }
}

/// Which exchanges an export holds (all when every field is `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Exchanges that started at or after this instant (any text DuckDB casts to `TIMESTAMPTZ`,
    /// e.g. RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// Exchanges that started before this instant.
    #[serde(default)]
    pub until: Option<String>,
    /// A SQL condition over `exchanges`' columns, read-only (see the module's documentation).
    #[serde(default, rename = "where")]
    pub predicate: Option<String>,
}

impl Filter {
    fn selects_all(&self) -> bool {
        self.since.is_none() && self.until.is_none() && self.predicate.is_none()
    }
}

/// One file of an export: a table (Parquet, JSON Lines) or the HAR. The body of `POST /export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The format.
    pub format: ExportFormat,
    /// The table (one of [`TABLES`]); ignored for HAR.
    #[serde(default)]
    pub table: Option<String>,
    /// The selection.
    #[serde(default)]
    pub filter: Filter,
}

/// Bounds of one produced file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    /// Most rows (HAR entries) in one file; the file then says it is capped.
    pub max_rows: u64,
    /// Most bytes of one file; a larger one is refused (its file removed). The HAR writer counts
    /// its bytes and stops before the cap. A table's `COPY` is measured once written: DuckDB's
    /// order-preserving `COPY` writes most of its file in its final flush, where it checks no
    /// interrupt, so it cannot be stopped part way (the row cap and the timeout bound it).
    pub max_bytes: u64,
    /// Each statement's timeout (the selection, then the `COPY` or the HAR read).
    pub timeout: Duration,
}

impl ExportLimits {
    /// No bounds but a day per statement: the operator's own file.
    pub fn unbounded() -> Self {
        ExportLimits {
            max_rows: i64::MAX as u64,
            max_bytes: u64::MAX,
            timeout: Duration::from_secs(24 * 3600),
        }
    }
}

impl Default for ExportLimits {
    /// The admin listener's bounds: 10 million rows, 4 GiB, 10 minutes.
    fn default() -> Self {
        ExportLimits {
            max_rows: 10_000_000,
            max_bytes: 4 << 30,
            timeout: Duration::from_secs(600),
        }
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The request is not usable (the caller's input): unknown table, refused predicate, ...
    #[error("{0}")]
    Invalid(String),
    /// The recording refused or failed a statement.
    #[error(transparent)]
    Db(#[from] RecorderError),
    /// A file could not be written or moved (internal, or the destination's).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file would be, or is, larger than [`ExportLimits::max_bytes`]: removed.
    #[error(
        "the {what} export went past the {cap}-byte cap ({bytes} bytes written) and was removed; narrow it with --since / --until / --where"
    )]
    TooLarge {
        /// The table or `har`.
        what: String,
        /// What its file held: when the HAR writer stopped, or once a table's `COPY` was written.
        bytes: u64,
        /// The cap.
        cap: u64,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One file produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Produced {
    /// The table, or `har`.
    pub what: String,
    /// Where the file is.
    pub path: PathBuf,
    /// Rows (HAR entries) in it.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
    /// `true` when [`ExportLimits::max_rows`] was reached: there may be more.
    pub capped: bool,
}

/// Each table's rows for an export: `?` (the ids' JSON array text, or NULL for all, twice), then the row cap.
const TABLE_SELECTS: &[(&str, &str)] = &[
    (
        "exchanges",
        "SELECT * FROM exchanges WHERE (?::VARCHAR IS NULL OR id IN (SELECT unnest(from_json(?::VARCHAR, '[\"VARCHAR\"]')))) ORDER BY started_at, id LIMIT ?",
    ),
    (
        "sse_events",
        "SELECT * FROM sse_events WHERE (?::VARCHAR IS NULL OR exchange_id IN (SELECT unnest(from_json(?::VARCHAR, '[\"VARCHAR\"]')))) ORDER BY exchange_id, seq LIMIT ?",
    ),
    (
        "entries",
        "SELECT * FROM entries WHERE (?::VARCHAR IS NULL OR exchange_id IN (SELECT unnest(from_json(?::VARCHAR, '[\"VARCHAR\"]')))) ORDER BY exchange_id, direction, position LIMIT ?",
    ),
    (
        "conversations",
        "SELECT * FROM conversations WHERE (?::VARCHAR IS NULL OR id IN (SELECT conversation_id FROM exchanges WHERE id IN (SELECT unnest(from_json(?::VARCHAR, '[\"VARCHAR\"]'))))) ORDER BY first_seen, id LIMIT ?",
    ),
    (
        "agents",
        "SELECT * FROM agents WHERE (?::VARCHAR IS NULL OR exchange_id IN (SELECT unnest(from_json(?::VARCHAR, '[\"VARCHAR\"]')))) ORDER BY agent_id, version LIMIT ?",
    ),
    (
        "usage",
        "SELECT * FROM usage WHERE (?::VARCHAR IS NULL OR exchange_id IN (SELECT unnest(from_json(?::VARCHAR, '[\"VARCHAR\"]')))) ORDER BY exchange_id LIMIT ?",
    ),
];

/// `COPY` options per format.
const PARQUET_OPTIONS: &str = "FORMAT parquet, COMPRESSION zstd";
const JSONL_OPTIONS: &str = "FORMAT json";

/// The exchanges a filter chooses: the bounds, as parameters; the predicate (checked) follows.
const IDS_SELECT: &str = "SELECT id FROM exchanges WHERE (?::VARCHAR IS NULL OR started_at >= ?::TIMESTAMPTZ) AND (?::VARCHAR IS NULL OR started_at < ?::TIMESTAMPTZ)";
/// [`IDS_SELECT`]'s bounds alone.
const IDS_BOUNDS: &str = "(?::VARCHAR IS NULL OR started_at >= ?::TIMESTAMPTZ) AND (?::VARCHAR IS NULL OR started_at < ?::TIMESTAMPTZ)";

/// The exchanges for a HAR, each with its SSE events as one JSON array text; `?` ids twice, then
/// the row cap.
const HAR_SELECT: &str = "SELECT e.id, epoch_us(e.started_at), e.method, e.path, e.query, \
    e.request_headers::VARCHAR, e.request_body::VARCHAR, e.request_body_raw, e.request_truncated, e.request_bytes, \
    e.status, e.response_headers::VARCHAR, e.response_body::VARCHAR, e.response_body_raw, e.response_truncated, e.response_bytes, \
    e.is_stream, e.response_headers_us, e.total_us, e.upstream_version, e.outcome, e.error, e.operation, \
    (SELECT to_json(list({'seq': s.seq, 'event': s.event_type, 'data': s.data::VARCHAR, 'offset_us': s.offset_us, 'size': s.size, 'data_truncated': s.data_truncated} ORDER BY s.seq))::VARCHAR \
       FROM sse_events s WHERE s.exchange_id = e.id) \
    FROM exchanges e \
    WHERE (?::VARCHAR IS NULL OR e.id IN (SELECT unnest(from_json(?::VARCHAR, '[\"VARCHAR\"]')))) \
    ORDER BY e.started_at, e.id LIMIT ?";

/// A path as the inside of a SQL string literal (`'` doubled). Only ever a path this module built
/// inside a scratch directory it created: `COPY … TO` takes no parameter for its target.
fn sql_path(p: &Path) -> Result<String, ExportError> {
    let s = p
        .to_str()
        .ok_or_else(|| ExportError::Invalid(format!("{} is not a UTF-8 path", p.display())))?;
    Ok(s.replace('\'', "''"))
}

/// The chosen exchanges' ids as one JSON array text (`None`: all of them), and whether the row
/// cap cut the list.
pub fn selected_ids(
    conn: &Connection,
    filter: &Filter,
    limits: &ExportLimits,
    cancel: &QueryCancel,
) -> Result<(Option<String>, bool), ExportError> {
    if filter.selects_all() {
        return Ok((None, false));
    }
    let sql = match &filter.predicate {
        Some(p) => {
            check_predicate(p)?;
            // Own lines around the predicate: a trailing `--` comment cannot reach the `)`.
            format!("SELECT id FROM exchanges WHERE {IDS_BOUNDS} AND (\n{p}\n)")
        }
        None => IDS_SELECT.to_owned(),
    };
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    let params = [
        text(&filter.since),
        text(&filter.since),
        text(&filter.until),
        text(&filter.until),
    ];
    let q = QueryLimits {
        max_rows: usize::try_from(limits.max_rows).unwrap_or(usize::MAX),
        max_bytes: usize::MAX,
        timeout: limits.timeout,
    };
    let r = run_read_only(conn, &sql, &params, &q, cancel)?;
    let ids: Vec<&Value> = r.rows.iter().filter_map(|row| row.first()).collect();
    Ok((
        Some(serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned())),
        r.truncated,
    ))
}

/// Produces one file of `req` in `dir` (the instance's scratch directory, [`open_db_with`]'s
/// `allowed` directories) with `conn`, within `limits`, interruptible through `cancel`.
pub fn produce(
    conn: &Connection,
    dir: &Path,
    req: &ExportRequest,
    limits: &ExportLimits,
    cancel: &QueryCancel,
) -> Result<Produced, ExportError> {
    let table = match req.format {
        ExportFormat::Har => None,
        _ => {
            let t = req.table.as_deref().unwrap_or("");
            Some(
                TABLE_SELECTS
                    .iter()
                    .find(|(name, _)| *name == t)
                    .ok_or_else(|| {
                        ExportError::Invalid(format!(
                            "unknown table {t:?}; tables: {}",
                            TABLES.join(", ")
                        ))
                    })?,
            )
        }
    };
    let (ids, ids_capped) = selected_ids(conn, &req.filter, limits, cancel)?;
    let what = table.map_or("har", |(name, _)| name).to_owned();
    let path = dir.join(format!(
        "{what}-{}.{}",
        uuid::Uuid::now_v7().simple(),
        req.format.extension()
    ));
    let cap = i64::try_from(limits.max_rows).unwrap_or(i64::MAX);
    let written = match table {
        Some((_, select)) => {
            let options = if req.format == ExportFormat::Parquet {
                PARQUET_OPTIONS
            } else {
                JSONL_OPTIONS
            };
            let target = sql_path(&path)?;
            let copy = format!("COPY ({select}) TO '{target}' ({options})");
            run_guarded(conn, limits.timeout, cancel, || {
                conn.execute(&copy, duckdb::params![ids, ids, cap])
                    .map_err(explain_error)
            })
            .map(|n| n as u64)
        }
        None => run_guarded(conn, limits.timeout, cancel, || {
            write_har(conn, ids.as_deref(), cap, limits.max_bytes, &path)
        }),
    };
    let rows = match written {
        Ok(n) => n,
        Err(e) => {
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            // A statement that failed or was interrupted leaves no partial file.
            let _ = std::fs::remove_file(&path);
            return Err(match e {
                RecorderError::QueryStopped {
                    reason: StopReason::OverCap(cap),
                } => ExportError::TooLarge { what, bytes, cap },
                e => e.into(),
            });
        }
    };
    let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
    if bytes > limits.max_bytes {
        let _ = std::fs::remove_file(&path);
        return Err(ExportError::TooLarge {
            what,
            bytes,
            cap: limits.max_bytes,
        });
    }
    Ok(Produced {
        what,
        path,
        rows,
        bytes,
        capped: ids_capped || rows >= limits.max_rows,
    })
}

/// One SSE event as [`HAR_SELECT`] lists it.
#[derive(Debug, Deserialize)]
struct EventRow {
    seq: Option<i64>,
    event: Option<String>,
    data: Option<String>,
    offset_us: Option<i64>,
    size: Option<i64>,
    data_truncated: Option<bool>,
}

/// The HAR file under its byte cap: a write that would take it past `cap` is refused (nothing of
/// it written) and remembered.
struct CappedFile {
    file: std::fs::File,
    written: u64,
    cap: u64,
    refused: bool,
}

impl Write for CappedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written.saturating_add(buf.len() as u64) > self.cap {
            self.refused = true;
            return Err(std::io::Error::other("over the export's byte cap"));
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Writes the HAR of the chosen exchanges (at most `cap` entries) to `path`, entry by entry (never
/// the whole log in memory); returns the number of entries. Stopped with [`StopReason::OverCap`]
/// before the file would pass `max_bytes`.
fn write_har(
    conn: &Connection,
    ids: Option<&str>,
    cap: i64,
    max_bytes: u64,
    path: &Path,
) -> Result<u64, RecorderError> {
    let file = std::fs::File::create(path).map_err(|source| RecorderError::Scratch {
        path: path.to_owned(),
        source,
    })?;
    let mut out = BufWriter::with_capacity(
        256 * 1024,
        CappedFile {
            file,
            written: 0,
            cap: max_bytes,
            refused: false,
        },
    );
    let written = write_har_entries(conn, ids, cap, path, &mut out);
    if out.get_ref().refused {
        return Err(RecorderError::QueryStopped {
            reason: StopReason::OverCap(max_bytes),
        });
    }
    written
}

fn write_har_entries(
    conn: &Connection,
    ids: Option<&str>,
    cap: i64,
    path: &Path,
    out: &mut impl Write,
) -> Result<u64, RecorderError> {
    let fail = |source: std::io::Error| RecorderError::Scratch {
        path: path.to_owned(),
        source,
    };
    let creator = har::Creator {
        name: "agentcap".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    write!(
        out,
        "{{\"log\":{{\"version\":\"{}\",\"creator\":{},\"pages\":[],\"entries\":[",
        har::HAR_VERSION,
        serde_json::to_string(&creator).unwrap_or_default()
    )
    .map_err(fail)?;
    let mut stmt = conn.prepare(HAR_SELECT).map_err(explain_error)?;
    // Streams: rows leave DuckDB chunk by chunk (as in the query path).
    drop(
        stmt.stream_arrow(duckdb::params![ids, ids, cap])
            .map_err(explain_error)?,
    );
    let mut rows = stmt.raw_query();
    let mut n = 0u64;
    while let Some(row) = rows.next().map_err(explain_error)? {
        let entry = har_entry(row).map_err(explain_error)?;
        if n > 0 {
            out.write_all(b",").map_err(fail)?;
        }
        serde_json::to_writer(&mut *out, &entry).map_err(|e| fail(e.into()))?;
        n += 1;
    }
    out.write_all(b"]}}\n").map_err(fail)?;
    out.flush().map_err(fail)?;
    Ok(n)
}

fn json_text(s: Option<String>) -> Option<Value> {
    s.and_then(|t| serde_json::from_str(&t).ok())
}

/// A recorded body as HAR text: the stored JSON (serialized) or the stored raw text.
fn stored_body(json: Option<String>, raw: Option<String>) -> Option<(String, Option<String>)> {
    json.or(raw).map(|t| har::body_text(t.as_bytes()))
}

fn capped_comment(truncated: Option<bool>, wire_bytes: Option<i64>) -> Option<String> {
    truncated.unwrap_or(false).then(|| {
        format!(
            "truncated: the recording kept only the first bytes (the capture cap) of {} on the wire",
            wire_bytes.map_or_else(|| "?".to_owned(), |b| b.to_string())
        )
    })
}

/// One HAR entry from a [`HAR_SELECT`] row.
fn har_entry(row: &duckdb::Row<'_>) -> Result<har::Entry, duckdb::Error> {
    let id: String = row.get(0)?;
    let started_us: Option<i64> = row.get(1)?;
    let method: Option<String> = row.get(2)?;
    let path: Option<String> = row.get(3)?;
    let query: Option<String> = row.get(4)?;
    let req_headers = har::headers_from_json(json_text(row.get(5)?).as_ref());
    let req_body = stored_body(row.get(6)?, row.get(7)?);
    let req_truncated: Option<bool> = row.get(8)?;
    let req_bytes: Option<i64> = row.get(9)?;
    let status: Option<i32> = row.get(10)?;
    let resp_headers = har::headers_from_json(json_text(row.get(11)?).as_ref());
    let resp_json: Option<String> = row.get(12)?;
    let resp_raw: Option<String> = row.get(13)?;
    let resp_truncated: Option<bool> = row.get(14)?;
    let resp_bytes: Option<i64> = row.get(15)?;
    let is_stream: Option<bool> = row.get(16)?;
    let head_us: Option<i64> = row.get(17)?;
    let total_us: Option<i64> = row.get(18)?;
    let upstream_version: Option<String> = row.get(19)?;
    let outcome: Option<String> = row.get(20)?;
    let error: Option<String> = row.get(21)?;
    let operation: Option<String> = row.get(22)?;
    let events: Vec<EventRow> = row
        .get::<_, Option<String>>(23)?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();

    let started = started_us
        .and_then(DateTime::<Utc>::from_timestamp_micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    let host = har::header(&req_headers, "host").unwrap_or("localhost");
    let path = path.unwrap_or_else(|| "/".to_owned());
    let url = match query.as_deref().filter(|q| !q.is_empty()) {
        Some(q) => format!("http://{host}{path}?{q}"),
        None => format!("http://{host}{path}"),
    };
    let post_data = req_body.map(|(text, encoding)| har::PostData {
        mime_type: har::header(&req_headers, "content-type")
            .unwrap_or("")
            .to_owned(),
        params: Vec::new(),
        text,
        encoding,
        comment: capped_comment(req_truncated, req_bytes),
    });
    let stream = is_stream.unwrap_or(false);
    let (text, encoding) = if stream {
        let data: Vec<(Option<&str>, String)> = events
            .iter()
            .map(|e| {
                // Data that was not JSON is stored as a JSON string holding the raw text.
                let d = e.data.as_deref().map_or(String::new(), |d| {
                    if d.starts_with('"') {
                        serde_json::from_str::<String>(d).unwrap_or_else(|_| d.to_owned())
                    } else {
                        d.to_owned()
                    }
                });
                (e.event.as_deref(), d)
            })
            .collect();
        let text = har::sse_text(data.iter().map(|(e, d)| (*e, d.as_str())));
        (Some(text), None)
    } else {
        match stored_body(resp_json, resp_raw) {
            Some((t, e)) => (Some(t), e),
            None => (None, None),
        }
    };
    let events_truncated = events.iter().any(|e| e.data_truncated == Some(true));
    let content = har::Content {
        size: resp_bytes.unwrap_or(-1),
        mime_type: har::header(&resp_headers, "content-type")
            .unwrap_or("")
            .to_owned(),
        text,
        encoding,
        comment: capped_comment(resp_truncated.or(Some(events_truncated)), resp_bytes),
    };
    let status = status.and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
    let response = har::Response {
        status,
        status_text: http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_owned(),
        http_version: upstream_version.clone().unwrap_or_default(),
        cookies: Vec::new(),
        redirect_url: har::header(&resp_headers, "location")
            .unwrap_or("")
            .to_owned(),
        headers: resp_headers,
        content,
        headers_size: -1,
        body_size: resp_bytes.unwrap_or(-1),
    };
    let timings = har::Timings::from_offsets(head_us, total_us);
    let sse: Vec<Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "seq": e.seq,
                "event": e.event,
                "offsetMs": e.offset_us.map(|us| us as f64 / 1000.0),
                "size": e.size,
                "dataTruncated": e.data_truncated.unwrap_or(false),
            })
        })
        .collect();
    let agentcap = serde_json::json!({
        "exchangeId": id,
        "operation": operation,
        "outcome": outcome,
        "error": error,
        "startedUs": started_us,
        "sseEvents": if stream { Some(sse) } else { None },
    });
    Ok(har::Entry {
        started_date_time: started,
        time: timings.total(),
        request: har::Request {
            method: method.unwrap_or_default(),
            url,
            http_version: "HTTP/1.1".to_owned(),
            cookies: Vec::new(),
            headers: req_headers,
            query_string: har::query_pairs(query.as_deref()),
            post_data,
            headers_size: -1,
            body_size: req_bytes.unwrap_or(-1),
        },
        response,
        cache: serde_json::json!({}),
        timings,
        comment: match outcome.as_deref() {
            Some("complete") | None => None,
            Some(o) => Some(format!(
                "{o}{}",
                error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )),
        },
        agentcap: Some(agentcap),
    })
}

/// What [`export_file`] (or the admin route) wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportReport {
    /// The database that answered, for people (`db FILE (opened read-only)` or via which proxy).
    pub answered_by: String,
    /// The files, in [`TABLES`] order (or the one HAR).
    pub files: Vec<Produced>,
}

/// What to export and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// The format.
    pub format: ExportFormat,
    /// Tables (Parquet / JSON Lines); empty: all of [`TABLES`].
    pub tables: Vec<String>,
    /// The selection.
    pub filter: Filter,
    /// A directory (Parquet / JSON Lines: `<table>.parquet` / `<table>.jsonl` in it, created when
    /// missing) or a file (HAR).
    pub out: PathBuf,
}

impl ExportOptions {
    /// The requests, one per file, checked (known tables, a predicate that is one expression).
    pub fn requests(&self) -> Result<Vec<ExportRequest>, ExportError> {
        if let Some(p) = &self.filter.predicate {
            check_predicate(p)?;
        }
        if self.format == ExportFormat::Har {
            return Ok(vec![ExportRequest {
                format: self.format,
                table: None,
                filter: self.filter.clone(),
            }]);
        }
        let tables: Vec<String> = if self.tables.is_empty() {
            TABLES.iter().map(|t| (*t).to_owned()).collect()
        } else {
            self.tables.clone()
        };
        tables
            .into_iter()
            .map(|t| {
                if TABLES.contains(&t.as_str()) {
                    Ok(ExportRequest {
                        format: self.format,
                        table: Some(t),
                        filter: self.filter.clone(),
                    })
                } else {
                    Err(ExportError::Invalid(format!(
                        "unknown table {t:?}; tables: {}",
                        TABLES.join(", ")
                    )))
                }
            })
            .collect()
    }

    /// Where the file of `req` goes.
    pub fn destination(&self, req: &ExportRequest) -> PathBuf {
        match &req.table {
            Some(t) if self.format != ExportFormat::Har => {
                self.out.join(format!("{t}.{}", self.format.extension()))
            }
            _ => self.out.clone(),
        }
    }

    /// The directory the files go into (created when missing).
    pub fn out_dir(&self) -> Result<PathBuf, ExportError> {
        let dir = match self.format {
            ExportFormat::Har => self
                .out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_owned),
            _ => self.out.clone(),
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(dir)
    }
}

/// Moves a produced file to its destination (same file system: a rename).
pub fn move_into_place(from: &Path, to: &Path) -> Result<(), ExportError> {
    std::fs::rename(from, to).or_else(|_| {
        std::fs::copy(from, to)
            .and_then(|_| std::fs::remove_file(from))
            .map_err(io(to))
    })
}

/// Exports from a closed recording: opens `db` read-only with a scratch directory inside the
/// destination as its only allowed directory, produces each file there, and moves it into place.
/// Fails while a proxy holds the file (go through its admin listener instead).
pub fn export_file(db: &Path, opts: &ExportOptions) -> Result<ExportReport, ExportError> {
    let requests = opts.requests()?;
    if !db.exists() {
        return Err(ExportError::Invalid(format!(
            "there is no recording at {}",
            db.display()
        )));
    }
    let scratch = scratch_dir(Some(&opts.out_dir()?))?;
    let conn = open_db_with(Some(db), DbAccess::ReadOnly, &[scratch.path()])?;
    let limits = ExportLimits::unbounded();
    let mut files = Vec::new();
    for req in &requests {
        let mut p = produce(&conn, scratch.path(), req, &limits, &QueryCancel::new())?;
        let dest = opts.destination(req);
        move_into_place(&p.path, &dest)?;
        p.path = dest;
        files.push(p);
    }
    Ok(ExportReport {
        answered_by: format!("db {} (opened read-only)", db.display()),
        files,
    })
}
