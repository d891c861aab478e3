//! What the ledger stores and returns: prompt and decision records, rows, errors.
//!
//! Times are stored as Unix milliseconds, so a round trip truncates to the millisecond.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use ccr_protocol::PermissionPrompt;

/// How a prompt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The tool may run.
    Allowed,
    /// The tool was refused.
    Denied,
    /// The session withdrew the prompt (also voids an answer not yet delivered).
    Cancelled,
    /// Nobody answered in time (`decided_by = "timeout"`).
    Expired,
}

impl Outcome {
    /// The stored / wire name (`allowed`, `denied`, `cancelled`, `expired`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Cancelled => "cancelled",
            Outcome::Expired => "expired",
        }
    }

    /// True when an answer must still reach the session (`allowed`, `denied`,
    /// and `expired`, which is a deny sent on the operator's behalf).
    pub fn needs_delivery(self) -> bool {
        matches!(self, Outcome::Allowed | Outcome::Denied | Outcome::Expired)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allowed" => Ok(Outcome::Allowed),
            "denied" => Ok(Outcome::Denied),
            "cancelled" => Ok(Outcome::Cancelled),
            "expired" => Ok(Outcome::Expired),
            other => Err(format!(
                "expected allowed, denied, cancelled or expired, got {other:?}"
            )),
        }
    }
}

/// A prompt as it arrived, recorded before anyone sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRecord {
    /// The CCR session id.
    pub session_id: String,
    /// The session's id for the prompt; with `session_id` the primary key.
    pub request_id: String,
    /// The tool-use block id, if the prompt had one.
    pub tool_use_id: Option<String>,
    /// Tool the agent wants to run.
    pub tool_name: String,
    /// The tool input.
    pub input: Value,
    /// The whole `request` object as received, unknown fields included.
    pub request: Value,
    /// When it first arrived.
    pub received_at: SystemTime,
}

impl PromptRecord {
    /// The prompt again, for restoring the registry after a restart.
    pub fn to_prompt(&self) -> PermissionPrompt {
        PermissionPrompt {
            request_id: self.request_id.clone(),
            tool_name: self.tool_name.clone(),
            tool_use_id: self.tool_use_id.clone(),
            input: self.input.clone(),
            request: self.request.clone(),
        }
    }
}

/// An answer, recorded before it is written to the socket.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    /// The CCR session id.
    pub session_id: String,
    /// The prompt answered.
    pub request_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Operator token name, `rule:<id>`, `timeout`, or `session` for a cancel.
    pub decided_by: String,
    /// When.
    pub decided_at: SystemTime,
    /// The edited tool input, only when the operator changed it.
    pub updated_input: Option<Value>,
    /// The exact frame written to the socket (`control_response`, JSON text), so it can be
    /// re-sent after a restart.
    pub answer: Option<String>,
    /// Why, when a policy rule or a deadline decided.
    pub reason: Option<String>,
}

/// A prompt the registry must restore at startup: still pending, or answered but not delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfinished {
    /// The prompt.
    pub prompt: PromptRecord,
    /// Its undelivered answer (`allowed` / `denied`); `None` while pending.
    pub decision: Option<DecisionRecord>,
}

/// One ledger row as the audit API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerRow {
    /// The CCR session id.
    pub session_id: String,
    /// The session's id for the prompt.
    pub request_id: String,
    /// The tool-use block id.
    pub tool_use_id: Option<String>,
    /// Tool name.
    pub tool_name: String,
    /// The tool input.
    pub input: Value,
    /// The whole `request` object as received.
    pub request: Value,
    /// When the prompt arrived (RFC 3339).
    #[serde(serialize_with = "ccr_protocol::time::as_rfc3339::serialize")]
    pub received_at: SystemTime,
    /// How it ended; serialized as `"pending"` while undecided.
    #[serde(serialize_with = "outcome_or_pending")]
    pub outcome: Option<Outcome>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When it was decided (RFC 3339).
    #[serde(serialize_with = "ccr_protocol::time::opt_rfc3339::serialize")]
    pub decided_at: Option<SystemTime>,
    /// When the answer was first written to the session's socket (RFC 3339). Written, not
    /// read: a connection that dies right after may lose it, and the session's replay then
    /// gets it again (counted in `deliveries`).
    #[serde(serialize_with = "ccr_protocol::time::opt_rfc3339::serialize")]
    pub delivered_at: Option<SystemTime>,
    /// How many times the answer was written to a socket: 1, plus one per resend after the
    /// session replayed the prompt on a new connection.
    pub deliveries: u64,
    /// When it was last written (RFC 3339).
    #[serde(serialize_with = "ccr_protocol::time::opt_rfc3339::serialize")]
    pub last_delivered_at: Option<SystemTime>,
    /// The edited input, when the operator changed it.
    pub updated_input: Option<Value>,
    /// The frame sent.
    pub answer: Option<Value>,
    /// Why, when a policy rule or a deadline decided.
    pub reason: Option<String>,
    /// What was asked: `can_use_tool`, `elicitation` or `request_user_dialog` (the request's
    /// `subtype`).
    pub kind: String,
    /// The answer's `decisionClassification` (`user_temporary`, `user_permanent`,
    /// `user_reject`); `null` when no person decided or nothing was sent.
    pub classification: Option<String>,
}

fn outcome_or_pending<S: Serializer>(o: &Option<Outcome>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(o.map_or("pending", Outcome::as_str))
}

/// Why a ledger operation failed. Every failed write is also counted ([`super::Ledger::write_errors`]).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database cannot be opened, created, written or verified at startup.
    #[error("cannot open decision ledger {}: {reason}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// SQLite failed (I/O error, disk full, corruption); nothing of the batch was committed.
    #[error("decision ledger storage error: {0}")]
    Storage(String),
    /// The write queue is full: the writer is behind. Nothing was recorded.
    #[error("decision ledger queue is full ({capacity} commands waiting)")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The writer or reader thread has stopped.
    #[error("decision ledger is closed")]
    Closed,
    /// No prompt with this key was recorded.
    #[error("no prompt {request_id} of session {session_id} in the ledger")]
    UnknownPrompt {
        /// Session id.
        session_id: String,
        /// Prompt id.
        request_id: String,
    },
    /// The prompt already has a different decision.
    #[error("prompt {request_id} of session {session_id} was already {outcome}")]
    AlreadyDecided {
        /// Session id.
        session_id: String,
        /// Prompt id.
        request_id: String,
        /// The stored outcome.
        outcome: Outcome,
    },
    /// `mark_delivered` on a prompt without a decision.
    #[error("prompt {request_id} of session {session_id} has no decision to deliver")]
    NotDecided {
        /// Session id.
        session_id: String,
        /// Prompt id.
        request_id: String,
    },
    /// A query parameter is invalid (maps to HTTP 400).
    #[error("invalid query parameter {param}: {message}")]
    BadQuery {
        /// The parameter (`since`, `cursor`, ...).
        param: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The export sink failed (e.g. a closed pipe).
    #[error("export failed: {0}")]
    Export(#[source] std::io::Error),
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError::Storage(e.to_string())
    }
}

/// Unix milliseconds, as stored (times before 1970 store as 0).
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The inverse of [`to_ms`].
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}
