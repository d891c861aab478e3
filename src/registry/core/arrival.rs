//! A prompt arriving: new (recorded, then shown, then the policy or the operators answer
//! it), a replay (ignored, confirmed, or its answer sent again), or unknown to a session
//! whose older records were evicted (looked up in the ledger first).

use std::sync::Arc;
use std::time::SystemTime;

use super::answer::refused;
use super::effect::{Arrived, Effect, Lookup, Record, Write};
use super::rules::Ruling;
use super::{known, ledger_failed, Core, Refusal};
use crate::ledger::{LedgerError, Stored};
use crate::policy::Evaluation;
use crate::registry::store::{Arrival, ConnId};
use crate::telemetry::diagnostics::{
    AnswerReadBackFailed, AnswerResent, AnswerResentFromLedger, AutomaticAnswerRefused,
    LedgerLookupFailed, PromptHeld, ReplayIgnored, UnknownPromptLookedUp,
};
use crate::telemetry::permissions::{Happening, PromptConfirmed, PromptOrigin, PromptShown};
use ccr_protocol::PermissionPrompt;

impl Core {
    /// A `can_use_tool` prompt (or a question) arrived on `conn`.
    pub fn on_prompt(
        &mut self,
        session: Arc<str>,
        conn: ConnId,
        prompt: PermissionPrompt,
        labels: Arc<[String]>,
        refusal: Option<Refusal>,
        now: SystemTime,
    ) -> Vec<Effect> {
        let arrived = Arrived {
            session,
            request_id: prompt.request_id.clone(),
            conn,
            labels,
            refusal,
            ask: None,
        };
        let arrival = self.store.on_prompt(&arrived.session, conn, prompt, now);
        self.on_arrival(arrived, arrival, now)
    }

    /// Act on what the store made of an arriving prompt.
    fn on_arrival(&mut self, a: Arrived, arrival: Arrival, now: SystemTime) -> Vec<Effect> {
        match arrival {
            Arrival::New => self.on_new(a, now),
            Arrival::Duplicate => vec![Effect::Emit(Happening::ReplayIgnored(ReplayIgnored))],
            Arrival::Confirmed => vec![Effect::Emit(Happening::Confirmed(PromptConfirmed {
                session: a.session,
                request_id: a.request_id,
            }))],
            Arrival::Resend { conn, frame } => {
                vec![
                    Effect::Emit(Happening::Resent(AnswerResent { conn })),
                    Effect::Write(Write {
                        session: a.session,
                        request_id: a.request_id,
                        conn,
                        frame,
                        decision: None,
                    }),
                ]
            }
            Arrival::ResendFromLedger { conn } => vec![Effect::Lookup(Lookup::Resend {
                session: a.session,
                request_id: a.request_id,
                conn,
            })],
            Arrival::Check(prompt) => vec![
                Effect::Emit(Happening::LookedUp(UnknownPromptLookedUp)),
                Effect::Lookup(Lookup::Check { arrived: a, prompt }),
            ],
        }
    }

    /// A new prompt: recorded before anyone sees it (replays are never written again).
    /// The policy rules on it now: a prompt it (or a limit) answers is recorded together
    /// with its answer, in one write, and shown once both are durable; any other is
    /// recorded alone and shown once that is durable ([`Core::on_prompt_recorded`]).
    fn on_new(&mut self, mut a: Arrived, now: SystemTime) -> Vec<Effect> {
        let Some(e) = self.store.get(&a.session, &a.request_id) else {
            return Vec::new();
        };
        let (prompt, received_at) = (e.prompt.clone(), e.received_at);
        let mut fx = Vec::new();
        let ruling = match a.refusal.take() {
            Some(r) => Some(Ruling::Answer(r.answer(
                a.session.clone(),
                a.request_id.clone(),
                prompt.kind(),
            ))),
            None => self.rule(&a.session, &a.request_id, &a.labels, &mut fx),
        };
        a.ask = match ruling {
            Some(Ruling::Ask(eval)) => Some(eval),
            None => None,
            Some(Ruling::Answer(answer)) => match self.accept(answer, None, true, now) {
                Ok(mut write) => {
                    write.unshown = true;
                    fx.push(Effect::Record(Record::Decision(write)));
                    return fx;
                }
                // Left to a human instead (it is shown and notified once recorded).
                Err(e) => {
                    let error = e.to_string();
                    let automatic = AutomaticAnswerRefused { error };
                    fx.push(refused(&e));
                    fx.push(Effect::Emit(Happening::AutomaticAnswerRefused(automatic)));
                    None
                }
            },
        };
        fx.push(Effect::Record(Record::Prompt {
            prompt,
            received_at,
            arrived: a,
        }));
        fx
    }

    /// A new prompt's record is durable (or failed, loudly: a decision then records it
    /// first): show it, under the policy's timers when a human is asked. In a cluster, a
    /// record the session's lease refused is not shown at all: held until the lease is
    /// renewed (lapsed), or left to the session's next owner (lost).
    pub fn on_prompt_recorded(
        &mut self,
        a: Arrived,
        recorded: Result<(), LedgerError>,
        now: SystemTime,
    ) -> Vec<Effect> {
        match &recorded {
            Err(LedgerError::LeaseLapsed { .. }) => return self.hold(a),
            Err(LedgerError::NotOwner { .. }) => {
                return self.drop_unowned(&a.session, &a.request_id)
            }
            _ => {}
        }
        let Arrived {
            session,
            request_id,
            labels,
            ask,
            ..
        } = a;
        let mut fx = Vec::new();
        if let Err(e) = &recorded {
            fx.push(ledger_failed("record prompt", &session, e));
            let entry = self.store.get(&session, &request_id);
            if let (false, Some(e)) = (e.is_refusal(), entry) {
                fx.push(Effect::Record(Record::PromptLater {
                    session: session.clone(),
                    prompt: e.prompt.clone(),
                    received_at: e.received_at,
                }));
            }
        }
        let durable = recorded.is_ok();
        // Left to a human, under the policy's timers (a question has none).
        let eval = ask.as_ref();
        fx.extend(self.show(&session, &request_id, eval, Some(labels), durable, now));
        fx
    }

    /// Keep a prompt whose record the session's lapsed lease refused out of sight until
    /// `on_resumed` records it again (unless it is gone already: withdrawn meanwhile).
    fn hold(&mut self, a: Arrived) -> Vec<Effect> {
        if self.store.get(&a.session, &a.request_id).is_none() {
            return Vec::new();
        }
        let key = (a.session.clone(), a.request_id.clone());
        self.held.insert(key, a);
        vec![Effect::Emit(Happening::Held(PromptHeld { lapsed: true }))]
    }

    /// Drop an unseen prompt whose record the lease refused because the session is not held
    /// here (handed over or lost, its socket still closing), with the answer a rule gave it
    /// if any: without a trace, so that its next owner records it when the session replays
    /// it there (and a replay here, should the session come back, is new).
    pub(super) fn drop_unowned(&mut self, session: &str, request_id: &str) -> Vec<Effect> {
        self.store.undecide(session, request_id);
        self.store.discard(session, request_id);
        vec![Effect::Emit(Happening::Held(PromptHeld { lapsed: false }))]
    }

    /// Show a recorded prompt to operators, then start its timers unless it was answered.
    /// `to_human` (its session's labels) when no rule answers it: it is notified.
    pub(super) fn show(
        &mut self,
        session: &Arc<str>,
        request_id: &str,
        eval: Option<&Evaluation>,
        to_human: Option<Arc<[String]>>,
        durable: bool,
        now: SystemTime,
    ) -> Vec<Effect> {
        let pending = match durable {
            true => self.store.reveal(session, request_id),
            false => self.store.reveal_unrecorded(session, request_id),
        };
        let Some(e) = self.store.get(session, request_id) else {
            return Vec::new(); // withdrawn meanwhile
        };
        let labels = to_human.clone().unwrap_or_else(|| Arc::from([]));
        let mut fx = vec![Effect::Emit(Happening::Shown(PromptShown {
            session: session.clone(),
            request_id: request_id.to_owned(),
            prompt: e.prompt.clone(),
            asks_human: to_human.map(|labels| PromptOrigin {
                labels,
                received_at: e.received_at,
            }),
        }))];
        if let (true, Some(eval)) = (pending, eval) {
            let (s, r) = (session.clone(), request_id.to_owned());
            fx.extend(self.timers(eval, s, r, labels, e.received_at, now));
        }
        fx
    }

    /// The ledger answered a [`Lookup`].
    pub fn on_looked_up(
        &mut self,
        lookup: Lookup,
        stored: Result<Stored, LedgerError>,
        now: SystemTime,
    ) -> Vec<Effect> {
        match lookup {
            Lookup::Resend {
                session,
                request_id,
                conn,
            } => match stored {
                Ok(Stored::Answered(frame)) => vec![
                    Effect::Emit(Happening::ResentFromLedger(AnswerResentFromLedger { conn })),
                    Effect::Write(Write {
                        session,
                        request_id,
                        conn,
                        frame: Arc::from(frame),
                        decision: None,
                    }),
                ],
                other => {
                    let read = format!("{other:?}");
                    let failed = AnswerReadBackFailed { read };
                    vec![Effect::Emit(Happening::ReadBackFailed(failed))]
                }
            },
            Lookup::Check { arrived, prompt } => {
                // A failed read is treated as unknown: showing a prompt again is
                // recoverable (its decision is refused by the ledger), hanging is not.
                let mut fx = Vec::new();
                let stored = stored.unwrap_or_else(|e| {
                    let failed = LedgerLookupFailed {
                        error: e.to_string(),
                    };
                    fx.push(Effect::Emit(Happening::LookupFailed(failed)));
                    Stored::Nothing
                });
                let (session, conn) = (arrived.session.clone(), arrived.conn);
                let arrival = self
                    .store
                    .on_checked(&session, conn, *prompt, known(stored), now);
                fx.extend(self.on_arrival(arrived, arrival, now));
                fx
            }
        }
    }
}
