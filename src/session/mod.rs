//! One CCR session: reconnect policy and frame reassembly (pure), token sources, the
//! transport-agnostic [`router`] (what frames mean, requests to the session), the TCP
//! [`connector`] (connects off the session threads), and the `SessionActor`, its
//! WebSocket transport.

mod actor;
pub mod assembly;
pub mod client;
pub mod connector;
mod messages;
pub mod reconnect;
pub mod router;
mod send;
pub mod socket;
pub mod token;

pub use actor::{SessionActor, SessionShared, HANDSHAKES_IN_FLIGHT};
pub use ccr_protocol::session::{
    Counters, FrameCounters, InitializeState, SessionState, SessionStatus,
};
#[cfg(feature = "test-hooks")]
pub use messages::InjectPanic;
pub use messages::{
    AbandonSession, CloseSession, GetStatus, InterruptSession, LeaseRenewed, SendUserMessage,
    SessionError, SessionReport,
};

#[cfg(test)]
mod tests;
