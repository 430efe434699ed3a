//! `/agents`, `/usage` and `/sql`: the agents seen, tokens over time, and a read-only SQL console.

use maud::{Markup, html};
use serde_json::Value;

use super::{clip, fmt_ts, fmt_us, layout};
use crate::db::{Param, Rows};
use crate::svg::bar_chart;
use crate::web::{Query, enc};
use crate::{UiError, UiState};

/// Rows a console query shows at most.
pub const SQL_ROWS: usize = 1000;
/// Characters of a console cell shown.
const SQL_CELL: usize = 500;
/// Agents listed at most.
const MAX_AGENTS: i64 = 500;
/// Buckets of the usage chart at most.
const MAX_BUCKETS: i64 = 168;

const AGENTS_SQL: &str = "SELECT a.agent_id, max(a.version) AS latest, min(a.first_seen) AS first_seen, \
  left(CAST(arg_max(a.snapshot, a.version) AS VARCHAR), 65536) AS snapshot, \
  (SELECT count(*) FROM conversations c WHERE c.agent_id = a.agent_id) AS conversations \
  FROM agents a GROUP BY a.agent_id ORDER BY first_seen DESC NULLS LAST, a.agent_id LIMIT ?";

/// The agents seen in agents API responses.
pub async fn agents(state: &UiState) -> Result<Markup, UiError> {
    let r = state
        .query(AGENTS_SQL.into(), vec![Param::Int(MAX_AGENTS)])
        .await?;
    let rows = Rows::new(&r);
    Ok(layout(
        "Agents",
        html! {
            @if rows.is_empty() { p.empty { "No agents recorded." } }
            @else {
                table.list #agents {
                    thead { tr { th { "Agent" } th { "Name" } th { "Model" } th { "Tools" } th { "Handoffs" } th.num { "Latest version" }
                        th.num { "Conversations" } th { "First seen (UTC)" } } }
                    tbody { @for a in rows.iter() {
                        @let snap: Value = a.text("snapshot").and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null);
                        @let id = a.text("agent_id").unwrap_or_default();
                        tr {
                            td.mono { a href={ "/?agent=" (enc(&id)) } { (id) } }
                            td { (snap.get("name").and_then(Value::as_str).unwrap_or("")) }
                            td { (snap.get("model").and_then(Value::as_str).unwrap_or("")) }
                            td { (tools(&snap)) }
                            td.mono { (snap.get("handoffs").and_then(Value::as_array).map(|h| h.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                            td.num { (a.int("latest").unwrap_or(0)) }
                            td.num { (a.int("conversations").unwrap_or(0)) }
                            td { (fmt_ts(a.text("first_seen").as_deref())) }
                        }
                    } }
                }
            }
        },
    ))
}

fn tools(snap: &Value) -> String {
    snap.get("tools")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .map(|tool| {
                    let kind = tool.get("type").and_then(Value::as_str).unwrap_or("?");
                    match tool.pointer("/function/name").and_then(Value::as_str) {
                        Some(n) => format!("{kind}:{n}"),
                        None => kind.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The usage statement. Placeholders, in order: the bucket unit (`hour` or `day`), the number of newest
/// buckets, the unit again, the split (`agent` or `model`).
///
/// One row per (bucket, agent or model) and, through the grouping sets, one per bucket over every split
/// (`whole` = 1): the bucket's percentiles are those of all its exchanges, not a mix of the splits'. Only
/// the exchanges of the newest buckets are read (`started_at` bounds the scan).
const USAGE_SQL: &str = "WITH b AS (
  SELECT DISTINCT date_trunc(?, CAST(started_at AS TIMESTAMP)) AS bucket FROM exchanges
  WHERE started_at IS NOT NULL ORDER BY bucket DESC LIMIT ?
), e AS (
  SELECT id, total_us, date_trunc(?, CAST(started_at AS TIMESTAMP)) AS bucket,
         CASE ? WHEN 'model' THEN model ELSE agent_id END AS split
  FROM exchanges
  WHERE CAST(started_at AS TIMESTAMP) >= (SELECT min(bucket) FROM b)
)
SELECT CAST(e.bucket AS VARCHAR) AS bucket,
       e.split,
       CAST(grouping(e.split) AS BIGINT) AS whole,
       count(*) AS requests,
       CAST(sum(u.prompt_tokens) AS BIGINT) AS prompt,
       CAST(sum(u.completion_tokens) AS BIGINT) AS completion,
       CAST(sum(u.connector_tokens) AS BIGINT) AS connector,
       CAST(sum(u.total_tokens) AS BIGINT) AS total,
       CAST(quantile_disc(e.total_us, 0.5) AS BIGINT) AS p50_us,
       CAST(quantile_disc(e.total_us, 0.99) AS BIGINT) AS p99_us
FROM e LEFT JOIN usage u ON u.exchange_id = e.id
GROUP BY GROUPING SETS ((e.bucket, e.split), (e.bucket))
ORDER BY e.bucket DESC, whole DESC, e.split NULLS LAST";

/// Requests, tokens (prompt / completion / connector) and p50 / p99 total time per hour or day
/// (`?bucket=hour|day`, `by` also read), split by agent or model (`?split=agent|model`): charts of the
/// buckets' totals and a table of each bucket's total and its splits.
pub async fn usage(state: &UiState, q: &Query) -> Result<Markup, UiError> {
    let bucket = match q.get("bucket").or_else(|| q.get("by")) {
        None | Some("hour") => "hour",
        Some("day") => "day",
        Some(other) => {
            return Err(UiError::BadRequest(format!(
                "bucket is hour or day, not {other:?}"
            )));
        }
    };
    let split = match q.get("split") {
        None | Some("agent") => "agent",
        Some("model") => "model",
        Some(other) => {
            return Err(UiError::BadRequest(format!(
                "split is agent or model, not {other:?}"
            )));
        }
    };
    let unit = || Param::Text(bucket.to_string());
    let r = state
        .query(
            USAGE_SQL.into(),
            vec![
                unit(),
                Param::Int(MAX_BUCKETS),
                unit(),
                Param::Text(split.to_string()),
            ],
        )
        .await?;
    let rows = Rows::new(&r);
    let totals: Vec<_> = rows.iter().filter(|r| r.int("whole") == Some(1)).collect();
    let series = |col: &str, scale: f64| -> Vec<(String, f64)> {
        totals
            .iter()
            .rev()
            .map(|r| {
                (
                    r.text("bucket").unwrap_or_default(),
                    r.float(col).unwrap_or(0.0) / scale,
                )
            })
            .collect()
    };
    let link = |b: &str, s: &str| format!("/usage?bucket={b}&split={s}");
    let none = if split == "agent" {
        "(no agent)"
    } else {
        "(no model)"
    };
    Ok(layout(
        "Usage",
        html! {
            p { "Per " (bucket) " (UTC), split by " (split) " · "
                @if bucket == "hour" { a #by-day href=(link("day", split)) { "per day" } }
                @else { a #by-hour href=(link("hour", split)) { "per hour" } }
                " · "
                @if split == "agent" { a #split-model href=(link(bucket, "model")) { "split by model" } }
                @else { a #split-agent href=(link(bucket, "agent")) { "split by agent" } }
            }
            @if rows.is_empty() { p.empty { "Nothing recorded." } }
            @else {
                div.charts {
                    figure { figcaption { "Requests" } (bar_chart(&series("requests", 1.0))) }
                    figure { figcaption { "Tokens (total)" } (bar_chart(&series("total", 1.0))) }
                    figure { figcaption { "p50 total time (ms)" } (bar_chart(&series("p50_us", 1_000.0))) }
                    figure { figcaption { "p99 total time (ms)" } (bar_chart(&series("p99_us", 1_000.0))) }
                }
                table.list #usage {
                    thead { tr {
                        th { "From" } th { (split) } th.num { "Requests" } th.num { "Prompt" } th.num { "Completion" }
                        th.num { "Connector" } th.num { "Total tokens" } th.num { "p50" } th.num { "p99" }
                    } }
                    tbody { @for r in rows.iter() {
                        @let whole = r.int("whole") == Some(1);
                        tr.total[whole] data-bucket=(r.text("bucket").unwrap_or_default())
                            data-split=(if whole { "*".to_string() } else { r.text("split").unwrap_or_default() }) {
                            td { @if whole { (r.text("bucket").unwrap_or_default()) } }
                            td { @if whole { "all" } @else { (r.text("split").unwrap_or_else(|| none.to_string())) } }
                            td.num { (r.int("requests").unwrap_or(0)) }
                            td.num { (r.int("prompt").unwrap_or(0)) }
                            td.num { (r.int("completion").unwrap_or(0)) }
                            td.num { (r.int("connector").unwrap_or(0)) }
                            td.num { (r.int("total").unwrap_or(0)) }
                            td.num { (fmt_us(r.int("p50_us"))) }
                            td.num { (fmt_us(r.int("p99_us"))) }
                        }
                    } }
                }
            }
        },
    ))
}

/// Wraps a row-returning statement so at most `SQL_ROWS + 1` rows come back; other statements (SHOW,
/// DESCRIBE, PRAGMA, EXPLAIN, SUMMARIZE) return few rows and run as they are. The read-only filter checks the
/// final text, so wrapping cannot smuggle a second statement in.
pub fn bounded_sql(sql: &str) -> String {
    let body = sql.trim().trim_end_matches(';').trim_end();
    let first = body
        .trim_start_matches(|c: char| c == '(' || c.is_whitespace())
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    if matches!(first.as_str(), "SELECT" | "WITH" | "FROM" | "VALUES") {
        format!("SELECT * FROM (\n{body}\n) LIMIT {}", SQL_ROWS + 1)
    } else {
        body.to_string()
    }
}

/// The read-only SQL console: one statement through the recorder's read-only filter, in a rolled-back
/// transaction, on a database without external access.
pub async fn sql(state: &UiState, q: &Query) -> Result<Markup, UiError> {
    let text = q.get("q").unwrap_or("").to_string();
    let result = if text.is_empty() {
        None
    } else {
        let wrapped = bounded_sql(&text);
        Some(state.with_db(move |db| db.query(&wrapped, &[])).await?)
    };
    Ok(layout(
        "SQL (read-only)",
        html! {
            form.sql method="get" action="/sql" {
                textarea name="q" rows="6" cols="100" placeholder="SELECT operation, count(*) FROM exchanges GROUP BY 1" { (text) }
                div { button type="submit" { "Run" } " " span.muted { "one read-only statement; at most " (SQL_ROWS) " rows shown" } }
            }
            @match &result {
                None => {}
                Some(Err(e)) => p.error { (e.to_string()) },
                Some(Ok(r)) => {
                    p.muted { (r.rows.len().min(SQL_ROWS)) " rows" @if r.rows.len() > SQL_ROWS { " (cut at " (SQL_ROWS) ")" } }
                    table.list #sql-result {
                        thead { tr { @for c in &r.columns { th { (c) } } } }
                        tbody { @for row in r.rows.iter().take(SQL_ROWS) { tr { @for v in row {
                            @let t = match v { Value::Null => String::new(), Value::String(s) => s.clone(), other => other.to_string() };
                            @let (shown, cut) = clip(&t, SQL_CELL);
                            td { (shown) @if cut { span.cut { "…" } } }
                        } } } }
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_sql_is_bounded() {
        assert_eq!(
            bounded_sql("SELECT 1;"),
            format!("SELECT * FROM (\nSELECT 1\n) LIMIT {}", SQL_ROWS + 1)
        );
        assert!(bounded_sql("select * from t -- c").contains("-- c\n) LIMIT"));
        assert_eq!(bounded_sql("SHOW TABLES"), "SHOW TABLES");
        let sneaky = bounded_sql("SELECT 1) ; DROP TABLE exchanges; SELECT (1");
        assert!(agentcap_proxy::recorder::query::check_read_only(&sneaky).is_err());
    }
}
