//! The writer thread: owns the journal. It never touches DuckDB, so nothing DuckDB does (large
//! batches, COMMIT, retries while it fails) delays journaling: the crash-loss window of the
//! batched mode is the group-commit interval, not DuckDB's lag.
//!
//! Every message from the channel is appended to the current journal segment (group-committed
//! every `journal_commit_interval`); spilled messages are read back from the spill files when the
//! channel is empty. Messages are put back in `seq` order per exchange; when an exchange's `End`
//! and everything before it are in, it gets a ticket, a deriver thread derives its rows and the
//! DuckDB thread ([`super::committer`]) writes them in ticket order. A journal file is deleted
//! once the DuckDB thread reports every exchange with a message in it committed.
//!
//! When the journal cannot be written (a full disk), forwarding goes on: the writer keeps the
//! current segment, backs off exponentially (10 ms to 5 s) before trying again, cuts the segment
//! back to its last commit before the next append, logs the first failure and then at most one
//! line per 10 s, and fails the durable acknowledgements it cannot honour.
//!
//! Architecture Invariant: every wait is bounded. An exchange whose `End` arrived but which
//! still misses an earlier message after `message_gap_limit` (with no spilled message pending)
//! is written with what arrived, and its acknowledgement fails.
//!
//! [`replay`] is what [`super::Recorder::open`] runs first: it rebuilds the exchanges a previous
//! run left in the journal and inserts the ones DuckDB does not have yet. A damaged file (anything
//! but the torn tail of the newest file of its family) is logged at ERROR, counted, replayed
//! around the damage and then moved to `<journal>/corrupt/` instead of being deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::record::{ExchangeId, Msg};

use super::body::Redactor;
use super::committer::{Committed, DbMsg, DeriveDone, EventChunk, NoRows, Queued};
use super::derive::{DeriveCtx, EVENT_CHUNK_ROWS, ExchangeMsgs, derive};
use super::journal::{self, SEGMENT_ROTATE_BYTES, SegId, SegKind, SegmentFile};
use super::{
    AckTx, Activity, Control, Durability, Item, NotDurable, RecorderConfig, RecorderError, Shared,
    SpillItem, StatsAtomics, try_drain,
};

/// Bytes of a spill file read back at a time.
const SPILL_READ_CHUNK: u64 = 4 * 1024 * 1024;
/// How often the writer looks at the data channel while traffic flows (see `Writer::run`) in strict
/// mode, where responses' last frames wait for the journal…
const BUSY_POLL: Duration = Duration::from_millis(1);
/// …and, at most this long, in batched mode: once per journal commit ([`Writer::busy_poll`]).
const BATCHED_POLL_MAX: Duration = Duration::from_millis(10);
/// Without data for this long, the writer goes back to blocking on the data channel.
const IDLE_AFTER: Duration = Duration::from_millis(50);
/// First and longest pause before writing the journal again after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// While the journal keeps failing, at most one log line per this interval.
const FAIL_LOG_EVERY: Duration = Duration::from_secs(10);

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
    ack: Option<AckTx>,
    /// Journal write number of the latest message journaled for it.
    mark: u64,
    /// Why its acknowledgement cannot be honoured (a message could not be journaled, or never
    /// arrived).
    failure: Option<NotDurable>,
    /// When its `End` arrived while an earlier message was still missing.
    gap_since: Option<Instant>,
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
            failure: None,
            gap_since: None,
        }
    }

    fn complete(&self) -> bool {
        self.end_seq.is_some_and(|e| self.next_seq > e)
    }

    /// All messages received, the ones after a gap included (for exchanges that never completed).
    /// A failed exchange's acknowledgement is answered here, and its mark is "never journaled".
    fn into_msgs(mut self, ctx: &DeriveCtx) -> (ExchangeMsgs, Vec<SegId>, Option<AckTx>, u64) {
        for (_, m) in std::mem::take(&mut self.early) {
            self.msgs.push(m, ctx);
        }
        match self.failure {
            Some(why) => {
                if let Some(ack) = self.ack {
                    let _ = ack.send(Err(why));
                }
                (self.msgs, self.segs, None, u64::MAX)
            }
            None => (self.msgs, self.segs, self.ack, self.mark),
        }
    }
}

/// Work for a deriver thread (ticket, copy, its size, journal mark); its answer goes to the DuckDB
/// thread.
type DeriveJob = (u64, ExchangeMsgs, usize, u64);

/// Bound of the derive queue, in bytes of exchange copies (gauge: `derive_queue_bytes`). When a
/// job does not fit, the writer derives the exchange itself: the writer slows down, its channel
/// fills and the hot path spills to disk; nothing waits and nothing is dropped.
pub(crate) const DERIVE_QUEUE_BYTES: u64 = 64 * 1024 * 1024;
/// Bound of the derive queue in jobs (same when-full policy).
const DERIVE_QUEUE_JOBS: usize = 4096;
/// How often an idle deriver looks at its queue while jobs flow (its results wait for a batch anyway).
const DERIVE_POLL: Duration = Duration::from_millis(5);

/// Derives exchanges off the writer thread, so parsing overlaps journaling and DuckDB writes.
fn run_deriver(
    ctx: DeriveCtx,
    jobs: Receiver<DeriveJob>,
    done: Sender<DeriveDone>,
    shared: Arc<Shared>,
) {
    // While jobs flow, the queue is looked at every `DERIVE_POLL` (see `Activity`).
    let mut activity = Activity::new(IDLE_AFTER);
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(crossbeam_channel::TryRecvError::Disconnected) => return,
            Err(crossbeam_channel::TryRecvError::Empty) if activity.busy() => {
                std::thread::sleep(DERIVE_POLL);
                continue;
            }
            Err(crossbeam_channel::TryRecvError::Empty) => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        activity.saw_data();
        while shared.derive_paused.load(Ordering::SeqCst) {
            std::thread::sleep(DERIVE_POLL);
        }
        let (ticket, msgs, bytes, mark) = job;
        shared
            .stats
            .derive_queue_bytes
            .fetch_sub(bytes as u64, Ordering::Relaxed);
        let handed =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| derive(msgs, &ctx))) {
                Ok(d) => shared.hand_over(d, mark),
                Err(_) => (Err(NoRows::Panicked), 0),
            };
        if done.send((ticket, handed)).is_err() {
            return;
        }
    }
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
    pub db_tx: Sender<DbMsg>,
    pub committed_rx: Receiver<Committed>,
    pub done_tx: Sender<DeriveDone>,
    pub committer: std::thread::JoinHandle<()>,
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
    redactor: Redactor,
    shared: Arc<Shared>,
    data_rx: Receiver<Item>,
    ctl_rx: Receiver<Control>,
    spill_tx: Sender<SpillItem>,
    db_tx: Sender<DbMsg>,
    committed_rx: Receiver<Committed>,
    committer: Option<std::thread::JoinHandle<()>>,

    journal: Option<SegmentFile>,
    next_journal_no: u64,
    /// Messages journaled so far, and how many of them are fsynced.
    writes: u64,
    synced_writes: u64,
    last_sync: Instant,
    journal_ok: bool,
    /// After a failure: no journal write before this instant.
    retry_at: Instant,
    backoff: Duration,
    /// The current segment holds bytes of a failed write: cut it back before appending.
    needs_rollback: bool,
    /// Failures since the journal last worked, and since the last log line.
    failures: u64,
    failures_unlogged: u64,
    last_fail_log: Instant,
    last_sweep: Instant,
    segs: BTreeMap<SegId, SegState>,

    live: HashMap<ExchangeId, Live>,
    next_ticket: u64,
    /// Exchanges handed to the DuckDB thread and not reported committed yet.
    outstanding: u64,
    jobs_tx: Option<Sender<DeriveJob>>,
    derivers: Vec<std::thread::JoinHandle<()>>,
    acks: Vec<(u64, AckTx)>,

    spill_no: u64,
    spill_offset: u64,
    spill_ingested: u64,
}

impl Writer {
    pub fn new(init: WriterInit) -> Self {
        // Bounded in `Writer::finalize` (its only sender), so that an idle queue holds no memory.
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<DeriveJob>();
        // One deriver per spare core (at least one, at most four).
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .clamp(1, 4);
        let derivers = (0..n)
            .filter_map(|i| {
                let background = init.cfg.background_priority;
                let (ctx, jobs, done, shared) = (
                    init.derive.clone(),
                    jobs_rx.clone(),
                    init.done_tx.clone(),
                    init.shared.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("agentcap-derive-{i}"))
                    .spawn(move || {
                        super::background_priority(background);
                        run_deriver(ctx, jobs, done, shared)
                    })
                    .ok()
            })
            .collect::<Vec<_>>();
        // Only the derivers hold the sending side: the DuckDB thread sees them all gone.
        drop(init.done_tx);
        // Without any deriver thread, derivation happens inline.
        let jobs_tx = (!derivers.is_empty()).then_some(jobs_tx);
        Writer {
            redactor: init.derive.redactor.clone(),
            cfg: init.cfg,
            dir: init.journal_dir,
            derive: init.derive,
            shared: init.shared,
            data_rx: init.data_rx,
            ctl_rx: init.ctl_rx,
            spill_tx: init.spill_tx,
            db_tx: init.db_tx,
            committed_rx: init.committed_rx,
            committer: Some(init.committer),
            journal: None,
            next_journal_no: init.next_journal_no,
            writes: 0,
            synced_writes: 0,
            last_sync: Instant::now(),
            journal_ok: true,
            retry_at: Instant::now(),
            backoff: BACKOFF_MIN,
            needs_rollback: false,
            failures: 0,
            failures_unlogged: 0,
            last_fail_log: Instant::now(),
            last_sweep: Instant::now(),
            segs: BTreeMap::new(),
            live: HashMap::new(),
            next_ticket: 0,
            outstanding: 0,
            jobs_tx,
            derivers,
            acks: Vec::new(),
            spill_no: init.first_spill_no,
            spill_offset: 0,
            spill_ingested: 0,
        }
    }

    pub fn run(mut self) -> Result<(), RecorderError> {
        let data_rx = self.data_rx.clone();
        let ctl_rx = self.ctl_rx.clone();
        // While traffic flows the loop polls the data channel every `busy_poll` (see `Activity`).
        let mut activity = Activity::new(IDLE_AFTER);
        let poll = self.busy_poll();
        loop {
            let committed_rx = self.committed_rx.clone();
            let busy = activity.busy();
            // Busy: never block on the data channel, look at it after the select.
            let (data_sel, timeout) = if busy {
                (crossbeam_channel::never(), self.timeout().min(poll))
            } else {
                (data_rx.clone(), self.timeout())
            };
            crossbeam_channel::select! {
                recv(data_sel) -> item => {
                    if let Ok(item) = item {
                        self.ingest_item(item);
                        try_drain(&data_rx, 1024, |i| self.ingest_item(i));
                        activity.saw_data();
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
                recv(committed_rx) -> done => match done {
                    Ok(done) => self.committed(done),
                    // The DuckDB thread is gone (a bug): stop waiting on it.
                    Err(_) => self.committed_rx = crossbeam_channel::never(),
                },
                default(timeout) => {}
            }
            if busy && try_drain(&data_rx, 4096, |i| self.ingest_item(i)) > 0 {
                activity.saw_data();
            }
            if data_rx.is_empty() {
                self.ingest_spill();
            }
            self.maybe_sync();
            self.sweep_gaps();
            self.publish_gauge();
        }
    }

    /// Writes the ended exchanges that have waited `message_gap_limit` for a missing message.
    fn sweep_gaps(&mut self) {
        let limit = self.cfg.message_gap_limit;
        if self.last_sweep.elapsed() < (limit / 2).min(Duration::from_secs(1)) {
            return;
        }
        self.last_sweep = Instant::now();
        // A message still in the spill queue may be the missing one.
        if self.shared.spill_pushed.load(Ordering::SeqCst) > self.spill_ingested {
            return;
        }
        let stuck: Vec<ExchangeId> = self
            .live
            .iter()
            .filter(|(_, l)| l.gap_since.is_some_and(|t| t.elapsed() >= limit))
            .map(|(id, _)| *id)
            .collect();
        for id in stuck {
            if let Some(live) = self.live.get_mut(&id) {
                tracing::warn!(exchange = %id, missing_seq = live.next_seq,
                    "agentcap recorder: an ended exchange still misses a message; writing it with what arrived");
                live.failure.get_or_insert(NotDurable::Incomplete);
            }
            StatsAtomics::add(&self.shared.stats.exchanges_incomplete, 1);
            self.finalize(id);
        }
    }

    /// `true` when the current segment has bytes to commit (and is in a state to commit them).
    fn journal_dirty(&self) -> bool {
        !self.needs_rollback && self.journal.as_ref().is_some_and(SegmentFile::dirty)
    }

    /// The test hook's simulated failure, if it is on.
    fn fault(&self) -> Option<io::Error> {
        self.shared.journal_fault.load(Ordering::SeqCst).then(|| {
            io::Error::new(
                io::ErrorKind::StorageFull,
                "simulated journal failure (no space left on device)",
            )
        })
    }

    /// How long the busy loop sleeps between two looks at the data channel. In batched mode, one
    /// journal commit interval: what a turn takes in is written and committed in that turn, so a
    /// message waits about as long as it did with a 1 ms poll before it is durable, and the writer
    /// wakes 200 times a second instead of 1,000 (at 1,000 exchanges/s its CPU went down by about a
    /// third). In strict mode `BUSY_POLL`: an acknowledgement should not wait for the poll.
    fn busy_poll(&self) -> Duration {
        match self.cfg.durability {
            Durability::Strict => BUSY_POLL,
            Durability::Batched => self
                .cfg
                .journal_commit_interval
                .clamp(BUSY_POLL, BATCHED_POLL_MAX),
        }
    }

    /// How long the loop may sleep before something is due.
    fn timeout(&self) -> Duration {
        let mut t = Duration::from_millis(250);
        let interval = self.cfg.journal_commit_interval;
        if self.journal_dirty() {
            if self.cfg.durability == Durability::Strict && !self.acks.is_empty() {
                return Duration::ZERO;
            }
            t = t.min(interval.saturating_sub(self.last_sync.elapsed()));
        }
        if self.shared.spill_pushed.load(Ordering::SeqCst) > self.spill_ingested {
            t = t.min(interval.max(Duration::from_millis(1)));
        }
        t
    }

    fn publish_gauge(&self) {
        self.shared
            .stats
            .pending_exchanges
            .store(self.live.len() as u64 + self.outstanding, Ordering::Relaxed);
    }

    /// The DuckDB thread committed these exchanges: their journal files may go.
    fn committed(&mut self, done: Committed) {
        self.outstanding = self.outstanding.saturating_sub(done.len() as u64);
        for (id, segs) in done {
            self.release(id, &segs);
        }
        // Drain what else is reported, then start a fresh segment if nothing in it is pending.
        while let Ok(more) = self.committed_rx.try_recv() {
            self.outstanding = self.outstanding.saturating_sub(more.len() as u64);
            for (id, segs) in more {
                self.release(id, &segs);
            }
        }
        self.rotate_if_idle();
    }

    // -----------------------------------------------------------------------------------------
    // Ingestion

    fn ingest_item(&mut self, item: Item) {
        Shared::channel_took(&self.shared, item.body_bytes());
        let (msg, ack) = item.into_parts();
        self.ingest(msg, ack, Source::Channel);
    }

    fn ingest(&mut self, msg: Msg, ack: Option<AckTx>, source: Source) {
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
            if seg.is_none() {
                live.failure.get_or_insert(NotDurable::JournalFailed);
            }
        }
        if ack.is_some() {
            live.ack = ack;
        }
        if matches!(msg, Msg::End { .. }) {
            live.end_seq = Some(seq);
            live.gap_since = Some(Instant::now());
        }
        if seq == live.next_seq {
            live.msgs.push(msg, &self.derive);
            live.next_seq += 1;
            while let Some(m) = live.early.remove(&live.next_seq) {
                live.msgs.push(m, &self.derive);
                live.next_seq += 1;
            }
            // A long stream's event rows go to DuckDB while it runs (see "Memory model").
            if let Some(rows) = live.msgs.take_event_chunk(EVENT_CHUNK_ROWS) {
                let chunk = EventChunk {
                    id,
                    rows,
                    mark: if live.failure.is_some() {
                        u64::MAX
                    } else {
                        live.mark
                    },
                };
                // A closed DuckDB thread (a bug) leaves the exchange to the journal's replay.
                let _ = self.db_tx.send(DbMsg::Events(Box::new(chunk)));
            }
        } else if seq > live.next_seq {
            live.early.entry(seq).or_insert(msg);
        }
        if live.complete() {
            self.finalize(id);
        }
    }

    /// Hands a finished (or abandoned) exchange to a deriver and the DuckDB thread.
    fn finalize(&mut self, id: ExchangeId) {
        let Some(live) = self.live.remove(&id) else {
            return;
        };
        let (msgs, segs, ack, mark) = live.into_msgs(&self.derive);
        if let Some(ack) = ack {
            if mark <= self.synced_writes {
                let _ = ack.send(Ok(()));
            } else {
                self.acks.push((mark, ack));
            }
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        // Until derived, count about one row per response frame.
        let rows = 1 + usize::try_from(msgs.response_frame_count()).unwrap_or(usize::MAX);
        let bytes = msgs.approx_bytes();
        let events_taken = msgs.events_taken();
        let gauge = &self.shared.stats.derive_queue_bytes;
        let job = match &self.jobs_tx {
            Some(tx)
                if gauge.load(Ordering::Relaxed) + bytes as u64 <= DERIVE_QUEUE_BYTES
                    && tx.len() < DERIVE_QUEUE_JOBS =>
            {
                gauge.fetch_add(bytes as u64, Ordering::Relaxed);
                match tx.try_send((ticket, msgs, bytes, mark)) {
                    Ok(()) => None,
                    Err(
                        crossbeam_channel::TrySendError::Full((_, msgs, _, _))
                        | crossbeam_channel::TrySendError::Disconnected((_, msgs, _, _)),
                    ) => {
                        gauge.fetch_sub(bytes as u64, Ordering::Relaxed);
                        Some(msgs)
                    }
                }
            }
            // The queue is full (or there is no deriver): derive here.
            _ => Some(msgs),
        };
        let derived = job.map(|msgs| {
            StatsAtomics::add(&self.shared.stats.exchanges_derived_by_writer, 1);
            self.shared.hand_over(derive(msgs, &self.derive), mark)
        });
        self.outstanding += 1;
        let queued = Queued {
            ticket,
            id,
            segs,
            mark,
            rows,
            events_taken,
            derived,
        };
        if self.db_tx.send(DbMsg::Queued(Box::new(queued))).is_err() {
            // The DuckDB thread is gone (a bug): the exchange stays in the journal for the next start.
            self.outstanding -= 1;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Journal

    /// A journal write, commit or creation failed: back off, keep the segment (it is cut back
    /// to its last commit before the next append), fail what cannot be honoured, log sparingly.
    fn journal_failed(&mut self, e: &io::Error) {
        StatsAtomics::add(&self.shared.stats.journal_errors, 1);
        let now = Instant::now();
        self.failures += 1;
        if self.journal_ok {
            tracing::error!(error = %e, dir = %self.dir.display(), durability = ?self.cfg.durability,
                "agentcap recorder: journal write failed; forwarding goes on, records still go to DuckDB but are not crash-safe (strict mode ends responses with an error) until the journal can be written again");
            self.last_fail_log = now;
            self.failures_unlogged = 0;
            self.backoff = BACKOFF_MIN;
        } else {
            self.failures_unlogged += 1;
            if now.duration_since(self.last_fail_log) >= FAIL_LOG_EVERY {
                tracing::warn!(error = %e, dir = %self.dir.display(), failures = self.failures_unlogged,
                    "agentcap recorder: the journal still cannot be written");
                self.last_fail_log = now;
                self.failures_unlogged = 0;
            }
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
        self.retry_at = now + self.backoff;
        self.journal_ok = false;
        self.shared.journal_ok.store(false, Ordering::SeqCst);
        self.needs_rollback = self.journal.is_some();
        // Messages appended since the last commit are gone: so are their exchanges' guarantees.
        let synced = self.synced_writes;
        for live in self.live.values_mut() {
            if live.mark > synced {
                live.failure.get_or_insert(NotDurable::JournalFailed);
            }
        }
        let mut i = 0;
        while i < self.acks.len() {
            if self.acks[i].0 > synced {
                let (_, ack) = self.acks.swap_remove(i);
                let _ = ack.send(Err(NotDurable::JournalFailed));
            } else {
                i += 1;
            }
        }
    }

    /// The journal works again after failures.
    fn journal_recovered(&mut self) {
        tracing::info!(failures = self.failures, dir = %self.dir.display(),
            "agentcap recorder: the journal can be written again");
        self.journal_ok = true;
        self.shared.journal_ok.store(true, Ordering::SeqCst);
        self.failures = 0;
        self.failures_unlogged = 0;
        self.backoff = BACKOFF_MIN;
    }

    /// Appends a message to the current segment; returns the segment it went to.
    fn journal_append(&mut self, msg: &Msg) -> Option<SegId> {
        if !self.journal_ok && Instant::now() < self.retry_at {
            return None;
        }
        if let Some(e) = self.fault() {
            self.journal_failed(&e);
            return None;
        }
        if self.needs_rollback {
            if let Some(f) = self.journal.as_mut()
                && let Err(e) = f.rollback()
            {
                self.journal_failed(&e);
                return None;
            }
            self.needs_rollback = false;
        }
        if self.journal.is_none() {
            let id = SegId {
                kind: SegKind::Journal,
                no: self.next_journal_no,
            };
            match SegmentFile::create(&self.dir, id, self.redactor.clone()) {
                Ok(f) => {
                    self.next_journal_no = id.next_no();
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
        if self.journal_dirty() {
            let fault = self.fault();
            let result = match (fault, self.journal.as_mut()) {
                (Some(e), _) => Err(e),
                (None, Some(f)) => f.sync(),
                (None, None) => Ok(()),
            };
            if let Err(e) = result {
                self.journal_failed(&e);
                return;
            }
            if !self.journal_ok {
                self.journal_recovered();
            }
        }
        if self.journal_ok {
            self.synced_writes = self.writes;
            self.shared
                .journal_synced
                .store(self.synced_writes, Ordering::SeqCst);
        }
        let synced = self.synced_writes;
        let mut i = 0;
        while i < self.acks.len() {
            if self.acks[i].0 <= synced {
                let (_, ack) = self.acks.swap_remove(i);
                let _ = ack.send(Ok(()));
            } else {
                i += 1;
            }
        }
    }

    fn maybe_sync(&mut self) {
        let dirty = self.journal_dirty();
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
        if self.needs_rollback {
            // The commit failed: keep writing (after the back-off) to this segment.
            return;
        }
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
        let idle = self.journal_ok
            && self.journal.as_ref().is_some_and(|f| {
                f.records > 0 && self.segs.get(&f.id).is_none_or(|st| st.live.is_empty())
            });
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
            // In chunks, so reading back a large spill costs a chunk of memory, not the file.
            while file.synced_len > self.spill_offset {
                let path = seg.path(&self.dir);
                let mut end = file
                    .synced_len
                    .min(self.spill_offset.saturating_add(SPILL_READ_CHUNK));
                let mut read = journal::read_range(&path, self.spill_offset, end);
                if read
                    .as_ref()
                    .is_ok_and(|p| p.torn() && p.valid_len == 0 && end < file.synced_len)
                {
                    // One record longer than a chunk: read up to the committed end.
                    end = file.synced_len;
                    read = journal::read_range(&path, self.spill_offset, end);
                }
                match read {
                    Ok(parsed) => {
                        self.spill_offset += parsed.valid_len as u64;
                        if !parsed.damage.is_empty() {
                            let bytes = parsed.damaged_bytes() as u64;
                            StatsAtomics::add(&self.shared.stats.journal_corrupt_bytes, bytes);
                            tracing::error!(file = %path.display(), bytes,
                                "agentcap recorder: damaged records in a spill file; reading on after them");
                        }
                        if parsed.torn() && end == file.synced_len {
                            tracing::warn!(file = %path.display(),
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
                self.spill_no = seg.next_no();
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
        // The DuckDB thread answers once everything queued before the request is committed.
        if let Err(crossbeam_channel::SendError(DbMsg::Flush(reply))) =
            self.db_tx.send(DbMsg::Flush(reply))
        {
            let _ = reply.send(Err(RecorderError::Stopped));
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
        let (tx, done) = crossbeam_channel::bounded(1);
        let result = if self.db_tx.send(DbMsg::Shutdown(tx)).is_ok() {
            done.recv().unwrap_or(Err(RecorderError::WriterPanicked))
        } else {
            Err(RecorderError::WriterPanicked)
        };
        if let Some(h) = self.committer.take() {
            let _ = h.join();
        }
        while let Ok(more) = self.committed_rx.try_recv() {
            self.outstanding = self.outstanding.saturating_sub(more.len() as u64);
        }
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
        self.stop_derivers();
        result
    }

    fn stop_derivers(&mut self) {
        self.jobs_tx = None;
        for h in self.derivers.drain(..) {
            let _ = h.join();
        }
    }

    /// Stops like a crash would: unflushed journal bytes are lost, nothing more goes to DuckDB.
    fn abort(&mut self) {
        let _ = self.spill_tx.send(SpillItem::Abort);
        let _ = self.db_tx.send(DbMsg::Abort);
        if let Some(f) = self.journal.take() {
            f.abandon();
        }
        if let Some(h) = self.committer.take() {
            let _ = h.join();
        }
        self.stop_derivers();
    }
}
