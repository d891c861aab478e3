//! What the ledger stores and returns: prompt and decision records, rows, errors.
//!
//! Times are stored as Unix milliseconds, so a round trip truncates to the millisecond.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use ccr_protocol::reply::Outcome;
use ccr_protocol::PermissionPrompt;

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
            raw: None,
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

impl LedgerError {
    /// The ledger's rules refused the write (it changed nothing, and never will on retry):
    /// an unknown prompt, one decided otherwise, a delivery before a decision, a session
    /// whose lease this instance does not hold.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            LedgerError::UnknownPrompt { .. }
                | LedgerError::AlreadyDecided { .. }
                | LedgerError::NotDecided { .. }
                | LedgerError::NotOwner { .. }
        )
    }
}

impl Unfinished {
    /// The records of an audit row; `answer` is the answer frame as stored (its exact text,
    /// to be re-sent as it was written).
    pub(crate) fn of_row(r: ccr_protocol::reply::LedgerRow, answer: Option<String>) -> Self {
        let decision = r.outcome.map(|outcome| DecisionRecord {
            session_id: r.session_id.clone(),
            request_id: r.request_id.clone(),
            outcome,
            decided_by: r.decided_by.clone().unwrap_or_default(),
            decided_at: r.decided_at.unwrap_or(r.received_at),
            updated_input: r.updated_input.clone(),
            answer,
            reason: r.reason.clone(),
        });
        let prompt = PromptRecord {
            session_id: r.session_id,
            request_id: r.request_id,
            tool_use_id: r.tool_use_id,
            tool_name: r.tool_name,
            input: r.input,
            request: r.request,
            received_at: r.received_at,
        };
        Unfinished { prompt, decision }
    }
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
    /// Another process (or another open ledger of this one) holds the ledger's instance lock.
    #[error("ledger {} is in use by {} (lock {}); stop it first", path.display(), holder(*pid), lock.display())]
    InUse {
        /// The database file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The holder's pid, as written in the lock file.
        pid: Option<u32>,
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
    /// The PostgreSQL URL cannot be read (`url_env` unset, `url_file` unreadable) or
    /// parsed; the message names where it comes from, never what it is.
    #[error("cannot use the PostgreSQL ledger's URL: {0}")]
    BadUrl(String),
    /// In a cluster: this instance does not hold the session's lease (any more), so it may
    /// not record the session's prompts or deliveries; its owner does.
    #[error("this instance does not hold session {session_id}'s lease")]
    NotOwner {
        /// Session id.
        session_id: String,
    },
    /// In a cluster: this instance's lease of the session has lapsed (the database could not
    /// renew it in time) but is not lost: the write is retried, and counts once the lease is
    /// renewed at its epoch (or is refused as [`LedgerError::NotOwner`] once it is lost).
    #[error("this instance's lease of session {session_id} has lapsed (not renewed in time): the write waits for its renewal")]
    LeaseLapsed {
        /// Session id.
        session_id: String,
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

/// Who holds a lock, for [`LedgerError::InUse`]'s message.
fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "another process".to_owned(),
    }
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
