//! A sink's bounded queue: at most `queue_events` notices and `queue_bytes` of them wait.
//! Pushing never blocks (a full queue refuses at once); the sink's thread pops, blocking.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use super::notice::Notice;

/// One notice waiting for a sink.
#[derive(Debug)]
pub struct Job {
    /// What to send.
    pub notice: Arc<Notice>,
    /// When it was queued (the latency metric counts from here).
    pub queued_at: Instant,
    /// What it counts against `queue_bytes`.
    pub bytes: usize,
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `queue_events` or `queue_bytes` reached.
    Full,
    /// The sink's thread is gone.
    Closed,
}

/// The pushing end (cloned into the notifier; cheap, `Send + Sync`).
#[derive(Debug, Clone)]
pub struct QueueTx {
    tx: SyncSender<Job>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The popping end (the sink's thread).
#[derive(Debug)]
pub struct QueueRx {
    rx: Receiver<Job>,
    bytes: Arc<AtomicUsize>,
}

/// A queue of at most `events` jobs and `max_bytes` bytes.
pub fn queue(events: usize, max_bytes: usize) -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::sync_channel(events);
    let bytes = Arc::new(AtomicUsize::new(0));
    let push = QueueTx {
        tx,
        bytes: bytes.clone(),
        max_bytes,
    };
    (push, QueueRx { rx, bytes })
}

impl QueueTx {
    /// Queue `job` unless that would pass either bound; never blocks.
    pub fn try_push(&self, job: Job) -> Result<(), Refused> {
        let size = job.bytes;
        let reserved = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + size <= self.max_bytes).then_some(held + size)
            });
        if reserved.is_err() {
            return Err(Refused::Full);
        }
        self.tx.try_send(job).map_err(|e| {
            self.bytes.fetch_sub(size, Ordering::AcqRel);
            match e {
                TrySendError::Full(_) => Refused::Full,
                TrySendError::Disconnected(_) => Refused::Closed,
            }
        })
    }

    /// Whether `other` pushes into this same queue.
    #[cfg(test)]
    pub(crate) fn same_queue(&self, other: &QueueTx) -> bool {
        Arc::ptr_eq(&self.bytes, &other.bytes)
    }

    /// Bytes of the notices waiting now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

impl QueueRx {
    /// The next job, waiting for one; `None` once every pushing end is gone.
    pub fn pop(&self) -> Option<Job> {
        let job = self.rx.recv().ok()?;
        self.bytes.fetch_sub(job.bytes, Ordering::AcqRel);
        Some(job)
    }
}
