//! Read-only SQL over the recording: a statement filter (one SELECT-like statement only), a
//! transaction that is always rolled back as a second guard, and the conversion of every DuckDB
//! value to JSON.

use std::panic::AssertUnwindSafe;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};
use duckdb::arrow::datatypes::DataType;
use duckdb::types::{TimeUnit, Value as DbValue, ValueRef};
use duckdb::{AccessMode, Config, Connection};
use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::RecorderError;

/// The rows of a query, every value as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows; each has one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl QueryResult {
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

/// Statement kinds a query may start with.
const ALLOWED: &[&str] = &[
    "SELECT",
    "WITH",
    "SHOW",
    "DESCRIBE",
    "SUMMARIZE",
    "EXPLAIN",
    "FROM",
    "VALUES",
    "PRAGMA",
];

/// Pragmas that only read.
const ALLOWED_PRAGMAS: &[&str] = &[
    "table_info",
    "show_tables",
    "show_tables_expanded",
    "show",
    "database_size",
    "database_list",
    "version",
    "storage_info",
    "metadata_info",
];

/// Splits SQL into statements on top-level `;`, skipping quoted text and comments.
/// Returns the statements with comments removed and whitespace trimmed, empty ones dropped.
fn statements(sql: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                cur.push(' ');
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let mut depth = 0usize;
                loop {
                    if i + 1 >= chars.len() {
                        return Err("unterminated /* comment".to_owned());
                    }
                    if chars[i] == '/' && chars[i + 1] == '*' {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars[i + 1] == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                cur.push(' ');
                continue;
            }
            '\'' | '"' => {
                cur.push(c);
                i += 1;
                loop {
                    let Some(&d) = chars.get(i) else {
                        return Err(format!("unterminated {c}quoted text"));
                    };
                    cur.push(d);
                    i += 1;
                    if d == c {
                        // A doubled quote is an escaped quote.
                        if chars.get(i) == Some(&c) {
                            cur.push(c);
                            i += 1;
                            continue;
                        }
                        break;
                    }
                }
                continue;
            }
            '$' => {
                // Dollar-quoted string: $tag$ … $tag$ (tag may be empty).
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                if chars.get(j) == Some(&'$') {
                    let tag: String = chars[i..=j].iter().collect();
                    let rest: String = chars[j + 1..].iter().collect();
                    let Some(end) = rest.find(&tag) else {
                        return Err("unterminated dollar-quoted text".to_owned());
                    };
                    let body_chars = rest[..end].chars().count();
                    cur.push_str(&tag);
                    cur.push_str(&rest[..end]);
                    cur.push_str(&tag);
                    i = j + 1 + body_chars + tag.chars().count();
                    continue;
                }
                cur.push(c);
            }
            ';' => {
                let s = cur.trim().to_owned();
                if !s.is_empty() {
                    out.push(s);
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
        i += 1;
    }
    let s = cur.trim().to_owned();
    if !s.is_empty() {
        out.push(s);
    }
    Ok(out)
}

/// The first word of a statement (after any opening parentheses), uppercased, and the rest.
fn first_word(stmt: &str) -> (String, &str) {
    let s = stmt.trim_start_matches(|c: char| c == '(' || c.is_whitespace());
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (s[..end].to_ascii_uppercase(), &s[end..])
}

fn check_statement(stmt: &str) -> Result<(), String> {
    let (word, rest) = first_word(stmt);
    if word.is_empty() {
        return Err("the query does not start with a statement keyword".to_owned());
    }
    if !ALLOWED.contains(&word.as_str()) {
        return Err(format!(
            "{word} statements are not allowed; only {} are",
            ALLOWED.join(" / ")
        ));
    }
    match word.as_str() {
        "PRAGMA" => {
            let (name, _) = first_word(rest);
            if !ALLOWED_PRAGMAS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&name))
            {
                return Err(format!(
                    "PRAGMA {} is not allowed; read-only pragmas are {}",
                    name.to_ascii_lowercase(),
                    ALLOWED_PRAGMAS.join(", ")
                ));
            }
        }
        "EXPLAIN" => {
            let (next, after) = first_word(rest);
            let inner = if next == "ANALYZE" { after } else { rest };
            check_statement(inner)?;
        }
        _ => {}
    }
    Ok(())
}

/// Accepts exactly one read-only statement (SELECT / WITH / SHOW / DESCRIBE / SUMMARIZE / EXPLAIN /
/// FROM / VALUES / a read-only PRAGMA); anything else is refused with the reason.
pub fn check_read_only(sql: &str) -> Result<(), RecorderError> {
    let refuse = |reason: String| RecorderError::QueryRefused { reason };
    let stmts = statements(sql).map_err(refuse)?;
    match stmts.as_slice() {
        [] => Err(refuse("the query is empty".to_owned())),
        [one] => check_statement(one).map_err(refuse),
        more => Err(refuse(format!(
            "only one statement is allowed, found {}",
            more.len()
        ))),
    }
}

/// Runs a checked query inside a transaction that is always rolled back.
pub fn run_read_only(conn: &Connection, sql: &str) -> Result<QueryResult, RecorderError> {
    check_read_only(sql)?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    let result = collect(conn, sql);
    let rollback = conn.execute_batch("ROLLBACK");
    let out = result?;
    rollback?;
    Ok(out)
}

fn collect(conn: &Connection, sql: &str) -> Result<QueryResult, RecorderError> {
    let mut stmt = conn.prepare(sql).map_err(explain)?;
    let mut rows = stmt.query([]).map_err(explain)?;
    let (columns, kinds) = {
        let st = rows.as_ref().ok_or_else(|| RecorderError::QueryRefused {
            reason: "the statement returned no result".to_owned(),
        })?;
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
    let mut out = QueryResult {
        columns,
        rows: Vec::new(),
    };
    while let Some(row) = rows.next().map_err(explain)? {
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
                .map_err(|_| RecorderError::QueryRefused {
                    reason: format!(
                        "column {} has a type that cannot be converted to JSON; CAST it",
                        out.columns[i]
                    ),
                })??,
            };
            values.push(value);
        }
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

/// Opens `db_path` read-only (no proxy may have it open) and runs one read-only query.
pub fn query_file_read_only(db_path: &Path, sql: &str) -> Result<QueryResult, RecorderError> {
    check_read_only(sql)?;
    let config = Config::default()
        .access_mode(AccessMode::ReadOnly)?
        .enable_autoload_extension(false)?
        .enable_external_access(false)?;
    let conn = Connection::open_with_flags(db_path, config)?;
    run_read_only(&conn, sql)
}

/// DuckDB's refusal of file access (external access is disabled on every database agentcap
/// opens), turned into a clear refusal; other errors pass through.
fn explain(e: duckdb::Error) -> RecorderError {
    let text = e.to_string();
    if text.contains("disabled through configuration")
        || text.contains("disabled by configuration")
        || text.starts_with("Permission Error")
    {
        RecorderError::QueryRefused {
            reason: format!(
                "queries read the recording only: reading or writing other files (read_csv, read_text, COPY, ATTACH, INSTALL, LOAD, ...) is disabled ({text})"
            ),
        }
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

    #[test]
    fn accepts_read_only_statements() {
        for sql in [
            "SELECT 1",
            "select * from exchanges;",
            "  -- a comment\n WITH x AS (SELECT 1) SELECT * FROM x ;  ",
            "SHOW TABLES",
            "DESCRIBE exchanges",
            "SUMMARIZE sse_events",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "PRAGMA table_info('exchanges')",
            "FROM exchanges LIMIT 1",
            "(SELECT 1) UNION (SELECT 2)",
            "SELECT 'a;b', \"odd;name\" FROM t",
            "SELECT $$ ; $$, $x$;$x$",
            "/* block ; comment */ SELECT 1",
        ] {
            check_read_only(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
        }
    }

    #[test]
    fn refuses_writes_and_multiple_statements() {
        assert!(
            refused("INSERT INTO exchanges VALUES (1)")
                .starts_with("INSERT statements are not allowed")
        );
        assert!(refused("DROP TABLE exchanges").starts_with("DROP statements"));
        assert!(refused("SELECT 1; DROP TABLE exchanges").contains("only one statement"));
        assert!(refused("SELECT 1; SELECT 2").contains("found 2"));
        assert!(refused("PRAGMA enable_profiling").contains("not allowed"));
        assert!(refused("EXPLAIN ANALYZE DELETE FROM exchanges").starts_with("DELETE"));
        assert!(refused("").contains("empty"));
        assert!(refused("-- nothing").contains("empty"));
        assert!(refused("SELECT 'unterminated").contains("unterminated"));
        assert!(refused("ATTACH 'x.db'").starts_with("ATTACH"));
        assert!(refused("COPY exchanges TO 'x.csv'").starts_with("COPY"));
        assert!(refused("SET threads = 1").starts_with("SET"));
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
}
