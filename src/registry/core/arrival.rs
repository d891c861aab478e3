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
        };
        let arrival = self.store.on_prompt(&arrived.session, conn, prompt, now);
        self.on_arrival(arrived, arrival)
    }

    /// Act on what the store made of an arriving prompt.
    fn on_arrival(&mut self, a: Arrived, arrival: Arrival) -> Vec<Effect> {
        match arrival {
            Arrival::New => {
                let Some(e) = self.store.get(&a.session, &a.request_id) else {
                    return Vec::new();
                };
                // Recorded before anyone sees it (replays are never written again).
                vec![Effect::Record(Record::Prompt {
                    prompt: e.prompt.clone(),
                    received_at: e.received_at,
                    arrived: a,
                })]
            }
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

    /// A new prompt's record is durable (or failed, loudly: a decision then records it
    /// first): let the refusal or the policy answer it, and show it. In a cluster, a record
    /// the session's lease refused is not shown at all: held until the lease is renewed
    /// (lapsed), or left to the session's next owner (lost).
    pub fn on_prompt_recorded(
        &mut self,
        a: Arrived,
        recorded: Result<(), LedgerError>,
        now: SystemTime,
    ) -> Vec<Effect> {
        match &recorded {
            Err(LedgerError::LeaseLapsed { .. }) => return self.hold(a),
            Err(LedgerError::NotOwner { .. }) => {
                // Sent on a connection of a session handed over or lost (still closing):
                // its next owner records it when the session replays it there.
                self.store.discard(&a.session, &a.request_id);
                return vec![Effect::Emit(Happening::Held(PromptHeld { lapsed: false }))];
            }
            _ => {}
        }
        let Arrived {
            session,
            request_id,
            labels,
            refusal,
            ..
        } = a;
        let mut fx = Vec::new();
        let ruling = match refusal {
            Some(r) => self.store.get(&session, &request_id).map(|e| {
                Ruling::Answer(r.answer(session.clone(), request_id.clone(), e.prompt.kind()))
            }),
            None => self.rule(&session, &request_id, &labels, &mut fx),
        };
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
        match ruling {
            Some(Ruling::Answer(answer)) => {
                // Shown, then answered in the same turn: nobody can answer it in between.
                let shown = self.show(&session, &request_id, None, None, durable, now);
                fx.extend(shown);
                match self.answer(answer, None, true, now) {
                    Ok(more) => fx.extend(more),
                    Err(e) => {
                        let error = e.to_string();
                        let automatic = AutomaticAnswerRefused { error };
                        fx.push(refused(&e));
                        fx.push(Effect::Emit(Happening::AutomaticAnswerRefused(automatic)));
                    }
                }
            }
            // Left to a human, under the policy's timers (a question has none).
            Some(Ruling::Ask(eval)) => {
                let shown = self.show(
                    &session,
                    &request_id,
                    Some(&eval),
                    Some(labels),
                    durable,
                    now,
                );
                fx.extend(shown)
            }
            None => fx.extend(self.show(&session, &request_id, None, Some(labels), durable, now)),
        }
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

    /// Show a recorded prompt to operators, then start its timers unless it was answered.
    /// `to_human` (its session's labels) when no rule answers it: it is notified.
    fn show(
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
                fx.extend(self.on_arrival(arrived, arrival));
                fx
            }
        }
    }
}
