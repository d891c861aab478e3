//! The supervisor in a cluster: a session runs here only while this instance holds its
//! lease. [`Own`]: its unfinished prompts are read from the shared ledger and adopted by
//! the registry, *then* it connects (a replay is then matched to what the last owner
//! recorded). [`Disown`]: it stops — closed with 1000 when handed over, dropped without
//! a byte more when the lease was lost — and the registry forgets its prompts here.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use tracing::{info, info_span, warn};

use super::actor::Supervisor;
use super::slot::ExitPlan;
use crate::cluster::{Disown, Fences, Own};
use crate::config::SessionSpec;
use crate::ledger::Ledger;
use crate::registry::{AdoptSession, ReleaseSession};
use crate::session::{AbandonSession, CloseSession};

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
    /// The lease loop's last [`SessionSet`](crate::cluster::SessionSet): a session removed
    /// and wanted again before it closed is added back once it is forgotten.
    wanted: BTreeMap<Arc<str>, Arc<SessionSpec>>,
}

impl SupervisorCluster {
    /// A member's supervisor side, over `ledger` and the leases in `fences`.
    pub fn new(ledger: Ledger, fences: Arc<Fences>) -> Self {
        Self {
            ledger,
            fences,
            wanted: BTreeMap::new(),
        }
    }
}

impl Supervisor {
    /// Whether session `id` may run here: always, unless clustered and its lease is not held.
    pub(super) fn may_run(&self, id: &str) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.fences.may_send(id))
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
}

impl Handler<Own> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Own, ctx: &mut Context<Self>) {
        let _span = info_span!("session", session_id = %msg.session).entered();
        let Some(cluster) = &self.cluster else { return };
        let Some(slot) = self.slots.get(&msg.session) else {
            warn!("a lease for a session not configured here; it is released by the next round");
            return;
        };
        if slot.addr.is_some() {
            return; // already running here (its lease claimed again)
        }
        info!(
            epoch = msg.epoch,
            "lease taken: adopting the session's prompts, then connecting"
        );
        let (ledger, fences) = (cluster.ledger.clone(), cluster.fences.clone());
        let registry = self.registry.clone();
        let session = msg.session.clone();
        let adopt = async move {
            // Its prompts first: connecting before would show a replay as new.
            let mut attempt = 0;
            loop {
                if !fences.may_send(&session) {
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
                        return registry.send(adopted).await.is_ok();
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot read the session's prompts from the ledger; retrying before connecting");
                        tokio::time::sleep(crate::ledger::retry_delay(attempt)).await;
                        attempt += 1;
                    }
                }
            }
        };
        let id = msg.session;
        ctx.spawn(adopt.into_actor(self).map(move |adopted, act, ctx| {
            if !act.may_run(&id) {
                // Disowned while adopting: the registry may have adopted after it released.
                act.registry.do_send(ReleaseSession(id));
                return;
            }
            let running = act.slots.get(&id).is_some_and(|s| s.addr.is_some());
            if adopted && !running {
                act.spawn_session(&id, ctx);
            }
        }));
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
            if matches!(slot.plan, ExitPlan::Remove(_)) {
                // Removed (its lease is handed over after, by the same round): it closes
                // and is forgotten as a removal; its prompts were cancelled already.
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
