//! The write API: each write is appended to the journal by its caller (durable at once)
//! and handed to the applier thread; barriers (`flush`, `prune`) wait for the applier.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Instant, SystemTime};

use tokio::sync::oneshot;

use super::writer::{self, Job, PromptRow, Write};
use super::{journal, record};
use super::{LedgerError, Sqlite};
use ccr_protocol::PermissionPrompt;

impl Sqlite {
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

    /// Make `write` durable in the journal and hand it to the applier. Counted on failure.
    pub(super) fn write(&self, write: Write) -> Result<(), LedgerError> {
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
        let (session_id, request_id) = write.key();
        let applied = shared.apply.applied.load(Ordering::Acquire);
        tail.unapplied.wrote(session_id, request_id, seq, applied);
        // Durable from here on: if the applier is gone, the next start replays it.
        if !enqueue(&tail.jobs, &shared.apply.queued, Job::Write(seq, write)) {
            tracing::error!(seq, "decision ledger applier stopped: the write stays in the journal until the next start");
        }
        Ok(())
    }

    /// Whether every write of this prompt journaled so far is committed to SQLite (a read
    /// sees them without waiting for the applier). False once the ledger is closing.
    pub(super) fn committed_for(&self, session_id: &str, request_id: &str) -> bool {
        let shared = &*self.shared;
        let tail = shared.tail.lock();
        // Loaded under the lock, after the writes it guards were noted.
        let applied = shared.apply.applied.load(Ordering::Acquire);
        tail.as_ref()
            .is_some_and(|t| t.unapplied.committed(session_id, request_id, applied))
    }

    /// Queue a barrier behind every write so far and wake the applier for it.
    fn barrier(
        &self,
        what: &str,
        job: impl FnOnce(writer::Reply) -> Job,
    ) -> Result<oneshot::Receiver<Result<u64, LedgerError>>, LedgerError> {
        let (reply, rx) = oneshot::channel();
        let shared = &*self.shared;
        // Counted before it is queued, so a gathering applier that sees the count finds
        // the barrier in the queue or on its way (taken off when the applier takes it).
        shared.apply.barriers.fetch_add(1, Ordering::AcqRel);
        // Accepted even when writes are refused for a full queue (it carries no data, and
        // its callers are few: audit reads, shutdown), so a reader can wait for the applier.
        let sent = match shared.tail.lock().as_ref() {
            None => Err(LedgerError::Closed),
            Some(tail) => enqueue(&tail.jobs, &shared.apply.queued, job(reply))
                .then_some(())
                .ok_or(LedgerError::Closed),
        };
        if let Err(e) = &sent {
            shared.apply.barriers.fetch_sub(1, Ordering::AcqRel);
            shared.counters.write_failed(what, e);
        }
        if let Some(applier) = shared.applier.lock().as_ref() {
            applier.thread().unpark();
        }
        sent.map(|()| rx)
    }

    /// Hold the applier before its next batch while the guard lives (tests of back-pressure).
    #[cfg(test)]
    pub(super) fn hold_applier(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.shared.gate.lock()
    }
}

/// The sequence number of the last write of each prompt written since its entry was last
/// found committed: what tells a lookup whether it must wait for the applier
/// ([`Sqlite::committed_for`]). Keyed by a hash of the prompt's key (a collision only
/// makes a lookup wait when it need not), and bounded: entries already committed are
/// dropped whenever the map outgrows [`Unapplied::PRUNE_AT`], and at most the applier
/// queue's capacity of entries can be uncommitted.
#[derive(Debug, Default)]
pub(super) struct Unapplied(std::collections::HashMap<u64, u64>);

impl Unapplied {
    /// Size past which committed entries are dropped (amortized: each drop pass frees
    /// at least the entries the queue's bound does not hold).
    const PRUNE_AT: usize = 4096;

    /// Note write `seq` of the prompt; `applied` is the last sequence number committed.
    pub(super) fn wrote(&mut self, session_id: &str, request_id: &str, seq: u64, applied: u64) {
        if self.0.len() >= Self::PRUNE_AT.max(2 * self.0.capacity() / 3) {
            self.0.retain(|_, last| *last > applied);
        }
        self.0.insert(Write::key_hash(session_id, request_id), seq);
    }

    /// Entries held (tests of the bound).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether every write of the prompt journaled so far is committed, `applied` being
    /// the last sequence number committed.
    pub(super) fn committed(&self, session_id: &str, request_id: &str, applied: u64) -> bool {
        self.0
            .get(&Write::key_hash(session_id, request_id))
            .is_none_or(|last| *last <= applied)
    }
}

/// Hand `job` to the applier through `jobs`, counted in `queued` and timed from
/// now; false if the applier is gone.
fn enqueue(jobs: &mpsc::Sender<(Job, Instant)>, queued: &AtomicUsize, job: Job) -> bool {
    queued.fetch_add(1, Ordering::AcqRel);
    jobs.send((job, Instant::now())).is_ok()
}

/// Await a writer reply, dropping the row count.
async fn unit(
    rx: Result<oneshot::Receiver<Result<u64, LedgerError>>, LedgerError>,
) -> Result<(), LedgerError> {
    rx?.await.map_err(|_| LedgerError::Closed)??;
    Ok(())
}

impl PromptRow {
    /// The row of `prompt`, received on `session_id` at `received_at`.
    pub(super) fn received(
        session_id: &str,
        prompt: &PermissionPrompt,
        received_at: SystemTime,
    ) -> Self {
        PromptRow {
            session_id: session_id.to_owned(),
            request_id: prompt.request_id.clone(),
            tool_use_id: prompt.tool_use_id.clone(),
            tool_name: prompt.tool_name.clone(),
            // The text the session sent when there is one (copied, not serialized again).
            input: match prompt.raw.as_ref().and_then(|r| r.input()) {
                Some(input) => input.to_owned(),
                None => prompt.input.to_string(),
            },
            request: match &prompt.raw {
                Some(raw) => raw.request().get().to_owned(),
                None => prompt.request.to_string(),
            },
            received_at: record::to_ms(received_at),
        }
    }
}
