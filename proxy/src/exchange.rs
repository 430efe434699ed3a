//! Per-exchange bookkeeping shared by the handler and the body tees: id, clock, sequence numbers, outcome.
//!
//! Architecture Invariant: a sequence number taken before the exchange's `End` always reaches
//! the recorder, and nothing numbered after it does. Taking a number and testing "ended" happen
//! on one atomic word ([`Exchange::try_next_seq`], [`Exchange::end`]), so a request-body frame
//! polled while the response ends can never leave a gap the writer would wait on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::record::{ExchangeId, Msg, Outcome, Timings};
use crate::recorder::{DurableAck, RecorderHandle};

const NONE: u64 = u64::MAX;
/// The low half of [`Exchange`]'s state word: the next sequence number.
const SEQ_MASK: u64 = 0xFFFF_FFFF;
/// Sequence numbers stop growing here, so the `End`'s number + 1 always fits the high half.
const SEQ_LIMIT: u64 = SEQ_MASK - 1;

/// One exchange in flight. Shared (`Arc`) between the handler, the request tee and the response tee; the
/// first of them to end it decides the outcome, and dropping the last one ends it as cancelled.
#[derive(Debug)]
pub struct Exchange {
    /// Exchange id (UUIDv7).
    pub id: ExchangeId,
    t0: Instant,
    /// Low 32 bits: the next sequence number. High 32 bits: the `End`'s sequence number + 1, or 0
    /// while the exchange runs.
    state: AtomicU64,
    rec: RecorderHandle,
    strict: bool,
    /// A message of this exchange went to the spill file: the later ones follow it there.
    spilling: AtomicBool,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    response_headers_us: AtomicU64,
    upstream_sent: Mutex<Option<Instant>>,
    upstream_done: Mutex<Option<Instant>>,
    client_failure: OnceLock<(Outcome, String)>,
}

impl Exchange {
    /// Starts the clock of a new exchange.
    pub fn new(id: ExchangeId, t0: Instant, rec: RecorderHandle, strict: bool) -> Self {
        Self {
            id,
            t0,
            state: AtomicU64::new(1),
            rec,
            strict,
            spilling: AtomicBool::new(false),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            response_headers_us: AtomicU64::new(NONE),
            upstream_sent: Mutex::new(None),
            upstream_done: Mutex::new(None),
            client_failure: OnceLock::new(),
        }
    }

    /// Notes that the client's request body failed (the client went away, or sent a malformed body), so a
    /// failure of the upstream leg that follows is put down to the client. The first call wins.
    pub fn client_body_failed(&self, outcome: Outcome, why: String) {
        let _ = self.client_failure.set((outcome, why));
    }

    /// The outcome and reason noted by [`Exchange::client_body_failed`], if the client's body failed.
    pub fn client_failure(&self) -> Option<(Outcome, String)> {
        self.client_failure.get().cloned()
    }

    /// The next sequence number of this exchange's messages. A number taken after the end is
    /// never recorded (see [`Exchange::record`]); prefer [`Exchange::try_next_seq`].
    pub fn next_seq(&self) -> u32 {
        let prev = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                ((s & SEQ_MASK) < SEQ_LIMIT).then_some(s + 1)
            })
            .unwrap_or_else(|s| s);
        (prev & SEQ_MASK) as u32
    }

    /// The next sequence number, or `None` once the exchange has ended: one atomic step, so a
    /// number it returns is below the `End`'s and its message is always recorded.
    pub fn try_next_seq(&self) -> Option<u32> {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s >> 32 == 0 && (s & SEQ_MASK) < SEQ_LIMIT).then_some(s + 1)
            })
            .ok()
            .map(|prev| (prev & SEQ_MASK) as u32)
    }

    /// Microseconds since the exchange started.
    pub fn offset_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// Hands a message to the recorder (never blocks). A message numbered before the `End` is
    /// always recorded, even when it is handed over after the end (the writer waits for it); one
    /// numbered after the `End` never is: the `End` is the exchange's last message.
    pub fn record(&self, msg: Msg) {
        let end = self.state.load(Ordering::Acquire) >> 32;
        if end == 0 || u64::from(msg.seq()) < end - 1 {
            self.rec.send_ordered(msg, &self.spilling);
        }
    }

    /// Counts a strict-mode response ended with an error because its record was not durable.
    pub fn not_durable(&self) {
        self.rec.count_not_durable();
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
        self.state.load(Ordering::Acquire) >> 32 != 0
    }

    /// Ends the exchange once (later calls do nothing and return `None`); the `End` takes the
    /// next sequence number in the same atomic step that marks the exchange ended. In strict mode
    /// the returned acknowledgement resolves when the record is durable, or fails.
    pub fn end(&self, outcome: Outcome, error: Option<String>) -> Option<DurableAck> {
        let prev = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s >> 32 == 0).then(|| {
                    let seq = s & SEQ_MASK;
                    ((seq + 1) << 32) | (seq + 1).min(SEQ_LIMIT)
                })
            })
            .ok()?;
        let end_seq = (prev & SEQ_MASK) as u32;
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
            seq: end_seq,
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
