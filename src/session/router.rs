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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::{debug, info};

use crate::events::Event;
use crate::metrics::Metrics;
use crate::registry::{Refusal, LIMIT_FRAME_BYTES, LIMIT_JSON_DEPTH, LIMIT_UNPARSEABLE};
use crate::telemetry::frames::{
    EchoDropped, FrameKind, FrameReceived, FrameSkipped, FrameUnparseable, SdkMessageTooDeep,
    UnreadableFrame,
};
use crate::telemetry::Publish;
use ccr_protocol::scan::{depth_exceeds, HeadScanner, ScannedHead};
use ccr_protocol::session::{FrameCounters, InitializeState};
use ccr_protocol::{FrameError, Inbound, PermissionPrompt, Unreadable};

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

#[derive(Deserialize)]
struct UserHead<'a> {
    #[serde(borrow)]
    uuid: Option<std::borrow::Cow<'a, str>>,
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
    fn received(&mut self, kind: FrameKind) {
        FrameReceived(kind).emit(&mut self.counters, &self.metrics.frames);
    }

    /// Route one inbound text message.
    pub fn on_text(&mut self, text: &str, out: &mut impl Output) {
        self.watchdog.heard();
        match ccr_protocol::classify(text) {
            Err(error) => self.on_unparseable(text, error, out),
            Ok(Inbound::Sdk(msg)) => {
                if msg.msg_type == "user" && !self.first_sight(text) {
                    EchoDropped.emit(&mut self.counters, &self.metrics.frames);
                    return;
                }
                self.received(FrameKind::Sdk);
                let message = match depth_exceeds(text.as_bytes(), MAX_JSON_DEPTH) {
                    None => msg.raw,
                    Some(depth) => {
                        let len = text.len();
                        let msg_type = &msg.msg_type;
                        SdkMessageTooDeep {
                            depth,
                            len,
                            msg_type,
                        }
                        .emit(&mut self.counters, &self.metrics.frames);
                        too_deep_notice(msg_type, depth, len)
                    }
                };
                out.publish(Event::SdkMessage {
                    session_id: self.session_id.clone(),
                    msg_type: msg.msg_type,
                    message,
                });
            }
            Ok(Inbound::Cancel { request_id }) => {
                self.received(FrameKind::ControlCancelRequest);
                out.cancel(request_id);
            }
            Ok(Inbound::ControlResponse(resp)) => {
                self.received(FrameKind::ControlResponse);
                self.on_response(resp, out);
            }
            Ok(Inbound::KeepAlive) => self.received(FrameKind::KeepAlive),
            Ok(request) => {
                self.received(FrameKind::ControlRequest);
                self.on_request(request, out);
            }
        }
    }

    /// True the first time a user message's `uuid` is seen (or when it has none).
    fn first_sight(&mut self, text: &str) -> bool {
        match serde_json::from_str::<UserHead<'_>>(text) {
            Ok(UserHead { uuid: Some(uuid) }) => self
                .echoes
                .get_or_insert_with(|| Box::new(RecentIds::new(RECENT_UUIDS)))
                .insert(&uuid),
            _ => true,
        }
    }

    /// A control request of the session (live, replayed, or listed by `initialize`).
    fn on_request(&mut self, request: Inbound, out: &mut impl Output) {
        match request {
            Inbound::PermissionPrompt(prompt) => out.prompt(prompt, None),
            Inbound::UnsupportedRequest { request_id, error } => {
                info!(%request_id, %error, "answering unsupported control request with an error");
                out.reply(ccr_protocol::error_response(&request_id, &error));
            }
            other => debug!(?other, "not a control request"),
        }
    }

    /// Stop waiting for `request_id`; an idle session then holds no map at all.
    fn take_waiting(&mut self, request_id: &str) -> Option<Waiting> {
        let w = self.waiting.remove(request_id);
        if self.waiting.is_empty() {
            self.waiting = HashMap::new();
        }
        w
    }

    fn on_response(&mut self, resp: ccr_protocol::ControlResponse, out: &mut impl Output) {
        match self.take_waiting(&resp.request_id) {
            Some(Waiting::Interrupt(waiter)) => {
                let _ = waiter.send(resp.outcome);
            }
            Some(Waiting::Initialize) => {
                self.initialize_sent = None;
                self.on_initialized(resp, out)
            }
            None => {
                debug!(request_id = %resp.request_id, "control_response for nothing we wait for")
            }
        }
    }

    /// The `initialize` reply: what it lists is routed like replays (new prompts are added,
    /// restored ones confirmed, answered ones get their answer again). Nothing is concluded
    /// from what is *not* listed: a CLI that predates the lists omits them, and a prompt
    /// inherited from an earlier worker can be answerable without being listed.
    fn on_initialized(&mut self, resp: ccr_protocol::ControlResponse, out: &mut impl Output) {
        let absent = resp.pending.is_absent();
        self.initialize = match (&resp.outcome, absent) {
            (Err(_), true) => InitializeState::Failed,
            (_, true) => InitializeState::Unlisted,
            (_, false) => InitializeState::Listed,
        };
        if let Err(e) = &resp.outcome {
            info!(error = %e, "initialize answered with an error; relying on replays");
        }
        if absent {
            info!("initialize reply lists no pending requests (an older CLI); relying on replays");
            return;
        }
        let mut listed = 0;
        for entry in resp.pending.all() {
            listed += 1;
            let text = entry.to_string();
            match ccr_protocol::classify(&text) {
                Ok(
                    request @ (Inbound::PermissionPrompt(_) | Inbound::UnsupportedRequest { .. }),
                ) => self.on_request(request, out),
                Ok(other) => debug!(?other, "initialize listed something that is not a request"),
                Err(error) => self.on_unparseable(&text, error, out),
            }
        }
        info!(listed, "initialize reply: pending requests listed");
        out.initialized();
    }

    /// A message over `[ccr] max_frame_bytes` (its head scanned, never kept): counted, and
    /// answered by what it is.
    pub fn on_oversized(&mut self, head: ScannedHead, limit: usize, out: &mut impl Output) {
        self.watchdog.heard();
        let why = format!(
            "the request is {} bytes, over the supervisor's limit of {limit} bytes (max_frame_bytes)",
            head.bytes
        );
        let kind = FrameKind::Oversized;
        self.answer_unreadable(head, kind, &why, LIMIT_FRAME_BYTES, out);
    }

    /// A frame `classify` could not read: a `control_request` in it is still answered
    /// (too deep for the JSON parser, or malformed), anything else is skipped.
    fn on_unparseable(&mut self, text: &str, error: FrameError, out: &mut impl Output) {
        let maybe_request = memchr::memmem::find(text.as_bytes(), b"control_request").is_some();
        let head = maybe_request.then(|| HeadScanner::scan(text.as_bytes()));
        match head {
            Some(head) if head.max_depth > MAX_JSON_DEPTH => {
                let why = format!(
                    "the request nests {} levels deep, over the supervisor's JSON depth limit of {MAX_JSON_DEPTH}",
                    head.max_depth
                );
                let kind = FrameKind::TooDeep;
                self.answer_unreadable(head, kind, &why, LIMIT_JSON_DEPTH, out);
            }
            Some(head) if head.request_id.is_some() => {
                let why = format!("the request could not be parsed ({error})");
                let kind = FrameKind::Invalid;
                self.answer_unreadable(head, kind, &why, LIMIT_UNPARSEABLE, out);
            }
            _ => {
                let (error, len) = (&error, text.len());
                FrameUnparseable { error, len }.emit(&mut self.counters, &self.metrics.frames);
            }
        }
    }

    /// Answer what can be answered of an unreadable frame, counted as `kind` (never
    /// silently: logged and published as an error for the session either way).
    fn answer_unreadable(
        &mut self,
        head: ScannedHead,
        kind: FrameKind,
        why: &str,
        decided_by: &'static str,
        out: &mut impl Output,
    ) {
        let answer = ccr_protocol::unreadable(&head, why);
        let request_id = head.request_id.as_deref().unwrap_or("");
        let msg_type = head.msg_type.as_deref().unwrap_or("untyped");
        let what = match &answer {
            Unreadable::Skip => "skipped",
            Unreadable::Prompt { .. } => "prompt denied",
            Unreadable::Error { .. } => "answered with an error",
            Unreadable::Unanswered { .. } => "left for a client that can render it",
        };
        UnreadableFrame {
            session_id: &self.session_id,
            kind,
            len: head.bytes,
            request_id,
            msg_type,
            what,
            why,
        }
        .emit(&mut self.counters, &self.metrics.frames, &mut *out);
        match answer {
            Unreadable::Skip | Unreadable::Unanswered { .. } => {}
            Unreadable::Error { request_id, error } => {
                out.reply(ccr_protocol::error_response(&request_id, &error))
            }
            Unreadable::Prompt { prompt, message } => out.prompt(
                prompt,
                Some(Refusal {
                    decided_by,
                    message,
                    reason: why.to_owned(),
                }),
            ),
        }
    }
}

/// A router's output is where the telemetry of its frames is published.
impl<O: Output + ?Sized> Publish for &mut O {
    fn publish(&mut self, event: Event) {
        Output::publish(&mut **self, event);
    }
}

/// A bounded set of recently seen ids, oldest forgotten first.
#[derive(Debug)]
pub struct RecentIds {
    set: HashSet<Box<str>>,
    order: VecDeque<Box<str>>,
    cap: usize,
}

impl RecentIds {
    /// A set remembering the last `cap` ids (at least one).
    pub fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Remember `id`; false when it was seen already.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.into());
        self.order.push_back(id.into());
        true
    }
}

/// The response watchdog (PROTOCOL §6): after the supervisor sends something, the session
/// must say something (anything) within the timeout, or the connection is presumed dead.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    /// When the oldest unanswered send happened (`None`: nothing awaited).
    waiting_since: Option<Instant>,
}

impl Watchdog {
    /// The supervisor sent something.
    pub fn sent(&mut self, now: Instant) {
        self.waiting_since.get_or_insert(now);
    }

    /// The session said something (no clock read: this runs for every frame).
    pub fn heard(&mut self) {
        self.waiting_since = None;
    }

    /// Time left before an unanswered send expires (`None`: nothing awaited).
    pub fn left(&self, now: Instant, timeout: Duration) -> Option<Duration> {
        let since = self.waiting_since?;
        Some(timeout.saturating_sub(now.saturating_duration_since(since)))
    }

    /// True once `timeout` has passed since an unanswered send (`timeout` zero: never).
    pub fn expired(&self, now: Instant, timeout: Duration) -> bool {
        !timeout.is_zero()
            && self
                .waiting_since
                .is_some_and(|since| now.saturating_duration_since(since) >= timeout)
    }
}

#[cfg(test)]
mod tests;
