//! The writer thread: owns the DuckDB connection and the journal.
//!
//! Every message from the channel is appended to the current journal segment (group-committed
//! every `journal_commit_interval`); spilled messages are read back from the spill files when the
//! channel is empty. Messages are put back in `seq` order per exchange; when an exchange's `End`
//! and everything before it are in, a deriver thread derives its rows and they are queued for the
//! next DuckDB batch (in the order the exchanges finished).
//! A journal file is deleted once every exchange with a message in it is committed. When DuckDB
//! fails, batches stay pending and are retried every 500 ms; past `max_pending_exchanges` the
//! derived rows are dropped from memory and derived again from the journal on recovery.
//!
//! [`replay`] is what [`super::Recorder::open`] runs first: it rebuilds the exchanges a previous
//! run left in the journal and inserts the ones DuckDB does not have yet.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use duckdb::Connection;
use tokio::sync::oneshot;

use crate::record::{ExchangeId, Msg};

use super::db::{self, BatchCounts};
use super::derive::{DeriveCtx, Derived, ExchangeMsgs, derive};
use super::journal::{self, SEGMENT_ROTATE_BYTES, SegId, SegKind, SegmentFile};
use super::{
    Control, Durability, Item, RecorderConfig, RecorderError, Shared, SpillItem, StatsAtomics,
    try_drain,
};

/// Delay between DuckDB retries while it fails.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Exchanges derived per pass when replaying or re-deriving from the journal.
const REDERIVE_CHUNK: usize = 2_000;

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The channel: the writer journals it.
    Channel,
    /// A spill file (already durable there).
    Spill(SegId),
}

/// An exchange still receiving messages.
struct Live {
    msgs: ExchangeMsgs,
    next_seq: u32,
    early: BTreeMap<u32, Msg>,
    end_seq: Option<u32>,
    segs: Vec<SegId>,
    ack: Option<oneshot::Sender<()>>,
    /// Journal write number of the latest message journaled for it.
    mark: u64,
    /// A message of it could not be journaled: its acknowledgement cannot be honoured.
    unjournaled: bool,
}

impl Live {
    fn new(id: ExchangeId) -> Self {
        Live {
            msgs: ExchangeMsgs::new(id),
            next_seq: 0,
            early: BTreeMap::new(),
            end_seq: None,
            segs: Vec::new(),
            ack: None,
            mark: 0,
            unjournaled: false,
        }
    }

    fn complete(&self) -> bool {
        self.end_seq.is_some_and(|e| self.next_seq > e)
    }

    /// All messages received, the ones after a gap included (for exchanges that never completed).
    fn into_msgs(mut self) -> (ExchangeMsgs, Vec<SegId>, Option<oneshot::Sender<()>>, u64) {
        for (_, m) in std::mem::take(&mut self.early) {
            self.msgs.push(m);
        }
        // Dropping the sender tells the waiter that durability could not be ensured.
        let ack = if self.unjournaled { None } else { self.ack };
        (self.msgs, self.segs, ack, self.mark)
    }
}

/// A finished exchange waiting for its DuckDB batch.
struct Pending {
    /// Position in the queue: consecutive, so a derivation result finds its entry directly.
    ticket: u64,
    id: ExchangeId,
    /// The rows; `None` while a deriver works on them, or once dropped from memory (then
    /// derived again from the journal before writing).
    derived: Option<Derived>,
    /// A deriver thread has the messages.
    deriving: bool,
    /// Row count (an estimate while deriving).
    rows: usize,
    segs: Vec<SegId>,
}

/// Work for a deriver thread, and its answer (`None` if derivation panicked).
type DeriveJob = (u64, ExchangeMsgs);
type DeriveDone = (u64, Option<Derived>);

/// Derives exchanges off the writer thread, so parsing overlaps journaling and DuckDB writes.
fn run_deriver(ctx: DeriveCtx, jobs: Receiver<DeriveJob>, done: Sender<DeriveDone>) {
    for (ticket, msgs) in jobs {
        let derived =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| derive(&msgs, &ctx))).ok();
        if done.send((ticket, derived)).is_err() {
            return;
        }
    }
}

/// Rows for an exchange whose derivation panicked (a bug): at least its id and the failure.
fn underivable(id: ExchangeId) -> Derived {
    let mut d = Derived::default();
    d.exchange.id = id.to_string();
    d.exchange.operation = "other".to_owned();
    d.exchange.outcome = "proxy_error".to_owned();
    d.exchange.error = Some("the recorder failed to derive this exchange's rows".to_owned());
    d
}

/// Bookkeeping of one journal file.
struct SegState {
    /// Exchanges with a message in the file that are not committed yet.
    live: HashSet<ExchangeId>,
    /// Still written to (journal) or still being read (spill).
    open: bool,
}

pub(crate) struct WriterInit {
    pub cfg: RecorderConfig,
    pub journal_dir: PathBuf,
    pub derive: DeriveCtx,
    pub shared: Arc<Shared>,
    pub conn: Connection,
    pub data_rx: Receiver<Item>,
    pub ctl_rx: Receiver<Control>,
    pub spill_tx: Sender<SpillItem>,
    pub next_journal_no: u64,
    pub first_spill_no: u64,
}

pub(crate) struct Writer {
    cfg: RecorderConfig,
    dir: PathBuf,
    derive: DeriveCtx,
    shared: Arc<Shared>,
    conn: Connection,
    data_rx: Receiver<Item>,
    ctl_rx: Receiver<Control>,
    spill_tx: Sender<SpillItem>,

    journal: Option<SegmentFile>,
    next_journal_no: u64,
    /// Messages journaled so far, and how many of them are fsynced.
    writes: u64,
    synced_writes: u64,
    last_sync: Instant,
    journal_ok: bool,
    segs: BTreeMap<SegId, SegState>,

    live: HashMap<ExchangeId, Live>,
    pending: VecDeque<Pending>,
    next_ticket: u64,
    /// Derivations handed out and not answered yet.
    in_flight: usize,
    jobs_tx: Option<Sender<DeriveJob>>,
    done_rx: Receiver<DeriveDone>,
    derivers: Vec<std::thread::JoinHandle<()>>,
    pending_rows: usize,
    pending_since: Option<Instant>,
    acks: Vec<(u64, oneshot::Sender<()>)>,
    waiters: Vec<oneshot::Sender<Result<(), RecorderError>>>,

    failing: bool,
    next_retry: Instant,
    dedupe: bool,
    memory_dropped_warned: bool,

    spill_no: u64,
    spill_offset: u64,
    spill_ingested: u64,
}

impl Writer {
    pub fn new(init: WriterInit) -> Self {
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<DeriveJob>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<DeriveDone>();
        // One deriver per spare core (at least one, at most four).
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .clamp(1, 4);
        let derivers = (0..n)
            .filter_map(|i| {
                let (ctx, jobs, done) = (init.derive.clone(), jobs_rx.clone(), done_tx.clone());
                std::thread::Builder::new()
                    .name(format!("agentcap-derive-{i}"))
                    .spawn(move || run_deriver(ctx, jobs, done))
                    .ok()
            })
            .collect::<Vec<_>>();
        // Without any deriver thread, derivation happens inline.
        let jobs_tx = (!derivers.is_empty()).then_some(jobs_tx);
        Writer {
            cfg: init.cfg,
            dir: init.journal_dir,
            derive: init.derive,
            shared: init.shared,
            conn: init.conn,
            data_rx: init.data_rx,
            ctl_rx: init.ctl_rx,
            spill_tx: init.spill_tx,
            journal: None,
            next_journal_no: init.next_journal_no,
            writes: 0,
            synced_writes: 0,
            last_sync: Instant::now(),
            journal_ok: true,
            segs: BTreeMap::new(),
            live: HashMap::new(),
            pending: VecDeque::new(),
            next_ticket: 0,
            in_flight: 0,
            jobs_tx,
            done_rx,
            derivers,
            pending_rows: 0,
            pending_since: None,
            acks: Vec::new(),
            waiters: Vec::new(),
            failing: false,
            next_retry: Instant::now(),
            dedupe: false,
            memory_dropped_warned: false,
            spill_no: init.first_spill_no,
            spill_offset: 0,
            spill_ingested: 0,
        }
    }

    pub fn run(mut self) -> Result<(), RecorderError> {
        let data_rx = self.data_rx.clone();
        let ctl_rx = self.ctl_rx.clone();
        loop {
            let timeout = self.timeout();
            crossbeam_channel::select! {
                recv(data_rx) -> item => {
                    if let Ok(item) = item {
                        self.ingest_item(item);
                        try_drain(&data_rx, 1024, |i| self.ingest_item(i));
                    }
                }
                recv(ctl_rx) -> ctl => match ctl {
                    Ok(Control::Flush(reply)) => self.flush(reply),
                    Ok(Control::Abort) => {
                        self.abort();
                        return Ok(());
                    }
                    Ok(Control::Shutdown) | Err(_) => return self.shutdown(),
                },
                default(timeout) => {}
            }
            if data_rx.is_empty() {
                self.ingest_spill();
            }
            self.absorb(None);
            self.maybe_sync();
            self.maybe_commit();
            self.publish_gauge();
        }
    }

    /// How long the loop may sleep before something is due.
    fn timeout(&self) -> Duration {
        let now = Instant::now();
        let mut t = Duration::from_millis(250);
        let interval = self.cfg.journal_commit_interval;
        if self.journal.as_ref().is_some_and(SegmentFile::dirty) {
            if self.cfg.durability == Durability::Strict && !self.acks.is_empty() {
                return Duration::ZERO;
            }
            t = t.min(interval.saturating_sub(self.last_sync.elapsed()));
        }
        if !self.pending.is_empty() {
            let due = if self.failing {
                self.next_retry.saturating_duration_since(now)
            } else {
                self.pending_since.map_or(Duration::ZERO, |s| {
                    self.cfg.flush_interval.saturating_sub(s.elapsed())
                })
            };
            t = t.min(due);
        }
        if self.shared.spill_pushed.load(Ordering::SeqCst) > self.spill_ingested {
            t = t.min(interval.max(Duration::from_millis(1)));
        }
        t
    }

    fn publish_gauge(&self) {
        self.shared.stats.pending_exchanges.store(
            (self.live.len() + self.pending.len()) as u64,
            Ordering::Relaxed,
        );
    }

    // -----------------------------------------------------------------------------------------
    // Ingestion

    fn ingest_item(&mut self, item: Item) {
        let (msg, ack) = item.into_parts();
        self.ingest(msg, ack, Source::Channel);
    }

    fn ingest(&mut self, msg: Msg, ack: Option<oneshot::Sender<()>>, source: Source) {
        let id = msg.exchange_id();
        let seq = msg.seq();
        let seg = match source {
            Source::Channel => self.journal_append(&msg),
            Source::Spill(s) => Some(s),
        };
        let live = self.live.entry(id).or_insert_with(|| Live::new(id));
        if let Some(seg) = seg
            && !live.segs.contains(&seg)
        {
            live.segs.push(seg);
            self.segs
                .entry(seg)
                .or_insert_with(|| SegState {
                    live: HashSet::new(),
                    open: true,
                })
                .live
                .insert(id);
        }
        if source == Source::Channel {
            live.mark = self.writes;
            live.unjournaled |= seg.is_none();
        }
        if ack.is_some() {
            live.ack = ack;
        }
        if matches!(msg, Msg::End { .. }) {
            live.end_seq = Some(seq);
        }
        if seq == live.next_seq {
            live.msgs.push(msg);
            live.next_seq += 1;
            while let Some(m) = live.early.remove(&live.next_seq) {
                live.msgs.push(m);
                live.next_seq += 1;
            }
        } else if seq > live.next_seq {
            live.early.entry(seq).or_insert(msg);
        }
        if live.complete() {
            self.finalize(id);
        }
    }

    /// Derives a finished (or abandoned) exchange and queues its rows.
    fn finalize(&mut self, id: ExchangeId) {
        let Some(live) = self.live.remove(&id) else {
            return;
        };
        let (msgs, segs, ack, mark) = live.into_msgs();
        if let Some(ack) = ack {
            if mark <= self.synced_writes {
                let _ = ack.send(());
            } else {
                self.acks.push((mark, ack));
            }
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        // Until derived, count about one row per response frame.
        let estimate = 1 + msgs.response_frames.len();
        let job = match &self.jobs_tx {
            Some(tx) => match tx.send((ticket, msgs)) {
                Ok(()) => None,
                Err(crossbeam_channel::SendError((_, msgs))) => Some(msgs),
            },
            None => Some(msgs),
        };
        let (derived, deriving, rows) = match job {
            None => {
                self.in_flight += 1;
                (None, true, estimate)
            }
            Some(msgs) => {
                let d = derive(&msgs, &self.derive);
                let rows = d.row_count();
                (Some(d), false, rows)
            }
        };
        self.pending_rows += rows;
        self.pending.push_back(Pending {
            ticket,
            id,
            derived,
            deriving,
            rows,
            segs,
        });
        self.pending_since.get_or_insert_with(Instant::now);
        self.bound_memory();
    }

    /// Takes in the derivations that are done; with `wait_for`, blocks until the entries up to
    /// that ticket are all derived.
    fn absorb(&mut self, wait_for: Option<u64>) {
        loop {
            let waiting = wait_for.is_some_and(|t| {
                self.pending
                    .iter()
                    .take_while(|p| p.ticket <= t)
                    .any(|p| p.deriving)
            });
            let next = if waiting {
                match self.done_rx.recv() {
                    Ok(d) => d,
                    Err(_) => {
                        self.derivers_gone();
                        return;
                    }
                }
            } else {
                match self.done_rx.try_recv() {
                    Ok(d) => d,
                    Err(_) => return,
                }
            };
            self.in_flight = self.in_flight.saturating_sub(1);
            let (ticket, derived) = next;
            let Some(front) = self.pending.front().map(|p| p.ticket) else {
                continue;
            };
            let Some(p) = ticket
                .checked_sub(front)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| self.pending.get_mut(i))
            else {
                continue;
            };
            let d = derived.unwrap_or_else(|| underivable(p.id));
            let rows = d.row_count();
            self.pending_rows = (self.pending_rows + rows).saturating_sub(p.rows);
            p.rows = rows;
            p.derived = Some(d);
            p.deriving = false;
        }
    }

    /// Every deriver thread is gone (they only stop when the writer does, or on a bug): what
    /// they had is derived again from the journal.
    fn derivers_gone(&mut self) {
        self.jobs_tx = None;
        self.in_flight = 0;
        for p in &mut self.pending {
            p.deriving = false;
        }
    }

    /// While DuckDB fails, keeps at most `max_pending_exchanges` derived exchanges in memory.
    fn bound_memory(&mut self) {
        if !self.failing || !self.journal_ok || self.pending.len() <= self.cfg.max_pending_exchanges
        {
            return;
        }
        let mut dropped = 0usize;
        for p in &mut self.pending {
            if !p.deriving && p.derived.take().is_some() {
                dropped += 1;
            }
        }
        if dropped > 0 && !self.memory_dropped_warned {
            self.memory_dropped_warned = true;
            tracing::warn!(
                pending = self.pending.len(),
                "agentcap recorder: DuckDB still failing; finished exchanges are kept in the journal only and will be derived again when it recovers"
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Journal

    fn journal_failed(&mut self, e: &std::io::Error) {
        StatsAtomics::add(&self.shared.stats.journal_errors, 1);
        if self.journal_ok {
            tracing::warn!(error = %e, dir = %self.dir.display(),
                "agentcap recorder: journal write failed; records still go to DuckDB but are not crash-safe");
        }
        self.journal_ok = false;
        if let Some(f) = self.journal.take() {
            let id = f.id;
            f.abandon();
            if let Some(st) = self.segs.get_mut(&id) {
                st.open = false;
            }
        }
        // Acknowledgements that need unsynced writes can no longer be honoured.
        let synced = self.synced_writes;
        self.acks.retain(|(mark, _)| *mark <= synced);
    }

    /// Appends a message to the current segment; returns the segment it went to.
    fn journal_append(&mut self, msg: &Msg) -> Option<SegId> {
        if self.journal.is_none() {
            let id = SegId {
                kind: SegKind::Journal,
                no: self.next_journal_no,
            };
            self.next_journal_no += 1;
            match SegmentFile::create(&self.dir, id) {
                Ok(f) => {
                    self.segs.insert(
                        id,
                        SegState {
                            live: HashSet::new(),
                            open: true,
                        },
                    );
                    self.journal = Some(f);
                }
                Err(e) => {
                    self.journal_failed(&e);
                    return None;
                }
            }
        }
        let f = self.journal.as_mut()?;
        match f.append(msg) {
            Ok(n) => {
                let id = f.id;
                let full = f.len >= SEGMENT_ROTATE_BYTES;
                self.writes += 1;
                StatsAtomics::add(&self.shared.stats.journal_bytes, n);
                if full {
                    self.rotate_journal();
                }
                Some(id)
            }
            Err(e) => {
                self.journal_failed(&e);
                None
            }
        }
    }

    /// Group commit of the journal; resolves the acknowledgements it covers.
    fn sync_journal(&mut self) {
        self.last_sync = Instant::now();
        if let Some(f) = self.journal.as_mut()
            && let Err(e) = f.sync()
        {
            self.journal_failed(&e);
            return;
        }
        if self.journal_ok {
            self.synced_writes = self.writes;
        }
        let synced = self.synced_writes;
        let mut i = 0;
        while i < self.acks.len() {
            if self.acks[i].0 <= synced {
                let (_, ack) = self.acks.swap_remove(i);
                let _ = ack.send(());
            } else {
                i += 1;
            }
        }
    }

    fn maybe_sync(&mut self) {
        let dirty = self.journal.as_ref().is_some_and(SegmentFile::dirty);
        let strict_wait = self.cfg.durability == Durability::Strict && !self.acks.is_empty();
        if (dirty && (self.last_sync.elapsed() >= self.cfg.journal_commit_interval || strict_wait))
            || (!dirty && !self.acks.is_empty())
        {
            self.sync_journal();
        }
    }

    /// Closes the current segment (after a commit); it is deleted once its exchanges are in DuckDB.
    fn rotate_journal(&mut self) {
        self.sync_journal();
        if let Some(f) = self.journal.take() {
            let id = f.id;
            f.abandon();
            self.close_seg(id);
        }
    }

    /// Marks a file as no longer written / read, deleting it if nothing in it is pending.
    fn close_seg(&mut self, id: SegId) {
        let empty = match self.segs.get_mut(&id) {
            Some(st) => {
                st.open = false;
                st.live.is_empty()
            }
            None => true,
        };
        if empty {
            self.segs.remove(&id);
            self.remove_file(id);
        }
    }

    fn remove_file(&self, id: SegId) {
        let path = id.path(&self.dir);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, file = %path.display(), "agentcap recorder: cannot delete a committed journal file");
        }
    }

    /// The exchange is in DuckDB: its files may go.
    fn release(&mut self, id: ExchangeId, segs: &[SegId]) {
        for seg in segs {
            let delete = match self.segs.get_mut(seg) {
                Some(st) => {
                    st.live.remove(&id);
                    st.live.is_empty() && !st.open
                }
                None => false,
            };
            if delete {
                self.segs.remove(seg);
                self.remove_file(*seg);
            }
        }
    }

    /// Starts a fresh segment when everything in the current one is committed.
    fn rotate_if_idle(&mut self) {
        let idle = self
            .journal
            .as_ref()
            .is_some_and(|f| f.len > 0 && self.segs.get(&f.id).is_none_or(|st| st.live.is_empty()));
        if idle {
            self.rotate_journal();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Spill

    /// Reads what the spill thread has committed since last time.
    fn ingest_spill(&mut self) {
        loop {
            let file = {
                let files = self.shared.spill_files.lock();
                files.iter().find(|f| f.no >= self.spill_no).copied()
            };
            let Some(file) = file else {
                return;
            };
            if file.no != self.spill_no {
                self.spill_no = file.no;
                self.spill_offset = 0;
            }
            let seg = SegId {
                kind: SegKind::Spill,
                no: file.no,
            };
            if file.synced_len > self.spill_offset {
                match journal::read_range(&seg.path(&self.dir), self.spill_offset, file.synced_len)
                {
                    Ok(parsed) => {
                        self.spill_offset += parsed.valid_len as u64;
                        if parsed.torn {
                            tracing::warn!(file = %seg.path(&self.dir).display(),
                                "agentcap recorder: unreadable record in a spill file; skipping to its committed end");
                            self.spill_offset = file.synced_len;
                        }
                        for msg in parsed.msgs {
                            self.spill_ingested += 1;
                            let ack = if matches!(msg, Msg::End { .. }) {
                                self.shared
                                    .spill_acks
                                    .lock()
                                    .remove(&(msg.exchange_id(), msg.seq()))
                            } else {
                                None
                            };
                            self.ingest(msg, ack, Source::Spill(seg));
                        }
                    }
                    Err(e) => {
                        StatsAtomics::add(&self.shared.stats.journal_errors, 1);
                        tracing::warn!(error = %e, "agentcap recorder: cannot read a spill file");
                        return;
                    }
                }
            }
            if file.closed && self.spill_offset >= file.synced_len {
                self.close_seg(seg);
                self.shared.spill_files.lock().retain(|f| f.no != file.no);
                self.spill_no = file.no + 1;
                self.spill_offset = 0;
                continue;
            }
            return;
        }
    }

    /// Makes the spill thread commit everything queued so far, then reads it.
    fn drain_spill(&mut self, stop: bool) {
        if stop || self.shared.spill_pushed.load(Ordering::SeqCst) > self.spill_ingested {
            let (tx, done) = crossbeam_channel::bounded(1);
            let req = if stop {
                SpillItem::Stop(tx)
            } else {
                SpillItem::Sync(tx)
            };
            if self.spill_tx.send(req).is_ok() {
                // Keep reading the channel meanwhile: the spill thread may be handing messages
                // to it (when it cannot write its file) and must not block on a full channel.
                let rx = self.data_rx.clone();
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    done.recv_timeout(Duration::from_millis(10))
                {
                    let n = rx.len();
                    try_drain(&rx, n, |i| self.ingest_item(i));
                }
            }
        }
        self.ingest_spill();
    }

    // -----------------------------------------------------------------------------------------
    // DuckDB

    fn maybe_commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let due = if self.failing {
            Instant::now() >= self.next_retry
        } else {
            self.pending_rows >= self.cfg.batch_rows
                || self
                    .pending_since
                    .is_some_and(|s| s.elapsed() >= self.cfg.flush_interval)
        };
        if due {
            let _ = self.commit_all();
        }
    }

    /// Writes every pending exchange, in batches of about `batch_rows` rows.
    fn commit_all(&mut self) -> Result<(), RecorderError> {
        while !self.pending.is_empty() {
            let mut n = 0;
            let mut rows = 0;
            for p in &self.pending {
                n += 1;
                rows += p.rows;
                if rows >= self.cfg.batch_rows {
                    break;
                }
            }
            if let Some(last) = self.pending.get(n - 1).map(|p| p.ticket) {
                self.absorb(Some(last));
            }
            if self
                .pending
                .iter()
                .take(n)
                .any(|p| p.derived.is_none() && !p.deriving)
            {
                self.rederive(n)?;
            }
            let result = if self.shared.db_fault.load(Ordering::SeqCst) {
                Err(RecorderError::SimulatedFault)
            } else {
                let batch: Vec<&Derived> = self
                    .pending
                    .iter()
                    .take(n)
                    .filter_map(|p| p.derived.as_ref())
                    .collect();
                db::write_batch(&self.conn, &batch, self.dedupe)
            };
            match result {
                Ok(counts) => {
                    self.count(&counts);
                    let done: Vec<Pending> = self.pending.drain(..n).collect();
                    for p in done {
                        self.pending_rows = self.pending_rows.saturating_sub(p.rows);
                        self.release(p.id, &p.segs);
                    }
                }
                Err(e) => {
                    self.db_failed(&e);
                    return Err(e);
                }
            }
        }
        if self.failing {
            tracing::info!(
                "agentcap recorder: DuckDB writes work again; pending exchanges written"
            );
        }
        self.failing = false;
        self.dedupe = false;
        self.memory_dropped_warned = false;
        self.pending_rows = 0;
        self.pending_since = None;
        for w in self.waiters.drain(..) {
            let _ = w.send(Ok(()));
        }
        self.rotate_if_idle();
        Ok(())
    }

    fn count(&self, c: &BatchCounts) {
        let s = &self.shared.stats;
        StatsAtomics::add(&s.exchanges_written, c.exchanges);
        StatsAtomics::add(&s.rows_written, c.rows());
        StatsAtomics::add(&s.sse_events_written, c.sse_events);
        StatsAtomics::add(&s.entries_written, c.entries);
        StatsAtomics::add(&s.usage_written, c.usage);
        StatsAtomics::add(&s.agents_written, c.agents);
        StatsAtomics::add(&s.conversations_written, c.conversations);
    }

    fn db_failed(&mut self, e: &RecorderError) {
        StatsAtomics::add(&self.shared.stats.db_errors, 1);
        if !self.failing {
            tracing::warn!(error = %e, pending = self.pending.len(),
                "agentcap recorder: DuckDB write failed; keeping the journal and retrying every 500 ms");
        }
        self.failing = true;
        // A failed COMMIT may or may not have landed: check ids on the next attempts.
        self.dedupe = true;
        self.next_retry = Instant::now() + RETRY_DELAY;
        self.bound_memory();
    }

    /// Derives the first `n` pending exchanges again from the journal files they are in.
    fn rederive(&mut self, n: usize) -> Result<(), RecorderError> {
        if let Some(f) = self.journal.as_mut() {
            f.flush().map_err(|source| RecorderError::Journal {
                path: f.path().to_owned(),
                source,
            })?;
        }
        let mut ids = HashSet::new();
        let mut files = BTreeSet::new();
        for p in self
            .pending
            .iter()
            .take(n)
            .filter(|p| p.derived.is_none() && !p.deriving)
        {
            ids.insert(p.id);
            files.extend(p.segs.iter().copied());
        }
        let mut loaded = load_exchanges(&self.dir, &files, &ids)?;
        for p in self.pending.iter_mut().take(n) {
            if p.derived.is_none() && !p.deriving {
                let msgs = loaded
                    .remove(&p.id)
                    .map_or_else(|| ExchangeMsgs::new(p.id), |m| fold(p.id, m));
                let d = derive(&msgs, &self.derive);
                p.rows = d.row_count();
                p.derived = Some(d);
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Control

    fn flush(&mut self, reply: oneshot::Sender<Result<(), RecorderError>>) {
        let rx = self.data_rx.clone();
        // Everything enqueued before this request is among the first `len` messages.
        let n = rx.len();
        try_drain(&rx, n, |i| self.ingest_item(i));
        self.drain_spill(false);
        // Messages the spill thread could not write were forwarded to the channel.
        let n = rx.len();
        try_drain(&rx, n, |i| self.ingest_item(i));
        self.sync_journal();
        match self.commit_all() {
            Ok(()) => {
                let _ = reply.send(Ok(()));
            }
            Err(_) => self.waiters.push(reply),
        }
    }

    fn shutdown(mut self) -> Result<(), RecorderError> {
        let rx = self.data_rx.clone();
        try_drain(&rx, usize::MAX, |i| self.ingest_item(i));
        self.drain_spill(true);
        try_drain(&rx, usize::MAX, |i| self.ingest_item(i));
        let unfinished: Vec<ExchangeId> = self.live.keys().copied().collect();
        for id in unfinished {
            self.finalize(id);
        }
        self.sync_journal();
        let mut attempts = 0;
        let result = loop {
            match self.commit_all() {
                Ok(()) => break Ok(()),
                Err(e) => {
                    attempts += 1;
                    if attempts >= 3 {
                        break Err(e);
                    }
                    std::thread::sleep(RETRY_DELAY);
                }
            }
        };
        self.publish_gauge();
        if result.is_ok() {
            // Everything is in DuckDB: no journal file is needed any more.
            if let Some(f) = self.journal.take() {
                f.abandon();
            }
            if let Ok(files) = journal::list_segments(&self.dir) {
                for id in files {
                    self.remove_file(id);
                }
            }
            let _ = std::fs::remove_dir(&self.dir);
        } else {
            tracing::warn!(dir = %self.dir.display(),
                "agentcap recorder: stopped with exchanges not in DuckDB; they stay in the journal and are written on the next start");
        }
        let stop = self.waiters.drain(..);
        for w in stop {
            let _ = w.send(Err(RecorderError::Stopped));
        }
        let _ = self.conn.execute_batch("CHECKPOINT");
        self.stop_derivers();
        result
    }

    fn stop_derivers(&mut self) {
        self.jobs_tx = None;
        for h in self.derivers.drain(..) {
            let _ = h.join();
        }
    }

    /// Stops like a crash would: unflushed journal bytes are lost, nothing goes to DuckDB.
    fn abort(&mut self) {
        let _ = self.spill_tx.send(SpillItem::Abort);
        if let Some(f) = self.journal.take() {
            f.abandon();
        }
        self.stop_derivers();
    }
}

/// Messages of an exchange by `seq`, folded in order.
fn fold(id: ExchangeId, msgs: BTreeMap<u32, Msg>) -> ExchangeMsgs {
    let mut x = ExchangeMsgs::new(id);
    for (_, m) in msgs {
        x.push(m);
    }
    x
}

fn journal_err(path: &Path) -> impl FnOnce(std::io::Error) -> RecorderError + '_ {
    move |source| RecorderError::Journal {
        path: path.to_owned(),
        source,
    }
}

/// Reads the messages of the exchanges `ids` from the journal files `files`.
fn load_exchanges(
    dir: &Path,
    files: &BTreeSet<SegId>,
    ids: &HashSet<ExchangeId>,
) -> Result<HashMap<ExchangeId, BTreeMap<u32, Msg>>, RecorderError> {
    let mut out: HashMap<ExchangeId, BTreeMap<u32, Msg>> = HashMap::new();
    for seg in files {
        let path = seg.path(dir);
        let parsed = match journal::read_file(&path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(journal_err(&path)(e)),
        };
        for m in parsed.msgs {
            let id = m.exchange_id();
            if ids.contains(&id) {
                out.entry(id).or_default().entry(m.seq()).or_insert(m);
            }
        }
    }
    Ok(out)
}

/// What [`replay`] did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReplayReport {
    pub exchanges: u64,
    pub next_journal_no: u64,
    pub next_spill_no: u64,
}

/// Rebuilds the exchanges left in the journal by a previous run and writes those DuckDB does not
/// have (exchanges without an `End` become `proxy_error` rows), then deletes the files.
pub(crate) fn replay(
    conn: &Connection,
    dir: &Path,
    ctx: &DeriveCtx,
    batch_rows: usize,
) -> Result<ReplayReport, RecorderError> {
    let segs = journal::list_segments(dir).map_err(journal_err(dir))?;
    let next = |kind| {
        segs.iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.no + 1)
            .max()
            .unwrap_or(0)
    };
    let mut report = ReplayReport {
        exchanges: 0,
        next_journal_no: next(SegKind::Journal),
        next_spill_no: next(SegKind::Spill),
    };
    if segs.is_empty() {
        return Ok(report);
    }
    // Pass 1: which exchanges are where, in order of first appearance.
    let mut order = Vec::new();
    let mut located: HashMap<ExchangeId, Vec<SegId>> = HashMap::new();
    for seg in &segs {
        let path = seg.path(dir);
        let parsed = journal::read_file(&path).map_err(journal_err(&path))?;
        if parsed.torn {
            tracing::info!(file = %path.display(), valid_bytes = parsed.valid_len,
                "agentcap recorder: ignoring the torn tail of a journal file");
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
    // Pass 2: derive and write, a chunk of exchanges at a time.
    for chunk in order.chunks(REDERIVE_CHUNK) {
        let ids: HashSet<ExchangeId> = chunk.iter().copied().collect();
        let files: BTreeSet<SegId> = chunk
            .iter()
            .flat_map(|id| located.get(id).into_iter().flatten().copied())
            .collect();
        let mut loaded = load_exchanges(dir, &files, &ids)?;
        let derived: Vec<Derived> = chunk
            .iter()
            .filter_map(|id| loaded.remove(id).map(|m| derive(&fold(*id, m), ctx)))
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
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
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
