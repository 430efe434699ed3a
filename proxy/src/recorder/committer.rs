//! The DuckDB thread: owns the connection and commits finished exchanges in batches, so that
//! DuckDB work (appenders, upserts, COMMIT, retries while it fails) never delays journaling.
//!
//! The writer thread queues each finished exchange here in the order it finished (a "ticket"),
//! the deriver threads deliver its rows, and this thread writes them in ticket order, in batches
//! of about `batch_rows` rows or every `flush_interval`. After each committed batch it tells the
//! writer which exchanges are in DuckDB, so their journal files can go. When DuckDB fails,
//! batches stay pending and are retried every 500 ms. When it fails or falls behind, past
//! `max_pending_exchanges` or `max_pending_bytes` the derived rows of journaled exchanges are
//! dropped from memory and derived again from the journal later ([`State::bound_memory`]).
//!
//! A long stream's `sse_events` rows arrive in chunks while it runs ([`EventChunk`]) and are
//! written before anything queued after them, so an exchange's event rows may be in DuckDB before
//! its `exchanges` row. Architecture Invariant: an exchange's event rows are written once. A chunk
//! retried after a failed COMMIT first deletes its `seq` range; an exchange derived again from the
//! journal first deletes the rows its chunks wrote; the replay on start deletes the event rows of
//! exchanges without an `exchanges` row before it derives them again.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use duckdb::Connection;
use tokio::sync::oneshot;

use crate::record::ExchangeId;

use super::db::{self, BatchCounts};
use super::derive::{DeriveCtx, Derived, EventRow, ExchangeMsgs, derive};
use super::journal::SegId;
use super::replay::load_exchanges;
use super::{Activity, RecorderConfig, RecorderError, Shared, StatsAtomics};

/// Delay between DuckDB retries while it fails.
pub(crate) const RETRY_DELAY: Duration = Duration::from_millis(500);

/// How often the loop looks at its channels while writes are paused (test hook).
const PAUSED_POLL: Duration = Duration::from_millis(20);

/// How often the loop looks at its channels while exchanges flow (see `Committer::run`)…
const BUSY_POLL: Duration = Duration::from_millis(10);
/// …and how long without data before it blocks on them again.
const IDLE_AFTER: Duration = Duration::from_millis(100);

/// The next fold of `conversation_updates` into `conversations` ([`db::fold_conversations`]) comes
/// `conversation_fold_interval` after the last one, and no sooner than this many times its duration,
/// so folding a large recording takes at most about 1/20 of the DuckDB thread.
const FOLD_SPACING: u32 = 20;

/// A finished exchange on its way to DuckDB.
pub(crate) struct Queued {
    /// Position in finishing order: consecutive, so a derivation result finds its entry directly.
    pub ticket: u64,
    pub id: ExchangeId,
    /// Journal files holding its messages.
    pub segs: Vec<SegId>,
    /// The writer's journal write number of its latest journaled message: once the journal is
    /// synced up to it, the exchange can be derived again from the files.
    pub mark: u64,
    /// Row count estimate until derived.
    pub rows: usize,
    /// Event rows already handed over in [`EventChunk`]s.
    pub events_taken: usize,
    /// What the writer derived itself, when no deriver took the job ([`Shared::hand_over`]).
    pub derived: Option<Handed>,
}

/// `sse_events` rows of a stream that is still running, in `seq` order (see
/// [`super::derive::EVENT_CHUNK_ROWS`]); the rest of its rows come with its [`Queued`] entry.
pub(crate) struct EventChunk {
    pub id: ExchangeId,
    pub rows: Vec<EventRow>,
    /// The writer's journal write number of the latest message they derive from (`u64::MAX`:
    /// one of the exchange's messages could not be journaled).
    pub mark: u64,
}

/// Requests from the writer thread.
pub(crate) enum DbMsg {
    Queued(Box<Queued>),
    /// Event rows of a running stream: written before anything queued after them.
    Events(Box<EventChunk>),
    /// Commit everything queued so far; answer once it is in DuckDB.
    Flush(oneshot::Sender<Result<(), RecorderError>>),
    /// Commit everything (a few attempts), then stop.
    Shutdown(Sender<Result<(), RecorderError>>),
    /// Stop without writing anything (crash simulation).
    Abort,
}

/// Why a deriver's answer holds no rows.
pub(crate) enum NoRows {
    /// Derivation panicked (a bug).
    Panicked,
    /// The DuckDB queue was full and the exchange is durable in the journal: derived again from
    /// there when its batch comes (`Shared::hand_over`). With the bytes the rows took.
    Shed(usize),
}

/// An exchange's rows as the writer or a deriver hands them over ([`Shared::hand_over`]): the rows
/// (boxed: a `Derived` is over a kilobyte by itself, and up to `max_pending_exchanges` exchanges
/// wait for DuckDB, mostly without rows) or why there are none, and the bytes counted in
/// `Shared::db_inbound_bytes` until taken in.
pub(crate) type Handed = (Result<Box<Derived>, NoRows>, usize);

/// A deriver's answer: the ticket and what it hands over.
pub(crate) type DeriveDone = (u64, Handed);

/// Exchanges committed by one batch, with their journal files.
pub(crate) type Committed = Vec<(ExchangeId, Vec<SegId>)>;

/// A finished exchange waiting for its batch.
struct Pending {
    ticket: u64,
    id: ExchangeId,
    /// `None` while a deriver works on it, or once dropped from memory.
    derived: Option<Box<Derived>>,
    deriving: bool,
    rows: usize,
    /// Bytes of `derived` (0 while not in memory).
    bytes: usize,
    /// Bytes of `derived` when it was last in memory (what deriving it again will take).
    approx: usize,
    segs: Vec<SegId>,
    mark: u64,
    /// Event rows its chunks handed over before it ended.
    events_taken: usize,
}

pub(crate) struct Committer {
    pub cfg: RecorderConfig,
    pub dir: PathBuf,
    pub derive: DeriveCtx,
    pub shared: Arc<Shared>,
    pub conn: Connection,
    pub rx: Receiver<DbMsg>,
    pub done_rx: Receiver<DeriveDone>,
    pub committed_tx: Sender<Committed>,
}

struct State {
    c: Committer,
    pending: VecDeque<Pending>,
    pending_rows: usize,
    /// Pending exchanges whose rows are in memory.
    held: usize,
    /// Bytes of the rows in memory (gauge `db_queue_bytes`, bound `max_pending_bytes`).
    held_bytes: usize,
    /// Derivations that arrived before their exchange was queued here, with their bytes (counted
    /// in `held_bytes`).
    early: HashMap<u64, Handed>,
    /// Tickets below this are committed.
    committed_below: u64,
    pending_since: Option<Instant>,
    waiters: Vec<oneshot::Sender<Result<(), RecorderError>>>,
    failing: bool,
    next_retry: Instant,
    dedupe: bool,
    memory_dropped_warned: bool,
    /// Event chunks not written yet, with their bytes.
    chunks: VecDeque<(EventChunk, usize)>,
    /// Exchanges with an event chunk dropped from memory: derived again in full from the journal.
    events_dropped: HashSet<ExchangeId>,
    /// `conversation_updates` may hold rows (`Recorder::open` folded what a previous run left).
    unfolded: bool,
    /// No fold before this.
    next_fold: Instant,
}

/// About how many bytes of memory event rows take (for the DuckDB queue's gauge and bound).
fn event_bytes(rows: &[EventRow]) -> usize {
    rows.iter().map(EventRow::approx_bytes).sum()
}

/// Rows for an exchange whose derivation panicked (a bug): at least its id and the failure.
/// What a handed-over answer leaves in memory: the rows if any, and their bytes (without rows: the
/// bytes deriving them again will take, [`Pending::approx`]).
fn unpack(id: ExchangeId, (rows, bytes): Handed) -> (Option<Box<Derived>>, usize) {
    match rows {
        Ok(d) => (Some(d), bytes),
        Err(NoRows::Panicked) => {
            let d = underivable(id);
            let bytes = d.approx_bytes();
            (Some(Box::new(d)), bytes)
        }
        Err(NoRows::Shed(bytes)) => (None, bytes),
    }
}

fn underivable(id: ExchangeId) -> Derived {
    let mut d = Derived::default();
    d.exchange.id = id.to_string();
    d.exchange.operation = "other".to_owned();
    d.exchange.outcome = "proxy_error".to_owned();
    d.exchange.error = Some("the recorder failed to derive this exchange's rows".to_owned());
    d
}

impl Committer {
    pub fn run(self) {
        let first_fold = Instant::now() + self.cfg.conversation_fold_interval;
        let mut s = State {
            c: self,
            pending: VecDeque::new(),
            pending_rows: 0,
            held: 0,
            held_bytes: 0,
            early: HashMap::new(),
            committed_below: 0,
            pending_since: None,
            waiters: Vec::new(),
            failing: false,
            next_retry: Instant::now(),
            dedupe: false,
            memory_dropped_warned: false,
            chunks: VecDeque::new(),
            events_dropped: HashSet::new(),
            unfolded: false,
            next_fold: first_fold,
        };
        let rx = s.c.rx.clone();
        // While exchanges flow, the loop looks at its channels every `BUSY_POLL` (see `Activity`): the
        // writer's and the derivers' sends (two per exchange) then wake no thread.
        let mut activity = Activity::new(IDLE_AFTER);
        loop {
            if activity.busy() {
                std::thread::sleep(s.timeout().min(BUSY_POLL));
            } else {
                let timeout = s.timeout();
                let done_rx = s.c.done_rx.clone();
                crossbeam_channel::select! {
                    recv(rx) -> msg => {
                        activity.saw_data();
                        if msg.map_or(true, |m| s.handle(m)) {
                            return;
                        }
                    },
                    recv(done_rx) -> done => match done {
                        Ok(d) => s.take_derived(d),
                        Err(_) => s.derivers_gone(),
                    },
                    default(timeout) => {}
                }
            }
            // Whatever else waits, in both channels: one turn of the loop (and its batch) may be
            // long, and a message left behind in one channel would leave its partner in the other
            // unmatched (`early`).
            loop {
                match rx.try_recv() {
                    Ok(msg) => {
                        activity.saw_data();
                        if s.handle(msg) {
                            return;
                        }
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                }
            }
            s.absorb(None);
            s.maybe_commit();
            s.bound_memory();
            if s.unfolded && !s.failing && Instant::now() >= s.next_fold {
                let _ = s.fold();
            }
        }
    }
}

impl State {
    /// Takes one message from the writer; `true`: stop.
    fn handle(&mut self, msg: DbMsg) -> bool {
        match msg {
            DbMsg::Queued(q) => self.queue(*q),
            DbMsg::Events(c) => self.take_chunk(*c),
            DbMsg::Flush(reply) => self.flush(reply),
            DbMsg::Shutdown(reply) => {
                let _ = reply.send(self.shutdown());
                return true;
            }
            DbMsg::Abort => return true,
        }
        false
    }

    /// How long the loop may sleep before a batch is due.
    fn timeout(&self) -> Duration {
        let fold = if self.unfolded && !self.failing {
            self.next_fold.saturating_duration_since(Instant::now())
        } else {
            Duration::MAX
        };
        self.batch_timeout().min(fold)
    }

    fn batch_timeout(&self) -> Duration {
        if self.pending.is_empty() && self.chunks.is_empty() {
            return Duration::from_millis(250);
        }
        if self.failing {
            self.next_retry.saturating_duration_since(Instant::now())
        } else if self.paused() {
            PAUSED_POLL
        } else if self.backlog() {
            Duration::ZERO
        } else {
            self.pending_since.map_or(Duration::ZERO, |s| {
                self.c.cfg.flush_interval.saturating_sub(s.elapsed())
            })
        }
    }

    /// Test hook [`super::RecorderHandle::set_db_paused`].
    fn paused(&self) -> bool {
        self.c.shared.db_paused.load(Ordering::SeqCst)
    }

    /// A batch's worth of rows (or of bytes) waits: write it without waiting for `flush_interval`.
    fn backlog(&self) -> bool {
        self.pending_rows >= self.c.cfg.batch_rows
            || self.held_bytes >= self.c.cfg.max_pending_bytes
    }

    /// Holds a running stream's event rows until the next batch.
    fn take_chunk(&mut self, c: EventChunk) {
        if self.events_dropped.contains(&c.id) {
            // An earlier chunk was dropped: the whole exchange is derived again from the journal.
            return;
        }
        let bytes = event_bytes(&c.rows);
        self.pending_rows += c.rows.len();
        self.add_bytes(bytes);
        self.chunks.push_back((c, bytes));
        self.pending_since.get_or_insert_with(Instant::now);
        self.publish_lag();
        self.bound_memory_if_failing();
    }

    /// Rows derived for an exchange that lost an event chunk from memory miss that chunk's rows:
    /// they are derived again from the journal instead, when it holds the whole exchange. An
    /// exchange the journal could not hold is written with the rows it has, and counted.
    fn keep_derived(&self, id: ExchangeId, mark: u64) -> bool {
        if !self.events_dropped.contains(&id) {
            return true;
        }
        if mark == u64::MAX {
            StatsAtomics::add(&self.c.shared.stats.exchanges_incomplete, 1);
            tracing::error!(exchange = %id,
                "agentcap recorder: a stream's event rows were dropped from memory while DuckDB failed and the journal could not keep the exchange; writing the rows still held");
            return true;
        }
        false
    }

    fn queue(&mut self, q: Queued) {
        // Its rows came with it (the writer derived it), came first (from a deriver), or come later.
        let handed = match q.derived {
            Some(h) => {
                self.took_inbound(h.1);
                Some(h)
            }
            None => {
                let early = self.early.remove(&q.ticket);
                if let Some((_, bytes)) = &early {
                    self.held_bytes = self.held_bytes.saturating_sub(*bytes);
                }
                early
            }
        };
        let deriving = handed.is_none();
        let (mut derived, approx) = handed.map_or((None, 0), |h| unpack(q.id, h));
        if derived.is_some() && !self.keep_derived(q.id, q.mark) {
            derived = None;
        }
        let (rows, bytes) = match &derived {
            Some(d) => {
                self.held += 1;
                (d.row_count(), approx)
            }
            None => (q.rows, 0),
        };
        self.pending_rows += rows;
        self.add_bytes(bytes);
        self.pending.push_back(Pending {
            ticket: q.ticket,
            id: q.id,
            derived,
            deriving,
            rows,
            bytes,
            approx,
            segs: q.segs,
            mark: q.mark,
            events_taken: q.events_taken,
        });
        self.pending_since.get_or_insert_with(Instant::now);
        self.publish_lag();
        self.bound_memory_if_failing();
    }

    /// Files a deriver's result under its ticket (the writer queues an exchange here and hands
    /// it to a deriver at about the same time: the result may come first).
    fn take_derived(&mut self, (ticket, handed): DeriveDone) {
        self.took_inbound(handed.1);
        let front = self.pending.front().map(|p| p.ticket);
        let index = front
            .and_then(|f| ticket.checked_sub(f))
            .and_then(|i| usize::try_from(i).ok());
        let Some(p) = index.and_then(|i| self.pending.get_mut(i)) else {
            if ticket >= self.committed_below {
                // Not queued yet.
                let bytes = handed.1;
                self.early.insert(ticket, handed);
                self.add_bytes(bytes);
            }
            return;
        };
        if !p.deriving {
            return;
        }
        let (id, mark) = (p.id, p.mark);
        let (derived, bytes) = unpack(id, handed);
        let keep = derived.is_some() && self.keep_derived(id, mark);
        let Some(p) = index.and_then(|i| self.pending.get_mut(i)) else {
            return;
        };
        p.deriving = false;
        p.approx = bytes;
        // Shed, or missing a chunk dropped from memory: derived again from the journal.
        let Some(d) = derived.filter(|_| keep) else {
            return;
        };
        let rows = d.row_count();
        self.pending_rows = (self.pending_rows + rows).saturating_sub(p.rows);
        p.rows = rows;
        p.bytes = bytes;
        p.derived = Some(d);
        self.held += 1;
        self.add_bytes(bytes);
        self.bound_memory_if_failing();
    }

    /// Rows of `n` bytes sent to this thread were taken in (`Shared::db_inbound_bytes`).
    fn took_inbound(&self, n: usize) {
        if n > 0 {
            self.c
                .shared
                .db_inbound_bytes
                .fetch_sub(n as u64, Ordering::Relaxed);
        }
    }

    fn add_bytes(&mut self, n: usize) {
        self.held_bytes += n;
        self.publish_bytes();
    }

    /// Publishes when the oldest row waiting for a commit arrived (the commit-lag gauge).
    fn publish_lag(&self) {
        let sh = &self.c.shared;
        let v = self.pending_since.map_or(0, |t| {
            t.saturating_duration_since(sh.started).as_micros() as u64 + 1
        });
        sh.pending_since_us.store(v, Ordering::Relaxed);
    }

    fn publish_bytes(&self) {
        self.c
            .shared
            .stats
            .db_queue_bytes
            .store(self.held_bytes as u64, Ordering::Relaxed);
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
                match self.c.done_rx.recv() {
                    Ok(d) => d,
                    Err(_) => {
                        self.derivers_gone();
                        return;
                    }
                }
            } else {
                match self.c.done_rx.try_recv() {
                    Ok(d) => d,
                    Err(crossbeam_channel::TryRecvError::Empty) => return,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        self.derivers_gone();
                        return;
                    }
                }
            };
            self.take_derived(next);
        }
    }

    /// Every deriver thread is gone (they stop only with the writer, or on a bug): what they had
    /// is derived again from the journal.
    fn derivers_gone(&mut self) {
        self.c.done_rx = crossbeam_channel::never();
        for p in &mut self.pending {
            p.deriving = false;
        }
    }

    /// While DuckDB fails, rows are bounded as they arrive. Otherwise once per turn of the loop, after
    /// its batch: a chunk or an exchange that alone passes the bound is written, not dropped.
    fn bound_memory_if_failing(&mut self) {
        if self.failing {
            self.bound_memory();
        }
    }

    /// Keeps at most `max_pending_exchanges` derived exchanges and `max_pending_bytes` of rows in
    /// memory. Beyond either, the rows of exchanges whose messages are safely in the journal are
    /// dropped, newest first (the oldest are written next), down to half the bound, and derived
    /// again from the journal when their batch is written; then, if still over, event chunks. This
    /// is what happens when DuckDB fails, and when it is slower than the traffic: the DuckDB thread
    /// writes one batch per turn of its loop, and this runs after each, so its memory stays bounded
    /// while the journal on disk holds the backlog.
    fn bound_memory(&mut self) {
        let (max_held, max_bytes) = (
            self.c.cfg.max_pending_exchanges,
            self.c.cfg.max_pending_bytes,
        );
        if (self.held <= max_held && self.held_bytes <= max_bytes)
            || !self.c.shared.journal_ok.load(Ordering::SeqCst)
        {
            return;
        }
        let synced = self.c.shared.journal_synced.load(Ordering::SeqCst);
        let mut dropped = 0usize;
        for p in self.pending.iter_mut().rev() {
            if self.held <= max_held / 2 && self.held_bytes <= max_bytes / 2 {
                break;
            }
            if !p.deriving && p.mark <= synced && p.derived.take().is_some() {
                dropped += 1;
                self.held -= 1;
                self.held_bytes = self.held_bytes.saturating_sub(std::mem::take(&mut p.bytes));
            }
        }
        let mut chunks_dropped = 0usize;
        if self.held_bytes > max_bytes {
            let mut kept = VecDeque::new();
            for (c, bytes) in std::mem::take(&mut self.chunks) {
                if c.mark <= synced {
                    self.events_dropped.insert(c.id);
                    self.held_bytes = self.held_bytes.saturating_sub(bytes);
                    self.pending_rows = self.pending_rows.saturating_sub(c.rows.len());
                    chunks_dropped += 1;
                } else {
                    kept.push_back((c, bytes));
                }
            }
            // A chunk after a dropped one of the same exchange goes too: rows stay in `seq` order.
            for (c, bytes) in std::mem::take(&mut kept) {
                if self.events_dropped.contains(&c.id) {
                    self.held_bytes = self.held_bytes.saturating_sub(bytes);
                    self.pending_rows = self.pending_rows.saturating_sub(c.rows.len());
                } else {
                    self.chunks.push_back((c, bytes));
                }
            }
            for p in &mut self.pending {
                if self.events_dropped.contains(&p.id)
                    && p.mark != u64::MAX
                    && p.derived.take().is_some()
                {
                    self.held -= 1;
                    self.held_bytes = self.held_bytes.saturating_sub(std::mem::take(&mut p.bytes));
                }
            }
        }
        self.publish_bytes();
        if dropped + chunks_dropped > 0 && !self.memory_dropped_warned {
            self.memory_dropped_warned = true;
            tracing::warn!(
                pending = self.pending.len(),
                "agentcap recorder: DuckDB is behind; finished exchanges are kept in the journal only and will be derived again when they are written"
            );
        }
    }

    fn maybe_commit(&mut self) {
        if self.pending.is_empty() && self.chunks.is_empty() {
            return;
        }
        let due = if self.failing {
            Instant::now() >= self.next_retry
        } else if self.paused() {
            false
        } else {
            self.backlog()
                || self
                    .pending_since
                    .is_some_and(|s| s.elapsed() >= self.c.cfg.flush_interval)
        };
        if due {
            // One batch per turn of the loop: between two, the loop takes in what arrived and
            // `bound_memory` sheds what does not fit.
            let _ = self.commit(1);
        }
    }

    /// Writes every pending exchange, in batches of about `batch_rows` rows.
    fn commit_all(&mut self) -> Result<(), RecorderError> {
        self.commit(usize::MAX)
    }

    /// Writes the event chunks held and at most `max_batches` batches of about `batch_rows` rows
    /// of pending exchanges, oldest first.
    fn commit(&mut self, max_batches: usize) -> Result<(), RecorderError> {
        if let Err(e) = self.write_chunks() {
            self.db_failed(&e);
            return Err(e);
        }
        let mut batches = 0;
        while !self.pending.is_empty() {
            if batches == max_batches {
                // The rest is due at once (`backlog`, or `pending_since` already old).
                return Ok(());
            }
            batches += 1;
            let mut n = 0;
            let mut rows = 0;
            for p in &self.pending {
                n += 1;
                rows += p.rows;
                if rows >= self.c.cfg.batch_rows {
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
                && let Err(e) = self.rederive(self.rederive_span(n))
            {
                self.db_failed(&e);
                return Err(e);
            }
            let result = if self.c.shared.db_fault.load(Ordering::SeqCst) {
                Err(RecorderError::SimulatedFault)
            } else {
                let batch: Vec<&Derived> = self
                    .pending
                    .iter()
                    .take(n)
                    .filter_map(|p| p.derived.as_deref())
                    .collect();
                let t0 = Instant::now();
                db::write_batch(&self.c.conn, &batch, self.dedupe).inspect(|_| {
                    let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                    StatsAtomics::add(&self.c.shared.stats.db_busy_us, us);
                })
            };
            match result {
                Ok(counts) => {
                    self.count(&counts);
                    self.unfolded |= counts.conversations > 0;
                    let done: Committed = self
                        .pending
                        .drain(..n)
                        .map(|p| {
                            self.committed_below = self.committed_below.max(p.ticket + 1);
                            self.pending_rows = self.pending_rows.saturating_sub(p.rows);
                            self.held_bytes = self.held_bytes.saturating_sub(p.bytes);
                            self.held -= usize::from(p.derived.is_some());
                            self.events_dropped.remove(&p.id);
                            (p.id, p.segs)
                        })
                        .collect();
                    self.publish_bytes();
                    let _ = self.c.committed_tx.send(done);
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
        self.publish_lag();
        // Flushes that waited through a failure: answered like `flush`, after a fold.
        for w in std::mem::take(&mut self.waiters) {
            let _ = w.send(self.fold());
        }
        Ok(())
    }

    /// Writes the event chunks held, in one transaction, before anything queued after them.
    fn write_chunks(&mut self) -> Result<(), RecorderError> {
        if self.chunks.is_empty() {
            return Ok(());
        }
        if self.c.shared.db_fault.load(Ordering::SeqCst) {
            return Err(RecorderError::SimulatedFault);
        }
        let texts: Vec<String> = self.chunks.iter().map(|(c, _)| c.id.to_string()).collect();
        let batch: Vec<(&str, &[EventRow])> = texts
            .iter()
            .zip(&self.chunks)
            .map(|(id, (c, _))| (id.as_str(), &c.rows[..]))
            .collect();
        let t0 = Instant::now();
        let n = db::write_event_chunks(&self.c.conn, &batch, self.dedupe)?;
        let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        let s = &self.c.shared.stats;
        StatsAtomics::add(&s.db_busy_us, us);
        StatsAtomics::add(&s.rows_written, n);
        StatsAtomics::add(&s.sse_events_written, n);
        for (c, bytes) in self.chunks.drain(..) {
            self.held_bytes = self.held_bytes.saturating_sub(bytes);
            self.pending_rows = self.pending_rows.saturating_sub(c.rows.len());
        }
        self.publish_bytes();
        if self.pending.is_empty() {
            self.pending_since = None;
            self.publish_lag();
        }
        Ok(())
    }

    fn count(&self, c: &BatchCounts) {
        let s = &self.c.shared.stats;
        StatsAtomics::add(&s.exchanges_written, c.exchanges);
        StatsAtomics::add(&s.rows_written, c.rows());
        StatsAtomics::add(&s.sse_events_written, c.sse_events);
        StatsAtomics::add(&s.entries_written, c.entries);
        StatsAtomics::add(&s.usage_written, c.usage);
        StatsAtomics::add(&s.agents_written, c.agents);
        StatsAtomics::add(&s.conversations_written, c.conversations);
    }

    fn db_failed(&mut self, e: &RecorderError) {
        StatsAtomics::add(&self.c.shared.stats.db_errors, 1);
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

    /// How many pending exchanges to derive again from the journal when some of the first `n` need
    /// it: the dropped ones right after them too, up to a quarter of `max_pending_bytes` (their
    /// copies, read back, take about as much again), so that one read
    /// of a journal segment serves many batches instead of one (a segment holds tens of thousands of
    /// exchanges; a batch, a few thousand).
    fn rederive_span(&self, n: usize) -> usize {
        let synced = self.c.shared.journal_synced.load(Ordering::SeqCst);
        let budget = self.c.cfg.max_pending_bytes / 4;
        // An exchange never derived counts as a typical one.
        let cost = |p: &Pending| if p.approx == 0 { 4096 } else { p.approx };
        let mut bytes: usize = self.pending.iter().take(n).map(cost).sum();
        let mut span = n;
        for p in self.pending.iter().skip(n) {
            bytes += cost(p);
            if p.derived.is_some() || p.deriving || p.mark > synced || bytes > budget {
                break;
            }
            span += 1;
        }
        span
    }

    /// Derives the first `n` pending exchanges again from the journal files they are in.
    fn rederive(&mut self, n: usize) -> Result<(), RecorderError> {
        let synced = self.c.shared.journal_synced.load(Ordering::SeqCst);
        let mut ids = HashSet::new();
        let mut files = BTreeSet::new();
        for p in self
            .pending
            .iter()
            .take(n)
            .filter(|p| p.derived.is_none() && !p.deriving)
        {
            if p.mark > synced {
                // Not on disk yet: try again shortly.
                return Err(RecorderError::NotJournaledYet);
            }
            ids.insert(p.id);
            files.extend(p.segs.iter().copied());
        }
        if self.c.shared.db_fault.load(Ordering::SeqCst) {
            return Err(RecorderError::SimulatedFault);
        }
        // Event rows its chunks wrote are written again with the rest (in chunks, as they come).
        let conn = &self.c.conn;
        for p in self.pending.iter().take(n) {
            if p.derived.is_none()
                && !p.deriving
                && (p.events_taken > 0 || self.events_dropped.contains(&p.id))
            {
                db::delete_events(conn, &p.id.to_string())?;
            }
        }
        let mut written = 0u64;
        let mut loaded = load_exchanges(
            &self.c.dir,
            &files,
            &ids,
            &self.c.derive,
            &mut |id, rows| {
                written += db::write_event_chunks(conn, &[(&id.to_string(), &rows)], false)?;
                Ok(())
            },
        )?;
        StatsAtomics::add(&self.c.shared.stats.rows_written, written);
        StatsAtomics::add(&self.c.shared.stats.sse_events_written, written);
        for id in &ids {
            self.events_dropped.remove(id);
        }
        StatsAtomics::add(&self.c.shared.stats.exchanges_rederived, ids.len() as u64);
        for p in self.pending.iter_mut().take(n) {
            if p.derived.is_none() && !p.deriving {
                let msgs = loaded
                    .remove(&p.id)
                    .unwrap_or_else(|| ExchangeMsgs::new(p.id));
                let d = derive(msgs, &self.c.derive);
                self.pending_rows = (self.pending_rows + d.row_count()).saturating_sub(p.rows);
                p.rows = d.row_count();
                p.bytes = d.approx_bytes();
                p.approx = p.bytes;
                self.held_bytes += p.bytes;
                p.derived = Some(Box::new(d));
                self.held += 1;
            }
        }
        Ok(())
    }

    /// Folds `conversation_updates` into `conversations` and schedules the next fold.
    fn fold(&mut self) -> Result<(), RecorderError> {
        if self.c.shared.db_fault.load(Ordering::SeqCst) {
            self.next_fold = Instant::now() + RETRY_DELAY;
            return Err(RecorderError::SimulatedFault);
        }
        let t0 = Instant::now();
        let result = db::fold_conversations(&self.c.conn);
        let took = t0.elapsed();
        StatsAtomics::add(
            &self.c.shared.stats.db_busy_us,
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        );
        match &result {
            Ok(_) => {
                self.unfolded = false;
                self.next_fold = Instant::now()
                    + self
                        .c
                        .cfg
                        .conversation_fold_interval
                        .max(took * FOLD_SPACING);
            }
            Err(e) => {
                tracing::warn!(error = %e, "agentcap recorder: folding conversation updates failed; retrying");
                self.next_fold = Instant::now() + RETRY_DELAY;
            }
        }
        result.map(|_| ())
    }

    fn flush(&mut self, reply: oneshot::Sender<Result<(), RecorderError>>) {
        // Derive and write everything queued before the request (and what came with it), then bring
        // `conversations` up to date.
        match self.commit_all() {
            Ok(()) => {
                let _ = reply.send(self.fold());
            }
            Err(_) => self.waiters.push(reply),
        }
    }

    fn shutdown(&mut self) -> Result<(), RecorderError> {
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
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(RecorderError::Stopped));
        }
        let result = result.and_then(|()| self.fold());
        let _ = self.c.conn.execute_batch("CHECKPOINT");
        result
    }
}
