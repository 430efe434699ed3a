//! Read-only SQL over the recording.
//!
//! A query gets through four independent layers; each of them alone keeps the recording unchanged:
//!
//! 1. [`check_read_only`] (pure): the text parses, with `sqlparser`'s DuckDB dialect, as exactly
//!    one allowed statement ([`StatementKind`]: a query, `EXPLAIN` of a query, `DESCRIBE`,
//!    `SUMMARIZE`, `SHOW TABLES`) with no statement nested inside it, no `SELECT … INTO`, and none of
//!    the functions in [`DENIED_FUNCTIONS`] (they change settings, checkpoint, or run SQL text of
//!    their own).
//! 2. DuckDB's own parser agrees: `json_serialize_sql(?)`, given the text as a parameter, must
//!    find exactly one statement and it must be a `SELECT` (for `EXPLAIN`, the text after the
//!    keyword). A text the two parsers read differently (an `E'…'` string, a dialect gap) is refused
//!    before anything runs. The original text is what runs: nothing is rebuilt from an AST.
//! 3. The statement runs on a connection of its own, inside `BEGIN TRANSACTION READ ONLY`, which is
//!    always rolled back: DuckDB refuses every write to the database in it.
//! 4. The database instance was opened by [`super::open_db`]: external access disabled (no other
//!    file can be read or written) and configuration locked (`SET`, `RESET`, and table functions
//!    that change settings fail).
//!
//! [`QueryLimits`] bound the answer (rows, bytes, both checked while the rows stream out of DuckDB,
//! which stops at the cap) and its time; a [`QueryCancel`] interrupts a running statement from any
//! thread (the timer, a client that went away, shutdown).

use std::io::Write as _;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};
use duckdb::arrow::datatypes::DataType;
use duckdb::types::{TimeUnit, Value as DbValue, ValueRef};
use duckdb::{Connection, InterruptHandle};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use sqlparser::ast::{
    DescribeAlias, Expr, ObjectName, Query, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;

use super::{DbAccess, RecorderError, open_db};

/// The rows of a query, every value as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows; each has one value per column.
    pub rows: Vec<Vec<Value>>,
    /// `true` when the statement had more rows than the answer holds (a cap of [`QueryLimits`]).
    #[serde(default)]
    pub truncated: bool,
    /// Why the answer was truncated, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_reason: Option<String>,
}

impl QueryResult {
    /// A complete (not truncated) result.
    pub fn new(columns: Vec<String>, rows: Vec<Vec<Value>>) -> Self {
        QueryResult {
            columns,
            rows,
            truncated: false,
            truncated_reason: None,
        }
    }

    /// The value of `column` in row `row` (`None` when either does not exist).
    pub fn get(&self, row: usize, column: &str) -> Option<&Value> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(i)
    }

    /// The rows as JSON objects keyed by column name.
    pub fn objects(&self) -> Vec<Map<String, Value>> {
        self.rows
            .iter()
            .map(|r| {
                self.columns
                    .iter()
                    .cloned()
                    .zip(r.iter().cloned())
                    .collect()
            })
            .collect()
    }
}

/// Bounds on one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// At most this many rows in the answer (default 10,000); more make it `truncated`.
    pub max_rows: usize,
    /// At most this many bytes of rows, as JSON (default 16 MiB); more make it `truncated`.
    pub max_bytes: usize,
    /// The statement is interrupted after this long (default 30 s).
    pub timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_rows: 10_000,
            max_bytes: 16 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a running query was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// It ran longer than [`QueryLimits::timeout`].
    Timeout(Duration),
    /// The client that asked for it went away.
    ClientGone,
    /// The recorder is shutting down.
    Shutdown,
    /// The file it wrote would have passed this many bytes (the HAR export's writer).
    OverCap(u64),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Timeout(d) => write!(
                f,
                "it ran longer than the {} ms statement timeout and was interrupted",
                d.as_millis()
            ),
            StopReason::ClientGone => f.write_str("the client went away"),
            StopReason::Shutdown => f.write_str("the proxy is shutting down"),
            StopReason::OverCap(cap) => {
                write!(f, "the file it wrote would have passed the {cap}-byte cap")
            }
        }
    }
}

#[derive(Default)]
struct CancelState {
    reason: Option<StopReason>,
    interrupt: Option<Arc<InterruptHandle>>,
}

/// Interrupts one query from any thread: cheap to clone; [`QueryCancel::cancel`] before the
/// query starts makes it refuse to start, during it makes DuckDB stop at its next check.
#[derive(Clone, Default)]
pub struct QueryCancel {
    state: Arc<Mutex<CancelState>>,
}

impl std::fmt::Debug for QueryCancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryCancel")
            .field("reason", &self.reason())
            .finish_non_exhaustive()
    }
}

impl QueryCancel {
    /// A cancel handle for a query not started yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Interrupts the query (the first reason given wins).
    pub fn cancel(&self, why: StopReason) {
        let mut s = self.state.lock();
        if s.reason.is_none() {
            s.reason = Some(why);
        }
        if let Some(h) = &s.interrupt {
            h.interrupt();
        }
    }

    fn interrupt_again(&self) {
        if let Some(h) = &self.state.lock().interrupt {
            h.interrupt();
        }
    }

    /// Why the query was interrupted, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        self.state.lock().reason
    }

    fn attach(&self, conn: &Connection) -> Result<Attached<'_>, RecorderError> {
        let mut s = self.state.lock();
        if let Some(reason) = s.reason {
            return Err(RecorderError::QueryStopped { reason });
        }
        s.interrupt = Some(conn.interrupt_handle());
        Ok(Attached(self))
    }
}

/// While alive, [`QueryCancel::cancel`] interrupts the attached connection.
struct Attached<'a>(&'a QueryCancel);

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.0.state.lock().interrupt = None;
    }
}

/// Fires [`StopReason::Timeout`] on a cancel handle unless dropped first, and, once the handle is
/// cancelled (by anyone), interrupts again at every tick until the query ends: DuckDB clears an
/// interrupt that arrives between two statements (the transaction's, the check's, the query's),
/// so one interrupt alone could be lost.
struct Watchdog {
    _disarm: crossbeam_channel::Sender<()>,
}

/// How often the watchdog looks at its query.
const WATCHDOG_TICK: Duration = Duration::from_millis(25);

impl Watchdog {
    fn start(timeout: Duration, cancel: &QueryCancel) -> Option<Watchdog> {
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let cancel = cancel.clone();
        let deadline = std::time::Instant::now() + timeout;
        let spawned = std::thread::Builder::new()
            .name("agentcap-query-timer".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(WATCHDOG_TICK)
                {
                    if cancel.reason().is_some() {
                        cancel.interrupt_again();
                    } else if std::time::Instant::now() >= deadline {
                        cancel.cancel(StopReason::Timeout(timeout));
                    }
                }
            });
        match spawned {
            Ok(_) => Some(Watchdog { _disarm: tx }),
            Err(e) => {
                tracing::warn!(error = %e, "agentcap query: no timer thread; the query runs without its timeout");
                None
            }
        }
    }
}

/// What kind of statement [`check_read_only`] accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// `SELECT`, `WITH … SELECT`, `VALUES`, `FROM …`, set operations of those.
    Query,
    /// `EXPLAIN` of a query (not `EXPLAIN ANALYZE`).
    Explain,
    /// `DESCRIBE table` or `DESCRIBE query`.
    Describe,
    /// `SUMMARIZE table` or `SUMMARIZE query`.
    Summarize,
    /// `SHOW TABLES`.
    ShowTables,
}

/// The longest SQL text accepted.
pub const MAX_SQL_BYTES: usize = 128 * 1024;

/// Nesting depth sqlparser may recurse to (deeper text is refused, never a stack overflow).
const RECURSION_LIMIT: usize = 64;

/// Functions a query may not call: they change settings, write (checkpoints, logs, resources) or
/// run SQL text that the checks never saw.
pub const DENIED_FUNCTIONS: &[&str] = &[
    "checkpoint",
    "force_checkpoint",
    "enable_profiling",
    "disable_profiling",
    "enable_logging",
    "disable_logging",
    "truncate_duckdb_logs",
    "create_external_resource",
    "query",
    "query_table",
    "json_execute_serialized_sql",
    "nextval",
    "setseed",
];

fn refused(reason: impl Into<String>) -> RecorderError {
    RecorderError::QueryRefused {
        reason: reason.into(),
    }
}

/// The first word of `sql` when it is `keyword` (case-insensitive) followed by whitespace, with
/// only whitespace before it; returns the text after the keyword.
fn after_keyword<'a>(sql: &'a str, keyword: &str) -> Option<&'a str> {
    let s = sql.trim_start();
    let head = s.get(..keyword.len())?;
    let rest = &s[keyword.len()..];
    (head.eq_ignore_ascii_case(keyword) && rest.starts_with(char::is_whitespace)).then_some(rest)
}

fn parse(sql: &str) -> Result<Vec<Statement>, String> {
    Parser::new(&DuckDbDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| format!("the query does not parse: {e}"))
}

fn one(sql: &str) -> Result<Statement, String> {
    let mut stmts = parse(sql)?;
    match stmts.len() {
        0 => Err("the query is empty".to_owned()),
        1 => Ok(stmts.remove(0)),
        n => Err(format!("only one statement is allowed, found {n}")),
    }
}

const ALLOWED_TEXT: &str =
    "SELECT / WITH … SELECT / VALUES / FROM … / EXPLAIN / DESCRIBE / SUMMARIZE / SHOW TABLES";

fn statement_word(s: &Statement) -> String {
    // The rendering is linear in the statement's size; its first word names the statement.
    s.to_string()
        .split_whitespace()
        .next()
        .unwrap_or("this")
        .to_ascii_uppercase()
}

/// Accepts exactly one read-only statement (see [`StatementKind`]) and says which; anything else
/// is refused with the reason. Pure, linear in the text's length (the tokenizer makes one pass,
/// the parser's recursion is bounded), and never panics: the fuzz target `sql_gate` checks it.
/// This is layer 1 of the module's four; [`run_read_only`] adds the other three.
pub fn check_read_only(sql: &str) -> Result<StatementKind, RecorderError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(refused(format!(
            "the query is {} bytes; at most {MAX_SQL_BYTES} are accepted",
            sql.len()
        )));
    }
    // A chain of binary operators (`1+1+…`, `a AND b AND …`, `x::T::T…`) parses without recursion
    // but builds a tree as deep as the chain is long, and walking or dropping it recurses: on a
    // thread's usual 2 MiB stack a 128 KiB text would overflow it and abort the process. So the
    // parse, the walk and the drop run on a thread whose stack fits the deepest tree the size cap
    // allows (the memory is reserved, and only touched as deep as the tree goes).
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("agentcap-sql-gate".into())
            .stack_size(GATE_STACK_BYTES)
            .spawn_scoped(scope, || gate(sql))
            .map_err(|e| format!("the query could not be checked: {e}"))
            .and_then(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("the query could not be checked".to_owned()))
            })
    })
    .map_err(refused)
}

/// Stack of the thread that parses and walks a query (see [`check_read_only`]).
const GATE_STACK_BYTES: usize = 256 << 20;

fn gate(sql: &str) -> Result<StatementKind, String> {
    if sql.contains('\0') {
        return Err("the query contains a NUL character".to_owned());
    }
    // SUMMARIZE is DuckDB's own statement; sqlparser reads what follows it.
    if let Some(rest) = after_keyword(sql, "SUMMARIZE") {
        let target = rest.trim().trim_end_matches(';').trim();
        let is_name = !target.is_empty()
            && target
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
        if !is_name {
            match one(rest)? {
                Statement::Query(q) => check_tree(&q)?,
                other => {
                    return Err(format!(
                        "SUMMARIZE takes a table name or a query, not {}",
                        statement_word(&other)
                    ));
                }
            }
        }
        return Ok(StatementKind::Summarize);
    }
    let stmt = one(sql)?;
    let (kind, query): (StatementKind, Option<&Query>) = match &stmt {
        Statement::Query(q) => (StatementKind::Query, Some(q)),
        Statement::Explain {
            describe_alias,
            analyze,
            verbose,
            query_plan,
            estimate,
            statement,
            format,
            options,
            ..
        } => {
            let Statement::Query(q) = statement.as_ref() else {
                return Err(format!(
                    "EXPLAIN / DESCRIBE of {} statements is not allowed; only of a query",
                    statement_word(statement)
                ));
            };
            match describe_alias {
                DescribeAlias::Explain => {
                    if *analyze
                        || *verbose
                        || *query_plan
                        || *estimate
                        || format.is_some()
                        || options.is_some()
                    {
                        return Err(
                            "only plain EXPLAIN is allowed (EXPLAIN ANALYZE runs the statement)"
                                .to_owned(),
                        );
                    }
                    if after_keyword(sql, "EXPLAIN").is_none() {
                        return Err(
                            "EXPLAIN must be the first word, followed by a space".to_owned()
                        );
                    }
                    (StatementKind::Explain, Some(q))
                }
                DescribeAlias::Describe | DescribeAlias::Desc => (StatementKind::Describe, Some(q)),
            }
        }
        Statement::ExplainTable {
            describe_alias: DescribeAlias::Describe | DescribeAlias::Desc,
            hive_format: None,
            has_table_keyword: false,
            ..
        } => (StatementKind::Describe, None),
        Statement::ShowTables { .. } => (StatementKind::ShowTables, None),
        other => {
            return Err(format!(
                "{} statements are not allowed; only {ALLOWED_TEXT} are",
                statement_word(other)
            ));
        }
    };
    if let Some(q) = query {
        check_tree(q)?;
    }
    Ok(kind)
}

/// Walks a query: no statement nested inside it, no `SELECT … INTO`, no denied function.
fn check_tree(q: &Query) -> Result<(), String> {
    struct Tree;
    fn name_of(n: &ObjectName) -> String {
        let text = n.to_string();
        text.rsplit('.')
            .next()
            .unwrap_or_default()
            .trim_matches('"')
            .to_ascii_lowercase()
    }
    fn function(n: &ObjectName) -> ControlFlow<String> {
        let name = name_of(n);
        if name == "duckdb_extensions" {
            return ControlFlow::Break(
                "duckdb_extensions() reads DuckDB's extension directory on disk, which queries may not do; \
                 the json and parquet extensions are built in and loaded"
                    .to_owned(),
            );
        }
        if DENIED_FUNCTIONS.contains(&name.as_str()) {
            return ControlFlow::Break(format!(
                "{name}() is not allowed in a query: it changes settings or the database, or runs SQL of its own"
            ));
        }
        ControlFlow::Continue(())
    }
    fn body(b: &SetExpr) -> ControlFlow<String> {
        match b {
            SetExpr::Select(s) if s.into.is_some() => {
                ControlFlow::Break("SELECT … INTO is not allowed".to_owned())
            }
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                ControlFlow::Break(
                    "a statement that writes is not allowed inside a query".to_owned(),
                )
            }
            SetExpr::SetOperation { left, right, .. } => {
                body(left)?;
                body(right)
            }
            _ => ControlFlow::Continue(()),
        }
    }
    impl Visitor for Tree {
        type Break = String;
        fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<String> {
            ControlFlow::Break(format!(
                "a {} statement inside the query is not allowed",
                statement_word(s)
            ))
        }
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<String> {
            body(&q.body)
        }
        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<String> {
            match t {
                TableFactor::Table {
                    name,
                    args: Some(_),
                    ..
                }
                | TableFactor::Function { name, .. } => function(name),
                _ => ControlFlow::Continue(()),
            }
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
            match e {
                Expr::Function(f) => function(&f.name),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    match q.visit(&mut Tree) {
        ControlFlow::Break(reason) => Err(reason),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Layer 2: DuckDB's own parser must read `text` as exactly one SELECT. The text is a parameter
/// of a pure function; nothing of it runs.
fn duckdb_agrees(conn: &Connection, text: &str) -> Result<(), RecorderError> {
    let (error, count, message): (Option<bool>, Option<i64>, Option<String>) = conn
        .query_row(
            "SELECT (j->>'error')::BOOLEAN, json_array_length(j->'statements'), j->>'error_message' \
             FROM (SELECT json_serialize_sql(?::VARCHAR) AS j)",
            [text],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(explain)?;
    if error != Some(false) {
        return Err(refused(format!(
            "DuckDB does not read the text as one SELECT: {}",
            message.unwrap_or_else(|| "no reason given".to_owned())
        )));
    }
    match count {
        Some(1) => Ok(()),
        n => Err(refused(format!(
            "DuckDB reads {} statements in the text; only one is allowed",
            n.unwrap_or(0)
        ))),
    }
}

/// A query parameter from JSON: null, booleans, numbers and strings as themselves; arrays and
/// objects as their JSON text.
fn param(v: &Value) -> DbValue {
    match v {
        Value::Null => DbValue::Null,
        Value::Bool(b) => DbValue::Boolean(*b),
        Value::Number(n) => n
            .as_i64()
            .map(DbValue::BigInt)
            .or_else(|| n.as_u64().map(DbValue::UBigInt))
            .or_else(|| n.as_f64().map(DbValue::Double))
            .unwrap_or(DbValue::Null),
        Value::String(s) => DbValue::Text(s.clone()),
        other => DbValue::Text(other.to_string()),
    }
}

/// Runs one query through all four layers (see the module's documentation) on `conn`, a
/// connection of its own, with `params` bound to its `?` placeholders, within `limits`, and
/// interruptible through `cancel`.
pub fn run_read_only(
    conn: &Connection,
    sql: &str,
    params: &[Value],
    limits: &QueryLimits,
    cancel: &QueryCancel,
) -> Result<QueryResult, RecorderError> {
    let kind = check_read_only(sql)?;
    let attached = cancel.attach(conn)?;
    let watchdog = Watchdog::start(limits.timeout, cancel);
    let stopped = || match cancel.reason() {
        Some(reason) => Err(RecorderError::QueryStopped { reason }),
        None => Ok(()),
    };
    let checked_text = match kind {
        StatementKind::Explain => after_keyword(sql, "EXPLAIN").unwrap_or(sql),
        _ => sql,
    };
    let result = in_read_only_transaction(conn, || {
        duckdb_agrees(conn, checked_text)
            .and_then(|()| stopped())
            .and_then(|()| collect(conn, sql, params, limits))
    });
    drop(watchdog);
    drop(attached);
    result.map_err(|e| match cancel.reason() {
        Some(reason) => RecorderError::QueryStopped { reason },
        None => e,
    })
}

/// Checks a user's row predicate (`agentcap export --where`) before it is pasted into
/// `WHERE (…)`: it must parse, with `sqlparser`'s DuckDB dialect, as exactly one expression that
/// takes the whole text (so it cannot close the parenthesis, end the statement or comment out what
/// follows), within [`MAX_SQL_BYTES`]. The whole statement it goes into then passes every layer of
/// [`run_read_only`]. Pure; never panics.
pub fn check_predicate(predicate: &str) -> Result<(), RecorderError> {
    if predicate.len() > MAX_SQL_BYTES {
        return Err(refused(format!(
            "the condition is {} bytes; at most {MAX_SQL_BYTES} are accepted",
            predicate.len()
        )));
    }
    if predicate.trim().is_empty() {
        return Err(refused("the condition is empty"));
    }
    let check = || -> Result<(), String> {
        let dialect = DuckDbDialect {};
        let mut parser = Parser::new(&dialect)
            .with_recursion_limit(RECURSION_LIMIT)
            .try_with_sql(predicate)
            .map_err(|e| e.to_string())?;
        let expr = parser.parse_expr().map_err(|e| e.to_string())?;
        if parser.peek_token().token != sqlparser::tokenizer::Token::EOF {
            return Err("the condition must be one expression and nothing after it".to_owned());
        }
        // Deep trees are dropped on the big stack too (see `check_read_only`).
        drop(expr);
        Ok(())
    };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("agentcap-sql-gate".into())
            .stack_size(GATE_STACK_BYTES)
            .spawn_scoped(scope, check)
            .map_err(|e| format!("the condition could not be checked: {e}"))
            .and_then(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("the condition could not be checked".to_owned()))
            })
    })
    .map_err(|e| refused(format!("--where: {e}")))
}

/// Runs `body` on `conn` the way [`run_read_only`] runs a statement, for a statement built from
/// constant text only (the exporter's `COPY`): inside a read-only transaction always rolled back,
/// interruptible through `cancel`, and stopped after `timeout`.
pub fn run_guarded<T>(
    conn: &Connection,
    timeout: Duration,
    cancel: &QueryCancel,
    body: impl FnOnce() -> Result<T, RecorderError>,
) -> Result<T, RecorderError> {
    let attached = cancel.attach(conn)?;
    let watchdog = Watchdog::start(timeout, cancel);
    let result = in_read_only_transaction(conn, body);
    drop(watchdog);
    drop(attached);
    result.map_err(|e| match cancel.reason() {
        Some(reason) => RecorderError::QueryStopped { reason },
        None => e,
    })
}

/// A DuckDB error as the query path words it (file access, writes and settings refused).
pub fn explain_error(e: duckdb::Error) -> RecorderError {
    explain(e)
}

/// Layer 3: runs `body` inside a read-only transaction on `conn`, always rolled back: DuckDB
/// refuses any write to the database in it, whatever got past the parsers.
fn in_read_only_transaction<T>(
    conn: &Connection,
    body: impl FnOnce() -> Result<T, RecorderError>,
) -> Result<T, RecorderError> {
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")?;
    let out = body();
    let rollback = conn.execute_batch("ROLLBACK");
    let out = out?;
    rollback?;
    Ok(out)
}

/// Counts bytes written.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_len(v: &[Value]) -> usize {
    let mut c = Counter(0);
    let _ = serde_json::to_writer(&mut c, v);
    let _ = c.flush();
    c.0
}

fn collect(
    conn: &Connection,
    sql: &str,
    params: &[Value],
    limits: &QueryLimits,
) -> Result<QueryResult, RecorderError> {
    let mut stmt = conn.prepare(sql).map_err(explain)?;
    let values: Vec<DbValue> = params.iter().map(param).collect();
    // Executes as a stream: rows come out of DuckDB chunk by chunk, and dropping the statement at
    // a cap stops the query. The stream's rows are then read through `raw_query`.
    drop(
        stmt.stream_arrow(duckdb::params_from_iter(values.iter()))
            .map_err(explain)?,
    );
    let mut rows = stmt.raw_query();
    let (columns, kinds) = {
        let st = rows
            .as_ref()
            .ok_or_else(|| refused("the statement returned no result"))?;
        let names = st.column_names();
        let kinds: Vec<ColumnKind> = (0..names.len())
            .map(|i| {
                if matches!(st.column_type(i), DataType::Null) {
                    ColumnKind::Null
                } else if st
                    .column_logical_type(i)
                    .get_alias()
                    .is_some_and(|a| a.eq_ignore_ascii_case("json"))
                {
                    ColumnKind::Json
                } else {
                    ColumnKind::Plain
                }
            })
            .collect();
        (names, kinds)
    };
    let mut out = QueryResult::new(columns, Vec::new());
    let mut bytes = 0usize;
    while let Some(row) = rows.next().map_err(explain)? {
        if out.rows.len() >= limits.max_rows {
            out.truncated = true;
            out.truncated_reason = Some(format!(
                "the statement has more than {} rows (the row cap); add a LIMIT or narrow it",
                limits.max_rows
            ));
            break;
        }
        let mut values = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            let value = match kind {
                ColumnKind::Null => Value::Null,
                // The duckdb crate panics on a few result shapes it cannot decode (e.g. a list of
                // the NULL type); refuse those with an error instead of taking the caller down.
                _ => std::panic::catch_unwind(AssertUnwindSafe(|| {
                    row.get_ref(i)
                        .map(|v| value_ref_to_json(v, *kind == ColumnKind::Json))
                }))
                .map_err(|_| {
                    refused(format!(
                        "column {} has a type that cannot be converted to JSON; CAST it",
                        out.columns[i]
                    ))
                })??,
            };
            values.push(value);
        }
        let size = json_len(&values) + 1;
        if bytes.saturating_add(size) > limits.max_bytes {
            out.truncated = true;
            out.truncated_reason = Some(format!(
                "the rows exceed {} bytes as JSON (the byte cap); select fewer columns or rows",
                limits.max_bytes
            ));
            break;
        }
        bytes += size;
        out.rows.push(values);
    }
    Ok(out)
}

/// How a result column is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    /// The NULL type: always null (the duckdb crate cannot read it).
    Null,
    /// A JSON column: text parsed into JSON.
    Json,
    /// Anything else.
    Plain,
}

/// Opens `db_path` read-only (no proxy may have it open) and runs one query through the same
/// layers and limits as the proxy's.
pub fn query_file_read_only(
    db_path: &Path,
    sql: &str,
    params: &[Value],
    limits: &QueryLimits,
) -> Result<QueryResult, RecorderError> {
    check_read_only(sql)?;
    let conn = open_db(Some(db_path), DbAccess::ReadOnly)?;
    run_read_only(&conn, sql, params, limits, &QueryCancel::new())
}

/// DuckDB's refusal of file access (external access is disabled on every database agentcap
/// opens) or of a write (the read-only transaction) or of a setting (the locked configuration),
/// turned into a clear refusal; other errors pass through.
fn explain(e: duckdb::Error) -> RecorderError {
    let text = e.to_string();
    if text.contains("disabled through configuration")
        || text.contains("disabled by configuration")
        || text.starts_with("Permission Error")
    {
        refused(format!(
            "queries read the recording only: reading or writing other files (read_csv, read_text, COPY, ATTACH, INSTALL, LOAD, ...) is disabled ({text})"
        ))
    } else if text.contains("read-only mode") || text.contains("read-only transaction") {
        refused(format!("queries cannot write the recording ({text})"))
    } else if text.contains("configuration has been locked") {
        refused(format!("queries cannot change DuckDB's settings ({text})"))
    } else {
        RecorderError::Db(e)
    }
}

fn value_ref_to_json(v: ValueRef<'_>, is_json: bool) -> Value {
    if let ValueRef::Text(bytes) = v {
        let s = String::from_utf8_lossy(bytes);
        if is_json && let Ok(parsed) = serde_json::from_str::<Value>(&s) {
            return parsed;
        }
        return Value::String(s.into_owned());
    }
    db_value_to_json(&v.to_owned())
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

fn big(i: i128) -> Value {
    if let Ok(v) = i64::try_from(i) {
        Value::from(v)
    } else if let Ok(v) = u64::try_from(i) {
        Value::from(v)
    } else {
        Value::String(i.to_string())
    }
}

fn micros(unit: TimeUnit, v: i64) -> i64 {
    unit.to_micros(v)
}

/// Converts an owned DuckDB value to JSON: timestamps as RFC 3339 (UTC), dates as `YYYY-MM-DD`,
/// blobs as hex, lists/arrays as arrays, structs as objects, maps as objects (keys as text).
pub fn db_value_to_json(v: &DbValue) -> Value {
    match v {
        DbValue::Null => Value::Null,
        DbValue::Boolean(b) => Value::Bool(*b),
        DbValue::TinyInt(i) => Value::from(*i),
        DbValue::SmallInt(i) => Value::from(*i),
        DbValue::Int(i) => Value::from(*i),
        DbValue::BigInt(i) => Value::from(*i),
        DbValue::HugeInt(i) => big(*i),
        DbValue::UHugeInt(u) => match u64::try_from(*u) {
            Ok(v) => Value::from(v),
            Err(_) => Value::String(u.to_string()),
        },
        DbValue::UTinyInt(i) => Value::from(*i),
        DbValue::USmallInt(i) => Value::from(*i),
        DbValue::UInt(i) => Value::from(*i),
        DbValue::UBigInt(i) => Value::from(*i),
        DbValue::Float(f) => float(f64::from(*f)),
        DbValue::Double(f) => float(*f),
        DbValue::Decimal(d) => {
            let text = d.to_string();
            text.parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map_or(Value::String(text), Value::Number)
        }
        DbValue::Timestamp(unit, t) => DateTime::<Utc>::from_timestamp_micros(micros(*unit, *t))
            .map_or(Value::Null, |dt| {
                Value::String(dt.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }),
        DbValue::Text(s) => Value::String(s.clone()),
        DbValue::Blob(b) | DbValue::Geometry(b) => Value::String(hex::encode(b)),
        DbValue::Date32(days) => NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(i64::from(*days))))
            .map_or(Value::Null, |d| Value::String(d.to_string())),
        DbValue::Time64(unit, t) => {
            let us = micros(*unit, *t);
            let secs = u32::try_from(us.div_euclid(1_000_000)).unwrap_or(0);
            let nanos = u32::try_from(us.rem_euclid(1_000_000) * 1000).unwrap_or(0);
            NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
                .map_or(Value::Null, |t| Value::String(t.to_string()))
        }
        DbValue::Interval {
            months,
            days,
            nanos,
        } => serde_json::json!({"months": months, "days": days, "micros": nanos / 1000}),
        DbValue::List(items) | DbValue::Array(items) => {
            Value::Array(items.iter().map(db_value_to_json).collect())
        }
        DbValue::Enum(s) => Value::String(s.clone()),
        DbValue::Struct(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), db_value_to_json(v)))
                .collect(),
        ),
        DbValue::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match db_value_to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, db_value_to_json(v))
                })
                .collect(),
        ),
        DbValue::Union(inner) => db_value_to_json(inner),
        // `Value` is non-exhaustive; render anything newer as its debug text.
        other => Value::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> String {
        match check_read_only(sql) {
            Err(RecorderError::QueryRefused { reason }) => reason,
            other => panic!("{sql:?} was not refused: {other:?}"),
        }
    }

    /// Layer 3 on its own: statements handed straight to the query runner, as if both parsers
    /// had let them through, cannot write.
    #[test]
    fn the_read_only_transaction_alone_refuses_writes() {
        let conn = open_db(None, DbAccess::ReadWrite).unwrap();
        conn.execute_batch("CREATE TABLE t AS SELECT 1 AS x")
            .unwrap();
        for sql in [
            "DELETE FROM t",
            "UPDATE t SET x = 2",
            "INSERT INTO t VALUES (5)",
            "DROP TABLE t",
            "CREATE TABLE u (x INT)",
        ] {
            let e = in_read_only_transaction(&conn, || {
                collect(&conn, sql, &[], &QueryLimits::default())
            })
            .expect_err(sql)
            .to_string();
            assert!(e.contains("read-only"), "{sql}: {e}");
        }
        let x: i64 = conn
            .query_row("SELECT sum(x) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(x, 1);
    }

    #[test]
    fn accepts_read_only_statements() {
        for (sql, kind) in [
            ("SELECT 1", StatementKind::Query),
            ("select * from exchanges;", StatementKind::Query),
            (
                "  -- a comment\n WITH x AS (SELECT 1) SELECT * FROM x ;  ",
                StatementKind::Query,
            ),
            ("SHOW TABLES", StatementKind::ShowTables),
            ("DESCRIBE exchanges", StatementKind::Describe),
            ("SUMMARIZE sse_events", StatementKind::Summarize),
            ("SUMMARIZE SELECT 1 AS x", StatementKind::Summarize),
            ("EXPLAIN SELECT 1", StatementKind::Explain),
            ("FROM exchanges LIMIT 1", StatementKind::Query),
            ("(SELECT 1) UNION (SELECT 2)", StatementKind::Query),
            ("SELECT 'a;b', \"odd;name\" FROM t", StatementKind::Query),
            ("SELECT $$ ; $$, $x$;$x$", StatementKind::Query),
            ("/* block ; comment */ SELECT 1", StatementKind::Query),
            ("SELECT tags->>'i' FROM exchanges", StatementKind::Query),
            ("SELECT * FROM exchanges WHERE id = ?", StatementKind::Query),
            ("SELECT query FROM exchanges", StatementKind::Query),
        ] {
            assert_eq!(
                check_read_only(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}")),
                kind,
                "{sql:?}"
            );
        }
    }

    #[test]
    fn refuses_writes_and_multiple_statements() {
        assert!(refused("INSERT INTO exchanges VALUES (1)").starts_with("INSERT statements"));
        assert!(refused("DROP TABLE exchanges").starts_with("DROP statements"));
        assert!(refused("SELECT 1; DROP TABLE exchanges").contains("only one statement"));
        assert!(refused("SELECT 1; SELECT 2").contains("found 2"));
        assert!(refused("PRAGMA enable_profiling").contains("not allowed"));
        assert!(refused("EXPLAIN ANALYZE SELECT 1").contains("plain EXPLAIN"));
        assert!(refused("EXPLAIN DELETE FROM exchanges").contains("only of a query"));
        assert!(refused("").contains("empty"));
        assert!(refused("-- nothing").contains("empty"));
        assert!(refused("SELECT 'unterminated").contains("does not parse"));
        assert!(refused("SET memory_limit = '1MB'").starts_with("SET"));
        assert!(refused("COPY exchanges TO 'x.csv'").starts_with("COPY"));
        assert!(refused("SELECT * FROM checkpoint()").contains("checkpoint()"));
        assert!(refused("SELECT * FROM query('SELECT 1')").contains("query()"));
        assert!(refused("SELECT nextval('s')").contains("nextval()"));
        assert!(refused("SELECT * FROM duckdb_extensions()").contains("built in"));
        assert!(refused("SUMMARIZE DELETE FROM exchanges").contains("SUMMARIZE takes"));
        // The bypass that a hand-written splitter let through: four statements to sqlparser.
        let r = refused("SELECT E'\\''; COMMIT; UPDATE exchanges SET status=418; SELECT 1 -- '");
        assert!(
            r.contains("only one statement") || r.contains("parse"),
            "{r}"
        );
        assert!(refused(&"x".repeat(MAX_SQL_BYTES + 1)).contains("at most"));
        assert!(refused("SELECT 1\0").contains("NUL"));
    }

    #[test]
    fn adversarial_text_of_60_kb_is_checked() {
        // Openers that never close, repeated: a scanner that looks for the closing delimiter from
        // every opener is quadratic here. The gate tokenizes once, left to right.
        for unit in [
            "$$", "$a$", "'", "\"", "/*", "--\n", "E'\\", "(", "$a$x", "[", "{",
        ] {
            let sql = format!("SELECT {}", unit.repeat(60 * 1024 / unit.len()));
            let _ = check_read_only(&sql);
        }
        let deep = format!("SELECT {}1{}", "(".repeat(30_000), ")".repeat(30_000));
        assert!(refused(&deep).contains("parse"));
        // Long operator chains build deep trees: checked without overflowing any stack.
        for unit in ["1+", "a AND ", "1::INT", "a->'b'", "1 UNION SELECT "] {
            let sql = format!(
                "SELECT {}1",
                unit.repeat((MAX_SQL_BYTES - 100) / unit.len())
            );
            let _ = check_read_only(&sql);
        }
    }

    #[test]
    fn converts_values() {
        assert_eq!(
            db_value_to_json(&DbValue::Timestamp(
                TimeUnit::Microsecond,
                1_700_000_000_123_456
            )),
            Value::String("2023-11-14T22:13:20.123456Z".into())
        );
        assert_eq!(
            db_value_to_json(&DbValue::Date32(1)),
            Value::String("1970-01-02".into())
        );
        assert_eq!(
            db_value_to_json(&DbValue::List(vec![DbValue::Int(1), DbValue::Null])),
            serde_json::json!([1, null])
        );
        assert_eq!(
            db_value_to_json(&DbValue::HugeInt(1 << 70)),
            Value::String((1i128 << 70).to_string())
        );
        assert_eq!(
            db_value_to_json(&DbValue::Blob(vec![0xab, 1])),
            Value::String("ab01".into())
        );
    }

    #[test]
    fn json_parameters() {
        assert_eq!(param(&serde_json::json!(null)), DbValue::Null);
        assert_eq!(param(&serde_json::json!(3)), DbValue::BigInt(3));
        assert_eq!(
            param(&serde_json::json!(u64::MAX)),
            DbValue::UBigInt(u64::MAX)
        );
        assert_eq!(param(&serde_json::json!(1.5)), DbValue::Double(1.5));
        assert_eq!(param(&serde_json::json!("x")), DbValue::Text("x".into()));
        assert_eq!(param(&serde_json::json!([1])), DbValue::Text("[1]".into()));
    }
}
