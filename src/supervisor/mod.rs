//! Starts session actors from config, spreads them over arbiters, and restarts
//! crashed ones within an OTP-style budget (pure `budget` and `slot::on_exit` + the
//! `Supervisor` actor).

mod actor;
pub mod budget;
mod cluster;
mod runtime;
mod slot;

#[cfg(feature = "test-hooks")]
pub use actor::PanicSession;
pub use actor::{
    ListSessions, LookupSession, SessionExited, SessionRef, ShutdownSessions, Supervisor,
};
pub use cluster::SupervisorCluster;
pub use runtime::{AddSession, RemoveSession, ReplaceSessions, SessionSetError, SetChanges};
