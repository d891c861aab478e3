//! What the policy does with a prompt on arrival (a rule answers, or a human is asked),
//! and the timers of a prompt left to a human: the overdue reminder and the ask deadline.

use std::sync::Arc;
use std::time::SystemTime;

use super::answer::{deny, refused, Answer, Source};
use super::effect::{Effect, Timer, TimerKind};
use super::Core;
use crate::policy::{self, Evaluation, PromptContext};
use crate::registry::store::{DeliveryState, Status};
use crate::telemetry::diagnostics::{DryRunMatched, PolicyAnswerRefused};
use crate::telemetry::permissions::{Happening, PromptExpired, PromptOrigin, PromptOverdue};
use ccr_protocol::api::{AnswerBody, DecisionBody};
use ccr_protocol::PromptKind;

/// How soon a timer that fired while its prompt's answer was being recorded fires again.
const RECORDING_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// What happens to a prompt on arrival, by the policy (or a refusal).
#[derive(Debug)]
pub enum Ruling {
    /// A rule (or a limit) answers it now.
    Answer(Answer),
    /// A human answers it, possibly under a deadline.
    Ask(Evaluation),
}

impl Core {
    /// What the policy does with this prompt (counts the hit; a dry run that matched goes
    /// to `fx`, to be logged). `None` for questions: rules, deadlines and reminders are
    /// about tools.
    pub(super) fn rule(
        &mut self,
        session: &Arc<str>,
        request_id: &str,
        labels: &[String],
        fx: &mut Vec<Effect>,
    ) -> Option<Ruling> {
        let prompt = self.store.get(session, request_id)?.prompt.clone();
        if prompt.kind() != PromptKind::CanUseTool {
            return None;
        }
        let eval = self
            .policy
            .evaluate(&PromptContext::new(session, labels, &prompt));
        if let Some(rule) = &eval.rule_id {
            *self.hits.entry(rule.clone()).or_default() += 1;
        }
        let body = match (&eval.outcome, &eval.rule_id) {
            (policy::Verdict::Allow, Some(_)) => AnswerBody::Permission(DecisionBody::Allow {
                updated_input: None,
                updated_permissions: None,
            }),
            (policy::Verdict::Deny { message }, Some(_)) => deny(message.clone()),
            _ => {
                if let (Some(would), Some(rule)) = (eval.dry_run, &eval.rule_id) {
                    let matched = DryRunMatched {
                        session: session.clone(),
                        request_id: request_id.to_owned(),
                        rule: rule.clone(),
                        would: would.as_str(),
                        reason: eval.reason.clone(),
                    };
                    fx.push(Effect::Emit(Happening::DryRunMatched(matched)));
                }
                return Some(Ruling::Ask(eval));
            }
        };
        let rule = eval.rule_id.as_deref().unwrap_or_default();
        Some(Ruling::Answer(Answer {
            session: session.clone(),
            request_id: request_id.to_owned(),
            body,
            decided_by: format!("rule:{rule}"),
            source: Source::Rule(eval.reason),
        }))
    }

    /// Let the policy answer a pending, shown prompt (a restored one) of a session
    /// labelled `labels`, or start its timers.
    pub(super) fn apply_policy(
        &mut self,
        session: Arc<str>,
        request_id: String,
        labels: Arc<[String]>,
        now: SystemTime,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        match self.rule(&session, &request_id, &labels, &mut fx) {
            None => {}
            Some(Ruling::Ask(eval)) => {
                let received_at = self
                    .store
                    .get(&session, &request_id)
                    .map_or(now, |e| e.received_at);
                fx.extend(self.timers(&eval, session, request_id, labels, received_at, now));
            }
            Some(Ruling::Answer(answer)) => match self.answer(answer, None, false, now) {
                Ok(more) => fx.extend(more),
                Err(e) => {
                    let error = e.to_string();
                    fx.push(refused(&e));
                    let policy = PolicyAnswerRefused { error };
                    fx.push(Effect::Emit(Happening::PolicyAnswerRefused(policy)));
                }
            },
        }
        fx
    }

    /// The overdue reminder and the ask deadline of a pending prompt, both measured from
    /// `received_at` (a prompt restored after a restart keeps its original clock).
    pub(super) fn timers(
        &self,
        eval: &Evaluation,
        session: Arc<str>,
        request_id: String,
        labels: Arc<[String]>,
        received_at: SystemTime,
        now: SystemTime,
    ) -> Vec<Effect> {
        let waited = now.duration_since(received_at).unwrap_or_default();
        let timer = |kind| Timer {
            session: session.clone(),
            request_id: request_id.clone(),
            labels: labels.clone(),
            kind,
        };
        let mut fx = Vec::new();
        if let Some(after) = self.policy.remind_after() {
            fx.push(Effect::StartTimer {
                after: after.saturating_sub(waited),
                timer: timer(TimerKind::Overdue { after }),
            });
        }
        if let Some(timeout) = self.policy.ask_timeout_for(eval) {
            fx.push(Effect::StartTimer {
                after: timeout.saturating_sub(waited),
                timer: timer(TimerKind::AskDeadline),
            });
        }
        fx
    }

    /// A timer fired: remind operators of, or expire, a prompt still pending.
    pub fn on_timer(&mut self, timer: Timer, now: SystemTime) -> Vec<Effect> {
        let Timer {
            session,
            request_id,
            labels,
            kind,
        } = timer;
        let Some(entry) = self.store.get(&session, &request_id) else {
            return Vec::new();
        };
        if let Status::Decided { delivery, .. } = &entry.status {
            // An answer still being recorded may yet fail, and the prompt be pending
            // again: the timer is tried again once that is known.
            if *delivery != DeliveryState::Recording {
                return Vec::new();
            }
            return vec![Effect::StartTimer {
                after: RECORDING_RETRY,
                timer: Timer {
                    session,
                    request_id,
                    labels,
                    kind,
                },
            }];
        }
        let origin = PromptOrigin {
            labels,
            received_at: entry.received_at,
        };
        let prompt = entry.prompt.clone();
        match kind {
            TimerKind::Overdue { after } => {
                let waiting = now.duration_since(entry.received_at).unwrap_or(after);
                vec![Effect::Emit(Happening::Overdue(PromptOverdue {
                    session,
                    request_id,
                    waiting,
                    prompt,
                    origin,
                }))]
            }
            TimerKind::AskDeadline => {
                let mut fx = vec![Effect::Emit(Happening::Expired(PromptExpired {
                    session: session.clone(),
                    request_id: request_id.clone(),
                    prompt,
                    origin,
                }))];
                let answer = Answer {
                    session,
                    request_id,
                    body: deny(self.policy.ask_timeout_message().to_owned()),
                    decided_by: "timeout".into(),
                    source: Source::Deadline,
                };
                // A refusal (answered meanwhile) is only logged.
                match self.answer(answer, None, false, now) {
                    Ok(more) => fx.extend(more),
                    Err(e) => fx.push(refused(&e)),
                }
                fx
            }
        }
    }
}
