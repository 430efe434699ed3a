//! The write-ahead journal: a compact, checksummed binary encoding of [`Msg`]s in append-only
//! segment files (`seg-<n>.log`, written by the writer; `spill-<n>.log`, written by the spill
//! thread), and the code that reads them back.
//!
//! File layout (all integers little-endian):
//!
//! ```text
//! segment = [header][record]*
//! header  = ["ACJRNL\r\n" (8 bytes)][u32 format version][u32 CRC-32 of the 12 bytes before]
//! record  = [u32 magic A7 1C C4 9E][u32 payload length][u32 CRC-32 of length + payload]
//!           [u32 CRC-32 of the 12 bytes before][payload]
//! payload = [u8 kind][fields of that kind…]
//! ```
//!
//! Strings and byte strings are `[u32 length][bytes]`; optional values carry a `u8` 0/1 flag first;
//! header lists are `[u32 count]` then name/value string pairs. A response record ends with the
//! upstream's HTTP version (`u8`, 0 = none); records written before that field existed end at
//! the headers and read back with no version.
//!
//! Reading ([`parse_segment`]) never stops at the first bad record: it scans forward for the next
//! record magic whose header and payload validate and resumes there, reporting the bytes it
//! skipped as damage. Bad bytes after the last valid record form the file's tail: in the newest
//! file of a family that is the torn tail a crash leaves behind; anywhere else it is corruption
//! (the caller decides, see `replay::replay`). A length field is only believed once the record's
//! header checksum matches and the record fits in the buffer, so no input can make the reader
//! allocate more than the input's size. Files of format version 1 (no file header, records
//! `[u32 length][u32 CRC][payload]`) are still read; a file whose header names a version this
//! build does not know is refused ([`UnsupportedVersion`]), never guessed at.
//!
//! Header values that carry credentials are replaced by `[REDACTED]` while encoding, so no
//! credential can reach the journal whatever the caller passed in. The `--redact` patterns are
//! applied while encoding too: to header values, the query, tags, error texts and body frames.
//! A body frame is masked when it is UTF-8 text (a character cut at either edge of the frame is
//! allowed); binary frames (a compressed body) are written as received, and a match that spans two
//! frames cannot be seen in either. The database copy is masked after decoding and reassembly, so
//! it has neither limit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::borrow::Cow;

use bytes::Bytes;
use uuid::Uuid;

use crate::record::{HttpVersion, Msg, Outcome, RequestInfo, Timings};

use super::body::{REDACTED, Redactor, is_sensitive_header};

/// The first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"ACJRNL\r\n";
/// The format version this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// Segment header size: magic, version, checksum.
pub const SEGMENT_HEADER_LEN: usize = 16;
/// The first 4 bytes of every record (format version 2).
pub const RECORD_MAGIC: [u8; 4] = [0xA7, 0x1C, 0xC4, 0x9E];
/// Record header size: magic, length, payload checksum, header checksum.
pub const HEADER_LEN: usize = 16;
/// Record header size in format version 1: length, checksum.
const V1_HEADER_LEN: usize = 8;
/// Records longer than this are treated as corruption.
pub const MAX_RECORD: usize = 1 << 30;
/// Segment numbers above this are not ours (so `no + 1` can never overflow).
pub const MAX_SEGMENT_NO: u64 = u64::MAX >> 1;
/// Segments are closed once they grow past this size.
pub const SEGMENT_ROTATE_BYTES: u64 = 64 * 1024 * 1024;

const KIND_REQUEST: u8 = 1;
const KIND_REQUEST_BODY: u8 = 2;
const KIND_RESPONSE: u8 = 3;
const KIND_RESPONSE_BODY: u8 = 4;
const KIND_END: u8 = 5;

/// Which family a journal file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SegKind {
    /// `seg-<n>.log`, written by the writer thread.
    Journal,
    /// `spill-<n>.log`, written by the spill thread.
    Spill,
}

impl SegKind {
    fn prefix(self) -> &'static str {
        match self {
            SegKind::Journal => "seg-",
            SegKind::Spill => "spill-",
        }
    }
}

/// Identifies one journal file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegId {
    /// Family.
    pub kind: SegKind,
    /// Sequence number within the family.
    pub no: u64,
}

impl SegId {
    /// The file's path inside `dir`.
    pub fn path(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}{:08}.log", self.kind.prefix(), self.no))
    }

    /// Parses a file name produced by [`SegId::path`]: the prefix, 1 to 20 ASCII digits for a
    /// number no larger than [`MAX_SEGMENT_NO`], then `.log`. Anything else is `None`, never a panic.
    pub fn parse(name: &str) -> Option<SegId> {
        let stem = name.strip_suffix(".log")?;
        for kind in [SegKind::Journal, SegKind::Spill] {
            if let Some(n) = stem.strip_prefix(kind.prefix()) {
                if n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                return n
                    .parse::<u64>()
                    .ok()
                    .filter(|no| *no <= MAX_SEGMENT_NO)
                    .map(|no| SegId { kind, no });
            }
        }
        None
    }

    /// The number after this one (saturating at [`MAX_SEGMENT_NO`]` + 1`, never overflowing).
    pub fn next_no(self) -> u64 {
        self.no.saturating_add(1)
    }
}

/// `true` for a name that looks like a journal file (`seg-…log`, `spill-…log`) but that
/// [`SegId::parse`] refuses: an odd number, a number too large, a sign.
pub fn is_odd_segment_name(name: &str) -> bool {
    SegId::parse(name).is_none()
        && name.ends_with(".log")
        && (name.starts_with(SegKind::Journal.prefix())
            || name.starts_with(SegKind::Spill.prefix()))
}

/// The journal files of a directory.
#[derive(Debug, Default)]
pub struct Listing {
    /// Journal files, sorted (journal segments first, then spill files, each by number).
    pub segments: Vec<SegId>,
    /// Names that look like journal files but do not parse (see [`is_odd_segment_name`]).
    pub odd: Vec<String>,
}

/// Lists the journal files in `dir`, sorted (journal segments first, then spill files, each by number).
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegId>> {
    list_dir(dir).map(|l| l.segments)
}

/// Lists the journal files in `dir` and the odd names beside them.
pub fn list_dir(dir: &Path) -> io::Result<Listing> {
    let mut out = Listing::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(id) = SegId::parse(&name) {
            out.segments.push(id);
        } else if is_odd_segment_name(&name) {
            out.odd.push(name);
        }
    }
    out.segments.sort();
    out.odd.sort();
    Ok(out)
}

/// The segment header this build writes.
pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    encode_segment_header(FORMAT_VERSION)
}

/// A segment header naming `version` (tests write other versions with it).
pub fn encode_segment_header(version: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends the full record (header + payload) of `msg` to `out`, with `redactor`'s patterns
/// masked.
pub fn encode_record(msg: &Msg, out: &mut Vec<u8>, redactor: &Redactor) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    encode_payload(msg, out, redactor);
    let len = u32::try_from(out.len() - start - HEADER_LEN).unwrap_or(u32::MAX);
    let crc = payload_crc(len, &out[start + HEADER_LEN..]);
    let h = &mut out[start..start + HEADER_LEN];
    h[..4].copy_from_slice(&RECORD_MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32fast::hash(&h[..12]);
    h[12..16].copy_from_slice(&hcrc.to_le_bytes());
}

fn payload_crc(len: u32, payload: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&len.to_le_bytes());
    c.update(payload);
    c.finalize()
}

/// Masks `redactor`'s matches in a body frame that is UTF-8 text. A frame may start or end in
/// the middle of a character (frames split anywhere); those partial characters are kept as they
/// are. Anything else (a compressed body) is returned unchanged.
pub fn redact_frame<'a>(redactor: &Redactor, bytes: &'a [u8]) -> Cow<'a, [u8]> {
    if redactor.is_empty() {
        return Cow::Borrowed(bytes);
    }
    // At most three continuation bytes of a character that began in the previous frame.
    let head = bytes
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    let rest = &bytes[head..];
    let (text, tail) = match std::str::from_utf8(rest) {
        Ok(t) => (t, &[][..]),
        // A character cut by the end of the frame.
        Err(e) if e.error_len().is_none() => {
            let (valid, tail) = rest.split_at(e.valid_up_to());
            match std::str::from_utf8(valid) {
                Ok(t) => (t, tail),
                Err(_) => return Cow::Borrowed(bytes),
            }
        }
        Err(_) => return Cow::Borrowed(bytes),
    };
    match redactor.text(text) {
        Cow::Borrowed(_) => Cow::Borrowed(bytes),
        Cow::Owned(masked) => {
            let mut out = Vec::with_capacity(head + masked.len() + tail.len());
            out.extend_from_slice(&bytes[..head]);
            out.extend_from_slice(masked.as_bytes());
            out.extend_from_slice(tail);
            Cow::Owned(out)
        }
    }
}

fn encode_payload(msg: &Msg, out: &mut Vec<u8>, redactor: &Redactor) {
    match msg {
        Msg::Request { info } => {
            out.push(KIND_REQUEST);
            put_uuid(out, &info.id);
            put_i64(out, system_time_to_us(info.started_at));
            put_str(out, &info.method);
            put_str(out, &info.path);
            put_opt_str(
                out,
                info.query.as_deref().map(|q| redactor.text(q)).as_deref(),
            );
            put_str(out, &info.client_addr);
            put_headers(out, &info.headers, redactor);
            put_opt_str(out, info.key_fingerprint.as_deref());
            put_opt_str(out, info.session.as_deref());
            put_pairs(out, &info.tags, redactor);
        }
        Msg::RequestBody { id, seq, bytes } => {
            out.push(KIND_REQUEST_BODY);
            put_uuid(out, id);
            put_u32(out, *seq);
            put_bytes(out, &redact_frame(redactor, bytes));
        }
        Msg::Response {
            id,
            seq,
            status,
            headers,
            at_us,
            upstream_version,
        } => {
            out.push(KIND_RESPONSE);
            put_uuid(out, id);
            put_u32(out, *seq);
            out.extend_from_slice(&status.to_le_bytes());
            put_u64(out, *at_us);
            put_headers(out, headers, redactor);
            out.push(upstream_version.map_or(0, version_code));
        }
        Msg::ResponseBody {
            id,
            seq,
            at_us,
            bytes,
        } => {
            out.push(KIND_RESPONSE_BODY);
            put_uuid(out, id);
            put_u32(out, *seq);
            put_u64(out, *at_us);
            put_bytes(out, &redact_frame(redactor, bytes));
        }
        Msg::End {
            id,
            seq,
            outcome,
            error,
            timings,
            bytes_in,
            bytes_out,
        } => {
            out.push(KIND_END);
            put_uuid(out, id);
            put_u32(out, *seq);
            out.push(outcome_code(*outcome));
            put_opt_str(out, error.as_deref().map(|e| redactor.text(e)).as_deref());
            match timings.response_headers_us {
                Some(v) => {
                    out.push(1);
                    put_u64(out, v);
                }
                None => out.push(0),
            }
            put_u64(out, timings.total_us);
            put_u64(out, timings.upstream_us);
            put_u64(out, *bytes_in);
            put_u64(out, *bytes_out);
        }
    }
}

fn outcome_code(o: Outcome) -> u8 {
    match o {
        Outcome::Complete => 0,
        Outcome::CancelledByClient => 1,
        Outcome::UpstreamError => 2,
        Outcome::ProxyError => 3,
        Outcome::Timeout => 4,
        Outcome::ClientError => 5,
    }
}

fn version_code(v: HttpVersion) -> u8 {
    match v {
        HttpVersion::Http09 => 1,
        HttpVersion::Http10 => 2,
        HttpVersion::Http11 => 3,
        HttpVersion::Http2 => 4,
        HttpVersion::Http3 => 5,
    }
}

fn version_from(code: u8) -> Result<Option<HttpVersion>, DecodeError> {
    Ok(Some(match code {
        0 => return Ok(None),
        1 => HttpVersion::Http09,
        2 => HttpVersion::Http10,
        3 => HttpVersion::Http11,
        4 => HttpVersion::Http2,
        5 => HttpVersion::Http3,
        _ => return Err(DecodeError("unknown HTTP version")),
    }))
}

fn outcome_from(code: u8) -> Option<Outcome> {
    Some(match code {
        0 => Outcome::Complete,
        1 => Outcome::CancelledByClient,
        2 => Outcome::UpstreamError,
        3 => Outcome::ProxyError,
        4 => Outcome::Timeout,
        5 => Outcome::ClientError,
        _ => return None,
    })
}

/// Microseconds since the Unix epoch (negative before it).
pub fn system_time_to_us(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Inverse of [`system_time_to_us`].
pub fn us_to_system_time(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_uuid(out: &mut Vec<u8>, id: &Uuid) {
    out.extend_from_slice(id.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, u32::try_from(b.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn put_pairs(out: &mut Vec<u8>, pairs: &[(String, String)], redactor: &Redactor) {
    put_u32(out, u32::try_from(pairs.len()).unwrap_or(u32::MAX));
    for (k, v) in pairs {
        put_str(out, k);
        put_str(out, &redactor.text(v));
    }
}

/// Like [`put_pairs`], but credential-carrying headers get `[REDACTED]` as their value.
fn put_headers(out: &mut Vec<u8>, headers: &[(String, String)], redactor: &Redactor) {
    put_u32(out, u32::try_from(headers.len()).unwrap_or(u32::MAX));
    for (k, v) in headers {
        put_str(out, k);
        if is_sensitive_header(k) {
            put_str(out, REDACTED);
        } else {
            put_str(out, &redactor.text(v));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed journal record: {0}")]
pub struct DecodeError(&'static str);

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError("field runs past the record"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(a))
    }

    fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        let mut a = [0; 16];
        a.copy_from_slice(self.take(16)?);
        Ok(Uuid::from_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad option flag")),
        }
    }

    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        if self.flag()? {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }

    fn pairs(&mut self) -> Result<Vec<(String, String)>, DecodeError> {
        let n = self.u32()? as usize;
        // Every pair takes at least 8 bytes: refuse counts the record cannot hold.
        if n > (self.buf.len() - self.pos) / 8 {
            return Err(DecodeError("pair count larger than the record"));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push((self.string()?, self.string()?));
        }
        Ok(v)
    }
}

/// Decodes one record payload (without the 8-byte header).
pub fn decode_payload(payload: &[u8]) -> Result<Msg, DecodeError> {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let msg = match c.u8()? {
        KIND_REQUEST => {
            let id = c.uuid()?;
            let started_at = us_to_system_time(c.i64()?);
            Msg::Request {
                info: Box::new(RequestInfo {
                    id,
                    started_at,
                    method: c.string()?,
                    path: c.string()?,
                    query: c.opt_string()?,
                    client_addr: c.string()?,
                    headers: c.pairs()?,
                    key_fingerprint: c.opt_string()?,
                    session: c.opt_string()?,
                    tags: c.pairs()?,
                }),
            }
        }
        KIND_REQUEST_BODY => Msg::RequestBody {
            id: c.uuid()?,
            seq: c.u32()?,
            bytes: Bytes::copy_from_slice(c.bytes()?),
        },
        KIND_RESPONSE => Msg::Response {
            id: c.uuid()?,
            seq: c.u32()?,
            status: c.u16()?,
            at_us: c.u64()?,
            headers: c.pairs()?,
            // Absent in records written before the field existed.
            upstream_version: if c.pos < payload.len() {
                version_from(c.u8()?)?
            } else {
                None
            },
        },
        KIND_RESPONSE_BODY => Msg::ResponseBody {
            id: c.uuid()?,
            seq: c.u32()?,
            at_us: c.u64()?,
            bytes: Bytes::copy_from_slice(c.bytes()?),
        },
        KIND_END => {
            let id = c.uuid()?;
            let seq = c.u32()?;
            let outcome = outcome_from(c.u8()?).ok_or(DecodeError("unknown outcome"))?;
            let error = c.opt_string()?;
            let response_headers_us = if c.flag()? { Some(c.u64()?) } else { None };
            Msg::End {
                id,
                seq,
                outcome,
                error,
                timings: Timings {
                    response_headers_us,
                    total_us: c.u64()?,
                    upstream_us: c.u64()?,
                },
                bytes_in: c.u64()?,
                bytes_out: c.u64()?,
            }
        }
        _ => return Err(DecodeError("unknown record kind")),
    };
    if c.pos != payload.len() {
        return Err(DecodeError("trailing bytes after the record"));
    }
    Ok(msg)
}

/// A file header names a format version this build cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "journal format version {0} is not one this build reads (1 to {FORMAT_VERSION}); a newer agentcap wrote it"
)]
pub struct UnsupportedVersion(pub u32);

/// What [`parse_segment`] / [`parse_records`] found in a buffer.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The file's format version (1: no file header).
    pub version: u32,
    /// The decoded messages, in file order.
    pub msgs: Vec<Msg>,
    /// The byte range of each decoded record in the buffer (same order as `msgs`).
    pub spans: Vec<Range<usize>>,
    /// Byte ranges skipped between valid records: corruption wherever the file is.
    pub damage: Vec<Range<usize>>,
    /// Invalid or incomplete bytes after the last valid record (to the end of the buffer): the
    /// torn tail a crash leaves in the newest file, corruption in any other.
    pub tail: Option<Range<usize>>,
    /// End of the last valid record (or of the file header when there is none).
    pub valid_len: usize,
}

impl Parsed {
    /// `true` when the buffer ends with something other than a complete record.
    pub fn torn(&self) -> bool {
        self.tail.is_some()
    }

    /// Bytes skipped between valid records.
    pub fn damaged_bytes(&self) -> usize {
        self.damage.iter().map(ExactSizeIterator::len).sum()
    }
}

/// The record starting at `pos`, if one does: magic, header checksum, length within the buffer,
/// payload checksum and decoding all check out. Returns it with its end.
/// Which records a parse decodes, by exchange id (`None`: all).
type Keep<'a> = Option<&'a dyn Fn(Uuid) -> bool>;

/// The exchange id a payload starts with (every kind: its byte, then the id), read without
/// decoding the rest.
fn payload_id(payload: &[u8]) -> Option<Uuid> {
    let id: [u8; 16] = payload.get(1..17)?.try_into().ok()?;
    Some(Uuid::from_bytes(id))
}

/// A valid record at `pos`: its message (`None` when `keep` leaves it out) and its end.
fn record_at(buf: &[u8], pos: usize, keep: Keep<'_>) -> Option<(Option<Msg>, usize)> {
    let h = buf.get(pos..pos.checked_add(HEADER_LEN)?)?;
    if h[..4] != RECORD_MAGIC {
        return None;
    }
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if crc32fast::hash(&h[..12]) != word(12) {
        return None;
    }
    let len = word(4);
    if len as usize > MAX_RECORD {
        return None;
    }
    let start = pos + HEADER_LEN;
    let end = start.checked_add(len as usize)?;
    let payload = buf.get(start..end)?;
    if payload_crc(len, payload) != word(8) {
        return None;
    }
    if let Some(keep) = keep
        && payload_id(payload).is_some_and(|id| !keep(id))
    {
        return Some((None, end));
    }
    decode_payload(payload).ok().map(|m| (Some(m), end))
}

/// The next position at or after `from` where a valid record starts.
fn resync(buf: &[u8], from: usize, keep: Keep<'_>) -> Option<(usize, Option<Msg>, usize)> {
    let mut at = from;
    while at < buf.len() {
        let rel = buf[at..]
            .windows(RECORD_MAGIC.len())
            .position(|w| w == RECORD_MAGIC)?;
        let cand = at + rel;
        if let Some((m, end)) = record_at(buf, cand, keep) {
            return Some((cand, m, end));
        }
        at = cand + 1;
    }
    None
}

/// Decodes the records of `buf` (format version 2, no file header) from byte `start`. A bad
/// record does not stop it: it resumes at the next valid record and reports what it skipped.
pub fn parse_records(buf: &[u8]) -> Parsed {
    parse_from(buf, 0, None)
}

fn parse_from(buf: &[u8], start: usize, keep: Keep<'_>) -> Parsed {
    let mut out = Parsed {
        version: FORMAT_VERSION,
        valid_len: start,
        ..Parsed::default()
    };
    let mut pos = start;
    while pos < buf.len() {
        if let Some((m, end)) = record_at(buf, pos, keep) {
            if let Some(m) = m {
                out.msgs.push(m);
                out.spans.push(pos..end);
            }
            out.valid_len = end;
            pos = end;
            continue;
        }
        match resync(buf, pos + 1, keep) {
            Some((at, m, end)) => {
                out.damage.push(pos..at);
                if let Some(m) = m {
                    out.msgs.push(m);
                    out.spans.push(at..end);
                }
                out.valid_len = end;
                pos = end;
            }
            None => {
                out.tail = Some(pos..buf.len());
                break;
            }
        }
    }
    out
}

/// A version 1 record at the start of `rest`, with its size.
fn v1_record(rest: &[u8]) -> Option<(Msg, usize)> {
    let h = rest.get(..V1_HEADER_LEN)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len > MAX_RECORD {
        return None;
    }
    let payload = rest.get(V1_HEADER_LEN..V1_HEADER_LEN.checked_add(len)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    decode_payload(payload)
        .ok()
        .map(|m| (m, V1_HEADER_LEN + len))
}

/// Format version 1: `[u32 length][u32 CRC][payload]`, no file header, reading stops at the
/// first bad record (that format has nothing to resynchronise on).
fn parse_v1(buf: &[u8]) -> Parsed {
    let mut out = Parsed {
        version: 1,
        ..Parsed::default()
    };
    let mut pos = 0;
    while pos < buf.len() {
        let ok = v1_record(&buf[pos..]);
        let Some((m, n)) = ok else {
            out.tail = Some(pos..buf.len());
            break;
        };
        out.msgs.push(m);
        out.spans.push(pos..pos + n);
        pos += n;
    }
    out.valid_len = pos;
    out
}

/// Reads a whole journal file's bytes: its header, then every valid record, resynchronising
/// after damage (see the module documentation). The pure entry point of the reader: it never
/// panics and allocates no more than about the input's size, whatever the input.
pub fn parse_segment(buf: &[u8]) -> Result<Parsed, UnsupportedVersion> {
    parse_segment_keeping(buf, None)
}

/// [`parse_segment`], decoding only the records of the exchanges `keep` accepts when the file
/// has a valid header (the others are checked and skipped, and left out of `msgs` and `spans`);
/// a file without one is parsed whole.
fn parse_segment_keeping(buf: &[u8], keep: Keep<'_>) -> Result<Parsed, UnsupportedVersion> {
    if buf.len() >= SEGMENT_HEADER_LEN && buf[..8] == SEGMENT_MAGIC {
        let h = &buf[..SEGMENT_HEADER_LEN];
        let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if crc32fast::hash(&h[..12]) == crc {
            if version != FORMAT_VERSION {
                return Err(UnsupportedVersion(version));
            }
            return Ok(parse_from(buf, SEGMENT_HEADER_LEN, keep));
        }
    }
    // A header cut short by a crash right after the file was created.
    if buf.len() < SEGMENT_HEADER_LEN && segment_header().starts_with(buf) {
        let mut p = Parsed {
            version: FORMAT_VERSION,
            ..Parsed::default()
        };
        if !buf.is_empty() {
            p.tail = Some(0..buf.len());
        }
        return Ok(p);
    }
    // No (valid) header: a version 1 file, or a version 2 file whose header is damaged (its
    // bytes then come out as damage before the first record, or as the tail).
    let v2 = parse_from(buf, 0, None);
    if v2.msgs.is_empty() {
        let v1 = parse_v1(buf);
        if !v1.msgs.is_empty() {
            return Ok(v1);
        }
    }
    Ok(v2)
}

fn invalid(e: UnsupportedVersion) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Reads a whole journal file (see [`parse_segment`]); an unknown format version is an
/// `InvalidData` error wrapping [`UnsupportedVersion`].
pub fn read_file(path: &Path) -> io::Result<Parsed> {
    let buf = fs::read(path)?;
    parse_segment(&buf).map_err(invalid)
}

/// [`read_file`], decoding only the messages of the exchanges `keep` accepts (a file without a
/// valid header is decoded whole): deriving a few exchanges again from a large segment then
/// costs a pass over its bytes, not a copy of all its messages.
pub fn read_file_keeping(path: &Path, keep: &dyn Fn(Uuid) -> bool) -> io::Result<Parsed> {
    let buf = fs::read(path)?;
    parse_segment_keeping(&buf, Some(keep)).map_err(invalid)
}

/// Reads the records in `path` between byte `from` and byte `to` (both record boundaries, or 0
/// for the start of the file, header included). Offsets in the result are relative to `from`.
pub fn read_range(path: &Path, from: u64, to: u64) -> io::Result<Parsed> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0));
    f.take(to.saturating_sub(from)).read_to_end(&mut buf)?;
    if from == 0 {
        parse_segment(&buf).map_err(invalid)
    } else {
        Ok(parse_records(&buf))
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Buffered bytes are handed to the OS once they reach this size.
const WRITE_BUFFER: usize = 256 * 1024;

/// An append-only journal file with buffered writes and explicit group commits. After a failed
/// write or sync, [`SegmentFile::rollback`] cuts the file back to its last commit so it can be
/// written again (no new file per failure).
#[derive(Debug)]
pub struct SegmentFile {
    /// Which file this is.
    pub id: SegId,
    path: PathBuf,
    file: File,
    /// Bytes appended but not yet handed to the OS.
    buf: Vec<u8>,
    /// Bytes appended so far (buffered ones and the file header included).
    pub len: u64,
    /// Bytes known to be on disk (fsynced).
    pub synced_len: u64,
    /// Records appended so far (rolled-back ones excluded).
    pub records: u64,
    synced_records: u64,
    redactor: Redactor,
}

impl SegmentFile {
    /// Creates (or truncates) the file and appends its header; `redactor`'s patterns are masked
    /// in every record.
    pub fn create(dir: &Path, id: SegId, redactor: Redactor) -> io::Result<SegmentFile> {
        let path = id.path(dir);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&segment_header());
        Ok(SegmentFile {
            id,
            path,
            file,
            len: buf.len() as u64,
            buf,
            synced_len: 0,
            records: 0,
            synced_records: 0,
            redactor,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record; returns its size in bytes.
    pub fn append(&mut self, msg: &Msg) -> io::Result<u64> {
        let start = self.buf.len();
        encode_record(msg, &mut self.buf, &self.redactor);
        let n = (self.buf.len() - start) as u64;
        self.len += n;
        self.records += 1;
        if self.buf.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(n)
    }

    /// `true` when bytes were appended since the last [`SegmentFile::sync`].
    pub fn dirty(&self) -> bool {
        self.len != self.synced_len
    }

    /// Hands buffered bytes to the OS (readable by other file handles, not yet durable).
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
            if self.buf.capacity() > 4 * WRITE_BUFFER {
                self.buf = Vec::with_capacity(4096);
            }
        }
        Ok(())
    }

    /// Group commit: flush and fsync.
    pub fn sync(&mut self) -> io::Result<()> {
        if !self.dirty() {
            return Ok(());
        }
        self.flush()?;
        self.file.sync_data()?;
        self.synced_len = self.len;
        self.synced_records = self.records;
        Ok(())
    }

    /// After a failed write or sync: forgets what was appended since the last commit and cuts
    /// the file back to it, so the next append continues a well-formed file.
    pub fn rollback(&mut self) -> io::Result<()> {
        self.buf.clear();
        let keep = if self.synced_len < SEGMENT_HEADER_LEN as u64 {
            0
        } else {
            self.synced_len
        };
        self.file.set_len(keep)?;
        self.file.seek(SeekFrom::Start(keep))?;
        self.synced_len = keep;
        self.len = keep;
        self.records = self.synced_records;
        if keep == 0 {
            self.buf.extend_from_slice(&segment_header());
            self.len = SEGMENT_HEADER_LEN as u64;
        }
        Ok(())
    }

    /// Drops the file handle WITHOUT flushing buffered bytes, as a crash would (tests).
    pub fn abandon(self) {
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn sample() -> Vec<Msg> {
        let id = Uuid::now_v7();
        vec![
            Msg::Request {
                info: Box::new(RequestInfo {
                    id,
                    started_at: SystemTime::now(),
                    method: "POST".into(),
                    path: "/v1/conversations".into(),
                    query: Some("a=1".into()),
                    client_addr: "127.0.0.1:5000".into(),
                    headers: vec![
                        ("content-type".into(), "application/json".into()),
                        ("Authorization".into(), "Bearer sk-TOPSECRET".into()),
                    ],
                    key_fingerprint: Some("abcdef012345".into()),
                    session: None,
                    tags: vec![("run".into(), "7".into())],
                }),
            },
            Msg::RequestBody {
                id,
                seq: 1,
                bytes: Bytes::from_static(b"{\"inputs\":\"hi\"}"),
            },
            Msg::Response {
                id,
                seq: 2,
                status: 200,
                headers: vec![("content-type".into(), "text/event-stream".into())],
                at_us: 1234,
                upstream_version: Some(HttpVersion::Http2),
            },
            Msg::ResponseBody {
                id,
                seq: 3,
                at_us: 2000,
                bytes: Bytes::from_static(b"data: x\n\n"),
            },
            Msg::End {
                id,
                seq: 4,
                outcome: Outcome::CancelledByClient,
                error: Some("client went away".into()),
                timings: Timings {
                    response_headers_us: Some(1234),
                    total_us: 3000,
                    upstream_us: 2900,
                },
                bytes_in: 15,
                bytes_out: 9,
            },
        ]
    }

    fn same(a: &Msg, b: &Msg) -> bool {
        // Msg has no PartialEq; its Debug form shows every field.
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip_and_credentials_never_encoded() {
        let msgs = sample();
        let mut buf = Vec::new();
        for m in &msgs {
            encode_record(m, &mut buf, &Redactor::default());
        }
        assert!(!buf.windows(9).any(|w| w == b"TOPSECRET"));
        let parsed = parse_records(&buf);
        assert!(!parsed.torn());
        assert!(parsed.damage.is_empty());
        assert_eq!(parsed.valid_len, buf.len());
        assert_eq!(parsed.msgs.len(), msgs.len());
        for (a, b) in msgs.iter().zip(&parsed.msgs).skip(1) {
            assert!(same(a, b), "{a:?} != {b:?}");
        }
        let Msg::Request { info } = &parsed.msgs[0] else {
            panic!("first record is not a request")
        };
        assert_eq!(info.headers[1].1, REDACTED);
        assert_eq!(info.tags, vec![("run".to_owned(), "7".to_owned())]);
    }

    #[test]
    fn response_records_without_a_version_still_decode() {
        let msg = &sample()[2];
        let mut payload = Vec::new();
        encode_payload(msg, &mut payload, &Redactor::default());
        let Msg::Response {
            upstream_version, ..
        } = decode_payload(&payload).unwrap()
        else {
            panic!("not a response")
        };
        assert_eq!(upstream_version, Some(HttpVersion::Http2));
        // The layout before the field existed: the record ends at the headers.
        payload.pop();
        let Msg::Response {
            upstream_version,
            status,
            headers,
            ..
        } = decode_payload(&payload).unwrap()
        else {
            panic!("not a response")
        };
        assert_eq!((upstream_version, status, headers.len()), (None, 200, 1));
        payload.push(99);
        assert!(
            decode_payload(&payload).is_err(),
            "an unknown version code is corruption"
        );
    }

    #[test]
    fn redact_patterns_are_masked_while_encoding() {
        let r = Redactor::new(vec![regex::Regex::new("tok-[0-9]{4}").unwrap()]);
        let masked = |b: &[u8]| redact_frame(&r, b).into_owned();
        assert_eq!(masked(b"a tok-1234 b"), b"a [REDACTED] b");
        assert!(matches!(
            redact_frame(&r, b"nothing here"),
            Cow::Borrowed(_)
        ));
        // Characters cut at either edge of the frame are kept as they are.
        let text = "é tok-1234 é".as_bytes();
        let cut = &text[1..text.len() - 1];
        let mut want = vec![text[1]];
        want.extend_from_slice(" [REDACTED] ".as_bytes());
        want.push(text[text.len() - 2]);
        assert_eq!(masked(cut), want);
        // Binary (compressed) frames are left alone.
        let binary = [
            0x1f, 0x8b, 0xff, b't', b'o', b'k', b'-', b'1', b'2', b'3', b'4',
        ];
        assert_eq!(masked(&binary), binary);
        assert_eq!(
            redact_frame(&Redactor::default(), b"tok-1234").as_ref(),
            b"tok-1234"
        );

        let id = Uuid::now_v7();
        let mut buf = Vec::new();
        let msgs = [
            Msg::Request {
                info: Box::new(RequestInfo {
                    id,
                    started_at: SystemTime::now(),
                    method: "POST".into(),
                    path: "/v1/conversations".into(),
                    query: Some("k=tok-1111".into()),
                    client_addr: "127.0.0.1:5000".into(),
                    headers: vec![("x-note".into(), "tok-2222".into())],
                    key_fingerprint: None,
                    session: None,
                    tags: vec![("t".into(), "tok-3333".into())],
                }),
            },
            Msg::RequestBody {
                id,
                seq: 1,
                bytes: Bytes::from_static(b"{\"inputs\":\"tok-4444\"}"),
            },
            Msg::End {
                id,
                seq: 2,
                outcome: Outcome::UpstreamError,
                error: Some("bad tok-5555".into()),
                timings: Timings::default(),
                bytes_in: 0,
                bytes_out: 0,
            },
        ];
        for m in &msgs {
            encode_record(m, &mut buf, &r);
        }
        assert!(
            !buf.windows(4).any(|w| w == b"tok-"),
            "a pattern match was journaled"
        );
        assert_eq!(parse_records(&buf).msgs.len(), 3);
    }

    #[test]
    fn torn_tail_is_ignored_at_every_cut() {
        let msgs = sample();
        let mut buf = Vec::new();
        let mut boundaries = vec![0];
        for m in &msgs {
            encode_record(m, &mut buf, &Redactor::default());
            boundaries.push(buf.len());
        }
        for cut in 0..buf.len() {
            let parsed = parse_records(&buf[..cut]);
            let whole = boundaries.iter().filter(|&&b| b <= cut).count() - 1;
            assert_eq!(parsed.msgs.len(), whole, "cut at {cut}");
            assert_eq!(parsed.torn(), !boundaries.contains(&cut));
            assert!(parsed.damage.is_empty(), "a cut is a tail, not damage");
        }
    }

    fn encoded(msgs: &[Msg]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut boundaries = vec![0];
        for m in msgs {
            encode_record(m, &mut buf, &Redactor::default());
            boundaries.push(buf.len());
        }
        (buf, boundaries)
    }

    #[test]
    fn a_corrupt_byte_is_skipped_and_reading_resumes() {
        let msgs = sample();
        let (mut buf, b) = encoded(&msgs);
        // Flip a byte inside the second record's payload, then one in the fourth's header.
        buf[b[1] + HEADER_LEN + 3] ^= 0x55;
        buf[b[3] + 5] ^= 0x01;
        let parsed = parse_records(&buf);
        assert!(!parsed.torn());
        assert_eq!(parsed.damage, vec![b[1]..b[2], b[3]..b[4]]);
        assert_eq!(parsed.msgs.len(), 3);
        assert_eq!(parsed.spans, vec![b[0]..b[1], b[2]..b[3], b[4]..b[5]]);
        assert!(same(&parsed.msgs[1], &msgs[2]));
        assert!(same(&parsed.msgs[2], &msgs[4]));
        assert_eq!(parsed.damaged_bytes(), (b[2] - b[1]) + (b[4] - b[3]));
        // Garbage inserted between records is skipped too.
        let (mut buf, b) = encoded(&msgs);
        buf.splice(b[2]..b[2], b"\xa7\x1c\xc4\x9e garbage".iter().copied());
        let parsed = parse_records(&buf);
        assert_eq!(parsed.msgs.len(), msgs.len());
        assert_eq!(parsed.damage.len(), 1);
        // A length field cannot make the reader believe a record runs past the buffer.
        let (mut buf, b) = encoded(&msgs);
        buf[b[1] + 7] = 0x7f;
        let parsed = parse_records(&buf);
        assert_eq!(parsed.msgs.len(), msgs.len() - 1);
    }

    /// A parse that keeps some exchanges decodes exactly their messages, in file order, whatever
    /// the damage around them: the same as a full parse filtered afterwards.
    #[test]
    fn a_parse_keeping_some_exchanges_equals_a_full_parse_filtered() {
        let (a, b) = (sample(), sample());
        let mut msgs = Vec::new();
        for (x, y) in a.iter().zip(&b) {
            msgs.push(x.clone());
            msgs.push(y.clone());
        }
        let keep_id = b[0].exchange_id();
        let keep = |id: Uuid| id == keep_id;
        let (records, bounds) = encoded(&msgs);
        let mut file = segment_header().to_vec();
        file.extend_from_slice(&records);
        let mut hurt = file.clone();
        // Damage in one of the other exchange's records and in one of the kept exchange's.
        hurt[SEGMENT_HEADER_LEN + bounds[2] + HEADER_LEN + 2] ^= 0x55;
        hurt[SEGMENT_HEADER_LEN + bounds[5] + HEADER_LEN + 2] ^= 0x55;
        for buf in [&file, &hurt] {
            let full = parse_segment(buf).unwrap();
            let kept = parse_segment_keeping(buf, Some(&keep)).unwrap();
            let expected: Vec<&Msg> = full
                .msgs
                .iter()
                .filter(|m| m.exchange_id() == keep_id)
                .collect();
            assert_eq!(kept.msgs.len(), expected.len());
            assert!(kept.msgs.iter().zip(&expected).all(|(k, e)| same(k, e)));
            assert_eq!(kept.damage, full.damage);
            assert_eq!(kept.valid_len, full.valid_len);
        }
        assert_eq!(
            parse_segment_keeping(&file, Some(&keep))
                .unwrap()
                .msgs
                .len(),
            b.len()
        );
    }

    #[test]
    fn segment_header_versions() {
        let msgs = sample();
        let (records, _) = encoded(&msgs);
        let mut file = segment_header().to_vec();
        file.extend_from_slice(&records);
        let p = parse_segment(&file).unwrap();
        assert_eq!((p.version, p.msgs.len(), p.valid_len), (2, 5, file.len()));
        assert!(p.damage.is_empty() && !p.torn());
        // A crash right after creating the file: a header cut short is a torn tail.
        for cut in 0..SEGMENT_HEADER_LEN {
            let p = parse_segment(&file[..cut]).unwrap();
            assert!(p.msgs.is_empty());
            assert_eq!(p.torn(), cut > 0);
        }
        // An unknown version is refused, not guessed at.
        let mut future = file.clone();
        future[..SEGMENT_HEADER_LEN].copy_from_slice(&encode_segment_header(3));
        assert_eq!(parse_segment(&future).unwrap_err(), UnsupportedVersion(3));
        // A damaged header is damage: every record is still read.
        let mut hurt = file.clone();
        hurt[9] ^= 0xff;
        let p = parse_segment(&hurt).unwrap();
        assert_eq!(p.msgs.len(), 5);
        assert_eq!(p.damage, vec![0..SEGMENT_HEADER_LEN]);
        // Version 1 files (no header, [len][crc][payload]) still read.
        let mut v1 = Vec::new();
        for m in &msgs {
            let mut payload = Vec::new();
            encode_payload(m, &mut payload, &Redactor::default());
            v1.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            v1.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            v1.extend_from_slice(&payload);
        }
        let p = parse_segment(&v1).unwrap();
        assert_eq!((p.version, p.msgs.len()), (1, 5));
        let p = parse_segment(&v1[..v1.len() - 1]).unwrap();
        assert_eq!((p.version, p.msgs.len(), p.torn()), (1, 4, true));
    }

    #[test]
    fn a_segment_rolls_back_to_its_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let id = SegId {
            kind: SegKind::Journal,
            no: 1,
        };
        let msgs = sample();
        let mut f = SegmentFile::create(dir.path(), id, Redactor::default()).unwrap();
        f.rollback().unwrap();
        f.append(&msgs[0]).unwrap();
        f.sync().unwrap();
        f.append(&msgs[1]).unwrap();
        f.flush().unwrap();
        f.rollback().unwrap();
        f.append(&msgs[2]).unwrap();
        f.sync().unwrap();
        let p = read_file(f.path()).unwrap();
        assert!(p.damage.is_empty() && !p.torn());
        assert_eq!(p.msgs.len(), 2);
        assert!(same(&p.msgs[1], &msgs[2]));
        assert_eq!(f.records, 2);
    }

    #[test]
    fn segment_names() {
        let id = SegId {
            kind: SegKind::Spill,
            no: 12,
        };
        let p = id.path(Path::new("/x"));
        assert_eq!(p, Path::new("/x/spill-00000012.log"));
        assert_eq!(SegId::parse("spill-00000012.log"), Some(id));
        assert_eq!(
            SegId::parse("seg-3.log"),
            Some(SegId {
                kind: SegKind::Journal,
                no: 3
            })
        );
        assert_eq!(SegId::parse("seg-x.log"), None);
        assert_eq!(SegId::parse("other.txt"), None);
        for odd in [
            "seg-18446744073709551615.log",
            "seg-99999999999999999999999.log",
            "seg-+3.log",
            "seg-.log",
            "spill--1.log",
        ] {
            assert_eq!(SegId::parse(odd), None, "{odd}");
            assert!(is_odd_segment_name(odd), "{odd}");
        }
        assert!(!is_odd_segment_name("notes.txt"));
        let top = SegId::parse(&format!("seg-{MAX_SEGMENT_NO}.log")).unwrap();
        assert_eq!(top.next_no(), MAX_SEGMENT_NO + 1);
    }

    #[test]
    fn times_round_trip() {
        for us in [0i64, 1, -1, 1_700_000_000_123_456, -86_400_000_000] {
            assert_eq!(system_time_to_us(us_to_system_time(us)), us);
        }
    }
}
