//! Turning recorded body bytes into what the database stores: `Content-Encoding` decoding of the
//! copy, the capture cap (cut at a character boundary), JSON parsing, `--redact` patterns and the
//! header filter that keeps credentials out of every stored byte.

use std::borrow::Cow;
use std::io::{self, Read, Write};

use bytes::Bytes;
use regex::Regex;
use serde_json::{Map, Value};

/// What replaces redacted text and credential header values.
pub const REDACTED: &str = "[REDACTED]";

/// Header names whose values are never stored (compared case-insensitively).
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
];

/// Compressed bodies beyond this many bytes are not kept for decoding (the stored copy is capped
/// anyway; this only bounds memory when the cap is large).
const MAX_ENCODED_KEEP: usize = 256 * 1024 * 1024;

/// `true` for headers that carry credentials.
pub fn is_sensitive_header(name: &str) -> bool {
    SENSITIVE_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name.trim()))
}

/// The first value of a header (case-insensitive name).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The `--redact` patterns.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    patterns: Vec<Regex>,
}

impl Redactor {
    /// A redactor for these patterns (none: a no-op).
    pub fn new(patterns: Vec<Regex>) -> Self {
        Redactor { patterns }
    }

    /// `true` when there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Replaces every match in `s` by `[REDACTED]`.
    pub fn text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        for re in &self.patterns {
            let replaced = match re.replace_all(&out, REDACTED) {
                Cow::Borrowed(_) => None,
                Cow::Owned(s) => Some(s),
            };
            if let Some(s) = replaced {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// Redacts every string inside a JSON value, in place (object keys are left alone).
    pub fn value(&self, v: &mut Value) {
        if self.is_empty() {
            return;
        }
        match v {
            Value::String(s) => {
                if let Cow::Owned(r) = self.text(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.value(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.value(i)),
            _ => {}
        }
    }
}

/// Headers as a JSON object text: lowercased names, repeated names joined with `", "`,
/// credential values replaced, redaction patterns applied to the values.
pub fn headers_json(headers: &[(String, String)], redactor: &Redactor) -> String {
    let mut map = Map::new();
    for (name, value) in headers {
        let name = name.trim().to_ascii_lowercase();
        let value = if is_sensitive_header(&name) {
            REDACTED.to_owned()
        } else {
            redactor.text(value).into_owned()
        };
        match map.get_mut(&name) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                map.insert(name, Value::String(value));
            }
        }
    }
    Value::Object(map).to_string()
}

/// Pairs as a JSON object text (later duplicates win), values redacted.
pub fn pairs_json(pairs: &[(String, String)], redactor: &Redactor) -> String {
    let map: Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(redactor.text(v).into_owned())))
        .collect();
    Value::Object(map).to_string()
}

/// A body as stored: at most one of `json` / `raw` is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredBody {
    /// The parsed (and redacted) JSON, when the body is JSON.
    pub value: Option<Value>,
    /// The raw text when the body is not JSON, does not parse, or was truncated.
    pub raw: Option<String>,
    /// Why `raw` is set instead of `value` (`None` for non-JSON content types).
    pub parse_error: Option<String>,
    /// The decoded body was longer than the capture cap.
    pub truncated: bool,
    /// Body bytes on the wire (before decoding).
    pub wire_bytes: u64,
}

impl StoredBody {
    /// The JSON text to store.
    pub fn json_text(&self) -> Option<String> {
        self.value.as_ref().map(Value::to_string)
    }
}

/// `Content-Encoding` of a recorded copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    /// None or `identity`.
    Identity,
    /// `gzip` / `x-gzip`.
    Gzip,
    /// `deflate` (zlib-wrapped, or raw deflate as some servers send).
    Deflate,
    /// Anything else (`br`, `zstd`, stacked encodings…), by its header value.
    Unsupported(String),
}

impl Encoding {
    /// The encoding named by the headers.
    pub fn from_headers(headers: &[(String, String)]) -> Encoding {
        let Some(v) = header(headers, "content-encoding") else {
            return Encoding::Identity;
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Encoding::Identity,
            "gzip" | "x-gzip" => Encoding::Gzip,
            "deflate" => Encoding::Deflate,
            other => Encoding::Unsupported(other.to_owned()),
        }
    }
}

/// `true` when the content type says (or does not deny) that the body is JSON.
fn maybe_json(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            let ct = ct.to_ascii_lowercase();
            ct.contains("json") || ct.trim().is_empty()
        }
    }
}

/// The largest `n <= cap` such that `bytes[..n]` does not end inside a UTF-8 sequence.
pub fn char_boundary(bytes: &[u8], cap: usize) -> usize {
    if bytes.len() <= cap {
        return bytes.len();
    }
    let mut n = cap;
    // A UTF-8 continuation byte is 0b10xx_xxxx; back off to the start of the cut character.
    while n > 0 && (bytes[n] & 0xC0) == 0x80 {
        n -= 1;
    }
    n
}

/// Decodes the body bytes per their encoding into at most `limit` bytes.
/// Returns the decoded prefix and a decoding error, if any.
fn decode_bytes(encoding: &Encoding, data: &[u8], limit: usize) -> (Vec<u8>, Option<String>) {
    fn read_capped<R: Read>(r: R, limit: usize) -> (Vec<u8>, Option<io::Error>) {
        let mut out = Vec::new();
        let err = r.take(limit as u64).read_to_end(&mut out).err();
        (out, err)
    }
    match encoding {
        Encoding::Identity | Encoding::Unsupported(_) => {
            (data[..data.len().min(limit)].to_vec(), None)
        }
        Encoding::Gzip => {
            let (out, err) = read_capped(flate2::read::MultiGzDecoder::new(data), limit);
            (out, err.map(|e| format!("content-encoding gzip: {e}")))
        }
        Encoding::Deflate => {
            let (out, err) = read_capped(flate2::read::ZlibDecoder::new(data), limit);
            if err.is_some() && out.is_empty() {
                let (raw, raw_err) = read_capped(flate2::read::DeflateDecoder::new(data), limit);
                return (
                    raw,
                    raw_err.map(|e| format!("content-encoding deflate: {e}")),
                );
            }
            (out, err.map(|e| format!("content-encoding deflate: {e}")))
        }
    }
}

/// Builds the stored form of a body from its recorded frames.
pub fn store_body(
    frames: &[Bytes],
    headers: &[(String, String)],
    cap: usize,
    redactor: &Redactor,
) -> StoredBody {
    let wire_bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let mut stored = StoredBody {
        wire_bytes,
        ..Default::default()
    };
    if wire_bytes == 0 {
        return stored;
    }
    let encoding = Encoding::from_headers(headers);
    // Identity bodies only need cap + 1 bytes to know they are truncated; encoded ones need
    // all their bytes (bounded) to be decoded.
    let keep = match encoding {
        Encoding::Identity | Encoding::Unsupported(_) => cap.saturating_add(1),
        _ => MAX_ENCODED_KEEP,
    };
    let mut data = Vec::with_capacity((wire_bytes as usize).min(keep));
    for f in frames {
        let room = keep - data.len();
        if room == 0 {
            break;
        }
        data.extend_from_slice(&f[..f.len().min(room)]);
    }
    let (decoded, decode_error) = decode_bytes(&encoding, &data, cap.saturating_add(1));
    let content_type = header(headers, "content-type");
    if decoded.len() > cap {
        let n = char_boundary(&decoded, cap);
        stored.truncated = true;
        stored.raw = Some(
            redactor
                .text(&String::from_utf8_lossy(&decoded[..n]))
                .into_owned(),
        );
        stored.parse_error = Some(format!("truncated at {n} bytes"));
        return stored;
    }
    if let Encoding::Unsupported(name) = &encoding {
        stored.raw = Some(
            redactor
                .text(&String::from_utf8_lossy(&decoded))
                .into_owned(),
        );
        stored.parse_error = Some(format!("unsupported content-encoding {name}"));
        return stored;
    }
    if let Some(err) = decode_error {
        stored.raw = Some(
            redactor
                .text(&String::from_utf8_lossy(&decoded))
                .into_owned(),
        );
        stored.parse_error = Some(err);
        return stored;
    }
    if !maybe_json(content_type) {
        stored.raw = Some(
            redactor
                .text(&String::from_utf8_lossy(&decoded))
                .into_owned(),
        );
        return stored;
    }
    match serde_json::from_slice::<Value>(&decoded) {
        Ok(mut v) => {
            redactor.value(&mut v);
            stored.value = Some(v);
        }
        Err(e) => {
            stored.raw = Some(
                redactor
                    .text(&String::from_utf8_lossy(&decoded))
                    .into_owned(),
            );
            stored.parse_error = Some(e.to_string());
        }
    }
    stored
}

/// Incremental decoder of a body's `Content-Encoding`, for streamed (SSE) responses whose frames
/// must keep their receive times.
pub enum StreamDecoder {
    /// Bytes pass through.
    Identity,
    /// gzip.
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
    /// zlib-wrapped deflate.
    Deflate(Box<flate2::write::ZlibDecoder<Vec<u8>>>),
    /// Decoding failed or is unsupported: nothing more comes out.
    Failed(String),
}

impl std::fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            StreamDecoder::Identity => "identity",
            StreamDecoder::Gzip(_) => "gzip",
            StreamDecoder::Deflate(_) => "deflate",
            StreamDecoder::Failed(_) => "failed",
        };
        f.write_str(name)
    }
}

impl StreamDecoder {
    /// A decoder for the given encoding.
    pub fn new(encoding: &Encoding) -> StreamDecoder {
        match encoding {
            Encoding::Identity => StreamDecoder::Identity,
            Encoding::Gzip => {
                StreamDecoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Vec::new())))
            }
            Encoding::Deflate => {
                StreamDecoder::Deflate(Box::new(flate2::write::ZlibDecoder::new(Vec::new())))
            }
            Encoding::Unsupported(name) => {
                StreamDecoder::Failed(format!("unsupported content-encoding {name}"))
            }
        }
    }

    /// Decodes one frame.
    pub fn push<'a>(&mut self, frame: &'a [u8]) -> Cow<'a, [u8]> {
        let result = match self {
            StreamDecoder::Identity => return Cow::Borrowed(frame),
            StreamDecoder::Failed(_) => return Cow::Borrowed(&[]),
            StreamDecoder::Gzip(d) => d
                .write_all(frame)
                .and_then(|()| d.flush())
                .map(|()| std::mem::take(d.get_mut())),
            StreamDecoder::Deflate(d) => d
                .write_all(frame)
                .and_then(|()| d.flush())
                .map(|()| std::mem::take(d.get_mut())),
        };
        match result {
            Ok(out) => Cow::Owned(out),
            Err(e) => {
                *self = StreamDecoder::Failed(format!("content-encoding: {e}"));
                Cow::Borrowed(&[])
            }
        }
    }

    /// The decoding error, if any.
    pub fn error(&self) -> Option<&str> {
        match self {
            StreamDecoder::Failed(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn redacts_text_and_json_strings() {
        let r = Redactor::new(vec![
            Regex::new(r"sk-[A-Za-z0-9]+").unwrap(),
            Regex::new(r"\d{3}-\d{4}").unwrap(),
        ]);
        assert_eq!(
            r.text("key sk-abc123 and 555-1234"),
            "key [REDACTED] and [REDACTED]"
        );
        assert!(matches!(r.text("nothing here"), Cow::Borrowed(_)));
        let mut v = serde_json::json!({"a": "call 555-1234", "b": ["sk-X1", 5], "sk-key": true});
        r.value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": "call [REDACTED]", "b": ["[REDACTED]", 5], "sk-key": true})
        );
    }

    #[test]
    fn credentials_never_reach_the_header_json() {
        let headers = h(&[
            ("Authorization", "Bearer sk-SECRET"),
            ("Cookie", "a=b"),
            ("x-api-key", "k"),
            ("Accept", "a"),
            ("accept", "b"),
        ]);
        let json = headers_json(&headers, &Redactor::default());
        assert!(!json.contains("sk-SECRET"));
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["authorization"], REDACTED);
        assert_eq!(v["cookie"], REDACTED);
        assert_eq!(v["x-api-key"], REDACTED);
        assert_eq!(v["accept"], "a, b");
    }

    #[test]
    fn gzip_and_deflate_bodies_are_decoded() {
        let json = br#"{"conversation_id":"c1","outputs":[]}"#;
        let frames = vec![Bytes::from(gzip(json))];
        let b = store_body(
            &frames,
            &h(&[
                ("content-encoding", "gzip"),
                ("content-type", "application/json"),
            ]),
            1 << 20,
            &Redactor::default(),
        );
        assert_eq!(b.value.unwrap()["conversation_id"], "c1");
        assert_eq!(b.wire_bytes, frames[0].len() as u64);

        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(json).unwrap();
        let z = z.finish().unwrap();
        // Split across frames.
        let frames = vec![
            Bytes::copy_from_slice(&z[..5]),
            Bytes::copy_from_slice(&z[5..]),
        ];
        let b = store_body(
            &frames,
            &h(&[("Content-Encoding", "deflate")]),
            1 << 20,
            &Redactor::default(),
        );
        assert_eq!(b.value.unwrap()["conversation_id"], "c1");
    }

    #[test]
    fn brotli_is_stored_raw_with_an_error() {
        let b = store_body(
            &[Bytes::from_static(b"\x0b\x02\x80abc")],
            &h(&[("content-encoding", "br")]),
            100,
            &Redactor::default(),
        );
        assert!(b.value.is_none());
        assert_eq!(
            b.parse_error.as_deref(),
            Some("unsupported content-encoding br")
        );
        assert!(b.raw.is_some());
    }

    #[test]
    fn corrupt_gzip_reports_an_error() {
        let b = store_body(
            &[Bytes::from_static(b"\x1f\x8b\x08\x00garbage")],
            &h(&[("content-encoding", "gzip")]),
            100,
            &Redactor::default(),
        );
        assert!(b.parse_error.unwrap().starts_with("content-encoding gzip"));
    }

    #[test]
    fn truncation_cuts_at_a_char_boundary() {
        // "é" is two bytes; a cap of 4 would split the second one.
        let body = "aéé".as_bytes(); // 1 + 2 + 2 bytes
        assert_eq!(char_boundary(body, 4), 3);
        assert_eq!(char_boundary(body, 3), 3);
        assert_eq!(char_boundary(body, 10), 5);
        let b = store_body(
            &[Bytes::from_static("{\"k\":\"ééé\"}".as_bytes())],
            &h(&[("content-type", "application/json")]),
            8,
            &Redactor::default(),
        );
        assert!(b.truncated);
        assert!(b.value.is_none());
        assert_eq!(b.raw.as_deref(), Some("{\"k\":\"é"));
        assert_eq!(b.parse_error.as_deref(), Some("truncated at 8 bytes"));
        // A 4-byte character cut in the middle.
        let emoji = "ab😀".as_bytes();
        assert_eq!(char_boundary(emoji, 4), 2);
    }

    #[test]
    fn truncation_applies_to_decoded_size() {
        let big = vec![b'a'; 10_000];
        let b = store_body(
            &[Bytes::from(gzip(&big))],
            &h(&[("content-encoding", "gzip"), ("content-type", "text/plain")]),
            100,
            &Redactor::default(),
        );
        assert!(b.truncated);
        assert_eq!(b.raw.unwrap().len(), 100);
    }

    #[test]
    fn malformed_json_keeps_raw_and_error() {
        let b = store_body(
            &[Bytes::from_static(b"{\"inputs\": \"sk-1\",")],
            &h(&[("content-type", "application/json")]),
            1000,
            &Redactor::new(vec![Regex::new("sk-1").unwrap()]),
        );
        assert_eq!(b.raw.as_deref(), Some("{\"inputs\": \"[REDACTED]\","));
        assert!(b.parse_error.unwrap().contains("EOF"));
        assert!(!b.truncated);
    }

    #[test]
    fn non_json_content_is_raw_without_error() {
        let b = store_body(
            &[Bytes::from_static(b"<html>oops</html>")],
            &h(&[("content-type", "text/html")]),
            1000,
            &Redactor::default(),
        );
        assert_eq!(b.raw.as_deref(), Some("<html>oops</html>"));
        assert_eq!(b.parse_error, None);
    }

    #[test]
    fn empty_body_stores_nothing() {
        let b = store_body(&[], &[], 10, &Redactor::default());
        assert_eq!(b, StoredBody::default());
    }

    #[test]
    fn stream_decoder_decodes_gzip_incrementally() {
        let data = b"event: a\ndata: {}\n\nevent: b\ndata: {}\n\n";
        let z = gzip(data);
        let mut d = StreamDecoder::new(&Encoding::Gzip);
        let mut out = Vec::new();
        for chunk in z.chunks(3) {
            out.extend_from_slice(&d.push(chunk));
        }
        assert_eq!(out, data);
        assert!(d.error().is_none());
    }
}
