//! What happens to a prompt in the permission registry — shown, confirmed, answered,
//! delivered, overdue, expired, cancelled, its record failed — as plain data the pure
//! registry core returns ([`Happening`], in an `Effect::Emit`), and the one `emit` that
//! logs, counts and publishes each when the registry actor performs it.
//!
//! What the core only logs along the way (a replay ignored, a write retried, a decision
//! refused…) is a `Happening` too, from [`super::diagnostics`]: the core never logs.
//!
//! The log lines keep the targets they had when the core wrote them itself (its
//! modules' paths), and are written under the actor's `permission` span, which names
//! the session and the prompt.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{debug, error, info, warn};

use super::diagnostics::*;
use super::prompts::ResolvedMemorySized;
use super::Publish;
use crate::config::NotifyEvent;
use crate::events::Event;
use crate::metrics::Metrics;
use crate::notify::Notice;
use ccr_protocol::api::Delivery;
use ccr_protocol::reply::Outcome;
use ccr_protocol::PermissionPrompt;

/// The log targets these lines always had (for `RUST_LOG` filters and JSON logs' `target`).
pub(super) const CORE: &str = "ccr_supervisor::registry::core";
pub(super) const ARRIVAL: &str = "ccr_supervisor::registry::core::arrival";
pub(super) const ANSWER: &str = "ccr_supervisor::registry::core::answer";
pub(super) const RULES: &str = "ccr_supervisor::registry::core::rules";

/// One thing that happened to a prompt, as the registry core reports it.
#[derive(Debug)]
pub enum Happening {
    /// See [`PromptShown`].
    Shown(PromptShown),
    /// See [`PromptRestored`].
    Restored(PromptRestored),
    /// See [`PromptConfirmed`].
    Confirmed(PromptConfirmed),
    /// See [`PromptsUnconfirmed`].
    Unconfirmed(PromptsUnconfirmed),
    /// See [`PromptAnswered`].
    Answered(PromptAnswered),
    /// See [`AnswerDelivered`].
    Delivered(AnswerDelivered),
    /// See [`PromptOverdue`].
    Overdue(PromptOverdue),
    /// See [`PromptExpired`].
    Expired(PromptExpired),
    /// See [`PromptCancelled`].
    Cancelled(PromptCancelled),
    /// See [`PromptRecordFailed`].
    RecordFailed(PromptRecordFailed),
    /// See [`ResolvedMemorySized`].
    ResolvedSized(ResolvedMemorySized),
    /// See [`CancelIgnored`].
    CancelIgnored(CancelIgnored),
    /// See [`DecisionRefused`].
    DecisionRefused(DecisionRefused),
    /// See [`AnswerWrittenAgain`].
    WrittenAgain(AnswerWrittenAgain),
    /// See [`WriteRetrying`].
    WriteRetrying(WriteRetrying),
    /// See [`AnswerQueued`].
    Queued(AnswerQueued),
    /// See [`DryRunMatched`].
    DryRunMatched(DryRunMatched),
    /// See [`PolicyAnswerRefused`].
    PolicyAnswerRefused(PolicyAnswerRefused),
    /// See [`ReplayIgnored`].
    ReplayIgnored(ReplayIgnored),
    /// See [`PromptHeld`].
    Held(PromptHeld),
    /// See [`AnswerResent`].
    Resent(AnswerResent),
    /// See [`UnknownPromptLookedUp`].
    LookedUp(UnknownPromptLookedUp),
    /// See [`AutomaticAnswerRefused`].
    AutomaticAnswerRefused(AutomaticAnswerRefused),
    /// See [`AnswerResentFromLedger`].
    ResentFromLedger(AnswerResentFromLedger),
    /// See [`AnswerReadBackFailed`].
    ReadBackFailed(AnswerReadBackFailed),
    /// See [`LedgerLookupFailed`].
    LookupFailed(LedgerLookupFailed),
}

impl Happening {
    /// Its name, e.g. `prompt_shown` (for tests and debugging).
    pub fn name(&self) -> &'static str {
        match self {
            Happening::Shown(_) => "prompt_shown",
            Happening::Restored(_) => "prompt_restored",
            Happening::Confirmed(_) => "prompt_confirmed",
            Happening::Unconfirmed(_) => "prompts_unconfirmed",
            Happening::Answered(_) => "prompt_answered",
            Happening::Delivered(_) => "answer_delivered",
            Happening::Overdue(_) => "prompt_overdue",
            Happening::Expired(_) => "prompt_expired",
            Happening::Cancelled(_) => "prompt_cancelled",
            Happening::RecordFailed(_) => "prompt_record_failed",
            Happening::ResolvedSized(_) => "resolved_memory_sized",
            Happening::CancelIgnored(_) => "cancel_ignored",
            Happening::DecisionRefused(_) => "decision_refused",
            Happening::WrittenAgain(_) => "answer_written_again",
            Happening::WriteRetrying(_) => "write_retrying",
            Happening::Queued(_) => "answer_queued",
            Happening::DryRunMatched(_) => "dry_run_matched",
            Happening::PolicyAnswerRefused(_) => "policy_answer_refused",
            Happening::ReplayIgnored(_) => "replay_ignored",
            Happening::Held(_) => "prompt_held",
            Happening::Resent(_) => "answer_resent",
            Happening::LookedUp(_) => "unknown_prompt_looked_up",
            Happening::AutomaticAnswerRefused(_) => "automatic_answer_refused",
            Happening::ResentFromLedger(_) => "answer_resent_from_ledger",
            Happening::ReadBackFailed(_) => "answer_read_back_failed",
            Happening::LookupFailed(_) => "ledger_lookup_failed",
        }
    }

    /// Log, count and publish it (a diagnostic is only logged).
    pub fn emit(self, metrics: &Metrics, publish: impl Publish) {
        match self {
            Happening::Shown(h) => h.emit(publish),
            Happening::Restored(h) => h.emit(publish),
            Happening::Confirmed(h) => h.emit(publish),
            Happening::Unconfirmed(h) => h.emit(publish),
            Happening::Answered(h) => h.emit(metrics, publish),
            Happening::Delivered(h) => h.emit(metrics, publish),
            Happening::Overdue(h) => h.emit(publish),
            Happening::Expired(h) => h.emit(publish),
            Happening::Cancelled(h) => h.emit(metrics, publish),
            Happening::RecordFailed(h) => h.emit(publish),
            Happening::ResolvedSized(h) => h.emit(metrics),
            Happening::CancelIgnored(h) => h.emit(),
            Happening::DecisionRefused(h) => h.emit(),
            Happening::WrittenAgain(h) => h.emit(),
            Happening::WriteRetrying(h) => h.emit(),
            Happening::Queued(h) => h.emit(),
            Happening::DryRunMatched(h) => h.emit(),
            Happening::PolicyAnswerRefused(h) => h.emit(),
            Happening::ReplayIgnored(h) => h.emit(),
            Happening::Held(h) => h.emit(),
            Happening::Resent(h) => h.emit(),
            Happening::LookedUp(h) => h.emit(),
            Happening::AutomaticAnswerRefused(h) => h.emit(),
            Happening::ResentFromLedger(h) => h.emit(),
            Happening::ReadBackFailed(h) => h.emit(),
            Happening::LookupFailed(h) => h.emit(),
        }
    }
}

/// A prompt's origin, for notifications about it: its session's labels and its arrival.
#[derive(Debug, Clone)]
pub struct PromptOrigin {
    /// The session's labels (empty for a prompt restored after a restart).
    pub labels: Arc<[String]>,
    /// When the prompt arrived.
    pub received_at: SystemTime,
}

/// A new prompt, recorded, is shown to operators.
#[derive(Debug)]
pub struct PromptShown {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// The prompt.
    pub prompt: Arc<PermissionPrompt>,
    /// `Some` when the policy left it to a human (it is notified as `permission_requested`);
    /// `None` when a rule or a limit answers it in the same turn.
    pub asks_human: Option<PromptOrigin>,
}

impl PromptShown {
    /// Log it and publish `permission_requested` (confirmed: its session just sent it);
    /// notify it when it waits for a human.
    pub fn emit(self, mut publish: impl Publish) {
        let PromptShown {
            session,
            request_id,
            prompt,
            asks_human,
        } = self;
        info!(target: ARRIVAL, tool = %prompt.tool_name, "permission requested");
        // Offered first: once operators see the prompt, its notification is queued or counted.
        if let Some(origin) = asks_human {
            let event = NotifyEvent::PermissionRequested;
            publish.notify(|| {
                let (session, labels) = (session.clone(), origin.labels);
                Notice::prompt(event, session, labels, &prompt, origin.received_at)
            });
        }
        publish.publish(Event::permission_requested(
            &session,
            &request_id,
            &prompt,
            true,
        ));
    }
}

/// A prompt restored from the ledger is shown again after a restart.
#[derive(Debug)]
pub struct PromptRestored {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// The prompt.
    pub prompt: Arc<PermissionPrompt>,
    /// Whether its session re-sent it since (false until it does).
    pub confirmed: bool,
}

impl PromptRestored {
    /// Publish `permission_requested` (not logged: the restore is).
    pub fn emit(self, mut publish: impl Publish) {
        let PromptRestored {
            session,
            request_id,
            prompt,
            confirmed,
        } = self;
        publish.publish(Event::permission_requested(
            &session,
            &request_id,
            &prompt,
            confirmed,
        ));
    }
}

/// A restored (or unconfirmed) prompt was re-sent by its session: it is waited on.
#[derive(Debug)]
pub struct PromptConfirmed {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
}

impl PromptConfirmed {
    /// Log it and publish `permission_confirmed`.
    pub fn emit(self, mut publish: impl Publish) {
        info!(target: ARRIVAL, "restored prompt re-sent by the session: confirmed");
        publish.publish(Event::PermissionConfirmed {
            session_id: self.session,
            request_id: self.request_id,
        });
    }
}

/// After a reconnect the session neither re-sent nor listed these pending prompts.
#[derive(Debug)]
pub struct PromptsUnconfirmed {
    /// Session id.
    pub session: Arc<str>,
    /// The prompts (never empty).
    pub request_ids: Vec<String>,
}

impl PromptsUnconfirmed {
    /// Log them (one line) and publish `permission_unconfirmed` for each.
    pub fn emit(self, mut publish: impl Publish) {
        let PromptsUnconfirmed {
            session,
            request_ids,
        } = self;
        info!(target: CORE, session_id = %session, count = request_ids.len(),
            "pending prompts the session neither re-sent nor listed are unconfirmed");
        for request_id in request_ids {
            publish.publish(Event::PermissionUnconfirmed {
                session_id: session.clone(),
                request_id,
            });
        }
    }
}

/// A prompt's answer (an operator's, a rule's, the deadline's, a limit's) is durable and
/// was written to its session (`Sent`) or waits for it (`Queued`).
#[derive(Debug)]
pub struct PromptAnswered {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// `allow`, `deny`, or a question's answer.
    pub behavior: &'static str,
    /// Who decided.
    pub decided_by: String,
    /// Written now, or queued for the session.
    pub delivery: Delivery,
    /// Why, for a rule, a deadline or a limit.
    pub reason: Option<String>,
    /// How the ledger records it (the metric's `outcome`).
    pub outcome: Outcome,
    /// `operator`, `rule`, `timeout` or `limit` (the metric's `source`).
    pub source: &'static str,
}

impl PromptAnswered {
    /// Log it, count it in `ccr_supervisor_decisions_total{outcome,source}`, and publish
    /// `permission_answered`.
    pub fn emit(self, metrics: &Metrics, mut publish: impl Publish) {
        let PromptAnswered {
            session,
            request_id,
            behavior,
            decided_by,
            delivery,
            reason,
            outcome,
            source,
        } = self;
        info!(target: ANSWER, behavior, decided_by = %decided_by,
            reason = reason.as_deref().unwrap_or(""), "permission answered");
        metrics.decision(outcome.as_str(), source);
        publish.publish(Event::PermissionAnswered {
            session_id: session,
            request_id,
            behavior,
            decided_by,
            delivery,
            reason,
        });
    }
}

/// An answer was written to its session for the first time.
#[derive(Debug)]
pub struct AnswerDelivered {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// The connection it was written on.
    pub conn: u64,
    /// From the prompt's arrival to now, when known.
    pub latency: Option<Duration>,
    /// Who answered: `operator`, `rule`, `timeout` or `limit` (the latency's label).
    pub source: &'static str,
}

impl AnswerDelivered {
    /// Log it, observe its latency in `ccr_supervisor_decision_latency_seconds`, and
    /// publish `permission_delivered`.
    pub fn emit(self, metrics: &Metrics, mut publish: impl Publish) {
        let AnswerDelivered {
            session,
            request_id,
            conn,
            latency,
            source,
        } = self;
        if let Some(age) = latency {
            metrics.decision_latency.observe(source, age.as_secs_f64());
        }
        debug!(target: ANSWER, conn, "answer written");
        publish.publish(Event::PermissionDelivered {
            session_id: session,
            request_id,
        });
    }
}

/// A prompt has waited longer than `[policy] remind_after`.
#[derive(Debug)]
pub struct PromptOverdue {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// How long it has waited.
    pub waiting: Duration,
    /// The prompt, for notifications.
    pub prompt: Arc<PermissionPrompt>,
    /// Its labels and arrival, for notifications.
    pub origin: PromptOrigin,
}

impl PromptOverdue {
    /// Warn, publish `permission.overdue` and notify it.
    pub fn emit(self, mut publish: impl Publish) {
        let PromptOverdue {
            session,
            request_id,
            waiting,
            prompt,
            origin,
        } = self;
        warn!(target: RULES, waiting_ms = waiting.as_millis() as u64, "permission overdue");
        publish.publish(Event::PermissionOverdue {
            session_id: session.clone(),
            request_id,
            waiting_ms: waiting.as_millis() as u64,
        });
        let event = NotifyEvent::PermissionOverdue;
        publish
            .notify(|| Notice::prompt(event, session, origin.labels, &prompt, origin.received_at));
    }
}

/// A prompt reached its ask deadline: it is being denied (that answer is its own
/// [`PromptAnswered`]).
#[derive(Debug)]
pub struct PromptExpired {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// The prompt, for notifications.
    pub prompt: Arc<PermissionPrompt>,
    /// Its labels and arrival, for notifications.
    pub origin: PromptOrigin,
}

impl PromptExpired {
    /// Publish `permission_expired` and notify it.
    pub fn emit(self, mut publish: impl Publish) {
        let PromptExpired {
            session,
            request_id,
            prompt,
            origin,
        } = self;
        publish.publish(Event::PermissionExpired {
            session_id: session.clone(),
            request_id,
        });
        let event = NotifyEvent::PermissionExpired;
        publish
            .notify(|| Notice::prompt(event, session, origin.labels, &prompt, origin.received_at));
    }
}

/// Who withdrew a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canceller {
    /// The session cancelled it (`was_pending`: not answered yet, rather than an answer
    /// it never got).
    Session {
        /// It was still pending.
        was_pending: bool,
    },
    /// The operator removed its session.
    SessionRemoved,
}

/// A prompt was withdrawn before it was answered (or before its answer was written).
#[derive(Debug)]
pub struct PromptCancelled {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// Its tool-use id, if known.
    pub tool_use_id: Option<String>,
    /// By whom.
    pub by: Canceller,
}

impl PromptCancelled {
    /// Log it (when the session cancelled it), count it in
    /// `ccr_supervisor_decisions_total{outcome="cancelled",source}`, and publish
    /// `permission_cancelled`.
    pub fn emit(self, metrics: &Metrics, mut publish: impl Publish) {
        let PromptCancelled {
            session,
            request_id,
            tool_use_id,
            by,
        } = self;
        let source = match by {
            Canceller::Session { was_pending } => {
                info!(target: CORE, was_pending, "permission cancelled by the session");
                "session"
            }
            Canceller::SessionRemoved => "session_removed",
        };
        metrics.decision(Outcome::Cancelled.as_str(), source);
        publish.publish(Event::PermissionCancelled {
            session_id: session,
            request_id,
            tool_use_id,
        });
    }
}

/// The ledger could not record a prompt or a decision: loud, and visible to operators
/// (the ledger counted it); the registry continues without a durable record.
#[derive(Debug)]
pub struct PromptRecordFailed {
    /// Session id.
    pub session: Arc<str>,
    /// What could not be done: `record prompt`, `record decision`.
    pub what: &'static str,
    /// Why (the ledger's error, as text).
    pub error: String,
}

impl PromptRecordFailed {
    /// Log it as an error and publish an `error` event for the session.
    pub fn emit(self, mut publish: impl Publish) {
        let PromptRecordFailed {
            session,
            what,
            error,
        } = self;
        error!(target: CORE, session_id = %session, error = %error,
            "LEDGER WRITE FAILED: cannot {what}; continuing without a durable record");
        publish.publish(Event::Error {
            session_id: session,
            message: format!("ledger: cannot {what}: {error}"),
        });
    }
}
