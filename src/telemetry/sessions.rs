//! A session's life: its state changes, ended connections, reconnects, watchdog
//! timeouts (emitted by the session actor), and ended actors — crashes, restarts, giving
//! up, final states, respawns (emitted by the supervisor for what `Slot::on_exit` decided). None of these is on a hot path.

use std::sync::Arc;

use tracing::{debug, error, info, warn};

use super::Publish;
use crate::events::Event;
use crate::limits::repeat::session_warning;
use crate::metrics::Metrics;
use crate::notify::Notice;
use ccr_protocol::session::SessionState;

/// The log target these lines always had (for `RUST_LOG` filters and JSON logs' `target`).
const ACTOR: &str = "ccr_supervisor::session::actor";
/// Where the supervisor's lines about an ended session actor always came from.
const SLOT: &str = "ccr_supervisor::supervisor::slot";

/// The session actor moved its session to a new state.
#[derive(Debug)]
pub struct SessionStateChanged {
    /// The session.
    pub session_id: Arc<str>,
    /// Its new state.
    pub state: SessionState,
    /// Its last error, if any.
    pub last_error: Option<String>,
    /// Its labels (for notification selectors).
    pub labels: Arc<[String]>,
}

impl SessionStateChanged {
    /// Log it and publish `session_state` (the `sessions{state}` gauge is read from the
    /// sessions' statuses at scrape time); notify `session_failed` when it failed.
    pub fn emit(self, mut publish: impl Publish) {
        let SessionStateChanged {
            session_id,
            state,
            last_error,
            labels,
        } = self;
        info!(target: ACTOR, state = state.name(), "session state");
        notify_failed(&mut publish, &session_id, &state, labels);
        publish.publish(Event::SessionState {
            session_id,
            state,
            last_error,
        });
    }
}

/// Another instance of the cluster, which holds the session, announced its new state.
#[derive(Debug)]
pub struct SessionStateHeard<'a> {
    /// The session.
    pub session_id: Arc<str>,
    /// Its new state.
    pub state: SessionState,
    /// Its last error, if any.
    pub last_error: Option<String>,
    /// The instance that holds it.
    pub owner: &'a str,
}

impl SessionStateHeard<'_> {
    /// Log it (debug) and publish `session_state` on this instance's stream. It notifies
    /// nothing: notifications are sent once for the cluster, by the owner.
    pub fn emit(self, mut publish: impl Publish) {
        debug!(
            owner = self.owner,
            state = self.state.name(),
            "session state of another instance"
        );
        publish.publish(Event::SessionState {
            session_id: self.session_id,
            state: self.state,
            last_error: self.last_error,
        });
    }
}

/// Offer `session_failed` when `state` is `failed`.
fn notify_failed(
    publish: &mut impl Publish,
    session_id: &Arc<str>,
    state: &SessionState,
    labels: Arc<[String]>,
) {
    if let SessionState::Failed { reason, detail } = state {
        publish.notify(|| {
            let detail = Some(detail.clone()).filter(|d| !d.is_empty());
            Notice::session_failed(session_id.clone(), labels, reason.clone(), detail)
        });
    }
}

/// A connection (or an attempt at one) ended with an error.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionEnded<'a> {
    /// The session.
    pub session_id: &'a Arc<str>,
    /// What went wrong.
    pub error: &'a str,
}

impl ConnectionEnded<'_> {
    /// Warn (rate-limited across sessions: a mass failure logs a handful of lines) and
    /// publish an error event for the session.
    pub fn emit(self, mut publish: impl Publish) {
        session_warning("connection ended", self.error);
        publish.publish(Event::Error {
            session_id: self.session_id.clone(),
            message: self.error.to_owned(),
        });
    }
}

/// The reconnect policy scheduled another attempt (the state change to `reconnecting`
/// is its own event).
#[derive(Debug, Clone, Copy)]
pub struct ReconnectScheduled;

impl ReconnectScheduled {
    /// Count it, for the session (its `reconnects`) and in `ccr_supervisor_reconnects_total`.
    pub fn emit(self, reconnects: &mut u64, metrics: &Metrics) {
        *reconnects += 1;
        metrics.reconnects.inc();
    }
}

/// Nothing arrived within `[ccr] response_watchdog` after a request: the connection is
/// dropped (its end is a [`ConnectionEnded`]).
#[derive(Debug, Clone, Copy)]
pub struct WatchdogFired;

impl WatchdogFired {
    /// Count it in `ccr_supervisor_watchdog_reconnects_total`.
    pub fn emit(self, metrics: &Metrics) {
        metrics.watchdog_reconnects.inc();
    }
}

/// A session actor crashed (panicked, or stopped outside a final state); a
/// [`RestartScheduled`] or a [`RestartsExhausted`] follows.
#[derive(Debug, Clone, Copy)]
pub struct SessionCrashed<'a> {
    /// Why: `session actor panicked: …` or `session actor stopped unexpectedly`.
    pub cause: &'a str,
}

impl SessionCrashed<'_> {
    /// Log it as an error (under the supervisor's `session` span).
    pub fn emit(self) {
        error!(target: SLOT, cause = %self.cause, "session crashed");
    }
}

/// A session actor ended in a final state (failed, or closed on purpose): it stays so.
#[derive(Debug, Clone, Copy)]
pub struct SessionEnded {
    /// That state's name.
    pub state: &'static str,
}

impl SessionEnded {
    /// Log it.
    pub fn emit(self) {
        info!(target: SLOT, state = self.state, "session ended; not restarting");
    }
}

/// A session's spec changed: its actor ended and starts again at once (not a crash).
#[derive(Debug, Clone, Copy)]
pub struct SessionRespawned;

impl SessionRespawned {
    /// Log it.
    pub fn emit(self) {
        info!(target: SLOT, "session spec changed; starting it again");
    }
}

/// The supervisor will restart a crashed session actor (within its restart budget).
#[derive(Debug)]
pub struct RestartScheduled {
    /// The session.
    pub session_id: Arc<str>,
    /// Its state now (`restarting`).
    pub state: SessionState,
    /// Its last error (the crash).
    pub last_error: Option<String>,
}

impl RestartScheduled {
    /// Count it in `ccr_supervisor_restarts_total` and publish `session_state` (the crash
    /// itself is a [`SessionCrashed`]).
    pub fn emit(self, metrics: &Metrics, mut publish: impl Publish) {
        metrics.restarts.inc();
        publish.publish(Event::SessionState {
            session_id: self.session_id,
            state: self.state,
            last_error: self.last_error,
        });
    }
}

/// The supervisor gave a crashed session up: its restart budget is exhausted.
#[derive(Debug)]
pub struct RestartsExhausted {
    /// The session.
    pub session_id: Arc<str>,
    /// Its state now (`failed`).
    pub state: SessionState,
    /// Its last error (the crash).
    pub last_error: Option<String>,
    /// Its labels (for notification selectors).
    pub labels: Arc<[String]>,
}

impl RestartsExhausted {
    /// Warn, publish `session_state` and notify `session_failed`.
    pub fn emit(self, mut publish: impl Publish) {
        warn!(target: SLOT, "restart budget exhausted; session failed");
        notify_failed(&mut publish, &self.session_id, &self.state, self.labels);
        publish.publish(Event::SessionState {
            session_id: self.session_id,
            state: self.state,
            last_error: self.last_error,
        });
    }
}
