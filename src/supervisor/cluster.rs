//! The supervisor in a cluster: a session runs here only while this instance holds its
//! lease. [`Own`]: its unfinished prompts are read from the shared ledger and adopted by
//! the registry, *then* it connects (a replay is then matched to what the last owner
//! recorded). [`Disown`]: it stops — closed with 1000 when handed over, dropped without
//! a byte more when the lease was lost — and the registry forgets its prompts here.
//!
//! Session states cross the cluster too: each state of a session held here is announced
//! (through the lease thread's [`StateOutbox`], never waiting), and a state another
//! instance announces for a session it holds ([`StateElsewhere`]) is published here as
//! `session_state` and shown by `GET /v1/sessions`, until this instance takes the session
//! (its own state wins) or a newer owner's state comes ([`ClusterSlot`], pure).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use tracing::{info, info_span, warn};

use super::actor::Supervisor;
use super::slot::{ExitPlan, Slot};
use crate::cluster::{
    AnnounceStates, DecidedElsewhere, Disown, Epoch, Fences, Own, Resumed, StateElsewhere,
    StateNote, StateOutbox,
};
use crate::config::SessionSpec;
use crate::ledger::Ledger;
use crate::registry::{AdoptSession, ReleaseSession};
use crate::session::{AbandonSession, CloseSession, LeaseRenewed, SessionState};
use crate::telemetry::sessions::SessionStateHeard;

/// Finished prompts of a session taken over that are loaded to match its replays; older
/// ones are looked up in the ledger when replayed.
const ADOPT_RESOLVED_ROWS: usize = 1000;
/// ... and about this many bytes of their answers.
const ADOPT_RESOLVED_BYTES: usize = 1 << 20;

/// What the supervisor of a cluster member needs: the shared ledger and the leases held.
pub struct SupervisorCluster {
    /// The shared ledger (PostgreSQL), where a session taken over has its prompts.
    pub ledger: Ledger,
    /// The leases held here.
    pub fences: Arc<Fences>,
    /// Where the states of the sessions held here go to be announced.
    pub states: Arc<StateOutbox>,
    /// The lease loop's last [`SessionSet`](crate::cluster::SessionSet): a session removed
    /// and wanted again before it closed is added back once it is forgotten.
    wanted: BTreeMap<Arc<str>, Arc<SessionSpec>>,
}

impl SupervisorCluster {
    /// A member's supervisor side, over `ledger` and the leases in `fences`, announcing
    /// the states of the sessions held here through `states`.
    pub fn new(ledger: Ledger, fences: Arc<Fences>, states: Arc<StateOutbox>) -> Self {
        Self {
            ledger,
            fences,
            states,
            wanted: BTreeMap::new(),
        }
    }
}

/// One session's place in the cluster, as the supervisor keeps it (pure): the epoch it
/// was last held here at, what was announced of it, and its owner's state while another
/// instance holds it.
#[derive(Debug, Default)]
pub(super) struct ClusterSlot {
    /// The epoch this instance last held the session's lease at.
    epoch: Option<Epoch>,
    /// The newest epoch known: this instance's claims and the owners' notes. A note of an
    /// older epoch is stale (an old owner's last words, heard after the new owner's).
    newest: Epoch,
    /// The state and last error last announced, so that an unchanged one is not again.
    announced: Option<(SessionState, Option<String>)>,
    /// The state its owner announced last, while this instance does not hold it.
    remote: Option<StateNote>,
    /// Its prompts are being read from the ledger, before it connects.
    adopting: bool,
    /// The registry adopted its prompts under the lease held now: it may start. Reset when
    /// the lease is let go (the registry releases them then).
    adopted: bool,
    /// The lease was let go while an adoption was under way: what it read may have reached
    /// the registry before the release, so it is adopted again if held.
    stale: bool,
}

impl ClusterSlot {
    /// An adoption starts; false when one is under way already (a lease claimed again).
    pub(super) fn start_adopting(&mut self) -> bool {
        !std::mem::replace(&mut self.adopting, true)
    }

    /// The adoption under way ended; `done`: the registry has the prompts and the lease is
    /// still held here. True when it must be adopted again (the lease was let go and taken
    /// again meanwhile); otherwise, when `done`, the session may start.
    pub(super) fn adopted(&mut self, done: bool) -> bool {
        self.adopting = false;
        let stale = std::mem::take(&mut self.stale);
        self.adopted = done && !stale;
        done && stale
    }

    /// The lease is let go: the registry releases its prompts, and it starts again only
    /// after another adoption (one under way is stale).
    pub(super) fn disowned(&mut self) {
        self.adopted = false;
        self.stale = self.adopting;
    }

    /// Whether its prompts are being read from the ledger, before it connects.
    pub(super) fn is_adopting(&self) -> bool {
        self.adopting
    }

    /// Whether the registry holds its prompts under the lease held now (then it may start).
    pub(super) fn is_adopted(&self) -> bool {
        self.adopted && !self.adopting
    }

    /// This instance took the lease at `epoch`: its own state counts from now on, and is
    /// announced from the next one.
    pub(super) fn owned(&mut self, epoch: Epoch) {
        self.epoch = Some(epoch);
        self.newest = self.newest.max(epoch);
        self.announced = None;
        self.remote = None;
    }

    /// The epoch to announce `state` under, if it is to be announced: when the session was
    /// held here and the state (or the last error) changed since the last announcement, or
    /// `again` (a member asked for every state).
    pub(super) fn announcing(
        &mut self,
        state: &SessionState,
        last_error: &Option<String>,
        again: bool,
    ) -> Option<Epoch> {
        let epoch = self.epoch?;
        let now = (state.clone(), last_error.clone());
        if !again && self.announced.as_ref() == Some(&now) {
            return None;
        }
        self.announced = Some(now);
        Some(epoch)
    }

    /// Another instance announced `note` (the session not held here): kept unless an
    /// owner of a newer epoch was heard already; true when it is news to publish (not a
    /// repetition, as a resync's answers mostly are).
    pub(super) fn heard(&mut self, note: StateNote) -> bool {
        if note.epoch < self.newest {
            return false;
        }
        self.newest = note.epoch;
        if self.remote.as_ref() == Some(&note) {
            return false;
        }
        self.remote = Some(note);
        true
    }

    /// The owner's state and last error, as last heard (none since this instance took
    /// the lease).
    pub(super) fn remote(&self) -> Option<(&SessionState, &Option<String>)> {
        self.remote.as_ref().map(|n| (&n.state, &n.last_error))
    }
}

impl Supervisor {
    /// Whether session `id` may run here: always, unless clustered and its lease is not held.
    pub(super) fn may_run(&self, id: &str) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.fences.may_send(id))
    }

    /// Whether session `id`'s lease is held here, valid or lapsed (the database out of
    /// reach past its deadline: nothing may be sent, but it is not lost).
    pub(super) fn held_here(&self, id: &str) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.fences.holds_any(id))
    }

    /// Whether session `id` may start now: unless clustered, always; clustered, only once
    /// the registry adopted its prompts under the lease held here (a session started before
    /// would answer nothing: the registry takes it for another instance's).
    pub(super) fn adopted_here(&self, id: &str) -> bool {
        self.cluster.is_none() || self.slots.get(id).is_some_and(|s| s.cluster.is_adopted())
    }

    /// Clustered: session `id` was just added (or added back) while this instance holds
    /// its lease already (the lease loop claimed it before this supervisor handled the
    /// set that adds it): adopt its prompts and start it, as [`Own`] does. A session
    /// whose lease is not held here waits for its [`Own`].
    pub(super) fn adopt_if_held(&mut self, id: &Arc<str>, ctx: &mut Context<Self>) {
        let Some(epoch) = self.cluster.as_ref().and_then(|c| c.fences.held_epoch(id)) else {
            return;
        };
        self.adopt(id, epoch, ctx);
    }

    /// This instance holds session `id`'s lease at `epoch`: read its unfinished prompts
    /// from the ledger, have the registry adopt them, *then* start it (a replay is then
    /// matched to what the last owner recorded). Nothing when it runs already, or an
    /// adoption is under way.
    fn adopt(&mut self, id: &Arc<str>, epoch: Epoch, ctx: &mut Context<Self>) {
        let _span = info_span!("session", session_id = %id).entered();
        let Some(cluster) = &self.cluster else { return };
        let Some(slot) = self.slots.get_mut(id) else {
            warn!("a lease for a session not configured here; it is released by the next round");
            return;
        };
        slot.cluster.owned(epoch);
        if slot.addr.is_some() || !slot.cluster.start_adopting() {
            return; // already running here, or adopting (its lease claimed again)
        }
        info!(
            epoch,
            "lease taken: adopting the session's prompts, then connecting"
        );
        let (ledger, fences) = (cluster.ledger.clone(), cluster.fences.clone());
        let registry = self.registry.clone();
        let session = id.clone();
        let adopt = async move {
            // Its prompts first: connecting before would show a replay as new.
            let mut attempt = 0;
            loop {
                // Held, its lease valid or lapsed (the database out of reach: the read
                // waits for it); given up only when the lease is let go.
                if !fences.holds_any(&session) {
                    return false;
                }
                let read = async {
                    let unfinished = ledger.unfinished_of(&session).await?;
                    let resolved = ledger
                        .resolved_of(&session, ADOPT_RESOLVED_ROWS, ADOPT_RESOLVED_BYTES)
                        .await?;
                    Ok::<_, crate::ledger::LedgerError>((unfinished, resolved))
                };
                match read.await {
                    Ok((unfinished, resolved)) => {
                        info!(
                            session_id = %session,
                            restored = unfinished.len(),
                            "adopting the session: its unanswered prompts and undelivered answers from the ledger"
                        );
                        let adopted = AdoptSession {
                            session: session.clone(),
                            unfinished,
                            resolved,
                        };
                        if registry.send(adopted).await.is_err() {
                            return false;
                        }
                        // A decision recorded elsewhere between the read above and the
                        // adoption was notified while the prompt was not pending here yet:
                        // read every pending prompt's decision once more.
                        registry.do_send(DecidedElsewhere {
                            session: session.clone(),
                            request_id: None,
                        });
                        return true;
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot read the session's prompts from the ledger; retrying before connecting");
                        tokio::time::sleep(crate::ledger::retry_delay(attempt)).await;
                        attempt += 1;
                    }
                }
            }
        };
        let id = id.clone();
        ctx.spawn(adopt.into_actor(self).map(move |adopted, act, ctx| {
            let held = act.held_here(&id);
            let again = act
                .slots
                .get_mut(&id)
                .is_some_and(|s| s.cluster.adopted(adopted && held));
            if !held || again {
                // Disowned while adopting: the registry may have adopted after it released.
                act.registry.do_send(ReleaseSession(id.clone()));
                if again {
                    // ... and claimed again since: what was read may be out of date.
                    act.adopt_if_held(&id, ctx);
                }
                return;
            }
            let running = act.slots.get(&id).is_some_and(|s| s.addr.is_some());
            if adopted && !running {
                // Not while the lease has lapsed: then when it is renewed (`Resumed`).
                act.spawn_session(&id, ctx);
            }
        }));
    }

    /// Test hook (`test-hooks` builds, with `CCR_TEST_HOOK_SET_AFTER_CLAIM` set): handle a
    /// session set only once this instance holds the lease of every session it adds (for
    /// at most 5 s), as a supervisor too busy to hear of the set before the lease loop's
    /// claim that follows it. Blocks the supervisor's thread, as such a stall does.
    #[cfg(feature = "test-hooks")]
    pub(super) fn hook_set_after_claim(&self, wanted: &[Arc<SessionSpec>]) {
        use std::time::{Duration, Instant};
        if std::env::var_os("CCR_TEST_HOOK_SET_AFTER_CLAIM").is_none() {
            return;
        }
        let Some(cluster) = &self.cluster else { return };
        let added: Vec<&Arc<str>> = wanted
            .iter()
            .map(|s| &s.id)
            .filter(|id| !self.slots.contains_key(*id))
            .collect();
        if added.is_empty() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let held = || added.iter().all(|id| cluster.fences.holds_any(id));
        while !held() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if held() {
            info!(sessions = ?added, "test hook: the session set is handled after the lease loop claimed the sessions it adds");
        }
    }

    /// Clustered: the lease loop's set is `wanted` now.
    pub(super) fn want(&mut self, wanted: &[Arc<SessionSpec>]) {
        if let Some(c) = self.cluster.as_mut() {
            c.wanted = wanted.iter().map(|s| (s.id.clone(), s.clone())).collect();
        }
    }

    /// Clustered: the spec to add `id` back with, when the lease loop wants it although it
    /// was just forgotten (removed and added again while it closed).
    pub(super) fn wanted_again(&self, id: &str) -> Option<Arc<SessionSpec>> {
        self.cluster.as_ref()?.wanted.get(id).cloned()
    }

    /// Announce session `id`'s state to the cluster if it changed since the last
    /// announcement (or `again`), when it is (or was last) held here.
    pub(super) fn announce(&mut self, id: &Arc<str>, again: bool) {
        let Some(cluster) = &self.cluster else { return };
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        let (state, last_error) = (&slot.status.state, &slot.status.last_error);
        if let Some(epoch) = slot.cluster.announcing(state, last_error, again) {
            cluster.states.push(&StateNote {
                from: cluster.fences.me().to_owned(),
                session: id.clone(),
                epoch,
                state: state.clone(),
                last_error: last_error.clone(),
            });
        }
    }

    /// The owner's state and last error of session `id` when another instance runs it
    /// (as last heard), for `GET /v1/sessions`; `None` when it runs here, or nothing
    /// was heard.
    pub(super) fn state_elsewhere(&self, id: &str) -> Option<(SessionState, Option<String>)> {
        self.cluster.as_ref()?;
        let slot = self.slots.get(id)?;
        if slot.addr.is_some() || self.may_run(id) {
            return None;
        }
        slot.cluster
            .remote()
            .map(|(state, error)| (state.clone(), error.clone()))
    }
}

impl Handler<StateElsewhere> for Supervisor {
    type Result = ();

    /// Publish (on this instance's stream only: notifications are the owner's to send)
    /// and remember another owner's state of a session not held here.
    fn handle(&mut self, msg: StateElsewhere, _: &mut Context<Self>) {
        let note = msg.0;
        if self.cluster.is_none() || self.may_run(&note.session) {
            return; // held here: this instance's own state is the one that counts
        }
        let Some(slot) = self.slots.get_mut(&note.session) else {
            return;
        };
        let _span = info_span!("session", session_id = %note.session).entered();
        if slot.cluster.heard(note.clone()) {
            SessionStateHeard {
                session_id: note.session,
                state: note.state,
                last_error: note.last_error,
                owner: &note.from,
            }
            .emit(&self.bus);
        }
    }
}

impl Handler<AnnounceStates> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: AnnounceStates, _: &mut Context<Self>) {
        let held: Vec<Arc<str>> = self
            .slots
            .keys()
            .filter(|id| self.may_run(id))
            .cloned()
            .collect();
        for id in held {
            self.announce(&id, true);
        }
    }
}

impl Handler<Own> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Own, ctx: &mut Context<Self>) {
        self.adopt(&msg.session, msg.epoch, ctx);
    }
}

impl Handler<Resumed> for Supervisor {
    type Result = ();

    /// A lapsed lease was renewed: start the session if it could not start meanwhile (its
    /// adoption finished, or it stopped, while nothing could be sent); a running one
    /// reconnects if its socket closed meanwhile (it connects nothing on a lapsed lease).
    fn handle(&mut self, msg: Resumed, ctx: &mut Context<Self>) {
        let _span = info_span!("session", session_id = %msg.session).entered();
        if let Some(addr) = self.slots.get(&msg.session).and_then(|s| s.addr.as_ref()) {
            addr.do_send(LeaseRenewed);
            return;
        }
        let idle = self
            .slots
            .get(&msg.session)
            .is_some_and(Slot::starts_when_resumed);
        if idle && self.may_run(&msg.session) {
            info!("lease renewed after it lapsed: starting the session");
            self.spawn_session(&msg.session, ctx);
        }
    }
}

impl Handler<Disown> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Disown, _: &mut Context<Self>) {
        let _span = info_span!("session", session_id = %msg.session).entered();
        if self.cluster.is_none() {
            return;
        }
        if let Some(slot) = self.slots.get_mut(&msg.session) {
            slot.cluster.disowned();
            if matches!(slot.plan, ExitPlan::Remove(_)) {
                // Removed (its lease is handed over after, by the same round): it closes
                // and is forgotten as a removal; its prompts were answered already.
                if let Some(addr) = slot.addr.as_ref().filter(|_| msg.lost) {
                    warn!("lease lost: dropping the session without sending anything more");
                    addr.do_send(AbandonSession);
                }
            } else if let Some(addr) = &slot.addr {
                slot.plan = ExitPlan::Release;
                if msg.lost {
                    warn!("lease lost: dropping the session without sending anything more");
                    addr.do_send(AbandonSession);
                } else {
                    info!("lease handed over: closing the session (1000)");
                    addr.do_send(CloseSession);
                }
            }
        }
        self.registry.do_send(ReleaseSession(msg.session));
    }
}

#[cfg(test)]
mod tests;
