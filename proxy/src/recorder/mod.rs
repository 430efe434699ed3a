//! The recorder: turns the hot path's [`Msg`]s into rows of an embedded DuckDB file, off the hot
//! path, without ever blocking the sender or dropping a record.
//!
//! ```text
//! hot path ──send()──▶ bounded channel ──▶ writer thread ──▶ journal segment (group-committed)
//!     │ (channel full)                        │  per-exchange reorder by seq
//!     └──▶ spill queue ──▶ spill thread ──▶ spill file ──(read back when idle)──┘
//!                                             │  finished exchange ──▶ deriver thread(s): rows
//!                                             ▼                              │
//!                                   DuckDB thread ◀──────────────────────────┘
//!                                   batches (appenders + upserts) ──▶ "committed" back to the writer
//! ```
//!
//! The writer thread owns the journal and never touches DuckDB; the DuckDB thread owns the
//! connection. So journaling keeps pace with the hot path however slow DuckDB is, and a crash
//! loses at most one group-commit interval of messages, not DuckDB's backlog. Deriving rows (SSE
//! decoding, JSON parsing, entry assembly) is pure and runs on one deriver thread per spare core.
//!
//! - [`journal`]: the write-ahead log format (CRC-checked records) and segment files.
//! - [`derive`]: from one exchange's messages to its rows (pure).
//! - [`body`]: content decoding, capture cap, JSON parsing, redaction, credential filtering.
//! - [`schema`]: migrations. [`db`]: batch insertion. [`query`]: read-only SQL.
//! - `writer` / `committer` / `spill`: the threads.
//!
//! Durability: every message the writer receives is appended to the current journal segment,
//! which is fsynced every `journal_commit_interval` (group commit). A segment is deleted once the
//! DuckDB thread reports every exchange with a message in it committed. On [`Recorder::open`]
//! whatever a previous run left in the journal is replayed before anything else happens; exchanges
//! DuckDB already has are skipped (by exchange id), so replay is idempotent.

pub mod body;
mod columns;
mod committer;
pub mod db;
pub mod derive;
pub mod journal;
pub mod metrics;
pub mod ops;
pub mod query;
mod replay;
pub mod schema;
pub mod scratch;
mod spill;
pub mod stats;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use duckdb::{Config, Connection};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::record::{ExchangeId, Msg};

pub use scratch::{ScratchDir, scratch_dir};

pub use query::{
    QueryCancel, QueryLimits, QueryResult, StatementKind, StopReason, query_file_read_only,
};

/// How hard the recorder tries to keep records across a crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// The journal is group-committed every `journal_commit_interval`; a crash loses at most
    /// about that window (plus whatever sat in the channel: while traffic flows, the writer takes
    /// the channel in once per interval, just before it commits; it never waits on DuckDB).
    #[default]
    Batched,
    /// As batched, but whenever a [`RecorderHandle::send_durable`] acknowledgement is waiting,
    /// the writer commits the journal as soon as it has drained what is queued, instead of
    /// waiting for the interval. Acknowledgements are still grouped, never one fsync per message.
    /// An acknowledgement the journal cannot honour fails ([`NotDurable`]); the proxy then ends
    /// the response with an error instead of releasing its last frame.
    Strict,
}

/// How the recorder's background threads (the DuckDB thread, the derivers, the shipper) give the
/// cores to forwarding. Recording is off the hot path and backed by the journal, so it can wait; the
/// journal writer keeps the normal priority either way, so durability does not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackgroundPriority {
    /// Linux's `SCHED_IDLE` (elsewhere as `low`): a forwarding thread that wakes takes the core from
    /// them at once. They run on the time forwarding leaves; on cores saturated for long that is
    /// little, and the journal and the recorder's memory bounds hold the backlog until it is written.
    /// On two cores at 1,000 req/s the added p99 went from 0.53–0.96 ms (`low`) to 0.14–0.36 ms
    /// (eight runs each).
    #[default]
    Idle,
    /// A higher nice value (about 9): they get about a tenth of a busy core whatever forwarding
    /// needs, and a forwarding thread that wakes may wait for the end of their time slice.
    Low,
}

/// The DuckDB file every command uses unless told otherwise.
pub const DEFAULT_DB_PATH: &str = "agentcap.duckdb";

/// Recorder settings.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// The DuckDB file (created with its parent directory if missing).
    pub db_path: PathBuf,
    /// Journal directory; default: `<db file name>.journal/` beside the database.
    pub journal_dir: Option<PathBuf>,
    /// Capacity of the channel, in messages (default 65 536): a message finding this many waiting goes
    /// to the spill file instead. Checked before each send, so the forwarding threads may overshoot it
    /// by one message each; the channel allocates as it fills and frees as it drains, so an idle
    /// recorder holds no memory for it.
    pub channel_capacity: usize,
    /// Capacity of the channel in body bytes (default 32 MiB): a message whose frame would take
    /// the channel past it goes to the spill file instead, like a message finding it full.
    pub channel_bytes: usize,
    /// Body bytes waiting for the spill thread beyond which the recorder is saturated (default
    /// 64 MiB): the response tees then wait before reading more from the upstream.
    pub spill_queue_bytes: usize,
    /// Commit to DuckDB once this many rows are pending (default 10 000)…
    pub batch_rows: usize,
    /// …or once the oldest pending row is this old (default 1 s), and on shutdown: how far queries on
    /// the live recording may lag behind the traffic (`POST /flush` writes at once). Each batch costs
    /// DuckDB a plan per table and a commit, whatever its size: at 1,000 exchanges/s, batches every
    /// 1 s instead of 200 ms took the DuckDB thread's CPU down by about 30 %.
    pub flush_interval: Duration,
    /// Shortest time between two folds of `conversation_updates` into `conversations` while traffic flows
    /// (default 2 s; the DuckDB thread also waits 20 times the last fold's duration): how far the
    /// `conversations` table may lag behind the exchanges written. A flush and a shutdown fold at once.
    pub conversation_fold_interval: Duration,
    /// Journal group-commit (write + fsync) interval (default 5 ms).
    pub journal_commit_interval: Duration,
    /// Batched (default) or strict.
    pub durability: Durability,
    /// How the DuckDB thread, the derivers and the shipper give the cores to forwarding (default
    /// [`BackgroundPriority::Idle`]).
    pub background_priority: BackgroundPriority,
    /// Maximum stored bytes per body (default 1 MiB); longer bodies are truncated and flagged.
    pub capture_cap: usize,
    /// `--redact` patterns: matches in stored bodies, raw text and event data become `[REDACTED]`.
    pub redact: Vec<regex::Regex>,
    /// Size limit of one SSE event when decoding the copy (default 16 MiB).
    pub max_sse_event: usize,
    /// At most this many finished exchanges' rows are kept in memory waiting for DuckDB (default
    /// 100 000); beyond that (DuckDB fails, or is slower than the traffic) the newest are dropped
    /// from memory and derived again from the journal when their batch is written.
    pub max_pending_exchanges: usize,
    /// An exchange whose `End` arrived but which still misses an earlier message after this long
    /// (default 30 s) is written with what arrived, its durable acknowledgement failing: no wait
    /// on a message that may never come is unbounded.
    pub message_gap_limit: Duration,
    /// Bytes of derived rows the DuckDB thread holds at most (default 64 MiB): it writes a batch
    /// once they pass it, and rows that arrive faster than it writes (or while DuckDB fails) are
    /// dropped from memory past it like past `max_pending_exchanges`, newest first, down to half.
    pub max_pending_bytes: usize,
    /// Memory of the recording's DuckDB instance, in bytes (default 1 GiB): its buffer pool, the
    /// recorder's writes and the queries on the live recording (admin `/query`, `POST /export`, the
    /// shipper). What does not fit goes to DuckDB's temporary directory next to the file
    /// (`<db>.tmp`); without it DuckDB would take up to 80 % of the machine's memory.
    pub db_memory_limit: u64,
    /// DuckDB's write-ahead log may grow to this many bytes before DuckDB checkpoints it into the
    /// file (default 128 MiB; DuckDB's own default is 16 MiB). Every checkpoint writes the
    /// `conversations` table's primary-key index anew, so its cost grows with the recording (about
    /// 40 ms per million rows of an indexed table with DuckDB 2.0, whatever was appended since the
    /// last one): fewer checkpoints cost less in all. The price: a WAL file of up to this size beside
    /// the database, replayed when it is opened after a crash.
    pub db_checkpoint_threshold: u64,
    /// Give the database instance a private scratch directory (a fresh temporary directory,
    /// removed with the recorder) as its one `allowed_directories` entry, so the admin listener's
    /// `POST /export` can `COPY` there ([`open_db_with`]). Off by default (external access stays
    /// fully off); the proxy turns it on when it runs an admin listener.
    pub export_scratch: bool,
    /// OpenTelemetry span export (`--otlp-endpoint`); `None`: off (the default).
    pub otlp: Option<crate::otel::OtlpConfig>,
    /// Give the database instance the shipper's spool directory (`<journal>/ship/spool/`, created
    /// here) as an `allowed_directories` entry, so the shipper can `COPY` segments there
    /// ([`open_db_with`]). Off by default: external access stays fully off.
    pub ship_spool: bool,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            db_path: PathBuf::from(DEFAULT_DB_PATH),
            journal_dir: None,
            channel_capacity: 65_536,
            channel_bytes: 32 * 1024 * 1024,
            spill_queue_bytes: 64 * 1024 * 1024,
            batch_rows: 10_000,
            flush_interval: Duration::from_secs(1),
            conversation_fold_interval: Duration::from_secs(2),
            journal_commit_interval: Duration::from_millis(5),
            durability: Durability::Batched,
            background_priority: BackgroundPriority::Idle,
            capture_cap: 1024 * 1024,
            redact: Vec::new(),
            max_sse_event: agentcap_wire::DEFAULT_MAX_EVENT_SIZE,
            max_pending_exchanges: 100_000,
            message_gap_limit: Duration::from_secs(30),
            max_pending_bytes: 64 * 1024 * 1024,
            db_memory_limit: 1024 * 1024 * 1024,
            db_checkpoint_threshold: 128 * 1024 * 1024,
            export_scratch: false,
            otlp: None,
            ship_spool: false,
        }
    }
}

impl RecorderConfig {
    /// A default configuration for the given database file.
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        RecorderConfig {
            db_path: db_path.into(),
            ..Default::default()
        }
    }

    /// The journal directory in effect.
    pub fn journal_dir(&self) -> PathBuf {
        if let Some(dir) = &self.journal_dir {
            return dir.clone();
        }
        let name = self.db_path.file_name().map_or_else(
            || DEFAULT_DB_PATH.into(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.db_path.with_file_name(format!("{name}.journal"))
    }
}

/// Errors of the recorder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// The span export could not start (its configuration: the operator's input).
    #[error(transparent)]
    Otlp(#[from] crate::otel::OtlpError),
    /// DuckDB reported an error.
    #[error("DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    /// The recorder built an inconsistent record batch of rows (a bug of ours, not the data's).
    #[error("internal: a batch of derived rows could not be built: {0}")]
    Batch(#[from] duckdb::arrow::error::ArrowError),
    /// A journal file could not be read or written.
    #[error("journal {path}: {source}")]
    Journal {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The export scratch directory could not be made.
    #[error("export scratch directory in {path}: {source}")]
    Scratch {
        /// The parent directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A schema migration failed (the database is left at the previous version).
    #[error("schema migration {version} failed: {source}")]
    Migration {
        /// The migration's version.
        version: i32,
        /// DuckDB's error.
        source: duckdb::Error,
    },
    /// The database was written by a newer agentcap.
    #[error("database schema version {found} is newer than the {supported} this build knows")]
    SchemaTooNew {
        /// Version in the file.
        found: i32,
        /// Latest version known here.
        supported: i32,
    },
    /// [`RecorderHandle::query`] refused the SQL (the client's).
    #[error("query refused: {reason}")]
    QueryRefused {
        /// Why.
        reason: String,
    },
    /// A journal file was written by a newer agentcap: it is left in place, untouched.
    #[error(
        "journal file {path} has format version {version}, which this build cannot read; run a newer agentcap or move the file away"
    )]
    JournalVersion {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        version: u32,
    },
    /// A query was interrupted while it ran (timeout, client gone, shutdown).
    #[error("query stopped: {reason}")]
    QueryStopped {
        /// Why.
        reason: StopReason,
    },
    /// The database is unavailable because [`RecorderHandle::set_db_fault`] is on.
    #[error("simulated DuckDB failure: the database is read-only")]
    SimulatedFault,
    /// The recorder was shut down (or its writer stopped).
    #[error("the recorder is stopped")]
    Stopped,
    /// The writer thread panicked.
    #[error("the recorder's writer thread panicked")]
    WriterPanicked,
    /// A configuration value is unusable.
    #[error("invalid recorder configuration: {0}")]
    Config(String),
    /// An exchange to derive again from the journal is not committed to it yet (transient: the
    /// DuckDB thread tries again after the next group commit).
    #[error("an exchange to derive again from the journal is not committed to it yet")]
    NotJournaledYet,
}

pub use stats::RecorderStats;

#[derive(Debug, Default)]
struct StatsAtomics {
    received: AtomicU64,
    spilled: AtomicU64,
    journal_bytes: AtomicU64,
    journal_errors: AtomicU64,
    exchanges_written: AtomicU64,
    rows_written: AtomicU64,
    sse_events_written: AtomicU64,
    entries_written: AtomicU64,
    usage_written: AtomicU64,
    agents_written: AtomicU64,
    conversations_written: AtomicU64,
    db_errors: AtomicU64,
    db_busy_us: AtomicU64,
    records_dropped: AtomicU64,
    pending_exchanges: AtomicU64,
    replayed_exchanges: AtomicU64,
    journal_corrupt_segments: AtomicU64,
    journal_corrupt_bytes: AtomicU64,
    strict_not_durable: AtomicU64,
    exchanges_incomplete: AtomicU64,
    exchanges_rederived: AtomicU64,
    exchanges_derived_by_writer: AtomicU64,
    derive_queue_bytes: AtomicU64,
    db_queue_bytes: AtomicU64,
    channel_bytes: AtomicU64,
    spill_queue_bytes: AtomicU64,
}

impl StatsAtomics {
    fn snapshot(&self) -> RecorderStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RecorderStats {
            received: g(&self.received),
            spilled: g(&self.spilled),
            journal_bytes: g(&self.journal_bytes),
            journal_errors: g(&self.journal_errors),
            exchanges_written: g(&self.exchanges_written),
            rows_written: g(&self.rows_written),
            sse_events_written: g(&self.sse_events_written),
            entries_written: g(&self.entries_written),
            usage_written: g(&self.usage_written),
            agents_written: g(&self.agents_written),
            conversations_written: g(&self.conversations_written),
            db_errors: g(&self.db_errors),
            db_busy_us: g(&self.db_busy_us),
            records_dropped: g(&self.records_dropped),
            pending_exchanges: g(&self.pending_exchanges),
            replayed_exchanges: g(&self.replayed_exchanges),
            journal_corrupt_segments: g(&self.journal_corrupt_segments),
            journal_corrupt_bytes: g(&self.journal_corrupt_bytes),
            strict_not_durable: g(&self.strict_not_durable),
            exchanges_incomplete: g(&self.exchanges_incomplete),
            exchanges_rederived: g(&self.exchanges_rederived),
            exchanges_derived_by_writer: g(&self.exchanges_derived_by_writer),
            spill_queue: 0,
            spill_queue_bytes: g(&self.spill_queue_bytes),
            channel_bytes: g(&self.channel_bytes),
            derive_queue_bytes: g(&self.derive_queue_bytes),
            db_queue_bytes: g(&self.db_queue_bytes),
            channel_messages: 0,
            db_commit_lag_us: 0,
        }
    }

    fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// Why a [`DurableAck`] failed: the exchange's record is not known to be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotDurable {
    /// The journal could not be written (a full disk, an I/O error).
    #[error("the journal could not be written")]
    JournalFailed,
    /// Some of the exchange's messages never reached the recorder.
    #[error("some of the exchange's messages never reached the recorder")]
    Incomplete,
    /// The recorder stopped before the record was durable.
    #[error("the recorder stopped")]
    Stopped,
}

/// The sending side of a durable acknowledgement.
pub(crate) type AckTx = oneshot::Sender<Result<(), NotDurable>>;

/// Resolves once a [`RecorderHandle::send_durable`] message (and every earlier message of its
/// exchange) is fsynced, or with the reason it cannot be.
#[derive(Debug)]
pub struct DurableAck(oneshot::Receiver<Result<(), NotDurable>>);

impl Future for DurableAck {
    type Output = Result<(), NotDurable>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(NotDurable::Stopped)))
    }
}

/// A message on its way to the writer, with the acknowledgement of `send_durable`.
pub(crate) enum Item {
    Plain(Msg),
    Durable(Msg, AckTx),
}

impl Item {
    /// Body bytes the message carries (what the channel's byte bound counts).
    fn body_bytes(&self) -> u64 {
        let m = match self {
            Item::Plain(m) | Item::Durable(m, _) => m,
        };
        match m {
            Msg::RequestBody { bytes, .. } | Msg::ResponseBody { bytes, .. } => bytes.len() as u64,
            _ => 0,
        }
    }

    fn into_parts(self) -> (Msg, Option<AckTx>) {
        match self {
            Item::Plain(m) => (m, None),
            Item::Durable(m, a) => (m, Some(a)),
        }
    }
}

/// Requests to the writer thread.
pub(crate) enum Control {
    Flush(oneshot::Sender<Result<(), RecorderError>>),
    Shutdown,
    Abort,
}

/// Requests to the spill thread.
pub(crate) enum SpillItem {
    Data(Item),
    /// Commit what is queued and answer.
    Sync(Sender<()>),
    /// Commit, close the file, answer and stop.
    Stop(Sender<()>),
    /// Stop without flushing (crash simulation).
    Abort,
}

/// Progress of one spill file, published by the spill thread after each fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpillFile {
    no: u64,
    synced_len: u64,
    closed: bool,
}

/// State shared by the handles and the threads.
pub(crate) struct Shared {
    stats: StatsAtomics,
    db_fault: AtomicBool,
    /// Test hook: the DuckDB thread takes rows but writes none (a DuckDB slower than the traffic).
    db_paused: AtomicBool,
    /// Test hook: the derivers take no job (a deriver that already holds one keeps it).
    derive_paused: AtomicBool,
    /// Bytes of derived rows sent to the DuckDB thread and not taken in by it yet (with the held
    /// rows, `db_queue_bytes`).
    db_inbound_bytes: AtomicU64,
    /// `RecorderConfig::max_pending_bytes`.
    db_bytes_cap: u64,
    /// `RecorderConfig::background_priority`, for the shipper's thread.
    background: BackgroundPriority,
    /// Test hook: every journal write fails as on a full disk.
    journal_fault: AtomicBool,
    stopped: AtomicBool,
    /// The writer can currently write the journal.
    journal_ok: AtomicBool,
    /// The writer's journal writes known to be fsynced (its write counter).
    journal_synced: AtomicU64,
    query_conn: Mutex<Option<Connection>>,
    /// Queries running now, interrupted on shutdown (by id).
    running_queries: Mutex<HashMap<u64, QueryCancel>>,
    /// The instance's allowed directory ([`RecorderConfig::export_scratch`]), removed on drop.
    export_scratch: Option<scratch::ScratchDir>,
    next_query_id: AtomicU64,
    /// Acknowledgements of durable messages that went through the spill file.
    spill_acks: Mutex<HashMap<(ExchangeId, u32), AckTx>>,
    spill_files: Mutex<Vec<SpillFile>>,
    /// Messages handed to the spill thread.
    spill_pushed: AtomicU64,
    /// See [`RecorderHandle::request_copy_limit`].
    request_copy_limit: u64,
    /// `RecorderConfig::channel_bytes`.
    channel_bytes_cap: u64,
    /// `RecorderConfig::channel_capacity`.
    channel_capacity: usize,
    /// `RecorderConfig::spill_queue_bytes`.
    spill_bytes_cap: u64,
    /// The clock of [`Shared::pending_since_us`].
    started: Instant,
    /// When the oldest derived row waiting for a DuckDB commit arrived, in µs since `started`
    /// plus one (0: none waits). Published by the DuckDB thread.
    pending_since_us: AtomicU64,
    /// The Prometheus metrics (derivation observes each exchange once).
    metrics: metrics::Metrics,
    /// The span export, when on (derivation offers each exchange once, like `metrics`).
    tracer: Option<crate::otel::Tracer>,
    /// The instance's allowed directory ([`RecorderConfig::ship_spool`]).
    spool_dir: Option<PathBuf>,
}

impl Shared {
    /// Hands an exchange's derived rows (its latest message journal write `mark`) over to the
    /// DuckDB thread, the metrics observing them once. When the rows for the DuckDB thread (held, or
    /// sent and not taken in) are over `max_pending_bytes` and the exchange is durable in the
    /// journal, it goes without them (`NoRows::Shed`) and the DuckDB thread derives it again from
    /// the journal when its batch comes.
    fn hand_over(&self, d: derive::Derived, mark: u64) -> committer::Handed {
        self.observe(&d);
        let bytes = d.approx_bytes();
        let over = self.stats.db_queue_bytes.load(Ordering::Relaxed)
            + self.db_inbound_bytes.load(Ordering::Relaxed)
            > self.db_bytes_cap;
        if over
            && mark != u64::MAX
            && self.journal_ok.load(Ordering::SeqCst)
            && mark <= self.journal_synced.load(Ordering::SeqCst)
        {
            return (Err(committer::NoRows::Shed(bytes)), 0);
        }
        self.db_inbound_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        (Ok(Box::new(d)), bytes)
    }

    /// Observes an exchange's first derivation: its Prometheus series and its spans. Called by a
    /// deriver thread or the writer, never by the hot path, a replay or a re-derivation.
    fn observe(&self, d: &derive::Derived) {
        self.metrics.observe(d);
        if let Some(t) = &self.tracer {
            t.offer(d);
        }
    }
}

impl Shared {
    /// The spill thread wrote a message of `n` body bytes.
    fn spill_took(shared: &Shared, n: u64) {
        if n > 0 {
            let _ = shared.stats.spill_queue_bytes.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |v| Some(v.saturating_sub(n)),
            );
        }
    }

    /// `n` body bytes left the channel (or never entered it).
    fn channel_took(shared: &Shared, n: u64) {
        if n > 0 {
            let _ = shared.stats.channel_bytes.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |v| Some(v.saturating_sub(n)),
            );
        }
    }
}

/// The recorder: owns the writer thread (with its deriver and DuckDB threads) and the spill thread. Dropping
/// it without [`Recorder::shutdown`] leaves the threads running until every handle is gone.
pub struct Recorder {
    handle: RecorderHandle,
    writer: Option<JoinHandle<Result<(), RecorderError>>>,
    spill: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("stats", &self.handle.stats())
            .finish_non_exhaustive()
    }
}

/// The sending side: cheap to clone, `Send + Sync`, never blocks.
#[derive(Clone)]
pub struct RecorderHandle {
    data_tx: Sender<Item>,
    spill_tx: Sender<SpillItem>,
    ctl_tx: Sender<Control>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RecorderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderHandle").finish_non_exhaustive()
    }
}

/// The shipper's spool directory in a journal directory (`<journal>/ship/spool/`): with
/// [`RecorderConfig::ship_spool`], the instance's allowed directory.
pub fn ship_spool_dir(journal_dir: &Path) -> PathBuf {
    journal_dir.join("ship").join("spool")
}

/// How [`open_db`] opens a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbAccess {
    /// Read and write (creates the file when missing).
    ReadWrite,
    /// Read only; fails while another process holds the file for writing.
    ReadOnly,
}

/// Opens a DuckDB database (`None`: in memory) with external access disabled: see
/// [`open_db_with`], of which this is the case without an export directory.
pub fn open_db(path: Option<&Path>, access: DbAccess) -> Result<Connection, RecorderError> {
    open_db_with(path, access, &[])
}

/// Opens a DuckDB database (`None`: in memory), through [`open_db_tuned`], the one place in the
/// workspace where DuckDB is opened (a tidy test checks it).
///
/// Architecture Invariant: every DuckDB instance agentcap opens has external access disabled (SQL
/// can read and write its own database only, never other files: read_csv, COPY, ATTACH, INSTALL /
/// LOAD ...), extension autoloading and autoinstalling off (never the network), and its
/// configuration locked once open (`SET` / `RESET` fail on every connection of the instance).
/// Nothing may `SET` a setting after this function returns.
///
/// The one exception is `allowed`: when given, those directories (and what is under them) are the
/// instance's `allowed_directories` entries, so `COPY … TO` a file in them works (the exporter
/// writes into a private directory it created, see [`scratch_dir`]; the shipper into its spool
/// directory, see [`RecorderConfig::ship_spool`]). DuckDB takes that setting only while external
/// access is still on, so the instance is opened with it on, given the directories, then switched
/// off and locked before this function returns; no other SQL runs in between. Without
/// directories, external access is off from the start.
pub fn open_db_with(
    path: Option<&Path>,
    access: DbAccess,
    allowed: &[&Path],
) -> Result<Connection, RecorderError> {
    open_db_tuned(path, access, allowed, DbTuning::default())
}

/// Settings of a DuckDB instance beyond [`open_db_with`]'s: `None` keeps DuckDB's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct DbTuning {
    /// Worker threads (DuckDB's default: one per core).
    pub threads: Option<i64>,
    /// `memory_limit`, in bytes (DuckDB's default: 80 % of the machine's memory).
    pub memory_limit: Option<u64>,
    /// `checkpoint_threshold`, in bytes of write-ahead log (DuckDB's default: 16 MiB).
    pub checkpoint_threshold: Option<u64>,
}

/// DuckDB worker threads of the recorder's instance: one, the calling thread. The recorder's
/// statements are small appends, upserts and commits, which gain nothing from parallel pipelines;
/// with more threads the DuckDB thread spins waiting for tasks that DuckDB's own workers run, and those
/// workers run at the normal priority, beside forwarding, instead of at the DuckDB thread's lowered
/// one ([`background_priority`]). Queries on the live instance (admin `/query`, `POST /export`, the
/// shipper) run on one thread too; a closed file opened by [`open_db`] keeps DuckDB's default.
pub const RECORDER_DB_THREADS: i64 = 1;

/// [`open_db_with`], with the instance's [`DbTuning`]. The one function of the workspace that opens
/// DuckDB (a tidy test checks it).
pub fn open_db_tuned(
    path: Option<&Path>,
    access: DbAccess,
    allowed: &[&Path],
    tuning: DbTuning,
) -> Result<Connection, RecorderError> {
    let mut config = Config::default()
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")?;
    if let Some(n) = tuning.threads {
        config = config.threads(n)?;
    }
    if let Some(bytes) = tuning.memory_limit {
        config = config.max_memory(&format!("{bytes}B"))?;
    }
    if let Some(bytes) = tuning.checkpoint_threshold {
        config = config.with("checkpoint_threshold", format!("{bytes}B"))?;
    }
    if allowed.is_empty() {
        config = config.enable_external_access(false)?;
    }
    if access == DbAccess::ReadOnly {
        config = config.access_mode(duckdb::AccessMode::ReadOnly)?;
    }
    let conn = match path {
        Some(p) => Connection::open_with_flags(p, config)?,
        None => Connection::open_in_memory_with_flags(config)?,
    };
    if !allowed.is_empty() {
        let dirs = allowed
            .iter()
            .map(|d| {
                d.to_str().map(str::to_owned).ok_or_else(|| {
                    RecorderError::Config(format!("{} is not a UTF-8 path", d.display()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // One list parameter: `?` stands for the whole JSON array of paths.
        let list =
            serde_json::to_string(&dirs).map_err(|e| RecorderError::Config(e.to_string()))?;
        conn.execute(
            "SET allowed_directories = from_json(?, '[\"VARCHAR\"]')",
            [list],
        )?;
        conn.execute_batch("SET enable_external_access = false")?;
    }
    conn.execute_batch("SET lock_configuration = true")?;
    Ok(conn)
}

impl Recorder {
    /// Opens (or creates) the database, applies pending migrations, replays whatever journal a
    /// previous run left behind, and starts the writer and spill threads.
    pub fn open(cfg: RecorderConfig) -> Result<Recorder, RecorderError> {
        if cfg.channel_capacity == 0 || cfg.batch_rows == 0 {
            return Err(RecorderError::Config(
                "channel_capacity and batch_rows must be at least 1".into(),
            ));
        }
        if let Some(parent) = cfg.db_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| RecorderError::Journal {
                path: parent.to_owned(),
                source,
            })?;
        }
        let journal_dir = cfg.journal_dir();
        std::fs::create_dir_all(&journal_dir).map_err(|source| RecorderError::Journal {
            path: journal_dir.clone(),
            source,
        })?;
        let export_scratch = if cfg.export_scratch {
            Some(scratch_dir(None)?)
        } else {
            None
        };
        let spool_dir = if cfg.ship_spool {
            let dir = ship_spool_dir(&journal_dir);
            let fail = |source| RecorderError::Journal {
                path: dir.clone(),
                source,
            };
            std::fs::create_dir_all(&dir).map_err(fail)?;
            // Canonical: DuckDB compares allowed directories with resolved paths.
            Some(std::fs::canonicalize(&dir).map_err(fail)?)
        } else {
            None
        };
        let allowed: Vec<&Path> = export_scratch
            .as_ref()
            .map(|d| d.path())
            .into_iter()
            .chain(spool_dir.as_deref())
            .collect();
        let conn = open_db_tuned(
            Some(&cfg.db_path),
            DbAccess::ReadWrite,
            &allowed,
            DbTuning {
                threads: Some(RECORDER_DB_THREADS),
                memory_limit: Some(cfg.db_memory_limit),
                checkpoint_threshold: Some(cfg.db_checkpoint_threshold),
            },
        )?;
        schema::migrate(&conn)?;
        let derive_ctx = derive::DeriveCtx {
            capture_cap: cfg.capture_cap,
            redactor: body::Redactor::new(cfg.redact.clone()),
            max_sse_event: cfg.max_sse_event,
        };
        let metrics = metrics::Metrics::new();
        let tracer = match &cfg.otlp {
            Some(o) => Some(crate::otel::Tracer::start(
                o,
                derive_ctx.redactor.clone(),
                metrics.otlp_counters(),
            )?),
            None => None,
        };
        let shared = Arc::new(Shared {
            stats: StatsAtomics::default(),
            db_fault: AtomicBool::new(false),
            db_paused: AtomicBool::new(false),
            derive_paused: AtomicBool::new(false),
            db_inbound_bytes: AtomicU64::new(0),
            db_bytes_cap: cfg.max_pending_bytes as u64,
            background: cfg.background_priority,
            journal_fault: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            journal_ok: AtomicBool::new(true),
            journal_synced: AtomicU64::new(0),
            query_conn: Mutex::new(None),
            running_queries: Mutex::new(HashMap::new()),
            next_query_id: AtomicU64::new(0),
            spill_acks: Mutex::new(HashMap::new()),
            spill_files: Mutex::new(Vec::new()),
            spill_pushed: AtomicU64::new(0),
            request_copy_limit: body::request_copy_limit(cfg.capture_cap),
            channel_bytes_cap: cfg.channel_bytes as u64,
            channel_capacity: cfg.channel_capacity,
            spill_bytes_cap: cfg.spill_queue_bytes as u64,
            started: Instant::now(),
            pending_since_us: AtomicU64::new(0),
            metrics,
            tracer,
            export_scratch,
            spool_dir,
        });
        let replay = replay::replay(&conn, &journal_dir, &derive_ctx, cfg.batch_rows)?;
        // Conversation updates a previous run (or the replay) left unfolded.
        db::fold_conversations(&conn)?;
        StatsAtomics::add(&shared.stats.replayed_exchanges, replay.exchanges);
        StatsAtomics::add(
            &shared.stats.journal_corrupt_segments,
            replay.corrupt_segments,
        );
        StatsAtomics::add(&shared.stats.journal_corrupt_bytes, replay.corrupt_bytes);
        *shared.query_conn.lock() = Some(conn.try_clone()?);

        // Bounded by `channel_capacity` and `channel_bytes` in `RecorderHandle::enqueue`: an array
        // channel of 65,536 slots would hold 7 MiB whether used or not.
        let (data_tx, data_rx) = crossbeam_channel::unbounded();
        let (spill_tx, spill_rx) = crossbeam_channel::unbounded();
        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
        let spill = spill::SpillThread {
            rx: spill_rx,
            data_tx: data_tx.clone(),
            dir: journal_dir.clone(),
            shared: shared.clone(),
            interval: cfg.journal_commit_interval,
            strict: cfg.durability == Durability::Strict,
            next_no: replay.next_spill_no,
            redactor: derive_ctx.redactor.clone(),
        };
        let spill = std::thread::Builder::new()
            .name("agentcap-spill".into())
            .spawn(move || spill.run())
            .map_err(|source| RecorderError::Journal {
                path: journal_dir.clone(),
                source,
            })?;
        let (db_tx, db_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let (committed_tx, committed_rx) = crossbeam_channel::unbounded();
        let committer = committer::Committer {
            cfg: cfg.clone(),
            dir: journal_dir.clone(),
            derive: derive_ctx.clone(),
            shared: shared.clone(),
            conn,
            rx: db_rx,
            done_rx,
            committed_tx,
        };
        let background = cfg.background_priority;
        let committer = std::thread::Builder::new()
            .name("agentcap-duckdb".into())
            .spawn(move || {
                background_priority(background);
                committer.run()
            })
            .map_err(|source| RecorderError::Journal {
                path: journal_dir.clone(),
                source,
            })?;
        let w = writer::Writer::new(writer::WriterInit {
            cfg: cfg.clone(),
            journal_dir: journal_dir.clone(),
            derive: derive_ctx,
            shared: shared.clone(),
            db_tx,
            committed_rx,
            done_tx,
            committer,
            data_rx,
            ctl_rx,
            spill_tx: spill_tx.clone(),
            next_journal_no: replay.next_journal_no,
            first_spill_no: replay.next_spill_no,
        });
        let writer = std::thread::Builder::new()
            .name("agentcap-recorder".into())
            .spawn(move || w.run())
            .map_err(|source| RecorderError::Journal {
                path: journal_dir,
                source,
            })?;
        Ok(Recorder {
            handle: RecorderHandle {
                data_tx,
                spill_tx,
                ctl_tx,
                shared,
            },
            writer: Some(writer),
            spill: Some(spill),
        })
    }

    /// A handle for sending messages and querying.
    pub fn handle(&self) -> RecorderHandle {
        self.handle.clone()
    }

    /// Drains the channel and the spill file, records exchanges that never ended as
    /// `proxy_error`, commits everything to DuckDB, removes the committed journal and stops the
    /// threads. If DuckDB cannot be written, the journal is kept for the next [`Recorder::open`]
    /// and the error is returned.
    pub fn shutdown(mut self) -> Result<RecorderStats, RecorderError> {
        let result = self.stop(Control::Shutdown);
        let stats = self.handle.stats();
        result.map(|()| stats)
    }

    /// Stops both threads at once, without flushing the journal buffers or writing to DuckDB:
    /// what a crash would leave behind (for tests of the journal replay).
    #[doc(hidden)]
    pub fn abort(mut self) {
        let _ = self.stop(Control::Abort);
    }

    fn stop(&mut self, how: Control) -> Result<(), RecorderError> {
        // Shutdown never waits on a query: no new one starts, running ones are interrupted.
        *self.handle.shared.query_conn.lock() = None;
        for q in self.handle.shared.running_queries.lock().values() {
            q.cancel(StopReason::Shutdown);
        }
        let _ = self.handle.ctl_tx.send(how);
        let result = match self.writer.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(RecorderError::WriterPanicked),
            None => Ok(()),
        };
        // The writer stops the spill thread; make sure it is gone even if the writer died.
        let _ = self.handle.spill_tx.send(SpillItem::Abort);
        if let Some(s) = self.spill.take() {
            let _ = s.join();
        }
        self.handle.shared.stopped.store(true, Ordering::SeqCst);
        *self.handle.shared.query_conn.lock() = None;
        if let Some(t) = &self.handle.shared.tracer {
            t.shutdown();
        }
        result
    }
}

impl RecorderHandle {
    /// `RecorderConfig::background_priority`: how threads working for the recorder give way to
    /// forwarding.
    pub(crate) fn background_priority(&self) -> BackgroundPriority {
        self.shared.background
    }

    fn enqueue(&self, item: Item, spilling: Option<&AtomicBool>) {
        let s = &self.shared.stats;
        StatsAtomics::add(&s.received, 1);
        let n = item.body_bytes();
        let sent = if spilling.is_some_and(|f| f.load(Ordering::Relaxed)) {
            Err(TrySendError::Full(item))
        } else {
            let in_channel = s.channel_bytes.fetch_add(n, Ordering::Relaxed) + n;
            let sent = if (n > 0 && in_channel > self.shared.channel_bytes_cap)
                || self.data_tx.len() >= self.shared.channel_capacity
            {
                Err(TrySendError::Full(item))
            } else {
                self.data_tx.try_send(item)
            };
            if sent.is_err() {
                Shared::channel_took(&self.shared, n);
            }
            sent
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(item)) => {
                if let Some(f) = spilling {
                    f.store(true, Ordering::Relaxed);
                }
                StatsAtomics::add(&s.spill_queue_bytes, n);
                StatsAtomics::add(&s.spilled, 1);
                self.shared.spill_pushed.fetch_add(1, Ordering::SeqCst);
                if self.spill_tx.send(SpillItem::Data(item)).is_err() {
                    StatsAtomics::add(&s.records_dropped, 1);
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                StatsAtomics::add(&s.records_dropped, 1);
                tracing::warn!("agentcap recorder: message sent after shutdown was dropped");
            }
        }
    }

    /// Queues a message. Never blocks and never drops: when the channel is full the message goes
    /// to the spill file instead.
    pub fn send(&self, msg: Msg) {
        self.enqueue(Item::Plain(msg), None);
    }

    /// Like [`RecorderHandle::send`] for one exchange's messages, keeping them in order across the
    /// two paths: once a message of the exchange went to the spill file (`spilling` set), all its
    /// later ones follow it there. Otherwise the writer, which reads the channel first, would take
    /// later messages before the spilled ones and have to hold them (bytes and all) until the gap
    /// is filled: memory growing with the backlog.
    pub fn send_ordered(&self, msg: Msg, spilling: &AtomicBool) {
        self.enqueue(Item::Plain(msg), Some(spilling));
    }

    /// [`RecorderHandle::send_durable`] with the ordering of [`RecorderHandle::send_ordered`].
    pub fn send_durable_ordered(&self, msg: Msg, spilling: &AtomicBool) -> DurableAck {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Item::Durable(msg, tx), Some(spilling));
        DurableAck(rx)
    }

    /// Like [`RecorderHandle::send`]; the acknowledgement resolves `Ok` once every message of
    /// this exchange (up to this one, normally its `End`) is fsynced in the journal or spill
    /// file, and with [`NotDurable`] when that cannot happen (the journal failed, a message is
    /// missing, the recorder stopped).
    pub fn send_durable(&self, msg: Msg) -> DurableAck {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Item::Durable(msg, tx), None);
        DurableAck(rx)
    }

    /// Counts a strict-mode response ended with an error because its record was not durable.
    pub(crate) fn count_not_durable(&self) {
        StatsAtomics::add(&self.shared.stats.strict_not_durable, 1);
    }

    /// Request body bytes the recorder needs to store a body under the capture cap: the cap plus
    /// room for compression overhead (a deflate-family body longer than this decodes to more than
    /// the cap). The request tee hands over no more than this; the rest is forwarded and counted.
    pub fn request_copy_limit(&self) -> u64 {
        self.shared.request_copy_limit
    }

    /// The spill queue holds more than `spill_queue_bytes`: the disk does not keep up with the
    /// traffic, and the tees should wait before reading more.
    pub fn saturated(&self) -> bool {
        self.shared.stats.spill_queue_bytes.load(Ordering::Relaxed) > self.shared.spill_bytes_cap
    }

    /// Current counters.
    pub fn stats(&self) -> RecorderStats {
        let mut s = self.shared.stats.snapshot();
        s.db_queue_bytes += self.shared.db_inbound_bytes.load(Ordering::Relaxed);
        s.spill_queue = self.spill_tx.len() as u64;
        s.channel_messages = self.data_tx.len() as u64;
        let since = self.shared.pending_since_us.load(Ordering::Relaxed);
        if since > 0 {
            let now = self.shared.started.elapsed().as_micros() as u64 + 1;
            s.db_commit_lag_us = now.saturating_sub(since);
        }
        s
    }

    /// The Prometheus exposition of the proxy's metrics (see [`crate::recorder::metrics`]): OpenMetrics
    /// text when `openmetrics`, else the classic text format.
    pub fn encode_metrics(&self, openmetrics: bool) -> String {
        self.shared.metrics.encode(&self.stats(), openmetrics)
    }

    /// Resolves once everything sent before the call is committed to DuckDB (exchanges still in
    /// flight excepted: they have no rows until they end). While DuckDB fails, it waits for the
    /// retries to succeed.
    pub async fn flush(&self) -> Result<(), RecorderError> {
        let (tx, rx) = oneshot::channel();
        self.ctl_tx
            .send(Control::Flush(tx))
            .map_err(|_| RecorderError::Stopped)?;
        rx.await.map_err(|_| RecorderError::Stopped)?
    }

    /// Test hook: while `true`, every DuckDB write fails as if the file were read-only. Records
    /// stay in the journal and are written when it is cleared.
    pub fn set_db_fault(&self, fail: bool) {
        self.shared.db_fault.store(fail, Ordering::SeqCst);
    }

    /// Test hook: while `true`, the DuckDB thread keeps taking derived rows but writes no batch, as
    /// if each write took forever: what a DuckDB slower than the traffic looks like to the queue in
    /// front of it. A flush still writes (and waits for) everything.
    pub fn set_db_paused(&self, paused: bool) {
        self.shared.db_paused.store(paused, Ordering::SeqCst);
    }

    /// Test hook: while `true`, the deriver threads derive nothing (each holds at most the job it
    /// had taken), so the derive queue fills and the journal writer derives the rest itself.
    pub fn set_derive_paused(&self, paused: bool) {
        self.shared.derive_paused.store(paused, Ordering::SeqCst);
    }

    /// Test hook: while `true`, every write, commit or creation of a journal segment fails as
    /// on a full disk (`StorageFull`). Forwarding goes on; strict acknowledgements fail.
    pub fn set_journal_fault(&self, fail: bool) {
        self.shared.journal_fault.store(fail, Ordering::SeqCst);
    }

    /// Runs one read-only statement ([`StatementKind`]) with the default [`QueryLimits`] and no
    /// parameters. See [`RecorderHandle::query_with`].
    pub fn query(&self, sql: &str) -> Result<QueryResult, RecorderError> {
        self.query_with(sql, &[], &QueryLimits::default(), &QueryCancel::new())
    }

    /// Runs one read-only statement on a fresh connection to the live database, through the
    /// layers of [`query`](self::query) (two parsers, a read-only transaction always rolled back,
    /// a locked configuration), with `params` bound to its `?` placeholders, within `limits`.
    /// `cancel` interrupts it from another thread; shutdown interrupts it too. Callable from any
    /// thread; it blocks while the statement runs.
    pub fn query_with(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        limits: &QueryLimits,
        cancel: &QueryCancel,
    ) -> Result<QueryResult, RecorderError> {
        query::check_read_only(sql)?;
        self.with_read_connection(cancel, |conn, _| {
            query::run_read_only(conn, sql, params, limits, cancel)
        })
    }

    /// Runs `body` with a fresh connection to the live database and the instance's export scratch
    /// directory (when [`RecorderConfig::export_scratch`] is on), the read being registered like a
    /// query: shutdown interrupts it through `cancel`. `body` must read only, inside a read-only
    /// transaction (as [`query::run_read_only`] and [`query::run_guarded`] do).
    pub fn with_read_connection<T>(
        &self,
        cancel: &QueryCancel,
        body: impl FnOnce(&Connection, Option<&Path>) -> Result<T, RecorderError>,
    ) -> Result<T, RecorderError> {
        let id = self.shared.next_query_id.fetch_add(1, Ordering::Relaxed);
        let conn = {
            let guard = self.shared.query_conn.lock();
            let conn = guard.as_ref().ok_or(RecorderError::Stopped)?.try_clone()?;
            // Registered while the connection slot is held: a shutdown that takes the slot after
            // this sees the query and interrupts it.
            self.shared
                .running_queries
                .lock()
                .insert(id, cancel.clone());
            conn
        };
        struct Unregister<'a>(&'a Shared, u64);
        impl Drop for Unregister<'_> {
            fn drop(&mut self) {
                self.0.running_queries.lock().remove(&self.1);
            }
        }
        let _unregister = Unregister(&self.shared, id);
        body(&conn, self.shared.export_scratch.as_ref().map(|d| d.path()))
    }

    /// Queries running now (through [`RecorderHandle::query_with`]).
    pub fn running_queries(&self) -> usize {
        self.shared.running_queries.lock().len()
    }

    /// A new read-write connection to the recorder's database (the same DuckDB instance, so it
    /// works while the recorder holds the file), for a program that embeds the proxy and keeps its
    /// own tables in the same file (the eval runner). It must not write the recorder's tables.
    /// It stays usable after shutdown; the file is released when the last connection is dropped.
    pub fn connection(&self) -> Result<Connection, RecorderError> {
        let guard = self.shared.query_conn.lock();
        Ok(guard.as_ref().ok_or(RecorderError::Stopped)?.try_clone()?)
    }

    /// The shipper's spool directory, the instance's one allowed directory, when the recorder
    /// was opened with [`RecorderConfig::ship_spool`] (canonical path).
    pub fn spool_dir(&self) -> Option<PathBuf> {
        self.shared.spool_dir.clone()
    }

    /// The shipper's metrics (registered with the proxy's).
    pub(crate) fn ship_metrics(&self) -> metrics::ShipMetrics {
        self.shared.metrics.ship.clone()
    }

    /// `true` once the recorder has been shut down.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }
}

/// Lowers the calling thread's scheduling priority as `p` says ([`BackgroundPriority`]). The DuckDB
/// thread, the derivers and the shipper call it. Failing to change the priority is harmless and
/// only logged.
pub(crate) fn background_priority(p: BackgroundPriority) {
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    #[cfg(target_os = "linux")]
    if p == BackgroundPriority::Idle {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        match set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(error = ?e, "agentcap recorder: SCHED_IDLE refused; lowering the nice value instead");
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = p;
    let Ok(v) = ThreadPriorityValue::try_from(25u8) else {
        return;
    };
    if let Err(e) = thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(v)) {
        tracing::debug!(error = ?e, "agentcap recorder: could not lower a background thread's priority");
    }
}

/// When a recorder thread last took data from its channel. While that is recent, the thread looks at the
/// channel every few milliseconds instead of blocking on it: a receiver blocked on a channel makes every `send`
/// pay a thread wake-up (a futex call, then a context switch on a busy core), on the hot path for the writer's
/// channel. Polling costs the thread one wake-up per poll; once idle, it blocks again. The writer, the DuckDB
/// thread and the derivers each keep one.
struct Activity {
    last: Instant,
    idle_after: Duration,
}

impl Activity {
    /// Idle from the start.
    fn new(idle_after: Duration) -> Self {
        Activity {
            last: Instant::now()
                .checked_sub(idle_after)
                .unwrap_or_else(Instant::now),
            idle_after,
        }
    }

    /// Data came within `idle_after`: poll rather than block.
    fn busy(&self) -> bool {
        self.last.elapsed() < self.idle_after
    }

    fn saw_data(&mut self) {
        self.last = Instant::now();
    }
}

/// Drains a receiver without blocking, up to `max` items.
fn try_drain<T>(rx: &Receiver<T>, max: usize, mut f: impl FnMut(T)) -> usize {
    let mut n = 0;
    while n < max {
        match rx.try_recv() {
            Ok(item) => {
                f(item);
                n += 1;
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    n
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's scheduling policy and nice value, from `/proc/thread-self/stat`.
    fn policy_and_nice() -> (u32, i32) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name (in parentheses): the third field comes first.
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        (rest[41 - 3].parse().unwrap(), rest[19 - 3].parse().unwrap())
    }

    fn on_a_thread(p: BackgroundPriority) -> (u32, i32) {
        std::thread::spawn(move || {
            background_priority(p);
            policy_and_nice()
        })
        .join()
        .unwrap()
    }

    /// `idle` puts a background thread under `SCHED_IDLE` (5), `low` keeps the normal policy (0)
    /// with a higher nice value; the default is `idle`.
    #[test]
    fn background_threads_get_the_priority_configured() {
        assert_eq!(
            RecorderConfig::default().background_priority,
            BackgroundPriority::Idle
        );
        assert_eq!(on_a_thread(BackgroundPriority::Idle).0, 5);
        let (policy, nice) = on_a_thread(BackgroundPriority::Low);
        assert_eq!(policy, 0);
        assert!(nice > 0, "nice {nice}");
    }
}
