//! The decision pipeline of the `PermissionRegistry`: every answer (operator,
//! policy rule or deadline) is recorded in the ledger BEFORE it is written to
//! the session; policy auto-answers; ask deadlines and overdue reminders.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;
use serde::Serialize;
use tracing::{error, info, info_span, warn, Instrument};

use super::actor::PermissionRegistry;
use super::store::{DecideError, Status};
use crate::audit::{DecisionRecord, LedgerError, Outcome as LedgerOutcome};
use crate::events::Event;
use crate::policy::{Outcome as PolicyOutcome, PolicyView, PromptContext};
use crate::protocol::api::{AnswerBody, Decider, DecisionBody, Delivery};

/// An operator's (or policy's) answer to a prompt.
#[derive(Message)]
#[rtype(result = "Result<DecisionReceipt, DecideError>")]
pub struct Decide {
    /// Session id.
    pub session_id: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// The answer as given.
    pub body: AnswerBody,
    /// Who decided (operator token name, `rule:<id>`, `timeout`).
    pub decided_by: String,
}

/// The registry's acknowledgement of a decision.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionReceipt {
    /// Session id.
    pub session_id: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// `allowed`, `denied` or `expired`.
    pub status: &'static str,
    /// Written now, or queued until the session reconnects.
    pub delivery: Delivery,
    /// Who decided.
    pub decided_by: String,
}

/// How a decision came about (decides the ledger outcome and the event's reason).
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// An operator through the API.
    Operator,
    /// A policy rule; the reason says why.
    Rule(String),
    /// The ask deadline passed.
    Deadline,
    /// The supervisor could not read the prompt (too large, too deep); the reason says why.
    Limit(String),
}

impl Handler<Decide> for PermissionRegistry {
    type Result = ResponseActFuture<Self, Result<DecisionReceipt, DecideError>>;

    fn handle(&mut self, msg: Decide, _: &mut Context<Self>) -> Self::Result {
        self.commit(
            msg.session_id,
            msg.request_id,
            msg.body,
            msg.decided_by,
            Source::Operator,
        )
    }
}

/// Completes once a decision is durable in the ledger (always `Ok` for an automatic
/// decision, which is retried until it is).
pub(super) type RecordFut = Pin<Box<dyn Future<Output = Result<(), LedgerError>> + Send>>;

/// A decision accepted by the store whose ledger record is durable or being retried.
pub(super) struct Recording {
    session: Arc<str>,
    request_id: String,
    decided_by: String,
    behavior: &'static str,
    outcome: LedgerOutcome,
    reason: Option<String>,
    /// Completes when the ledger has the decision (`None`: no ledger, or already durable).
    record: Option<RecordFut>,
}

/// What the policy does with a prompt on arrival.
pub(super) enum Verdict {
    /// A rule (or a limit) answers it.
    Answer {
        body: AnswerBody,
        decided_by: String,
        source: Source,
    },
    /// A human answers it (possibly under a deadline).
    Ask(crate::policy::Evaluation),
}

/// The ledger writes one decision needs: its prompt's record when that is not durable yet,
/// then the decision.
#[derive(Clone)]
struct Durable {
    ledger: crate::audit::Ledger,
    prompt: Option<(Arc<str>, Arc<crate::protocol::PermissionPrompt>, SystemTime)>,
    decision: DecisionRecord,
}

impl Durable {
    /// Append what is not durable yet; `Ok` once both are.
    fn append(&mut self) -> Result<(), LedgerError> {
        if let Some((session, prompt, received_at)) = &self.prompt {
            self.ledger.append_prompt(session, prompt, *received_at)?;
            self.prompt = None;
        }
        self.ledger.append_decision(self.decision.clone())
    }

    /// Append until durable (the first attempt failed): an automatic answer is held back.
    async fn append_until_durable(mut self) -> Result<(), LedgerError> {
        let span = ledger_span(&self.decision.session_id, &self.decision.request_id);
        retry_until_durable("automatic answer held back", move || self.append())
            .instrument(span)
            .await;
        Ok(())
    }
}

impl PermissionRegistry {
    /// Decide, record in the ledger, then write (or queue); publishes the answer.
    pub(super) fn commit(
        &mut self,
        session: Arc<str>,
        request_id: String,
        body: AnswerBody,
        decided_by: String,
        source: Source,
    ) -> ResponseActFuture<Self, Result<DecisionReceipt, DecideError>> {
        match self.decide_and_record(session, request_id, body, decided_by, source, false) {
            Ok(rec) => self.deliver_recorded(rec),
            Err(e) => Box::pin(actix::fut::ready(Err(e))),
        }
    }

    /// Accept a decision in the store and make it durable before anything is written.
    ///
    /// The rule: **an answer is acknowledged, and written to the session, only once it is
    /// durable.** An operator's decision whose ledger write fails is undone (the prompt is
    /// pending again) and refused with [`DecideError::LedgerUnavailable`] (HTTP 503); an
    /// automatic one (rule, deadline, limit) is held back and retried until it is recorded.
    /// `unshown` lets the policy decide a prompt whose own record is still being written.
    pub(super) fn decide_and_record(
        &mut self,
        session: Arc<str>,
        request_id: String,
        body: AnswerBody,
        decided_by: String,
        source: Source,
        unshown: bool,
    ) -> Result<Recording, DecideError> {
        let _span =
            info_span!("permission", session_id = %session, request_id = %request_id).entered();
        let now = SystemTime::now();
        let decider = match source {
            Source::Operator => Decider::Operator,
            Source::Rule(_) | Source::Deadline | Source::Limit(_) => Decider::Automatic,
        };
        let decided = self
            .store
            .decide(
                &session,
                &request_id,
                body,
                (&decided_by, decider),
                now,
                unshown,
            )
            .inspect_err(|e| warn!(error = %e, "decision refused; nothing sent"))?;
        let behavior = decided.behavior;
        let outcome = match (&source, decided.grants) {
            (Source::Deadline, _) => LedgerOutcome::Expired,
            (_, true) => LedgerOutcome::Allowed,
            (_, false) => LedgerOutcome::Denied,
        };
        let reason = match &source {
            Source::Rule(reason) | Source::Limit(reason) => Some(reason.clone()),
            Source::Deadline => Some("no answer before the ask deadline".to_owned()),
            Source::Operator => None,
        };
        let source_name = match &source {
            Source::Operator => "operator",
            Source::Rule(_) => "rule",
            Source::Deadline => "timeout",
            Source::Limit(_) => "limit",
        };
        let mut record = None;
        if let Some(ledger) = &self.ledger {
            let prompt = decided.prompt_unrecorded.then(|| {
                let e = self.store.get(&session, &request_id);
                e.map(|e| (session.clone(), e.prompt.clone(), e.received_at))
            });
            let mut durable = Durable {
                ledger: ledger.clone(),
                prompt: prompt.flatten(),
                decision: DecisionRecord {
                    session_id: session.to_string(),
                    request_id: request_id.clone(),
                    outcome,
                    decided_by: decided_by.clone(),
                    decided_at: now,
                    updated_input: decided.edited_input.clone(),
                    answer: Some(decided.frame.to_string()),
                    reason: reason.clone(),
                },
            };
            if let Err(e) = durable.append() {
                self.ledger_failed("record decision", &session, &e);
                if decider == Decider::Operator {
                    self.store.undecide(&session, &request_id);
                    return Err(DecideError::LedgerUnavailable(e.to_string()));
                }
                record = Some(Box::pin(durable.append_until_durable()) as RecordFut);
            }
        }
        self.metrics.decision(outcome.as_str(), source_name);
        Ok(Recording {
            session,
            request_id,
            decided_by,
            behavior,
            outcome,
            reason,
            record,
        })
    }

    /// Once the decision is in the ledger: write it (or queue it) and publish it.
    pub(super) fn deliver_recorded(
        &mut self,
        rec: Recording,
    ) -> ResponseActFuture<Self, Result<DecisionReceipt, DecideError>> {
        let Recording {
            session,
            request_id,
            decided_by,
            behavior,
            outcome,
            reason,
            record,
        } = rec;
        let recorded = async move {
            match record {
                Some(fut) => fut.await,
                None => Ok(()),
            }
        };
        Box::pin(recorded.into_actor(self).then(move |res, act, _| {
            // Logged here, after the prompt's own "permission requested" line.
            info!(session_id = %session, request_id = %request_id, behavior, decided_by = %decided_by,
                reason = reason.as_deref().unwrap_or(""), "permission answered");
            if let Err(e) = res {
                act.ledger_failed("record decision", &session, &e);
            }
            let written: ResponseActFuture<Self, bool> =
                match act.store.recorded(&session, &request_id) {
                    Some((conn, frame)) => {
                        act.dispatch(session.clone(), request_id.clone(), conn, frame)
                    }
                    None => Box::pin(actix::fut::ready(false)),
                };
            written.map(move |written, act, _| {
                let delivery = if written {
                    Delivery::Sent
                } else {
                    Delivery::Queued
                };
                act.bus.publish(Event::PermissionAnswered {
                    session_id: session.clone(),
                    request_id: request_id.clone(),
                    behavior,
                    decided_by: decided_by.clone(),
                    delivery,
                    reason,
                });
                Ok(DecisionReceipt {
                    session_id: session,
                    request_id,
                    status: outcome.as_str(),
                    delivery,
                    decided_by,
                })
            })
        }))
    }

    /// A new prompt is in the ledger (`durable`; or its record failed, loudly): show it,
    /// then start its deadline and reminder unless it was answered meanwhile.
    pub(super) fn on_recorded(
        &mut self,
        session: Arc<str>,
        request_id: String,
        eval: Option<crate::policy::Evaluation>,
        durable: bool,
        ctx: &mut Context<Self>,
    ) {
        let pending = if durable {
            self.store.reveal(&session, &request_id)
        } else {
            self.store.reveal_unrecorded(&session, &request_id)
        };
        let Some(entry) = self.store.get(&session, &request_id) else {
            return; // withdrawn meanwhile
        };
        let prompt = entry.prompt.clone();
        let received_at = entry.received_at;
        let _span =
            info_span!("permission", session_id = %session, request_id = %request_id).entered();
        info!(tool = %prompt.tool_name, "permission requested");
        self.bus.publish(Event::permission_requested(
            &session,
            &request_id,
            &prompt,
            true,
        ));
        drop(_span);
        if let (true, Some(eval)) = (pending, eval) {
            self.start_deadlines(&eval, session, request_id, received_at, ctx);
        }
    }

    /// What the policy does with this prompt (counts the hit; logs dry runs).
    pub(super) fn verdict(
        &mut self,
        session: &Arc<str>,
        request_id: &str,
        labels: &[String],
    ) -> Option<Verdict> {
        let prompt = self.store.get(session, request_id)?.prompt.clone();
        if prompt.kind() != crate::protocol::PromptKind::CanUseTool {
            // Rules, deadlines and reminders are about tools; questions wait for a person.
            return None;
        }
        let eval = self
            .policy
            .evaluate(&PromptContext::new(session, labels, &prompt));
        if let Some(rule) = &eval.rule_id {
            *self.hits.entry(rule.clone()).or_default() += 1;
        }
        let body = match (&eval.outcome, &eval.rule_id) {
            (PolicyOutcome::Allow, Some(_)) => AnswerBody::Permission(DecisionBody::Allow {
                updated_input: None,
                updated_permissions: None,
            }),
            (PolicyOutcome::Deny { message }, Some(_)) => {
                AnswerBody::Permission(DecisionBody::Deny {
                    message: Some(message.clone()),
                    interrupt: None,
                })
            }
            _ => {
                if let (Some(would), Some(rule)) = (eval.dry_run, &eval.rule_id) {
                    info!(session_id = %session, request_id, rule = %rule, would = would.as_str(), reason = %eval.reason, "dry-run rule matched; asking a human");
                }
                return Some(Verdict::Ask(eval));
            }
        };
        let rule = eval.rule_id.as_deref().unwrap_or_default();
        Some(Verdict::Answer {
            body,
            decided_by: format!("rule:{rule}"),
            source: Source::Rule(eval.reason),
        })
    }

    /// Let the policy answer a pending, shown prompt (a restored one), or start its deadline and reminder.
    pub(super) fn apply_policy(
        &mut self,
        session: Arc<str>,
        request_id: String,
        labels: Arc<[String]>,
        ctx: &mut Context<Self>,
    ) {
        match self.verdict(&session, &request_id, &labels) {
            None => {}
            Some(Verdict::Ask(eval)) => {
                let received_at = self
                    .store
                    .get(&session, &request_id)
                    .map_or_else(SystemTime::now, |e| e.received_at);
                self.start_deadlines(&eval, session, request_id, received_at, ctx)
            }
            Some(Verdict::Answer {
                body,
                decided_by,
                source,
            }) => {
                ctx.spawn(
                    self.commit(session, request_id, body, decided_by, source)
                        .map(|res, _, _| {
                            if let Err(e) = res {
                                warn!(error = %e, "policy answer refused");
                            }
                        }),
                );
            }
        }
    }

    /// Arm the overdue reminder and the ask deadline of a pending prompt, both measured
    /// from `received_at` (a prompt restored after a restart keeps its original clock).
    fn start_deadlines(
        &self,
        eval: &crate::policy::Evaluation,
        session: Arc<str>,
        request_id: String,
        received_at: SystemTime,
        ctx: &mut Context<Self>,
    ) {
        let waited = SystemTime::now()
            .duration_since(received_at)
            .unwrap_or_default();
        if let Some(after) = self.policy.remind_after() {
            let (s, r) = (session.clone(), request_id.clone());
            ctx.run_later(after.saturating_sub(waited), move |act, _| {
                if act.is_pending(&s, &r) {
                    let waiting = act
                        .store
                        .get(&s, &r)
                        .and_then(|e| e.received_at.elapsed().ok())
                        .unwrap_or(after);
                    warn!(session_id = %s, request_id = %r, ?waiting, "permission overdue");
                    act.bus.publish(Event::PermissionOverdue {
                        session_id: s,
                        request_id: r,
                        waiting_ms: waiting.as_millis() as u64,
                    });
                }
            });
        }
        if let Some(timeout) = self.policy.ask_timeout_for(eval) {
            ctx.run_later(timeout.saturating_sub(waited), move |act, ctx| {
                if !act.is_pending(&session, &request_id) {
                    return;
                }
                act.bus.publish(Event::PermissionExpired {
                    session_id: session.clone(),
                    request_id: request_id.clone(),
                });
                let body = AnswerBody::Permission(DecisionBody::Deny {
                    message: Some(act.policy.ask_timeout_message().to_owned()),
                    interrupt: None,
                });
                ctx.spawn(
                    act.commit(
                        session,
                        request_id,
                        body,
                        "timeout".into(),
                        Source::Deadline,
                    )
                    .map(|_, _, _| ()),
                );
            });
        }
    }

    fn is_pending(&self, session: &str, request_id: &str) -> bool {
        self.store
            .get(session, request_id)
            .is_some_and(|e| e.status == Status::Pending)
    }

    /// Loud, counted (by the ledger), and visible to operators — never silent.
    pub(super) fn ledger_failed(&self, what: &str, session: &Arc<str>, e: &LedgerError) {
        error!(session_id = %session, error = %e, "LEDGER WRITE FAILED: cannot {what}; continuing without a durable record");
        self.bus.publish(Event::Error {
            session_id: session.clone(),
            message: format!("ledger: cannot {what}: {e}"),
        });
    }

    /// Record that an answer was written to the socket (no one waits for it; retried
    /// in the background while the ledger fails).
    pub(super) fn ledger_delivered(&self, session: &Arc<str>, request_id: &str) {
        if let Some(ledger) = &self.ledger {
            let (ledger, s, r) = (ledger.clone(), session.clone(), request_id.to_owned());
            let at = SystemTime::now();
            let span = ledger_span(session, request_id);
            retry_in_background(span, "delivery time", move || {
                ledger.append_delivered(&s, &r, at)
            });
        }
    }

    /// Record an outcome that needs no answer frame (a cancel); retried in the background
    /// while the ledger fails, so a withdrawn prompt never comes back as pending.
    pub(super) fn ledger_outcome(
        &self,
        session: &Arc<str>,
        request_id: &str,
        outcome: LedgerOutcome,
        decided_by: &str,
    ) {
        if let Some(ledger) = &self.ledger {
            let record = DecisionRecord {
                session_id: session.to_string(),
                request_id: request_id.to_owned(),
                outcome,
                decided_by: decided_by.to_owned(),
                decided_at: SystemTime::now(),
                updated_input: None,
                answer: None,
                reason: None,
            };
            let ledger = ledger.clone();
            let span = ledger_span(session, request_id);
            retry_in_background(span, outcome.as_str(), move || {
                ledger.append_decision(record.clone())
            });
        }
    }
}

/// The span a ledger write for one prompt logs under.
fn ledger_span(session: &str, request_id: &str) -> tracing::Span {
    info_span!("ledger", session_id = %session, request_id = %request_id)
}

/// Run `append` now, and if it fails keep retrying it in the background until it succeeds.
fn retry_in_background(
    span: tracing::Span,
    what: &'static str,
    mut append: impl FnMut() -> Result<(), LedgerError> + 'static,
) {
    let Err(e) = append() else {
        return;
    };
    span.in_scope(|| error!(error = %e, "LEDGER WRITE FAILED: {what}; retrying in the background"));
    actix::spawn(retry_until_durable(what, append).instrument(span));
}

/// Retry a ledger write whose first attempt failed, with growing pauses (a full disk can
/// last), until it succeeds; every 16th failure is logged.
async fn retry_until_durable(
    what: &'static str,
    mut append: impl FnMut() -> Result<(), LedgerError>,
) {
    let mut attempt = 0u32;
    loop {
        tokio::time::sleep(crate::audit::retry_delay(attempt)).await;
        match append() {
            Ok(()) => return,
            Err(e) if attempt % 16 == 15 => {
                error!(error = %e, attempt, "LEDGER WRITE STILL FAILING: {what}; retrying")
            }
            Err(_) => {}
        }
        attempt = attempt.saturating_add(1);
    }
}

/// The policy as `GET /v1/policy` shows it, with hit counts.
#[derive(Message)]
#[rtype(result = "PolicyReport")]
pub struct PolicyInfo;

/// Rules, deadlines and how often each rule matched.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// The compiled policy.
    #[serde(flatten)]
    pub policy: PolicyView,
    /// Evaluations that matched each rule id (dry runs included).
    pub hits: HashMap<String, u64>,
}

impl Handler<PolicyInfo> for PermissionRegistry {
    type Result = MessageResult<PolicyInfo>;

    fn handle(&mut self, _: PolicyInfo, _: &mut Context<Self>) -> Self::Result {
        MessageResult(PolicyReport {
            policy: self.policy.view(),
            hits: self.hits.clone(),
        })
    }
}
