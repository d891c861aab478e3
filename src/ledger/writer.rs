//! The ledger's applier thread, behind the journal.
//!
//! Callers append each write to the [`journal`] themselves (one `write`, under a
//! mutex) and are answered at once: a write is acknowledged once it is durable, without
//! a thread hop and without waiting for SQLite. The journal hands each write on to this
//! thread, which sleeps up to `apply_delay` after the first so that one SQLite
//! transaction takes many, records how far it got, and runs pruning and the checkpoint
//! hand-off. A `Flush` or `Prune` wakes it and completes only once every earlier write
//! is committed. It also deletes the journal's full segments once their records are
//! committed: an unlink takes milliseconds, too long for the callers' threads.
//!
//! A write the database refuses (unknown prompt, already decided) or cannot store is
//! logged and counted when it is applied. A storage error rolls back the whole batch;
//! its writes are then retried one transaction each, so one bad write cannot fail its
//! neighbours.
//!
//! [`journal`]: super::journal

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use super::checkpoint::Handoff;
use super::record::{to_ms, LedgerError};
use super::sql;
use crate::telemetry::ledger::LedgerWriteFailed;
use ccr_protocol::reply::Outcome;

/// Completes a caller's future with the number of rows affected.
pub(crate) type Reply = oneshot::Sender<Result<u64, LedgerError>>;

/// A prompt with its JSON already serialized (on the caller's thread, not the writer's).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PromptRow {
    pub session_id: String,
    pub request_id: String,
    pub tool_use_id: Option<String>,
    pub tool_name: String,
    pub input: String,
    pub request: String,
    pub received_at: i64,
}

/// A decision with its JSON already serialized.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DecisionRow {
    pub session_id: String,
    pub request_id: String,
    pub outcome: Outcome,
    pub decided_by: String,
    pub decided_at: i64,
    pub updated_input: Option<String>,
    pub answer: Option<String>,
    pub reason: Option<String>,
}

/// One durable change: journaled, then applied to the `prompts` table.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Write {
    /// Insert a prompt unless its key is known.
    Prompt(PromptRow),
    /// Decide a recorded prompt.
    Decision(DecisionRow),
    /// Set `delivered_at` (the first time only).
    Delivered {
        session_id: String,
        request_id: String,
        at: i64,
    },
}

impl Write {
    /// The prompt it changes: `(session_id, request_id)`.
    pub(crate) fn key(&self) -> (&str, &str) {
        match self {
            Write::Prompt(p) => (&p.session_id, &p.request_id),
            Write::Decision(d) => (&d.session_id, &d.request_id),
            Write::Delivered {
                session_id,
                request_id,
                ..
            } => (session_id, request_id),
        }
    }

    /// A hash of [`Write::key`], for the maps that tell a lookup whether this prompt has a
    /// write not committed yet (a collision only costs a lookup a wait it did not need).
    pub(crate) fn key_hash(session_id: &str, request_id: &str) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (session_id, request_id).hash(&mut h);
        h.finish()
    }

    /// The API call that queued it, for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Write::Prompt(_) => "record_prompt",
            Write::Decision(_) => "record_decision",
            Write::Delivered { .. } => "mark_delivered",
        }
    }
}

/// What the journal hands the applier, in journal order.
pub(crate) enum Job {
    /// A journaled write and its sequence number.
    Write(u64, Write),
    /// A prune, answered once done.
    Prune(SystemTime, Reply),
    /// A barrier, answered once every earlier write is committed.
    Flush(Reply),
    /// A full journal segment, deleted once every earlier write is committed.
    Retire(PathBuf),
}

/// Counters shared by the handle and the applier.
#[derive(Debug)]
pub(crate) struct Counters {
    /// Writes that failed: refused by the ledger's rules, not storable, or not queued.
    pub write_errors: AtomicU64,
    /// Seconds the oldest job of each applier batch waited for it.
    pub queue_wait: Histogram,
    /// Seconds each write took to become durable (its journal append).
    pub commit: Histogram,
    /// Seconds the applier spent on each SQLite transaction.
    pub apply: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        // 25 µs doubling to about 0.8 s: a journal append takes microseconds to tens.
        let buckets = || exponential_buckets(0.000_025, 2.0, 16);
        Self {
            write_errors: AtomicU64::new(0),
            queue_wait: Histogram::new(buckets()),
            commit: Histogram::new(buckets()),
            apply: Histogram::new(buckets()),
        }
    }
}

impl Counters {
    /// The one place a failed write is logged and counted.
    pub(crate) fn write_failed(&self, what: &str, err: &LedgerError) {
        let refused = err.is_refusal();
        LedgerWriteFailed {
            what,
            error: err,
            refused,
        }
        .emit(&self.write_errors);
    }
}

/// The applier's settings.
pub(crate) struct ApplyConfig {
    /// Most writes per transaction.
    pub max_batch: usize,
    /// How long the applier gathers writes after the first before committing them.
    pub delay: Duration,
    pub retain: Option<Duration>,
    pub prune_every: Duration,
    pub prune_chunk: usize,
    #[cfg(test)]
    pub gate: Arc<parking_lot::Mutex<()>>,
}

/// What the applier shares with the journal side.
pub(crate) struct ApplyState {
    /// Last sequence number committed to SQLite.
    pub applied: AtomicU64,
    /// Jobs handed over and not yet done (the queue's bound is checked against it).
    pub queued: AtomicUsize,
    /// Set while storage fails and the applier retries (the ledger is unavailable).
    pub retrying: AtomicBool,
    /// Set when the ledger closes: a failing commit gives up and leaves the journal for the next start.
    pub closing: AtomicBool,
    /// Barriers queued and not yet taken by the applier: while any is, it does not gather
    /// (it commits what it has, the barriers' writes included, at once).
    pub barriers: AtomicUsize,
}

/// Sleep up to `delay` so that one transaction gathers the writes arriving meanwhile; end
/// early once a barrier is queued (`barriers`) or the ledger closes.
///
/// The state, not the thread's park token alone, says when to stop: the queue's own
/// wake-up uses that token too, and two unparks before one park count as one.
pub(crate) fn gather(delay: Duration, state: &ApplyState) {
    let until = Instant::now() + delay;
    loop {
        if state.barriers.load(Ordering::Acquire) > 0 || state.closing.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::park_timeout(until - now);
    }
}

/// The applier thread's body; returns once the queue's sender is gone and every job is done.
pub(crate) fn apply_loop(
    mut conn: Connection,
    rx: Receiver<(Job, Instant)>,
    cfg: ApplyConfig,
    counters: Arc<Counters>,
    checkpoints: &Handoff,
    state: &ApplyState,
) {
    // Nobody waits for this thread but audit reads: the answer path goes first.
    if !crate::util::background_thread_priority() {
        debug!("cannot lower the ledger applier's priority");
    }
    let mut batch: Vec<Job> = Vec::with_capacity(cfg.max_batch);
    let mut next_prune = Instant::now();
    let mut pruning: Option<i64> = None; // cutoff of a background prune in progress
    loop {
        if let Some(retain) = cfg.retain.filter(|_| pruning.is_none()) {
            if Instant::now() >= next_prune {
                pruning = Some(SystemTime::now().checked_sub(retain).map_or(0, to_ms));
                next_prune = Instant::now() + cfg.prune_every;
            }
        }
        let wait = idle_wait(
            pruning.is_some(),
            cfg.retain.is_some(),
            next_prune,
            Instant::now(),
        );
        let (first, queued_at) = match rx.recv_timeout(wait) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(cutoff) = pruning {
                    match sql::prune_chunk(&mut conn, cutoff, cfg.prune_chunk) {
                        Ok(n) if n < cfg.prune_chunk as u64 => pruning = None,
                        Ok(_) => {}
                        Err(e) => {
                            error!(error = %e, "decision ledger retention pruning failed");
                            pruning = None;
                        }
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let barrier = is_barrier(&first);
        batch.push(first);
        if !barrier && !cfg.delay.is_zero() {
            // Asleep, not waiting on the queue: senders need not wake this thread per
            // write. A barrier or the close unparks it.
            gather(cfg.delay, state);
        }
        #[cfg(test)]
        drop(cfg.gate.lock());
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok((job, _)) => batch.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let taken = batch.iter().filter(|j| is_barrier(j)).count();
        if taken > 0 {
            state.barriers.fetch_sub(taken, Ordering::AcqRel);
        }
        counters
            .queue_wait
            .observe(queued_at.elapsed().as_secs_f64());
        apply_batch(&mut conn, &mut batch, &cfg, &counters, state);
        // After the commit, so the batch just applied never waits for it.
        checkpoints.finish_if_asked(&conn);
    }
    debug!("decision ledger applier stopped");
}

/// Whether `job` is a barrier (someone waits for everything before it to be committed).
fn is_barrier(job: &Job) -> bool {
    matches!(job, Job::Prune(..) | Job::Flush(_))
}

/// How long the applier may wait for a job before it has something else to do.
///
/// While pruning it only peeks (writes go first, a chunk runs when idle); with retention
/// on it wakes for the next prune; with retention off nothing is due.
fn idle_wait(pruning: bool, retention: bool, next_prune: Instant, now: Instant) -> Duration {
    match (pruning, retention) {
        (true, _) => Duration::ZERO,
        (false, true) => next_prune.saturating_duration_since(now),
        (false, false) => Duration::from_secs(3600),
    }
}

/// Commit `batch` (emptied) and answer its barriers after the commit.
fn apply_batch(
    conn: &mut Connection,
    batch: &mut Vec<Job>,
    cfg: &ApplyConfig,
    counters: &Counters,
    state: &ApplyState,
) {
    // A prune runs alone (it commits in chunks), in queue order with the writes around it.
    while let Some(at) = batch.iter().position(|j| matches!(j, Job::Prune(..))) {
        let rest = batch.split_off(at + 1);
        let Some(Job::Prune(before, reply)) = batch.pop() else {
            unreachable!("position found a prune")
        };
        commit_each_or_all(conn, batch, counters, state);
        let result =
            sql::prune_all(conn, to_ms(before), cfg.prune_chunk).map_err(LedgerError::from);
        // The prune was counted when queued, like every job; done before it is answered.
        state.queued.fetch_sub(1, Ordering::AcqRel);
        let _ = reply.send(result);
        *batch = rest;
    }
    commit_each_or_all(conn, batch, counters, state);
}

/// True for storage errors that may pass (disk full, I/O error, locked): the writes are
/// kept and retried, never dropped. Others (a constraint the data breaks) are final.
pub(crate) fn transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(
            DiskFull
                | SystemIoFailure
                | DatabaseBusy
                | DatabaseLocked
                | OutOfMemory
                | CannotOpen
                | ReadOnly
                | FileLockingProtocolFailed
        )
    )
}

/// The applier's pause after a transient storage error, doubling up to 2 s.
pub fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(2))
}

/// Commit the batch's writes: in one transaction, else one transaction each. A write is
/// done when committed or refused by the ledger's rules; a transient storage error (a full
/// disk) is retried until it passes, so nothing journaled and acknowledged is ever dropped.
/// Meanwhile the queue fills and new writes are refused with `QueueFull` (back-pressure).
/// When the ledger is closing, the writes are left in the journal for the next start.
fn commit_each_or_all(
    conn: &mut Connection,
    batch: &mut Vec<Job>,
    counters: &Counters,
    state: &ApplyState,
) {
    let writes: Vec<(u64, &Write)> = batch
        .iter()
        .filter_map(|j| match j {
            Job::Write(seq, w) => Some((*seq, w)),
            _ => None,
        })
        .collect();
    let mut committed = true;
    if !writes.is_empty() {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match commit_writes(conn, &writes, counters) {
                Ok(()) => break,
                Err(e) if state.closing.load(Ordering::Acquire) => {
                    error!(error = %e, writes = writes.len(), "decision ledger closing while storage fails: the writes stay in the journal for the next start");
                    committed = false;
                    break;
                }
                Err(e) => {
                    if attempt == 0 || attempt % 32 == 0 {
                        error!(error = %e, writes = writes.len(), attempt, "DECISION LEDGER STORAGE FAILING: writes kept in the journal and retried; new writes are refused once the queue is full");
                    }
                    state.retrying.store(true, Ordering::Release);
                    std::thread::sleep(retry_delay(attempt));
                    attempt += 1;
                }
            }
        }
        if attempt > 0 && committed {
            warn!(
                attempt,
                "decision ledger storage recovered; kept writes committed"
            );
        }
        state.retrying.store(false, Ordering::Release);
        if committed {
            let last = writes.last().map_or(0, |(seq, _)| *seq);
            state.applied.store(last, Ordering::Release);
        }
        counters.apply.observe(started.elapsed().as_secs_f64());
    }
    // Done before any barrier is answered, so its caller sees the queue's room.
    state.queued.fetch_sub(batch.len(), Ordering::AcqRel);
    for job in batch.drain(..) {
        match job {
            Job::Flush(reply) => {
                let _ = reply.send(if committed {
                    Ok(0)
                } else {
                    Err(LedgerError::Storage(
                        "not committed; kept in the journal".into(),
                    ))
                });
            }
            Job::Retire(segment) if committed => {
                if let Err(e) = std::fs::remove_file(&segment) {
                    // It stays; the next start replays it (its records are already in).
                    error!(segment = %segment.display(), error = %e, "cannot delete an applied journal segment");
                }
            }
            Job::Retire(_) | Job::Write(..) | Job::Prune(..) => {}
        }
    }
}

/// One attempt at committing `writes`; `Err` is a transient storage error (nothing of it
/// counted as done). Refusals and final errors are logged and counted here.
fn commit_writes(
    conn: &mut Connection,
    writes: &[(u64, &Write)],
    counters: &Counters,
) -> Result<(), rusqlite::Error> {
    let failed = |w: &Write, e: LedgerError| counters.write_failed(w.name(), &e);
    match sql::commit(conn, writes) {
        Ok(results) => {
            for ((_, w), result) in writes.iter().zip(results) {
                if let Err(e) = result {
                    failed(w, e);
                }
            }
            Ok(())
        }
        Err(e) if transient(&e) => Err(e),
        Err(e) if writes.len() == 1 => {
            failed(writes[0].1, e.into());
            Ok(())
        }
        Err(e) => {
            warn!(error = %e, size = writes.len(), "decision ledger batch failed; retrying one by one");
            for one in writes {
                match sql::commit(conn, std::slice::from_ref(one)) {
                    Ok(mut r) => {
                        if let Some(Err(e)) = r.pop() {
                            failed(one.1, e);
                        }
                    }
                    Err(e) if transient(&e) => return Err(e),
                    Err(e) => failed(one.1, e.into()),
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
