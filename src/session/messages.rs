//! The `SessionActor`'s message protocol: what other actors and the API may ask of a
//! session, and the [`SessionReport`] it sends its supervisor.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use super::token::TokenError;
use ccr_protocol::reply::{InterruptAnswer, SentMessage};
use ccr_protocol::session::SessionStatus;

/// Why a session could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session is configured `viewer_only`.
    #[error("session is viewer-only: the supervisor never interrupts it or sends it messages (its prompts are still answered)")]
    ViewerOnly,
    /// No live connection.
    #[error("session is not connected")]
    NotConnected,
    /// In a cluster: this instance's lease of the session has lapsed (the database could
    /// not renew it in time), so nothing may be sent to it now.
    #[error("this instance cannot renew the session's lease now (the database is out of reach): nothing was sent; retry")]
    LeaseNotHeld,
    /// The session did not answer in time.
    #[error("no answer from the session within {0:?}")]
    Timeout(Duration),
    /// The session answered with `error`.
    #[error("session answered with an error: {0}")]
    Rejected(String),
    /// The connection closed while waiting.
    #[error("connection closed before the session answered")]
    ConnectionLost,
    /// The access token could not be read.
    #[error("cannot read access token: {0}")]
    Token(#[from] TokenError),
    /// The events endpoint refused the message.
    #[error("events endpoint answered HTTP {status}: {body}")]
    Upstream {
        /// HTTP status.
        status: u16,
        /// First bytes of the body.
        body: String,
    },
    /// The events request failed before an answer.
    #[error("events request failed: {0}")]
    Request(String),
}

/// A session actor's state report, sent to its supervisor (`SessionShared::reports`)
/// at every state change.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SessionReport {
    /// Session id.
    pub session_id: Arc<str>,
    /// Which incarnation reports (stale ones are ignored).
    pub incarnation: u64,
    /// Its status.
    pub status: SessionStatus,
}

/// Interrupt the running turn and wait for the session's answer.
#[derive(Message, Debug, Default)]
#[rtype(result = "Result<InterruptAnswer, SessionError>")]
pub struct InterruptSession {
    /// Also cancel the user messages still queued (`cancel_queued`, PROTOCOL §6).
    pub cancel_queued: bool,
}

/// Send a user message through the events endpoint.
#[derive(Message, Debug)]
#[rtype(result = "Result<SentMessage, SessionError>")]
pub struct SendUserMessage {
    /// A string or an array of content blocks.
    pub content: Value,
}

/// Current status with fresh counters.
#[derive(Message, Debug)]
#[rtype(result = "SessionStatus")]
pub struct GetStatus;

/// Drop the socket without sending anything more (not even a close frame) and stop: in a
/// cluster, this instance lost the session's lease, so another instance owns it now.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AbandonSession;

/// In a cluster: the session's lapsed lease was renewed; a connection attempt that waited
/// for it is made now.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LeaseRenewed;

/// Close the socket with 1000 and stop for good (shutdown or removal).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CloseSession;

/// Test-only: panic inside a handler, to exercise restarts.
#[cfg(feature = "test-hooks")]
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct InjectPanic;
