//! The durable decision ledger: every prompt and its answer in SQLite, so a restart loses none.
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

mod checkpoint;
mod fold;
mod journal;
mod query;
mod record;
mod schema;
mod sql;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::oneshot;

pub use query::{LedgerQuery, OutcomeFilter, ResolvedRows, Stored, DEFAULT_LIMIT, MAX_LIMIT};
pub use record::{DecisionRecord, LedgerError, PromptRecord, Unfinished};

use crate::config::LedgerConfig;
use ccr_protocol::reply::{LedgerPage, LedgerRow};
use ccr_protocol::PermissionPrompt;
pub use writer::retry_delay;
use writer::{ApplyConfig, ApplyState, Counters, DecisionRow, Job, PromptRow, Write};

/// Throughput knobs; [`Tuning::default`] suits the service.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Jobs the applier may be behind before writes get `QueueFull` (default 65,536).
    pub queue_capacity: usize,
    /// Most writes the applier commits to SQLite in one transaction (default 4,096).
    pub apply_batch: usize,
    /// How long the applier gathers writes before a transaction (default 20 ms): larger
    /// transactions cost less CPU per write; nobody waits for them but `flush` and audit
    /// reads, which cut the wait short.
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
    /// How often the checkpointer thread copies new WAL frames into the database (default 100 ms).
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
            apply_delay: Duration::from_millis(20),
            journal_segment_bytes: 16 << 20,
            readers: 2,
            prune_every: Duration::from_secs(3600),
            prune_chunk: 5000,
            checkpoint_every: Duration::from_millis(100),
            checkpoint_frames: 4096,
        }
    }
}

/// Queries waiting for a reader thread before callers get `QueueFull`.
const READ_QUEUE: usize = 1024;

/// A read job run on a reader thread with its connection.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// What a reader thread takes from its queue: a job, or `None` to stop.
type ReadQueue = SyncSender<Option<ReadJob>>;

/// The ledger's latency histograms, defined beside the metrics that register them.
pub use crate::metrics::LedgerHistograms;

/// Cloneable, `Send + Sync` handle to the ledger; the threads stop when the last handle is dropped.
#[derive(Clone)]
pub struct Ledger {
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
}

/// The write side: where the next record goes and who applies it.
struct Tail {
    journal: journal::Journal,
    next_seq: u64,
    jobs: mpsc::Sender<(Job, Instant)>,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

/// Hand `job` to the applier through `jobs`, counted in `queued` and timed from
/// now; false if the applier is gone.
fn enqueue(jobs: &mpsc::Sender<(Job, Instant)>, queued: &AtomicUsize, job: Job) -> bool {
    queued.fetch_add(1, Ordering::AcqRel);
    jobs.send((job, Instant::now())).is_ok()
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

impl Ledger {
    /// Open (or create) the ledger at `cfg.path` and start its threads. Blocking; call once at startup.
    pub fn open(cfg: &LedgerConfig) -> Result<Ledger, LedgerError> {
        Self::open_with(cfg, Tuning::default())
    }

    /// [`Ledger::open`] with explicit [`Tuning`] (benchmarks, tests).
    pub fn open_with(cfg: &LedgerConfig, tuning: Tuning) -> Result<Ledger, LedgerError> {
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
        Ok(Ledger {
            shared: Arc::new(Shared {
                path: cfg.path.clone(),
                capacity: tuning.queue_capacity.max(1),
                counters,
                tail: Mutex::new(Some(Tail {
                    journal,
                    next_seq,
                    jobs,
                    buf: Vec::new(),
                })),
                apply,
                applier: Mutex::new(Some(applier)),
                checkpointer: Mutex::new(Some(checkpointer)),
                readers: Mutex::new(readers),
                reads,
                #[cfg(test)]
                gate,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Record a prompt on arrival (idempotent by `(session_id, request_id)`); resolves once
    /// durable (journaled), before SQLite has it.
    ///
    /// The command is queued when this is called, not when the future is first polled.
    /// Errors are the write's own: a full queue, a closed ledger, a failed journal append.
    pub fn record_prompt(
        &self,
        r: PromptRecord,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        std::future::ready(self.write(Write::Prompt(r.into())))
    }

    /// Record an answer before it is written; resolves once durable (journaled).
    ///
    /// The ledger's rules are checked when the write is applied: a decision for an unknown
    /// prompt or one already decided otherwise changes nothing and is logged and counted
    /// ([`Ledger::write_errors`]); repeating the stored decision is a no-op.
    pub fn record_decision(
        &self,
        r: DecisionRecord,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        std::future::ready(self.append_decision(r))
    }

    /// Record that the answer was written to the socket: the first write sets
    /// `delivered_at`, every write (resends included) counts in `deliveries`.
    pub fn mark_delivered(
        &self,
        session_id: &str,
        request_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        std::future::ready(self.append_delivered(session_id, request_id, at))
    }

    /// Resolves once every write queued before it is committed to SQLite (audit reads, tests).
    pub fn flush(&self) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        unit(self.barrier("flush", Job::Flush))
    }

    /// Delete finished rows received before `before` now (background pruning does this by itself).
    pub fn prune(
        &self,
        before: SystemTime,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send + 'static {
        let rx = self.barrier("prune", |reply| Job::Prune(before, reply));
        async move { rx?.await.map_err(|_| LedgerError::Closed)? }
    }

    /// Pending prompts and undelivered answers, oldest first, for the registry to restore. Blocking.
    pub fn load_unfinished(&self) -> Result<Vec<Unfinished>, LedgerError> {
        query::unfinished(&schema::open_reader(&self.shared.path)?)
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

    /// One page of the audit log, on a reader thread; it includes every write queued before
    /// the call.
    pub fn query(
        &self,
        q: LedgerQuery,
    ) -> impl Future<Output = Result<LedgerPage, LedgerError>> + Send + 'static {
        self.read(move |conn| query::page(conn, &q))
    }

    /// What the ledger holds for one prompt, including every write queued before the call
    /// (a replay the registry no longer remembers).
    pub fn lookup(
        &self,
        session_id: &str,
        request_id: &str,
    ) -> impl Future<Output = Result<Stored, LedgerError>> + Send + 'static {
        let (s, r) = (session_id.to_owned(), request_id.to_owned());
        self.read(move |conn| query::stored(conn, &s, &r))
    }

    /// Run `f` on a reader thread once every write queued before the call is committed.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> impl Future<Output = Result<T, LedgerError>> + Send + 'static {
        let flushed = self.flush();
        let reads = self.shared.reads.clone();
        async move {
            // A failed flush (full queue) still leaves what is committed worth reading.
            let _ = flushed.await;
            let (tx, rx) = oneshot::channel();
            let sent = reads.try_send(Some(Box::new(move |conn: &Connection| {
                let _ = tx.send(f(conn));
            })));
            match sent {
                Ok(()) => rx.await.map_err(|_| LedgerError::Closed)?,
                Err(TrySendError::Full(_)) => Err(LedgerError::QueueFull {
                    capacity: READ_QUEUE,
                }),
                Err(TrySendError::Disconnected(_)) => Err(LedgerError::Closed),
            }
        }
    }

    /// Record a prompt as the registry holds it (its JSON serialized straight from it, not
    /// copied into a [`PromptRecord`] first), returning at once whether the write is
    /// durable (journaled).
    pub fn append_prompt(
        &self,
        session_id: &str,
        prompt: &PermissionPrompt,
        received_at: SystemTime,
    ) -> Result<(), LedgerError> {
        self.write(Write::Prompt(PromptRow::received(
            session_id,
            prompt,
            received_at,
        )))
    }

    /// [`Ledger::mark_delivered`], returning at once whether the write is durable.
    pub fn append_delivered(
        &self,
        session_id: &str,
        request_id: &str,
        at: SystemTime,
    ) -> Result<(), LedgerError> {
        self.write(Write::Delivered {
            session_id: session_id.to_owned(),
            request_id: request_id.to_owned(),
            at: record::to_ms(at),
        })
    }

    /// [`Ledger::record_decision`], returning at once whether the write is durable.
    pub fn append_decision(&self, r: DecisionRecord) -> Result<(), LedgerError> {
        self.write(Write::Decision(r.into()))
    }

    /// Stream every row matching `q` (newest first, `limit` ignored) into `out`; returns the count.
    /// It sees what is committed: await [`Ledger::flush`] first to include every write queued.
    ///
    /// Blocking, on the caller's thread with its own connection; reads in chunks so a long
    /// export never holds one read transaction open.
    pub fn export(
        &self,
        q: &LedgerQuery,
        out: impl FnMut(LedgerRow) -> std::io::Result<()>,
    ) -> Result<u64, LedgerError> {
        query::export(&schema::open_reader(&self.shared.path)?, q, 500, out)
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

    /// Make `write` durable in the journal and hand it to the applier. Counted on failure.
    fn write(&self, write: Write) -> Result<(), LedgerError> {
        let started = Instant::now();
        let name = write.name();
        let result = self.append(write);
        match &result {
            Ok(()) => self
                .shared
                .counters
                .commit
                .observe(started.elapsed().as_secs_f64()),
            Err(e) => self.shared.counters.write_failed(name, e),
        }
        result
    }

    fn append(&self, write: Write) -> Result<(), LedgerError> {
        let shared = &*self.shared;
        let mut guard = shared.tail.lock();
        let tail = guard.as_mut().ok_or(LedgerError::Closed)?;
        if shared.apply.queued.load(Ordering::Acquire) >= shared.capacity {
            return Err(LedgerError::QueueFull {
                capacity: shared.capacity,
            });
        }
        let seq = tail.next_seq;
        tail.buf.clear();
        journal::encode(seq, &write, &mut tail.buf)?;
        let appended = tail.journal.append(&tail.buf, seq);
        // Behind every write they hold, so the applier deletes them once those are in.
        for segment in tail.journal.take_full() {
            if !enqueue(&tail.jobs, &shared.apply.queued, Job::Retire(segment)) {
                tracing::warn!("decision ledger applier stopped: a full journal segment stays until the next start");
            }
        }
        appended.map_err(|e| LedgerError::Storage(format!("journal: {e}")))?;
        tail.next_seq += 1;
        // Durable from here on: if the applier is gone, the next start replays it.
        if !enqueue(&tail.jobs, &shared.apply.queued, Job::Write(seq, write)) {
            tracing::error!(seq, "decision ledger applier stopped: the write stays in the journal until the next start");
        }
        Ok(())
    }

    /// Queue a barrier behind every write so far and wake the applier for it.
    fn barrier(
        &self,
        what: &str,
        job: impl FnOnce(writer::Reply) -> Job,
    ) -> Result<oneshot::Receiver<Result<u64, LedgerError>>, LedgerError> {
        let (reply, rx) = oneshot::channel();
        let shared = &*self.shared;
        // Accepted even when writes are refused for a full queue (it carries no data, and
        // its callers are few: audit reads, shutdown), so a reader can wait for the applier.
        let sent = match shared.tail.lock().as_ref() {
            None => Err(LedgerError::Closed),
            Some(tail) => enqueue(&tail.jobs, &shared.apply.queued, job(reply))
                .then_some(())
                .ok_or(LedgerError::Closed),
        };
        if let Err(e) = &sent {
            shared.counters.write_failed(what, e);
        }
        if let Some(applier) = shared.applier.lock().as_ref() {
            applier.thread().unpark();
        }
        sent.map(|()| rx)
    }

    /// Hold the applier before its next batch while the guard lives (tests of back-pressure).
    #[cfg(test)]
    fn hold_applier(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.shared.gate.lock()
    }
}

impl PromptRow {
    /// The row of `prompt`, received on `session_id` at `received_at`.
    fn received(session_id: &str, prompt: &PermissionPrompt, received_at: SystemTime) -> Self {
        PromptRow {
            session_id: session_id.to_owned(),
            request_id: prompt.request_id.clone(),
            tool_use_id: prompt.tool_use_id.clone(),
            tool_name: prompt.tool_name.clone(),
            input: prompt.input.to_string(),
            request: prompt.request.to_string(),
            received_at: record::to_ms(received_at),
        }
    }
}

impl From<PromptRecord> for PromptRow {
    fn from(r: PromptRecord) -> Self {
        PromptRow {
            input: r.input.to_string(),
            request: r.request.to_string(),
            received_at: record::to_ms(r.received_at),
            session_id: r.session_id,
            request_id: r.request_id,
            tool_use_id: r.tool_use_id,
            tool_name: r.tool_name,
        }
    }
}

impl From<DecisionRecord> for DecisionRow {
    fn from(r: DecisionRecord) -> Self {
        DecisionRow {
            outcome: r.outcome,
            decided_at: record::to_ms(r.decided_at),
            updated_input: r.updated_input.map(|v| v.to_string()),
            answer: r.answer,
            reason: r.reason,
            session_id: r.session_id,
            request_id: r.request_id,
            decided_by: r.decided_by,
        }
    }
}

/// The journal segment files next to the ledger database `db` (normally none once the
/// service has stopped cleanly; after a crash, the writes the next start replays).
pub fn journal_files(db: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(journal::segments(db)?.into_iter().map(|(_, p)| p).collect())
}

/// Await a writer reply, dropping the row count.
async fn unit(
    rx: Result<oneshot::Receiver<Result<u64, LedgerError>>, LedgerError>,
) -> Result<(), LedgerError> {
    rx?.await.map_err(|_| LedgerError::Closed)??;
    Ok(())
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

#[cfg(test)]
mod tests;
