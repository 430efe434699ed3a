//! The write-ahead journal: a compact, checksummed binary encoding of [`Msg`]s in append-only
//! segment files (`seg-<n>.log`, written by the writer; `spill-<n>.log`, written by the spill
//! thread), and the code that reads them back.
//!
//! Record layout (all integers little-endian):
//!
//! ```text
//! [u32 payload length][u32 CRC-32 of the payload][payload]
//! payload = [u8 kind][fields of that kind…]
//! ```
//!
//! Strings and byte strings are `[u32 length][bytes]`; optional values carry a `u8` 0/1 flag first;
//! header lists are `[u32 count]` then name/value string pairs. A response record ends with the
//! upstream's HTTP version (`u8`, 0 = none); records written before that field existed end at
//! the headers and read back with no version. A record whose length runs past the
//! end of the file or whose checksum does not match ends the readable part of the file: that is
//! the torn tail a crash leaves behind, and everything after it is ignored.
//!
//! Header values that carry credentials are replaced by `[REDACTED]` while encoding, so no
//! credential can reach the journal whatever the caller passed in. The `--redact` patterns are
//! applied while encoding too: to header values, the query, tags, error texts and body frames.
//! A body frame is masked when it is UTF-8 text (a character cut at either edge of the frame is
//! allowed); binary frames (a compressed body) are written as received, and a match that spans two
//! frames cannot be seen in either. The database copy is masked after decoding and reassembly, so
//! it has neither limit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::borrow::Cow;

use bytes::Bytes;
use uuid::Uuid;

use crate::record::{HttpVersion, Msg, Outcome, RequestInfo, Timings};

use super::body::{REDACTED, Redactor, is_sensitive_header};

/// Record header size: length + checksum.
pub const HEADER_LEN: usize = 8;
/// Records longer than this are treated as corruption.
pub const MAX_RECORD: usize = 1 << 30;
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

    /// Parses a file name produced by [`SegId::path`].
    pub fn parse(name: &str) -> Option<SegId> {
        let stem = name.strip_suffix(".log")?;
        for kind in [SegKind::Journal, SegKind::Spill] {
            if let Some(n) = stem.strip_prefix(kind.prefix()) {
                return n.parse().ok().map(|no| SegId { kind, no });
            }
        }
        None
    }
}

/// Lists the journal files in `dir`, sorted (journal segments first, then spill files, each by number).
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegId>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(SegId::parse) {
            out.push(id);
        }
    }
    out.sort();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends the full record (header + payload) of `msg` to `out`, with `redactor`'s patterns
/// masked.
pub fn encode_record(msg: &Msg, out: &mut Vec<u8>, redactor: &Redactor) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    encode_payload(msg, out, redactor);
    let payload = &out[start + HEADER_LEN..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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

/// What [`parse_records`] found in a buffer.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The decoded messages, in file order.
    pub msgs: Vec<Msg>,
    /// Bytes of `buf` made of complete, valid records.
    pub valid_len: usize,
    /// `true` when something followed the valid part: a torn or corrupt tail.
    pub torn: bool,
}

/// Decodes consecutive records from `buf`, stopping at the first incomplete or corrupt one.
pub fn parse_records(buf: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < HEADER_LEN {
            out.torn = true;
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD || rest.len() - HEADER_LEN < len {
            out.torn = true;
            break;
        }
        let payload = &rest[HEADER_LEN..HEADER_LEN + len];
        if crc32fast::hash(payload) != crc {
            out.torn = true;
            break;
        }
        match decode_payload(payload) {
            Ok(m) => out.msgs.push(m),
            Err(_) => {
                out.torn = true;
                break;
            }
        }
        pos += HEADER_LEN + len;
    }
    out.valid_len = pos;
    out
}

/// Reads a whole journal file (see [`parse_records`]).
pub fn read_file(path: &Path) -> io::Result<Parsed> {
    let buf = fs::read(path)?;
    Ok(parse_records(&buf))
}

/// Reads the records in `path` between byte `from` and byte `to` (both record boundaries).
pub fn read_range(path: &Path, from: u64, to: u64) -> io::Result<Parsed> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0));
    f.take(to.saturating_sub(from)).read_to_end(&mut buf)?;
    Ok(parse_records(&buf))
}

// ---------------------------------------------------------------------------------------------
// Writing

/// An append-only journal file with buffered writes and explicit group commits.
#[derive(Debug)]
pub struct SegmentFile {
    /// Which file this is.
    pub id: SegId,
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes appended so far (buffered ones included).
    pub len: u64,
    /// Bytes known to be on disk (fsynced).
    pub synced_len: u64,
    scratch: Vec<u8>,
    redactor: Redactor,
}

impl SegmentFile {
    /// Creates (or truncates) the file; `redactor`'s patterns are masked in every record.
    pub fn create(dir: &Path, id: SegId, redactor: Redactor) -> io::Result<SegmentFile> {
        let path = id.path(dir);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        Ok(SegmentFile {
            id,
            path,
            out: BufWriter::with_capacity(256 * 1024, file),
            len: 0,
            synced_len: 0,
            scratch: Vec::with_capacity(4096),
            redactor,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record; returns its size in bytes.
    pub fn append(&mut self, msg: &Msg) -> io::Result<u64> {
        self.scratch.clear();
        encode_record(msg, &mut self.scratch, &self.redactor);
        self.out.write_all(&self.scratch)?;
        let n = self.scratch.len() as u64;
        self.len += n;
        if self.scratch.capacity() > 1 << 20 {
            self.scratch = Vec::with_capacity(4096);
        }
        Ok(n)
    }

    /// `true` when bytes were appended since the last [`SegmentFile::sync`].
    pub fn dirty(&self) -> bool {
        self.len != self.synced_len
    }

    /// Hands buffered bytes to the OS (readable by other file handles, not yet durable).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Group commit: flush and fsync.
    pub fn sync(&mut self) -> io::Result<()> {
        if !self.dirty() {
            return Ok(());
        }
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        self.synced_len = self.len;
        Ok(())
    }

    /// Drops the file handle WITHOUT flushing buffered bytes, as a crash would (tests).
    pub fn abandon(self) {
        let (_file, _unflushed) = self.out.into_parts();
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
        // Msg has no PartialEq; compare the serde form.
        serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
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
        assert!(!parsed.torn);
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
            assert_eq!(parsed.torn, !boundaries.contains(&cut));
        }
    }

    #[test]
    fn corrupt_byte_stops_reading() {
        let msgs = sample();
        let mut buf = Vec::new();
        for m in &msgs {
            encode_record(m, &mut buf, &Redactor::default());
        }
        let mut first = Vec::new();
        encode_record(&msgs[0], &mut first, &Redactor::default());
        // Flip a byte inside the second record's payload.
        buf[first.len() + HEADER_LEN + 3] ^= 0x55;
        let parsed = parse_records(&buf);
        assert!(parsed.torn);
        assert_eq!(parsed.msgs.len(), 1);
        assert_eq!(parsed.valid_len, first.len());
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
    }

    #[test]
    fn times_round_trip() {
        for us in [0i64, 1, -1, 1_700_000_000_123_456, -86_400_000_000] {
            assert_eq!(system_time_to_us(us_to_system_time(us)), us);
        }
    }
}
