//! One supervised session — its spec, last status, restart budget — and what to do when
//! its actor ends ([`Slot::on_exit`], pure: the `Supervisor` performs the [`ExitAction`]
//! and emits the telemetry event of what happened — a crash, a restart, giving up).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::budget::{AfterCrash, RestartBudget};
use crate::config::{SessionSpec, SupervisorConfig};
use crate::session::{Counters, SessionActor, SessionState, SessionStatus};
use actix::Addr;
use tokio::sync::oneshot;

/// A session the supervisor runs, across the incarnations of its actor.
pub(super) struct Slot {
    pub(super) spec: Arc<SessionSpec>,
    /// What to do when the current incarnation ends.
    pub(super) plan: ExitPlan,
    /// The live actor, if running.
    pub(super) addr: Option<Addr<SessionActor>>,
    pub(super) incarnation: u64,
    pub(super) status: SessionStatus,
    /// Counters of the incarnations that ended.
    pub(super) carried: Counters,
    pub(super) restarts: u64,
    /// Why the last incarnation crashed; shown until a newer error replaces it.
    pub(super) last_crash: Option<String>,
    budget: RestartBudget,
    pub(super) arbiter: usize,
    /// In a cluster: its lease epoch here, what was announced, its owner's state elsewhere.
    pub(super) cluster: super::cluster::ClusterSlot,
}

/// What the supervisor does when a session actor ends.
#[derive(Debug, Default)]
pub(super) enum ExitPlan {
    /// Restart after a crash (within budget); leave final states alone.
    #[default]
    Supervise,
    /// The operator removed it: forget the session, then tell these waiters.
    Remove(Vec<oneshot::Sender<()>>),
    /// Its spec changed: start the new spec at once (not a crash).
    Respawn,
    /// In a cluster, its lease went to another instance: leave it stopped here.
    Release,
}

/// What to do now that a session actor ended.
#[derive(Debug)]
pub(super) enum ExitAction {
    /// An older incarnation ended (a newer one runs): nothing.
    Stale,
    /// Removed by the operator: forget the session, then tell these waiters.
    Forget(Vec<oneshot::Sender<()>>),
    /// Its spec changed: start it again now.
    Respawn,
    /// Shutting down: it is disconnected; the shutdown may be complete.
    Drained,
    /// Another instance of the cluster owns it now: leave it stopped here.
    Released,
    /// It ended in a final state (failed, or closed on purpose): leave it so.
    Stop {
        /// That state's name.
        state: &'static str,
    },
    /// It crashed: start it again after `after`.
    Restart {
        /// Backoff before the restart.
        after: Duration,
        /// Why it crashed.
        cause: String,
    },
    /// It crashed and the restart budget is spent: it is failed.
    GiveUp {
        /// Why it crashed, this last time.
        cause: String,
    },
}

impl Slot {
    /// A slot for `spec`, on session arbiter `arbiter`, not started yet.
    pub(super) fn new(spec: Arc<SessionSpec>, cfg: &SupervisorConfig, arbiter: usize) -> Self {
        Slot {
            budget: RestartBudget::new(cfg),
            spec,
            plan: ExitPlan::Supervise,
            addr: None,
            incarnation: 0,
            status: SessionStatus::initial(),
            carried: Counters::default(),
            restarts: 0,
            last_crash: None,
            arbiter,
            cluster: Default::default(),
        }
    }

    /// Incarnation `incarnation` of the actor ended at `now` (`panic`: its message, if it
    /// panicked). Updates the status (counters carried over, state, last error) and says
    /// what the supervisor must do.
    pub(super) fn on_exit(
        &mut self,
        incarnation: u64,
        panic: Option<&str>,
        shutting_down: bool,
        now: Instant,
    ) -> ExitAction {
        if self.incarnation != incarnation {
            return ExitAction::Stale;
        }
        self.addr = None;
        self.carried = self.carried.add(&self.status.counters);
        self.status.counters = Counters::default();
        match std::mem::take(&mut self.plan) {
            ExitPlan::Remove(waiters) => return ExitAction::Forget(waiters),
            ExitPlan::Respawn if !shutting_down => return ExitAction::Respawn,
            ExitPlan::Release => {
                self.status.state = SessionState::Disconnected;
                return ExitAction::Released;
            }
            _ => {}
        }
        if shutting_down {
            self.status.state = SessionState::Disconnected;
            return ExitAction::Drained;
        }
        let cause = match panic {
            None if self.status.state.is_final() => {
                let state = self.status.state.name();
                return ExitAction::Stop { state };
            }
            None => "session actor stopped unexpectedly".to_owned(),
            Some(p) => format!("session actor panicked: {p}"),
        };
        self.on_crash(cause, now)
    }

    /// Whether a renewed lease (after it lapsed) starts this session: only one that is not
    /// running nor being adopted, and that has not failed. Failed (its restart budget spent,
    /// or the server refused it for good) it stays so until an operator acts, lapse or
    /// not; one that crashed or finished its adoption while nothing could be sent starts.
    pub(super) fn starts_when_resumed(&self) -> bool {
        self.addr.is_none()
            && !self.cluster.is_adopting()
            && !matches!(self.status.state, SessionState::Failed { .. })
    }

    /// Restart within the budget, or give up.
    fn on_crash(&mut self, cause: String, now: Instant) -> ExitAction {
        self.status.last_error = Some(cause.clone());
        self.last_crash = Some(cause.clone());
        self.status.connected_since = None;
        match self.budget.on_crash(now) {
            AfterCrash::Restart { delay, .. } => {
                self.restarts += 1;
                self.status.state = SessionState::Restarting {
                    restart: self.restarts as u32,
                    delay_ms: delay.as_millis() as u64,
                };
                ExitAction::Restart {
                    after: delay,
                    cause,
                }
            }
            AfterCrash::Exhausted => {
                let (max, period) = self.budget.limit();
                self.status.state = SessionState::Failed {
                    reason: "restart_budget_exhausted".into(),
                    detail: format!("more than {max} restarts within {period:?}; last: {cause}"),
                };
                ExitAction::GiveUp { cause }
            }
        }
    }
}

#[cfg(test)]
mod tests;
