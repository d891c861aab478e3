//! [`Ledger`]: the handle the service holds, whichever database is behind it — the SQLite
//! file of one process, or the PostgreSQL database a cluster shares ([`super::pg`]).
//!
//! Both backends keep the same promises: a write's future resolves once the write is
//! durable (the SQLite journal, a PostgreSQL commit), reads include every write queued
//! before them, and the rules of a decision (first wins, a cancel voids an undelivered
//! answer) are the database's.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::sync::oneshot;

use super::pg::fence::Fences;
use super::pg::PgLedger;
use super::writer::{DecisionRow, PromptRow, Write};
use super::{DecisionRecord, InstanceLock, LedgerError, LedgerHistograms, LedgerQuery};
use super::{PromptRecord, ResolvedRows, Sqlite, Stored, Tuning, Unfinished};
use crate::config::{LedgerBackend, LedgerConfig};
use ccr_protocol::reply::{LedgerPage, LedgerRow};
use ccr_protocol::PermissionPrompt;

/// Cloneable, `Send + Sync` handle to the ledger; its threads stop when the last handle is dropped.
#[derive(Clone)]
pub struct Ledger {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Sqlite),
    Postgres(PgLedger),
}

/// A write's acknowledgement: resolves once the write is durable. SQLite's is ready at
/// once (the journal append happened in the call), so a caller may take it without
/// waiting (`now_or_never`); PostgreSQL's once its transaction commits.
#[must_use = "a write is acknowledged only through its future"]
pub struct Written(Inner);

enum Inner {
    Ready(Option<Result<(), LedgerError>>),
    Commit(oneshot::Receiver<Result<(), LedgerError>>),
    /// A fenced write: a refusal for want of the lease means only "lapsed" while it is.
    Fenced(oneshot::Receiver<Result<(), LedgerError>>, Box<Lapse>),
    /// Two writes queued in order: the second counts only once the first is durable.
    Both(Box<Written>, Box<Written>),
}

impl Written {
    /// Already decided.
    pub(crate) fn ready(result: Result<(), LedgerError>) -> Self {
        Written(Inner::Ready(Some(result)))
    }

    /// Decided when the backend answers on `rx` (a dropped sender means it closed).
    pub(crate) fn commit(rx: oneshot::Receiver<Result<(), LedgerError>>) -> Self {
        Written(Inner::Commit(rx))
    }

    /// [`Written::commit`] of a write fenced by `lapse`'s lease: refused as
    /// [`LedgerError::NotOwner`] while that lease is still held here at its epoch (it has
    /// lapsed: expired in the database, renewal pending), it fails as
    /// [`LedgerError::LeaseLapsed`] instead, which is retried.
    pub(crate) fn fenced(rx: oneshot::Receiver<Result<(), LedgerError>>, lapse: Lapse) -> Self {
        Written(Inner::Fenced(rx, Box::new(lapse)))
    }
}

/// The lease a fenced write was made under.
pub(crate) struct Lapse {
    /// This instance's leases.
    pub(crate) fences: std::sync::Arc<crate::ledger::pg::fence::Fences>,
    /// The session written for.
    pub(crate) session: String,
    /// The epoch it was held at.
    pub(crate) epoch: crate::ledger::pg::fence::Epoch,
}

impl Lapse {
    fn classify(&self, result: Result<(), LedgerError>) -> Result<(), LedgerError> {
        match result {
            Err(LedgerError::NotOwner { session_id })
                if self.fences.holds(&self.session, self.epoch) =>
            {
                Err(LedgerError::LeaseLapsed { session_id })
            }
            other => other,
        }
    }
}

impl Written {
    /// `self`, then the write `next` makes: `next` is not called when `self` has already
    /// failed (a SQLite append), and is called at once otherwise, so the two are queued in
    /// order. Resolves with the first failure, or once both are durable.
    pub fn then(self, next: impl FnOnce() -> Written) -> Written {
        match self.0 {
            Inner::Ready(Some(Ok(()))) => next(),
            Inner::Ready(_) => self,
            _ => Written(Inner::Both(Box::new(self), Box::new(next()))),
        }
    }
}

impl Future for Written {
    type Output = Result<(), LedgerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Inner::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(LedgerError::Closed))),
            Inner::Commit(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(LedgerError::Closed))),
            Inner::Fenced(rx, lapse) => Pin::new(rx)
                .poll(cx)
                .map(|r| lapse.classify(r.unwrap_or(Err(LedgerError::Closed)))),
            Inner::Both(first, second) => {
                if let Inner::Ready(None) = first.0 {
                    return Pin::new(&mut **second).poll(cx);
                }
                match Pin::new(&mut **first).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {
                        first.0 = Inner::Ready(None);
                        Pin::new(&mut **second).poll(cx)
                    }
                }
            }
        }
    }
}

impl Ledger {
    /// Open (or create) the ledger `cfg` names and start its threads. Blocking; call once at startup.
    pub fn open(cfg: &LedgerConfig) -> Result<Ledger, LedgerError> {
        Self::open_with(cfg, Tuning::default())
    }

    /// [`Ledger::open`] with explicit [`Tuning`] (benchmarks, tests).
    pub fn open_with(cfg: &LedgerConfig, tuning: Tuning) -> Result<Ledger, LedgerError> {
        match &cfg.backend {
            LedgerBackend::Sqlite => {
                let lock = InstanceLock::acquire(&cfg.path)?;
                Self::open_locked(cfg, tuning, lock)
            }
            LedgerBackend::Postgres(_) => Self::open_clustered(cfg, tuning, None),
        }
    }

    /// The PostgreSQL ledger `cfg` names; with `fences` (a cluster), a prompt or a
    /// delivery is recorded only under this instance's lease of its session.
    pub fn open_clustered(
        cfg: &LedgerConfig,
        tuning: Tuning,
        fences: Option<Arc<Fences>>,
    ) -> Result<Ledger, LedgerError> {
        let Some(pg) = cfg.postgres() else {
            return Err(LedgerError::Open {
                path: cfg.path.clone(),
                reason: "a cluster needs [ledger] backend = \"postgres\"".into(),
            });
        };
        Ok(Ledger {
            backend: Backend::Postgres(PgLedger::open(cfg, pg, &tuning, fences)?),
        })
    }

    /// The SQLite ledger at `cfg.path`, under a lock the caller took earlier (the service
    /// takes it before anything else starts); the ledger holds it until its last handle is gone.
    pub fn open_locked(
        cfg: &LedgerConfig,
        tuning: Tuning,
        lock: InstanceLock,
    ) -> Result<Ledger, LedgerError> {
        Ok(Ledger {
            backend: Backend::Sqlite(Sqlite::open_locked(cfg, tuning, lock)?),
        })
    }

    /// The SQLite file, or `None` for PostgreSQL.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite(l) => Some(l.path()),
            Backend::Postgres(_) => None,
        }
    }

    /// What tells when the ledger is closed: its threads stopped and, for SQLite, its
    /// journal and WAL folded into the database file, once every handle is gone (some may
    /// be dropped on other threads, an API worker's). `None` for PostgreSQL, which has
    /// nothing to fold, or when taken already. Taken by the one who waits (the shutdown).
    pub fn closing(&self) -> Option<Closing> {
        match &self.backend {
            Backend::Sqlite(l) => l.closing(),
            Backend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL backend, when that is the one.
    pub fn postgres(&self) -> Option<&PgLedger> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(pg) => Some(pg),
        }
    }

    /// Where the rows live, for logs (never a connection URL).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(l) => format!("sqlite {}", l.path().display()),
            Backend::Postgres(_) => "postgres".to_owned(),
        }
    }

    /// Writes that failed so far (storage errors, refusals, full queue); each was logged and returned.
    pub fn write_errors(&self) -> u64 {
        match &self.backend {
            Backend::Sqlite(l) => l.write_errors(),
            Backend::Postgres(l) => l.write_errors(),
        }
    }

    /// Histograms for `/metrics`: each write's time to durable, and the backend's transactions.
    pub fn latency_histograms(&self) -> LedgerHistograms {
        match &self.backend {
            Backend::Sqlite(l) => l.latency_histograms(),
            Backend::Postgres(l) => l.latency_histograms(),
        }
    }

    /// Record a prompt on arrival (idempotent by `(session_id, request_id)`); resolves once durable.
    ///
    /// The write is queued when this is called, not when the future is first polled.
    pub fn record_prompt(&self, r: PromptRecord) -> Written {
        self.write(Write::Prompt(r.into()))
    }

    /// Record an answer before it is written; resolves once durable.
    ///
    /// On SQLite the ledger's rules are checked when the write is applied (a refused
    /// decision is logged and counted, [`Ledger::write_errors`]); on PostgreSQL the
    /// future carries the refusal ([`LedgerError::AlreadyDecided`], ...). Repeating the
    /// stored decision is a no-op on both.
    pub fn record_decision(&self, r: DecisionRecord) -> Written {
        self.write(Write::Decision(r.into()))
    }

    /// Record that the answer was written to the socket: the first write sets
    /// `delivered_at`, every write (resends included) counts in `deliveries`.
    pub fn mark_delivered(&self, session_id: &str, request_id: &str, at: SystemTime) -> Written {
        self.write(Write::Delivered {
            session_id: session_id.to_owned(),
            request_id: request_id.to_owned(),
            at: super::record::to_ms(at),
        })
    }

    /// Record a prompt as the registry holds it (its JSON copied as the session sent it).
    pub fn append_prompt(
        &self,
        session_id: &str,
        prompt: &PermissionPrompt,
        received_at: SystemTime,
    ) -> Written {
        match &self.backend {
            Backend::Sqlite(l) => Written::ready(l.append_prompt(session_id, prompt, received_at)),
            Backend::Postgres(l) => l.write(Write::Prompt(PromptRow::received(
                session_id,
                prompt,
                received_at,
            ))),
        }
    }

    /// Record a prompt and then `decision` on it (its row is not durable yet): on
    /// PostgreSQL both commit in one transaction (a rule's answer on arrival waits for one
    /// commit, not two); to SQLite's journal they are appended in turn.
    pub fn append_prompt_and_decision(
        &self,
        session_id: &str,
        prompt: &PermissionPrompt,
        received_at: SystemTime,
        decision: DecisionRecord,
    ) -> Written {
        match &self.backend {
            Backend::Sqlite(_) => self
                .append_prompt(session_id, prompt, received_at)
                .then(|| self.record_decision(decision)),
            Backend::Postgres(l) => l.write_together(
                Write::Prompt(PromptRow::received(session_id, prompt, received_at)),
                Write::Decision(decision.into()),
            ),
        }
    }

    /// Queue one write as the journal stores it (tests drive both backends with the same ones).
    #[cfg(test)]
    pub(super) fn write_raw(&self, write: Write) -> Written {
        self.write(write)
    }

    fn write(&self, write: Write) -> Written {
        match &self.backend {
            Backend::Sqlite(l) => Written::ready(l.write(write)),
            Backend::Postgres(l) => l.write(write),
        }
    }

    /// Resolves once every write queued before it is committed (audit reads, tests, shutdown).
    pub fn flush(&self) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        let flushed: Pin<Box<dyn Future<Output = _> + Send>> = match &self.backend {
            Backend::Sqlite(l) => Box::pin(l.flush()),
            Backend::Postgres(l) => Box::pin(l.flush()),
        };
        flushed
    }

    /// Delete finished rows received before `before` now (background pruning does this by itself).
    pub fn prune(
        &self,
        before: SystemTime,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send + 'static {
        let pruned: Pin<Box<dyn Future<Output = _> + Send>> = match &self.backend {
            Backend::Sqlite(l) => Box::pin(l.prune(before)),
            Backend::Postgres(l) => Box::pin(l.prune(before)),
        };
        pruned
    }

    /// One page of the audit log; it includes every write queued before the call.
    pub fn query(
        &self,
        q: LedgerQuery,
    ) -> impl Future<Output = Result<LedgerPage, LedgerError>> + Send + 'static {
        let page: Pin<Box<dyn Future<Output = _> + Send>> = match &self.backend {
            Backend::Sqlite(l) => Box::pin(l.query(q)),
            Backend::Postgres(l) => Box::pin(l.query(q)),
        };
        page
    }

    /// What the ledger holds for one prompt, including every write queued before the call
    /// (a replay the registry no longer remembers).
    pub fn lookup(
        &self,
        session_id: &str,
        request_id: &str,
    ) -> impl Future<Output = Result<Stored, LedgerError>> + Send + 'static {
        let stored: Pin<Box<dyn Future<Output = _> + Send>> = match &self.backend {
            Backend::Sqlite(l) => Box::pin(l.lookup(session_id, request_id)),
            Backend::Postgres(l) => Box::pin(l.lookup(session_id, request_id)),
        };
        stored
    }

    /// One session's pending prompts and undelivered answers, oldest first (a session this
    /// instance of a cluster took over), including every write queued before the call.
    pub fn unfinished_of(
        &self,
        session: &str,
    ) -> impl Future<Output = Result<Vec<Unfinished>, LedgerError>> + Send + 'static {
        let rows: Pin<Box<dyn Future<Output = _> + Send>> = match &self.backend {
            Backend::Sqlite(l) => Box::pin(l.unfinished_of(session)),
            Backend::Postgres(l) => Box::pin(l.unfinished_of(session)),
        };
        rows
    }

    /// One session's finished prompts, newest first, up to `max_rows` and about
    /// `max_bytes`, for a cluster member taking it over (PostgreSQL; a SQLite ledger is
    /// one instance's and answers "incomplete", so that replays are looked up one by one).
    pub fn resolved_of(
        &self,
        session: &str,
        max_rows: usize,
        max_bytes: usize,
    ) -> impl Future<Output = Result<ResolvedRows, LedgerError>> + Send + 'static {
        let rows: Pin<Box<dyn Future<Output = _> + Send>> = match &self.backend {
            Backend::Sqlite(_) => Box::pin(std::future::ready(Ok(ResolvedRows {
                rows: Vec::new(),
                incomplete: vec![session.to_owned()],
            }))),
            Backend::Postgres(l) => Box::pin(l.resolved_of(session, max_rows, max_bytes)),
        };
        rows
    }

    /// One prompt's records, whatever its state (`None`: never recorded).
    pub fn entry(
        &self,
        session_id: &str,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<Unfinished>, LedgerError>> + Send + 'static {
        let found: Pin<Box<dyn Future<Output = _> + Send>> = match &self.backend {
            Backend::Sqlite(l) => Box::pin(l.entry(session_id, request_id)),
            Backend::Postgres(l) => Box::pin(l.entry(session_id, request_id)),
        };
        found
    }

    /// Stream every row matching `q` (newest first, `limit` ignored) into `out`; returns the
    /// count. Blocking; it sees what is committed (await [`Ledger::flush`] first).
    pub fn export(
        &self,
        q: &LedgerQuery,
        out: impl FnMut(LedgerRow) -> std::io::Result<()>,
    ) -> Result<u64, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.export(q, out),
            Backend::Postgres(l) => l.export(q, out),
        }
    }

    /// Pending prompts and undelivered answers, oldest first, for the registry to restore. Blocking.
    pub fn load_unfinished(&self) -> Result<Vec<Unfinished>, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.load_unfinished(),
            Backend::Postgres(l) => l.load_unfinished(),
        }
    }

    /// Finished prompts, newest first, up to `max_rows` and about `max_bytes`, for the
    /// registry to match replays after a restart. Blocking.
    pub fn load_resolved(
        &self,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<ResolvedRows, LedgerError> {
        match &self.backend {
            Backend::Sqlite(l) => l.load_resolved(max_rows, max_bytes),
            Backend::Postgres(l) => l.load_resolved(max_rows, max_bytes),
        }
    }

    /// Hold the SQLite applier before its next batch while the guard lives (tests of back-pressure).
    #[cfg(test)]
    pub(super) fn hold_applier(&self) -> parking_lot::MutexGuard<'_, ()> {
        match &self.backend {
            Backend::Sqlite(l) => l.hold_applier(),
            Backend::Postgres(_) => panic!("hold_applier is a SQLite test hook"),
        }
    }
}

impl From<PromptRecord> for PromptRow {
    fn from(r: PromptRecord) -> Self {
        PromptRow {
            input: r.input.to_string(),
            request: r.request.to_string(),
            received_at: super::record::to_ms(r.received_at),
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
            decided_at: super::record::to_ms(r.decided_at),
            updated_input: r.updated_input.map(|v| v.to_string()),
            answer: r.answer,
            reason: r.reason,
            session_id: r.session_id,
            request_id: r.request_id,
            decided_by: r.decided_by,
        }
    }
}

/// Hears that a ledger closed ([`Ledger::closing`]).
pub struct Closing(pub(super) std::sync::mpsc::Receiver<()>);

impl Closing {
    /// Block until the ledger is closed, or `timeout` passed (false).
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        matches!(
            self.0.recv_timeout(timeout),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) | Ok(())
        )
    }
}
