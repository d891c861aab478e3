//! What the core asks the registry actor to do ([`Effect`]), and the small records that
//! travel with an effect so that its result can be reported back to the core.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::ledger::DecisionRecord;
use crate::telemetry::permissions::Happening;
use ccr_protocol::api::Decider;
use ccr_protocol::reply::{DecisionReceipt, Outcome};
use ccr_protocol::PermissionPrompt;

use super::answer::Refusal;
use crate::policy::Evaluation;
use crate::registry::store::{ConnId, DecideError};

/// One thing the actor does for the core. Effects are performed in order; those that
/// wait (a write, a ledger read, a timer, a retried ledger write) report back through
/// the `Core::on_*` method their variant names.
#[derive(Debug)]
pub enum Effect {
    /// Log, count and publish what happened to a prompt (one telemetry event each).
    Emit(Happening),
    /// Drop a removed session's event history (before its cancellations are published).
    ForgetHistory(Arc<str>),
    /// Write to the decision ledger.
    Record(Record),
    /// Read what the ledger holds for a prompt; report with `Core::on_looked_up`.
    Lookup(Lookup),
    /// Hand an answer frame to the session actor of `conn`; report with `Core::on_write`.
    Write(Write),
    /// After `after`, call `Core::on_timer` with `timer`.
    StartTimer {
        /// How long from now.
        after: Duration,
        /// What fires.
        timer: Timer,
    },
    /// Read a prompt's decision, recorded by another instance, from the ledger; report
    /// with `Core::on_decided_elsewhere`.
    ReadDecision {
        /// Session id.
        session: Arc<str>,
        /// Prompt id.
        request_id: String,
    },
    /// Answer the operator waiting on `Ticket`.
    Reply(Ticket, Result<DecisionReceipt, DecideError>),
}

/// A ledger write.
#[derive(Debug)]
pub enum Record {
    /// A new prompt: append it now; report with `Core::on_prompt_recorded`.
    Prompt {
        /// The prompt as stored.
        prompt: Arc<PermissionPrompt>,
        /// When it arrived.
        received_at: SystemTime,
        /// The arrival it belongs to (session, connection, labels, refusal).
        arrived: Arrived,
    },
    /// A prompt whose record failed (it is shown, flagged): retried in the background
    /// until it is durable, so that the ledger and the cluster see it once the storage or
    /// the database is back (its decision, if one comes first, records it too).
    PromptLater {
        /// Session id.
        session: Arc<str>,
        /// The prompt as stored.
        prompt: Arc<PermissionPrompt>,
        /// When it arrived.
        received_at: SystemTime,
    },
    /// A decision: append it now; report with `Core::on_decision_recorded`.
    Decision(DecisionWrite),
    /// An automatic decision whose append failed: retry until it is durable (it is held
    /// back meanwhile), then call `Core::on_decision_durable`.
    DecisionUntilDurable(DecisionWrite),
    /// When an answer was written to the socket (retried in the background; no one waits).
    Delivered {
        /// Session id.
        session: Arc<str>,
        /// Prompt id.
        request_id: String,
        /// When it was written.
        at: SystemTime,
    },
    /// An ending without an answer frame (a cancel), retried in the background so that a
    /// withdrawn prompt never comes back as pending after a restart.
    Ending(DecisionRecord),
}

/// The ledger rows one decision needs, and the decision to continue with once they are in.
#[derive(Debug)]
pub struct DecisionWrite {
    /// The prompt's own row, when it is not durable yet (it goes first; the actor clears
    /// this once it is appended, so a retry appends only what is missing).
    pub prompt: Option<(Arc<PermissionPrompt>, SystemTime)>,
    /// The decision's row.
    pub row: DecisionRecord,
    /// What to deliver once durable.
    pub decision: Decision,
    /// A prompt the policy (or a limit) answered on arrival: recorded together with its
    /// answer (one commit on PostgreSQL), and shown to operators only once both are durable.
    pub unshown: bool,
}

/// A decision the store accepted, on its way to the session (and to the operator who
/// gave it, when one waits).
#[derive(Debug)]
pub struct Decision {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// Who decided.
    pub decided_by: String,
    /// Operator or automatic: only an operator's decision is refused when the ledger fails.
    pub decider: Decider,
    /// `operator`, `rule`, `timeout` or `limit` (the metric's label).
    pub source: &'static str,
    /// `allow`, `deny`, or a question's answer.
    pub behavior: &'static str,
    /// How the ledger records it.
    pub outcome: Outcome,
    /// Why, for a rule, a deadline or a limit.
    pub reason: Option<String>,
    /// The operator waiting for the receipt.
    pub reply: Option<Ticket>,
}

/// A prompt as it arrived, carried while the ledger records or looks it up.
#[derive(Debug)]
pub struct Arrived {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// Connection it arrived on.
    pub conn: ConnId,
    /// The session's labels (for policy selectors).
    pub labels: Arc<[String]>,
    /// The fixed deny of a prompt the supervisor could not read.
    pub refusal: Option<Refusal>,
    /// How the policy asks a human about a new prompt (its timers), as ruled on arrival;
    /// `None` for a question (rules, deadlines and reminders are about tools).
    pub ask: Option<Evaluation>,
}

/// A ledger read.
#[derive(Debug)]
pub enum Lookup {
    /// A replayed prompt whose answer was too large to keep: resend it from the ledger.
    Resend {
        /// Session id.
        session: Arc<str>,
        /// Prompt id.
        request_id: String,
        /// Connection to resend on.
        conn: ConnId,
    },
    /// An unknown prompt of a session whose older records were evicted: new, or known?
    Check {
        /// The arrival.
        arrived: Arrived,
        /// The prompt, given back to the store with the answer.
        prompt: Box<PermissionPrompt>,
    },
}

impl Lookup {
    /// The prompt looked up: session and request id.
    pub fn key(&self) -> (&Arc<str>, &str) {
        match self {
            Lookup::Resend {
                session,
                request_id,
                ..
            } => (session, request_id),
            Lookup::Check { arrived, .. } => (&arrived.session, &arrived.request_id),
        }
    }
}

/// An answer frame for one connection of a session.
#[derive(Debug)]
pub struct Write {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// The connection it is meant for.
    pub conn: ConnId,
    /// The `control_response` frame.
    pub frame: Arc<str>,
    /// The decision this is the first write of (published and replied after it).
    pub decision: Option<Decision>,
}

/// A timer on one pending prompt.
#[derive(Debug, Clone)]
pub struct Timer {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// The session's labels (for notifications of what it does).
    pub labels: Arc<[String]>,
    /// What it does when it fires.
    pub kind: TimerKind,
}

/// What a [`Timer`] does if its prompt is still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Tell operators the prompt is overdue (`after` is the configured reminder delay).
    Overdue {
        /// `[policy] remind_after`.
        after: Duration,
    },
    /// Deny it: nobody answered before the ask deadline.
    AskDeadline,
}

/// Names an operator waiting for a decision's receipt (the actor keeps the channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);
