//! The PostgreSQL ledger (`[ledger] backend = "postgres"`): the same rows and rules as the
//! SQLite ledger, in a database every instance of a cluster shares.
//!
//! - The local journal cannot be the durable point (it dies with its machine), so a write
//!   is acknowledged once its PostgreSQL transaction has committed: [`writer`] commits
//!   whatever is queued in one pipelined transaction (group commit), on a connection of
//!   its own.
//! - Reads (audit pages, lookups) use a small pool of connections and first wait for the
//!   writes queued before them, like the SQLite ledger's.
//! - Everything runs on one thread of its own (`ledger-pg`) with a tokio runtime, so no
//!   actor thread ever waits for the database; the handle only queues and awaits.
//! - The schema is the service's own: [`schema::migrate`] at open, versioned, under an
//!   advisory lock.
//! - The URL is a credential: it is read from `url_env` / `url_file` at open and never
//!   logged; errors name where it came from, never what it is.
//! - TLS is as the URL's `sslmode` says, with `[ledger] ca_file`'s CAs or the public roots
//!   ([`connect`]: every connection is made there).

mod batch;
mod connect;
pub mod fence;
pub mod key;
mod read;
pub mod schema;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::handle::{Lapse, Written};
use super::lifecycle::Tuning;
use super::query::{LedgerQuery, ResolvedRows, Stored};
use super::record::{LedgerError, Unfinished};
use super::writer::{Counters, Write};
use super::LedgerHistograms;
use crate::config::{LedgerConfig, PostgresConfig};
use ccr_protocol::reply::{LedgerPage, LedgerRow};
pub use connect::{connect, describe, PgConnection, PgTarget};
use connect::{PoolConnect, CONNECT_TIMEOUT};
use fence::Fences;
use writer::{Cmd, Writes};

/// Cloneable handle to the PostgreSQL ledger; its thread stops when the last handle is dropped.
#[derive(Clone)]
pub struct PgLedger {
    shared: Arc<Shared>,
}

struct Shared {
    runtime: Handle,
    writes: mpsc::Sender<Cmd>,
    capacity: usize,
    pool: deadpool_postgres::Pool,
    counters: Arc<Counters>,
    /// In a cluster, the leases held here (prompts and deliveries are written under them).
    fences: Option<Arc<Fences>>,
    /// This instance's id, the owner its fenced writes name.
    me: Arc<str>,
    /// The cluster's key for the requests it forwards to other instances.
    key: key::ClusterKey,
    target: Arc<PgTarget>,
    /// Writes handed to the writer and not answered yet, by prompt.
    in_flight: Arc<InFlight>,
    /// Dropped with the last handle: the thread then lets the writer drain and stops.
    _stop: oneshot::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // `writes` and `_stop` drop after this body; the thread is joined by a watcher so
        // that dropping a handle never blocks an actor thread on the database.
        if let Some(t) = self.thread.take() {
            crate::util::join_in_background(t, "the ledger database thread");
        }
    }
}

/// How many writes of each prompt (a hash of its key, [`Write::key_hash`]) the writer has
/// been handed and not answered: a lookup of a prompt with none reads at once, without
/// waiting for the writer's queue. Entries go when their count does, so the map holds at
/// most the queue's capacity of them.
#[derive(Debug, Default)]
pub(super) struct InFlight(parking_lot::Mutex<std::collections::HashMap<u64, u32>>);

impl InFlight {
    fn add<'a>(&self, writes: impl Iterator<Item = &'a Write>) {
        let mut map = self.0.lock();
        for w in writes {
            let (s, r) = w.key();
            *map.entry(Write::key_hash(s, r)).or_insert(0) += 1;
        }
    }

    /// The writer answered these writes (committed, refused or failed).
    pub(super) fn done<'a>(&self, writes: impl Iterator<Item = &'a Write>) {
        let mut map = self.0.lock();
        for w in writes {
            let (s, r) = w.key();
            let h = Write::key_hash(s, r);
            if let Some(n) = map.get_mut(&h) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&h);
                }
            }
        }
    }

    fn any(&self, session_id: &str, request_id: &str) -> bool {
        self.0
            .lock()
            .contains_key(&Write::key_hash(session_id, request_id))
    }
}

impl PgLedger {
    /// Connect, migrate the schema and start the writer. Blocking; call once at startup.
    pub(crate) fn open(
        cfg: &LedgerConfig,
        pg: &PostgresConfig,
        tuning: &Tuning,
        fences: Option<Arc<Fences>>,
    ) -> Result<PgLedger, LedgerError> {
        let fail = |reason: String| LedgerError::Open {
            path: "postgres".into(),
            reason,
        };
        let target = Arc::new(PgTarget::from_config(pg).map_err(LedgerError::BadUrl)?);
        let manager = deadpool_postgres::Manager::from_connect(
            target.config().clone(),
            PoolConnect(target.clone()),
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(pg.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(pg.statement_timeout))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| fail(format!("cannot build the connection pool: {e}")))?;
        let capacity = tuning.queue_capacity.max(1);
        let (writes, rx) = mpsc::channel(capacity);
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let (wc, wt) = (counters.clone(), target.clone());
        let in_flight = Arc::new(InFlight::default());
        let wi = in_flight.clone();
        let prune = cfg
            .retention()
            .map(|r| (r, tuning.prune_every, tuning.prune_chunk, pool.clone()));
        // The runtime lives on its own thread (the caller may be inside another runtime);
        // it reports once connected and migrated: a database the service cannot use is a
        // start-up error, like a SQLite file it cannot open.
        let setup_target = wt.clone();
        let (thread, handle, key) = crate::util::runtime_thread(
            "ledger-pg",
            move |runtime| {
                runtime.block_on(async {
                    let mut client = connect(&setup_target).await?;
                    schema::migrate(&mut client).await?;
                    key::load_or_create(&client).await
                })
            },
            move |runtime| {
                let writer = runtime.spawn(writer::run(wt, rx, wc, wi));
                if let Some((retain, every, chunk, pool)) = prune {
                    runtime.spawn(prune_loop(pool, retain, every, chunk));
                }
                runtime.block_on(async move {
                    let _ = stopped.await;
                    // Every handle is gone: the writer finishes its queue, then stops.
                    let _ = writer.await;
                });
            },
        )
        .map_err(fail)?;
        Ok(PgLedger {
            shared: Arc::new(Shared {
                runtime: handle,
                key,
                target,
                writes,
                capacity,
                pool,
                counters,
                me: fences
                    .as_ref()
                    .map_or_else(|| Arc::from(""), |f| Arc::from(f.me())),
                fences,
                in_flight,
                _stop: stop,
                thread: Some(thread),
            }),
        })
    }

    /// Writes that failed so far; each was logged and returned.
    pub fn write_errors(&self) -> u64 {
        self.shared
            .counters
            .write_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Histograms for `/metrics`: each write's time to commit, the batches' transactions and
    /// how long their oldest write waited.
    pub fn latency_histograms(&self) -> LedgerHistograms {
        LedgerHistograms {
            queue_wait: self.shared.counters.queue_wait.clone(),
            commit: self.shared.counters.commit.clone(),
            apply: self.shared.counters.apply.clone(),
        }
    }

    /// Queue `write`; it resolves once committed or refused. A full queue refuses at once.
    pub(crate) fn write(&self, write: Write) -> Written {
        self.write_all(write, None)
    }

    /// Queue `first` and `then` to commit in one transaction, in that order; resolves once
    /// both are committed, or with the first refusal.
    pub(crate) fn write_together(&self, first: Write, then: Write) -> Written {
        self.write_all(first, Some(then))
    }

    fn write_all(&self, first: Write, then: Option<Write>) -> Written {
        let fenced = |w: Write| match self.fence(&w) {
            Ok(fence) => Ok((w, fence)),
            Err(err) => {
                self.shared.counters.write_failed(w.name(), &err);
                Err(err)
            }
        };
        let first = match fenced(first) {
            Ok(first) => first,
            Err(err) => return Written::ready(Err(err)),
        };
        let then = match then.map(fenced).transpose() {
            Ok(then) => then.map(Box::new),
            Err(err) => return Written::ready(Err(err)),
        };
        // A fenced write the database refuses while the lease is only lapsed (expired there,
        // still held here at its epoch, renewal pending) is retried, not given up.
        let lapse = std::iter::once(&first)
            .chain(then.as_deref())
            .find_map(|(w, fence)| Some((w, fence.as_ref()?)))
            .zip(self.shared.fences.as_ref())
            .map(|((w, f), fences)| Lapse {
                fences: fences.clone(),
                session: w.key().0.to_owned(),
                epoch: f.epoch,
            });
        let (tx, rx) = oneshot::channel();
        let writes = Writes { first, then };
        self.shared.in_flight.add(writes.iter().map(|(w, _)| w));
        let cmd = Cmd::Write(writes, tx, Instant::now());
        match self.shared.writes.try_send(cmd) {
            Ok(()) => match lapse {
                Some(lapse) => Written::fenced(rx, lapse),
                None => Written::commit(rx),
            },
            Err(e) => {
                let (err, cmd) = match e {
                    mpsc::error::TrySendError::Full(cmd) => {
                        let capacity = self.shared.capacity;
                        (LedgerError::QueueFull { capacity }, cmd)
                    }
                    mpsc::error::TrySendError::Closed(cmd) => (LedgerError::Closed, cmd),
                };
                if let Cmd::Write(writes, _, _) = &cmd {
                    self.shared.in_flight.done(writes.iter().map(|(w, _)| w));
                    for (w, _) in writes.iter() {
                        self.shared.counters.write_failed(w.name(), &err);
                    }
                }
                Written::ready(Err(err))
            }
        }
    }

    /// The lease `write` is conditional on: in a cluster, a prompt or a delivery is
    /// recorded by the session's owner only, and only under its lease; a decision may come
    /// from any instance (the first wins). Refused at once when no lease is held here.
    fn fence(&self, write: &Write) -> Result<Option<writer::Fence>, LedgerError> {
        let fences = match (&self.shared.fences, write) {
            (None, _) | (Some(_), Write::Decision(_)) => return Ok(None),
            (Some(fences), _) => fences,
        };
        let session = write.key().0;
        match fences.epoch(session) {
            Some(epoch) => Ok(Some(writer::Fence {
                owner: self.shared.me.clone(),
                epoch,
            })),
            None => {
                let session_id = session.to_owned();
                Err(if fences.holds_any(session) {
                    LedgerError::LeaseLapsed { session_id }
                } else {
                    LedgerError::NotOwner { session_id }
                })
            }
        }
    }

    /// Resolves once every write queued before it is committed.
    pub(crate) fn flush(&self) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        // A barrier carries no data: it waits for room rather than failing on a full queue.
        let writes = self.shared.writes.clone();
        async move {
            writes
                .send(Cmd::Flush(tx))
                .await
                .map_err(|_| LedgerError::Closed)?;
            rx.await.map_err(|_| LedgerError::Closed)?
        }
    }

    /// Run `f` with a pooled connection on the ledger's thread, once every write queued
    /// before the call is committed.
    fn read<T, F, Fut>(&self, f: F) -> impl Future<Output = Result<T, LedgerError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, LedgerError>> + Send + 'static,
    {
        let flushed = self.flush();
        self.read_now(
            async move {
                // A failed flush (the database away) still leaves what is committed worth reading.
                let _ = flushed.await;
            },
            f,
        )
    }

    /// [`PgLedger::read`] for one prompt's rows: it waits for the writer only while a write
    /// of that prompt is still with it ([`InFlight`]); otherwise what is committed is all
    /// there is of it, and it reads at once.
    fn read_of<T, F, Fut>(
        &self,
        session_id: &str,
        request_id: &str,
        f: F,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<T, LedgerError>> + Send + 'static>>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, LedgerError>> + Send + 'static,
    {
        if self.shared.in_flight.any(session_id, request_id) {
            Box::pin(self.read(f))
        } else {
            Box::pin(self.read_now(async {}, f))
        }
    }

    /// Run `f` with a pooled connection on the ledger's thread once `first` is done,
    /// without waiting for queued writes (leases, health: not ledger rows).
    fn read_now<T, F, Fut>(
        &self,
        first: impl Future<Output = ()> + Send + 'static,
        f: F,
    ) -> impl Future<Output = Result<T, LedgerError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, LedgerError>> + Send + 'static,
    {
        let pool = self.shared.pool.clone();
        let target = self.shared.target.clone();
        let task = self.shared.runtime.spawn(async move {
            first.await;
            let conn = pool.get().await.map_err(|e| {
                let why = match &e {
                    deadpool_postgres::PoolError::Backend(e) => target.failure(e),
                    other => other.to_string(),
                };
                LedgerError::Storage(format!("no ledger database connection: {why}"))
            })?;
            f(conn).await
        });
        async move { task.await.map_err(|_| LedgerError::Closed)? }
    }

    /// [`read`](Self::read), blocking the calling thread (startup, exports).
    fn read_blocking<T, F, Fut>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, LedgerError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let read = self.read(f);
        self.shared.runtime.spawn(async move {
            let _ = tx.send(read.await);
        });
        rx.recv().map_err(|_| LedgerError::Closed)?
    }

    /// How to reach the database (the cluster's lease loop connects with the same settings).
    pub fn target(&self) -> Arc<PgTarget> {
        self.shared.target.clone()
    }

    /// Whether the database answers a trivial query now (readiness); queued writes are not awaited.
    pub fn ping(&self) -> impl Future<Output = Result<(), LedgerError>> + Send + 'static {
        self.read_now(async {}, |c| async move {
            c.simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|e| LedgerError::Storage(describe(&e)))
        })
    }

    /// One page of the audit log.
    pub(crate) fn query(
        &self,
        q: LedgerQuery,
    ) -> impl Future<Output = Result<LedgerPage, LedgerError>> + Send + 'static {
        self.read(move |c| async move { read::page(&c, &q).await })
    }

    /// What the ledger holds for one prompt.
    pub(crate) fn lookup(
        &self,
        session_id: &str,
        request_id: &str,
    ) -> impl Future<Output = Result<Stored, LedgerError>> + Send + 'static {
        // Every new prompt of a session whose older prompts the registry forgot is looked
        // up (docs/benchmarks.md): a flush for each added a commit's wait to each.
        let (s, r) = (session_id.to_owned(), request_id.to_owned());
        self.read_of(session_id, request_id, move |c| async move {
            read::stored(&c, &s, &r).await
        })
    }

    /// Delete finished rows received before `before` now.
    pub(crate) fn prune(
        &self,
        before: SystemTime,
    ) -> impl Future<Output = Result<u64, LedgerError>> + Send + 'static {
        self.read(move |c| async move { read::prune(&c, before, 5000).await })
    }

    /// Every row matching `q`, newest first, in chunks of 500. Blocking.
    pub(crate) fn export(
        &self,
        q: &LedgerQuery,
        mut out: impl FnMut(LedgerRow) -> std::io::Result<()>,
    ) -> Result<u64, LedgerError> {
        let mut after = read::export_start(q)?;
        let mut count = 0;
        loop {
            let (query, from) = (q.clone(), after.take());
            let (rows, next) = self.read_blocking(move |c| async move {
                read::export_chunk(&c, &query, from, 500).await
            })?;
            for r in rows {
                out(r).map_err(LedgerError::Export)?;
                count += 1;
            }
            match next {
                Some(key) => after = Some(key),
                None => return Ok(count),
            }
        }
    }

    /// Pending prompts and undelivered answers, oldest first. Blocking.
    pub(crate) fn load_unfinished(&self) -> Result<Vec<Unfinished>, LedgerError> {
        self.read_blocking(|c| async move { read::unfinished(&c, None).await })
    }

    /// One session's pending prompts and undelivered answers, oldest first.
    pub(crate) fn unfinished_of(
        &self,
        session: &str,
    ) -> impl Future<Output = Result<Vec<Unfinished>, LedgerError>> + Send + 'static {
        let s = session.to_owned();
        self.read(move |c| async move { read::unfinished(&c, Some(&s)).await })
    }

    /// Undecided prompts of the whole cluster (of `session` only, if given), oldest first,
    /// each with the instance that owns its session now (`None`: no instance does).
    pub fn pending(
        &self,
        session: Option<&str>,
    ) -> impl Future<Output = Result<Vec<(LedgerRow, Option<String>)>, LedgerError>> + Send + 'static
    {
        let s = session.map(str::to_owned);
        self.read(move |c| async move { read::pending(&c, s.as_deref()).await })
    }

    /// Each session with a live lease or an undecided prompt: its owner (`None`: no live
    /// lease) and how many of its prompts are undecided.
    pub fn overview(
        &self,
    ) -> impl Future<
        Output = Result<std::collections::HashMap<String, (Option<String>, usize)>, LedgerError>,
    > + Send
           + 'static {
        self.read(|c| async move { read::overview(&c).await })
    }

    /// The instance holding `session`'s live lease, and its `advertise_url`, if any does.
    pub fn owner_of(
        &self,
        session: &str,
    ) -> impl Future<Output = Result<Option<(String, Option<String>)>, LedgerError>> + Send + 'static
    {
        let s = session.to_owned();
        // No flush: a lease is not a ledger write.
        self.read_now(
            async {},
            move |c| async move { read::owner_of(&c, &s).await },
        )
    }

    /// This instance's id in the cluster (empty when not clustered).
    pub fn instance_id(&self) -> &str {
        &self.shared.me
    }

    /// The cluster's key for requests forwarded between its instances.
    pub fn cluster_key(&self) -> &key::ClusterKey {
        &self.shared.key
    }

    /// The leases this instance holds (in a cluster).
    pub fn fences(&self) -> Option<&Arc<Fences>> {
        self.shared.fences.as_ref()
    }

    /// One session's finished prompts, newest first, up to `max_rows` and about `max_bytes`
    /// (a session taken over: a replay of one is matched to its record).
    pub(crate) fn resolved_of(
        &self,
        session: &str,
        max_rows: usize,
        max_bytes: usize,
    ) -> impl Future<Output = Result<ResolvedRows, LedgerError>> + Send + 'static {
        let s = session.to_owned();
        self.read(move |c| async move { read::resolved(&c, Some(&s), max_rows, max_bytes).await })
    }

    /// One prompt's records, whatever its state, including this instance's writes of it
    /// queued before the call. Most of these reads are of what another instance recorded
    /// (each `ccr_prompted` or `ccr_decided` a member hears for a session held elsewhere),
    /// with no write of this one queued: those read at once instead of queueing a flush
    /// each in the writer's queue, where they took room from this instance's own writes.
    pub(crate) fn entry(
        &self,
        session: &str,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<Unfinished>, LedgerError>> + Send + 'static {
        let (s, r) = (session.to_owned(), request_id.to_owned());
        self.read_of(session, request_id, move |c| async move {
            read::entry(&c, &s, &r).await
        })
    }

    /// Finished prompts, newest first, for matching replays after a restart. Blocking.
    pub(crate) fn load_resolved(
        &self,
        max_rows: usize,
        max_bytes: usize,
    ) -> Result<ResolvedRows, LedgerError> {
        self.read_blocking(
            move |c| async move { read::resolved(&c, None, max_rows, max_bytes).await },
        )
    }
}

/// Retention: prune once at start, then every `every`.
async fn prune_loop(
    pool: deadpool_postgres::Pool,
    retain: Duration,
    every: Duration,
    chunk: usize,
) {
    loop {
        let before = SystemTime::now() - retain;
        match pool.get().await {
            Ok(c) => {
                if let Err(e) = read::prune(&c, before, chunk).await {
                    tracing::warn!(error = %e, "decision ledger pruning failed; it runs again later");
                }
            }
            Err(e) => tracing::warn!(error = %e, "decision ledger pruning: no database connection"),
        }
        tokio::time::sleep(every).await;
    }
}
