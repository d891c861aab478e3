//! What a session does with what it receives, whatever transport carries it.
//!
//! This is the transport seam (PROTOCOL §6): the WebSocket actor ([`super::SessionActor`])
//! only connects, frames and writes; every text message it receives goes to
//! [`Router::on_text`], and every request the supervisor sends to the session (an
//! `interrupt`, the `initialize` on connect) is made by the router, which also matches the
//! session's responses to them. The router tells its transport what to do through
//! [`Output`]: publish an event, hand a prompt (or a withdrawal) to the registry, write a
//! frame back. An SSE transport (`GET …/events/stream` + `POST …/events`, which newer SDK
//! builds prefer) is one new module that feeds the same router.
//!
//! Also here, as plain data: the bounded set of recent user-message uuids that drops
//! echoes ([`RecentIds`]), and the response watchdog ([`Watchdog`]).

mod echoes;
mod inbound;
mod watchdog;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::events::Event;
use crate::metrics::Metrics;
use crate::registry::Refusal;
use crate::telemetry::frames::{FrameKind, FrameReceived, FrameSkipped};
use crate::telemetry::Publish;
use ccr_protocol::session::{FrameCounters, InitializeState};
use ccr_protocol::PermissionPrompt;
pub use echoes::RecentIds;
pub use watchdog::Watchdog;

/// Deepest nesting re-emitted to operators, and parsed in a prompt: serde_json's own
/// recursion limit, so every event stays readable by the strictest common client (`ctl`
/// included). A deeper SDK message is replaced by [`too_deep_notice`]; a deeper prompt is denied.
pub const MAX_JSON_DEPTH: usize = 127;

/// User-message uuids remembered per session to drop echoes (the reference client keeps a
/// bounded set of recent ones too).
pub const RECENT_UUIDS: usize = 512;

/// What operators get instead of an SDK message nested deeper than [`MAX_JSON_DEPTH`].
pub fn too_deep_notice(msg_type: &str, depth: usize, bytes: usize) -> Arc<str> {
    serde_json::json!({
        "type": msg_type,
        "supervisor_notice": {
            "reason": "too_deep",
            "depth": depth,
            "depth_limit": MAX_JSON_DEPTH,
            "bytes": bytes,
            "detail": "the session sent this message nested deeper than the supervisor re-emits; it was not forwarded",
        }
    })
    .to_string()
    .into()
}

/// What the router asks of its transport (the effects of routing one frame).
pub trait Output {
    /// Publish on the event bus.
    fn publish(&mut self, event: Event);
    /// Hand a permission prompt to the registry (`refusal`: answer it with this deny).
    fn prompt(&mut self, prompt: PermissionPrompt, refusal: Option<Refusal>);
    /// The session withdrew one of its requests.
    fn cancel(&mut self, request_id: String);
    /// Write a frame back to the session now.
    fn reply(&mut self, frame: String);
    /// The `initialize` reply listed what the session waits on (already routed as
    /// prompts); pending prompts it did not list may no longer be waited on.
    fn initialized(&mut self);
}

/// A request the supervisor sent to the session, waiting for its `control_response`.
#[derive(Debug)]
pub enum Waiting {
    /// An interrupt; the API handler waits on the other end.
    Interrupt(oneshot::Sender<Result<Value, String>>),
    /// The `initialize` sent on connect.
    Initialize,
}

/// The transport-agnostic part of one session (see the module docs).
pub struct Router {
    session_id: Arc<str>,
    metrics: Arc<Metrics>,
    counters: FrameCounters,
    waiting: HashMap<String, Waiting>,
    /// Made on the first user message: most sessions never get one.
    echoes: Option<Box<RecentIds>>,
    watchdog: Watchdog,
    initialize: InitializeState,
    /// When the unanswered `initialize` was sent.
    initialize_sent: Option<Instant>,
}

impl Router {
    /// A router for `session_id`, counting into `metrics`.
    pub fn new(session_id: Arc<str>, metrics: Arc<Metrics>) -> Self {
        Self {
            session_id,
            metrics,
            counters: FrameCounters::default(),
            waiting: HashMap::new(),
            echoes: None,
            watchdog: Watchdog::default(),
            initialize: InitializeState::NotSent,
            initialize_sent: None,
        }
    }

    /// Inbound frames counted so far.
    pub fn counters(&self) -> FrameCounters {
        self.counters
    }

    /// How the last `initialize` went.
    pub fn initialize_state(&self) -> InitializeState {
        self.initialize
    }

    /// The connection ended: requests waiting for an answer get none (their callers are
    /// told the connection is gone), and the watchdog stops.
    pub fn reset(&mut self) {
        self.waiting.clear();
        self.watchdog = Watchdog::default();
        if self.initialize == InitializeState::Sent {
            self.initialize = InitializeState::NotSent;
        }
    }

    /// Make an `initialize` request for a new connection; returns the frame to send.
    pub fn initialize(&mut self, supported_dialog_kinds: &[String], now: Instant) -> String {
        let request_id = uuid::Uuid::new_v4().to_string();
        self.waiting.insert(request_id.clone(), Waiting::Initialize);
        self.initialize = InitializeState::Sent;
        // Not watched: a peer that never answers `initialize` must not cost a reconnect
        // a minute; `initialize_timeout` covers it.
        self.initialize_sent = Some(now);
        ccr_protocol::initialize_request(&request_id, supported_dialog_kinds)
    }

    /// The `initialize` got no answer in time: replays alone will tell what is pending.
    pub fn initialize_timed_out(&mut self) -> bool {
        let before = self.waiting.len();
        self.waiting
            .retain(|_, w| !matches!(w, Waiting::Initialize));
        let timed_out = self.waiting.len() != before;
        if timed_out {
            self.initialize = InitializeState::Failed;
        }
        if self.waiting.is_empty() {
            self.waiting = HashMap::new();
        }
        timed_out
    }

    /// The `initialize` sent at `since` got no reply within `timeout` by `now`: give up
    /// on it (checked at each heartbeat, so idle sessions hold no timer for it).
    pub fn initialize_overdue(&mut self, now: Instant, timeout: Duration) -> bool {
        match self.initialize_sent {
            Some(since) if now.saturating_duration_since(since) >= timeout => {
                self.initialize_sent = None;
                self.initialize_timed_out()
            }
            _ => false,
        }
    }

    /// Make an interrupt request; returns its id, the frame, and where its answer arrives.
    pub fn interrupt(
        &mut self,
        cancel_queued: bool,
        now: Instant,
    ) -> (String, String, oneshot::Receiver<Result<Value, String>>) {
        let request_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.waiting
            .insert(request_id.clone(), Waiting::Interrupt(tx));
        self.watchdog.sent(now);
        let frame = ccr_protocol::interrupt_request(&request_id, cancel_queued);
        (request_id, frame, rx)
    }

    /// Stop waiting for `request_id` (its caller gave up).
    pub fn forget(&mut self, request_id: &str) {
        self.take_waiting(request_id);
    }

    /// Something else was sent to the session on its behalf (a user message): the
    /// watchdog expects it to say something.
    pub fn sent(&mut self, now: Instant) {
        self.watchdog.sent(now);
    }

    /// True when the session has been silent for `timeout` since something was sent
    /// (the connection is presumed dead). `timeout` zero: never.
    pub fn watchdog_expired(&self, now: Instant, timeout: Duration) -> bool {
        self.watchdog.expired(now, timeout)
    }

    /// How long until the watchdog would fire, while a send is unanswered.
    pub fn watchdog_left(&self, now: Instant, timeout: Duration) -> Option<Duration> {
        self.watchdog.left(now, timeout)
    }

    /// A frame that is not text (binary, or a fragment out of order): counted and logged.
    pub fn skip(&mut self, reason: &str, len: usize) {
        FrameSkipped { reason, len }.emit(&mut self.counters, &self.metrics.frames);
    }

    /// Count a frame routed as `kind` (every frame: cheap, inlined).
    #[inline]
    pub(super) fn received(&mut self, kind: FrameKind) {
        FrameReceived(kind).emit(&mut self.counters, &self.metrics.frames);
    }

    /// Stop waiting for `request_id`; an idle session then holds no map at all.
    pub(super) fn take_waiting(&mut self, request_id: &str) -> Option<Waiting> {
        let w = self.waiting.remove(request_id);
        if self.waiting.is_empty() {
            self.waiting = HashMap::new();
        }
        w
    }
}

/// A router's output is where the telemetry of its frames is published.
impl<O: Output + ?Sized> Publish for &mut O {
    fn publish(&mut self, event: Event) {
        Output::publish(&mut **self, event);
    }
}

#[cfg(test)]
mod tests;
