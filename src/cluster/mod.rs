//! Session ownership by leases (issue #29): each session of the cluster (configured, or
//! added at run time and stored in PostgreSQL) is owned by one live instance at a time,
//! through a lease row that its owner renews and that fences every write it makes by epoch.
//!
//! - [`catalog`]: the sessions this instance knows — its config's and those the cluster
//!   stores (added at run time) — and the planner's pools of them (pure).
//! - [`plan`]: which sessions to claim, hand over or give up each round (pure).
//! - [`store`]: the SQL of members and leases, and the fence that makes a write count
//!   only while its lease is held; the database clock decides every expiry.
//! - [`member`]: the lease loop (its own thread): heartbeats, renewals, the planner's
//!   plan carried out, [`Own`] / [`Disown`] to the supervisor, and each decision another
//!   instance records ([`DecidedElsewhere`], from a `LISTEN`) to the registry; the session
//!   states of this instance announced, and those of the others heard.
//! - [`state`]: session states across the cluster: the `ccr_state` payloads (pure), the
//!   coalescing outbox the supervisor fills, [`StateElsewhere`] and [`AnnounceStates`].

pub mod catalog;
pub mod member;
pub mod plan;
pub mod state;
pub mod store;

use std::sync::Arc;

use actix::Message;
use ccr_protocol::reply::NameChanges;

use crate::config::SessionSpec;

pub use crate::ledger::pg::fence::Fences;
pub use member::{ClusterApi, ClusterMember, ClusterStats, Recipients, StartSessions};
pub use plan::Epoch;
pub use state::{AnnounceStates, StateElsewhere, StateNote, StateOutbox, STATE_CHANNEL};

/// To the supervisor: this instance now holds `session`'s lease at `epoch` (already in
/// [`Fences`]): restore its unfinished prompts from the ledger and connect it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Own {
    /// The session.
    pub session: Arc<str>,
    /// Its lease's epoch.
    pub epoch: Epoch,
}

/// To the supervisor: `session`'s lease is no longer held here (already out of
/// [`Fences`]): stop it and forget its prompts locally (they stay in the ledger for the
/// next owner).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Disown {
    /// The session.
    pub session: Arc<str>,
    /// `false`: handed over (released first): close with 1000. `true`: the lease was
    /// lost: close without sending anything more.
    pub lost: bool,
}

/// To the registry: a decision for a prompt of a session held here was recorded by
/// another instance (its `NOTIFY`): read it from the ledger and deliver it. Without a
/// `request_id`, notifications may have been missed (the listening connection was down):
/// check every prompt of the session still pending here.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DecidedElsewhere {
    /// The session.
    pub session: Arc<str>,
    /// The prompt; `None`: each pending prompt of the session.
    pub request_id: Option<String>,
}

/// To the registry: a prompt of a session *not* held here was recorded (`decided: false`)
/// or decided (`true`) on another instance: publish it on this instance's event stream,
/// so that every instance's stream carries every session's permission events.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SeenElsewhere {
    /// The session.
    pub session: Arc<str>,
    /// The prompt.
    pub request_id: String,
    /// Decided (else: newly recorded).
    pub decided: bool,
}

/// To the registry: `session`'s lease had lapsed (the database unreachable past its
/// deadline; the session kept its socket but sent nothing) and is renewed at the same
/// epoch: write the answers that waited meanwhile, and record the prompts that could not be.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Resumed {
    /// The session.
    pub session: Arc<str>,
}

/// To the supervisor: the sessions this instance knows now — its config's, and those the
/// cluster stores — each with the spec it runs here. Make the set equal to it (start
/// nothing: a session runs on [`Own`]; a session dropped from it is removed as by
/// `DELETE`). Answers what changed; `None` when refused (shutting down).
#[derive(Debug, Message)]
#[rtype(result = "Option<NameChanges>")]
pub struct SessionSet(pub Vec<Arc<SessionSpec>>);

/// The `NOTIFY` channel of changes to the sessions the cluster stores (payload: the
/// session id), sent by a trigger on `ccr_sessions`.
pub const SESSIONS_CHANNEL: &str = "ccr_sessions";

/// The `NOTIFY` channel of new prompts (payload as [`DECIDED_CHANNEL`]'s), sent by a
/// trigger when a prompt is recorded.
pub const PROMPTED_CHANNEL: &str = "ccr_prompted";

/// The `NOTIFY` channel of decisions (payload: session id, a newline, request id), sent by
/// a trigger when a prompt's `outcome` is set.
pub const DECIDED_CHANNEL: &str = "ccr_decided";
