//! Changing the session set while running: add (`POST /v1/sessions`), remove
//! (`DELETE /v1/sessions/{id}`), and replace the whole set (`SIGHUP` reload). In a
//! cluster the set is the lease loop's ([`SessionSet`]: this instance's configured
//! sessions and those the cluster stores), replaced whenever it changes; a removal then
//! cancels the session's pending prompts at once, before the loop hands its lease over.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::info;

use super::actor::Supervisor;
use super::slot::{ExitPlan, Slot};
use crate::cluster::SessionSet;
use crate::config::SessionSpec;
use crate::registry::{ForgetSession, TrackSession};
use crate::session::CloseSession;
use ccr_protocol::reply::NameChanges;

/// How long a removal waits for the session to close before answering anyway.
const REMOVE_WAIT: Duration = Duration::from_secs(10);

/// Why a change to the session set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionSetError {
    /// `POST` of an id that already exists.
    #[error("session {0} already exists")]
    Exists(String),
    /// `DELETE` of an unknown id.
    #[error("unknown session {0}")]
    Unknown(String),
    /// The service is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// Add and start a session.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), SessionSetError>")]
pub struct AddSession(pub Arc<SessionSpec>);

/// Stop a session cleanly (close 1000), cancel its pending prompts, forget it.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), SessionSetError>")]
pub struct RemoveSession(pub String);

/// Make the running set equal to `specs`: start new ones, stop missing ones,
/// restart changed ones. Refused, changing nothing, while shutting down.
#[derive(Message, Debug)]
#[rtype(result = "Result<SetChanges, SessionSetError>")]
pub struct ReplaceSessions(pub Vec<Arc<SessionSpec>>);

/// What a [`ReplaceSessions`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SetChanges {
    /// Started.
    pub added: Vec<String>,
    /// Stopped and forgotten.
    pub removed: Vec<String>,
    /// Restarted with a new spec.
    pub changed: Vec<String>,
}

impl Supervisor {
    fn add(
        &mut self,
        spec: Arc<SessionSpec>,
        ctx: &mut Context<Self>,
    ) -> Result<(), SessionSetError> {
        if self.slots.contains_key(&spec.id) {
            return Err(SessionSetError::Exists(spec.id.to_string()));
        }
        let arbiter = self.next_arbiter % self.arbiters.len();
        self.next_arbiter += 1;
        let id = spec.id.clone();
        let labels: Arc<[String]> = Arc::from(spec.labels.clone());
        let mut slot = Slot::new(spec, &self.cfg, arbiter);
        if self.cluster.is_some() {
            // Not run here until this instance takes its lease.
            slot.status.state = crate::session::SessionState::Disconnected;
        }
        self.slots.insert(id.clone(), slot);
        // Before anyone hears it was added: operators may answer its prompts from now on.
        self.registry.do_send(TrackSession(id.clone(), labels));
        info!(session_id = %id, "session added");
        if self.cluster.is_some() {
            // Started once its prompts are adopted under its lease: when this instance
            // takes the lease (`Own`), or now if the lease loop claimed it already (before
            // this supervisor heard of the session).
            self.adopt_if_held(&id, ctx);
        } else {
            self.spawn_session(&id, ctx);
        }
        Ok(())
    }

    /// Begin removing `id`; `waiter` fires once it is gone.
    fn remove(
        &mut self,
        id: &str,
        waiter: Option<oneshot::Sender<()>>,
        ctx: &mut Context<Self>,
    ) -> Result<(), SessionSetError> {
        let slot = self
            .slots
            .get_mut(id)
            .ok_or_else(|| SessionSetError::Unknown(id.to_owned()))?;
        info!(session_id = %id, "removing session");
        if self.cluster.is_some() {
            // Its prompts are answered now, while this registry still holds them: the
            // lease loop hands the lease over right after (which releases them).
            self.registry.do_send(ForgetSession(Arc::from(id)));
        }
        match &slot.addr {
            Some(addr) => {
                addr.do_send(CloseSession);
                match &mut slot.plan {
                    ExitPlan::Remove(waiters) => waiters.extend(waiter),
                    plan => *plan = ExitPlan::Remove(waiter.into_iter().collect()),
                }
            }
            None => {
                // Not running (failed, or between restarts): forget it now.
                let id: Arc<str> = Arc::from(id);
                self.forget(&id, ctx);
                if let Some(w) = waiter {
                    let _ = w.send(());
                }
            }
        }
        Ok(())
    }

    /// Start `spec` in place of the running spec of the same id (not a crash).
    fn change(&mut self, spec: Arc<SessionSpec>, ctx: &mut Context<Self>) {
        let id = spec.id.clone();
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if matches!(slot.plan, ExitPlan::Remove(_)) {
            return; // being removed: added back with its new spec once forgotten (clustered)
        }
        // Its labels may have changed (for the policy of prompts restored later).
        let labels: Arc<[String]> = Arc::from(spec.labels.clone());
        self.registry.do_send(TrackSession(id.clone(), labels));
        slot.spec = spec;
        match &slot.addr {
            Some(addr) => {
                slot.plan = ExitPlan::Respawn;
                addr.do_send(CloseSession);
            }
            None => self.spawn_session(&id, ctx),
        }
    }

    /// Drop every trace of a removed session; its pending prompts are denied for it
    /// (`session_removed`).
    /// Clustered, a session the lease loop wants again meanwhile is added back.
    pub(super) fn forget(&mut self, id: &Arc<str>, ctx: &mut Context<Self>) {
        self.slots.remove(id);
        self.registry.do_send(ForgetSession(id.clone()));
        info!(session_id = %id, "session removed");
        if let Some(spec) = self.wanted_again(id) {
            let _ = self.add(spec, ctx);
        }
    }
}

impl Handler<AddSession> for Supervisor {
    type Result = Result<(), SessionSetError>;

    fn handle(&mut self, msg: AddSession, ctx: &mut Context<Self>) -> Self::Result {
        if self.is_shutting_down() {
            return Err(SessionSetError::ShuttingDown);
        }
        self.add(msg.0, ctx)
    }
}

impl Handler<RemoveSession> for Supervisor {
    type Result = ResponseFuture<Result<(), SessionSetError>>;

    fn handle(&mut self, msg: RemoveSession, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let started = self.remove(&msg.0, Some(tx), ctx);
        Box::pin(async move {
            started?;
            // Answer once it is gone; a session slow to close is still being removed.
            let _ = tokio::time::timeout(REMOVE_WAIT, rx).await;
            Ok(())
        })
    }
}

impl Handler<ReplaceSessions> for Supervisor {
    type Result = Result<SetChanges, SessionSetError>;

    fn handle(&mut self, msg: ReplaceSessions, ctx: &mut Context<Self>) -> Self::Result {
        self.replace(msg.0, ctx)
    }
}

/// In a cluster, the lease loop's set (configured and stored sessions) replaces the
/// supervisor's as a reload's would; sessions start only when their lease is taken.
impl Handler<SessionSet> for Supervisor {
    type Result = Option<NameChanges>;

    fn handle(&mut self, msg: SessionSet, ctx: &mut Context<Self>) -> Self::Result {
        #[cfg(feature = "test-hooks")]
        self.hook_set_after_claim(&msg.0);
        self.want(&msg.0);
        let c = self.replace(msg.0, ctx).ok()?;
        Some(NameChanges {
            added: c.added,
            removed: c.removed,
            changed: c.changed,
        })
    }
}

impl Supervisor {
    /// Make the session set equal to `wanted` (see [`ReplaceSessions`]).
    fn replace(
        &mut self,
        wanted: Vec<Arc<SessionSpec>>,
        ctx: &mut Context<Self>,
    ) -> Result<SetChanges, SessionSetError> {
        let mut changes = SetChanges::default();
        if self.is_shutting_down() {
            return Err(SessionSetError::ShuttingDown);
        }
        let current = self.slots.iter().map(|(id, slot)| (id, &slot.spec));
        let diff = SetDiff::between(current, wanted);
        for id in diff.removed {
            if self.remove(&id, None, ctx).is_ok() {
                changes.removed.push(id.to_string());
            }
        }
        for spec in diff.changed {
            changes.changed.push(spec.id.to_string());
            self.change(spec, ctx);
        }
        for spec in diff.added {
            if self.add(spec.clone(), ctx).is_ok() {
                changes.added.push(spec.id.to_string());
            }
        }
        info!(added = %changes.added.join(","), removed = %changes.removed.join(","), changed = %changes.changed.join(","), "session set replaced");
        Ok(changes)
    }
}

/// How a wanted session set differs from the running one (pure), each list by id.
#[derive(Debug, Default, PartialEq)]
struct SetDiff {
    /// Running, not wanted.
    removed: Vec<Arc<str>>,
    /// Running with another spec: the new one.
    changed: Vec<Arc<SessionSpec>>,
    /// Wanted, not running.
    added: Vec<Arc<SessionSpec>>,
}

impl SetDiff {
    /// Compare the running specs (`current`, by id) with `wanted` (the last of a repeated id wins).
    fn between<'a>(
        current: impl Iterator<Item = (&'a Arc<str>, &'a Arc<SessionSpec>)>,
        wanted: Vec<Arc<SessionSpec>>,
    ) -> Self {
        let mut wanted: std::collections::BTreeMap<Arc<str>, Arc<SessionSpec>> =
            wanted.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut diff = SetDiff::default();
        for (id, spec) in current {
            match wanted.remove(id) {
                None => diff.removed.push(id.clone()),
                Some(new) if *new != **spec => diff.changed.push(new),
                Some(_) => {}
            }
        }
        diff.added = wanted.into_values().collect();
        diff
    }
}

#[cfg(test)]
mod tests;
