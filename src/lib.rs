//! ccr-supervisor: joins many remote Claude Code (CCR) sessions, keeps their
//! WebSockets alive, shows operators what each one is doing, and answers their
//! permission prompts so that none is lost, answered twice, or answered by
//! someone who should not.
//!
//! Module map (where things live):
//!
//! - [`session`]: one session — reconnect policy and frame reassembly (pure),
//!   token sources, the transport-agnostic `router` (what each frame means, the
//!   requests the supervisor sends), and the `SessionActor`, its WebSocket transport.
//! - [`registry`]: where a `can_use_tool` prompt is stored — the pure `store`
//!   and the `PermissionRegistry` actor that delivers answers, also after reconnects.
//! - [`supervisor`]: the restart budget (pure) and the `Supervisor` actor that
//!   spawns sessions over arbiters and restarts crashed ones.
//! - [`policy`]: rules that answer prompts without a human (pure matching, no async).
//! - [`ledger`]: the durable decision ledger (SQLite) — every prompt and answer, restored after a restart.
//! - [`api`]: actix-web routes and the one `ApiError`.
//! - [`events`]: the bounded internal event bus.
//! - [`limits`]: the open-files budget and session connection slots, event-stream
//!   reader caps, and the rate limit of repeated warnings.
//! - [`config`]: raw `config` crate input → validated [`config::Config`].
//! - [`demo`]: the embedded CCR simulator of demo mode (the `ccr-sim` crate, feature `demo`).
//! - [`app`]: the factory that wires it all, shared by `main` and the tests.

//!
//! Protocol behaviour (the wire contract is `PROTOCOL.md`; the SDK's own types decide
//! where it is silent):
//!
//! - **One transport seam.** The WebSocket subscribe is the transport today; everything
//!   that is not WebSocket-specific — classification and routing, prompts, `initialize`,
//!   interrupts and their answers, echo dedupe, the watchdog — lives in
//!   `session::router` and talks to its transport through one small `Output` trait. The
//!   SSE transport newer SDKs prefer is one new module feeding the same router; the
//!   registry and the API never learn which transport carried a frame.
//! - **Joining.** Every (re)connect sends `initialize`; what its reply lists as pending is
//!   routed like a replay. Absent lists (older CLIs) and unlisted prompts prove nothing.
//! - **Every prompt is answered exactly once**, with what the operator (or a rule) decided,
//!   recorded durably first; a replay gets the recorded answer again, also after a restart.
//!   A prompt the supervisor cannot read (too large, too deep) is denied, never skipped.
//! - **Answers** carry `updatedInput` (always), `toolUseID` and, when a person decided,
//!   `decisionClassification`, as the SDK's `PermissionResult` does.

#![warn(missing_docs)]

pub mod alloc;
pub mod api;
pub mod app;
pub mod config;
pub mod demo;
pub mod events;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod registry;
pub mod session;
pub mod supervisor;
pub mod telemetry;
pub mod util;
