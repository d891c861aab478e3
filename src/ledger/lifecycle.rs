//! Opening the ledger (replaying its journal, starting its threads), what a restart
//! restores from it, and the orderly shutdown when the last handle goes.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::reads::{ReadJob, READ_QUEUE};
use super::writer::{self, ApplyConfig, ApplyState, Counters};
use super::{checkpoint, journal, query, schema, InstanceLock};
use super::{LedgerError, ResolvedRows, Shared, Sqlite, Tail, Unfinished};
use crate::config::LedgerConfig;

/// Throughput knobs; [`Tuning::default`] suits the service.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Jobs the applier may be behind before writes get `QueueFull` (default 65,536).
    pub queue_capacity: usize,
    /// Most writes the applier commits to SQLite in one transaction (default 4,096).
    pub apply_batch: usize,
    /// How long the applier gathers writes before a transaction (default 500 ms): larger
    /// transactions cost less CPU per write (their prompts share index pages, which a
    /// transaction writes once); nobody waits for them but `flush` and audit reads, which
    /// cut the wait short.
    pub apply_delay: Duration,
    /// Journal segment size at which the next write starts a new file, so applied ones can be
    /// deleted (default 16 MiB).
    pub journal_segment_bytes: u64,
    /// Reader threads serving [`Ledger::query`] (default 2).
    pub readers: usize,
    /// How often retention pruning runs (default 1 h; also once at startup).
    pub prune_every: Duration,
    /// Rows deleted per pruning transaction, so writes are never stalled for long (default 5,000).
    pub prune_chunk: usize,
    /// How often the checkpointer thread copies new WAL frames into the database (default
    /// 1 s: a page written again meanwhile is copied once).
    pub checkpoint_every: Duration,
    /// WAL size, in 4 KiB frames, at which the writer finishes a checkpoint so the WAL
    /// starts over (default 4,096; see `checkpoint`).
    pub checkpoint_frames: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            apply_batch: 4096,
            apply_delay: Duration::from_millis(500),
            journal_segment_bytes: 16 << 20,
            readers: 2,
            prune_every: Duration::from_secs(3600),
            prune_chunk: 5000,
            checkpoint_every: Duration::from_secs(1),
            checkpoint_frames: 4096,
        }
    }
}

impl Sqlite {
    /// Open (or create) the ledger at `cfg.path` under a lock the caller took earlier, and
    /// start its threads; the ledger holds the lock until its last handle is gone. Blocking.
    pub fn open_locked(
        cfg: &LedgerConfig,
        tuning: Tuning,
        lock: InstanceLock,
    ) -> Result<Sqlite, LedgerError> {
        debug_assert_eq!(
            lock.path(),
            super::lock_path(&cfg.path),
            "the lock of another ledger"
        );
        let mut conn = schema::open_writer(&cfg.path)?;
        let counters = Arc::new(Counters::default());
        let open_err = |what: &str, e: &dyn std::fmt::Display| LedgerError::Open {
            path: cfg.path.clone(),
            reason: format!("{what}: {e}"),
        };
        let next_seq = journal::replay(&mut conn, &cfg.path, &counters)
            .map_err(|e| open_err("cannot replay the journal", &e))?;
        let journal = journal::Journal::create(&cfg.path, next_seq, tuning.journal_segment_bytes)
            .map_err(|e| open_err("cannot create the journal", &e))?;
        #[cfg(test)]
        let gate = Arc::new(Mutex::new(()));
        let acfg = ApplyConfig {
            max_batch: tuning.apply_batch.max(1),
            delay: tuning.apply_delay,
            retain: cfg.retention(),
            prune_every: tuning.prune_every,
            prune_chunk: tuning.prune_chunk.max(1),
            #[cfg(test)]
            gate: gate.clone(),
        };
        let handoff = Arc::new(checkpoint::Handoff::default());
        let (stop_checkpoints, stopped) = mpsc::channel();
        let ckpt_conn = schema::open_checkpointer(&cfg.path)?;
        let policy = checkpoint::Policy {
            every: tuning.checkpoint_every,
            restart_at: tuning.checkpoint_frames.max(1),
        };
        let ckpt_handoff = handoff.clone();
        let db = cfg.path.clone();
        let checkpointer = spawn("ledger-checkpoint", cfg, move || {
            // Its checkpoints copy pages and sync; nothing waits for them.
            if !crate::util::background_thread_priority() {
                tracing::debug!("cannot lower the ledger checkpointer's priority");
            }
            checkpoint::run(ckpt_conn, &db, policy, ckpt_handoff, stopped)
        })?;
        let apply = Arc::new(ApplyState {
            applied: AtomicU64::new(next_seq - 1),
            queued: AtomicUsize::new(0),
            retrying: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            barriers: AtomicUsize::new(0),
        });
        let (jobs, job_rx) = mpsc::channel();
        let (acounters, astate) = (counters.clone(), apply.clone());
        let applier = spawn("ledger-applier", cfg, move || {
            let _stop_checkpoints = stop_checkpoints; // dropped when the applier stops
            writer::apply_loop(conn, job_rx, acfg, acounters, &handoff, &astate)
        })?;
        let (reads, read_jobs) = mpsc::sync_channel::<Option<ReadJob>>(READ_QUEUE);
        let mut readers = Vec::with_capacity(tuning.readers.max(1));
        let read_jobs = Arc::new(Mutex::new(read_jobs));
        for i in 0..tuning.readers.max(1) {
            let conn = schema::open_reader(&cfg.path)?;
            let read_jobs = read_jobs.clone();
            readers.push(spawn(&format!("ledger-reader-{i}"), cfg, move || loop {
                let job = read_jobs.lock().recv();
                match job {
                    Ok(Some(job)) => job(&conn),
                    Ok(None) | Err(_) => break,
                }
            })?);
        }
        let (closed_tx, closed_rx) = std::sync::mpsc::sync_channel(0);
        Ok(Sqlite {
            shared: Arc::new(Shared {
                path: cfg.path.clone(),
                capacity: tuning.queue_capacity.max(1),
                counters,
                tail: Mutex::new(Some(Tail {
                    journal,
                    next_seq,
                    jobs,
                    buf: Vec::new(),
                    unapplied: Default::default(),
                })),
                apply,
                applier: Mutex::new(Some(applier)),
                checkpointer: Mutex::new(Some(checkpointer)),
                readers: Mutex::new(readers),
                reads,
                #[cfg(test)]
                gate,
                _closed: closed_tx,
                closed: Mutex::new(Some(closed_rx)),
                _lock: lock,
            }),
        })
    }

    /// Pending prompts and undelivered answers, oldest first, for the registry to restore. Blocking.
    pub fn load_unfinished(&self) -> Result<Vec<Unfinished>, LedgerError> {
        query::unfinished(&schema::open_reader(&self.shared.path)?, None)
    }

    /// Finished prompts, newest first, up to `max_rows` and about `max_bytes`, for the
    /// registry to match replays after a restart. Blocking.
    pub fn load_resolved(
        &self,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<ResolvedRows, LedgerError> {
        query::resolved(
            &schema::open_reader(&self.shared.path)?,
            max_rows,
            max_bytes,
        )
    }
}

impl Drop for Shared {
    /// Stops the threads in an order that leaves only the database file: the readers'
    /// read-only connections close first (they cannot remove the WAL), then the applier's,
    /// then the checkpointer's, whose close as the last connection folds the WAL in.
    fn drop(&mut self) {
        let readers = std::mem::take(&mut *self.readers.lock());
        for _ in &readers {
            let _ = self.reads.send(None);
        }
        join_all(readers);
        // Closing the queue lets the applier finish what it has and stop.
        self.apply.closing.store(true, Ordering::Release);
        let Some(tail) = self.tail.lock().take() else {
            return;
        };
        drop(tail.jobs);
        if let Some(applier) = self.applier.lock().take() {
            // It may be gathering writes (`apply_delay`): it commits them now.
            applier.thread().unpark();
            if applier.join().is_err() {
                tracing::error!(
                    "decision ledger applier panicked; the next start replays its journal"
                );
                return;
            }
        }
        tail.journal
            .close(self.apply.applied.load(Ordering::Acquire));
        // The applier's exit stopped the checkpointer.
        join_all(self.checkpointer.lock().take());
    }
}

fn join_all(threads: impl IntoIterator<Item = JoinHandle<()>>) {
    for thread in threads {
        if thread.join().is_err() {
            tracing::error!("a decision ledger thread panicked");
        }
    }
}

fn spawn(
    name: &str,
    cfg: &LedgerConfig,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, LedgerError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|e| LedgerError::Open {
            path: cfg.path.clone(),
            reason: format!("cannot start thread {name}: {e}"),
        })
}
