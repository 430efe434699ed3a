//! The UI's only way to the data: read-only SQL with parameters, returning rows as JSON values.
//!
//! [`Db`] is a trait so the same pages run over a DuckDB file opened read-only (`agentcap ui --db`, [`ConnDb`])
//! or over a running proxy's recording ([`GateDb`], on its admin listener). Either way every statement, the
//! SQL console's included, runs through the proxy's read-only query path (`recorder::query::run_read_only`:
//! the statement filter, DuckDB's parser agreeing, a read-only transaction always rolled back, a row, byte and
//! time limit), the one `agentcap query` uses: the UI never writes.

use std::path::Path;

use agentcap_proxy::admin::QueryGate;
use agentcap_proxy::recorder::query::run_read_only;
use agentcap_proxy::recorder::{DbAccess, QueryCancel, QueryLimits, QueryResult, open_db, schema};
use duckdb::Connection;
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
    fn to_json(&self) -> Value {
        match self {
            Param::Text(s) => Value::String(s.clone()),
            Param::Int(i) => Value::from(*i),
        }
    }
}

fn json_params(params: &[Param]) -> Vec<Value> {
    params.iter().map(Param::to_json).collect()
}

/// Read-only SQL with parameters over a recording.
pub trait Db: Send + Sync {
    /// Runs one read-only statement with `params` bound to its `?` placeholders.
    fn query(&self, sql: &str, params: &[Param]) -> Result<QueryResult, UiError>;

    /// Lends a connection, inside a transaction that is rolled back afterwards, to a reader that takes a
    /// `duckdb::Connection` (the eval runner's history, our own SQL only). `None` when this source has no
    /// connection to lend.
    fn with_connection(&self, f: &mut dyn FnMut(&Connection)) -> Option<Result<(), UiError>> {
        let _ = f;
        None
    }
}

/// A [`Db`] over a DuckDB connection: a file opened read-only. Each query runs on a clone of the connection
/// through the proxy's read-only query path within [`QueryLimits`].
pub struct ConnDb {
    conn: Mutex<Connection>,
    limits: QueryLimits,
}

impl std::fmt::Debug for ConnDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnDb").finish_non_exhaustive()
    }
}

impl ConnDb {
    /// Wraps a connection, with the default query limits (those of `agentcap query`).
    pub fn new(conn: Connection) -> Self {
        ConnDb {
            conn: Mutex::new(conn),
            limits: QueryLimits::default(),
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
        let found = schema::version(&conn).map_err(|e| {
            UiError::Config(format!(
                "cannot read {}'s schema version: {e}",
                path.display()
            ))
        })?;
        let wanted = schema::latest_version();
        // 0: no recording tables (a file of eval runs only), whose pages need none.
        if found != 0 && found != wanted {
            let what = match found {
                f if f < wanted => format!(
                    "was recorded with schema version {f}, the pages read version {wanted}: upgrade it in \
                     place once with `agentcap ui --db {} --migrate` (no proxy may be recording into it)",
                    path.display()
                ),
                f => format!(
                    "has schema version {f}, newer than the {wanted} this agentcap reads: use a newer agentcap"
                ),
            };
            return Err(UiError::Config(format!("{} {what}", path.display())));
        }
        Ok(ConnDb::new(conn))
    }
}

impl Db for ConnDb {
    fn query(&self, sql: &str, params: &[Param]) -> Result<QueryResult, UiError> {
        let conn = self.conn.lock().try_clone().map_err(UiError::Db)?;
        run_read_only(
            &conn,
            sql,
            &json_params(params),
            &self.limits,
            &QueryCancel::new(),
        )
        .map_err(|e| UiError::Query(e.to_string()))
    }

    fn with_connection(&self, f: &mut dyn FnMut(&Connection)) -> Option<Result<(), UiError>> {
        let conn = self.conn.lock().try_clone().map_err(UiError::Db);
        Some(conn.and_then(|c| lend(&c, f)))
    }
}

/// A [`Db`] over a running proxy's recording, through its admin listener's [`QueryGate`]: the same path,
/// limits and permits as `POST /query`. Queries run on connections of their own to the recorder's database
/// (never the writer's, which they cannot block); the eval pages' reader gets a connection from the recorder
/// too, inside a read-only transaction.
#[derive(Debug, Clone)]
pub struct GateDb {
    gate: QueryGate,
}

impl GateDb {
    /// Reads through `gate`.
    pub fn new(gate: QueryGate) -> Self {
        GateDb { gate }
    }
}

impl Db for GateDb {
    fn query(&self, sql: &str, params: &[Param]) -> Result<QueryResult, UiError> {
        self.gate
            .query_blocking(sql, &json_params(params), &QueryCancel::new())
            .map_err(|e| UiError::Query(e.to_string()))
    }

    fn with_connection(&self, f: &mut dyn FnMut(&Connection)) -> Option<Result<(), UiError>> {
        let conn = self
            .gate
            .recorder()
            .connection()
            .map_err(|e| UiError::Query(e.to_string()));
        Some(conn.and_then(|c| lend(&c, f)))
    }
}

fn lend(conn: &Connection, f: &mut dyn FnMut(&Connection)) -> Result<(), UiError> {
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")
        .map_err(UiError::Db)?;
    f(conn);
    let _ = conn.execute_batch("ROLLBACK");
    Ok(())
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
