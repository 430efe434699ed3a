//! The UI's only way to the data: read-only SQL with parameters, returning rows as JSON values.
//!
//! [`Db`] is a trait so the same pages run over a DuckDB file opened read-only (`agentcap ui --db`) or over a
//! connection lent by a running proxy's recorder. Every statement goes through the proxy's read-only
//! statement filter and runs inside a transaction that is always rolled back: the UI never writes.

use std::panic::AssertUnwindSafe;
use std::path::Path;

use agentcap_proxy::recorder::QueryResult;
use agentcap_proxy::recorder::query::{check_read_only, db_value_to_json};
use agentcap_proxy::recorder::{DbAccess, open_db};
use duckdb::Connection;
use duckdb::types::Value as DbValue;
use parking_lot::Mutex;
use serde_json::Value;

use crate::UiError;

/// One SQL parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A text value.
    Text(String),
    /// An integer.
    Int(i64),
}

impl Param {
    fn to_db(&self) -> DbValue {
        match self {
            Param::Text(s) => DbValue::Text(s.clone()),
            Param::Int(i) => DbValue::BigInt(*i),
        }
    }
}

/// Read-only SQL with parameters over a recording.
pub trait Db: Send + Sync {
    /// Runs one read-only statement with `params` bound to its `?` placeholders.
    fn query(&self, sql: &str, params: &[Param]) -> Result<QueryResult, UiError>;

    /// Lends a connection, inside a transaction that is rolled back afterwards, to a reader that takes a
    /// `duckdb::Connection` (the eval runner's history). `None` when this source has no connection to lend.
    fn with_connection(&self, f: &mut dyn FnMut(&Connection)) -> Option<Result<(), UiError>> {
        let _ = f;
        None
    }
}

/// A [`Db`] over a DuckDB connection: a file opened read-only, or a connection to a live recorder's
/// database. Each query runs on a clone of the connection, inside a transaction that is rolled back.
pub struct ConnDb {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for ConnDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnDb").finish_non_exhaustive()
    }
}

impl ConnDb {
    /// Wraps a connection (e.g. `RecorderHandle::connection()` of a running proxy).
    pub fn new(conn: Connection) -> Self {
        ConnDb {
            conn: Mutex::new(conn),
        }
    }

    /// Opens `path` read-only with extension autoloading and external access disabled; fails when the file
    /// is missing or held by a running proxy.
    pub fn open_read_only(path: &Path) -> Result<Self, UiError> {
        if !path.is_file() {
            return Err(UiError::Config(format!(
                "{} is not a recording (no such file)",
                path.display()
            )));
        }
        let conn = open_db(Some(path), DbAccess::ReadOnly).map_err(|e| {
            UiError::Config(format!(
                "cannot open {} read-only (is a proxy recording into it?): {e}",
                path.display()
            ))
        })?;
        Ok(ConnDb::new(conn))
    }
}

impl Db for ConnDb {
    fn query(&self, sql: &str, params: &[Param]) -> Result<QueryResult, UiError> {
        check_read_only(sql).map_err(|e| UiError::Internal(e.to_string()))?;
        let conn = self.conn.lock().try_clone().map_err(UiError::Db)?;
        conn.execute_batch("BEGIN TRANSACTION READ ONLY")
            .map_err(UiError::Db)?;
        let out = collect(&conn, sql, params);
        let _ = conn.execute_batch("ROLLBACK");
        out
    }

    fn with_connection(&self, f: &mut dyn FnMut(&Connection)) -> Option<Result<(), UiError>> {
        Some(lend(&self.conn, f))
    }
}

fn lend(conn: &Mutex<Connection>, f: &mut dyn FnMut(&Connection)) -> Result<(), UiError> {
    let conn = conn.lock().try_clone().map_err(UiError::Db)?;
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")
        .map_err(UiError::Db)?;
    f(&conn);
    let _ = conn.execute_batch("ROLLBACK");
    Ok(())
}

fn collect(conn: &Connection, sql: &str, params: &[Param]) -> Result<QueryResult, UiError> {
    let mut stmt = conn.prepare(sql).map_err(UiError::Db)?;
    let values: Vec<DbValue> = params.iter().map(Param::to_db).collect();
    let mut rows = stmt
        .query(duckdb::params_from_iter(values))
        .map_err(UiError::Db)?;
    let columns = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
    let mut out = QueryResult {
        columns,
        rows: Vec::new(),
        truncated: false,
        truncated_reason: None,
    };
    while let Some(row) = rows.next().map_err(UiError::Db)? {
        let mut r = Vec::with_capacity(out.columns.len());
        for i in 0..out.columns.len() {
            // The duckdb crate panics on a few result shapes it cannot decode; the UI's own SQL casts
            // everything to plain types, so this only guards against a damaged file.
            let v = std::panic::catch_unwind(AssertUnwindSafe(|| row.get::<_, DbValue>(i)))
                .map_err(|_| UiError::Internal(format!("column {i} cannot be decoded")))?
                .map_err(UiError::Db)?;
            r.push(db_value_to_json(&v));
        }
        out.rows.push(r);
    }
    Ok(out)
}

/// Column access by name over a [`QueryResult`].
#[derive(Debug)]
pub struct Rows<'a> {
    result: &'a QueryResult,
}

impl<'a> Rows<'a> {
    /// Wraps a result.
    pub fn new(result: &'a QueryResult) -> Self {
        Rows { result }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.result.rows.len()
    }

    /// `true` when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.result.rows.is_empty()
    }

    /// The rows, each with typed accessors.
    pub fn iter(&self) -> impl Iterator<Item = Row<'a>> + '_ {
        let cols = &self.result.columns;
        self.result.rows.iter().map(move |values| Row {
            cols,
            values: values.as_slice(),
        })
    }

    /// The first row.
    pub fn first(&self) -> Option<Row<'a>> {
        self.result.rows.first().map(|values| Row {
            cols: &self.result.columns,
            values: values.as_slice(),
        })
    }
}

/// One row with typed accessors (missing columns and NULLs read as `None`).
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    cols: &'a [String],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// The raw value of `col`.
    pub fn get(&self, col: &str) -> &'a Value {
        self.cols
            .iter()
            .position(|c| c == col)
            .and_then(|i| self.values.get(i))
            .unwrap_or(&Value::Null)
    }

    /// `col` as text (numbers and booleans in their JSON form).
    pub fn text(&self, col: &str) -> Option<String> {
        match self.get(col) {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// `col` as an integer.
    pub fn int(&self, col: &str) -> Option<i64> {
        match self.get(col) {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// `col` as a float.
    pub fn float(&self, col: &str) -> Option<f64> {
        match self.get(col) {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// `col` as a boolean (NULL is false).
    pub fn bool(&self, col: &str) -> bool {
        match self.get(col) {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_i64().is_some_and(|i| i != 0),
            Value::String(s) => s == "true",
            _ => false,
        }
    }
}
