//! The CCR simulator: an in-process fake of the CCR server for tests, the demo and benchmarks.
//!
//! It speaks the *server* side of PROTOCOL §1 and §4: a WebSocket subscribe
//! endpoint per session and the `POST /events` endpoint for user messages.
//! Each session follows a deterministic [`Script`] whose position survives
//! reconnects; prompts that were sent but not answered are replayed on every
//! new connection, exactly like the real worker does.
//!
//! Layout:
//! - `state`: the shared session table and every state change (one lock, short sections);
//! - `script` / `runner`: scenario steps and the per-connection task that plays them;
//! - `frames`: constructors for the JSON frames the simulator sends;
//! - `conn` / `http`: the WebSocket actor and the actix-web routes;
//! - `handle`: [`SimHandle`], the typed control surface used by tests;
//! - `load` / `load_conn` / `load_book` / `load_frames`: the load mode for benchmarks
//!   (thousands of sessions, pre-rendered frames, a control API).
//!
//! Every state change is also broadcast as a [`SimEvent`], so tests wait on
//! events (subscribe before acting) instead of sleeping.

#![warn(missing_docs)]

mod conn;
mod control;
mod frames;
mod handle;
mod http;
pub mod load;
mod load_book;
mod load_conn;
pub mod load_frames;
mod persist;
mod runner;
mod script;
mod socket;
mod state;
pub mod wire;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use serde_json::Value;

pub use handle::SimHandle;
pub use script::{Script, Step};
pub use wire::{WireEvent, WireRecord};

use state::Shared;

/// Close code sent to an older connection when a newer one of the same session takes over.
pub const REPLACED_CLOSE_CODE: u16 = 1000;
/// Close code sent to every open socket when the simulator stops.
pub const SHUTDOWN_CLOSE_CODE: u16 = 1001;
/// How long [`SimHandle::stop`] waits for each client's close reply before dropping it.
pub const CLOSE_GRACE: Duration = Duration::from_millis(250);
/// Capacity of the [`SimEvent`] broadcast channel.
pub const EVENT_CAPACITY: usize = 65536;

/// Something observable that happened inside the simulator.
#[derive(Clone, Debug, PartialEq)]
pub enum SimEvent {
    /// A known, authorized connection was accepted and became the session's live one.
    Connected {
        /// Session id.
        session: String,
        /// Simulator-wide connection number.
        connection: u64,
    },
    /// An upgrade was accepted and then closed at once with `code` (4001, 4003, or a fault).
    Rejected {
        /// Session id from the URL.
        session: String,
        /// Close code sent.
        code: u16,
    },
    /// The client sent a frame (same value as the entries of [`SimHandle::received`]).
    Received {
        /// Session id.
        session: String,
        /// Parsed JSON, or a string for non-JSON text and binary frames.
        frame: Value,
    },
    /// The client answered an outstanding prompt.
    ///
    /// `response` is the inner `response` object of a `success` answer (the
    /// `PermissionResult`, e.g. `{"behavior":"allow",...}`); for an `error`
    /// answer it is the whole outer response body (with `subtype` and `error`).
    Answered {
        /// Session id.
        session: String,
        /// The answered prompt.
        request_id: String,
        /// See above.
        response: Value,
    },
    /// An accepted connection ended (closed, dropped, replaced or stopped).
    Disconnected {
        /// Session id.
        session: String,
        /// Connection number given in `Connected`.
        connection: u64,
    },
    /// A valid body was POSTed to `/v1/sessions/{id}/events`.
    Posted {
        /// Session id.
        session: String,
        /// The whole JSON body.
        body: Value,
    },
}

/// Headers, query and peer address seen on an upgrade attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenRequest {
    /// The `anthropic-version` header.
    pub anthropic_version: Option<String>,
    /// The `organization_uuid` query parameter.
    pub organization_uuid: Option<String>,
    /// The bearer token from `Authorization`.
    pub bearer: Option<String>,
    /// The client's address (its source address and port).
    pub peer: Option<SocketAddr>,
}

/// How a session reacts to a client `interrupt` control request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InterruptMode {
    /// Like the real worker: cancel the pending prompt, answer success with
    /// `still_queued` (and `cancelled` for `cancel_queued`), end the turn.
    #[default]
    Answer,
    /// Like [`InterruptMode::Answer`], but the success carries no `response` at all, as
    /// CLI 2.1.197 answers.
    AnswerEmpty,
    /// Send nothing at all.
    Ignore,
    /// Answer with an `error` control response carrying this message.
    Error(String),
}

/// How a session answers the client's `initialize` control request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InitializeMode {
    /// Like CLI 2.1.268+: success with `pending_permission_requests`,
    /// `pending_elicitation_requests` and `pending_user_dialog_requests` (each outstanding
    /// request as sent).
    #[default]
    Lists,
    /// Like older CLIs: success without the lists.
    Omit,
    /// Answer with an `error` control response.
    Error,
    /// Send nothing at all.
    Ignore,
}

/// Builder for a simulator instance.
pub struct SimBuilder {
    bind: SocketAddr,
    sessions: Vec<(String, String, Script)>,
    modes: Vec<(String, InterruptMode)>,
    init_modes: Vec<(String, InitializeMode)>,
    workers: usize,
    idle_timeout: Duration,
    persist: Option<std::path::PathBuf>,
    wire_capacity: Option<usize>,
    keep_received: bool,
}

impl Default for SimBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SimBuilder {
    /// A simulator on 127.0.0.1 with an ephemeral port and no sessions.
    pub fn new() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            sessions: Vec::new(),
            modes: Vec::new(),
            init_modes: Vec::new(),
            workers: 1,
            idle_timeout: Duration::from_secs(120),
            persist: None,
            wire_capacity: None,
            keep_received: true,
        }
    }

    /// Keep the sessions' outstanding prompts in `path` (loaded at start, saved as they
    /// change and at stop), so they outlive a restart of the process like real CCR sessions.
    pub fn persist(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.persist = Some(path.into());
        self
    }

    /// Listen on this address instead of 127.0.0.1:0.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Add a session expecting bearer `token` and playing `script`.
    pub fn session(mut self, id: &str, token: &str, script: Script) -> Self {
        self.sessions.push((id.into(), token.into(), script));
        self
    }

    /// Set how session `id` reacts to interrupts (default [`InterruptMode::Answer`]).
    pub fn interrupt_mode(mut self, id: &str, mode: InterruptMode) -> Self {
        self.modes.push((id.into(), mode));
        self
    }

    /// Set how session `id` answers `initialize` (default [`InitializeMode::Lists`]).
    pub fn initialize_mode(mut self, id: &str, mode: InitializeMode) -> Self {
        self.init_modes.push((id.into(), mode));
        self
    }

    /// Number of server worker threads (default 1; raise for benchmarks).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Close a socket on which the client sent nothing (not even a ping) for this long (default 120 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Keep an ordered [`wire`] log of at most `capacity` undrained records
    /// (drained by [`SimHandle::take_wire`]).
    pub fn wire_log(mut self, capacity: usize) -> Self {
        self.wire_capacity = Some(capacity);
        self
    }

    /// Keep every client frame for [`SimHandle::received`] (default true; long
    /// runs that read the wire log turn it off so memory stays flat).
    pub fn keep_received(mut self, keep: bool) -> Self {
        self.keep_received = keep;
        self
    }

    /// Bind and start serving; must be called inside a running actix System.
    pub async fn start(self) -> std::io::Result<SimHandle> {
        let shared = Arc::new(Shared::new(
            self.idle_timeout,
            self.wire_capacity,
            self.keep_received,
        ));
        for (id, token, script) in self.sessions {
            shared.add_session(&id, &token, script);
        }
        for (id, mode) in self.modes {
            shared.set_interrupt_mode(&id, mode);
        }
        for (id, mode) in self.init_modes {
            shared.with_entry(&id, |e| e.init_mode = mode);
        }
        if let Some(path) = &self.persist {
            persist::restore(&shared, persist::load(path));
            actix_rt::spawn(persist::keep(shared.clone(), path.clone()));
        }
        let data = web::Data::from(shared.clone());
        let server =
            HttpServer::new(move || App::new().app_data(data.clone()).configure(http::routes))
                .workers(self.workers)
                .backlog(4096)
                .on_connect(socket::remember_socket)
                .disable_signals()
                .shutdown_timeout(1)
                .client_disconnect_timeout(Duration::from_millis(100))
                .bind(self.bind)?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("simulator bound no address"))?;
        let server = server.run();
        let server_handle = server.handle();
        actix_rt::spawn(server);
        tracing::debug!(%addr, "ccr simulator listening");
        Ok(SimHandle::new(shared, addr, server_handle, self.persist))
    }
}

/// Run a simulator with `sessions` demo sessions `sim-1..sim-N` until Ctrl-C.
///
/// Prints the base URL on stdout so scripts can pick it up.
pub async fn run_standalone(
    bind: SocketAddr,
    sessions: usize,
    token: String,
    turn_pause: Duration,
) -> std::io::Result<()> {
    let mut builder = SimBuilder::new().bind(bind).workers(2);
    for n in 1..=sessions {
        builder = builder.session(&format!("sim-{n}"), &token, Script::demo(turn_pause));
    }
    let sim = builder.start().await?;
    println!("{}", sim.base_url());
    let signal = actix_rt::signal::ctrl_c().await;
    sim.stop().await;
    signal
}
