//! Pending permission requests of every session: pure store + the `PermissionRegistry` actor.
//!
//! The registry lives on the main arbiter, apart from the session arbiters, so
//! it outlives any session actor's crash; decisions made while a session is
//! away are kept here and flushed when it reconnects.

mod actor;
mod decide;
pub mod store;

pub use actor::{
    CountPending, Deliver, ForgetSession, ListPending, PendingPrompt, PermissionRegistry,
    PromptCancelled, PromptReceived, Refusal, SessionConnected, SessionDisconnected,
    SessionInitialized, LIMIT_FRAME_BYTES, LIMIT_JSON_DEPTH, LIMIT_UNPARSEABLE,
};
pub use decide::{Decide, DecisionReceipt, PolicyInfo, PolicyReport};
pub use store::{ConnId, DecideError, SessionTally};
