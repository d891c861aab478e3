//! One CCR session: reconnect policy and frame reassembly (pure), token sources, the
//! transport-agnostic [`router`] (what frames mean, requests to the session), and the
//! `SessionActor`, its WebSocket transport.

mod actor;
pub mod assembly;
pub mod client;
mod messages;
pub mod reconnect;
pub mod router;
pub mod socket;
pub mod state;
pub mod token;

pub use actor::{SessionActor, SessionShared};
#[cfg(feature = "test-hooks")]
pub use messages::InjectPanic;
pub use messages::{
    CloseSession, GetStatus, InterruptAnswer, InterruptSession, SendUserMessage, SentMessage,
    SessionError,
};
pub use state::{Counters, FrameCounters, SessionState, SessionStatus};

#[cfg(test)]
mod tests_fuzz;
