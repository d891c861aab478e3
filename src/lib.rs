//! ccr-supervisor: joins many remote Claude Code (CCR) sessions, keeps their
//! WebSockets alive, shows operators what each one is doing, and answers their
//! permission prompts so that none is lost, answered twice, or answered by
//! someone who should not.
//!
//! Module map (where things live), in dependency order: each module depends only on those
//! listed before it and on the `ccr_protocol` crate (the wire shapes), below them all.
//!
//! - [`util`]: small shared helpers (background thread priority).
//! - [`alloc`]: the process allocator's tuning (mimalloc).
//! - [`config`]: `config.toml` + env overrides → a validated, plain-data [`config::Config`].
//! - [`metrics`]: Prometheus counters, gauges and latency histograms.
//! - [`events`]: the bounded internal event bus (history, live readers, the pure encoder).
//! - [`limits`]: open-files budget and connection slots, event-stream caps, warning rate limit.
//! - [`notify`]: `[[notify]]` sinks (webhook, Slack): which hear what (pure), payloads and
//!   signatures (pure), a bounded queue and a delivery thread per sink.
//! - [`telemetry`]: logging setup, and one typed event per notable happening that counts,
//!   logs and publishes it in one call.
//! - [`policy`]: rules that answer prompts without a human (pure); `Policy::compile` builds them.
//! - [`ledger`]: the durable decision ledger (SQLite, or PostgreSQL for a cluster): every
//!   prompt and answer, kept over restarts; a cluster member's writes fenced by its leases.
//! - [`cluster`]: session ownership by leases in PostgreSQL: who claims, hands over or gives
//!   up which session (pure), the SQL of leases and members, and the lease loop.
//! - [`registry`]: where a `can_use_tool` prompt is stored; the `PermissionRegistry` actor.
//!   - [`registry::store`]: pending prompts and the memory of finished ones (pure).
//!   - `registry::core`: what each prompt, answer, write and timer leads to (pure, effects out).
//! - [`session`]: one session: reconnect and reassembly (pure), token source, the `SessionActor`.
//!   - [`session::router`]: what each frame means, whatever transport carried it.
//! - [`preflight`]: token sources resolved before running (`check-config`, the start's
//!   refusal of an unset `token_env`).
//! - [`supervisor`]: the `Supervisor` actor: spawns sessions over arbiters, restarts crashed ones.
//!   - [`supervisor::budget`]: the OTP-style restart budget (pure).
//!   - `supervisor::slot`: one supervised session and what to do when its actor ends (pure).
//! - [`demo`]: the embedded CCR simulator of demo mode (the `ccr-sim` crate, feature `demo`).
//! - [`api`]: actix-web routes, the operator event stream, and the one `ApiError`.
//! - [`console`]: the operator console in the browser (`/`, `/ui/...`): pages over the API's
//!   reads, sign-in by cookie, embedded assets.
//! - [`systemd`]: `Type=notify`: readiness, the watchdog's pings and stopping, to systemd.
//! - [`reload`]: `SIGHUP` and `POST /v1/admin/reload`: the config file validated whole,
//!   then sessions, policy, operator tokens and notification sinks applied together.
//! - [`app`]: loads the config as the service runs it and wires it all; `main` and tests share it.
//!
//! `main.rs` (the binary) sits on top. The order is checked against every `crate::` path
//! under `src/` by the `dependency_order` test in `src/tests.rs`.

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
pub mod cluster;
pub mod config;
pub mod console;
pub mod demo;
pub mod events;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod preflight;
pub mod registry;
pub mod reload;
pub mod session;
pub mod supervisor;
pub mod systemd;
pub mod telemetry;
pub mod util;

#[cfg(test)]
mod tests;
