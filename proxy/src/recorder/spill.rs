//! The spill thread: when the writer's channel is full, messages come here (through an unbounded
//! in-memory queue) and are appended to `spill-<n>.log` files, group-committed on the journal
//! interval. The writer reads them back when its channel is empty. If a spill file cannot be
//! written, the message is handed to the writer's channel with a blocking send instead: this
//! thread may wait, the hot path never does, and nothing is dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::record::Msg;

use super::body::Redactor;
use super::journal::{SEGMENT_ROTATE_BYTES, SegId, SegKind, SegmentFile};
use super::{Item, Shared, SpillFile, SpillItem, StatsAtomics, try_drain};

pub(crate) struct SpillThread {
    pub rx: Receiver<SpillItem>,
    pub data_tx: Sender<Item>,
    pub dir: PathBuf,
    pub shared: Arc<Shared>,
    pub interval: Duration,
    pub strict: bool,
    pub next_no: u64,
    /// `--redact` patterns, applied to what goes into the file.
    pub redactor: Redactor,
}

struct State {
    t: SpillThread,
    cur: Option<SegmentFile>,
    last_sync: Instant,
    durable_waiting: bool,
    warned: bool,
    /// Messages appended since the last successful commit (handed to the writer if it fails).
    unsynced: Vec<Msg>,
}

impl SpillThread {
    pub fn run(self) {
        let mut s = State {
            t: self,
            cur: None,
            last_sync: Instant::now(),
            durable_waiting: false,
            warned: false,
            unsynced: Vec::new(),
        };
        loop {
            let dirty = s.cur.as_ref().is_some_and(SegmentFile::dirty);
            let timeout = if dirty {
                s.t.interval.saturating_sub(s.last_sync.elapsed())
            } else {
                Duration::from_secs(1)
            };
            let first = match s.t.rx.recv_timeout(timeout) {
                Ok(item) => Some(item),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    s.sync();
                    return;
                }
            };
            let mut stop = None;
            let mut items: Vec<SpillItem> = first.into_iter().collect();
            try_drain(&s.t.rx, 4096, |i| items.push(i));
            for item in items {
                match item {
                    SpillItem::Data(item) => {
                        let n = item.body_bytes();
                        s.write(item);
                        super::Shared::spill_took(&s.t.shared, n);
                    }
                    SpillItem::Sync(reply) => {
                        s.sync();
                        let _ = reply.send(());
                    }
                    SpillItem::Stop(reply) => {
                        s.sync();
                        s.close();
                        let _ = reply.send(());
                        stop = Some(false);
                        break;
                    }
                    SpillItem::Abort => {
                        stop = Some(true);
                        break;
                    }
                }
            }
            match stop {
                Some(true) => {
                    if let Some(f) = s.cur.take() {
                        f.abandon();
                    }
                    return;
                }
                Some(false) => return,
                None => {}
            }
            let dirty = s.cur.as_ref().is_some_and(SegmentFile::dirty);
            if dirty && (s.last_sync.elapsed() >= s.t.interval || (s.t.strict && s.durable_waiting))
            {
                s.sync();
            }
        }
    }
}

impl State {
    fn write(&mut self, item: Item) {
        let (msg, ack) = item.into_parts();
        if let Some(ack) = ack {
            let key = (msg.exchange_id(), msg.seq());
            self.t.shared.spill_acks.lock().insert(key, ack);
            self.durable_waiting = true;
        }
        match self.append(&msg) {
            Ok(n) => {
                StatsAtomics::add(&self.t.shared.stats.journal_bytes, n);
                self.unsynced.push(msg);
                if self
                    .cur
                    .as_ref()
                    .is_some_and(|f| f.len >= SEGMENT_ROTATE_BYTES)
                {
                    self.sync();
                    self.close();
                }
            }
            Err(e) => {
                self.fail(&e);
                self.forward(msg);
            }
        }
    }

    fn append(&mut self, msg: &Msg) -> std::io::Result<u64> {
        if self.cur.is_none() {
            let id = SegId {
                kind: SegKind::Spill,
                no: self.t.next_no,
            };
            self.t.next_no = id.next_no();
            let f = SegmentFile::create(&self.t.dir, id, self.t.redactor.clone())?;
            self.t.shared.spill_files.lock().push(SpillFile {
                no: id.no,
                synced_len: 0,
                closed: false,
            });
            self.cur = Some(f);
        }
        match self.cur.as_mut() {
            Some(f) => f.append(msg),
            None => Err(std::io::Error::other("no spill file")),
        }
    }

    /// Gives up on the current file: what was committed stays readable, what was not is handed
    /// to the writer's channel.
    fn fail(&mut self, e: &std::io::Error) {
        StatsAtomics::add(&self.t.shared.stats.journal_errors, 1);
        if !self.warned {
            self.warned = true;
            tracing::warn!(error = %e, dir = %self.t.dir.display(),
                "agentcap recorder: cannot write the spill file; handing messages to the writer directly");
        }
        // Cut the file back to its last commit, so the reader finds no half-written record.
        if let Some(f) = self.cur.as_mut() {
            let _ = f.rollback();
        }
        self.close();
        for msg in std::mem::take(&mut self.unsynced) {
            self.forward(msg);
        }
    }

    /// Sends a message that did not make it into a spill file straight to the writer.
    fn forward(&mut self, msg: Msg) {
        self.t.shared.spill_pushed.fetch_sub(1, Ordering::SeqCst);
        let ack = if matches!(msg, Msg::End { .. }) {
            self.t
                .shared
                .spill_acks
                .lock()
                .remove(&(msg.exchange_id(), msg.seq()))
        } else {
            None
        };
        let item = match ack {
            Some(a) => Item::Durable(msg, a),
            None => Item::Plain(msg),
        };
        if self.t.data_tx.send(item).is_err() {
            StatsAtomics::add(&self.t.shared.stats.records_dropped, 1);
        }
    }

    /// Group commit; publishes the new durable length to the writer.
    fn sync(&mut self) {
        self.last_sync = Instant::now();
        self.durable_waiting = false;
        let Some(f) = self.cur.as_mut() else {
            return;
        };
        match f.sync() {
            Ok(()) => {
                self.unsynced.clear();
                self.publish(false);
            }
            Err(e) => self.fail(&e),
        }
    }

    fn close(&mut self) {
        if self.cur.is_some() {
            self.publish(true);
            if let Some(f) = self.cur.take() {
                f.abandon();
            }
        }
    }

    fn publish(&self, closed: bool) {
        let Some(f) = self.cur.as_ref() else {
            return;
        };
        let mut files = self.t.shared.spill_files.lock();
        if let Some(p) = files.iter_mut().find(|p| p.no == f.id.no) {
            p.synced_len = f.synced_len;
            p.closed |= closed;
        }
    }
}
