//! Reading the journal back: whole exchanges for the DuckDB thread to derive again, and the replay on
//! start of what a previous run left (damaged files kept aside under `corrupt/`). Shared by the writer
//! and the DuckDB thread, and importing neither.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use duckdb::Connection;

use crate::record::{ExchangeId, Msg};

use super::RecorderError;
use super::db;
use super::derive::{DeriveCtx, Derived, EVENT_CHUNK_ROWS, EventRow, ExchangeMsgs, derive};
use super::journal::{self, SegId, SegKind};

/// Exchanges derived per pass when replaying the journal.
const REDERIVE_CHUNK: usize = 2_000;

pub(crate) fn journal_err(path: &Path) -> impl FnOnce(std::io::Error) -> RecorderError + '_ {
    move |source| RecorderError::Journal {
        path: path.to_owned(),
        source,
    }
}

/// An exchange being read back from the journal: messages are folded into its bounded copy as soon
/// as they are next in `seq` order (only out-of-order ones wait), so reading a long exchange back
/// costs what its copy costs, not its size.
struct Loading {
    msgs: ExchangeMsgs,
    next: u32,
    early: BTreeMap<u32, Msg>,
}

/// What receives the `sse_events` rows a long stream derives while it is read back, in `seq`
/// order, before its exchange's other rows (see [`ExchangeMsgs::take_event_chunk`]).
pub(crate) type EventSink<'a> =
    dyn FnMut(ExchangeId, Vec<EventRow>) -> Result<(), RecorderError> + 'a;

/// Reads the exchanges `ids` from the journal files `files`, folded into their bounded copies; the
/// event rows of a long stream go to `events` as they are derived.
pub(crate) fn load_exchanges(
    dir: &Path,
    files: &BTreeSet<SegId>,
    ids: &HashSet<ExchangeId>,
    ctx: &DeriveCtx,
    events: &mut EventSink<'_>,
) -> Result<HashMap<ExchangeId, ExchangeMsgs>, RecorderError> {
    let mut loading: HashMap<ExchangeId, Loading> = HashMap::new();
    for seg in files {
        let path = seg.path(dir);
        let keep = |id: ExchangeId| ids.contains(&id);
        let Some(parsed) = read_keeping(&path, &keep)? else {
            continue;
        };
        for m in parsed.msgs {
            let id = m.exchange_id();
            if !ids.contains(&id) {
                continue;
            }
            let l = loading.entry(id).or_insert_with(|| Loading {
                msgs: ExchangeMsgs::new(id),
                next: 0,
                early: BTreeMap::new(),
            });
            let seq = m.seq();
            if seq == l.next {
                l.msgs.push(m, ctx);
                l.next += 1;
                while let Some(m) = l.early.remove(&l.next) {
                    l.msgs.push(m, ctx);
                    l.next += 1;
                }
                if let Some(rows) = l.msgs.take_event_chunk(EVENT_CHUNK_ROWS) {
                    events(id, rows)?;
                }
            } else if seq > l.next {
                l.early.entry(seq).or_insert(m);
            }
        }
    }
    Ok(loading
        .into_iter()
        .map(|(id, mut l)| {
            // Messages after a gap (an exchange that never completed), in order.
            for (_, m) in std::mem::take(&mut l.early) {
                l.msgs.push(m, ctx);
            }
            (id, l.msgs)
        })
        .collect())
}

/// What [`replay`] did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReplayReport {
    pub exchanges: u64,
    pub next_journal_no: u64,
    pub next_spill_no: u64,
    /// Damaged files (kept under `corrupt/`) and the bytes skipped in them.
    pub corrupt_segments: u64,
    pub corrupt_bytes: u64,
}

/// The directory damaged journal files are moved to.
pub(crate) fn corrupt_dir(dir: &Path) -> PathBuf {
    dir.join("corrupt")
}

/// Moves `name` from `dir` into `dir/corrupt/` (never overwriting an earlier one); returns where.
fn quarantine(dir: &Path, name: &str) -> Result<PathBuf, RecorderError> {
    let cdir = corrupt_dir(dir);
    std::fs::create_dir_all(&cdir).map_err(journal_err(&cdir))?;
    let mut to = cdir.join(name);
    let mut n = 1u32;
    while to.exists() {
        to = cdir.join(format!("{name}.{n}"));
        n = n.saturating_add(1);
    }
    let from = dir.join(name);
    std::fs::rename(&from, &to).map_err(journal_err(&from))?;
    Ok(to)
}

/// The format version an `InvalidData` read error is about, if that is what it is.
fn unsupported_version(e: &io::Error) -> Option<u32> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<journal::UnsupportedVersion>())
        .map(|v| v.0)
}

/// Reads a journal file for replay; a file of an unknown format version stops the recorder
/// from opening (the file is left where it is).
fn read_for_replay(path: &Path) -> Result<Option<journal::Parsed>, RecorderError> {
    read_with(path, journal::read_file(path))
}

/// [`read_for_replay`], decoding only the messages of the exchanges `keep` accepts.
fn read_keeping(
    path: &Path,
    keep: &dyn Fn(ExchangeId) -> bool,
) -> Result<Option<journal::Parsed>, RecorderError> {
    read_with(path, journal::read_file_keeping(path, keep))
}

fn read_with(
    path: &Path,
    read: io::Result<journal::Parsed>,
) -> Result<Option<journal::Parsed>, RecorderError> {
    match read {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(match unsupported_version(&e) {
            Some(version) => RecorderError::JournalVersion {
                path: path.to_owned(),
                version,
            },
            None => journal_err(path)(e),
        }),
    }
}

/// Rebuilds the exchanges left in the journal by a previous run and writes those DuckDB does not
/// have (exchanges without an `End` become `proxy_error` rows), then deletes the files (damaged
/// ones are moved to `corrupt/`).
pub(crate) fn replay(
    conn: &Connection,
    dir: &Path,
    ctx: &DeriveCtx,
    batch_rows: usize,
) -> Result<ReplayReport, RecorderError> {
    let listing = journal::list_dir(dir).map_err(journal_err(dir))?;
    for name in &listing.odd {
        let to = quarantine(dir, name)?;
        tracing::warn!(file = %dir.join(name).display(), moved_to = %to.display(),
            "agentcap recorder: a file named like a journal segment has a number this build does not use; moved aside, not replayed");
    }
    let segs = listing.segments;
    let newest = |kind| segs.iter().filter(|s| s.kind == kind).max().copied();
    let next = |kind| newest(kind).map_or(0, SegId::next_no);
    let mut report = ReplayReport {
        next_journal_no: next(SegKind::Journal),
        next_spill_no: next(SegKind::Spill),
        ..ReplayReport::default()
    };
    if segs.is_empty() {
        return Ok(report);
    }
    // Pass 1: which exchanges are where, in order of first appearance; which files are damaged.
    let mut order = Vec::new();
    let mut located: HashMap<ExchangeId, Vec<SegId>> = HashMap::new();
    let mut corrupt = BTreeSet::new();
    for seg in &segs {
        let path = seg.path(dir);
        let Some(parsed) = read_for_replay(&path)? else {
            continue;
        };
        // Only the newest file of its family was being written when the process stopped.
        let is_newest = newest(seg.kind) == Some(*seg);
        let tail = parsed.tail.clone().map_or(0, |t| t.len());
        if parsed.damage.is_empty() && (tail == 0 || is_newest) {
            if tail > 0 {
                tracing::info!(file = %path.display(), valid_bytes = parsed.valid_len, torn_bytes = tail,
                    "agentcap recorder: ignoring the torn tail of the newest journal file (a write cut by the stop)");
            }
        } else {
            let bytes = (parsed.damaged_bytes() + if is_newest { 0 } else { tail }) as u64;
            tracing::error!(file = %path.display(), damaged_ranges = parsed.damage.len(), damaged_bytes = bytes,
                tail_bytes = tail, records_read = parsed.msgs.len(),
                "agentcap recorder: journal file is damaged; replaying every valid record before and after the damage and keeping the file under corrupt/");
            corrupt.insert(*seg);
            report.corrupt_segments += 1;
            report.corrupt_bytes += bytes;
        }
        for m in &parsed.msgs {
            let id = m.exchange_id();
            let at = located.entry(id).or_insert_with(|| {
                order.push(id);
                Vec::new()
            });
            if !at.contains(seg) {
                at.push(*seg);
            }
        }
    }
    // Event rows a long stream's chunks wrote before the stop, for an exchange that did not get
    // its `exchanges` row: the exchange is derived again below, rows included.
    db::delete_orphan_events(conn)?;
    // Pass 2: derive and write, a chunk of exchanges at a time, skipping the exchanges DuckDB
    // already has (the DuckDB thread had committed them before the crash).
    for chunk in order.chunks(REDERIVE_CHUNK) {
        let texts: Vec<String> = chunk.iter().map(ToString::to_string).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let have = db::existing_ids(conn, &refs)?;
        let chunk: Vec<ExchangeId> = chunk
            .iter()
            .zip(&texts)
            .filter(|(_, t)| !have.contains(*t))
            .map(|(id, _)| *id)
            .collect();
        let ids: HashSet<ExchangeId> = chunk.iter().copied().collect();
        let files: BTreeSet<SegId> = chunk
            .iter()
            .flat_map(|id| located.get(id).into_iter().flatten().copied())
            .collect();
        let mut loaded = load_exchanges(dir, &files, &ids, ctx, &mut |id, rows| {
            db::write_event_chunks(conn, &[(&id.to_string(), &rows)], false).map(drop)
        })?;
        let derived: Vec<Derived> = chunk
            .iter()
            .filter_map(|id| loaded.remove(id).map(|m| derive(m, ctx)))
            .collect();
        let mut start = 0;
        while start < derived.len() {
            let mut end = start;
            let mut rows = 0;
            while end < derived.len() && (end == start || rows < batch_rows) {
                rows += derived[end].row_count();
                end += 1;
            }
            let batch: Vec<&Derived> = derived[start..end].iter().collect();
            let counts = db::write_batch(conn, &batch, true)?;
            report.exchanges += counts.exchanges;
            start = end;
        }
    }
    for seg in &segs {
        let path = seg.path(dir);
        if corrupt.contains(seg) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let to = quarantine(dir, &name)?;
            tracing::error!(file = %to.display(), "agentcap recorder: damaged journal file kept aside");
            continue;
        }
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(journal_err(&path)(e));
        }
    }
    if report.exchanges > 0 {
        tracing::info!(
            exchanges = report.exchanges,
            "agentcap recorder: recovered exchanges from the journal"
        );
    }
    Ok(report)
}
