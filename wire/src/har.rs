//! HAR 1.2 (HTTP Archive), the subset a recorded exchange fills: the serde model and the pure
//! helpers that turn recorded pieces into it (no I/O; the proxy's exporter reads the rows).
//!
//! Fields HAR requires are always present (unknown numbers are `-1`, unknown lists empty);
//! optional ones are skipped when absent. Custom fields start with `_`, as the format allows:
//! [`Entry::agentcap`] (`_agentcap`) carries what HAR has no place for (the exchange id, its
//! outcome, the SSE events' receive offsets).
//!
//! Bodies: a body that is valid UTF-8 is `text` as is; anything else is base64 with
//! `encoding: "base64"` ([`body_text`]), so any byte sequence survives the round trip.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The HAR version written.
pub const HAR_VERSION: &str = "1.2";

/// A HAR file: `{"log": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Har {
    /// The log.
    pub log: Log,
}

/// `log`: the creator and the entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Log {
    /// Always [`HAR_VERSION`].
    pub version: String,
    /// The program that wrote the file.
    pub creator: Creator,
    /// Pages (none: entries belong to no page).
    pub pages: Vec<Value>,
    /// One entry per exchange, in start order.
    pub entries: Vec<Entry>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `log.creator`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Creator {
    /// Program name.
    pub name: String,
    /// Program version.
    pub version: String,
}

/// One request and its response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When the request started, ISO 8601 with an offset.
    pub started_date_time: String,
    /// Total milliseconds (the sum of the non-negative [`Timings`]).
    pub time: f64,
    /// The request.
    pub request: Request,
    /// The response (status 0 when none arrived).
    pub response: Response,
    /// Always empty: a proxy sees no browser cache.
    pub cache: Value,
    /// The phases' milliseconds.
    pub timings: Timings,
    /// Free text (e.g. why the exchange did not complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// agentcap's own fields (custom, hence the underscore).
    #[serde(rename = "_agentcap", default, skip_serializing_if = "Option::is_none")]
    pub agentcap: Option<Value>,
}

/// A name / value pair (headers, query parameters, cookies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// `request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// e.g. `HTTP/1.1`.
    pub http_version: String,
    /// Cookies (none are parsed out: they stay in the `cookie` header).
    pub cookies: Vec<NameValue>,
    /// Headers as recorded (secrets already redacted).
    pub headers: Vec<NameValue>,
    /// The query string's pairs, as sent (not percent-decoded).
    pub query_string: Vec<NameValue>,
    /// The body, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_data: Option<PostData>,
    /// `-1`: the head's size on the wire is not recorded.
    pub headers_size: i64,
    /// Body bytes on the wire (`-1` when unknown).
    pub body_size: i64,
}

/// `request.postData`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostData {
    /// The request's content type (empty when none was sent).
    pub mime_type: String,
    /// Form parameters: never filled (the text holds the body; HAR makes the two exclusive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Value>,
    /// The body's text (base64 when [`PostData::encoding`] says so, a custom field: HAR 1.2
    /// has `encoding` on response content only).
    pub text: String,
    /// `base64` when the body is not UTF-8 (custom: `_encoding`).
    #[serde(rename = "_encoding", default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// e.g. that the capture cap cut the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// HTTP status (0: no response arrived).
    pub status: u16,
    /// Reason phrase.
    pub status_text: String,
    /// e.g. `HTTP/2` (empty when no response arrived).
    pub http_version: String,
    /// Cookies (none are parsed out).
    pub cookies: Vec<NameValue>,
    /// Headers as recorded.
    pub headers: Vec<NameValue>,
    /// The body.
    pub content: Content,
    /// The `location` header's value, or empty.
    #[serde(rename = "redirectURL")]
    pub redirect_url: String,
    /// `-1`: not recorded.
    pub headers_size: i64,
    /// Body bytes on the wire (`-1` when unknown).
    pub body_size: i64,
}

/// `response.content`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// Bytes of the (decoded) body.
    pub size: i64,
    /// The response's content type.
    pub mime_type: String,
    /// The body (possibly base64, see [`Content::encoding`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `base64` when the text is base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// e.g. that the capture cap cut the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `timings`, in milliseconds; `-1` where the phase does not apply or was not measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Waiting for a connection.
    pub blocked: f64,
    /// DNS.
    pub dns: f64,
    /// TCP connect.
    pub connect: f64,
    /// Sending the request.
    pub send: f64,
    /// Waiting for the response head.
    pub wait: f64,
    /// Receiving the body.
    pub receive: f64,
    /// TLS.
    pub ssl: f64,
}

impl Timings {
    /// Timings from a recorded exchange's microsecond offsets: `wait` until the response head
    /// (`head_us`; the whole exchange when no head arrived), `receive` from there to the end.
    /// The unmeasured phases are `-1`, `send` 0.
    pub fn from_offsets(head_us: Option<i64>, total_us: Option<i64>) -> Timings {
        let ms = |us: i64| us.max(0) as f64 / 1000.0;
        let total = total_us.unwrap_or(0).max(0);
        let head = head_us.unwrap_or(total).clamp(0, total);
        Timings {
            blocked: -1.0,
            dns: -1.0,
            connect: -1.0,
            send: 0.0,
            wait: ms(head),
            receive: ms(total - head),
            ssl: -1.0,
        }
    }

    /// The entry's `time`: the sum of the phases that are not `-1`.
    pub fn total(&self) -> f64 {
        [
            self.blocked,
            self.dns,
            self.connect,
            self.send,
            self.wait,
            self.receive,
        ]
        .iter()
        .filter(|t| **t >= 0.0)
        .sum()
    }
}

/// A body as HAR text: `(text, None)` when `bytes` is UTF-8, `(base64, Some("base64"))`
/// otherwise. [`body_bytes`] inverts it.
pub fn body_text(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), None),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            Some("base64".to_owned()),
        ),
    }
}

/// The bytes of a HAR body text ([`body_text`]'s inverse); `None` for an unknown encoding or
/// invalid base64.
pub fn body_bytes(text: &str, encoding: Option<&str>) -> Option<Vec<u8>> {
    match encoding {
        None => Some(text.as_bytes().to_vec()),
        Some("base64") => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        Some(_) => None,
    }
}

/// Headers from a recorded JSON object (`name -> value`; a non-string value is written as its
/// JSON text), in the object's order.
pub fn headers_from_json(v: Option<&Value>) -> Vec<NameValue> {
    match v {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| NameValue {
                name: k.clone(),
                value: match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The value of header `name` (case-insensitive) among `headers`.
pub fn header<'a>(headers: &'a [NameValue], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// A raw query string's pairs (`a=1&b` gives `a`/`1` and `b`/empty), left as sent.
pub fn query_pairs(query: Option<&str>) -> Vec<NameValue> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            NameValue {
                name: name.to_owned(),
                value: value.to_owned(),
            }
        })
        .collect()
}

/// A streamed response's text rebuilt from its events: for each `(event type, data)`, an
/// `event:` line when there is a type, one `data:` line per line of the data, a blank line.
pub fn sse_text<'a>(events: impl IntoIterator<Item = (Option<&'a str>, &'a str)>) -> String {
    let mut out = String::new();
    for (event, data) in events {
        if let Some(e) = event.filter(|e| !e.is_empty()) {
            out.push_str("event: ");
            out.push_str(e);
            out.push('\n');
        }
        for line in data.split('\n') {
            out.push_str("data: ");
            out.push_str(line.strip_suffix('\r').unwrap_or(line));
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_as_text_or_base64() {
        for b in [&b"{\"a\":1}"[..], &[0xff, 0x00, 0x80][..], b""] {
            let (text, enc) = body_text(b);
            assert_eq!(body_bytes(&text, enc.as_deref()).as_deref(), Some(b));
        }
        assert_eq!(body_text(&[0xff]).1.as_deref(), Some("base64"));
        assert_eq!(body_text(b"ok").1, None);
    }

    #[test]
    fn timings_add_up_to_the_total() {
        let t = Timings::from_offsets(Some(2_000), Some(5_000));
        assert_eq!((t.wait, t.receive, t.total()), (2.0, 3.0, 5.0));
        let none = Timings::from_offsets(None, Some(1_500));
        assert_eq!((none.wait, none.receive), (1.5, 0.0));
    }

    #[test]
    fn query_and_sse_text() {
        let q = query_pairs(Some("a=1&b&&c=x=y"));
        let names: Vec<_> = q
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(names, [("a", "1"), ("b", ""), ("c", "x=y")]);
        assert_eq!(
            sse_text([(Some("done"), "{}"), (None, "a\nb")]),
            "event: done\ndata: {}\n\ndata: a\ndata: b\n\n"
        );
    }
}
