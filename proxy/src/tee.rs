//! Body tees: forward every frame untouched and hand a `Bytes` clone plus its receive offset to the recorder.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::exchange::Exchange;
use crate::record::{Msg, Outcome};
use crate::recorder::DurableAck;

/// Strict durability: how long a response's end waits for its record to be durable at most.
pub const STRICT_ACK_WAIT: Duration = Duration::from_secs(30);

/// At most one log line per interval for an event that can happen on every request.
struct RateLimitedLog {
    /// Milliseconds since the first call at the last line (0: never logged).
    last_ms: AtomicU64,
    skipped: AtomicU64,
}

static NOT_DURABLE_LOG: RateLimitedLog = RateLimitedLog {
    last_ms: AtomicU64::new(0),
    skipped: AtomicU64::new(0),
};

impl RateLimitedLog {
    const EVERY_MS: u64 = 10_000;

    /// `Some(lines skipped since the last one)` when a line may be logged now.
    fn allow(&self) -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < Self::EVERY_MS {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.skipped.swap(0, Ordering::Relaxed))
    }
}

/// The error type of bodies the proxy serves.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Resolves when the proxy stops waiting for in-flight exchanges (the shutdown grace period
/// ended). Behind a mutex only to be `Sync`; it is polled through `&mut`, never locked.
pub type AbortSignal = std::sync::Mutex<Pin<Box<dyn Future<Output = ()> + Send>>>;

/// Resolves once `rx` holds `true` (never, if its sender is gone first).
pub async fn aborted(mut rx: tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// An [`AbortSignal`] that resolves once `rx` holds `true`.
pub fn abort_signal(rx: tokio::sync::watch::Receiver<bool>) -> AbortSignal {
    std::sync::Mutex::new(Box::pin(aborted(rx)))
}

/// Wraps the client's request body on its way to the upstream.
///
/// Only the first [`crate::recorder::RecorderHandle::request_copy_limit`] bytes of the body are
/// handed to the recorder (enough for the stored copy, which is capped); the rest is forwarded and
/// counted, never copied, so an upload costs the recorder a bounded amount whatever its size.
#[derive(Debug)]
pub struct RequestTee<B> {
    inner: B,
    ex: Arc<Exchange>,
    /// Body bytes the recorder may still get.
    room: u64,
}

impl<B> RequestTee<B> {
    /// Tees `inner` into `ex`'s record.
    pub fn new(inner: B, ex: Arc<Exchange>) -> Self {
        let room = ex.request_copy_limit();
        Self { inner, ex, room }
    }
}

impl<B> Body for RequestTee<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.ex.add_in(data.len());
                    // Only what the recorder needs (the capture cap and some room) is copied; the rest
                    // is forwarded and counted. Numbered and tested for "ended" in one step: a frame
                    // read after the response ended is forwarded but not recorded; one numbered
                    // before it always is.
                    let n = usize::try_from(self.room).map_or(data.len(), |r| r.min(data.len()));
                    if n > 0
                        && let Some(seq) = self.ex.try_next_seq()
                    {
                        self.room -= n as u64;
                        self.ex.record(Msg::RequestBody {
                            id: self.ex.id,
                            seq,
                            bytes: data.slice(..n),
                        });
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                let e: BoxError = e.into();
                let outcome = client_body_outcome(&*e);
                self.ex.client_body_failed(outcome, error_chain(&*e));
                Poll::Ready(Some(Err(e)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a failure of the client's request body is recorded: `cancelled_by_client` when the client went away
/// (connection closed or reset mid-body, HTTP/2 stream cancelled), `client_error` when it sent a malformed
/// body (bad chunk framing, an HTTP/2 protocol error).
pub fn client_body_outcome(e: &(dyn StdError + 'static)) -> Outcome {
    use std::io::ErrorKind;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                ErrorKind::UnexpectedEof
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe => Outcome::CancelledByClient,
                _ => Outcome::ClientError,
            };
        }
        if let Some(h) = c.downcast_ref::<h2::Error>() {
            let gone = h.is_io()
                || (h.is_remote()
                    && (h.is_go_away()
                        || matches!(h.reason(), Some(h2::Reason::CANCEL | h2::Reason::NO_ERROR))));
            return if gone {
                Outcome::CancelledByClient
            } else {
                Outcome::ClientError
            };
        }
        if let Some(h) = c.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return Outcome::CancelledByClient;
        }
        cur = c.source();
    }
    Outcome::ClientError
}

/// An error and its sources, joined by ": ".
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Wraps the upstream's response body on its way to the client.
///
/// Each frame is returned the moment it arrives. The exchange ends `complete` when the upstream body ends,
/// `upstream_error` when it fails, `timeout` when it sits idle too long, and `cancelled_by_client` when the
/// client drops it first. In strict durability the end of the body (and a content-length body's last frame)
/// is held until the record is durable; earlier frames never wait. If the record cannot be made durable (the
/// journal fails) or is not within [`STRICT_ACK_WAIT`], the body ends with an error instead, so the client
/// never sees a clean end the recording cannot back. When the proxy shuts down and its grace period ends
/// first, the client's body ends with an error and the exchange as `proxy_error`.
pub struct ResponseTee<B> {
    inner: B,
    ex: Arc<Exchange>,
    abort: Option<(AbortSignal, Duration)>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    remaining: Option<u64>,
    held: Option<Frame<Bytes>>,
    ack: Option<DurableAck>,
    done: bool,
    /// Waiting for a saturated recorder (its spill queue is full) before reading on.
    backoff: Option<Pin<Box<Sleep>>>,
}

/// How long a response tee waits before looking again at a saturated recorder.
const SATURATED_BACKOFF: Duration = Duration::from_millis(1);

impl<B> std::fmt::Debug for ResponseTee<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseTee")
            .field("exchange", &self.ex.id)
            .field("done", &self.done)
            .finish()
    }
}

impl<B> ResponseTee<B> {
    /// Tees `inner` into `ex`'s record; `content_length` lets strict mode spot the last frame.
    pub fn new(inner: B, ex: Arc<Exchange>, idle: Duration, content_length: Option<u64>) -> Self {
        Self {
            inner,
            ex,
            abort: None,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            remaining: content_length,
            held: None,
            ack: None,
            done: false,
            backoff: None,
        }
    }

    /// Ends the body with an error when `signal` resolves (the shutdown `grace` period is over).
    pub fn abort_on(mut self, signal: AbortSignal, grace: Duration) -> Self {
        self.abort = Some((signal, grace));
        self
    }

    fn finish_ok(&mut self) {
        self.ex.upstream_done();
        self.ack = self.ex.end(Outcome::Complete, None);
        if self.ack.is_some() {
            let deadline = tokio::time::Instant::now() + STRICT_ACK_WAIT;
            self.timer.as_mut().reset(deadline);
        }
    }

    /// Strict durability: the record is not durable, so the held end is not released.
    fn not_durable(&mut self, why: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.ack = None;
        self.held = None;
        self.done = true;
        Poll::Ready(Some(Err(not_durable(&self.ex, why))))
    }
}

/// Strict durability: polls a record's acknowledgement until `timer` (set [`STRICT_ACK_WAIT`] after
/// the end) fires; `Err` says why the record is not durable.
fn poll_durable(
    ack: &mut DurableAck,
    timer: Pin<&mut Sleep>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), String>> {
    match Pin::new(ack).poll(cx) {
        Poll::Ready(r) => Poll::Ready(r.map_err(|why| why.to_string())),
        Poll::Pending if timer.poll(cx).is_ready() => {
            Poll::Ready(Err(format!("not durable within {STRICT_ACK_WAIT:?}")))
        }
        Poll::Pending => Poll::Pending,
    }
}

/// Counts and logs (rate-limited) a strict-mode response whose record is not durable, and gives
/// the error its body ends with.
fn not_durable(ex: &Exchange, why: &str) -> BoxError {
    ex.not_durable();
    if let Some(skipped) = NOT_DURABLE_LOG.allow() {
        tracing::error!(exchange = %ex.id, reason = why, not_logged_since_last = skipped,
            "agentcap: strict durability: a response's record is not durable; ending the client's stream with an error (one line per 10 s at most; `strict_not_durable` in /metrics.json counts them all)");
    }
    format!(
        "agentcap: the response was not completed because its recording could not be made durable (--durability strict): {why}"
    )
    .into()
}

/// The body of a response the proxy made itself (a 502, a 504, ...) in strict durability: held
/// until the exchange's record is durable, as a forwarded response's end is ([`ResponseTee`]);
/// when the record is not durable within [`STRICT_ACK_WAIT`], the body ends with an error instead.
pub struct HeldUntilDurable {
    body: Option<Bytes>,
    ack: Option<DurableAck>,
    timer: Pin<Box<Sleep>>,
    ex: Arc<Exchange>,
}

impl HeldUntilDurable {
    /// Holds `body` until `ack` (the end of `ex`) resolves.
    pub fn new(body: Bytes, ack: DurableAck, ex: Arc<Exchange>) -> Self {
        Self {
            body: Some(body),
            ack: Some(ack),
            timer: Box::pin(tokio::time::sleep(STRICT_ACK_WAIT)),
            ex,
        }
    }
}

impl Body for HeldUntilDurable {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(ack) = this.ack.as_mut() {
            let durable = ready!(poll_durable(ack, this.timer.as_mut(), cx));
            this.ack = None;
            if let Err(why) = durable {
                this.body = None;
                return Poll::Ready(Some(Err(not_durable(&this.ex, &why))));
            }
        }
        Poll::Ready(this.body.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.ack.is_none() && self.body.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.body.as_ref().map_or(0, |b| b.len() as u64))
    }
}

impl<B> Body for ResponseTee<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(ack) = this.ack.as_mut() {
            // Strict durability: wait for the record (at most `STRICT_ACK_WAIT`), then release what
            // was held, or end with an error if the record is not durable.
            return match ready!(poll_durable(ack, this.timer.as_mut(), cx)) {
                Ok(()) => {
                    this.ack = None;
                    this.done = true;
                    Poll::Ready(this.held.take().map(Ok))
                }
                Err(why) => this.not_durable(&why),
            };
        }
        if this.done {
            return Poll::Ready(None);
        }
        // Backpressure as the last resort: when the channel and the spill queue are both full, the
        // next frame is read from the upstream only once the spill thread has caught up.
        if this.ex.recorder_saturated() {
            while this.ex.recorder_saturated() {
                let t = this
                    .backoff
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(SATURATED_BACKOFF)));
                ready!(t.as_mut().poll(cx));
                this.backoff = None;
            }
            let deadline = tokio::time::Instant::now() + this.idle;
            this.timer.as_mut().reset(deadline);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let at_us = this.ex.offset_us();
                    this.ex.add_out(data.len());
                    if let Some(seq) = this.ex.try_next_seq() {
                        this.ex.record(Msg::ResponseBody {
                            id: this.ex.id,
                            seq,
                            at_us,
                            bytes: data.clone(),
                        });
                    }
                    if let Some(r) = this.remaining.as_mut() {
                        *r = r.saturating_sub(data.len() as u64);
                    }
                }
                // A sized body's last frame: hyper may never poll again once the length is reached, so the
                // exchange ends here (in strict durability the frame is held until the record is durable).
                if this.remaining == Some(0) || this.inner.is_end_stream() {
                    this.finish_ok();
                    if this.ack.is_some() {
                        this.held = Some(frame);
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    this.done = true;
                    return Poll::Ready(Some(Ok(frame)));
                }
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                this.ex.upstream_done();
                // The upstream leg may fail because the client's request body did: blame the client then.
                let (outcome, why) = match this.ex.client_failure() {
                    Some((o, why)) => (o, format!("the client's request body failed: {why}")),
                    None => (Outcome::UpstreamError, format!("upstream body failed: {e}")),
                };
                this.ex.end(outcome, Some(why));
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish_ok();
                if this.ack.is_some() {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some((signal, grace)) = this.abort.as_mut() {
                    let signal = signal.get_mut().unwrap_or_else(|e| e.into_inner());
                    if signal.as_mut().poll(cx).is_ready() {
                        this.ex.upstream_done();
                        let msg = format!(
                            "agentcap shut down: the response had not ended when the shutdown grace period ({} ms) ran out",
                            grace.as_millis()
                        );
                        this.ex.end(Outcome::ProxyError, Some(msg.clone()));
                        this.done = true;
                        return Poll::Ready(Some(Err(msg.into())));
                    }
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.ex.upstream_done();
                    let msg = format!("the upstream sent nothing for {:?}", this.idle);
                    this.ex.end(Outcome::Timeout, Some(msg.clone()));
                    this.done = true;
                    return Poll::Ready(Some(Err(msg.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.held.is_none() && self.ack.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for ResponseTee<B> {
    fn drop(&mut self) {
        if !self.ex.is_ended() {
            self.ex.end(
                Outcome::CancelledByClient,
                Some("the client went away mid-response".into()),
            );
        }
    }
}
