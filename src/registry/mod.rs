//! Pending permission requests of every session: the pure `core` (with the pure `store`)
//! decides, the `PermissionRegistry` actor performs what it decides.
//!
//! The registry lives on the main arbiter, apart from the session arbiters, so
//! it outlives any session actor's crash; decisions made while a session is
//! away are kept here and flushed when it reconnects.

mod actor;
mod cluster;
mod core;
mod perform;
pub mod store;

pub use self::core::{Refusal, LIMIT_FRAME_BYTES, LIMIT_JSON_DEPTH, LIMIT_UNPARSEABLE};
pub use actor::{
    CountPending, Decide, Deliver, ForgetSession, ListPending, PermissionRegistry, PolicyInfo,
    PromptCancelled, PromptReceived, ReplacePolicy, SessionConnected, SessionDisconnected,
    SessionInitialized, TrackSession, WriteOutcome,
};
pub use cluster::{AdoptSession, ReleaseSession};
pub use store::{ConnId, DecideError, SessionTally};
