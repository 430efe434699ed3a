//! The cassette: the selected exchanges of a recording, read once from the DuckDB file into memory,
//! and the matcher that hands them out.
//!
//! What a recording keeps decides what can be served back byte for byte (see
//! `proxy/src/recorder/schema.rs`): a JSON body is stored as JSON text re-serialised by serde_json
//! (compact, keys in the order they came), a body that is not JSON as its text, SSE events as their
//! `event:` name, their data text as it came and their wire size. The cassette rebuilds each event's
//! wire text and checks it against the recorded size; a body is checked against the recorded wire
//! byte count. An exchange whose body the capture cap cut (`*_truncated`, `data_truncated`) or that
//! got no upstream response cannot be served faithfully: matching it answers an error saying so.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentcap_proxy::recorder::query::run_read_only;
use agentcap_proxy::recorder::{DbAccess, QueryCancel, QueryLimits, open_db};
use duckdb::Connection;
use serde_json::Value;

use crate::ReplayError;
use crate::canon::{Body, Difference, diff};

/// Which exchanges of the recording the cassette holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Selection {
    /// Every exchange.
    #[default]
    All,
    /// The exchanges of one `X-Agentcap-Session`.
    Session(String),
    /// The exchanges a SQL predicate over `exchanges` selects (`WHERE <this>`), run as a read-only
    /// query like `agentcap query`'s.
    Where(String),
}

/// One SSE event ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event's wire text (`event:` line, `data:` lines, blank line).
    pub wire: bytes::Bytes,
    /// Receive offset of the event at record time, µs from the exchange's start.
    pub offset_us: u64,
}

/// A recorded response body.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A whole body (possibly empty).
    Body(bytes::Bytes),
    /// An SSE stream.
    Events(Vec<Event>),
    /// The recording cannot reproduce this response; the reason.
    Unfaithful(String),
}

/// One recorded exchange, as the replay serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// `exchanges.id`.
    pub id: String,
    /// HTTP method, upper case.
    pub method: String,
    /// Path, with `?query` when there was one.
    pub target: String,
    /// The request body as matched (ignored fields removed); `None` when the capture cap cut it.
    pub request: Option<Body>,
    /// Upstream status.
    pub status: u16,
    /// Response headers to send back (framing, encoding and redacted headers left out).
    pub headers: Vec<(String, String)>,
    /// µs from the exchange's start until the response head arrived.
    pub headers_us: u64,
    /// The body.
    pub payload: Payload,
    /// The exchange did not complete (`exchanges.outcome`): the body ends in an error, as it did.
    pub cut: Option<String>,
    /// The served bytes are not known to equal the recorded wire bytes; why.
    pub inexact: Option<String>,
}

/// What a request gets from the cassette.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The recorded exchange to serve.
    Hit(Arc<Recorded>),
    /// No recorded exchange matches.
    Miss(Miss),
}

/// A request the cassette has no answer for, with the closest recorded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Miss {
    /// `METHOD target` of the request.
    pub request: String,
    /// The closest recorded exchange: its id and `METHOD target`.
    pub closest: Option<(String, String)>,
    /// Where the closest recorded body first differs from the request's (`None` when the method or
    /// target differ, or when the closest body was truncated at capture).
    pub difference: Option<Difference>,
}

impl Miss {
    /// A one-sentence explanation for the error body.
    pub fn message(&self) -> String {
        let mut m = format!(
            "agentcap replay: no recorded exchange matches {}",
            self.request
        );
        match &self.closest {
            None => m.push_str("; the cassette is empty"),
            Some((id, req)) => {
                m.push_str(&format!(
                    "; closest recorded request: {req} (exchange {id})"
                ));
                match &self.difference {
                    Some(d) => m.push_str(&format!(
                        ", first difference at JSON path {:?}: recorded {}, got {}",
                        d.path,
                        d.recorded.as_deref().unwrap_or("nothing"),
                        d.got.as_deref().unwrap_or("nothing")
                    )),
                    None if *req != self.request => m.push_str(", which differs in method or path"),
                    None => m.push_str(", whose body was truncated at capture"),
                }
            }
        }
        m
    }
}

/// The cassette: recorded exchanges grouped by request key, each group answered in recorded order.
///
/// Identical requests get the group's exchanges one after the other; once a group is used up its
/// last exchange answers every further identical request (a client that polls keeps its answer).
#[derive(Debug)]
pub struct Cassette {
    exchanges: Vec<Arc<Recorded>>,
    groups: HashMap<String, (Vec<usize>, AtomicUsize)>,
    ignore: Vec<String>,
}

/// Counts of a loaded cassette, for the start-up line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Exchanges loaded.
    pub exchanges: usize,
    /// Of which streamed.
    pub streams: usize,
    /// Of which cannot be served faithfully (request or response truncated at capture, no upstream
    /// response): a truncated request never matches, a matched unfaithful response is an error.
    pub unfaithful: usize,
    /// Of which served with bytes not known to equal the recorded wire bytes.
    pub inexact: usize,
}

fn key(method: &str, target: &str, body: &Body) -> String {
    format!("{method} {target}\n{}", body.canonical())
}

impl Cassette {
    /// A cassette of `exchanges` (in recorded order), matching with the JSON pointers of
    /// `ignore` removed from bodies.
    pub fn new(exchanges: Vec<Recorded>, ignore: Vec<String>) -> Cassette {
        let exchanges: Vec<Arc<Recorded>> = exchanges.into_iter().map(Arc::new).collect();
        let mut groups: HashMap<String, (Vec<usize>, AtomicUsize)> = HashMap::new();
        for (i, x) in exchanges.iter().enumerate() {
            if let Some(body) = &x.request {
                groups
                    .entry(key(&x.method, &x.target, body))
                    .or_insert_with(|| (Vec::new(), AtomicUsize::new(0)))
                    .0
                    .push(i);
            }
        }
        Cassette {
            exchanges,
            groups,
            ignore,
        }
    }

    /// Reads the selected exchanges of the recording at `db` (opened read-only through
    /// [`open_db`]; the connection is closed when this returns).
    pub fn load(
        db: &Path,
        selection: &Selection,
        ignore: Vec<String>,
    ) -> Result<Cassette, ReplayError> {
        let conn =
            open_db(Some(db), DbAccess::ReadOnly).map_err(|e| ReplayError::Db(e.to_string()))?;
        let wanted = match selection {
            Selection::Where(sql) => Some(where_ids(&conn, sql)?),
            _ => None,
        };
        let session = match selection {
            Selection::Session(s) => Some(s.as_str()),
            _ => None,
        };
        let rows = read_exchanges(&conn, session, wanted.as_ref(), &ignore)
            .map_err(|e| ReplayError::Db(e.to_string()))?;
        Ok(Cassette::new(rows, ignore))
    }

    /// Counts for the start-up line.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            exchanges: self.exchanges.len(),
            ..Summary::default()
        };
        for x in &self.exchanges {
            if matches!(x.payload, Payload::Events(_)) {
                s.streams += 1;
            }
            if matches!(x.payload, Payload::Unfaithful(_)) || x.request.is_none() {
                s.unfaithful += 1;
            }
            if x.inexact.is_some() {
                s.inexact += 1;
            }
        }
        s
    }

    /// The length of the longest recorded request body in canonical form.
    pub fn longest_request(&self) -> usize {
        self.exchanges
            .iter()
            .filter_map(|x| x.request.as_ref())
            .map(|b| b.canonical().len())
            .max()
            .unwrap_or(0)
    }

    /// The recorded exchanges, in recorded order.
    pub fn exchanges(&self) -> &[Arc<Recorded>] {
        &self.exchanges
    }

    /// The answer for a request: the next recorded exchange of its group, or a miss naming the
    /// closest recorded request.
    pub fn lookup(&self, method: &str, target: &str, body: &[u8]) -> Lookup {
        let method = method.to_ascii_uppercase();
        let body = Body::parse(body, &self.ignore);
        if let Some((members, next)) = self.groups.get(&key(&method, target, &body)) {
            let n = next.fetch_add(1, Ordering::Relaxed).min(members.len() - 1);
            return Lookup::Hit(Arc::clone(&self.exchanges[members[n]]));
        }
        Lookup::Miss(self.closest(&method, target, &body))
    }

    fn closest(&self, method: &str, target: &str, body: &Body) -> Miss {
        let request = format!("{method} {target}");
        let path = target.split('?').next().unwrap_or(target);
        // Rank: same method and target first, then same method and path, then same method, then
        // anything; within a rank, the fewest differing leaves; then the earliest.
        let mut best: Option<((u8, usize), &Recorded, Option<Difference>)> = None;
        for x in &self.exchanges {
            let x_path = x.target.split('?').next().unwrap_or(&x.target);
            let rank = if x.method != method {
                3
            } else if x.target == target {
                0
            } else if x_path == path {
                1
            } else {
                2
            };
            let d = x.request.as_ref().and_then(|r| diff(r, body));
            let distance = match (&x.request, &d) {
                (None, _) => usize::MAX,
                (Some(_), Some(d)) => d.count,
                (Some(_), None) => 0,
            };
            let score = (rank, distance);
            if best.as_ref().is_none_or(|(s, _, _)| score < *s) {
                best = Some((score, x, d));
            }
        }
        match best {
            None => Miss {
                request,
                closest: None,
                difference: None,
            },
            Some(((rank, _), x, d)) => Miss {
                request,
                closest: Some((x.id.clone(), format!("{} {}", x.method, x.target))),
                difference: if rank == 0 { d } else { None },
            },
        }
    }
}

fn where_ids(conn: &Connection, predicate: &str) -> Result<HashSet<String>, ReplayError> {
    let sql = format!("SELECT id FROM exchanges WHERE {predicate}");
    let limits = QueryLimits {
        max_rows: usize::MAX,
        max_bytes: usize::MAX,
        ..QueryLimits::default()
    };
    let result = run_read_only(conn, &sql, &[], &limits, &QueryCancel::new())
        .map_err(|e| ReplayError::Selection(e.to_string()))?;
    Ok(result
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .filter_map(|v| match v {
            Value::String(s) => Some(s),
            _ => None,
        })
        .collect())
}

/// Headers the replay never copies from the recording: framing and connection headers (the
/// replay frames its own answer), the encoding (bodies are stored decoded), the date, and values
/// the recorder redacted.
const SKIPPED_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "content-encoding",
    "date",
    "upgrade",
    "proxy-connection",
    "trailer",
    "te",
];

struct Row {
    id: String,
    method: String,
    path: String,
    query: Option<String>,
    request_body: Option<String>,
    request_body_raw: Option<String>,
    request_truncated: bool,
    status: Option<i32>,
    response_headers: Option<String>,
    response_body: Option<String>,
    response_body_raw: Option<String>,
    response_truncated: bool,
    response_bytes: Option<i64>,
    is_stream: bool,
    headers_us: Option<i64>,
    outcome: String,
    error: Option<String>,
}

struct EventRow {
    event_type: Option<String>,
    data: Option<String>,
    parse_error: Option<String>,
    offset_us: i64,
    size: i64,
    data_truncated: bool,
}

fn read_exchanges(
    conn: &Connection,
    session: Option<&str>,
    wanted: Option<&HashSet<String>>,
    ignore: &[String],
) -> duckdb::Result<Vec<Recorded>> {
    let mut stmt = conn.prepare(
        "SELECT id, method, path, query, CAST(request_body AS VARCHAR), request_body_raw, \
         coalesce(request_truncated, false), status, CAST(response_headers AS VARCHAR), \
         CAST(response_body AS VARCHAR), response_body_raw, coalesce(response_truncated, false), \
         response_bytes, coalesce(is_stream, false), response_headers_us, coalesce(outcome, ''), error \
         FROM exchanges WHERE method IS NOT NULL AND (? IS NULL OR session = ?) \
         ORDER BY started_at, id",
    )?;
    let rows = stmt.query_map(duckdb::params![session, session], |r| {
        Ok(Row {
            id: r.get(0)?,
            method: r.get(1)?,
            path: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            query: r.get(3)?,
            request_body: r.get(4)?,
            request_body_raw: r.get(5)?,
            request_truncated: r.get(6)?,
            status: r.get(7)?,
            response_headers: r.get(8)?,
            response_body: r.get(9)?,
            response_body_raw: r.get(10)?,
            response_truncated: r.get(11)?,
            response_bytes: r.get(12)?,
            is_stream: r.get(13)?,
            headers_us: r.get(14)?,
            outcome: r.get(15)?,
            error: r.get(16)?,
        })
    })?;
    let mut picked = Vec::new();
    for row in rows {
        let row = row?;
        if wanted.is_none_or(|w| w.contains(&row.id)) {
            picked.push(row);
        }
    }
    let streams: HashSet<&str> = picked
        .iter()
        .filter(|r| r.is_stream)
        .map(|r| r.id.as_str())
        .collect();
    let mut events: HashMap<String, Vec<EventRow>> = HashMap::new();
    if !streams.is_empty() {
        let mut stmt = conn.prepare(
            "SELECT exchange_id, event_type, CAST(data AS VARCHAR), parse_error, \
             coalesce(offset_us, 0), coalesce(size, 0), coalesce(data_truncated, false) \
             FROM sse_events ORDER BY exchange_id, seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                EventRow {
                    event_type: r.get(1)?,
                    data: r.get(2)?,
                    parse_error: r.get(3)?,
                    offset_us: r.get(4)?,
                    size: r.get(5)?,
                    data_truncated: r.get(6)?,
                },
            ))
        })?;
        for row in rows {
            let (id, ev) = row?;
            if streams.contains(id.as_str()) {
                events.entry(id).or_default().push(ev);
            }
        }
    }
    Ok(picked
        .into_iter()
        .map(|row| {
            let evs = events.remove(&row.id).unwrap_or_default();
            recorded(row, evs, ignore)
        })
        .collect())
}

fn recorded(row: Row, events: Vec<EventRow>, ignore: &[String]) -> Recorded {
    let target = match row.query.as_deref() {
        Some(q) if !q.is_empty() => format!("{}?{q}", row.path),
        _ => row.path.clone(),
    };
    let request = if row.request_truncated {
        None
    } else if let Some(json) = &row.request_body {
        Some(Body::parse(json.as_bytes(), ignore))
    } else if let Some(raw) = &row.request_body_raw {
        Some(Body::parse(raw.as_bytes(), ignore))
    } else {
        Some(Body::Empty)
    };
    let all_headers: Vec<(String, String)> = row
        .response_headers
        .as_deref()
        .and_then(|h| serde_json::from_str::<serde_json::Map<String, Value>>(h).ok())
        .map(|m| {
            m.into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let encoded = all_headers
        .iter()
        .any(|(k, v)| k == "content-encoding" && !v.eq_ignore_ascii_case("identity"));
    let headers: Vec<(String, String)> = all_headers
        .into_iter()
        .filter(|(k, v)| {
            !SKIPPED_HEADERS.contains(&k.as_str()) && v != agentcap_proxy::recorder::body::REDACTED
        })
        .collect();
    let wire_bytes = row.response_bytes.and_then(|b| u64::try_from(b).ok());
    let mut inexact = None;
    let payload = match row.status {
        None => Payload::Unfaithful(format!(
            "no upstream response was recorded for exchange {} ({}: {})",
            row.id,
            row.outcome,
            row.error.as_deref().unwrap_or("no error text")
        )),
        Some(_) if row.response_truncated => Payload::Unfaithful(format!(
            "the response of exchange {} was longer than the capture cap and was stored truncated",
            row.id
        )),
        Some(_) if row.is_stream => match stream_payload(&row.id, events, wire_bytes, encoded) {
            Ok((evs, note)) => {
                inexact = note;
                Payload::Events(evs)
            }
            Err(why) => Payload::Unfaithful(why),
        },
        Some(_) => {
            let text = row
                .response_body
                .clone()
                .or_else(|| row.response_body_raw.clone())
                .unwrap_or_default();
            if !encoded && wire_bytes.is_some_and(|n| n != text.len() as u64) {
                inexact = Some(format!(
                    "the stored body has {} bytes, the wire had {}",
                    text.len(),
                    wire_bytes.unwrap_or(0)
                ));
            }
            Payload::Body(bytes::Bytes::from(text))
        }
    };
    if encoded && inexact.is_none() {
        inexact = Some("the recorded response was compressed; it is served decoded".into());
    }
    Recorded {
        id: row.id,
        method: row.method.to_ascii_uppercase(),
        target,
        request,
        status: row
            .status
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(502),
        headers,
        headers_us: row
            .headers_us
            .and_then(|u| u64::try_from(u).ok())
            .unwrap_or(0),
        payload,
        cut: (row.outcome != "complete").then(|| {
            format!(
                "the recorded exchange ended {}: {}",
                row.outcome,
                row.error.as_deref().unwrap_or("no error text")
            )
        }),
        inexact,
    }
}

/// The wire text of one event: an `event:` line when `event` is given, one `data:` line per line
/// of `data`, a blank line.
pub fn frame(event: Option<&str>, data: &str) -> String {
    let mut s = String::with_capacity(data.len() + 32);
    if let Some(e) = event {
        s.push_str("event: ");
        s.push_str(e);
        s.push('\n');
    }
    for line in data.split('\n') {
        s.push_str("data: ");
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    s
}

/// Rebuilds a stream's events; a note when the rebuilt bytes may differ from the recorded ones.
fn stream_payload(
    id: &str,
    rows: Vec<EventRow>,
    wire_bytes: Option<u64>,
    encoded: bool,
) -> Result<(Vec<Event>, Option<String>), String> {
    let mut out = Vec::with_capacity(rows.len());
    let mut unsure = 0usize;
    let mut total = 0u64;
    for (seq, ev) in rows.into_iter().enumerate() {
        if ev.data_truncated {
            return Err(format!(
                "the events of exchange {id} passed the capture cap: event {seq} onwards were stored without their data"
            ));
        }
        let stored = ev.data.unwrap_or_default();
        // The stored data is the data text itself when it parsed as JSON; otherwise (a parse
        // error, or the [DONE] sentinel) a JSON string holding the text. The recorded wire size
        // tells the readings apart, and whether the event had an `event:` line (the stored type
        // may come from the data's "type").
        let as_string = serde_json::from_str::<Value>(&stored)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        let mut texts: Vec<&str> = Vec::new();
        if ev.parse_error.is_none() {
            texts.push(&stored);
        }
        if let Some(s) = as_string.as_deref() {
            texts.push(s);
        }
        if texts.is_empty() {
            texts.push(&stored);
        }
        let size = u64::try_from(ev.size).unwrap_or(0);
        let mut candidates = Vec::new();
        for t in &texts {
            if let Some(e) = ev.event_type.as_deref() {
                candidates.push(frame(Some(e), t));
            }
            candidates.push(frame(None, t));
        }
        let exact = candidates.iter().position(|c| c.len() as u64 == size);
        let wire = match exact {
            Some(i) => candidates.swap_remove(i),
            None => {
                unsure += 1;
                candidates.swap_remove(0)
            }
        };
        total += wire.len() as u64;
        out.push(Event {
            wire: bytes::Bytes::from(wire),
            offset_us: u64::try_from(ev.offset_us).unwrap_or(0),
        });
    }
    let note = if unsure > 0 {
        Some(format!(
            "{unsure} event(s) rebuilt without a size match (fields other than event and data, or redacted data)"
        ))
    } else if !encoded && wire_bytes.is_some_and(|n| n != total) {
        Some(format!(
            "the events total {total} bytes, the wire had {} (comments or keep-alives are not recorded)",
            wire_bytes.unwrap_or(0)
        ))
    } else {
        None
    };
    Ok((out, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(id: &str, method: &str, target: &str, body: &str, answer: &str) -> Recorded {
        Recorded {
            id: id.into(),
            method: method.into(),
            target: target.into(),
            request: Some(Body::parse(body.as_bytes(), &[])),
            status: 200,
            headers: vec![],
            headers_us: 0,
            payload: Payload::Body(bytes::Bytes::from(answer.to_owned())),
            cut: None,
            inexact: None,
        }
    }

    fn answer(l: Lookup) -> String {
        match l {
            Lookup::Hit(x) => match &x.payload {
                Payload::Body(b) => String::from_utf8_lossy(b).into_owned(),
                _ => panic!("not a body"),
            },
            Lookup::Miss(m) => panic!("miss: {}", m.message()),
        }
    }

    #[test]
    fn identical_requests_get_recorded_order_then_the_last_repeats() {
        let c = Cassette::new(
            vec![
                ex("1", "GET", "/v1/x", "", "first"),
                ex("2", "POST", "/v1/x", "{}", "other"),
                ex("3", "GET", "/v1/x", "", "second"),
            ],
            vec![],
        );
        assert_eq!(answer(c.lookup("GET", "/v1/x", b"")), "first");
        assert_eq!(answer(c.lookup("get", "/v1/x", b"")), "second");
        assert_eq!(answer(c.lookup("GET", "/v1/x", b"")), "second");
        assert_eq!(answer(c.lookup("POST", "/v1/x", b" { } ")), "other");
    }

    #[test]
    fn a_miss_names_the_closest_request_and_the_path() {
        let c = Cassette::new(
            vec![
                ex(
                    "1",
                    "POST",
                    "/v1/conversations",
                    r#"{"inputs":"a","model":"m"}"#,
                    "",
                ),
                ex(
                    "2",
                    "POST",
                    "/v1/conversations",
                    r#"{"inputs":"b","model":"n"}"#,
                    "",
                ),
                ex("3", "GET", "/v1/conversations", "", ""),
            ],
            vec![],
        );
        let Lookup::Miss(m) = c.lookup(
            "POST",
            "/v1/conversations",
            br#"{"model":"n","inputs":"c"}"#,
        ) else {
            panic!("expected a miss")
        };
        assert_eq!(m.closest.as_ref().unwrap().0, "2");
        assert_eq!(m.difference.as_ref().unwrap().path, "/inputs");
        assert!(m.message().contains("\"/inputs\""), "{}", m.message());
    }

    #[test]
    fn frames_rebuild_the_wire_text() {
        assert_eq!(frame(Some("a"), "{}"), "event: a\ndata: {}\n\n");
        assert_eq!(frame(None, "x\ny"), "data: x\ndata: y\n\n");
    }
}
