//! `/tail`: the exchanges list's live tail, as server-sent events.
//!
//! The server polls the database every `tail_interval` for rows appended after the last one it sent and
//! pushes each as an `event: row` whose data is the same `<tr>` the list renders (escaped by maud). The
//! cursor is DuckDB's `rowid`, i.e. commit order, not `started_at`: a long stream is committed after
//! shorter exchanges that started later, and a `started_at` cursor would skip it.
//!
//! Bounds: at most `max_tails` tails at once (503 beyond), at most [`ROWS_PER_POLL`] rows per poll, a
//! channel of [`CHANNEL`] events (the poller waits when the client reads slowly), and a comment every few
//! polls so a closed connection is noticed.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::UiState;
use crate::db::{Param, Rows};
use crate::pages::exchanges::{COLUMNS, Filters, row};
use crate::web::{self, ChannelBody, Query, UiBody, sse_event};

/// Rows sent per poll at most.
pub const ROWS_PER_POLL: usize = 100;
/// Events buffered for one client.
const CHANNEL: usize = 32;
/// A keep-alive comment every this many idle polls.
const PING_EVERY: u32 = 10;

/// Opens a tail: `after=<rowid>` (the page's newest row when it was rendered) plus the list's filters.
pub async fn stream(state: &UiState, q: &Query) -> Response<UiBody> {
    let filters = match Filters::parse(q) {
        Ok(f) => f,
        Err(e) => return web::text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
    };
    let Ok(permit) = state.tails.clone().try_acquire_owned() else {
        return web::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live tails are open\n",
        );
    };
    let after = q.get("after").and_then(|a| a.parse::<i64>().ok());
    let (tx, rx) = mpsc::channel(CHANNEL);
    let st = state.clone();
    let interval = state.config().tail_interval;
    tokio::spawn(async move {
        let _permit = permit;
        poll(st, filters, after, interval, tx).await;
    });
    let mut r = Response::new(ChannelBody::new(rx).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    *r.status_mut() = StatusCode::OK;
    r
}

async fn poll(
    st: UiState,
    filters: Filters,
    after: Option<i64>,
    interval: Duration,
    tx: mpsc::Sender<bytes::Bytes>,
) {
    let mut cursor = match after {
        Some(a) => a,
        None => match st
            .query("SELECT max(rowid) AS r FROM exchanges".into(), vec![])
            .await
        {
            Ok(r) => Rows::new(&r).first().and_then(|r| r.int("r")).unwrap_or(-1),
            Err(_) => return,
        },
    };
    let sql = format!(
        "SELECT rowid AS rid, {COLUMNS} FROM exchanges WHERE rowid > ?{} ORDER BY rowid LIMIT {ROWS_PER_POLL}",
        filters.sql()
    );
    if tx.send(web::sse_event("ready", "")).await.is_err() {
        return;
    }
    let mut idle = 0u32;
    loop {
        if tx.is_closed() {
            return;
        }
        let mut params = vec![Param::Int(cursor)];
        params.extend(filters.params());
        let result = match st.query(sql.clone(), params).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(sse_event("failed", &e.to_string())).await;
                return;
            }
        };
        let rows = Rows::new(&result);
        for r in rows.iter() {
            cursor = cursor.max(r.int("rid").unwrap_or(cursor));
            // Line breaks inside recorded values become character references, so the fragment is one
            // SSE data line and the same HTML once parsed.
            let fragment = row(&r)
                .into_string()
                .replace('\r', "&#13;")
                .replace('\n', "&#10;");
            if tx
                .send(web::sse_event_with_id("row", r.int("rid"), &fragment))
                .await
                .is_err()
            {
                return;
            }
        }
        if rows.is_empty() {
            idle += 1;
            if idle.is_multiple_of(PING_EVERY)
                && tx
                    .send(bytes::Bytes::from_static(b": ping\n\n"))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if rows.len() < ROWS_PER_POLL {
            tokio::time::sleep(interval).await;
        }
    }
}
