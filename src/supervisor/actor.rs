//! The `Supervisor` actor: owns the session set, spawns each session actor on an
//! arbiter with panic isolation, and applies the restart budget.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::dev::channel;
use actix::prelude::*;
use futures_util::future::{join_all, FutureExt};
use tokio::sync::oneshot;
use tracing::{error, info, info_span, Instrument};

use super::slot::{ExitAction, Slot};
use crate::config::{SessionSpec, SupervisorConfig};
use crate::events::EventBus;
use crate::registry::{PermissionRegistry, SessionDisconnected, TrackSession};
use crate::session::{
    CloseSession, GetStatus, SessionActor, SessionReport, SessionShared, SessionState,
    SessionStatus,
};
use crate::telemetry::sessions::{
    RestartScheduled, RestartsExhausted, SessionCrashed, SessionEnded, SessionRespawned,
};
use ccr_protocol::reply::SessionView;

/// Session actor mailbox capacity (callers using `send` wait when it is full).
const MAILBOX: usize = 256;
/// How long a status query waits for a busy session before using the last report.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts, watches and restarts session actors.
pub struct Supervisor {
    pub(super) cfg: SupervisorConfig,
    shared: Arc<SessionShared>,
    pub(super) arbiters: Vec<ArbiterHandle>,
    pub(super) slots: BTreeMap<Arc<str>, Slot>,
    pub(super) bus: EventBus,
    pub(super) registry: Addr<PermissionRegistry>,
    /// Round-robin position for sessions added at run time.
    pub(super) next_arbiter: usize,
    drained: Vec<oneshot::Sender<()>>,
    shutting_down: bool,
    /// In a cluster: sessions run only while this instance holds their lease.
    pub(super) cluster: Option<super::cluster::SupervisorCluster>,
}

impl Supervisor {
    /// Build the supervisor and its shared session context; sessions start when it starts.
    ///
    /// With `cluster`, no session starts by itself: each starts when this instance takes
    /// its lease ([`crate::cluster::Own`]) and stops when it goes ([`crate::cluster::Disown`]).
    pub fn start_with(
        cfg: SupervisorConfig,
        sessions: Vec<Arc<SessionSpec>>,
        arbiters: Vec<ArbiterHandle>,
        cluster: Option<super::cluster::SupervisorCluster>,
        make_shared: impl FnOnce(Recipient<SessionReport>) -> SessionShared,
    ) -> Addr<Self> {
        assert!(!arbiters.is_empty(), "at least one session arbiter");
        <Supervisor as Actor>::create(move |ctx: &mut Context<Self>| {
            let shared = Arc::new(make_shared(ctx.address().recipient()));
            // Told before anyone can answer: the registry refuses answers for other sessions.
            for spec in &sessions {
                shared.registry.do_send(TrackSession(
                    spec.id.clone(),
                    Arc::from(spec.labels.clone()),
                ));
            }
            let clustered = cluster.is_some();
            let slots = sessions
                .into_iter()
                .enumerate()
                .map(|(i, spec)| {
                    let mut slot = Slot::new(spec.clone(), &cfg, i % arbiters.len());
                    if clustered {
                        // Not run here until this instance takes its lease.
                        slot.status.state = crate::session::SessionState::Disconnected;
                    }
                    (spec.id.clone(), slot)
                })
                .collect();
            Supervisor {
                bus: shared.bus.clone(),
                registry: shared.registry.clone(),
                cfg,
                shared,
                arbiters,
                slots,
                drained: vec![],
                shutting_down: false,
                next_arbiter: 0,
                cluster,
            }
        })
    }

    /// Spawn a new incarnation of `id` on its arbiter, catching panics.
    pub(super) fn spawn_session(&mut self, id: &Arc<str>, ctx: &mut Context<Self>) {
        if self.shutting_down || !self.may_run(id) || !self.adopted_here(id) {
            return;
        }
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        // One actor per session: a restart timer that fires after the session was started
        // by another path meanwhile (a lease renewed after it lapsed) starts nothing.
        if slot.addr.as_ref().is_some_and(|a| a.connected()) {
            return;
        }
        slot.incarnation += 1;
        let incarnation = slot.incarnation;
        let (tx, rx) = channel::channel::<SessionActor>(MAILBOX);
        slot.addr = Some(Addr::new(tx));
        let spec = slot.spec.clone();
        let shared = self.shared.clone();
        let me = ctx.address();
        let arbiter = &self.arbiters[slot.arbiter];
        let spawned = arbiter.spawn_fn(move || {
            let span = info_span!("session", session_id = %spec.id);
            let session_id = spec.id.clone();
            let actor = SessionActor::new(spec, shared, incarnation);
            let fut = Context::with_receiver(rx).into_future(actor);
            // Combinators, not an `async` block: a block would keep the captured actor
            // future and the one it awaits side by side, doubling every session's task
            // (2.3 KiB measured, over a quarter of an idle session's memory; 1.25 KiB now).
            let task = AssertUnwindSafe(fut.instrument(span))
                .catch_unwind()
                .map(move |outcome| {
                    me.do_send(SessionExited {
                        session_id,
                        incarnation,
                        panic: outcome.err().map(|p| panic_message(&*p)),
                    })
                });
            actix_rt::spawn(task);
        });
        if !spawned {
            error!(session_id = %id, "session arbiter is gone; cannot start session");
        }
    }

    /// Session `id` as listed: its fresh status if running, else the last one; with
    /// `elsewhere`, the state its owner announced when another instance runs it.
    fn view(
        &self,
        id: &Arc<str>,
        fresh: Option<SessionStatus>,
        elsewhere: bool,
    ) -> Option<SessionView> {
        let slot = self.slots.get(id)?;
        let mut status = fresh.unwrap_or_else(|| slot.status.clone());
        // A final state decided by the supervisor (restart budget) wins over the last report.
        if slot.addr.is_none() {
            status.state = slot.status.state.clone();
        }
        if let Some((state, last_error)) = self.state_elsewhere(id).filter(|_| elsewhere) {
            status.state = state;
            status.last_error = last_error;
        } else if status.last_error.is_none() {
            status.last_error = slot.last_crash.clone();
        }
        status.counters = slot.carried.add(&status.counters);
        status.counters.restarts = slot.restarts;
        Some(SessionView {
            id: id.clone(),
            labels: slot.spec.labels.clone(),
            viewer_only: slot.spec.viewer_only,
            incarnation: slot.incarnation,
            status,
        })
    }

    /// Session `id`'s state and last error as the supervisor last decided them.
    fn state_of(&self, id: &Arc<str>) -> Option<(SessionState, Option<String>)> {
        let status = &self.slots.get(id)?.status;
        Some((status.state.clone(), status.last_error.clone()))
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    pub(super) fn check_drained(&mut self) {
        if self.shutting_down && self.slots.values().all(|s| s.addr.is_none()) {
            for tx in self.drained.drain(..) {
                let _ = tx.send(());
            }
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.cluster.is_some() {
            info!(
                sessions = self.slots.len(),
                "clustered: each session starts when this instance takes its lease"
            );
            return;
        }
        let ids: Vec<Arc<str>> = self.slots.keys().cloned().collect();
        info!(
            sessions = ids.len(),
            arbiters = self.arbiters.len(),
            "starting sessions"
        );
        for id in ids {
            self.spawn_session(&id, ctx);
        }
    }
}

impl Handler<SessionReport> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: SessionReport, _: &mut Context<Self>) {
        if let Some(slot) = self.slots.get_mut(&msg.session_id) {
            if slot.incarnation == msg.incarnation {
                slot.status = msg.status;
                self.announce(&msg.session_id, false);
            }
        }
    }
}

/// A session actor's task ended, normally or by panic.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SessionExited {
    /// Session id.
    pub session_id: Arc<str>,
    /// Which incarnation ended.
    pub incarnation: u64,
    /// The panic message, if it panicked.
    pub panic: Option<String>,
}

impl Handler<SessionExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: SessionExited, ctx: &mut Context<Self>) {
        let _span = info_span!("session", session_id = %msg.session_id).entered();
        let Some(slot) = self.slots.get_mut(&msg.session_id) else {
            return;
        };
        let panic = msg.panic.as_deref();
        let action = slot.on_exit(msg.incarnation, panic, self.shutting_down, Instant::now());
        if !matches!(action, ExitAction::Stale) {
            // The actor may have died without saying so: its connection is gone.
            self.registry.do_send(SessionDisconnected {
                session_id: msg.session_id.clone(),
                conn: None,
            });
        }
        self.perform_exit(&msg.session_id, action, ctx);
        // Its state may have changed (released, restarting, failed): the cluster hears it.
        self.announce(&msg.session_id, false);
    }
}

impl Supervisor {
    /// Do what [`Slot::on_exit`] decided for session `id`.
    fn perform_exit(&mut self, id: &Arc<str>, action: ExitAction, ctx: &mut Context<Self>) {
        match action {
            ExitAction::Stale => {}
            ExitAction::Stop { state } => SessionEnded { state }.emit(),
            ExitAction::Forget(waiters) => {
                self.forget(id, ctx);
                for w in waiters {
                    let _ = w.send(());
                }
                self.check_drained();
            }
            ExitAction::Respawn => {
                SessionRespawned.emit();
                self.spawn_session(id, ctx)
            }
            ExitAction::Drained => self.check_drained(),
            ExitAction::Released => {
                // Claimed here again while it closed (its `Own` came while it still ran):
                // adopted again, then started.
                if !self.shutting_down {
                    self.adopt_if_held(id, ctx);
                }
                self.check_drained();
            }
            ExitAction::Restart { after, cause } => {
                SessionCrashed { cause: &cause }.emit();
                let id2 = id.clone();
                ctx.run_later(after, move |act, ctx| act.spawn_session(&id2, ctx));
                if let Some((state, last_error)) = self.state_of(id) {
                    let session_id = id.clone();
                    RestartScheduled {
                        session_id,
                        state,
                        last_error,
                    }
                    .emit(&self.shared.metrics, &self.bus);
                }
            }
            ExitAction::GiveUp { cause } => {
                SessionCrashed { cause: &cause }.emit();
                if let Some((state, last_error)) = self.state_of(id) {
                    let session_id = id.clone();
                    let labels = self.slots.get(id).map(|s| s.spec.labels.clone());
                    RestartsExhausted {
                        session_id,
                        state,
                        last_error,
                        labels: labels.unwrap_or_default().into(),
                    }
                    .emit((&self.bus, &self.shared.notifier));
                }
            }
        }
    }
}

/// List every session (or one), with fresh counters.
#[derive(Message, Debug, Default)]
#[rtype(result = "Vec<SessionView>")]
pub struct ListSessions {
    /// Only this session, if given.
    pub only: Option<String>,
    /// In a cluster, show a session another instance runs in the state its owner last
    /// announced (`GET /v1/sessions`), instead of this instance's own (`disconnected`,
    /// as the metrics and `/readyz` count it).
    pub elsewhere: bool,
}

impl Handler<ListSessions> for Supervisor {
    type Result = ResponseActFuture<Self, Vec<SessionView>>;

    fn handle(&mut self, msg: ListSessions, _: &mut Context<Self>) -> Self::Result {
        let ids: Vec<Arc<str>> = self
            .slots
            .keys()
            .filter(|id| msg.only.as_deref().is_none_or(|o| o == &***id))
            .cloned()
            .collect();
        let addrs = ids
            .iter()
            .map(|id| self.slots.get(id).and_then(|s| s.addr.clone()));
        let all = join_all(addrs.map(fresh_status));
        let elsewhere = msg.elsewhere;
        Box::pin(all.into_actor(self).map(move |fresh, act, _| {
            ids.iter()
                .zip(fresh)
                .filter_map(|(id, f)| act.view(id, f, elsewhere))
                .collect()
        }))
    }
}

/// A live session actor's status, or `None` when it has none or does not answer in time.
async fn fresh_status(addr: Option<Addr<SessionActor>>) -> Option<SessionStatus> {
    let addr = addr?;
    tokio::time::timeout(STATUS_TIMEOUT, addr.send(GetStatus))
        .await
        .ok()?
        .ok()
}

/// What the API needs to talk to one session directly.
#[derive(Debug, Clone)]
pub struct SessionRef {
    /// The live actor, if running.
    pub addr: Option<Addr<SessionActor>>,
    /// Watch-only session.
    pub viewer_only: bool,
    /// Labels from config.
    pub labels: Vec<String>,
}

/// Find a session by id.
#[derive(Message, Debug)]
#[rtype(result = "Option<SessionRef>")]
pub struct LookupSession(pub String);

impl Handler<LookupSession> for Supervisor {
    type Result = Option<SessionRef>;

    fn handle(&mut self, msg: LookupSession, _: &mut Context<Self>) -> Self::Result {
        self.slots.get(msg.0.as_str()).map(|s| SessionRef {
            addr: s.addr.clone(),
            viewer_only: s.spec.viewer_only,
            labels: s.spec.labels.clone(),
        })
    }
}

/// Close every session with 1000 and resolve when all actors have ended.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ShutdownSessions;

impl Handler<ShutdownSessions> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: ShutdownSessions, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        for slot in self.slots.values() {
            if let Some(addr) = &slot.addr {
                addr.do_send(CloseSession);
            }
        }
        self.check_drained();
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// Test-only: make a session actor panic in a handler.
#[cfg(feature = "test-hooks")]
#[derive(Message, Debug)]
#[rtype(result = "bool")]
pub struct PanicSession(pub String);

#[cfg(feature = "test-hooks")]
impl Handler<PanicSession> for Supervisor {
    type Result = bool;

    fn handle(&mut self, msg: PanicSession, _: &mut Context<Self>) -> bool {
        match self.slots.get(msg.0.as_str()).and_then(|s| s.addr.as_ref()) {
            Some(addr) => {
                addr.do_send(crate::session::InjectPanic);
                true
            }
            None => false,
        }
    }
}
