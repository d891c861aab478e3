//! [`ClusterMember`]: the lease loop of this instance, on a thread of its own
//! (`cluster-leases`, with a current-thread tokio runtime) so that no actor thread ever
//! waits for the database.
//!
//! Each round (at start, then every third of a lease period): heartbeat; renew the leases
//! held; read a [`Snapshot`](super::plan::Snapshot); [`Planner::step`]; carry out the plan.
//! The decisions are pure ([`Planner`], and [`book::Book`] for which leases a renewal keeps
//! and when each runs out locally); this module performs them, in this order:
//!
//! - **lost**: `fences.drop_lease`, then [`Disown`] `{lost: true}`.
//! - **release** (hand over): `fences.drop_lease`, then `store::release`, then [`Disown`]
//!   `{lost: false}` (the supervisor closes with 1000). The fence goes first so that there
//!   is no instant at which the database says the lease is free while this process may
//!   still write to the session's socket.
//! - **claim**: `store::claim`; when granted, `fences.hold(session, epoch, sent + period)`,
//!   then [`Own`].
//!
//! Local deadlines are the instant a claim or renewal was *sent* plus the period, never
//! later than the database's expiry. They are kept even while the database does not
//! answer: when its deadline passes a lease *lapses* (the fences refuse every write for
//! it, by the same deadline, but its session keeps its socket), whether or not the round
//! that would have renewed it is still waiting; `[cluster] outage_grace` later it is let go
//! (dropped, `Disown {lost: true}`). A lapsed lease renewed at its epoch is held again
//! ([`Resumed`]: the registry writes what waited); one the database no longer shows at its
//! epoch is lost. A round that fails is retried with backoff; one that takes longer than
//! two periods is abandoned and its connection dropped.
//!
//! A member (re)joins before it claims anything: when its last heartbeat is a period old
//! or more (at start, after the database was unreachable), it heartbeats and waits one
//! round, so that members started together, or cut off by the same outage, see each other
//! and split the sessions at once; the first one back would otherwise take them all, and
//! the planner balances only one session per period.
//!
//! Dropping the handle stops the loop where it is, releasing nothing (as `kill -9` would);
//! [`ClusterMember::drain`] is the graceful path.

mod api;
mod book;
mod listen;
mod sessions;
mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Recipient;
use ccr_protocol::reply::ClusterStatus;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;

use super::plan::{Epoch, Planner, Snapshot};
use super::{
    store, AnnounceStates, DecidedElsewhere, Disown, Fences, Own, Resumed, SeenElsewhere,
    SessionSet, StateElsewhere, StateOutbox,
};
use crate::config::{ClusterConfig, RuntimeTokenRules, SessionSpec};
use crate::ledger::pg::{connect, describe, PgTarget};
pub use crate::metrics::ClusterStats;
use api::ApiShared;
pub use api::ClusterApi;
use book::{Book, Expired};
use sessions::SessionState;

/// Sessions a draining member hands over per round.
pub const DRAIN_BATCH: usize = 32;
/// Pause between a draining member's rounds, so the others take each batch as it comes.
const DRAIN_GAP: Duration = Duration::from_millis(100);
/// First retry delay after a failed round (doubling up to the round cadence).
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// Handle to this instance's lease loop. Dropping it stops the loop without releasing
/// anything; [`drain`](Self::drain) first for a graceful exit.
pub struct ClusterMember {
    cmds: mpsc::UnboundedSender<Cmd>,
    api: ClusterApi,
    stats: Arc<ClusterStats>,
    /// Dropped with the handle: the loop stops where it is.
    _stop: oneshot::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The loop's commands. Unbounded, but never many: a drain is sent once, and a reload's
/// [`Cmd::Configure`] waits for its answer under the reloader's lock.
enum Cmd {
    /// Hand every session over, leave, stop; then answer.
    Drain(oneshot::Sender<()>),
    /// A reload's `[[sessions]]`: restore the removal marks of those ids, plan over them
    /// from now on, and answer what changed in the supervisor's set.
    Configure(
        Vec<Arc<SessionSpec>>,
        oneshot::Sender<Result<ccr_protocol::reply::NameChanges, String>>,
    ),
    /// Tests: do nothing at all for a while (a paused process).
    #[cfg_attr(not(any(test, feature = "test-hooks")), allow(dead_code))]
    Pause(Duration),
}

/// Whom the lease loop tells what.
pub struct Recipients {
    /// Sessions whose lease this instance took (the supervisor).
    pub owner: Recipient<Own>,
    /// Sessions whose lease it let go (the supervisor).
    pub disowner: Recipient<Disown>,
    /// Decisions recorded elsewhere for sessions held here (the registry).
    pub decided: Recipient<DecidedElsewhere>,
    /// Prompts recorded or decided for sessions held elsewhere (the registry).
    pub seen: Recipient<SeenElsewhere>,
    /// The session set this instance knows, whenever it changes (the supervisor).
    pub sessions: Recipient<SessionSet>,
    /// Session states announced by other instances (the supervisor).
    pub states: Recipient<StateElsewhere>,
    /// Announce every state held here again (the supervisor).
    pub announce: Recipient<AnnounceStates>,
    /// Lapsed leases renewed, [`Resumed`] (the registry: writes what waited).
    pub resumed: Recipient<Resumed>,
    /// Lapsed leases renewed, [`Resumed`] (the supervisor: starts a session that could
    /// not start meanwhile).
    pub restart: Recipient<Resumed>,
}

/// The sessions the loop starts with.
pub struct StartSessions {
    /// This instance's `[[sessions]]`.
    pub configured: Vec<Arc<SessionSpec>>,
    /// `[api] runtime_token_sources` / `runtime_token_dirs`: how a session stored by
    /// another instance reads its token here.
    pub rules: RuntimeTokenRules,
}

impl ClusterMember {
    /// Start the lease loop of instance `cfg.instance_id` (which must be `fences.me()`)
    /// over `sessions` (this instance's configured ones, and those the cluster stores),
    /// connecting to `target` (`PgLedger::target`), reporting to `to`, and announces the
    /// session states the supervisor puts in `outbox`. Fails only when its
    /// thread cannot start; the database is connected in the loop (and reconnected
    /// whenever needed).
    pub fn start(
        target: Arc<PgTarget>,
        cfg: &ClusterConfig,
        sessions: StartSessions,
        fences: Arc<Fences>,
        outbox: Arc<StateOutbox>,
        to: Recipients,
    ) -> Result<ClusterMember, String> {
        let Recipients {
            owner,
            disowner,
            decided,
            seen,
            resumed,
            restart,
            states,
            announce,
            sessions: set_to,
        } = to;
        if fences.me() != cfg.instance_id {
            return Err(format!(
                "the fences are instance {:?}'s, not {:?}'s",
                fences.me(),
                cfg.instance_id
            ));
        }
        let period = cfg.lease_period;
        let stats = Arc::new(ClusterStats::default());
        let set = SessionState::new(sessions.configured, sessions.rules, set_to);
        let set_shared = set.shared();
        let listener = listen::Listener {
            target: target.clone(),
            fences: fences.clone(),
            decided,
            seen,
            outbox,
            states,
            announce,
            sessions: set_shared.clone(),
            stats: stats.clone(),
            check_every: period,
        };
        let lane = Lane {
            target: target.clone(),
            me: cfg.instance_id.clone(),
            advertise: cfg.advertise_url.as_ref().map(|u| u.as_str().to_owned()),
            period,
            set,
            keep: Keeper {
                book: Book::new(period, cfg.outage_grace),
                grace: cfg.outage_grace,
                fences,
                disowner,
                stats: stats.clone(),
            },
            owner,
            resumed,
            restart,
            planner: Planner::new(cfg.instance_id.clone(), period, DRAIN_BATCH),
            client: None,
            last_beat: None,
            back_at: None,
            draining: false,
            drained: Vec::new(),
            releasing: Vec::new(),
        };
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let (thread, runtime, ()) = crate::util::runtime_thread(
            "cluster-leases",
            |_| Ok(()),
            move |runtime| {
                runtime.spawn(listener.run());
                runtime.block_on(async move {
                    tokio::select! {
                        _ = stopped => {}
                        () = lane.run(cmd_rx) => {}
                    }
                });
                // Dropping the runtime stops the listener and any status query.
            },
        )?;
        let api = ClusterApi {
            shared: Arc::new(ApiShared {
                runtime,
                target,
                me: cfg.instance_id.clone(),
                period,
                client: tokio::sync::Mutex::new(None),
                cmds: cmds.clone(),
                set: set_shared,
            }),
        };
        Ok(ClusterMember {
            cmds,
            api,
            stats,
            _stop: stop,
            thread: Some(thread),
        })
    }

    /// Graceful exit: mark this member draining, hand every lease over in batches of
    /// [`DRAIN_BATCH`] (each: drop the fence, release, `Disown {lost: false}`), leave the
    /// members table, and stop the loop. Resolves when done, or after `limit` (the loop
    /// then keeps draining until the handle is dropped).
    pub fn drain(&self, limit: Duration) -> impl Future<Output = ()> + Send + 'static {
        let (done, rx) = oneshot::channel();
        let sent = self.cmds.send(Cmd::Drain(done)).is_ok();
        async move {
            if sent {
                let _ = tokio::time::timeout(limit, rx).await;
            }
        }
    }

    /// The lease figures the loop keeps up to date (register them with
    /// `Metrics::register_cluster`).
    pub fn stats(&self) -> Arc<ClusterStats> {
        self.stats.clone()
    }

    /// The API's handle (`ApiState::cluster`).
    pub fn api(&self) -> ClusterApi {
        self.api.clone()
    }

    /// The members and the leases each holds (`GET /v1/cluster`).
    pub fn status(&self) -> impl Future<Output = Result<ClusterStatus, String>> + Send + 'static {
        self.api.status()
    }

    /// Tests: the loop does nothing at all for `d` (as a process paused by `SIGSTOP`);
    /// the listener and status queries go on.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn pause(&self, d: Duration) {
        let _ = self.cmds.send(Cmd::Pause(d));
    }
}

impl Drop for ClusterMember {
    fn drop(&mut self) {
        // `_stop` drops after this body and stops the loop; the thread is joined by a
        // watcher so that dropping the handle never blocks an actor thread.
        if let Some(t) = self.thread.take() {
            crate::util::join_in_background(t, "the cluster's lease thread");
        }
    }
}

/// The leases held and whom to tell when one is let go.
struct Keeper {
    book: Book,
    /// `[cluster] outage_grace`, for the logs.
    grace: Duration,
    fences: Arc<Fences>,
    disowner: Recipient<Disown>,
    stats: Arc<ClusterStats>,
}

impl Keeper {
    /// `session`'s lease is gone: out of the book and the fences, then `Disown {lost: true}`.
    fn lose(&mut self, session: &Arc<str>) {
        if self.book.remove(session).is_some() {
            self.lost(session);
        }
    }

    /// A session already out of the book: out of the fences, then `Disown {lost: true}`.
    fn lost(&self, session: &Arc<str>) {
        self.fences.drop_lease(session);
        self.disowner.do_send(Disown {
            session: session.clone(),
            lost: true,
        });
    }

    /// At `now`: mark the leases whose local deadline passed as lapsed (their sessions send
    /// nothing, by the fences' same deadline, but keep their sockets), and let go of those
    /// whose `outage_grace` ran out too.
    fn expire(&mut self, now: Instant) {
        let Expired { lapsed, gone } = self.book.expire(now);
        if !lapsed.is_empty() {
            tracing::warn!(
                leases = lapsed.len(),
                grace = ?self.grace,
                "cluster: leases could not be renewed in time; their sessions stay connected but send nothing until the database renews them, for up to outage_grace"
            );
        }
        if !gone.is_empty() {
            tracing::warn!(
                leases = gone.len(),
                "cluster: leases ran out before they could be renewed; their sessions are closed"
            );
        }
        for s in &gone {
            self.lost(s);
        }
        self.count();
    }

    fn count(&self) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.stats.leases_held.set(gauge(self.book.len()));
        self.stats.leases_lapsed.set(gauge(self.book.lapsed()));
    }

    /// Await `fut`, letting go of each lease whose deadline passes meanwhile.
    async fn guard<T>(&mut self, fut: impl Future<Output = T>) -> T {
        tokio::pin!(fut);
        loop {
            let next = self.book.next_deadline();
            tokio::select! {
                biased;
                out = &mut fut => return out,
                () = sleep_until(next) => self.expire(Instant::now()),
            }
        }
    }
}

/// The loop's state.
struct Lane {
    target: Arc<PgTarget>,
    me: String,
    advertise: Option<String>,
    period: Duration,
    /// The sessions planned over, and whom to tell when they change.
    set: SessionState,
    keep: Keeper,
    owner: Recipient<Own>,
    resumed: Recipient<Resumed>,
    restart: Recipient<Resumed>,
    planner: Planner,
    client: Option<Client>,
    /// When the last heartbeat that succeeded was sent.
    last_beat: Option<Instant>,
    /// When this member rejoined after an outage, while it waits for its peers
    /// ([`owners_missing`]).
    back_at: Option<Instant>,
    draining: bool,
    /// Who waits for the drain to finish.
    drained: Vec<oneshot::Sender<()>>,
    /// Handed over (fence dropped) but not yet disowned: the round was cut short.
    releasing: Vec<Arc<str>>,
}

impl Lane {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let cadence = self.period / 3;
        let mut backoff = Backoff::new(cadence);
        let mut next = Instant::now();
        let set = self.set.shared();
        loop {
            let deadline = self.keep.book.next_deadline();
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(Cmd::Drain(done)) => {
                        self.draining = true;
                        self.drained.push(done);
                        next = Instant::now();
                    }
                    Some(Cmd::Configure(specs, done)) => {
                        // Bounded like a round: a database that stopped answering (a
                        // partition: no error, no statement timeout) must not hold the
                        // renewals, heartbeats and drains behind a reload for minutes.
                        let limit = self.period * 2;
                        let result = match tokio::time::timeout(limit, self.configure(specs)).await {
                            Ok(r) => r,
                            Err(_) => {
                                self.client = None;
                                Err(format!("the database did not answer within {limit:?}; nothing changed"))
                            }
                        };
                        let _ = done.send(result);
                        next = Instant::now();
                    }
                    Some(Cmd::Pause(d)) => tokio::time::sleep(d).await,
                },
                () = set.refresh.notified() => next = next.min(Instant::now()),
                () = sleep_until(deadline) => self.keep.expire(Instant::now()),
                () = tokio::time::sleep_until(next.into()) => {
                    let limit = self.period * 2;
                    let renewing = !self.keep.book.is_empty();
                    let result = match tokio::time::timeout(limit, self.round()).await {
                        Ok(r) => r,
                        Err(_) => {
                            self.client = None;
                            Err(format!("a lease round took longer than {limit:?}"))
                        }
                    };
                    match result {
                        Ok(ours) => {
                            backoff.reset();
                            if self.draining && ours == 0 && self.keep.book.is_empty() && self.leave().await {
                                return;
                            }
                            next = Instant::now() + if self.draining { DRAIN_GAP } else { cadence };
                        }
                        Err(e) => {
                            if renewing {
                                // Whatever step failed, the leases held were not renewed.
                                self.keep.stats.renewals_failed.inc();
                            }
                            tracing::warn!(error = %e, held = self.keep.book.len(), "cluster: a lease round failed; retrying");
                            next = Instant::now() + backoff.next();
                        }
                    }
                }
            }
        }
    }

    /// One round; returns how many valid leases the snapshot showed as ours.
    async fn round(&mut self) -> Result<usize, String> {
        for s in std::mem::take(&mut self.releasing) {
            self.disown_handed_over(&s);
        }
        self.keep.expire(Instant::now());
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.client = Some(self.keep.guard(connect(&self.target)).await?);
        }
        let client = self.client.as_mut().ok_or("no connection")?;
        let keep = &mut self.keep;
        let (me, period) = (self.me.as_str(), self.period);
        let rejoin = self.last_beat.is_none_or(|t| t.elapsed() >= period);
        // A member before this round (else this is its first join, not a return).
        let was_member = self.last_beat.is_some();
        let beat = Instant::now();
        keep.guard(store::heartbeat(
            &*client,
            me,
            self.advertise.as_deref(),
            self.draining,
            self.set.digest(),
        ))
        .await
        .map_err(|e| describe(&e))?;
        self.last_beat = Some(beat);
        let asked = keep.book.to_renew();
        if !asked.is_empty() {
            let sent = Instant::now();
            let renewed = keep
                .guard(store::renew(&*client, me, &asked, period))
                .await
                .map_err(|e| describe(&e))?
                .into_iter()
                .collect();
            let r = keep.book.renewed(&asked, &renewed, sent, Instant::now());
            for (s, epoch, deadline) in &r.kept {
                keep.fences.hold(s, *epoch, *deadline);
            }
            for s in &r.lost {
                keep.lost(s);
            }
            if !r.resumed.is_empty() {
                tracing::info!(
                    leases = r.resumed.len(),
                    "cluster: lapsed leases renewed; their sessions act again"
                );
            }
            for s in r.resumed {
                self.resumed.do_send(Resumed { session: s.clone() });
                self.restart.do_send(Resumed { session: s });
            }
            keep.count();
        }
        let read_no = self.set.start_read();
        let read = keep
            .guard(store::round(client, period, self.set.catalog()))
            .await
            .map_err(|e| describe(&e))?;
        // The supervisor learns of added and removed sessions before this round's plan
        // is carried out: a session claimed below has its slot, and one removed is
        // forgotten (its pending prompts cancelled) before its lease is handed over.
        self.set.apply(read_no, &read);
        let snap = read.snapshot;
        let keep = &mut self.keep;
        keep.stats
            .members
            .set(i64::try_from(snap.members.len()).unwrap_or(i64::MAX));
        let ours = snap
            .leases
            .values()
            .filter(|l| l.owner == me && l.expired_for.is_none())
            .count();
        if rejoin {
            // Back after an outage (not the first join): its peers may be back a moment
            // later, and renew their lapsed leases themselves if not claimed first.
            self.back_at = was_member.then(Instant::now);
            return Ok(ours);
        }
        if let Some(back) = self.back_at {
            if back.elapsed() < period && owners_missing(&snap, me) {
                return Ok(ours);
            }
            self.back_at = None;
        }
        let plan = self.planner.plan(
            Instant::now(),
            &snap,
            self.set.pools(),
            &self.keep.book.epochs(),
        );
        for s in &plan.lost {
            self.keep.lose(s);
        }
        let released = self.release(&plan.release).await;
        let claimed = self.claim(&plan.claim, &snap).await;
        self.keep.count();
        released?;
        claimed?;
        Ok(ours)
    }

    /// Hand `release` over: drop each fence, release in the database (all at once), then
    /// `Disown {lost: false}`, or `{lost: true}` for a lease that was no longer ours.
    async fn release(&mut self, release: &[(Arc<str>, Epoch)]) -> Result<(), String> {
        if release.is_empty() {
            return Ok(());
        }
        for (s, _) in release {
            if self.keep.book.remove(s).is_some() {
                self.keep.fences.drop_lease(s);
                self.releasing.push(s.clone());
            }
        }
        let client = self.client.as_ref().ok_or("no connection")?;
        let me = self.me.as_str();
        let all = release
            .iter()
            .map(|(s, epoch)| store::release(client, me, s, *epoch));
        let results = self.keep.guard(futures_util::future::join_all(all)).await;
        let mut failed = None;
        for ((s, _), r) in release.iter().zip(results) {
            let Some(i) = self.releasing.iter().position(|r| r == s) else {
                continue; // never held by this process (a draining member's leftover)
            };
            self.releasing.swap_remove(i);
            match r {
                Ok(true) => self.disown_handed_over(s),
                Ok(false) => self.keep.lost(s),
                Err(e) => {
                    // Closed all the same: the lease runs out by itself, and is claimed then.
                    failed = Some(describe(&e));
                    self.disown_handed_over(s);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn disown_handed_over(&self, session: &Arc<str>) {
        self.keep.disowner.do_send(Disown {
            session: session.clone(),
            lost: false,
        });
    }

    /// Claim `claim` (all at once); each one granted is held, then owned.
    async fn claim(&mut self, claim: &[Arc<str>], snap: &Snapshot) -> Result<(), String> {
        if claim.is_empty() {
            return Ok(());
        }
        let client = self.client.as_ref().ok_or("no connection")?;
        let (me, period) = (self.me.as_str(), self.period);
        let sent = Instant::now();
        let all = claim.iter().map(|s| store::claim(client, s, me, period));
        let results = self.keep.guard(futures_util::future::join_all(all)).await;
        let now = Instant::now();
        let mut failed = None;
        for (s, r) in claim.iter().zip(results) {
            match r {
                Ok(Some(epoch)) => {
                    if let Some(old) = self.keep.book.remove(s) {
                        // Re-claimed while held (not planned so): the old epoch is gone.
                        tracing::warn!(session = %s, old, epoch, "cluster: a held session was claimed again");
                        self.keep.lost(s);
                    }
                    let deadline = self.keep.book.claimed(s, epoch, sent);
                    if deadline <= now {
                        // The answer came too late to count: the next round claims it again.
                        self.keep.book.remove(s);
                        continue;
                    }
                    self.keep.fences.hold(s, epoch, deadline);
                    if snap.leases.get(s).is_some_and(|l| l.owner != me) {
                        self.keep.stats.takeovers.inc();
                    }
                    self.owner.do_send(Own {
                        session: s.clone(),
                        epoch,
                    });
                }
                Ok(None) => {}
                Err(e) => failed = Some(describe(&e)),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Leave the members table after a drain; true when done (the loop then stops).
    async fn leave(&mut self) -> bool {
        let Some(client) = self.client.as_ref() else {
            return false;
        };
        match store::leave(client, &self.me).await {
            Ok(()) => {
                tracing::info!("cluster: every session handed over; left the cluster");
                self.keep.stats.members.set(0);
                for done in self.drained.drain(..) {
                    let _ = done.send(());
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %describe(&e), "cluster: cannot leave the members table; retrying");
                false
            }
        }
    }
}

/// Whether `snap` shows an expired lease of another instance that is not a live member:
/// after an outage, that owner may be on its way back to renew it (its lease lapsed, its
/// session still connected), so a member just back waits for it, up to one lease period,
/// before it claims anything.
fn owners_missing(snap: &Snapshot, me: &str) -> bool {
    snap.leases.values().any(|l| {
        l.expired_for.is_some() && l.owner != me && !snap.members.iter().any(|m| m.id == l.owner)
    })
}

/// Sleep until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Retry delays after failures: from [`FIRST_RETRY`], doubling, up to `max`.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self {
            next: FIRST_RETRY.min(max),
            max,
        }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = FIRST_RETRY.min(self.max);
    }
}

#[cfg(test)]
mod tests;
