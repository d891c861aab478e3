//! [`SimHandle`]: the typed control surface of a running simulator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::dev::ServerHandle;
use serde_json::Value;
use tokio::sync::broadcast;

use super::conn::{Out, WsConn};
use super::frames;
use super::script::Script;
use super::state::Shared;
use super::wire::WireRecord;
use super::{
    InitializeMode, InterruptMode, SeenRequest, SimEvent, CLOSE_GRACE, SHUTDOWN_CLOSE_CODE,
};

/// Handle to a running simulator; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: ServerHandle,
    persist: Option<std::path::PathBuf>,
}

fn send(addr: Option<Addr<WsConn>>, out: Out) -> bool {
    match addr {
        Some(addr) => {
            addr.do_send(out);
            true
        }
        None => false,
    }
}

impl SimHandle {
    pub(crate) fn new(
        shared: Arc<Shared>,
        addr: SocketAddr,
        server: ServerHandle,
        persist: Option<std::path::PathBuf>,
    ) -> Self {
        SimHandle {
            shared,
            addr,
            server,
            persist,
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, to be used as the API base.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A receiver of every later [`SimEvent`] (subscribe before acting).
    pub fn subscribe(&self) -> broadcast::Receiver<SimEvent> {
        self.shared.subscribe()
    }

    /// Every frame the client sent on any connection of `session`, in order.
    pub fn received(&self, session: &str) -> Vec<Value> {
        self.shared
            .read(session, |e| e.received.clone())
            .unwrap_or_default()
    }

    /// Every frame the client sent for `session`, as the exact text received.
    pub fn received_raw(&self, session: &str) -> Vec<String> {
        self.shared
            .read(session, |e| e.received_raw.clone())
            .unwrap_or_default()
    }

    /// Every body POSTed to `/events` of `session`.
    pub fn posted(&self, session: &str) -> Vec<Value> {
        self.shared
            .read(session, |e| e.posted.clone())
            .unwrap_or_default()
    }

    /// Number of accepted connections of `session` so far.
    pub fn connections(&self, session: &str) -> u32 {
        self.shared.read(session, |e| e.connections).unwrap_or(0)
    }

    /// Number of upgrade attempts for `session`, rejected ones included.
    pub fn attempts(&self, session: &str) -> u32 {
        self.shared.read(session, |e| e.attempts).unwrap_or(0)
    }

    /// Headers and query of the last upgrade attempt for `session`.
    pub fn last_headers(&self, session: &str) -> Option<SeenRequest> {
        self.shared
            .read(session, |e| e.last_headers.clone())
            .flatten()
    }

    /// True while `session` has a live connection.
    pub fn is_connected(&self, session: &str) -> bool {
        self.shared
            .read(session, |e| e.live.is_some())
            .unwrap_or(false)
    }

    /// Add a session (or reset an existing one: script from step 0, nothing outstanding).
    pub fn add_session(&self, id: &str, token: &str, script: Script) {
        self.shared.add_session(id, token, script);
    }

    /// Forget a session: later attempts get 4001 and its live connection is closed with 4001.
    pub fn remove_session(&self, id: &str) {
        send(self.shared.remove_session(id), Out::Close(4001));
    }

    /// Rotate the token the session expects.
    pub fn set_token(&self, id: &str, token: &str) {
        self.shared.with_entry(id, |e| {
            if e.token.is_some() {
                e.token = Some(token.to_owned());
            }
        });
    }

    /// Change how `id` reacts to interrupts.
    pub fn set_interrupt_mode(&self, id: &str, mode: InterruptMode) {
        self.shared.set_interrupt_mode(id, mode);
    }

    /// Fault: accept the next `times` authorized connects of `id`, then close them with `code`.
    pub fn reject_next(&self, id: &str, code: u16, times: u32) {
        self.shared
            .with_entry(id, |e| e.reject = Some((code, times)));
    }

    /// The `control_response` frames the client sent for `id` that answer `request_id`.
    pub fn answers(&self, id: &str, request_id: &str) -> Vec<Value> {
        self.received(id)
            .into_iter()
            .filter(|f| {
                f["type"] == "control_response" && f["response"]["request_id"] == request_id
            })
            .collect()
    }

    /// Fault: answer the next `times` upgrade attempts of `id` with HTTP `status`
    /// instead of upgrading (the client never opens); `times = 0` stops refusing.
    pub fn refuse_upgrade(&self, id: &str, status: u16, times: u32) {
        self.shared
            .with_entry(id, |e| e.refuse = Some((status, times)));
    }

    /// Send a JSON frame on the live connection now (false if none).
    pub fn push(&self, id: &str, frame: Value) -> bool {
        self.push_text(id, frame.to_string())
    }

    /// Send raw text on the live connection now (false if none).
    pub fn push_text(&self, id: &str, text: impl Into<String>) -> bool {
        send(self.shared.live_addr(id), Out::Text(text.into()))
    }

    /// Send a binary frame on the live connection now (false if none).
    pub fn push_binary(&self, id: &str, bytes: Vec<u8>) -> bool {
        send(self.shared.live_addr(id), Out::Binary(bytes.into()))
    }

    /// Send a `can_use_tool` prompt and track it for replay until answered or cancelled.
    ///
    /// The request carries `tool_use_id` `toolu_<request_id>`, `display_name`,
    /// `description` and empty `permission_suggestions`. Returns false when no
    /// connection is live: the prompt is still tracked and goes out on the next one.
    pub fn prompt(&self, id: &str, request_id: &str, tool_name: &str, input: Value) -> bool {
        let tool_use_id = format!("toolu_{request_id}");
        let request = frames::can_use_tool(tool_name, &input, &tool_use_id);
        self.prompt_with(id, request_id, request)
    }

    /// Like [`SimHandle::prompt`] with a caller-built `request` object.
    pub fn prompt_with(&self, id: &str, request_id: &str, request: Value) -> bool {
        let (frame, addr) = self.shared.prompt(id, request_id, request);
        send(addr, Out::Text(frame))
    }

    /// Withdraw a prompt with `control_cancel_request` and stop tracking it (false if not live).
    pub fn cancel(&self, id: &str, request_id: &str) -> bool {
        let (frame, addr) = self.shared.cancel(id, request_id);
        send(addr, Out::Text(frame))
    }

    /// Request ids of prompts sent but not answered or cancelled, in send order.
    pub fn outstanding(&self, id: &str) -> Vec<String> {
        self.shared
            .read(id, |e| {
                e.outstanding.iter().map(|o| o.request_id.clone()).collect()
            })
            .unwrap_or_default()
    }

    /// Withdraw an outstanding prompt with `control_cancel_request`, but only
    /// while a connection is live to carry it: returns that connection's number,
    /// or `None` (nothing changed) when nothing is live or the prompt is not outstanding.
    pub fn cancel_live(&self, id: &str, request_id: &str) -> Option<u64> {
        let (frame, addr, conn) = self.shared.cancel_live(id, request_id)?;
        addr.do_send(Out::Text(frame));
        Some(conn)
    }

    /// Withdraw an outstanding prompt while the session has no live connection,
    /// as when another client answered it meanwhile: no client is told, it is
    /// just not replayed any more. False (nothing changed) when a connection is
    /// live or the prompt is not outstanding.
    pub fn withdraw_unseen(&self, id: &str, request_id: &str) -> bool {
        self.shared.withdraw_unseen(id, request_id)
    }

    /// Fault: abort the live connection with a TCP reset (no close frame; false if none).
    pub fn reset_connection(&self, id: &str) -> bool {
        send(self.shared.live_addr(id), Out::Reset)
    }

    /// Fault: stop reading the live connection for `pause` (a slow reader; false if none).
    ///
    /// The client's frames (answers, pings, close replies) wait in the socket
    /// buffers; if the connection ends before the pause does, they are never read.
    pub fn pause_reading(&self, id: &str, pause: Duration) -> bool {
        send(self.shared.live_addr(id), Out::PauseReading(pause))
    }

    /// Drain the wire log (see [`crate::wire`]): the records since the last
    /// call, in order, and how many records were dropped so far because it was full.
    /// Empty unless the simulator was built with [`crate::SimBuilder::wire_log`].
    pub fn take_wire(&self) -> (Vec<WireRecord>, u64) {
        self.shared.take_wire()
    }

    /// Close the live connection with `code` (false if none).
    pub fn close(&self, id: &str, code: u16) -> bool {
        send(self.shared.live_addr(id), Out::Close(code))
    }

    /// Drop the live connection without a close frame (false if none).
    pub fn drop_connection(&self, id: &str) -> bool {
        send(self.shared.live_addr(id), Out::Drop)
    }

    /// Stop (or resume) answering the client's pings on `id`.
    pub fn set_paused(&self, id: &str, paused: bool) {
        self.shared.with_entry(id, |e| e.paused = paused);
    }

    /// Lose (or stop losing) every frame the client sends on `id`, as if each connection
    /// died before the session read them: nothing is recorded or answered.
    pub fn set_deaf(&self, id: &str, deaf: bool) {
        self.shared.with_entry(id, |e| e.deaf = deaf);
    }

    /// How `id` answers the client's `initialize` (default [`InitializeMode::Lists`]).
    pub fn set_initialize_mode(&self, id: &str, mode: InitializeMode) {
        self.shared.with_entry(id, |e| e.init_mode = mode);
    }

    /// Replay outstanding prompts on each new connection of `id` (default true, like CCR).
    pub fn set_replay(&self, id: &str, replay: bool) {
        self.shared.with_entry(id, |e| e.replay = replay);
    }

    /// Echo each user message POSTed to `/events` of `id` on its socket `times` times
    /// (CCR may send one back more than once).
    pub fn set_echo_posts(&self, id: &str, times: u8) {
        self.shared.with_entry(id, |e| e.echo_posts = times);
    }

    /// Stop tracking a prompt without telling the client (the session dropped it while
    /// nobody was connected, as a worker that restarted would).
    pub fn forget_prompt(&self, id: &str, request_id: &str) -> bool {
        self.shared.with_entry(id, |e| {
            let before = e.outstanding.len();
            e.outstanding.retain(|o| o.request_id != request_id);
            e.outstanding.len() != before
        })
    }

    /// Close every open socket with 1001, then stop the server.
    ///
    /// Each socket waits for the client's close reply (at most [`CLOSE_GRACE`]),
    /// then the server is stopped without waiting for lingering connections:
    /// well-behaved clients make this near-instant, silent ones cost the grace.
    pub async fn stop(&self) {
        let mut events = self.shared.subscribe();
        for conn in self.shared.all_conns() {
            conn.do_send(Out::Shutdown {
                code: SHUTDOWN_CLOSE_CODE,
                grace: CLOSE_GRACE,
            });
        }
        let deadline = tokio::time::Instant::now() + CLOSE_GRACE + Duration::from_millis(50);
        while !self.shared.lock().conns.is_empty() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => break,
            }
        }
        self.server.stop(false).await;
        if let Some(path) = &self.persist {
            if let Err(e) = super::persist::save(path, &super::persist::snapshot(&self.shared)) {
                tracing::warn!(path = %path.display(), error = %e, "cannot save simulator state");
            }
        }
        tracing::debug!(addr = %self.addr, "ccr simulator stopped");
    }
}
