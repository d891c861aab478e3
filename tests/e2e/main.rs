//! End-to-end tests: the real app against the project's CCR simulator, over
//! real sockets on 127.0.0.1 with port 0. Every wait is on an event.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod api_errors;
mod auth;
mod bulk;
mod connect;
mod console;
mod ctl;
mod demo;
mod health;
mod limits;
mod notify;
mod openapi;
mod operator;
mod permissions;
mod policy;
mod protocol;
mod questions;
mod reconnect;
mod reload;
mod restore;
mod routing;
mod runtime_tokens;
mod slow_body;
mod stream;
mod stream_caps;
// Needs the panic-injection hook: run with `cargo test --features test-hooks`.
#[cfg(feature = "test-hooks")]
mod supervision;
