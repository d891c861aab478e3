//! What the permission registry core notices along the way and only logs — a replay or
//! a cancel ignored, a write retried or queued, a dry-run rule matched, a decision or a
//! ledger read refused — as plain data in a [`Happening`](super::permissions::Happening),
//! so that the core itself never logs. No metric, no bus event: each `emit` writes its
//! one line, under the target the core's module always wrote it under.

use std::sync::Arc;

use tracing::{debug, error, info, warn};

use super::permissions::{ANSWER, ARRIVAL, CORE, RULES};

/// The session cancelled a prompt the registry does not know, or has finished.
#[derive(Debug, Clone, Copy)]
pub struct CancelIgnored;

impl CancelIgnored {
    /// Log it (debug).
    pub fn emit(self) {
        debug!(target: CORE, "cancel for an unknown or resolved prompt ignored");
    }
}

/// The store refused a decision (unknown prompt, answered already…): nothing is sent.
#[derive(Debug, Clone)]
pub struct DecisionRefused {
    /// Why (the store's error, as text).
    pub error: String,
}

impl DecisionRefused {
    /// Log it (warn).
    pub fn emit(self) {
        warn!(target: ANSWER, error = %self.error, "decision refused; nothing sent");
    }
}

/// An answer was written again, after its session replayed the prompt.
#[derive(Debug, Clone, Copy)]
pub struct AnswerWrittenAgain {
    /// The connection it was written on.
    pub conn: u64,
}

impl AnswerWrittenAgain {
    /// Log it (debug).
    pub fn emit(self) {
        debug!(target: ANSWER, conn = self.conn, "answer written again after a replay");
    }
}

/// A write failed on `conn`; it is retried on the session's newer connection `next`.
#[derive(Debug, Clone, Copy)]
pub struct WriteRetrying {
    /// The connection the write failed on.
    pub conn: u64,
    /// The connection it is retried on.
    pub next: u64,
}

impl WriteRetrying {
    /// Log it (debug).
    pub fn emit(self) {
        let WriteRetrying { conn, next } = self;
        debug!(target: ANSWER, conn, next, "write failed; retrying on the newer connection");
    }
}

/// A write failed and the session has no newer connection: the answer waits for it.
#[derive(Debug, Clone, Copy)]
pub struct AnswerQueued {
    /// The connection the write failed on.
    pub conn: u64,
}

impl AnswerQueued {
    /// Log it (info).
    pub fn emit(self) {
        info!(target: ANSWER, conn = self.conn, "session not connected; answer queued for reconnect");
    }
}

/// A dry-run rule matched a prompt: it is left to a human, and what the rule would have
/// done is logged.
#[derive(Debug, Clone)]
pub struct DryRunMatched {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// The rule's id.
    pub rule: String,
    /// What it would have done (`allow`, `deny`).
    pub would: &'static str,
    /// Why it matched.
    pub reason: String,
}

impl DryRunMatched {
    /// Log it (info).
    pub fn emit(self) {
        let DryRunMatched {
            session,
            request_id,
            rule,
            would,
            reason,
        } = self;
        let request_id = request_id.as_str();
        info!(target: RULES, session_id = %session, request_id, rule = %rule, would, reason = %reason, "dry-run rule matched; asking a human");
    }
}

/// A rule's answer to a restored prompt was refused (the refusal is its own
/// [`DecisionRefused`]).
#[derive(Debug, Clone)]
pub struct PolicyAnswerRefused {
    /// Why (the store's error, as text).
    pub error: String,
}

impl PolicyAnswerRefused {
    /// Log it (warn).
    pub fn emit(self) {
        warn!(target: RULES, error = %self.error, "policy answer refused");
    }
}

/// In a cluster, a new prompt's record was refused by its session's lease: this
/// instance's lease has lapsed (`lapsed`: the prompt is recorded, then shown, once the
/// lease is renewed) or is no longer held (its next owner records it when the session
/// replays it). Either way nobody is shown it before it is recorded.
#[derive(Debug, Clone, Copy)]
pub struct PromptHeld {
    /// The lease has lapsed (else it is lost).
    pub lapsed: bool,
}

impl PromptHeld {
    /// Log it (info when lapsed, warn when lost).
    pub fn emit(self) {
        match self.lapsed {
            true => {
                info!(target: ARRIVAL, "prompt not shown: the session's lease has lapsed here; recorded and shown once it is renewed")
            }
            false => {
                warn!(target: ARRIVAL, "prompt not shown: the session's lease is not held here; its next owner records it from the session's replay")
            }
        }
    }
}

/// The session replayed a prompt the registry already waits on (or finished with).
#[derive(Debug, Clone, Copy)]
pub struct ReplayIgnored;

impl ReplayIgnored {
    /// Log it (debug).
    pub fn emit(self) {
        debug!(target: ARRIVAL, "replayed prompt ignored");
    }
}

/// The session replayed an answered prompt on a connection that never had the answer:
/// it is written again there.
#[derive(Debug, Clone, Copy)]
pub struct AnswerResent {
    /// The connection it is resent on.
    pub conn: u64,
}

impl AnswerResent {
    /// Log it (info).
    pub fn emit(self) {
        info!(target: ARRIVAL, conn = self.conn, "session replayed an answered prompt on a connection that never had the answer; resending it");
    }
}

/// A prompt unknown to a session whose older answers were forgotten: the ledger is
/// asked whether it is new.
#[derive(Debug, Clone, Copy)]
pub struct UnknownPromptLookedUp;

impl UnknownPromptLookedUp {
    /// Log it (debug).
    pub fn emit(self) {
        debug!(target: ARRIVAL, "unknown prompt of a session whose older answers were forgotten: asking the ledger");
    }
}

/// The answer of a limit or a rule to a new prompt was refused (the refusal is its own
/// [`DecisionRefused`]).
#[derive(Debug, Clone)]
pub struct AutomaticAnswerRefused {
    /// Why (the store's error, as text).
    pub error: String,
}

impl AutomaticAnswerRefused {
    /// Log it (warn).
    pub fn emit(self) {
        warn!(target: ARRIVAL, error = %self.error, "automatic answer refused");
    }
}

/// An answer too large to keep in memory was read back from the ledger: it is resent.
#[derive(Debug, Clone, Copy)]
pub struct AnswerResentFromLedger {
    /// The connection it is resent on.
    pub conn: u64,
}

impl AnswerResentFromLedger {
    /// Log it (info).
    pub fn emit(self) {
        info!(target: ARRIVAL, conn = self.conn, "resending an answer read back from the ledger");
    }
}

/// The ledger did not give back the answer to resend.
#[derive(Debug, Clone)]
pub struct AnswerReadBackFailed {
    /// What the ledger read gave instead, as its `Debug` text (the log's `other`).
    pub read: String,
}

impl AnswerReadBackFailed {
    /// Log it (error).
    pub fn emit(self) {
        error!(target: ARRIVAL, other = %self.read, "cannot read back an answer to resend");
    }
}

/// The ledger lookup of an unknown prompt failed: the prompt is treated as new.
#[derive(Debug, Clone)]
pub struct LedgerLookupFailed {
    /// Why (the ledger's error, as text).
    pub error: String,
}

impl LedgerLookupFailed {
    /// Log it (warn).
    pub fn emit(self) {
        warn!(target: ARRIVAL, error = %self.error, "ledger lookup failed; treating the prompt as new");
    }
}
