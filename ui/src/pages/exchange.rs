//! `/exchanges/<id>`: one exchange — timings, headers as recorded (already redacted), bodies (pretty JSON,
//! collapsed and cut when large), the SSE timeline and event list (paged), the entries it carried.

use maud::{Markup, html};
use serde_json::Value;

use super::{clip, fmt_bytes, fmt_ts, fmt_us, layout};
use crate::db::{Param, Row, Rows};
use crate::svg::{TimelineEvent, timeline};
use crate::web::{Query, enc};
use crate::{UiError, UiState};

/// Bodies up to this size are shown open; larger ones start collapsed.
const OPEN_BELOW: usize = 4096;
/// Characters of an event's data shown in the event list.
const EVENT_DATA_CHARS: i64 = 240;
/// Entries listed at most.
const MAX_ENTRIES: i64 = 500;
/// Characters of an entry's text or arguments shown.
const ENTRY_CHARS: usize = 4096;

const DETAIL_SQL: &str = "SELECT id, started_at, method, path, query, operation, client_addr, \
  left(CAST(request_headers AS VARCHAR), ?) AS request_headers, \
  left(CAST(request_body AS VARCHAR), ?) AS request_body, strlen(CAST(request_body AS VARCHAR)) AS request_body_len, \
  left(request_body_raw, ?) AS request_body_raw, strlen(request_body_raw) AS request_body_raw_len, \
  request_parse_error, request_truncated, request_bytes, status, \
  left(CAST(response_headers AS VARCHAR), ?) AS response_headers, \
  left(CAST(response_body AS VARCHAR), ?) AS response_body, strlen(CAST(response_body AS VARCHAR)) AS response_body_len, \
  left(response_body_raw, ?) AS response_body_raw, strlen(response_body_raw) AS response_body_raw_len, \
  response_parse_error, response_truncated, response_bytes, is_stream, response_headers_us, first_event_us, \
  total_us, upstream_us, overhead_us, outcome, error, key_fingerprint, session, \
  left(CAST(tags AS VARCHAR), ?) AS tags, conversation_id, agent_id, model, event_count, upstream_version \
  FROM exchanges WHERE id = ? LIMIT 1";

const EVENTS_SQL: &str = "SELECT seq, event_type, offset_us, size, \
  left(CAST(data AS VARCHAR), ?) AS data_head, strlen(CAST(data AS VARCHAR)) AS data_len \
  FROM sse_events WHERE exchange_id = ? AND seq >= ? ORDER BY seq LIMIT ?";

const EVENT_STATS_SQL: &str = "SELECT count(*) AS n, \
  min(offset_us) FILTER (WHERE event_type = 'message.output.delta') AS ttft_us \
  FROM sse_events WHERE exchange_id = ?";

const ENTRIES_SQL: &str = "SELECT direction, position, type, role, agent_id, model, left(text, ?) AS text, \
  strlen(text) AS text_len, name, tool_call_id, left(arguments, ?) AS arguments, strlen(arguments) AS arguments_len, \
  entry_id, conversation_id FROM entries WHERE exchange_id = ? \
  ORDER BY CASE direction WHEN 'input' THEN 0 ELSE 1 END, position LIMIT ?";

fn int(n: usize) -> Param {
    Param::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The exchange page; `events_from=<seq>` pages the SSE events.
pub async fn page(state: &UiState, id: &str, q: &Query) -> Result<Markup, UiError> {
    let cfg = state.config();
    let preview = cfg.body_preview_bytes;
    let mut params = vec![int(preview); 7];
    params.push(Param::Text(id.to_string()));
    let detail = state.query(DETAIL_SQL.into(), params).await?;
    let rows = Rows::new(&detail);
    let Some(x) = rows.first() else {
        return Err(UiError::NotFound(format!("no exchange {id}")));
    };
    let from: i64 = match q.get("events_from") {
        Some(v) => v
            .parse()
            .map_err(|_| UiError::BadRequest(format!("events_from is a number, not {v:?}")))?,
        None => 0,
    };
    let per_page = cfg.timeline_events;
    let (events, stats) = if x.bool("is_stream") {
        let ev = state
            .query(
                EVENTS_SQL.into(),
                vec![
                    Param::Int(EVENT_DATA_CHARS),
                    Param::Text(id.to_string()),
                    Param::Int(from),
                    int(per_page + 1),
                ],
            )
            .await?;
        let st = state
            .query(EVENT_STATS_SQL.into(), vec![Param::Text(id.to_string())])
            .await?;
        (Some(ev), Some(st))
    } else {
        (None, None)
    };
    let entries = state
        .query(
            ENTRIES_SQL.into(),
            vec![
                int(ENTRY_CHARS),
                int(ENTRY_CHARS),
                Param::Text(id.to_string()),
                Param::Int(MAX_ENTRIES),
            ],
        )
        .await?;
    let title = format!(
        "{} {}",
        x.text("method").unwrap_or_default(),
        x.text("path").unwrap_or_default()
    );
    Ok(layout(
        &title,
        html! {
            (summary(&x))
            h2 { "Request" }
            (headers("Request headers", x.text("request_headers").as_deref(), preview))
            (body("Request body", &x, "request", preview))
            h2 { "Response" }
            (headers("Response headers", x.text("response_headers").as_deref(), preview))
            @if let (Some(ev), Some(st)) = (&events, &stats) {
                (sse(id, &x, &Rows::new(ev), &Rows::new(st), from, per_page))
            } @else {
                (body("Response body", &x, "response", preview))
            }
            h2 { "Entries" }
            (entries_table(&Rows::new(&entries)))
        },
    ))
}

fn summary(x: &Row<'_>) -> Markup {
    let conv = x.text("conversation_id");
    html! {
        dl.summary {
            dt { "Exchange" } dd.mono { (x.text("id").unwrap_or_default()) }
            dt { "Started (UTC)" } dd { (fmt_ts(x.text("started_at").as_deref())) }
            dt { "Operation" } dd { (x.text("operation").unwrap_or_default()) }
            @if let Some(q) = x.text("query") { dt { "Query string" } dd.mono { (q) } }
            dt { "Status" } dd { (x.text("status").unwrap_or_default()) " · " (x.text("outcome").unwrap_or_default()) }
            @if let Some(e) = x.text("error") { dt { "Error" } dd.error { (e) } }
            dt { "Timings" } dd {
                "total " (fmt_us(x.int("total_us")))
                " · response head " (fmt_us(x.int("response_headers_us")))
                @if x.int("first_event_us").is_some() { " · first event " (fmt_us(x.int("first_event_us"))) }
                " · upstream " (fmt_us(x.int("upstream_us")))
                " · proxy added " (fmt_us(x.int("overhead_us")))
            }
            dt { "Conversation" } dd {
                @if let Some(c) = &conv { a #conversation-link href={ "/conversations/" (enc(c)) } { (c) } }
            }
            dt { "Agent / model" } dd { (x.text("agent_id").unwrap_or_default()) " " (x.text("model").unwrap_or_default()) }
            dt { "Session" } dd { (x.text("session").unwrap_or_default()) }
            dt { "Tags" } dd.mono { (x.text("tags").unwrap_or_default()) }
            dt { "Key fingerprint" } dd.mono { (x.text("key_fingerprint").unwrap_or_default()) }
            dt { "Client" } dd.mono { (x.text("client_addr").unwrap_or_default()) }
            dt { "Upstream HTTP" } dd { (x.text("upstream_version").unwrap_or_default()) }
        }
    }
}

fn headers(label: &str, json: Option<&str>, preview: usize) -> Markup {
    let parsed: Option<serde_json::Map<String, Value>> =
        json.and_then(|j| serde_json::from_str(j).ok());
    html! {
        details.headers open {
            summary { (label) }
            @match (&parsed, json) {
                (Some(map), _) => table.kv { @for (k, v) in map {
                    tr { th { (k) } td.mono { @match v { Value::String(s) => (s), other => (other.to_string()) } } }
                } },
                (None, Some(raw)) => pre { (clip(raw, preview).0) },
                (None, None) => p.muted { "none recorded" },
            }
        }
    }
}

/// A body: the JSON column pretty-printed when it is whole, else the raw text; cut at `preview` bytes with
/// the sizes said; collapsed when large.
fn body(label: &str, x: &Row<'_>, side: &str, preview: usize) -> Markup {
    let json = x.text(&format!("{side}_body"));
    let raw = x.text(&format!("{side}_body_raw"));
    let (text, stored) = match (json, raw) {
        (Some(j), _) => (Some(j), x.int(&format!("{side}_body_len"))),
        (None, Some(r)) => (Some(r), x.int(&format!("{side}_body_raw_len"))),
        (None, None) => (None, None),
    };
    let wire = x.int(&format!("{side}_bytes"));
    let cut_at_capture = x.bool(&format!("{side}_truncated"));
    let parse_error = x.text(&format!("{side}_parse_error"));
    let stored_len = stored.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let Some(text) = text else {
        return html! { p.muted { (label) ": none recorded (" (fmt_bytes(wire)) " on the wire)" } };
    };
    let whole = stored_len <= preview && text.len() <= preview;
    let pretty = whole
        .then(|| serde_json::from_str::<Value>(&text).ok())
        .flatten()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    let (shown, cut) = match &pretty {
        Some(p) => (p.as_str(), false),
        None => {
            let (s, c) = clip(&text, preview);
            (s, c || !whole)
        }
    };
    html! {
        details.body open[stored_len <= OPEN_BELOW] {
            summary {
                (label) " · " (fmt_bytes(wire)) " on the wire"
                @if cut_at_capture { " · stored cut at the capture cap" }
                @if cut { " · showing the first " (fmt_bytes(i64::try_from(shown.len()).ok())) " of " (fmt_bytes(stored)) }
            }
            @if let Some(e) = parse_error { p.muted { "stored as text: " (e) } }
            pre.body { (shown) }
            @if cut { p.cut { "… cut here (" (fmt_bytes(stored)) " stored)" } }
        }
    }
}

fn sse(
    id: &str,
    x: &Row<'_>,
    ev: &Rows<'_>,
    stats: &Rows<'_>,
    from: i64,
    per_page: usize,
) -> Markup {
    let total = stats.first().and_then(|r| r.int("n")).unwrap_or(0);
    let ttft = stats.first().and_then(|r| r.int("ttft_us"));
    let list: Vec<Row<'_>> = ev.iter().take(per_page).collect();
    let events: Vec<TimelineEvent> = list
        .iter()
        .map(|r| TimelineEvent {
            seq: r.int("seq").unwrap_or(0),
            kind: r.text("event_type").unwrap_or_default(),
            offset_us: r.int("offset_us").unwrap_or(0),
            size: r.int("size").unwrap_or(0),
        })
        .collect();
    let next = (ev.len() > per_page)
        .then(|| events.last().map(|e| e.seq + 1))
        .flatten();
    html! {
        h3 { "SSE timeline" }
        p.muted {
            (total) " events"
            @if from > 0 || next.is_some() {
                " · showing " (events.len()) " from #" (from)
            }
            " · TTFT = first message.output.delta"
        }
        (timeline(&events, x.int("total_us"), ttft))
        nav.pager {
            @if from > 0 { a href={ "/exchanges/" (enc(id)) } { "First events" } }
            @if let Some(n) = next { a #more-events href={ "/exchanges/" (enc(id)) "?events_from=" (n) } { "More events →" } }
        }
        details.events {
            summary { "Events (data cut at " (EVENT_DATA_CHARS) " characters)" }
            table.list {
                thead { tr { th.num { "#" } th { "Type" } th.num { "Offset" } th.num { "Bytes" } th { "Data" } } }
                tbody {
                    @for r in &list {
                        tr {
                            td.num { (r.int("seq").unwrap_or(0)) }
                            td { (r.text("event_type").unwrap_or_default()) }
                            td.num { (fmt_us(r.int("offset_us"))) }
                            td.num { (r.int("size").unwrap_or(0)) }
                            td.mono {
                                (r.text("data_head").unwrap_or_default())
                                @if r.int("data_len").unwrap_or(0) > EVENT_DATA_CHARS { " … (" (fmt_bytes(r.int("data_len"))) ")" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Text of an entry column, cut at [`ENTRY_CHARS`] with the full size said.
fn long_text(r: &Row<'_>, col: &str) -> Markup {
    let t = r.text(col).unwrap_or_default();
    let len = r.int(&format!("{col}_len")).unwrap_or(0);
    html! {
        (t)
        @if usize::try_from(len).unwrap_or(0) > ENTRY_CHARS { span.cut { " … (" (fmt_bytes(Some(len))) ")" } }
    }
}

fn entries_table(rows: &Rows<'_>) -> Markup {
    html! {
        @if rows.is_empty() { p.muted { "No conversation entries in this exchange." } }
        @else {
            table.list.entries {
                thead { tr { th { "Dir" } th.num { "#" } th { "Type" } th { "Who" } th { "Name / call" } th { "Text / arguments" } } }
                tbody {
                    @for r in rows.iter() {
                        tr {
                            td { (r.text("direction").unwrap_or_default()) }
                            td.num { (r.int("position").unwrap_or(0)) }
                            td { span.etype { (r.text("type").unwrap_or_default()) } }
                            td { (r.text("role").or(r.text("agent_id")).or(r.text("model")).unwrap_or_default()) }
                            td.mono { (r.text("name").unwrap_or_default()) " " (r.text("tool_call_id").unwrap_or_default()) }
                            td.text {
                                (long_text(&r, "text"))
                                @if r.text("arguments").is_some() { div.mono { (long_text(&r, "arguments")) } }
                            }
                        }
                    }
                }
            }
        }
    }
}
