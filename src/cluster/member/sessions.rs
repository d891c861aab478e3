//! The lease loop's session set: this instance's `[[sessions]]` and the sessions the
//! cluster stores (`ccr_sessions`), read every round ([`super::store::round`]) and, sooner,
//! when a `NOTIFY` on [`SESSIONS_CHANNEL`](crate::cluster::SESSIONS_CHANNEL) or a change
//! made through this instance wakes the loop. The supervisor is told the set whenever it
//! changes ([`SessionSet`]); the planner plans over its two pools
//! ([`catalog`](crate::cluster::catalog)).
//!
//! Also the API's side of it ([`ClusterApi::add_session`], [`ClusterApi::remove_session`],
//! [`ClusterApi::configure`]): each resolves once its change is committed and this
//! instance's supervisor has a set read after the commit.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use ccr_protocol::reply::NameChanges;
use tokio::sync::{oneshot, watch, Notify};

use super::{ClusterApi, Cmd, Lane};
use crate::cluster::catalog::{self, Catalog, Known};
use crate::cluster::plan::Pools;
use crate::cluster::store::{self, sessions as sql, RoundRead};
use crate::cluster::SessionSet;
use crate::config::{stored_json, RuntimeTokenRules, SessionSpec};
use crate::ledger::pg::{connect, describe};
use crate::util::Swap;

/// How long a change made through the API waits for this instance's supervisor to have
/// the set that includes it (a round normally takes milliseconds).
const SYNC_WAIT: Duration = Duration::from_secs(10);

/// What the loop shares with the API and the listener about the session set.
pub(super) struct SetShared {
    /// Wakes the loop for a round now: a `NOTIFY` on `ccr_sessions`, or a change made here.
    pub(super) refresh: Notify,
    /// Reads of `ccr_sessions` started so far (each round's).
    reads: AtomicU64,
    /// The newest read whose set the supervisor was told.
    synced: watch::Sender<u64>,
    /// This instance's configured session ids (a `DELETE` of one marks it removed).
    configured: Swap<BTreeSet<Arc<str>>>,
}

impl SetShared {
    /// Resolves once the supervisor was told a set read after this call (or after
    /// [`SYNC_WAIT`]); wakes the loop for it.
    fn synced_from_now(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let want = self.reads.load(Ordering::SeqCst) + 1;
        let mut synced = self.synced.subscribe();
        self.refresh.notify_one();
        async move {
            let _ = tokio::time::timeout(SYNC_WAIT, synced.wait_for(|n| *n >= want)).await;
        }
    }
}

/// The loop's session set.
pub(super) struct SessionState {
    configured: Vec<Arc<SessionSpec>>,
    /// [`catalog::digest`] of `configured`.
    digest: i64,
    rules: RuntimeTokenRules,
    catalog: Catalog,
    known: Known,
    /// The set the supervisor was last told.
    told: Option<BTreeMap<Arc<str>, Arc<SessionSpec>>>,
    to: Recipient<SessionSet>,
    shared: Arc<SetShared>,
}

impl SessionState {
    /// This instance's `configured` sessions, stored ones built by `rules`, told to `to`.
    pub(super) fn new(
        configured: Vec<Arc<SessionSpec>>,
        rules: RuntimeTokenRules,
        to: Recipient<SessionSet>,
    ) -> Self {
        let shared = Arc::new(SetShared {
            refresh: Notify::new(),
            reads: AtomicU64::new(0),
            synced: watch::Sender::new(0),
            configured: Swap::new(Arc::new(BTreeSet::new())),
        });
        let mut state = Self {
            configured: Vec::new(),
            digest: 0,
            rules,
            catalog: Catalog::default(),
            known: Known::default(),
            told: None,
            to,
            shared,
        };
        state.configure(configured);
        state
    }

    pub(super) fn shared(&self) -> Arc<SetShared> {
        self.shared.clone()
    }

    /// The digest this member publishes.
    pub(super) fn digest(&self) -> i64 {
        self.digest
    }

    pub(super) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The planner's pools.
    pub(super) fn pools(&self) -> Pools<'_> {
        Pools {
            shared: &self.known.shared,
            configured: &self.known.configured,
        }
    }

    /// A read of `ccr_sessions` starts: its number.
    pub(super) fn start_read(&self) -> u64 {
        self.shared.reads.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Take read `n`: the catalog and the known set; the supervisor is told the set when
    /// it changed.
    pub(super) fn apply(&mut self, n: u64, read: &RoundRead) {
        self.catalog.apply(&read.listed, &read.specs, &self.rules);
        if let Some(set) = self.update() {
            self.to.do_send(set);
        }
        self.synced(n);
    }

    /// Recompute the known set; the message for the supervisor when it changed.
    fn update(&mut self) -> Option<SessionSet> {
        self.known = catalog::known(&self.configured, &self.catalog);
        if self.told.as_ref() == Some(&self.known.specs) {
            return None;
        }
        let specs = self.known.specs.clone();
        let set = SessionSet(specs.values().cloned().collect());
        tracing::info!(
            sessions = specs.len(),
            stored = self.catalog.len(),
            "cluster: the session set changed"
        );
        self.told = Some(specs);
        Some(set)
    }

    fn synced(&self, n: u64) {
        self.shared.synced.send_if_modified(|v| {
            let newer = n > *v;
            *v = (*v).max(n);
            newer
        });
    }

    /// This instance's config now lists `configured`.
    fn configure(&mut self, configured: Vec<Arc<SessionSpec>>) {
        self.digest = catalog::digest(configured.iter().map(|s| &*s.id));
        let ids = configured.iter().map(|s| s.id.clone()).collect();
        self.shared.configured.store(Arc::new(ids));
        self.configured = configured;
    }
}

impl Lane {
    /// A reload's `[[sessions]]`: delete their removal marks (a reload re-adds a configured
    /// session removed with `DELETE`, as on a single instance), plan over them from now on,
    /// and tell the supervisor the set, answering what changed. When the database cannot
    /// be reached nothing changes.
    pub(super) async fn configure(
        &mut self,
        specs: Vec<Arc<SessionSpec>>,
    ) -> Result<NameChanges, String> {
        if self
            .client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            self.client = None;
            self.client = Some(self.keep.guard(connect(&self.target)).await?);
        }
        let client = self.client.as_mut().ok_or("no connection")?;
        let ids: Vec<&str> = specs.iter().map(|s| &*s.id).collect();
        self.keep
            .guard(sql::restore_configured(&*client, &ids))
            .await
            .map_err(|e| format!("cannot restore removed sessions: {}", describe(&e)))?;
        let n = self.set.start_read();
        let read = self
            .keep
            .guard(store::round(client, self.period, &self.set.catalog))
            .await
            .map_err(|e| format!("cannot read the cluster's sessions: {}", describe(&e)))?;
        // Only now, with nothing left to fail but the supervisor itself.
        self.set.configure(specs);
        self.set
            .catalog
            .apply(&read.listed, &read.specs, &self.set.rules);
        let changes = match self.set.update() {
            None => NameChanges::default(),
            Some(set) => self
                .keep
                .guard(self.set.to.send(set))
                .await
                .map_err(|_| "the supervisor has stopped".to_owned())?
                .ok_or("the supervisor is shutting down")?,
        };
        self.set.synced(n);
        Ok(changes)
    }
}

impl ClusterApi {
    /// Store `spec` (a session added with `POST /v1/sessions` by operator `by`) for the
    /// whole cluster. `Ok(false)`: a session of its id is stored already. Resolves once
    /// committed and this instance's supervisor has a set that includes it.
    pub fn add_session(
        &self,
        spec: &SessionSpec,
        by: &str,
    ) -> impl Future<Output = Result<bool, String>> + Send + 'static {
        let shared = self.shared.clone();
        let (id, by) = (spec.id.to_string(), by.to_owned());
        let json = stored_json(spec);
        self.on_lease_thread(async move {
            let json = json.ok_or("this token source cannot be stored")?;
            let who_on = shared.me.clone();
            let added = shared
                .with_client(|c| {
                    Box::pin(async move {
                        let who = sql::Who {
                            by: &by,
                            on: &who_on,
                        };
                        sql::add(&*c, &id, &json, who).await
                    })
                })
                .await?;
            if added {
                shared.set.synced_from_now().await;
            }
            Ok(added)
        })
    }

    /// Remove session `id` for the whole cluster (`DELETE /v1/sessions/{id}` by operator
    /// `by`): a stored session's row is deleted; one configured here is marked removed.
    /// `Ok(None)`: nothing of that id to remove; else whether an instance held its lease
    /// as the removal committed. Resolves once committed and this instance's supervisor
    /// has a set without it; its owner (maybe another instance) closes it when it hears.
    pub fn remove_session(
        &self,
        id: &str,
        by: &str,
    ) -> impl Future<Output = Result<Option<bool>, String>> + Send + 'static {
        let shared = self.shared.clone();
        let (id, by) = (id.to_owned(), by.to_owned());
        self.on_lease_thread(async move {
            let configured = shared.set.configured.load().contains(id.as_str());
            let who_on = shared.me.clone();
            let removed = shared
                .with_client(|c| {
                    Box::pin(async move {
                        let who = sql::Who {
                            by: &by,
                            on: &who_on,
                        };
                        sql::remove(&*c, &id, configured, who).await
                    })
                })
                .await?;
            if removed.is_some() {
                shared.set.synced_from_now().await;
            }
            Ok(removed)
        })
    }

    /// A reload's `[[sessions]]` for this instance: see [`Lane::configure`]. Answers what
    /// changed in this instance's session set.
    pub fn configure(
        &self,
        specs: Vec<Arc<SessionSpec>>,
    ) -> impl Future<Output = Result<NameChanges, String>> + Send + 'static {
        let (done, answer) = oneshot::channel();
        let sent = self.shared.cmds.send(Cmd::Configure(specs, done)).is_ok();
        async move {
            if !sent {
                return Err("the cluster's lease loop has stopped".to_owned());
            }
            answer
                .await
                .map_err(|_| "the cluster's lease loop has stopped".to_owned())?
        }
    }

    /// Run `fut` on the lease thread's runtime (where the API's connection lives).
    fn on_lease_thread<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> impl Future<Output = Result<T, String>> + Send + 'static {
        let task = self.shared.runtime.spawn(fut);
        async move {
            task.await
                .map_err(|_| "the cluster's lease thread has stopped".to_owned())?
        }
    }
}
