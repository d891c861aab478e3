//! Answering a prompt, whoever answers it — an operator, a policy rule, the ask deadline
//! or a limit: accepted by the store, recorded in the ledger, **then** written.
//!
//! `decide` → [`Record::Decision`] → `on_decision_recorded` → [`Effect::Write`] →
//! `on_write` → [`PromptAnswered`] (+ the operator's receipt). An operator's decision
//! whose ledger write fails is undone and refused (HTTP 503); an automatic one is held
//! back and retried until it is durable ([`Record::DecisionUntilDurable`]).

use std::sync::Arc;
use std::time::SystemTime;

use super::effect::{Decision, DecisionWrite, Effect, Record, Ticket, Write};
use super::{ledger_failed, Core};
use crate::ledger::{DecisionRecord, LedgerError};
use crate::registry::store::{DecideError, Status};
use crate::telemetry::diagnostics::{
    AnswerQueued, AnswerWrittenAgain, DecisionRefused, PromptHeld, WriteRetrying,
};
use crate::telemetry::permissions::{AnswerDelivered, Happening, PromptAnswered};
use ccr_protocol::api::{AnswerBody, Decider, DecisionBody, Delivery, QuestionAnswer};
use ccr_protocol::reply::{DecisionReceipt, Outcome};
use ccr_protocol::PromptKind;

/// `decided_by` of a prompt denied for exceeding `[ccr] max_frame_bytes`.
pub const LIMIT_FRAME_BYTES: &str = "limit:max_frame_bytes";
/// `decided_by` of a prompt denied because it nests deeper than JSON parsers accept.
pub const LIMIT_JSON_DEPTH: &str = "limit:max_json_depth";
/// `decided_by` of a prompt denied because it is not valid JSON.
pub const LIMIT_UNPARSEABLE: &str = "limit:unparseable";

/// The metric label of who answered, from a recorded `decided_by` (an operator's token
/// name, `rule:<id>`, `timeout` or `limit:…`).
pub(super) fn source_of(decided_by: &str) -> &'static str {
    if decided_by == "timeout" {
        "timeout"
    } else if decided_by.starts_with("rule:") {
        "rule"
    } else if decided_by.starts_with("limit:") {
        "limit"
    } else {
        "operator"
    }
}

/// A fixed deny for a prompt the supervisor could not read (too large, too deep).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Recorded as who decided, e.g. [`LIMIT_FRAME_BYTES`].
    pub decided_by: &'static str,
    /// What the model reads.
    pub message: String,
    /// Why, for the ledger and the event.
    pub reason: String,
}

/// An answer to one prompt, and who gave it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Session id.
    pub session: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// The answer as given.
    pub body: AnswerBody,
    /// Operator token name, `rule:<id>`, `timeout` or `limit:…`.
    pub decided_by: String,
    /// Who answered; decides the ledger outcome and the event's reason.
    pub source: Source,
}

/// Who answered a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An operator through the API.
    Operator,
    /// A policy rule; the reason says why.
    Rule(String),
    /// The ask deadline passed.
    Deadline,
    /// The supervisor could not read the prompt (too large, too deep); the reason says why.
    Limit(String),
}

impl Source {
    fn decider(&self) -> Decider {
        match self {
            Source::Operator => Decider::Operator,
            Source::Rule(_) | Source::Deadline | Source::Limit(_) => Decider::Automatic,
        }
    }

    fn outcome(&self, grants: bool) -> Outcome {
        match (self, grants) {
            (Source::Deadline, _) => Outcome::Expired,
            (_, true) => Outcome::Allowed,
            (_, false) => Outcome::Denied,
        }
    }

    fn reason(&self) -> Option<String> {
        match self {
            Source::Rule(reason) | Source::Limit(reason) => Some(reason.clone()),
            Source::Deadline => Some("no answer before the ask deadline".to_owned()),
            Source::Operator => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Source::Operator => "operator",
            Source::Rule(_) => "rule",
            Source::Deadline => "timeout",
            Source::Limit(_) => "limit",
        }
    }
}

/// A deny carrying `message` for the model.
pub(super) fn deny(message: String) -> AnswerBody {
    AnswerBody::Permission(DecisionBody::Deny {
        message: Some(message),
        interrupt: None,
    })
}

impl Answer {
    /// An operator's answer.
    pub fn operator(
        session: Arc<str>,
        request_id: String,
        body: AnswerBody,
        decided_by: String,
    ) -> Self {
        Answer {
            session,
            request_id,
            body,
            decided_by,
            source: Source::Operator,
        }
    }
}

impl Refusal {
    /// The refusal as an answer to a prompt of `kind` (a question is declined).
    pub(super) fn answer(self, session: Arc<str>, request_id: String, kind: PromptKind) -> Answer {
        let body = match kind {
            PromptKind::Elicitation => AnswerBody::Question(QuestionAnswer::Decline),
            _ => deny(self.message),
        };
        Answer {
            session,
            request_id,
            body,
            decided_by: self.decided_by.to_owned(),
            source: Source::Limit(self.reason),
        }
    }
}

impl Core {
    /// An answer someone waits for (an operator's): its receipt or refusal goes to
    /// `ticket`. Sessions the supervisor does not run are refused first, as unknown.
    pub fn decide(&mut self, answer: Answer, ticket: Ticket, now: SystemTime) -> Vec<Effect> {
        if !self.sessions.contains_key(&answer.session) {
            let unknown = DecideError::UnknownSession(answer.session.to_string());
            return vec![Effect::Reply(ticket, Err(unknown))];
        }
        self.answer(answer, Some(ticket), false, now)
            .unwrap_or_else(|e| vec![refused(&e), Effect::Reply(ticket, Err(e))])
    }

    /// Accept `answer` in the store and ask for it to be recorded; nothing is written
    /// before that. `unshown` lets the policy answer a prompt whose own record is still
    /// being written. A refusal is the caller's to report (with [`refused`] first).
    pub(super) fn answer(
        &mut self,
        answer: Answer,
        reply: Option<Ticket>,
        unshown: bool,
        now: SystemTime,
    ) -> Result<Vec<Effect>, DecideError> {
        let write = self.accept(answer, reply, unshown, now)?;
        Ok(vec![Effect::Record(Record::Decision(write))])
    }

    /// [`answer`](Self::answer)'s work: accept it in the store, and the ledger write it needs.
    pub(super) fn accept(
        &mut self,
        answer: Answer,
        reply: Option<Ticket>,
        unshown: bool,
        now: SystemTime,
    ) -> Result<DecisionWrite, DecideError> {
        let Answer {
            session,
            request_id,
            body,
            decided_by,
            source,
        } = answer;
        let decider = source.decider();
        let decided = self.store.decide(
            &session,
            &request_id,
            body,
            (&decided_by, decider),
            now,
            unshown,
        )?;
        let outcome = source.outcome(decided.grants);
        let reason = source.reason();
        let entry = self.store.get(&session, &request_id);
        let prompt = entry
            .filter(|_| decided.prompt_unrecorded)
            .map(|e| (e.prompt.clone(), e.received_at));
        let row = DecisionRecord {
            session_id: session.to_string(),
            request_id: request_id.clone(),
            outcome,
            decided_by: decided_by.clone(),
            decided_at: now,
            updated_input: decided.edited_input,
            answer: Some(decided.frame.to_string()),
            reason: reason.clone(),
        };
        let decision = Decision {
            session,
            request_id,
            decided_by,
            decider,
            source: source.name(),
            behavior: decided.behavior,
            outcome,
            reason,
            reply,
        };
        Ok(DecisionWrite {
            prompt,
            row,
            decision,
            unshown: false,
        })
    }

    /// The ledger took the decision (or failed to): deliver it, undo it (an operator's),
    /// or hold it back until the ledger takes it (an automatic one).
    pub fn on_decision_recorded(
        &mut self,
        mut write: DecisionWrite,
        recorded: Result<(), LedgerError>,
        now: SystemTime,
    ) -> Vec<Effect> {
        // A prompt answered on arrival: shown now that its write with its answer answered,
        // unless the session's lease refused it.
        let mut fx = Vec::new();
        if std::mem::take(&mut write.unshown) {
            let d = &write.decision;
            match &recorded {
                // The lease lapsed: held unseen, with its answer, until the lease is renewed
                // (the write is retried until then) or lost.
                Err(LedgerError::LeaseLapsed { .. }) => {
                    write.unshown = true;
                    return vec![
                        Effect::Emit(Happening::Held(PromptHeld { lapsed: true })),
                        Effect::Record(Record::DecisionUntilDurable(write)),
                    ];
                }
                // Not held here (handed over, its socket still closing): dropped.
                Err(LedgerError::NotOwner { .. }) => {
                    return self.drop_unowned(&d.session, &d.request_id);
                }
                // Recorded (written, or found in the ledger by a decision that lost); or,
                // the database away, loudly as unrecorded while its answer is held back.
                _ => {
                    let durable =
                        matches!(recorded, Ok(()) | Err(LedgerError::AlreadyDecided { .. }));
                    fx = self.show(&d.session, &d.request_id, None, None, durable, now);
                }
            }
        }
        let d = &write.decision;
        let Err(e) = recorded else {
            fx.extend(self.on_decision_durable(write.decision));
            return fx;
        };
        // Another instance of the cluster decided it first (the shared ledger says which
        // decision stands): this one is void. The operator hears 409 as for any prompt
        // already answered; the winner is read back and delivered from here, the owner.
        if let LedgerError::AlreadyDecided { outcome, .. } = &e {
            self.store.undecide(&d.session, &d.request_id);
            let lost = DecisionRefused {
                error: format!("decided elsewhere first ({outcome})"),
            };
            fx.push(Effect::Emit(Happening::DecisionRefused(lost)));
            fx.push(Effect::ReadDecision {
                session: d.session.clone(),
                request_id: d.request_id.clone(),
            });
            if let Some(ticket) = d.reply {
                let refused = DecideError::AlreadyAnswered(d.request_id.clone());
                fx.push(Effect::Reply(ticket, Err(refused)));
            }
            return fx;
        }
        fx.push(ledger_failed("record decision", &d.session, &e));
        if d.decider == Decider::Operator {
            self.store.undecide(&d.session, &d.request_id);
            if let Some(ticket) = d.reply {
                let refused = DecideError::LedgerUnavailable(e.to_string());
                fx.push(Effect::Reply(ticket, Err(refused)));
            }
            return fx;
        }
        fx.push(Effect::Record(Record::DecisionUntilDurable(write)));
        fx
    }

    /// An automatic decision held back until durable: its retries ended, with `result`.
    /// Durable: deliver it. Refused for good: decided elsewhere first (read back and
    /// delivered as the winner), or the session's lease lost (it is forgotten here anyway).
    pub fn on_decision_retried(
        &mut self,
        write: DecisionWrite,
        result: Result<(), LedgerError>,
        now: SystemTime,
    ) -> Vec<Effect> {
        match result {
            Ok(()) | Err(LedgerError::AlreadyDecided { .. }) => {
                self.on_decision_recorded(write, result, now)
            }
            Err(e) => {
                let d = &write.decision;
                // Held unseen while the lease had lapsed, and now lost with it.
                if write.unshown {
                    return self.drop_unowned(&d.session, &d.request_id);
                }
                self.store.undecide(&d.session, &d.request_id);
                vec![ledger_failed("record decision", &d.session, &e)]
            }
        }
    }

    /// The decision is durable: write it where the session waits for it, or queue it. If
    /// the session withdrew the prompt while it was being recorded, the cancel (recorded
    /// after it) voids it: nothing is written, and whoever answered hears 409.
    pub fn on_decision_durable(&mut self, d: Decision) -> Vec<Effect> {
        match self.store.recorded(&d.session, &d.request_id) {
            Some((conn, frame)) => vec![Effect::Write(Write {
                session: d.session.clone(),
                request_id: d.request_id.clone(),
                conn,
                frame,
                decision: Some(d),
            })],
            None if self.store.was_cancelled(&d.session, &d.request_id) => {
                let cancelled = DecideError::Cancelled(d.request_id.clone());
                let mut fx = vec![refused(&cancelled)];
                if let Some(ticket) = d.reply {
                    fx.push(Effect::Reply(ticket, Err(cancelled)));
                }
                fx
            }
            None => answered(d, Delivery::Queued),
        }
    }

    /// The session actor wrote `w` (or could not): account for it, move it to the
    /// session's newer connection or queue it, and finish its decision, if any.
    pub fn on_write(&mut self, w: Write, written: bool, now: SystemTime) -> Vec<Effect> {
        let Write {
            session,
            request_id,
            conn,
            decision,
            ..
        } = w;
        let mut fx = Vec::new();
        if written {
            let entry = self.store.get(&session, &request_id);
            let received = entry.map(|e| e.received_at);
            // The decision rides on the first write only; a retry's is in the store.
            let source = match (&decision, entry.map(|e| &e.status)) {
                (Some(d), _) => d.source,
                (None, Some(Status::Decided { decided_by, .. })) => source_of(decided_by),
                (None, _) => "operator",
            };
            // Every write is recorded: the ledger counts how often an answer went out.
            fx.push(Effect::Record(Record::Delivered {
                session: session.clone(),
                request_id: request_id.clone(),
                at: now,
            }));
            if self.store.on_written(&session, &request_id, conn) {
                let latency = received.and_then(|t| now.duration_since(t).ok());
                fx.push(Effect::Emit(Happening::Delivered(AnswerDelivered {
                    session: session.clone(),
                    request_id: request_id.clone(),
                    conn,
                    latency,
                    source,
                })));
            } else {
                let again = AnswerWrittenAgain { conn };
                fx.push(Effect::Emit(Happening::WrittenAgain(again)));
            }
            fx.push(Effect::Emit(self.resolved_gauge()));
        } else if let Some((next, frame)) = self.store.on_write_failed(&session, &request_id, conn)
        {
            let retrying = WriteRetrying { conn, next };
            fx.push(Effect::Emit(Happening::WriteRetrying(retrying)));
            fx.push(Effect::Write(Write {
                session,
                request_id,
                conn: next,
                frame,
                decision: None,
            }));
        } else {
            fx.push(Effect::Emit(Happening::Queued(AnswerQueued { conn })));
        }
        if let Some(d) = decision {
            let delivery = if written {
                Delivery::Sent
            } else {
                Delivery::Queued
            };
            fx.extend(answered(d, delivery));
        }
        fx
    }
}

/// The store refused a decision: nothing is sent (logged; the caller says what follows).
pub(super) fn refused(e: &DecideError) -> Effect {
    Effect::Emit(Happening::DecisionRefused(DecisionRefused {
        error: e.to_string(),
    }))
}

/// The decision went out (`Sent`) or waits for the session (`Queued`): tell operators
/// (and count it), and the one waiting for a receipt.
pub(super) fn answered(d: Decision, delivery: Delivery) -> Vec<Effect> {
    let mut fx = vec![Effect::Emit(Happening::Answered(PromptAnswered {
        session: d.session.clone(),
        request_id: d.request_id.clone(),
        behavior: d.behavior,
        decided_by: d.decided_by.clone(),
        delivery,
        reason: d.reason,
        outcome: d.outcome,
        source: d.source,
    }))];
    if let Some(ticket) = d.reply {
        let receipt = DecisionReceipt {
            session_id: d.session,
            request_id: d.request_id,
            status: d.outcome,
            delivery,
            decided_by: d.decided_by,
        };
        fx.push(Effect::Reply(ticket, Ok(receipt)));
    }
    fx
}
