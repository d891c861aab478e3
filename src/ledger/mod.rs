//! The durable decision ledger: every prompt and its answer in SQLite (or, for a cluster,
//! PostgreSQL: [`pg`]), so a restart loses none.
//!
//! [`Ledger`] is the handle the service holds, whichever the backend; what follows is the
//! SQLite backend's design.
//!
//! - A prompt is recorded when it arrives, before anyone sees it; an answer before it is
//!   written to the socket; `delivered_at` once written.
//! - At startup [`Ledger::load_unfinished`] returns what the registry must restore.
//! - A write is appended to an append-only `journal` by its caller (one `write`
//!   syscall) and is then acknowledged: a process crash loses no acknowledged write, as
//!   with a `synchronous=NORMAL` commit, and no caller waits for SQLite or another
//!   thread. The applier thread (`writer`) commits the writes to SQLite behind, in
//!   large transactions; a restart replays what it had not. When the applier is
//!   `queue_capacity` jobs behind, a write fails at once with
//!   [`LedgerError::QueueFull`], never a blocked actor or a silent drop.
//! - WAL checkpoints run on a background thread (`checkpoint`), so their fsyncs stay
//!   off the applier's path.
//! - Reads ([`Ledger::query`]) run on a small pool of reader threads with read-only
//!   connections; WAL mode keeps them from blocking the applier.
//!
//! Whether the ledger is used at all is `[ledger] enabled`: callers skip [`Ledger::open`] when off.

mod backup;
mod checkpoint;
mod fold;
mod handle;
mod journal;
mod lifecycle;
mod lock;
pub mod pg;
mod query;
mod reads;
mod record;
mod schema;
mod sql;
mod writer;
mod writes;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::Mutex;

pub use backup::{backup, BackupError, BackupReport};
pub use handle::{Closing, Ledger, Written};
pub use lifecycle::Tuning;
pub use lock::{lock_path, InstanceLock};
pub use query::{
    cursor_after, LedgerQuery, OutcomeFilter, ResolvedRows, Stored, DEFAULT_LIMIT, MAX_LIMIT,
};
pub use record::{DecisionRecord, LedgerError, PromptRecord, Unfinished};

#[cfg(test)]
use crate::config::LedgerConfig;
use reads::ReadQueue;
pub use writer::retry_delay;
use writer::{ApplyState, Counters, Job};

/// The ledger's latency histograms, defined beside the metrics that register them.
pub use crate::metrics::LedgerHistograms;

/// The SQLite backend: cloneable, `Send + Sync`; its threads stop when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Sqlite {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    capacity: usize,
    counters: Arc<Counters>,
    /// The journal and the applier's queue, locked together so that the applier gets
    /// the writes in journal order. `None` once closing.
    tail: Mutex<Option<Tail>>,
    apply: Arc<ApplyState>,
    /// Joined when the last handle goes, so a reopen finds every write committed.
    applier: Mutex<Option<JoinHandle<()>>>,
    /// The checkpointer and the readers, joined after the applier: the last of their
    /// connections to close removes the WAL, so a clean stop leaves only the database.
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
    /// The readers' queue; `None` tells one reader to stop (a query future may still hold
    /// a sender, so the queue's closing cannot be the signal).
    reads: ReadQueue,
    #[cfg(test)]
    gate: Arc<Mutex<()>>,
    /// Its receiver hears the ledger closed (this sender dropped, after `Drop` has stopped
    /// every thread and closed the journal): see [`Ledger::closing`].
    _closed: std::sync::mpsc::SyncSender<()>,
    /// Taken by whoever waits for the close.
    closed: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// Released last, after `Drop` has stopped every thread and closed the journal.
    _lock: InstanceLock,
}

/// The write side: where the next record goes and who applies it.
struct Tail {
    journal: journal::Journal,
    next_seq: u64,
    jobs: mpsc::Sender<(Job, Instant)>,
    /// Reused encoding buffer.
    buf: Vec<u8>,
    /// The last write of each prompt that may not be committed yet.
    unapplied: writes::Unapplied,
}

impl Sqlite {
    /// See [`Ledger::closing`].
    fn closing(&self) -> Option<handle::Closing> {
        self.shared.closed.lock().take().map(handle::Closing)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Writes that failed so far (storage errors, refusals, full queue); each was logged and returned.
    pub fn write_errors(&self) -> u64 {
        self.shared.counters.write_errors.load(Ordering::Relaxed)
    }

    /// Histograms for `/metrics`: each write's journal append, and the applier's
    /// transactions and how long their oldest job waited.
    pub fn latency_histograms(&self) -> LedgerHistograms {
        LedgerHistograms {
            queue_wait: self.shared.counters.queue_wait.clone(),
            commit: self.shared.counters.commit.clone(),
            apply: self.shared.counters.apply.clone(),
        }
    }
}

/// The journal segment files next to the ledger database `db` (normally none once the
/// service has stopped cleanly; after a crash, the writes the next start replays).
pub fn journal_files(db: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(journal::segments(db)?.into_iter().map(|(_, p)| p).collect())
}

#[cfg(test)]
mod tests;
