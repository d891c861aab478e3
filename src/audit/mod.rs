//! The durable decision ledger: every prompt and its answer in SQLite, so a restart loses none.
//!
//! - A prompt is recorded when it arrives, before anyone sees it; an answer before it is
//!   written to the socket; `delivered_at` once written.
//! - At startup [`Ledger::load_unfinished`] returns what the registry must restore.
//! - Writes go through a bounded queue to one dedicated writer thread ([`writer`]) that
//!   commits up to `max_batch` commands per transaction. A full queue is an immediate
//!   [`LedgerError::QueueFull`], never a blocked actor or a silent drop.
//! - WAL checkpoints run on a background thread ([`checkpoint`]), so their fsyncs stay
//!   off the writer's path.
//! - Reads ([`Ledger::query`]) run on a small pool of reader threads with read-only
//!   connections; WAL mode keeps them from blocking the writer.
//!
//! Whether the ledger is used at all is `[ledger] enabled`: callers skip [`Ledger::open`] when off.

mod checkpoint;
mod query;
mod record;
mod schema;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::oneshot;

pub use query::{AuditPage, AuditParams, AuditQuery, OutcomeFilter, DEFAULT_LIMIT, MAX_LIMIT};
pub use record::{AuditRow, DecisionRecord, LedgerError, Outcome, PromptRecord, Unfinished};

use crate::config::LedgerConfig;
use writer::{Cmd, Counters, DecisionRow, Op, PromptRow, WriterConfig};

/// Throughput knobs; [`Tuning::default`] suits the service.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Commands the write queue holds before callers get `QueueFull` (default 65,536).
    pub queue_capacity: usize,
    /// Most commands committed in one transaction (default 1,024).
    pub max_batch: usize,
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
            max_batch: 1024,
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

/// The ledger writer's latency histograms (shared handles; observing is the writer's job).
#[derive(Debug, Clone)]
pub struct LedgerHistograms {
    /// Seconds the oldest write of each batch waited in the queue.
    pub queue_wait: prometheus_client::metrics::histogram::Histogram,
    /// Seconds the writer spent committing each batch and answering its callers.
    pub commit: prometheus_client::metrics::histogram::Histogram,
}

/// Cloneable, `Send + Sync` handle to the ledger; the threads stop when the last handle is dropped.
#[derive(Clone)]
pub struct Ledger {
    writes: SyncSender<Cmd>,
    reads: SyncSender<ReadJob>,
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    capacity: usize,
    counters: Arc<Counters>,
    #[cfg(test)]
    gate: Arc<Mutex<()>>,
}

impl Ledger {
    /// Open (or create) the ledger at `cfg.path` and start its threads. Blocking; call once at startup.
    pub fn open(cfg: &LedgerConfig) -> Result<Ledger, LedgerError> {
        Self::open_with(cfg, Tuning::default())
    }

    /// [`Ledger::open`] with explicit [`Tuning`] (benchmarks, tests).
    pub fn open_with(cfg: &LedgerConfig, tuning: Tuning) -> Result<Ledger, LedgerError> {
        let conn = schema::open_writer(&cfg.path)?;
        let counters = Arc::new(Counters::default());
        let capacity = tuning.queue_capacity.max(1);
        let (writes, rx) = mpsc::sync_channel(capacity);
        #[cfg(test)]
        let gate = Arc::new(Mutex::new(()));
        let wcfg = WriterConfig {
            max_batch: tuning.max_batch.max(1),
            retain: cfg.retention(),
            prune_every: tuning.prune_every,
            prune_chunk: tuning.prune_chunk.max(1),
            #[cfg(test)]
            gate: gate.clone(),
        };
        let wcounters = counters.clone();
        let handoff = Arc::new(checkpoint::Handoff::default());
        let (stop_checkpoints, stopped) = mpsc::channel();
        let ckpt_conn = schema::open_checkpointer(&cfg.path)?;
        let policy = checkpoint::Policy {
            every: tuning.checkpoint_every,
            restart_at: tuning.checkpoint_frames.max(1),
        };
        let ckpt_handoff = handoff.clone();
        let db = cfg.path.clone();
        spawn("ledger-checkpoint", cfg, move || {
            checkpoint::run(ckpt_conn, &db, policy, ckpt_handoff, stopped)
        })?;
        spawn("ledger-writer", cfg, move || {
            let _stop_checkpoints = stop_checkpoints; // dropped when the writer stops
            writer::run(conn, rx, wcfg, wcounters, &handoff)
        })?;
        let (reads, jobs) = mpsc::sync_channel::<ReadJob>(READ_QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..tuning.readers.max(1) {
            let conn = schema::open_reader(&cfg.path)?;
            let jobs = jobs.clone();
            spawn(&format!("ledger-reader-{i}"), cfg, move || loop {
                let job = jobs.lock().recv();
                match job {
                    Ok(job) => job(&conn),
                    Err(_) => break,
                }
            })?;
        }
        Ok(Ledger {
            writes,
            reads,
            shared: Arc::new(Shared {
                path: cfg.path.clone(),
                capacity,
                counters,
                #[cfg(test)]
                gate,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Record a prompt on arrival (idempotent by `(session_id, request_id)`); resolves after commit.
    ///
    /// The command is queued when this is called, not when the future is first polled.
    pub fn record_prompt(
        &self,
        r: PromptRecord,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        let row = PromptRow {
            input: r.input.to_string(),
            request: r.request.to_string(),
            received_at: record::to_ms(r.received_at),
            session_id: r.session_id,
            request_id: r.request_id,
            tool_use_id: r.tool_use_id,
            tool_name: r.tool_name,
        };
        unit(self.submit(Op::Prompt(row)))
    }

    /// Record an answer before it is written; resolves after commit.
    ///
    /// Fails with `UnknownPrompt` / `AlreadyDecided`; repeating the stored decision succeeds.
    pub fn record_decision(
        &self,
        r: DecisionRecord,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        let row = DecisionRow {
            outcome: r.outcome,
            decided_at: record::to_ms(r.decided_at),
            updated_input: r.updated_input.map(|v| v.to_string()),
            answer: r.answer.map(|v| v.to_string()),
            reason: r.reason,
            session_id: r.session_id,
            request_id: r.request_id,
            decided_by: r.decided_by,
        };
        unit(self.submit(Op::Decision(row)))
    }

    /// Record that the answer was written to the socket (the first time counts).
    pub fn mark_delivered(
        &self,
        session_id: &str,
        request_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        unit(self.submit(Op::Delivered {
            session_id: session_id.to_owned(),
            request_id: request_id.to_owned(),
            at: record::to_ms(at),
        }))
    }

    /// Resolves once every write queued before it is committed (shutdown, tests).
    pub fn flush(&self) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        unit(self.submit(Op::Flush))
    }

    /// Delete finished rows received before `before` now (background pruning does this by itself).
    pub fn prune(
        &self,
        before: SystemTime,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send + 'static {
        let rx = self.submit(Op::Prune(before));
        async move { rx?.await.map_err(|_| LedgerError::Closed)? }
    }

    /// Pending prompts and undelivered answers, oldest first, for the registry to restore. Blocking.
    pub fn load_unfinished(&self) -> Result<Vec<Unfinished>, LedgerError> {
        query::unfinished(&schema::open_reader(&self.shared.path)?)
    }

    /// One page of the audit log, on a reader thread.
    pub fn query(
        &self,
        q: AuditQuery,
    ) -> impl Future<Output = Result<AuditPage, LedgerError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self.reads.try_send(Box::new(move |conn: &Connection| {
            let _ = tx.send(query::page(conn, &q));
        }));
        async move {
            match sent {
                Ok(()) => rx.await.map_err(|_| LedgerError::Closed)?,
                Err(TrySendError::Full(_)) => Err(LedgerError::QueueFull {
                    capacity: READ_QUEUE,
                }),
                Err(TrySendError::Disconnected(_)) => Err(LedgerError::Closed),
            }
        }
    }

    /// Stream every row matching `q` (newest first, `limit` ignored) into `out`; returns the count.
    ///
    /// Blocking, on the caller's thread with its own connection; reads in chunks so a long
    /// export never holds one read transaction open.
    pub fn export(
        &self,
        q: &AuditQuery,
        out: impl FnMut(AuditRow) -> std::io::Result<()>,
    ) -> Result<u64, LedgerError> {
        query::export(&schema::open_reader(&self.shared.path)?, q, 500, out)
    }

    /// Writes that failed so far (storage errors, refusals, full queue); each was logged and returned.
    pub fn write_errors(&self) -> u64 {
        self.shared.counters.write_errors.load(Ordering::Relaxed)
    }

    /// Histograms of the writer, for `/metrics`: how long each batch waited in the
    /// queue (its oldest write) and how long its commit took.
    pub fn latency_histograms(&self) -> LedgerHistograms {
        LedgerHistograms {
            queue_wait: self.shared.counters.queue_wait.clone(),
            commit: self.shared.counters.commit.clone(),
        }
    }

    /// Queue `op`; a full queue or a stopped writer fails now, counted.
    fn submit(&self, op: Op) -> Result<oneshot::Receiver<Result<u64, LedgerError>>, LedgerError> {
        let (reply, rx) = oneshot::channel();
        match self.writes.try_send(Cmd {
            op,
            reply,
            queued_at: std::time::Instant::now(),
        }) {
            Ok(()) => Ok(rx),
            Err(e) => {
                let (err, cmd) = match e {
                    TrySendError::Full(cmd) => (
                        LedgerError::QueueFull {
                            capacity: self.shared.capacity,
                        },
                        cmd,
                    ),
                    TrySendError::Disconnected(cmd) => (LedgerError::Closed, cmd),
                };
                let what = writer::op_name(&cmd.op);
                self.shared.counters.write_failed(what, &err);
                Err(err)
            }
        }
    }

    /// Hold the writer before its next batch while the guard lives (tests of back-pressure).
    #[cfg(test)]
    fn hold_writer(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.shared.gate.lock()
    }
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
) -> Result<(), LedgerError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map(drop)
        .map_err(|e| LedgerError::Open {
            path: cfg.path.clone(),
            reason: format!("cannot start thread {name}: {e}"),
        })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_query;
