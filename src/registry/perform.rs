//! How the `PermissionRegistry` actor performs the core's [`Effect`]s: ledger writes
//! (retried while the ledger fails), writes to session actors, telemetry (each
//! happening logged, counted and published in one call), timers and receipts. What came of an effect that waits goes back to the core.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::{info_span, Instrument};

use super::actor::{Deliver, PermissionRegistry, WriteOutcome};
use super::core::{DecisionWrite, Effect, Lookup, Record, Ticket, Write};
use super::store::DecideError;
use crate::ledger::{Ledger, LedgerError, Stored, Written};
use crate::telemetry::prompts::{LedgerWriteRetrying, LedgerWriteStillFailing};
use ccr_protocol::reply::DecisionReceipt;
use futures_util::FutureExt as _;

impl PermissionRegistry {
    /// Perform `effects` in order; what waits reports back to the core when done.
    pub(super) fn perform(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        for effect in effects {
            match effect {
                Effect::Emit(happening) => {
                    happening.emit(&self.metrics, (&self.bus, &self.notifier))
                }
                Effect::ForgetHistory(session) => self.bus.forget(&session),
                Effect::Record(record) => self.record(record, ctx),
                Effect::Lookup(lookup) => self.look_up(lookup, ctx),
                Effect::Write(write) => self.write(write, ctx),
                Effect::StartTimer { after, timer } => {
                    ctx.run_later(after, move |act, ctx| {
                        let _span = permission_span(&timer.session, &timer.request_id).entered();
                        let effects = act.core.on_timer(timer, SystemTime::now());
                        act.perform(effects, ctx);
                    });
                }
                Effect::Reply(ticket, result) => self.replies.send(ticket, result),
                Effect::ReadDecision {
                    session,
                    request_id,
                } => self.read_decision(session, request_id, ctx),
            }
        }
    }

    /// Write to the ledger. Without a ledger every write "succeeds" at once.
    fn record(&mut self, record: Record, ctx: &mut Context<Self>) {
        let ledger = self.ledger.clone();
        match record {
            Record::Prompt {
                prompt,
                received_at,
                arrived,
            } => {
                let written = ledger
                    .as_ref()
                    .map(|l| l.append_prompt(&arrived.session, &prompt, received_at));
                let span = permission_span(&arrived.session, &arrived.request_id);
                self.when_written(written, span, ctx, move |act, recorded, ctx| {
                    let now = SystemTime::now();
                    let lapsed = matches!(recorded, Err(LedgerError::LeaseLapsed { .. }));
                    let session = arrived.session.clone();
                    let mut effects = act.core.on_prompt_recorded(arrived, recorded, now);
                    // Refused because the lease had lapsed, and renewed since: its `Resumed`
                    // may have been handled before this record was refused, so record the
                    // prompts held back now rather than at the next lapse.
                    if lapsed && act.may_send(&session) {
                        effects.extend(act.core.on_resumed(&session));
                    }
                    act.perform(effects, ctx);
                });
            }
            Record::Decision(mut write) => {
                let written = ledger.as_ref().map(|l| append_decision(l, &write));
                let span = permission_span(&write.decision.session, &write.decision.request_id);
                self.when_written(written, span, ctx, move |act, recorded, ctx| {
                    if recorded.is_ok() {
                        write.prompt = None;
                    }
                    let now = SystemTime::now();
                    let effects = act.core.on_decision_recorded(write, recorded, now);
                    act.perform(effects, ctx);
                });
            }
            Record::DecisionUntilDurable(mut write) => {
                let span = ledger_span(&write.decision.session, &write.decision.request_id);
                let retry = async move {
                    let mut result = Ok(());
                    if let Some(l) = ledger {
                        let what = "automatic answer held back";
                        result = retry_until_durable(what, || append_decision(&l, &write)).await;
                        write.prompt = None;
                    }
                    (write, result)
                };
                ctx.spawn(retry.instrument(span).into_actor(self).map(
                    |(write, result), act, ctx| {
                        let d = &write.decision;
                        let _span = permission_span(&d.session, &d.request_id).entered();
                        let now = SystemTime::now();
                        let effects = act.core.on_decision_retried(write, result, now);
                        act.perform(effects, ctx);
                    },
                ));
            }
            Record::Delivered {
                session,
                request_id,
                at,
            } => {
                let Some(l) = ledger else { return };
                let span = ledger_span(&session, &request_id);
                retry_in_background(span, "delivery time", move || {
                    l.mark_delivered(&session, &request_id, at)
                });
            }
            Record::PromptLater {
                session,
                prompt,
                received_at,
            } => {
                let Some(l) = ledger else { return };
                let span = ledger_span(&session, &prompt.request_id);
                retry_in_background(span, "prompt", move || {
                    l.append_prompt(&session, &prompt, received_at)
                });
            }
            Record::Ending(row) => {
                let Some(l) = ledger else { return };
                let span = ledger_span(&row.session_id, &row.request_id);
                let what = row.outcome.as_str();
                retry_in_background(span, what, move || l.record_decision(row.clone()));
            }
        }
    }

    /// Call `then` with the result of `written`: in this turn when it is already known
    /// (SQLite's journal append, or no ledger), else when the write commits (PostgreSQL).
    fn when_written(
        &mut self,
        written: Option<Written>,
        span: tracing::Span,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, Result<(), LedgerError>, &mut Context<Self>) + Send + 'static,
    ) {
        let Some(mut written) = written else {
            return then(self, Ok(()), ctx);
        };
        match (&mut written).now_or_never() {
            Some(result) => then(self, result, ctx),
            None => {
                // A task of its own, which reports back by message: the futures an actor's
                // context holds are all polled at each of its wake-ups, and under load
                // thousands of commits may be in flight.
                let me = ctx.address();
                actix::spawn(async move {
                    let result = written.await;
                    me.do_send(WriteDone {
                        then: Box::new(then),
                        result,
                        span,
                    });
                });
            }
        }
    }

    /// Read a decision another instance recorded, and deliver it (`Core::on_decided_elsewhere`).
    fn read_decision(&mut self, session: Arc<str>, request_id: String, ctx: &mut Context<Self>) {
        let Some(l) = self.ledger.clone() else { return };
        let span = permission_span(&session, &request_id);
        let read = l.entry(&session, &request_id);
        ctx.spawn(read.into_actor(self).map(move |found, act, ctx| {
            let _span = span.entered();
            match found {
                Ok(Some(recorded)) => {
                    let effects = act.core.on_decided_elsewhere(recorded);
                    act.perform(effects, ctx);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read a decision recorded elsewhere; the session's next replay delivers it"),
            }
        }));
    }

    /// Read a prompt back from the ledger. Without a ledger there is nothing to read. A
    /// read that fails (the readers' queue full, storage failing) is tried again for a
    /// while ([`LOOKUP_RETRIES`]) before the core hears of the failure: a prompt whose
    /// record cannot be read is shown as new, which is only right when it is.
    fn look_up(&mut self, lookup: Lookup, ctx: &mut Context<Self>) {
        let (session, request_id) = lookup.key();
        let span = permission_span(session, request_id);
        let ledger = self.ledger.clone();
        let (s, r) = (session.to_owned(), request_id.to_owned());
        let read = async move {
            let Some(ledger) = ledger else {
                return Ok(Stored::Nothing);
            };
            let mut failures = 0;
            loop {
                match ledger.lookup(&s, &r).await {
                    Err(e) if failures < LOOKUP_RETRIES && !e.is_refusal() => {
                        failures += 1;
                        tracing::debug!(error = %e, failures, "ledger lookup failed; trying again");
                        tokio::time::sleep(crate::ledger::retry_delay(failures)).await;
                    }
                    read => return read,
                }
            }
        };
        ctx.spawn(read.into_actor(self).map(move |stored, act, ctx| {
            let _span = span.entered();
            let effects = act.core.on_looked_up(lookup, stored, SystemTime::now());
            act.perform(effects, ctx);
        }));
    }

    /// Hand an answer to the session actor owning `w.conn`; the core hears whether it was
    /// written.
    fn write(&mut self, w: Write, ctx: &mut Context<Self>) {
        let writer = self
            .writers
            .get(&w.session)
            .filter(|(c, _)| *c == w.conn)
            .map(|(_, writer)| writer.clone());
        let msg = Deliver {
            conn: w.conn,
            request_id: w.request_id.clone(),
            frame: w.frame.clone(),
        };
        let send = async move {
            match writer {
                Some(writer) => writer.send(msg).await.unwrap_or(WriteOutcome::NotWritten),
                None => WriteOutcome::NotWritten,
            }
        };
        ctx.spawn(send.into_actor(self).map(move |outcome, act, ctx| {
            let _span = permission_span(&w.session, &w.request_id).entered();
            let session = w.session.clone();
            let written = outcome == WriteOutcome::Written;
            let mut effects = act.core.on_write(w, written, SystemTime::now());
            // Refused because the lease had lapsed, and renewed since: its `Resumed` may
            // have been handled before this answer was queued, so write what waits now.
            let renewed = outcome == WriteOutcome::LeaseLapsed && act.may_send(&session);
            if renewed {
                effects.extend(act.core.on_resumed(&session));
            }
            act.perform(effects, ctx);
        }));
    }
}

impl PermissionRegistry {
    /// In a cluster, whether this instance's lease of `session` is valid now (not lapsed).
    fn may_send(&self, session: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.fences.may_send(session))
    }
}

/// Append what of a decision is not durable yet (its prompt's row first, then the
/// decision); `Ok` once both are. Both writes are idempotent, so a retry may repeat them.
fn append_decision(ledger: &Ledger, write: &DecisionWrite) -> Written {
    let row = write.row.clone();
    match &write.prompt {
        Some((prompt, received_at)) => {
            let session = &write.decision.session;
            ledger.append_prompt_and_decision(session, prompt, *received_at, row)
        }
        None => ledger.record_decision(row),
    }
}

/// What to do with a ledger write's result, once its commit answers.
type Then = Box<
    dyn FnOnce(&mut PermissionRegistry, Result<(), LedgerError>, &mut Context<PermissionRegistry>)
        + Send,
>;

/// A ledger write committed (or failed): continue with its result on the registry.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct WriteDone {
    then: Then,
    result: Result<(), LedgerError>,
    span: tracing::Span,
}

impl Handler<WriteDone> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: WriteDone, ctx: &mut Context<Self>) {
        let _span = msg.span.entered();
        (msg.then)(self, msg.result, ctx);
    }
}

/// Operators waiting for their decision's receipt, by ticket.
#[derive(Default)]
pub(super) struct Replies {
    next: u64,
    waiting: HashMap<Ticket, oneshot::Sender<Result<DecisionReceipt, DecideError>>>,
}

impl Replies {
    /// A ticket for the core, and the receipt it will bring.
    pub(super) fn open(
        &mut self,
    ) -> (
        Ticket,
        impl Future<Output = Result<DecisionReceipt, DecideError>> + 'static,
    ) {
        let ticket = Ticket(self.next);
        self.next += 1;
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(ticket, tx);
        let receipt = async move {
            // Every ticket is answered: a decision's write always completes. Only a
            // stopping registry drops one, and then the caller's mailbox closes anyway.
            rx.await.unwrap_or_else(|_| {
                Err(DecideError::LedgerUnavailable(
                    "the registry stopped before answering".into(),
                ))
            })
        };
        (ticket, receipt)
    }

    /// Hand the waiting operator its result.
    pub(super) fn send(&mut self, ticket: Ticket, result: Result<DecisionReceipt, DecideError>) {
        if let Some(tx) = self.waiting.remove(&ticket) {
            let _ = tx.send(result);
        }
    }
}

/// The span everything about one prompt logs under.
pub(super) fn permission_span(session: &str, request_id: &str) -> tracing::Span {
    info_span!("permission", session_id = %session, request_id = %request_id)
}

/// The span a ledger write for one prompt logs under.
fn ledger_span(session: &str, request_id: &str) -> tracing::Span {
    info_span!("ledger", session_id = %session, request_id = %request_id)
}

/// How often a failed ledger lookup is tried again before the core hears of the failure
/// (with [`retry_delay`](crate::ledger::retry_delay) between: about 20 s in all).
const LOOKUP_RETRIES: u32 = 14;

/// Run `append` now, and if it fails keep retrying it in the background until it succeeds.
fn retry_in_background(
    span: tracing::Span,
    what: &'static str,
    mut append: impl FnMut() -> Written + 'static,
) {
    let mut first = append();
    let failed = move |e: &LedgerError, span: &tracing::Span| {
        span.in_scope(|| LedgerWriteRetrying { what, error: e }.emit())
    };
    match (&mut first).now_or_never() {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            failed(&e, &span);
            if !e.is_refusal() {
                actix::spawn(
                    retry_until_durable(what, append)
                        .instrument(span)
                        .map(|_| ()),
                );
            }
        }
        None => {
            actix::spawn(async move {
                if let Err(e) = first.await {
                    failed(&e, &span);
                    if !e.is_refusal() {
                        let _ = retry_until_durable(what, append).instrument(span).await;
                    }
                }
            });
        }
    }
}

/// Retry a ledger write whose first attempt failed, with growing pauses (a full disk can
/// last), until it succeeds or the ledger refuses it for good (the prompt decided
/// elsewhere, the lease lost: [`LedgerError::is_refusal`]); every 16th failure is logged.
async fn retry_until_durable(
    what: &'static str,
    mut append: impl FnMut() -> Written,
) -> Result<(), LedgerError> {
    let mut attempt = 0u32;
    loop {
        tokio::time::sleep(crate::ledger::retry_delay(attempt)).await;
        match append().await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_refusal() => return Err(e),
            Err(e) if attempt % 16 == 15 => LedgerWriteStillFailing {
                what,
                error: &e,
                attempt,
            }
            .emit(),
            Err(_) => {}
        }
        attempt = attempt.saturating_add(1);
    }
}
