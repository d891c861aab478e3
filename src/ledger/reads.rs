//! Audit reads: queries served by the pool of reader threads, each with a read-only
//! connection, and the blocking export on the caller's own connection.

use std::future::Future;
use std::sync::mpsc::{SyncSender, TrySendError};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{query, schema};
use super::{LedgerError, LedgerQuery, Sqlite, Stored};
use ccr_protocol::reply::{LedgerPage, LedgerRow};

/// Queries waiting for a reader thread before callers get `QueueFull`.
pub(super) const READ_QUEUE: usize = 1024;

/// A read job run on a reader thread with its connection.
pub(super) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// What a reader thread takes from its queue: a job, or `None` to stop.
pub(super) type ReadQueue = SyncSender<Option<ReadJob>>;

impl Sqlite {
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
        // Only after every earlier write of this prompt: a row read before its decision is
        // applied would show an answered prompt as new. A prompt whose writes are all
        // committed (a replay of one answered long ago, or a prompt never written: the
        // registry looks up every new prompt of a session whose older prompts it has
        // forgotten) is read at once, without a flush: one per lookup made the applier
        // commit every few writes at 2,000 prompts/s (docs/benchmarks.md).
        let flushed = match self.committed_for(session_id, request_id) {
            true => Flushed::No,
            false => Flushed::Required,
        };
        let (s, r) = (session_id.to_owned(), request_id.to_owned());
        self.read_with(flushed, move |conn| query::stored(conn, &s, &r))
    }

    /// One session's pending prompts and undelivered answers, oldest first.
    pub fn unfinished_of(
        &self,
        session: &str,
    ) -> impl Future<Output = Result<Vec<crate::ledger::Unfinished>, LedgerError>> + Send + 'static
    {
        let s = session.to_owned();
        self.read(move |conn| query::unfinished(conn, Some(&s)))
    }

    /// One prompt's records, whatever its state.
    pub fn entry(
        &self,
        session_id: &str,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<crate::ledger::Unfinished>, LedgerError>> + Send + 'static
    {
        let (s, r) = (session_id.to_owned(), request_id.to_owned());
        self.read(move |conn| query::entry(conn, &s, &r))
    }

    /// Run `f` on a reader thread once every write queued before the call is committed (a
    /// failed flush still leaves what is committed worth reading).
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> impl Future<Output = Result<T, LedgerError>> + Send + 'static {
        self.read_with(Flushed::Preferred, f)
    }

    /// [`Sqlite::read`], failing instead when the flush before it fails and `flushed` says
    /// the read needs it.
    fn read_with<T: Send + 'static>(
        &self,
        flushed: Flushed,
        f: impl FnOnce(&Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> impl Future<Output = Result<T, LedgerError>> + Send + 'static {
        let flush = match flushed {
            Flushed::No => None,
            Flushed::Preferred | Flushed::Required => Some(self.flush()),
        };
        let reads = self.shared.reads.clone();
        async move {
            if let Some(flush) = flush {
                if let (Err(e), Flushed::Required) = (flush.await, flushed) {
                    return Err(e);
                }
            }
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
}

/// Whether a read needs every earlier write committed before it.
#[derive(Clone, Copy)]
enum Flushed {
    /// Read what is committed now (every write the read needs is).
    No,
    /// Read what is committed even if the flush failed (audit pages).
    Preferred,
    /// Fail with the flush's error (a lookup that decides whether a prompt is new).
    Required,
}
