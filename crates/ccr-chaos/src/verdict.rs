//! The checker's vocabulary: the invariants ([`Kind`]), one broken instance
//! ([`Violation`]), the run's figures ([`Counts`]) and the whole [`Verdict`].

/// A broken invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The run's own records are incomplete (wire log overflow): nothing else can be trusted.
    RecordsIncomplete,
    /// The supervisor process exited without being killed.
    SupervisorExited,
    /// Neither answered nor withdrawn when the run ended.
    Lost,
    /// Two answers with different content for one prompt.
    DifferentAnswers,
    /// The same answer again without the session having replayed the prompt on that connection.
    DuplicateAnswer,
    /// An answer on a connection opened after the one that carried the session's cancel.
    AnswerAfterCancel,
    /// The API said 200 for an answer the session never received (and never withdrew the prompt).
    AckNotDelivered,
    /// The API said 200 to more than one answer of one prompt.
    DoubleAck,
    /// The session received an answer whose every matching API call was refused.
    RefusedButDelivered,
    /// The session received an answer no operator sent.
    UnrequestedAnswer,
    /// An answer for a request id the session never emitted.
    ForeignAnswer,
    /// A prompt the policy rule answers got an answer other than the rule's.
    RuleNotApplied,
    /// An operator got a 200 for a prompt the policy rule answers.
    OperatorOverRule,
    /// The ledger has no row for a prompt the supervisor saw.
    LedgerMissing,
    /// The ledger's row disagrees with what the session got.
    LedgerMismatch,
}

impl Kind {
    /// Stable snake_case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RecordsIncomplete => "records_incomplete",
            Kind::SupervisorExited => "supervisor_exited",
            Kind::Lost => "lost",
            Kind::DifferentAnswers => "different_answers",
            Kind::DuplicateAnswer => "duplicate_answer",
            Kind::AnswerAfterCancel => "answer_after_cancel",
            Kind::AckNotDelivered => "ack_not_delivered",
            Kind::DoubleAck => "double_ack",
            Kind::RefusedButDelivered => "refused_but_delivered",
            Kind::UnrequestedAnswer => "unrequested_answer",
            Kind::ForeignAnswer => "foreign_answer",
            Kind::RuleNotApplied => "rule_not_applied",
            Kind::OperatorOverRule => "operator_over_rule",
            Kind::LedgerMissing => "ledger_missing",
            Kind::LedgerMismatch => "ledger_mismatch",
        }
    }
}

/// One broken invariant for one prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// Which invariant.
    pub kind: Kind,
    /// Session id (empty for run-wide violations).
    pub session: String,
    /// Prompt id (empty for run-wide violations).
    pub request_id: String,
    /// One line saying what was seen.
    pub detail: String,
    /// The prompt's life (first emission to its last answer, cancel or API
    /// call) spanned a `kill -9` of the supervisor.
    pub across_restart: bool,
}

/// Figures of a run (what happened, legitimate oddities included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Distinct prompts emitted.
    pub prompts: u64,
    /// Times a prompt was re-sent on a new connection.
    pub replays: u64,
    /// Prompts withdrawn by the session with a `control_cancel_request`.
    pub cancels: u64,
    /// Prompts withdrawn while no connection was live (never replayed again).
    pub withdrawn_unseen: u64,
    /// Prompts settled by an answer that came on a connection where they had been replayed.
    pub answered_after_replay: u64,
    /// Answer frames received.
    pub answer_frames: u64,
    /// Prompts settled by an answer.
    pub answered: u64,
    /// Prompts of the policy rule's tool (the rule answers them).
    pub rule_prompts: u64,
    /// Prompts settled by the rule's answer.
    pub rule_answered: u64,
    /// Prompts settled by an operator's answer (any prompt not of the rule's tool).
    pub operator_answered: u64,
    /// Prompts of the rule's tool some operator tried to answer (each answer refused, or a violation).
    pub rule_prompts_tried: u64,
    /// Same answer re-sent after the session replayed the prompt on a new connection.
    pub resends: u64,
    /// Answers that crossed the cancel on the same connection.
    pub crossed_cancels: u64,
    /// API 200s for prompts the session withdrew before that answer reached it.
    pub acked_then_withdrawn: u64,
    /// API results: 200 `sent`.
    pub api_sent: u64,
    /// API results: 200 `queued`.
    pub api_queued: u64,
    /// API results: 409 `already_answered`.
    pub api_already_answered: u64,
    /// API results: 409 `prompt_cancelled`.
    pub api_prompt_cancelled: u64,
    /// API results: 404 `unknown_prompt`.
    pub api_unknown_prompt: u64,
    /// API results: other statuses.
    pub api_other: u64,
    /// API calls without an HTTP answer (process killed, refused, timeout).
    pub api_failed: u64,
    /// Ledger rows read.
    pub ledger_rows: u64,
    /// Rows of answers the session acted on that have no `delivered_at` (bookkeeping, not an invariant).
    pub rows_without_delivery: u64,
}

/// The checker's result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Figures.
    pub counts: Counts,
    /// Every broken invariant, grouped by kind.
    pub violations: Vec<Violation>,
}
