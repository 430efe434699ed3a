//! Turning recorded body bytes into what the database stores: `Content-Encoding` decoding of the
//! copy, the capture cap (cut at a character boundary), JSON parsing, `--redact` patterns and the
//! header filter that keeps credentials out of every stored byte.

use std::borrow::Cow;
use std::io::{self, Write};

use bytes::Bytes;
use regex::Regex;
use serde_json::{Map, Value};

/// What replaces redacted text and credential header values.
pub const REDACTED: &str = "[REDACTED]";

/// `true` for headers whose values are never stored: the workspace's one list,
/// [`agentcap_wire::vocab::headers::is_secret`] (the hot path already redacted them; this keeps them
/// out of whatever else reaches the recorder).
pub fn is_sensitive_header(name: &str) -> bool {
    agentcap_wire::vocab::headers::is_secret(name)
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

/// A body as stored: at most one of `value` / `raw` is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredBody {
    /// The parsed (and redacted) JSON, when the body is JSON.
    pub value: Option<Value>,
    /// The JSON text as it came, when it parsed and no `--redact` pattern could change it (the stored
    /// text then needs no serialization of `value`).
    pub text: Option<String>,
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
    /// The JSON text to store: the body as it came when it parsed and nothing was redacted, else
    /// `value` serialized.
    pub fn json_text(&self) -> Option<String> {
        match &self.text {
            Some(t) => Some(t.clone()),
            None => self.value.as_ref().map(Value::to_string),
        }
    }

    /// [`StoredBody::json_text`], taking the text instead of copying it.
    pub fn take_json_text(&mut self) -> Option<String> {
        match self.text.take() {
            Some(t) => Some(t),
            None => self.value.as_ref().map(Value::to_string),
        }
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

/// Builds the stored form of a body from its recorded frames.
pub fn store_body(
    frames: &[Bytes],
    headers: &[(String, String)],
    cap: usize,
    redactor: &Redactor,
) -> StoredBody {
    let mut copy = BodyCopy::new(headers, cap);
    for f in frames {
        copy.push(f);
    }
    copy.store(headers, redactor)
}

/// Wire bytes of a request body the recorder needs to store it under `cap`: `cap + 1` decoded
/// bytes, plus room for compression overhead (deflate's stored blocks add 5 bytes per 64 KiB,
/// gzip's header and trailer 18 bytes), so a gzip or deflate body longer than this decodes to more
/// than `cap` bytes (a gzip header with a huge file name or comment excepted: that body is then
/// stored as its decoded prefix with a decoding error).
pub fn request_copy_limit(cap: usize) -> u64 {
    let cap = cap as u64;
    cap.saturating_add(cap / 8).saturating_add(64 * 1024)
}

/// The recorder's bounded copy of one body, built frame by frame as the frames arrive: the body is
/// decoded (per its `Content-Encoding`) into at most `cap + 1` bytes, which is all [`BodyCopy::store`]
/// needs to store it or to know it was truncated; the frames themselves are not kept.
///
/// Architecture Invariant: a body copy holds at most `cap + 1` decoded bytes (plus the decoder's
/// own window), whatever the size of the body or its compression ratio.
#[derive(Debug)]
pub struct BodyCopy {
    cap: usize,
    encoding: Encoding,
    dec: StreamDecoder,
    decoded: Vec<u8>,
    wire_bytes: u64,
}

impl BodyCopy {
    /// An empty copy of a body sent with `headers`, stored up to `cap` bytes.
    pub fn new(headers: &[(String, String)], cap: usize) -> Self {
        let encoding = Encoding::from_headers(headers);
        // Unsupported encodings are stored as they came (with an error saying so).
        let dec_enc = match &encoding {
            Encoding::Unsupported(_) => Encoding::Identity,
            e => e.clone(),
        };
        BodyCopy {
            cap,
            dec: StreamDecoder::with_budget(&dec_enc, cap as u64 + 1),
            encoding,
            decoded: Vec::new(),
            wire_bytes: 0,
        }
    }

    /// Adds the next frame of the body.
    pub fn push(&mut self, frame: &[u8]) {
        self.wire_bytes += frame.len() as u64;
        if self.dec.capped() {
            return;
        }
        let out = self.dec.push(frame);
        self.decoded.extend_from_slice(&out);
    }

    /// Decoded bytes held (at most `cap + 1`).
    pub fn held_bytes(&self) -> usize {
        self.decoded.capacity()
    }

    /// Body bytes seen on the wire (before decoding).
    pub fn wire_bytes(&self) -> u64 {
        self.wire_bytes
    }

    /// The stored form of the body.
    pub fn store(mut self, headers: &[(String, String)], redactor: &Redactor) -> StoredBody {
        let mut stored = StoredBody {
            wire_bytes: self.wire_bytes,
            ..Default::default()
        };
        if self.wire_bytes == 0 {
            return stored;
        }
        let cap = self.cap;
        let decode_error = if self.dec.capped() {
            None
        } else {
            self.decoded.extend_from_slice(&self.dec.finish());
            self.dec.error().map(str::to_owned)
        };
        let decoded = self.decoded;
        let content_type = header(headers, "content-type");
        let lossy = |b: &[u8]| redactor.text(&String::from_utf8_lossy(b)).into_owned();
        if decoded.len() > cap {
            let n = char_boundary(&decoded, cap);
            stored.truncated = true;
            stored.raw = Some(lossy(&decoded[..n]));
            stored.parse_error = Some(format!("truncated at {n} bytes"));
            return stored;
        }
        if let Encoding::Unsupported(name) = &self.encoding {
            stored.raw = Some(lossy(&decoded));
            stored.parse_error = Some(format!("unsupported content-encoding {name}"));
            return stored;
        }
        if let Some(err) = decode_error {
            stored.raw = Some(lossy(&decoded));
            stored.parse_error = Some(err);
            return stored;
        }
        if !maybe_json(content_type) {
            stored.raw = Some(lossy(&decoded));
            return stored;
        }
        match serde_json::from_slice::<Value>(&decoded) {
            Ok(mut v) => {
                if redactor.is_empty() {
                    // JSON that parsed is UTF-8 (the grammar outside strings is ASCII, and strings
                    // were checked), so this never falls back.
                    stored.text = String::from_utf8(decoded).ok();
                } else {
                    redactor.value(&mut v);
                }
                stored.value = Some(v);
            }
            Err(e) => {
                stored.raw = Some(lossy(&decoded));
                stored.parse_error = Some(e.to_string());
            }
        }
        stored
    }
}

/// A `Write` sink that keeps at most `room` more bytes and drops (but accepts) the rest, so a
/// decompressor writing into it cannot grow memory past its budget.
#[derive(Debug, Default)]
struct Capped {
    buf: Vec<u8>,
    room: u64,
    dropped: bool,
}

impl Write for Capped {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = usize::try_from(self.room).map_or(b.len(), |r| r.min(b.len()));
        self.buf.extend_from_slice(&b[..n]);
        self.room -= n as u64;
        if n < b.len() {
            self.dropped = true;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes of a deflate body held while no output came yet, to retry them as raw deflate when
/// the zlib header turns out wrong (some servers send raw deflate).
const DEFLATE_RETRY_HOLD: usize = 64 * 1024;

enum Inflate {
    Identity,
    Gzip(Box<flate2::write::MultiGzDecoder<Capped>>),
    /// zlib-wrapped deflate; `head` holds the input until the first output.
    Zlib(Box<flate2::write::ZlibDecoder<Capped>>, Option<Vec<u8>>),
    RawDeflate(Box<flate2::write::DeflateDecoder<Capped>>),
    Failed,
}

/// Incremental decoder of a body's `Content-Encoding`, for streamed (SSE) responses whose frames
/// must keep their receive times, and for [`BodyCopy`]. Its output is bounded by a budget: past
/// it, [`StreamDecoder::capped`] is true and nothing more comes out (the input is not even
/// decoded any more), so a small compressed body cannot inflate into unbounded memory.
pub struct StreamDecoder {
    inner: Inflate,
    name: &'static str,
    /// Output bytes still allowed (identity bodies count here too).
    room: u64,
    capped: bool,
    produced: bool,
    error: Option<String>,
}

impl std::fmt::Debug for StreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl StreamDecoder {
    /// A decoder for the given encoding with no output budget.
    pub fn new(encoding: &Encoding) -> StreamDecoder {
        Self::with_budget(encoding, u64::MAX)
    }

    /// A decoder for the given encoding that produces at most `budget` bytes in all.
    pub fn with_budget(encoding: &Encoding, budget: u64) -> StreamDecoder {
        let sink = || Capped {
            room: budget,
            ..Default::default()
        };
        let (inner, name, error) = match encoding {
            Encoding::Identity => (Inflate::Identity, "identity", None),
            Encoding::Gzip => (
                Inflate::Gzip(Box::new(flate2::write::MultiGzDecoder::new(sink()))),
                "gzip",
                None,
            ),
            Encoding::Deflate => (
                Inflate::Zlib(
                    Box::new(flate2::write::ZlibDecoder::new(sink())),
                    Some(Vec::new()),
                ),
                "deflate",
                None,
            ),
            Encoding::Unsupported(name) => (
                Inflate::Failed,
                "unsupported",
                Some(format!("unsupported content-encoding {name}")),
            ),
        };
        StreamDecoder {
            inner,
            name,
            room: budget,
            capped: false,
            produced: false,
            error,
        }
    }

    /// The output budget was reached: later input is ignored.
    pub fn capped(&self) -> bool {
        self.capped
    }

    /// Decodes one frame (nothing once capped or failed).
    pub fn push<'a>(&mut self, frame: &'a [u8]) -> Cow<'a, [u8]> {
        if self.capped {
            return Cow::Borrowed(&[]);
        }
        let name = self.name;
        let result = match &mut self.inner {
            Inflate::Identity => {
                let n = usize::try_from(self.room).map_or(frame.len(), |r| r.min(frame.len()));
                self.room -= n as u64;
                self.capped = n < frame.len();
                return Cow::Borrowed(&frame[..n]);
            }
            Inflate::Failed => return Cow::Borrowed(&[]),
            Inflate::Gzip(d) => d
                .write_all(frame)
                .and_then(|()| d.flush())
                .map(|()| take_out(d.get_mut(), &mut self.capped)),
            Inflate::Zlib(d, head) => {
                if let Some(h) = head.as_mut() {
                    h.extend_from_slice(frame);
                }
                d.write_all(frame)
                    .and_then(|()| d.flush())
                    .map(|()| take_out(d.get_mut(), &mut self.capped))
            }
            Inflate::RawDeflate(d) => d
                .write_all(frame)
                .and_then(|()| d.flush())
                .map(|()| take_out(d.get_mut(), &mut self.capped)),
        };
        match result {
            Ok(out) => {
                self.produced |= !out.is_empty();
                if let Inflate::Zlib(_, head) = &mut self.inner
                    && (self.produced
                        || head.as_ref().is_some_and(|h| h.len() > DEFLATE_RETRY_HOLD))
                {
                    *head = None;
                }
                Cow::Owned(out)
            }
            Err(e) => {
                // A deflate body without the zlib wrapper: start again as raw deflate.
                if let Inflate::Zlib(_, head) = &mut self.inner
                    && !self.produced
                    && let Some(held) = head.take()
                {
                    let mut raw = Box::new(flate2::write::DeflateDecoder::new(Capped {
                        room: self.room,
                        ..Default::default()
                    }));
                    self.inner = Inflate::Failed;
                    let r = raw
                        .write_all(&held)
                        .and_then(|()| raw.flush())
                        .map(|()| take_out(raw.get_mut(), &mut self.capped));
                    return match r {
                        Ok(out) => {
                            self.produced |= !out.is_empty();
                            self.inner = Inflate::RawDeflate(raw);
                            Cow::Owned(out)
                        }
                        Err(e) => {
                            self.error = Some(format!("content-encoding {name}: {e}"));
                            Cow::Borrowed(&[])
                        }
                    };
                }
                self.inner = Inflate::Failed;
                self.error = Some(format!("content-encoding {name}: {e}"));
                Cow::Borrowed(&[])
            }
        }
    }

    /// Ends the input: returns the last decoded bytes and records an error for a truncated
    /// stream. Does nothing once capped.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.capped {
            return Vec::new();
        }
        let name = self.name;
        let r = match &mut self.inner {
            Inflate::Identity | Inflate::Failed => return Vec::new(),
            Inflate::Gzip(d) => d
                .try_finish()
                .map(|()| take_out(d.get_mut(), &mut self.capped)),
            Inflate::Zlib(d, _) => d
                .try_finish()
                .map(|()| take_out(d.get_mut(), &mut self.capped)),
            Inflate::RawDeflate(d) => d
                .try_finish()
                .map(|()| take_out(d.get_mut(), &mut self.capped)),
        };
        self.inner = Inflate::Failed;
        match r {
            Ok(out) => out,
            Err(e) => {
                self.error = Some(format!("content-encoding {name}: {e}"));
                Vec::new()
            }
        }
    }

    /// The decoding error, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// Takes what a decoder wrote into its sink; notes when the sink's budget ran out.
fn take_out(sink: &mut Capped, capped: &mut bool) -> Vec<u8> {
    *capped |= sink.dropped || sink.room == 0;
    std::mem::take(&mut sink.buf)
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
    fn a_compressed_bomb_inflates_only_up_to_the_cap() {
        // 32 MiB of zeros compress to about 32 KiB.
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        for _ in 0..32 {
            e.write_all(&[0u8; 1 << 20]).unwrap();
        }
        let z = e.finish().unwrap();
        let headers = h(&[("content-encoding", "gzip"), ("content-type", "text/plain")]);
        let mut copy = BodyCopy::new(&headers, 1000);
        for chunk in z.chunks(512) {
            copy.push(chunk);
            assert!(copy.held_bytes() <= 64 * 1024, "the copy stays small");
        }
        assert_eq!(copy.wire_bytes(), z.len() as u64);
        let b = copy.store(&headers, &Redactor::default());
        assert!(b.truncated);
        assert_eq!(b.raw.unwrap().len(), 1000);

        let mut d = StreamDecoder::with_budget(&Encoding::Gzip, 4096);
        let mut out = 0;
        for chunk in z.chunks(512) {
            out += d.push(chunk).len();
        }
        assert_eq!(out, 4096);
        assert!(d.capped());
    }

    #[test]
    fn raw_deflate_is_accepted_frame_by_frame() {
        let json = br#"{"a":1}"#;
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(json).unwrap();
        let raw = e.finish().unwrap();
        let frames: Vec<Bytes> = raw.chunks(2).map(Bytes::copy_from_slice).collect();
        let b = store_body(
            &frames,
            &h(&[("content-encoding", "deflate")]),
            100,
            &Redactor::default(),
        );
        assert_eq!(b.value, Some(serde_json::json!({"a": 1})), "{b:?}");
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
