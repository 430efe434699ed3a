//! `/`: recorded exchanges, newest first, filtered by the query string, paged by keyset
//! (`before=<started_at>,<id>`), with a live tail toggle.

use maud::{Markup, html};

use super::{fmt_bytes, fmt_ts, fmt_us, layout};
use crate::db::{Param, Row, Rows};
use crate::web::{Query, enc};
use crate::{UiError, UiState};

/// The columns a list row needs (bodies stay out: a page reads no large value).
pub(crate) const COLUMNS: &str = "id, started_at, method, path, operation, status, outcome, is_stream, event_count, \
     total_us, first_event_us, upstream_us, overhead_us, agent_id, model, session, key_fingerprint, \
     conversation_id, response_bytes";

/// The filters of the list, from the query string. Every value becomes a SQL parameter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filters {
    pairs: Vec<(&'static str, String)>,
    clauses: Vec<String>,
    params: Vec<Param>,
}

/// Filter fields compared for equality with a column: (query key, column, label).
const EQUAL: &[(&str, &str, &str)] = &[
    ("operation", "operation", "Operation"),
    ("outcome", "outcome", "Outcome"),
    ("agent", "agent_id", "Agent"),
    ("model", "model", "Model"),
    ("session", "session", "Session"),
    ("key", "key_fingerprint", "Key fingerprint"),
    ("conversation", "conversation_id", "Conversation"),
];

impl Filters {
    /// Reads the filters; malformed values are refused with the reason.
    pub(crate) fn parse(q: &Query) -> Result<Self, UiError> {
        let mut f = Filters::default();
        for (key, column, _) in EQUAL {
            if let Some(v) = q.get(key) {
                f.add(
                    key,
                    v,
                    format!("{column} = ?"),
                    vec![Param::Text(v.to_string())],
                );
            }
        }
        if let Some(v) = q.get("status") {
            let n: i64 = v
                .parse()
                .map_err(|_| UiError::BadRequest(format!("status must be a number, not {v:?}")))?;
            f.add("status", v, "status = ?".into(), vec![Param::Int(n)]);
        }
        match q.get("stream") {
            None => {}
            Some(v @ "yes") => f.add("stream", v, "is_stream".into(), vec![]),
            Some(v @ "no") => f.add("stream", v, "NOT COALESCE(is_stream, false)".into(), vec![]),
            Some(v) => {
                return Err(UiError::BadRequest(format!(
                    "stream is yes or no, not {v:?}"
                )));
            }
        }
        for (key, op) in [("from", ">="), ("to", "<")] {
            if let Some(v) = q.get(key) {
                let ts = parse_time(v).ok_or_else(|| {
                    UiError::BadRequest(format!(
                        "{key} must be a time like 2026-12-03T10:00 or RFC 3339, not {v:?}"
                    ))
                })?;
                f.add(
                    key,
                    v,
                    format!("started_at {op} CAST(? AS TIMESTAMPTZ)"),
                    vec![Param::Text(ts)],
                );
            }
        }
        if let Some(v) = q.get("tag") {
            let (k, val) = v
                .split_once(':')
                .ok_or_else(|| UiError::BadRequest(format!("tag is key:value, not {v:?}")))?;
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(UiError::BadRequest(format!(
                    "a tag name has letters, digits, '-', '_' and '.' only, not {k:?}"
                )));
            }
            // The name is checked above; it is still passed as a parameter (the JSON path).
            f.add(
                "tag",
                v,
                "json_extract_string(tags, ?) = ?".into(),
                vec![
                    Param::Text(format!("$.\"{}\"", k.to_ascii_lowercase())),
                    Param::Text(val.to_string()),
                ],
            );
        }
        Ok(f)
    }

    fn add(&mut self, key: &'static str, value: &str, clause: String, params: Vec<Param>) {
        self.pairs.push((key, value.to_string()));
        self.clauses.push(clause);
        self.params.extend(params);
    }

    /// `AND …` clauses (empty when no filter).
    pub(crate) fn sql(&self) -> String {
        self.clauses.iter().map(|c| format!(" AND ({c})")).collect()
    }

    /// The parameters of [`Filters::sql`], in order.
    pub(crate) fn params(&self) -> Vec<Param> {
        self.params.clone()
    }

    /// The filters as a query string (`k=v&…`, encoded), for links that keep them.
    pub(crate) fn query_string(&self) -> String {
        self.pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn value(&self, key: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A time filter: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` (a `datetime-local` input) read as UTC.
fn parse_time(v: &str) -> Option<String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&chrono::Utc).to_rfc3339());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, fmt) {
            return Some(t.and_utc().to_rfc3339());
        }
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().to_rfc3339())
}

/// The keyset cursor `<started_at>,<id>`.
fn parse_cursor(v: &str) -> Result<(String, String), UiError> {
    let bad = || UiError::BadRequest(format!("before is <started_at>,<id>, not {v:?}"));
    let (ts, id) = v.split_once(',').ok_or_else(bad)?;
    chrono::DateTime::parse_from_rfc3339(ts).map_err(|_| bad())?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok((ts.to_string(), id.to_string()))
}

/// The list's SQL: filters, then the keyset condition, newest first, one row more than a page (to know
/// whether an older page exists).
pub(crate) fn list_sql(filters: &Filters, keyset: bool) -> String {
    let before = if keyset {
        " AND (started_at < CAST(? AS TIMESTAMPTZ) OR (started_at = CAST(? AS TIMESTAMPTZ) AND id < ?))"
    } else {
        ""
    };
    format!(
        "SELECT {COLUMNS} FROM exchanges WHERE true{}{before} ORDER BY started_at DESC, id DESC LIMIT ?",
        filters.sql()
    )
}

/// The exchanges page.
pub async fn page(state: &UiState, q: &Query) -> Result<Markup, UiError> {
    let filters = Filters::parse(q)?;
    let cursor = q.get("before").map(parse_cursor).transpose()?;
    let n = state.config().page_rows;
    let mut params = filters.params();
    if let Some((ts, id)) = &cursor {
        params.extend([
            Param::Text(ts.clone()),
            Param::Text(ts.clone()),
            Param::Text(id.clone()),
        ]);
    }
    params.push(Param::Int(i64::try_from(n + 1).unwrap_or(i64::MAX)));
    let result = state
        .query(list_sql(&filters, cursor.is_some()), params)
        .await?;
    let newest = state
        .query("SELECT max(rowid) AS r FROM exchanges".into(), vec![])
        .await?;
    let tail_after = Rows::new(&newest)
        .first()
        .and_then(|r| r.int("r"))
        .unwrap_or(-1);
    let rows = Rows::new(&result);
    let shown: Vec<Row<'_>> = rows.iter().take(n).collect();
    let older = (rows.len() > n)
        .then(|| shown.last().map(cursor_of))
        .flatten()
        .map(|c| {
            let fq = filters.query_string();
            let sep = if fq.is_empty() { "" } else { "&" };
            format!("/?{fq}{sep}before={}", enc(&c))
        });
    let fq = filters.query_string();
    Ok(layout(
        "Exchanges",
        html! {
            (filter_form(&filters))
            div.bar {
                label.tail { input #tail type="checkbox"; " Live tail" }
                span #tail-status {}
                @if cursor.is_some() {
                    a href={ "/?" (fq) } { "Newest" }
                }
            }
            @if shown.is_empty() {
                p.empty #empty { "No exchanges match." }
            }
            table #exchanges.list data-tail-after=(tail_after) data-filters=(fq) {
                thead { tr {
                    th { "Started (UTC)" } th { "Operation" } th { "Status" } th { "Outcome" }
                    th { "Stream" } th.num { "Total" } th.num title="Time to the first SSE event (the proxy's first_event_us); the exchange page marks the first message.output.delta" { "First event" } th.num { "Upstream" }
                    th.num { "Proxy added" } th { "Agent" } th { "Model" } th { "Session" } th { "Key" }
                } }
                tbody {
                    @for r in &shown { (row(r)) }
                }
            }
            nav.pager {
                @if let Some(href) = &older { a #older href=(href) { "Older →" } }
            }
        },
    ))
}

/// The keyset cursor of a row.
pub(crate) fn cursor_of(r: &Row<'_>) -> String {
    format!(
        "{},{}",
        r.text("started_at").unwrap_or_default(),
        r.text("id").unwrap_or_default()
    )
}

/// One list row (also what the live tail sends).
pub(crate) fn row(r: &Row<'_>) -> Markup {
    let id = r.text("id").unwrap_or_default();
    let status = r.int("status");
    let outcome = r.text("outcome").unwrap_or_default();
    let bad = status.is_some_and(|s| s >= 400) || !matches!(outcome.as_str(), "complete" | "");
    html! {
        tr.bad[bad] data-id=(id) {
            td { a href={ "/exchanges/" (enc(&id)) } { (fmt_ts(r.text("started_at").as_deref())) } }
            td { (cell(r.text("operation"))) }
            td { (status.map(|s| s.to_string()).unwrap_or_default()) }
            td { (outcome) }
            td { @if r.bool("is_stream") { "SSE · " (r.int("event_count").unwrap_or(0)) } @else { (fmt_bytes(r.int("response_bytes"))) } }
            td.num { (fmt_us(r.int("total_us"))) }
            td.num { (fmt_us(r.int("first_event_us"))) }
            td.num { (fmt_us(r.int("upstream_us"))) }
            td.num { (fmt_us(r.int("overhead_us"))) }
            td { (cell(r.text("agent_id"))) }
            td { (cell(r.text("model"))) }
            td { (cell(r.text("session"))) }
            td.mono { (cell(r.text("key_fingerprint"))) }
        }
    }
}

/// Characters of a list cell shown; longer recorded values end in "…" (the exchange page shows them whole).
const CELL_CHARS: usize = 120;

fn cell(v: Option<String>) -> String {
    let v = v.unwrap_or_default();
    match v.char_indices().nth(CELL_CHARS) {
        Some((i, _)) => format!("{}…", &v[..i]),
        None => v,
    }
}

fn filter_form(f: &Filters) -> Markup {
    html! {
        form.filters method="get" action="/" {
            @for (key, _, label) in EQUAL {
                label { (label) input name=(key) value=(f.value(key)); }
            }
            label { "Status" input name="status" size="4" value=(f.value("status")); }
            label { "Stream"
                select name="stream" {
                    option value="" selected[f.value("stream").is_empty()] { "any" }
                    option value="yes" selected[f.value("stream") == "yes"] { "stream" }
                    option value="no" selected[f.value("stream") == "no"] { "non-stream" }
                }
            }
            label { "Tag (key:value)" input name="tag" value=(f.value("tag")); }
            label { "From (UTC)" input name="from" placeholder="2026-12-03T10:00" value=(f.value("from")); }
            label { "To (UTC)" input name="to" value=(f.value("to")); }
            button type="submit" { "Filter" }
            a href="/" { "Clear" }
        }
    }
}
