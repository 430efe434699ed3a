//! Per-exchange bookkeeping shared by the handler and the body tees: id, clock, sequence numbers, outcome.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::record::{ExchangeId, Msg, Outcome, Timings};
use crate::recorder::RecorderHandle;

const NONE: u64 = u64::MAX;

/// One exchange in flight. Shared (`Arc`) between the handler, the request tee and the response tee; the
/// first of them to end it decides the outcome, and dropping the last one ends it as cancelled.
#[derive(Debug)]
pub struct Exchange {
    /// Exchange id (UUIDv7).
    pub id: ExchangeId,
    t0: Instant,
    seq: AtomicU32,
    rec: RecorderHandle,
    strict: bool,
    ended: AtomicBool,
    /// A message of this exchange went to the spill file: the later ones follow it there.
    spilling: AtomicBool,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    response_headers_us: AtomicU64,
    upstream_sent: Mutex<Option<Instant>>,
    upstream_done: Mutex<Option<Instant>>,
}

impl Exchange {
    /// Starts the clock of a new exchange.
    pub fn new(id: ExchangeId, t0: Instant, rec: RecorderHandle, strict: bool) -> Self {
        Self {
            id,
            t0,
            seq: AtomicU32::new(1),
            rec,
            strict,
            ended: AtomicBool::new(false),
            spilling: AtomicBool::new(false),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            response_headers_us: AtomicU64::new(NONE),
            upstream_sent: Mutex::new(None),
            upstream_done: Mutex::new(None),
        }
    }

    /// The next sequence number of this exchange's messages.
    pub fn next_seq(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Microseconds since the exchange started.
    pub fn offset_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// Hands a message to the recorder (never blocks). Nothing is recorded once the exchange has
    /// ended: its `End` is its last message.
    pub fn record(&self, msg: Msg) {
        if !self.is_ended() {
            self.rec.send_ordered(msg, &self.spilling);
        }
    }

    /// How many request body bytes the recorder needs (see [`RecorderHandle::request_copy_limit`]).
    pub fn request_copy_limit(&self) -> u64 {
        self.rec.request_copy_limit()
    }

    /// The recorder cannot take more for now (see [`RecorderHandle::saturated`]).
    pub fn recorder_saturated(&self) -> bool {
        self.rec.saturated()
    }

    /// Counts request body bytes.
    pub fn add_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts response body bytes handed to the client.
    pub fn add_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Marks the moment the request went to the upstream.
    pub fn upstream_sent(&self) {
        *self.upstream_sent.lock().expect("not poisoned") = Some(Instant::now());
    }

    /// Marks the moment the upstream finished (last byte, error or timeout); the first call wins.
    pub fn upstream_done(&self) {
        let mut d = self.upstream_done.lock().expect("not poisoned");
        if d.is_none() {
            *d = Some(Instant::now());
        }
    }

    /// Records the response head's arrival time.
    pub fn response_headers_at(&self, us: u64) {
        self.response_headers_us.store(us, Ordering::Relaxed);
    }

    /// Whether strict durability applies.
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// Whether the exchange has ended.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Ends the exchange once (later calls do nothing and return `None`). In strict mode the returned receiver
    /// resolves when the record is durable.
    pub fn end(&self, outcome: Outcome, error: Option<String>) -> Option<oneshot::Receiver<()>> {
        if self.ended.swap(true, Ordering::AcqRel) {
            return None;
        }
        self.upstream_done();
        let now = Instant::now();
        let sent = *self.upstream_sent.lock().expect("not poisoned");
        let done = *self.upstream_done.lock().expect("not poisoned");
        let upstream_us = match (sent, done) {
            (Some(s), Some(d)) => d.saturating_duration_since(s).as_micros() as u64,
            _ => 0,
        };
        let rh = self.response_headers_us.load(Ordering::Relaxed);
        let msg = Msg::End {
            id: self.id,
            seq: self.next_seq(),
            outcome,
            error,
            timings: Timings {
                response_headers_us: (rh != NONE).then_some(rh),
                total_us: now.saturating_duration_since(self.t0).as_micros() as u64,
                upstream_us,
            },
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        };
        if self.strict {
            Some(self.rec.send_durable_ordered(msg, &self.spilling))
        } else {
            self.rec.send_ordered(msg, &self.spilling);
            None
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.is_ended() {
            let _ = self.end(
                Outcome::CancelledByClient,
                Some("the client went away".into()),
            );
        }
    }
}
