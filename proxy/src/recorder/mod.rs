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
mod committer;
pub mod db;
pub mod derive;
pub mod journal;
pub mod ops;
pub mod query;
pub mod schema;
mod spill;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use duckdb::{Config, Connection};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::record::{ExchangeId, Msg};

pub use query::{
    QueryCancel, QueryLimits, QueryResult, StatementKind, StopReason, query_file_read_only,
};

/// How hard the recorder tries to keep records across a crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// The journal is group-committed every `journal_commit_interval`; a crash loses at most
    /// about that window (plus whatever sat in the channel, which the writer drains at once: it
    /// never waits on DuckDB).
    #[default]
    Batched,
    /// As batched, but whenever a [`RecorderHandle::send_durable`] acknowledgement is waiting,
    /// the writer commits the journal as soon as it has drained what is queued, instead of
    /// waiting for the interval. Acknowledgements are still grouped, never one fsync per message.
    Strict,
}

/// Recorder settings.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// The DuckDB file (created with its parent directory if missing).
    pub db_path: PathBuf,
    /// Journal directory; default: `<db file name>.journal/` beside the database.
    pub journal_dir: Option<PathBuf>,
    /// Capacity of the bounded channel, in messages (default 65 536).
    pub channel_capacity: usize,
    /// Commit to DuckDB once this many rows are pending (default 10 000)…
    pub batch_rows: usize,
    /// …or once the oldest pending row is this old (default 200 ms), and on shutdown.
    pub flush_interval: Duration,
    /// Journal group-commit (write + fsync) interval (default 5 ms).
    pub journal_commit_interval: Duration,
    /// Batched (default) or strict.
    pub durability: Durability,
    /// Maximum stored bytes per body (default 1 MiB); longer bodies are truncated and flagged.
    pub capture_cap: usize,
    /// `--redact` patterns: matches in stored bodies, raw text and event data become `[REDACTED]`.
    pub redact: Vec<regex::Regex>,
    /// Size limit of one SSE event when decoding the copy (default 16 MiB).
    pub max_sse_event: usize,
    /// While DuckDB fails, at most this many finished exchanges are kept in memory (default
    /// 100 000); beyond that they are dropped from memory and derived again from the journal when
    /// DuckDB recovers.
    pub max_pending_exchanges: usize,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            db_path: PathBuf::from("agentcap.duckdb"),
            journal_dir: None,
            channel_capacity: 65_536,
            batch_rows: 10_000,
            flush_interval: Duration::from_millis(200),
            journal_commit_interval: Duration::from_millis(5),
            durability: Durability::Batched,
            capture_cap: 1024 * 1024,
            redact: Vec::new(),
            max_sse_event: agentcap_wire::DEFAULT_MAX_EVENT_SIZE,
            max_pending_exchanges: 100_000,
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
            || "agentcap.duckdb".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.db_path.with_file_name(format!("{name}.journal"))
    }
}

/// Errors of the recorder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// DuckDB reported an error.
    #[error("DuckDB: {0}")]
    Db(#[from] duckdb::Error),
    /// A journal file could not be read or written.
    #[error("journal {path}: {source}")]
    Journal {
        /// The file or directory.
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
}

/// Counters, readable at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecorderStats {
    /// Messages given to `send` / `send_durable`.
    pub received: u64,
    /// Of those, messages that found the channel full and went to the spill file.
    pub spilled: u64,
    /// Bytes appended to journal segments and spill files.
    pub journal_bytes: u64,
    /// Journal or spill I/O errors.
    pub journal_errors: u64,
    /// Exchanges committed to DuckDB.
    pub exchanges_written: u64,
    /// Rows committed to DuckDB, all tables.
    pub rows_written: u64,
    /// `sse_events` rows committed.
    pub sse_events_written: u64,
    /// `entries` rows committed.
    pub entries_written: u64,
    /// `usage` rows committed.
    pub usage_written: u64,
    /// `agents` rows inserted (new versions only).
    pub agents_written: u64,
    /// `conversations` upserts.
    pub conversations_written: u64,
    /// Failed DuckDB batch attempts.
    pub db_errors: u64,
    /// Time the DuckDB thread spent in successful batch transactions, in µs (rows_written per
    /// second of it is the DuckDB writer's own throughput).
    pub db_busy_us: u64,
    /// Records lost. Stays 0: the only way to lose one is to send after shutdown.
    pub records_dropped: u64,
    /// Exchanges in memory that are not committed yet (in flight or waiting for a batch).
    pub pending_exchanges: u64,
    /// Exchanges recovered from a previous run's journal when opening.
    pub replayed_exchanges: u64,
}

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
        }
    }

    fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// A message on its way to the writer, with the acknowledgement of `send_durable`.
pub(crate) enum Item {
    Plain(Msg),
    Durable(Msg, oneshot::Sender<()>),
}

impl Item {
    fn into_parts(self) -> (Msg, Option<oneshot::Sender<()>>) {
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
    stopped: AtomicBool,
    /// The writer can currently write the journal.
    journal_ok: AtomicBool,
    /// The writer's journal writes known to be fsynced (its write counter).
    journal_synced: AtomicU64,
    query_conn: Mutex<Option<Connection>>,
    /// Queries running now, interrupted on shutdown (by id).
    running_queries: Mutex<HashMap<u64, QueryCancel>>,
    next_query_id: AtomicU64,
    /// Acknowledgements of durable messages that went through the spill file.
    spill_acks: Mutex<HashMap<(ExchangeId, u32), oneshot::Sender<()>>>,
    spill_files: Mutex<Vec<SpillFile>>,
    /// Messages handed to the spill thread.
    spill_pushed: AtomicU64,
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

/// How [`open_db`] opens a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbAccess {
    /// Read and write (creates the file when missing).
    ReadWrite,
    /// Read only; fails while another process holds the file for writing.
    ReadOnly,
}

/// Opens a DuckDB database (`None`: in memory): the one place in the workspace where DuckDB is
/// opened (a tidy test checks it).
///
/// Architecture Invariant: every DuckDB instance agentcap opens has external access disabled (SQL
/// can read and write its own database only, never other files: read_csv, COPY, ATTACH, INSTALL /
/// LOAD ...), extension autoloading and autoinstalling off (never the network), and its
/// configuration locked once open (`SET` / `RESET` fail on every connection of the instance).
/// Nothing may `SET` a setting after this function returns.
pub fn open_db(path: Option<&Path>, access: DbAccess) -> Result<Connection, RecorderError> {
    let mut config = Config::default()
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")?
        .enable_external_access(false)?;
    if access == DbAccess::ReadOnly {
        config = config.access_mode(duckdb::AccessMode::ReadOnly)?;
    }
    let conn = match path {
        Some(p) => Connection::open_with_flags(p, config)?,
        None => Connection::open_in_memory_with_flags(config)?,
    };
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
        let conn = open_db(Some(&cfg.db_path), DbAccess::ReadWrite)?;
        schema::migrate(&conn)?;
        let derive_ctx = derive::DeriveCtx {
            capture_cap: cfg.capture_cap,
            redactor: body::Redactor::new(cfg.redact.clone()),
            max_sse_event: cfg.max_sse_event,
        };
        let shared = Arc::new(Shared {
            stats: StatsAtomics::default(),
            db_fault: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            journal_ok: AtomicBool::new(true),
            journal_synced: AtomicU64::new(0),
            query_conn: Mutex::new(None),
            running_queries: Mutex::new(HashMap::new()),
            next_query_id: AtomicU64::new(0),
            spill_acks: Mutex::new(HashMap::new()),
            spill_files: Mutex::new(Vec::new()),
            spill_pushed: AtomicU64::new(0),
        });
        let replay = writer::replay(&conn, &journal_dir, &derive_ctx, cfg.batch_rows)?;
        StatsAtomics::add(&shared.stats.replayed_exchanges, replay.exchanges);
        *shared.query_conn.lock() = Some(conn.try_clone()?);

        let (data_tx, data_rx) = crossbeam_channel::bounded(cfg.channel_capacity);
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
        let committer = std::thread::Builder::new()
            .name("agentcap-duckdb".into())
            .spawn(move || {
                background_priority();
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
        result
    }
}

impl RecorderHandle {
    fn enqueue(&self, item: Item) {
        let s = &self.shared.stats;
        StatsAtomics::add(&s.received, 1);
        match self.data_tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(item)) => {
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
        self.enqueue(Item::Plain(msg));
    }

    /// Like [`RecorderHandle::send`]; the receiver resolves once every message of this
    /// exchange (up to this one, normally its `End`) is fsynced in the journal or spill file.
    /// It fails (the sender is dropped) if the recorder stops first.
    pub fn send_durable(&self, msg: Msg) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Item::Durable(msg, tx));
        rx
    }

    /// Current counters.
    pub fn stats(&self) -> RecorderStats {
        self.shared.stats.snapshot()
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
        query::run_read_only(&conn, sql, params, limits, cancel)
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

    /// `true` once the recorder has been shut down.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }
}

/// Drains a receiver without blocking, up to `max` items.
/// Lowers the calling thread's scheduling priority (nice about 9 on Linux). The DuckDB thread and
/// the derivers call it: on a machine whose cores are busy, the forwarding threads (tokio's workers)
/// then get a core first, and recording, which is off the hot path and backed by the journal, catches
/// up when they are idle. The journal writer keeps the normal priority, so durability does not wait.
/// Failing to change the priority is harmless and only logged.
pub(crate) fn background_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    let Ok(p) = ThreadPriorityValue::try_from(25u8) else {
        return;
    };
    if let Err(e) = thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(p)) {
        tracing::debug!(error = ?e, "agentcap recorder: could not lower a background thread's priority");
    }
}

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
