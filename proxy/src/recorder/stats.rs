//! [`RecorderStats`], the recorder's counters as a plain value (in a file of its own so the
//! metrics can read it without importing the recorder).

use serde::Serialize;

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
    /// Journal files found damaged (anything but a torn tail of the newest file), kept aside
    /// under `<journal>/corrupt/` once their readable records were replayed.
    pub journal_corrupt_segments: u64,
    /// Bytes of damaged journal data skipped while reading (the records in them are lost).
    pub journal_corrupt_bytes: u64,
    /// Strict durability: responses whose record could not be made durable, ended with an error
    /// for the client instead of a clean end.
    pub strict_not_durable: u64,
    /// Exchanges whose `End` arrived but some earlier message never did within the bound; they
    /// were written with what had arrived.
    pub exchanges_incomplete: u64,
    /// Exchanges whose rows did not fit in memory while DuckDB was behind or failing: they were
    /// derived again from the journal when their batch was written (nothing lost; a saturated
    /// recorder shows here).
    pub exchanges_rederived: u64,
    /// Exchanges the journal writer derived itself because the derive queue was full (or no deriver
    /// thread runs): the derivers fall behind when this grows, and derivation then takes the
    /// writer's time.
    pub exchanges_derived_by_writer: u64,
    /// Gauge: messages waiting for the spill thread (read when the stats are taken).
    pub spill_queue: u64,
    /// Gauge: body bytes waiting for the spill thread. Past `spill_queue_bytes` the recorder is
    /// saturated (the disk does not keep up): the response tees wait before reading the next
    /// frame from the upstream, so the exchanges slow down to what the disk can journal.
    pub spill_queue_bytes: u64,
    /// Gauge: body bytes in the channel from the hot path to the writer (bounded by
    /// `channel_bytes`; when full, messages go to the spill file).
    pub channel_bytes: u64,
    /// Gauge: bytes of finished exchanges queued for a deriver thread (bounded by
    /// `DERIVE_QUEUE_BYTES`; when full, the writer derives the exchange itself).
    pub derive_queue_bytes: u64,
    /// Gauge: bytes of derived rows held by the DuckDB thread until committed (a batch is written
    /// as soon as they pass `max_pending_bytes`; when DuckDB fails or is slower than the traffic,
    /// past it the rows of journaled exchanges are dropped from memory and derived again from the
    /// journal later).
    pub db_queue_bytes: u64,
    /// Gauge: messages in the channel from the hot path to the writer (bounded by
    /// `channel_capacity`).
    pub channel_messages: u64,
    /// Gauge: age in µs of the oldest derived row waiting for a DuckDB commit (0 when none waits).
    pub db_commit_lag_us: u64,
}
