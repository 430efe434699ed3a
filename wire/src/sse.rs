//! Incremental Server-Sent Events decoder and encoders (no I/O).
//!
//! Decoding follows the WHATWG "event stream interpretation" rules:
//! - lines end with LF, CR or CRLF (a CRLF split across two chunks is still one line end);
//! - a leading UTF-8 byte order mark is skipped; lines are decoded as UTF-8, invalid
//!   sequences become U+FFFD (a multi-byte character split across chunks is fine, since
//!   lines are only decoded once complete);
//! - lines starting with `:` are comments;
//! - `field:value` with one optional space after the colon removed; a line without a colon
//!   is a field name with an empty value (the spec example's literal `...` line is such an
//!   unknown field, and is ignored like every unknown field);
//! - `data` lines are joined with `\n`; `event`, `id` (ignored if it contains NUL) and
//!   `retry` (ignored unless all ASCII digits) are recorded;
//! - a blank line dispatches the event, but only if at least one `data` line was seen
//!   (an event with no data, named or not, is dropped, as the WHATWG rules say).
//!
//! Deviation (documented tolerance): at end of stream, [`SseDecoder::finish`] returns a
//! pending event that lacks its final blank line instead of discarding it.
//!
//! A CR that is the last byte of a chunk is held back until the next byte shows whether an
//! LF follows. This keeps [`SseEvent::raw_len`] independent of how the stream is chunked;
//! the cost is that a stream using bare CR line ends sees each event one chunk late (no
//! known server does this; [`SseDecoder::finish`] flushes the last one).

use bytes::Bytes;
use serde_json::Value;

/// Default limit for [`SseDecoder::new`]: 16 MiB.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, `None` when missing or empty (the WHATWG default type `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field given in this event's lines, if any.
    pub id: Option<String>,
    /// The `retry:` field given in this event's lines, if valid.
    pub retry: Option<u64>,
    /// Wire bytes this event accounts for: everything consumed since the previous dispatched
    /// event (comments, blank lines, dropped data-less blocks, a BOM) up to and including
    /// the blank line that dispatched it. The `raw_len`s of all events plus whatever trails
    /// the last one add up to the stream length. Set to 0 on events built by hand.
    pub raw_len: usize,
}

impl SseEvent {
    /// An event with the given name and data (no id, no retry, `raw_len` 0).
    pub fn new(event: Option<&str>, data: impl Into<String>) -> Self {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.into(),
            ..Default::default()
        }
    }

    /// `true` when the data is the chat-completions end sentinel `[DONE]`.
    pub fn is_done_sentinel(&self) -> bool {
        self.data == "[DONE]"
    }

    /// Parses the data as JSON.
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

/// Errors from [`SseDecoder`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// The pending event (decoded data, event name and id, plus any incomplete line) grew
    /// beyond the limit. The decoder refuses further input afterwards.
    #[error("SSE event larger than the limit of {limit} bytes")]
    EventTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
}

/// Incremental SSE decoder: feed it byte chunks split anywhere, get complete events back.
///
/// Memory is bounded by the size limit: the pending event plus the current line (complete or
/// not) may not exceed it (the buffer may briefly also hold the rest of the chunk being pushed).
/// Whether the limit is hit does not depend on how the stream is chunked.
#[derive(Debug, Clone)]
pub struct SseDecoder {
    max_event_size: usize,
    /// Unprocessed bytes: after each `push`, at most one incomplete line (possibly ending
    /// in a CR that awaits its LF).
    buf: Vec<u8>,
    /// Length of the prefix of `buf` known to contain no line end.
    scanned: usize,
    /// No line processed yet (the BOM check is pending).
    at_start: bool,
    event_type: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
    /// Wire bytes consumed since the last dispatched event.
    raw: usize,
    last_event_id: Option<String>,
    total_bytes: u64,
    failed: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseDecoder {
    /// A decoder with the default 16 MiB event size limit.
    pub fn new() -> Self {
        Self::with_max_event_size(DEFAULT_MAX_EVENT_SIZE)
    }

    /// A decoder with a custom event size limit in bytes.
    pub fn with_max_event_size(max: usize) -> Self {
        SseDecoder {
            max_event_size: max,
            buf: Vec::new(),
            scanned: 0,
            at_start: true,
            event_type: String::new(),
            data: String::new(),
            has_data: false,
            id: None,
            retry: None,
            raw: 0,
            last_event_id: None,
            total_bytes: 0,
            failed: false,
        }
    }

    /// The most recent `id:` value seen (WHATWG "last event ID"), even from an event that
    /// was not dispatched.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Total bytes pushed so far.
    pub fn bytes_pushed(&self) -> u64 {
        self.total_bytes
    }

    /// Feeds a chunk and returns the events it completed, in order.
    ///
    /// On [`SseError::EventTooLarge`] the events completed earlier in the same chunk are
    /// dropped too, and every later call fails the same way.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        if self.failed {
            return Err(self.too_large());
        }
        self.total_bytes += chunk.len() as u64;
        self.buf.extend_from_slice(chunk);
        let buf = std::mem::take(&mut self.buf);
        let mut events = Vec::new();
        let mut start = 0;
        let result = loop {
            let from = self.scanned.max(start);
            let Some(rel) = buf[from..].iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.scanned = buf.len();
                break Ok(());
            };
            let eol = from + rel;
            let term = if buf[eol] == b'\n' {
                1
            } else if eol + 1 < buf.len() {
                if buf[eol + 1] == b'\n' { 2 } else { 1 }
            } else {
                // A CR at the very end: wait for the next byte.
                self.scanned = eol;
                break Ok(());
            };
            match self.process_line(&buf[start..eol], eol - start + term) {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            start = eol + term;
        };
        self.buf = buf;
        self.buf.drain(..start);
        self.scanned = self.scanned.saturating_sub(start);
        result?;
        // The incomplete line, without a CR held back for its LF (a CR that ends a line is not
        // part of it): the same measure `process_line` applies to complete lines, so where the
        // chunks split does not change whether the limit is hit.
        let partial = self.buf.len() - usize::from(self.buf.last() == Some(&b'\r'));
        if partial + self.pending_size() > self.max_event_size {
            self.failed = true;
            return Err(self.too_large());
        }
        Ok(events)
    }

    /// Ends the stream. An incomplete last line is processed as if terminated, and a
    /// pending event that never got its blank line is returned rather than dropped.
    pub fn finish(mut self) -> Result<Option<SseEvent>, SseError> {
        if self.failed {
            return Err(self.too_large());
        }
        let buf = std::mem::take(&mut self.buf);
        if !buf.is_empty() {
            let line = buf.strip_suffix(b"\r").unwrap_or(&buf);
            if let Some(ev) = self.process_line(line, buf.len())? {
                return Ok(Some(ev));
            }
        }
        Ok(self.dispatch())
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge {
            limit: self.max_event_size,
        }
    }

    fn pending_size(&self) -> usize {
        self.data.len() + self.event_type.len() + self.id.as_ref().map_or(0, String::len)
    }

    /// Interprets one line (without its terminator); `consumed` counts its wire bytes.
    fn process_line(
        &mut self,
        mut line: &[u8],
        consumed: usize,
    ) -> Result<Option<SseEvent>, SseError> {
        self.raw += consumed;
        // A line counts against the limit before it is interpreted, as it would while incomplete
        // (a long comment or unknown field is refused however it was chunked).
        if line.len() + self.pending_size() > self.max_event_size {
            self.failed = true;
            return Err(self.too_large());
        }
        if self.at_start {
            self.at_start = false;
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"id" if !value.contains(&0) => {
                let id = String::from_utf8_lossy(value).into_owned();
                self.last_event_id = Some(id.clone());
                self.id = Some(id);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // All digits, so only overflow can fail; an overflowing value is ignored.
                if let Ok(ms) = std::str::from_utf8(value).unwrap_or("").parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        if self.pending_size() > self.max_event_size {
            self.failed = true;
            return Err(self.too_large());
        }
        Ok(None)
    }

    /// Handles a blank line (or end of stream): returns the pending event if it has data,
    /// and resets the per-event state either way.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event_type = std::mem::take(&mut self.event_type);
        let data = std::mem::take(&mut self.data);
        let id = self.id.take();
        let retry = self.retry.take();
        if !std::mem::replace(&mut self.has_data, false) {
            return None;
        }
        let raw_len = std::mem::replace(&mut self.raw, 0);
        Some(SseEvent {
            event: (!event_type.is_empty()).then_some(event_type),
            data,
            id,
            retry,
            raw_len,
        })
    }
}

/// Encodes a named event: exactly `event: {event_type}\ndata: {data_json}\n\n` when the data
/// is one line. Data containing line breaks is written as several `data:` lines (which
/// decode back to the same text with `\n` line ends); line breaks in the event name are
/// removed so they cannot break the framing.
pub fn encode_event(event_type: &str, data_json: &str) -> Bytes {
    let mut out = String::with_capacity(event_type.len() + data_json.len() + 16);
    push_event_line(&mut out, event_type);
    push_data_lines(&mut out, data_json);
    out.push('\n');
    Bytes::from(out)
}

/// Encodes a conversation event payload: the event name is `ev["type"]` and the data is the
/// compact one-line JSON of `ev`. Without a string `type`, only the `data:` line is written.
pub fn encode_conversation_event(ev: &Value) -> Bytes {
    let json = ev.to_string();
    match ev.get("type").and_then(Value::as_str) {
        Some(t) => encode_event(t, &json),
        None => encode_data(&json),
    }
}

/// Encodes an unnamed event: `data: {data}\n\n` (chat-completions style, e.g. `[DONE]`).
pub fn encode_data(data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 8);
    push_data_lines(&mut out, data);
    out.push('\n');
    Bytes::from(out)
}

/// Encodes any [`SseEvent`]: `event:`, `id:`, `retry:` (when set) and the `data:` lines.
/// `raw_len` is ignored. Decoding the result gives back the same event fields.
pub fn encode_sse_event(ev: &SseEvent) -> Bytes {
    let mut out = String::with_capacity(ev.data.len() + 32);
    if let Some(name) = &ev.event {
        push_event_line(&mut out, name);
    }
    if let Some(id) = &ev.id {
        out.push_str("id: ");
        out.extend(id.chars().filter(|c| !matches!(c, '\r' | '\n')));
        out.push('\n');
    }
    if let Some(retry) = ev.retry {
        out.push_str(&format!("retry: {retry}\n"));
    }
    push_data_lines(&mut out, &ev.data);
    out.push('\n');
    Bytes::from(out)
}

fn push_event_line(out: &mut String, name: &str) {
    out.push_str("event: ");
    out.extend(name.chars().filter(|c| !matches!(c, '\r' | '\n')));
    out.push('\n');
}

/// Writes `data: <line>\n` for each line of `data` (split on CRLF, CR or LF).
fn push_data_lines(out: &mut String, data: &str) {
    let mut rest = data;
    loop {
        let (line, next) = match rest.find(['\r', '\n']) {
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..i], Some(&rest[i + skip..]))
            }
            None => (rest, None),
        };
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
}
