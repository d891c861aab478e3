//! The `SessionActor`: the WebSocket transport of one session.
//!
//! It connects, keeps the socket alive (pings, reconnects), reassembles frames and
//! writes; what the frames mean is the transport-agnostic [`Router`]'s business
//! (see `router` for the seam). Pure decisions live elsewhere (`ReconnectPolicy`,
//! `Reassembler`, `Router`); this file performs their effects.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use actix_codec::Framed;
use awc::error::WsProtocolError;
use awc::ws::{self, CloseCode, CloseReason, Frame, Message as WsMessage};
use awc::BoxedSocket;
use bytes::Bytes;
use bytestring::ByteString;

use futures_util::StreamExt;
use rand::Rng;
use tracing::{debug, info, info_span, warn};

use super::assembly::{codec_limit, Assembled, Reassembler};
use super::client::{events_url, redact, subscribe_uri, subscribe_url, thread_client};
use super::messages::*;
use super::reconnect::{Attempt, Ended, GiveUp, Lease, Next, ReconnectPolicy};
use super::router::{Output, Router};
use super::socket::{rebuffer, WsSink};
use super::token::TokenSource;
use crate::config::{CcrConfig, ReconnectConfig, SessionSpec};
use crate::events::{Event, EventBus};
use crate::limits::fd::{ConnSlot, ConnSlots};
use crate::limits::repeat::session_warning;
use crate::registry::{
    ConnId, Deliver, PermissionRegistry, PromptCancelled, PromptReceived, Refusal,
    SessionConnected, SessionDisconnected, SessionInitialized, WriteOutcome,
};
use crate::telemetry::sessions::{
    ConnectionEnded, ReconnectScheduled, SessionStateChanged, WatchdogFired,
};
use ccr_protocol::reply::{InterruptAnswer, SentMessage};
use ccr_protocol::session::{Counters, SessionState, SessionStatus};
use ccr_protocol::PermissionPrompt;

mod handlers;

/// Settings and peers shared by every session actor.
pub struct SessionShared {
    /// `[ccr]` settings.
    pub ccr: CcrConfig,
    /// `[ccr] source_addresses`, shared by every thread's client.
    pub source_addresses: Arc<[std::net::IpAddr]>,
    /// The CCR API base actually used (the embedded simulator's, in demo mode), unless a
    /// session sets its own.
    pub base_url: String,
    /// `[reconnect]` settings.
    pub reconnect: Arc<ReconnectConfig>,
    /// The permission registry.
    pub registry: Addr<PermissionRegistry>,
    /// Where state reports go (the supervisor).
    pub reports: Recipient<SessionReport>,
    /// The event bus.
    pub bus: EventBus,
    /// Process metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Connection slots: the share of the open-files limit sessions may hold.
    pub slots: ConnSlots,
    /// Handshakes in flight, all sessions together (see [`HANDSHAKES_IN_FLIGHT`]).
    pub handshakes: Arc<tokio::sync::Semaphore>,
    /// Where notifications go (`session_failed`).
    pub notifier: crate::notify::Notifier,
    /// In a cluster: the leases held here; an answer is written only under one.
    pub fences: Option<Arc<crate::cluster::Fences>>,
}

/// Connect attempts (token, TCP connect, WebSocket handshake) in flight at once, all
/// sessions together. A session waits for its turn *before* the attempt's timeout
/// (`[ccr] connect_timeout`) starts: with 19,900 sessions joining at once, each
/// `connect()` behind the others on the connect thread (2-4 ms each past ~14,000
/// sockets to one endpoint) made 3,508 attempts time out in the queue. 512 in flight
/// wait at most a few seconds there, and still overlap the round trips of a remote
/// endpoint.
pub const HANDSHAKES_IN_FLIGHT: usize = 512;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A process-unique id for a new connection.
fn next_conn_id() -> ConnId {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

struct Live {
    id: ConnId,
    sink: SinkWrite<WsMessage, WsSink>,
    stream: SpawnHandle,
    last_pong: Instant,
    got_frame: bool,
    close_code: Option<u16>,
    /// Held while the connection lives.
    _slot: ConnSlot,
}

/// One supervised CCR session and its WebSocket.
pub struct SessionActor {
    spec: Arc<SessionSpec>,
    shared: Arc<SessionShared>,
    incarnation: u64,
    policy: ReconnectPolicy,
    /// The session's state. With the three fields after it, the status less what the
    /// router counts ([`SessionActor::current_status`]): a whole `SessionStatus` here kept
    /// a second copy of the router's frame counters in every session's memory.
    state: SessionState,
    /// Last error seen (connect failure, close reason, ...), if any.
    last_error: Option<String>,
    /// When the current connection opened.
    connected_since: Option<SystemTime>,
    /// Reconnect attempts of this incarnation.
    reconnects: u64,
    conn: Option<Live>,
    connecting: bool,
    closing: bool,
    reassembler: Reassembler,
    /// Everything that is not WebSocket-specific: routing, requests to the session.
    router: Router,
    /// The spec's labels, shared with every prompt (for policy selectors).
    labels: Arc<[String]>,
    /// Replies the router made while the lease was lapsed, written on this connection if
    /// the lease is renewed while it lives (at most [`WITHHELD_MAX`]).
    withheld: Vec<String>,
}

/// Replies kept while a lease is lapsed; past this many, further ones are dropped (the
/// session's next owner is asked again when the session replays its requests).
const WITHHELD_MAX: usize = 64;

/// The WebSocket transport's side of [`Output`]: what routing a frame makes it do.
struct Shell<'a> {
    session_id: &'a Arc<str>,
    shared: &'a SessionShared,
    conn: ConnId,
    labels: &'a Arc<[String]>,
    sink: Option<&'a mut SinkWrite<WsMessage, WsSink>>,
    withheld: &'a mut Vec<String>,
}

impl Output for Shell<'_> {
    fn publish(&mut self, event: Event) {
        self.shared.bus.publish(event);
    }

    fn prompt(&mut self, prompt: PermissionPrompt, refusal: Option<Refusal>) {
        self.shared.registry.do_send(PromptReceived {
            session_id: self.session_id.clone(),
            conn: self.conn,
            prompt,
            labels: self.labels.clone(),
            refusal,
        });
    }

    fn cancel(&mut self, request_id: String) {
        self.shared.registry.do_send(PromptCancelled {
            session_id: self.session_id.clone(),
            request_id,
        });
    }

    fn reply(&mut self, frame: String) {
        // Fenced like every write: a lapsed owner sends nothing. Kept for this connection
        // until the lease is renewed; a new owner is asked again by the session's replay.
        if let Some(f) = &self.shared.fences {
            if !f.may_send(self.session_id) {
                if self.withheld.len() < WITHHELD_MAX {
                    warn!("lease lapsed: a reply to the session waits for its renewal");
                    self.withheld.push(frame);
                } else {
                    warn!("lease lapsed: a reply to the session was dropped (too many waiting)");
                }
                return;
            }
        }
        if let Some(sink) = self.sink.as_mut() {
            let _ = sink.write(WsMessage::Text(ByteString::from(frame)));
        }
    }

    fn initialized(&mut self) {
        self.shared.registry.do_send(SessionInitialized {
            session_id: self.session_id.clone(),
            conn: self.conn,
        });
    }
}

impl SessionActor {
    /// A session actor; it connects as soon as it starts.
    pub fn new(spec: Arc<SessionSpec>, shared: Arc<SessionShared>, incarnation: u64) -> Self {
        Self {
            policy: ReconnectPolicy::new(shared.reconnect.clone()),
            reassembler: Reassembler::new(shared.ccr.max_frame_bytes),
            router: Router::new(spec.id.clone(), shared.metrics.clone()),
            withheld: Vec::new(),
            labels: spec.labels.clone().into(),
            spec,
            shared,
            incarnation,
            state: SessionState::Connecting,
            last_error: None,
            connected_since: None,
            reconnects: 0,
            conn: None,
            connecting: false,
            closing: false,
        }
    }

    fn set_state(&mut self, state: SessionState) {
        self.state = state.clone();
        self.report();
        SessionStateChanged {
            session_id: self.spec.id.clone(),
            state,
            last_error: self.last_error.clone(),
            labels: self.labels.clone(),
        }
        .emit((&self.shared.bus, &self.shared.notifier));
    }

    fn report(&self) {
        self.shared.reports.do_send(SessionReport {
            session_id: self.spec.id.clone(),
            incarnation: self.incarnation,
            status: self.current_status(),
        });
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.conn.is_some() || self.connecting || self.closing {
            return;
        }
        if self.policy.due(self.lease()) == Attempt::AwaitLease {
            return self.await_lease();
        }
        self.connecting = true;
        let ccr = &self.shared.ccr;
        let url = subscribe_url(
            self.spec.base_url(&self.shared.base_url),
            &self.spec.id,
            self.spec.organization_uuid(&ccr.organization_uuid),
        );
        let token_source = TokenSource::from_spec(&self.spec.token);
        let token_timeout = ccr.token_command_timeout;
        let version = ccr.anthropic_version.clone();
        let codec_max = codec_limit(ccr.max_frame_bytes);
        let uri = subscribe_uri(&url);
        let client = self.client();
        debug!(%url, "connecting");
        // A slot first: past the open-files budget, wait (in order) instead of failing on EMFILE.
        let slots = self.shared.slots.clone();
        let free = slots.try_take();
        if free.is_none() {
            let waiting = slots.waiting_message();
            session_warning("session waits for a connection slot", &waiting);
            self.last_error = Some(waiting);
            self.set_state(SessionState::Connecting);
        }
        let handshakes = self.shared.handshakes.clone();
        // Looked at again just before the socket opens: the turns above may take seconds.
        let fences = self.shared.fences.clone();
        let session = self.spec.id.clone();
        let attempt = async move {
            let slot = match free {
                Some(slot) => slot,
                None => slots.take().await.ok_or("connection slots closed")?,
            };
            // Held until the handshake is done (or failed), so its timeout never runs out in a queue.
            let _turn = handshakes
                .acquire_owned()
                .await
                .map_err(|_| "handshake turns closed")?;
            // Fetched afresh at every attempt: tokens rotate.
            let token = token_source
                .fetch(token_timeout)
                .await
                .map_err(|e| format!("cannot read access token: {e}"))?;
            let epoch = fences.as_ref().map(|f| f.epoch(&session));
            if epoch == Some(None) {
                return Ok(None);
            }
            let opened = client
                .ws(uri?)
                .bearer_auth(token.expose())
                .header("anthropic-version", version)
                .max_frame_size(codec_max)
                .connect()
                .await
                .map_err(|e| redact(format!("connect failed: {e}"), token.expose()))?;
            // The handshake may take up to `connect_timeout`: a lease that lapsed (or was
            // taken and given back) meanwhile may have a new owner connected by now, so
            // this socket is closed unused, nothing sent on it, and the attempt made again
            // under the lease as it is now.
            if let (Some(f), Some(before)) = (&fences, epoch) {
                if f.epoch(&session) != before {
                    drop(opened);
                    return Ok(None);
                }
            }
            Ok(Some((opened.1, slot)))
        };
        ctx.spawn(attempt.into_actor(self).map(|res, act, ctx| {
            act.connecting = false;
            match res {
                Ok(opened) if act.closing => drop(opened),
                Ok(Some((framed, slot))) => act.on_open(framed, slot, ctx),
                // The lease lapsed while the attempt waited its turn or shook hands: nothing
                // was sent.
                Ok(None) => act.connect(ctx),
                Err(error) => act.on_ended(Ended::NeverOpened, Some(error), ctx),
            }
        }));
    }

    /// This thread's client (one per thread, shared by its sessions: kept by none of them).
    fn client(&self) -> awc::Client {
        thread_client(
            self.shared.ccr.connect_timeout,
            &self.shared.source_addresses,
        )
    }

    /// The session's lease as an attempt to connect finds it now.
    fn lease(&self) -> Lease {
        if self.lease_held() {
            Lease::Valid
        } else {
            Lease::NotValid
        }
    }

    /// Whether this instance may act on the session: always, unless clustered and the
    /// session's lease is not held here (any more, by its local deadline).
    fn lease_held(&self) -> bool {
        self.shared
            .fences
            .as_ref()
            .is_none_or(|f| f.may_send(&self.spec.id))
    }

    /// An attempt is due but the lease is not valid: connect nothing until it is renewed
    /// ([`LeaseRenewed`], or seen at a heartbeat) or the session is let go.
    fn await_lease(&mut self) {
        info!("lease not held valid here now: not connecting until it is renewed");
        self.last_error =
            Some("lease lapsed: waiting for its renewal before connecting".to_owned());
        self.report();
    }

    /// The lease is valid again with the connection alive: write the replies withheld
    /// while it was lapsed.
    fn write_withheld(&mut self) {
        if self.withheld.is_empty() || !self.lease_held() {
            return;
        }
        for frame in std::mem::take(&mut self.withheld) {
            if !self.write(frame) {
                break;
            }
        }
    }

    /// The lease may be valid again: make the attempt that waited for it, if any.
    fn lease_maybe_renewed(&mut self, ctx: &mut Context<Self>) {
        self.write_withheld();
        if !self.connecting && self.policy.lease_renewed(self.lease()) {
            info!("lease renewed: connecting");
            self.connect(ctx);
        }
    }

    fn on_open(
        &mut self,
        framed: Framed<BoxedSocket, ws::Codec>,
        slot: ConnSlot,
        ctx: &mut Context<Self>,
    ) {
        let (sink, stream) = rebuffer(framed);
        let id = next_conn_id();
        // Items carry their connection: one already read from a stream that a handler of
        // the same poll just cancelled (a reset right after a close) must not end a newer one.
        let stream = ctx.add_stream(stream.map(move |item| (id, item)));
        self.conn = Some(Live {
            id,
            sink: SinkWrite::new(sink, ctx),
            stream,
            last_pong: Instant::now(),
            got_frame: false,
            close_code: None,
            _slot: slot,
        });
        self.reassembler.reset();
        self.withheld.clear();
        self.policy.on_open();
        self.connected_since = Some(SystemTime::now());
        // Tell the registry before any frame of this connection is routed.
        self.shared.registry.do_send(SessionConnected {
            session_id: self.spec.id.clone(),
            conn: id,
            writer: ctx.address().recipient(),
        });
        self.set_state(SessionState::Connected);
        self.send_initialize();
    }

    /// The current connection (or attempt) ended: schedule what the policy says.
    fn on_ended(&mut self, ended: Ended, error: Option<String>, ctx: &mut Context<Self>) {
        self.withheld.clear();
        if let Some(mut live) = self.conn.take() {
            ctx.cancel_future(live.stream);
            // SinkWrite's flush task owns the socket: close it, or an abandoned
            // connection (missing pong, protocol error) would stay open.
            live.sink.close();
            self.shared.registry.do_send(SessionDisconnected {
                session_id: self.spec.id.clone(),
                conn: Some(live.id),
            });
        }
        // Dropping the senders tells waiting interrupts the connection is gone.
        self.router.reset();
        self.connected_since = None;
        if let Some(error) = error {
            let session_id = &self.spec.id;
            ConnectionEnded {
                session_id,
                error: &error,
            }
            .emit(&self.shared.bus);
            self.last_error = Some(error);
        }
        if self.closing {
            self.set_state(SessionState::Disconnected);
            ctx.stop();
            return;
        }
        let unit: f64 = rand::thread_rng().gen();
        match self.policy.on_end(ended, unit) {
            Next::Retry { delay, attempt } => {
                ReconnectScheduled.emit(&mut self.reconnects, &self.shared.metrics);
                self.set_state(SessionState::Reconnecting {
                    attempt,
                    delay_ms: delay.as_millis() as u64,
                });
                ctx.run_later(delay, |act, ctx| act.connect(ctx));
            }
            Next::GiveUp(reason) => {
                let code = match reason {
                    GiveUp::Unauthorized => "unauthorized",
                    GiveUp::SessionNotFound => "session_not_found",
                };
                self.set_state(SessionState::Failed {
                    reason: code.into(),
                    detail: reason.describe().into(),
                });
                ctx.stop();
            }
        }
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let sent = Instant::now();
        if self
            .router
            .initialize_overdue(sent, self.shared.ccr.initialize_timeout)
        {
            info!("no initialize reply in time; relying on replays");
        }
        self.write_withheld();
        let Some(live) = self.conn.as_mut() else {
            // A renewal the lease loop did not report as one (it had not marked the lease
            // lapsed yet) is seen here.
            return self.lease_maybe_renewed(ctx);
        };
        let conn = live.id;
        if live.sink.write(WsMessage::Ping(Bytes::new())).is_err() {
            return;
        }
        let timeout = self.shared.ccr.pong_timeout;
        ctx.run_later(timeout, move |act, ctx| {
            let missing = matches!(&act.conn, Some(l) if l.id == conn && l.last_pong < sent);
            if missing {
                let error = format!("no pong within {timeout:?}: connection presumed dead");
                act.on_ended(Ended::Closed { code: None }, Some(error), ctx);
            }
        });
    }

    fn write(&mut self, text: String) -> bool {
        match self.conn.as_mut() {
            Some(live) => live
                .sink
                .write(WsMessage::Text(ByteString::from(text)))
                .is_ok(),
            None => false,
        }
    }

    /// Route with the current connection as the transport.
    fn route(&mut self, f: impl FnOnce(&mut Router, &mut Shell<'_>)) {
        let (conn, sink) = match self.conn.as_mut() {
            Some(live) => (live.id, Some(&mut live.sink)),
            None => (0, None),
        };
        let mut shell = Shell {
            session_id: &self.spec.id,
            shared: &self.shared,
            conn,
            labels: &self.labels,
            sink,
            withheld: &mut self.withheld,
        };
        f(&mut self.router, &mut shell);
    }

    fn on_text(&mut self, data: Bytes) {
        let Ok(text) = simdutf8::basic::from_utf8(&data) else {
            return self.router.skip("text frame is not UTF-8", data.len());
        };
        if let Some(live) = self.conn.as_mut() {
            if !live.got_frame {
                live.got_frame = true;
                self.policy.on_first_frame();
            }
        }
        self.route(|router, shell| router.on_text(text, shell));
    }

    fn on_assembled(&mut self, out: Assembled, len: usize) {
        match out {
            Assembled::Text(data) => self.on_text(data),
            Assembled::Oversized(head) => {
                let limit = self.shared.ccr.max_frame_bytes;
                self.route(|router, shell| router.on_oversized(head, limit, shell));
            }
            Assembled::Skip(reason) => self.router.skip(reason, len),
            Assembled::Partial => {}
        }
    }

    /// A connection opened: send `initialize` (unless off) so the reply tells what the
    /// session still waits on; routing never waits for it.
    fn send_initialize(&mut self) {
        let shared = self.shared.clone();
        if !shared.ccr.initialize_on_connect {
            return;
        }
        let frame = self
            .router
            .initialize(&shared.ccr.supported_dialog_kinds, Instant::now());
        self.write(frame);
    }

    /// Something was sent that the session must answer: check the response watchdog
    /// (PROTOCOL §6) once `[ccr] response_watchdog` has passed. A timer only while a
    /// send is unanswered, so idle sessions hold none.
    fn arm_watchdog(&mut self, ctx: &mut Context<Self>) {
        let timeout = self.shared.ccr.response_watchdog;
        if timeout.is_zero() || self.spec.viewer_only {
            return;
        }
        ctx.run_later(timeout, |act, ctx| act.check_watchdog(ctx));
    }

    /// Silence for `[ccr] response_watchdog` after the supervisor sent something means
    /// the connection is dead: reconnect now. Still waiting but not that long (a later
    /// send, after the first was answered): look again when it would be.
    fn check_watchdog(&mut self, ctx: &mut Context<Self>) {
        let timeout = self.shared.ccr.response_watchdog;
        if self.conn.is_none() {
            return;
        }
        let now = Instant::now();
        if self.router.watchdog_expired(now, timeout) {
            let error = format!(
                "nothing received within {timeout:?} after the supervisor sent a request: connection presumed dead"
            );
            WatchdogFired.emit(&self.shared.metrics);
            self.on_ended(Ended::Watchdog, Some(error), ctx);
        } else if let Some(left) = self.router.watchdog_left(now, timeout) {
            ctx.run_later(left, |act, ctx| act.check_watchdog(ctx));
        }
    }

    /// The status, with the router's counters.
    fn current_status(&self) -> SessionStatus {
        SessionStatus {
            state: self.state.clone(),
            last_error: self.last_error.clone(),
            connected_since: self.connected_since,
            counters: Counters {
                frames_in: self.router.counters(),
                reconnects: self.reconnects,
                ..Counters::default()
            },
            initialize: self.router.initialize_state(),
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.set_state(SessionState::Connecting);
        ctx.run_interval(self.shared.ccr.ping_interval, |act, ctx| act.heartbeat(ctx));
        self.connect(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.shared.registry.do_send(SessionDisconnected {
            session_id: self.spec.id.clone(),
            conn: None,
        });
    }
}

impl StreamHandler<(ConnId, Result<Frame, WsProtocolError>)> for SessionActor {
    fn handle(
        &mut self,
        (conn, item): (ConnId, Result<Frame, WsProtocolError>),
        ctx: &mut Context<Self>,
    ) {
        if self.conn.as_ref().map(|l| l.id) != Some(conn) {
            // The connection already ended (its stream was cancelled mid-poll).
            return;
        }
        match item {
            Ok(frame) => self.on_frame(frame, ctx),
            Err(e) => {
                let error = format!("websocket protocol error: {e}");
                self.on_ended(Ended::Closed { code: None }, Some(error), ctx)
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // Never stop the actor here (the default): the reconnect policy decides.
        self.connection_over(ctx);
    }
}

impl SessionActor {
    /// One frame of the live connection.
    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        match frame {
            Frame::Text(data) => {
                let len = data.len();
                let out = self.reassembler.whole_text(data);
                self.on_assembled(out, len);
            }
            Frame::Binary(data) => self.router.skip("binary frame", data.len()),
            Frame::Continuation(item) => {
                let out = self.reassembler.continuation(item);
                self.on_assembled(out, 0);
            }
            Frame::Ping(payload) => {
                if let Some(live) = self.conn.as_mut() {
                    let _ = live.sink.write(WsMessage::Pong(payload));
                }
            }
            Frame::Pong(_) => {
                if let Some(live) = self.conn.as_mut() {
                    live.last_pong = Instant::now();
                }
            }
            Frame::Close(reason) => self.on_server_close(reason, ctx),
        }
    }

    /// The server closed: echo its close and end the connection at once (some servers are
    /// slow to drop TCP after the handshake).
    fn on_server_close(&mut self, reason: Option<CloseReason>, ctx: &mut Context<Self>) {
        let code = reason.as_ref().map(|r| u16::from(r.code));
        info!(code, "server closed the connection");
        if let Some(live) = self.conn.as_mut() {
            live.close_code = code;
            let _ = live.sink.write(WsMessage::Close(reason));
        }
        self.connection_over(ctx);
    }

    /// The read side is over (EOF or a close frame): hand the outcome to the policy.
    fn connection_over(&mut self, ctx: &mut Context<Self>) {
        if self.conn.is_none() {
            return;
        }
        let code = self.conn.as_ref().and_then(|l| l.close_code);
        let error = match code {
            Some(1000) | None if self.closing => None,
            Some(code) => Some(format!("connection closed by server with code {code}")),
            None => Some("connection dropped without a close frame".to_owned()),
        };
        self.on_ended(Ended::Closed { code }, error, ctx);
    }
}

impl WriteHandler<WsProtocolError> for SessionActor {
    fn error(&mut self, err: WsProtocolError, _: &mut Context<Self>) -> Running {
        warn!(error = %err, "websocket write failed");
        // The read side will end too and drive the reconnect.
        Running::Continue
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The default stops the actor. A sink ends with its connection; the
        // reconnect policy, not the sink, decides what happens next.
    }
}

#[cfg(test)]
mod tests {
    /// Every session is a tokio task: its cell (a header, the actor's future, a trailer) is
    /// aligned to 128 bytes, and up to 1,024 bytes it takes the allocator's 1 KiB size
    /// class, above it the 1,280-byte one, 256 bytes more for every idle session. The
    /// future is this actor and about 424 bytes of actix's context, the tracing span and
    /// the exit report; the cell goes past 1,024 once the actor is over about 496 bytes
    /// (696 before it shed its copies of shared settings and counters, 440 after).
    #[test]
    fn the_actor_keeps_its_session_s_task_in_the_1_kib_cell() {
        let size = std::mem::size_of::<super::SessionActor>();
        assert!(size <= 496, "SessionActor is {size} bytes");
    }

    mod lease;
}
