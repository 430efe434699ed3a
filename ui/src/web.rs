//! HTTP plumbing: the response body type, query-string decoding, small response builders, and the SSE body.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use maud::Markup;
use percent_encoding::percent_decode_str;
use tokio::sync::mpsc;

/// The body of every UI response.
pub type UiBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Decoded `application/x-www-form-urlencoded` pairs of a query string (invalid UTF-8 becomes U+FFFD).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// At most this many query pairs are kept.
const MAX_PAIRS: usize = 64;

fn decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .take(MAX_PAIRS)
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Query { pairs }
    }

    /// The first non-empty value of `key`, trimmed.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == key && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }
}

/// What [`enc`] leaves as it is: unreserved characters, and `:` and `,` (readable cursors and tag filters).
const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b',');

/// Percent-encodes `s` for a query-string value or a path segment (`/`, `?`, `&`, `=`, `#`, `%`, `+`, quotes
/// and spaces always encoded).
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// A full body.
pub fn full(b: impl Into<Bytes>) -> UiBody {
    Full::new(b.into()).boxed()
}

/// An HTML page.
pub fn html(status: StatusCode, m: Markup) -> Response<UiBody> {
    let mut r = Response::new(full(m.into_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// A plain-text response.
pub fn text(status: StatusCode, t: &str) -> Response<UiBody> {
    let mut r = Response::new(full(t.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A streamed body fed by a bounded channel (the live tail's SSE). The producer stops when the client goes
/// away (its sends fail once this body is dropped).
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body reading `rx` until its sender is dropped.
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelBody { rx }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// One SSE event whose data is `data` (every line of it prefixed, so any text is framed correctly).
pub fn sse_event(event: &str, data: &str) -> Bytes {
    sse_event_with_id(event, None, data)
}

/// [`sse_event`] with an `id:` field (what `EventSource.lastEventId` reports).
pub fn sse_event_with_id(event: &str, id: Option<i64>, data: &str) -> Bytes {
    let mut out = format!("event: {event}\n");
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    for line in data.split(['\n', '\r']) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some("a=1&b=x+y%21&c=&d=%FF&tag=k%3Av"));
        assert_eq!(q.get("a"), Some("1"));
        assert_eq!(q.get("b"), Some("x y!"));
        assert_eq!(q.get("c"), None);
        assert_eq!(q.get("d"), Some("\u{fffd}"));
        assert_eq!(q.get("tag"), Some("k:v"));
    }

    #[test]
    fn sse_framing() {
        assert_eq!(
            &sse_event("row", "a\nb\rc")[..],
            b"event: row\ndata: a\ndata: b\ndata: c\n\n"
        );
    }
}
