//! The registry in a cluster: sessions it owns (adopted from the shared ledger when this
//! instance takes their lease, released when it hands them over or loses them), answers to
//! prompts of sessions owned elsewhere (recorded here, the first decision wins in the
//! database; the owner hears of it by `NOTIFY` and delivers it), and the cluster-wide list
//! of pending prompts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;

use super::actor::{Decide, ListPending, PermissionRegistry};
use super::perform::permission_span;
use super::store::{build_answer, Built, DecideError};
use crate::cluster::{DecidedElsewhere, Fences, Resumed, SeenElsewhere};
use crate::events::Event;
use crate::ledger::{DecisionRecord, Ledger, LedgerError, ResolvedRows, Unfinished};
use ccr_protocol::api::{Decider, Delivery};
use ccr_protocol::reply::{DecisionReceipt, Outcome, PendingPrompt};
use ccr_protocol::PromptKind;

/// What a clustered registry knows beyond a single instance's.
pub(super) struct Clustered {
    /// The leases held here.
    pub fences: Arc<Fences>,
    /// Sessions adopted here (their prompts are in the core).
    pub owned: HashSet<Arc<str>>,
}

impl PermissionRegistry {
    /// Take part in a cluster: answers to sessions not adopted here are recorded in the
    /// shared ledger for their owner, and listings cover every instance's prompts.
    pub fn clustered(mut self, fences: Arc<Fences>) -> Self {
        self.cluster = Some(Clustered {
            fences,
            owned: HashSet::new(),
        });
        self
    }

    /// The session is owned by another instance (or none): this registry does not hold
    /// its prompts.
    pub(super) fn owned_elsewhere(&self, session: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| !c.owned.contains(session))
    }

    /// An operator's answer to a prompt of a session owned elsewhere: checked against the
    /// prompt as the ledger holds it and recorded there (the first decision in the
    /// database wins: 409 otherwise); the owner delivers it. `tracked`: the session is one
    /// this instance knows; one it does not know and the ledger has no such prompt of is
    /// an unknown session.
    pub(super) fn decide_for_owner(
        &mut self,
        msg: Decide,
        tracked: bool,
    ) -> ResponseActFuture<Self, Result<DecisionReceipt, DecideError>> {
        let ledger = self.ledger.clone();
        let dialog_kinds = self.core.dialog_kinds().to_vec();
        let span = permission_span(&msg.session_id, &msg.request_id);
        let record = async move {
            let _ = span;
            let unavailable = |e: LedgerError| DecideError::LedgerUnavailable(e.to_string());
            let ledger = ledger.ok_or_else(|| {
                DecideError::LedgerUnavailable("a cluster needs its ledger".into())
            })?;
            let Decide {
                session_id,
                request_id,
                body,
                decided_by,
            } = msg;
            let found = ledger
                .entry(&session_id, &request_id)
                .await
                .map_err(unavailable)?;
            let Some(Unfinished { prompt, decision }) = found else {
                if !tracked {
                    return Err(DecideError::UnknownSession(session_id.to_string()));
                }
                return Err(DecideError::UnknownPrompt {
                    session_id: session_id.to_string(),
                    request_id,
                });
            };
            if let Some(d) = decision {
                return Err(match d.outcome {
                    Outcome::Cancelled => DecideError::Cancelled(request_id),
                    _ => DecideError::AlreadyAnswered(request_id),
                });
            }
            let Built {
                frame,
                grants,
                edited_input,
                ..
            } = build_answer(
                &prompt.to_prompt(),
                &request_id,
                body,
                Decider::Operator,
                &dialog_kinds,
            )?;
            let status = if grants {
                Outcome::Allowed
            } else {
                Outcome::Denied
            };
            let row = DecisionRecord {
                session_id: session_id.to_string(),
                request_id: request_id.clone(),
                outcome: status,
                decided_by: decided_by.clone(),
                decided_at: SystemTime::now(),
                updated_input: edited_input,
                answer: Some(frame.to_string()),
                reason: None,
            };
            match ledger.record_decision(row).await {
                Ok(()) => Ok(DecisionReceipt {
                    session_id,
                    request_id,
                    status,
                    // Recorded; its owner writes it to the session.
                    delivery: Delivery::Queued,
                    decided_by,
                }),
                Err(LedgerError::AlreadyDecided { .. }) => {
                    Err(DecideError::AlreadyAnswered(request_id))
                }
                Err(e) => Err(unavailable(e)),
            }
        };
        Box::pin(record.into_actor(self))
    }

    /// Pending prompts of the whole cluster: this instance's own (as its core holds them),
    /// then those of sessions owned elsewhere, from the shared ledger.
    pub(super) fn list_cluster_pending(
        &mut self,
        msg: ListPending,
    ) -> ResponseActFuture<Self, Vec<PendingPrompt>> {
        let now = SystemTime::now();
        let session = msg.session_id.as_deref();
        let me = self.cluster.as_ref().map(|c| c.fences.me().to_owned());
        let mut local = self.core.pending(session, msg.questions, now);
        for p in &mut local {
            p.owner = me.clone();
        }
        let Some(pg) = self.ledger.as_ref().and_then(Ledger::postgres).cloned() else {
            return Box::pin(actix::fut::ready(local));
        };
        let rows = pg.pending(session);
        let questions = msg.questions;
        Box::pin(rows.into_actor(self).map(move |rows, act, _| {
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the cluster's pending prompts; listing this instance's");
                    return local;
                }
            };
            let mine: HashSet<(Arc<str>, String)> = local
                .iter()
                .map(|p| (p.session_id.clone(), p.request_id.clone()))
                .collect();
            let owned = act.cluster.as_ref().map(|c| &c.owned);
            for (row, owner) in rows {
                let session_id: Arc<str> = Arc::from(row.session_id.as_str());
                let here = owned.is_some_and(|o| o.contains(&session_id));
                if here || mine.contains(&(session_id.clone(), row.request_id.clone())) {
                    continue;
                }
                let record = Unfinished::of_row(row, None).prompt;
                let prompt = record.to_prompt();
                let kind = prompt.kind();
                if (kind != PromptKind::CanUseTool) != questions {
                    continue;
                }
                local.push(PendingPrompt {
                    session_id,
                    request_id: record.request_id,
                    tool_name: record.tool_name,
                    tool_use_id: record.tool_use_id,
                    input: record.input,
                    age_ms: now
                        .duration_since(record.received_at)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0),
                    request: record.request,
                    received_at: record.received_at,
                    // Recorded and pending in the cluster; whether its session still waits
                    // on it is its owner's to say.
                    confirmed: true,
                    kind,
                    answerable: act.core.answerable(&prompt),
                    owner,
                });
            }
            local
        }))
    }
}

/// This instance took `session`'s lease: its unfinished prompts, read from the ledger.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AdoptSession {
    /// The session.
    pub session: Arc<str>,
    /// What the ledger holds unfinished for it.
    pub unfinished: Vec<Unfinished>,
    /// Its finished prompts (the newest), to match replays.
    pub resolved: ResolvedRows,
}

impl Handler<AdoptSession> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: AdoptSession, ctx: &mut Context<Self>) {
        if let Some(c) = self.cluster.as_mut() {
            c.owned.insert(msg.session.clone());
        }
        let effects = self.core.adopt_session(
            &msg.session,
            msg.unfinished,
            msg.resolved,
            SystemTime::now(),
        );
        self.perform(effects, ctx);
    }
}

/// `session`'s lease is no longer held here: forget its prompts (they stay in the ledger).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseSession(pub Arc<str>);

impl Handler<ReleaseSession> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ReleaseSession, ctx: &mut Context<Self>) {
        if let Some(c) = self.cluster.as_mut() {
            c.owned.remove(&msg.0);
        }
        self.writers.remove(&msg.0);
        let effects = self.core.release_session(&msg.0);
        self.perform(effects, ctx);
    }
}

impl Handler<Resumed> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Resumed, ctx: &mut Context<Self>) {
        if self.owned_elsewhere(&msg.session) {
            return;
        }
        let _span = tracing::info_span!("resumed", session_id = %msg.session).entered();
        let effects = self.core.on_resumed(&msg.session);
        if !effects.is_empty() {
            tracing::info!(
                actions = effects.len(),
                "lease renewed after it lapsed: writing the answers and recording the prompts that waited"
            );
        }
        self.perform(effects, ctx);
    }
}

impl Handler<DecidedElsewhere> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: DecidedElsewhere, ctx: &mut Context<Self>) {
        if self.owned_elsewhere(&msg.session) {
            return;
        }
        // Only a prompt still pending here is read back: every decision notifies, this
        // instance's own included, and those are decided here already (a ledger read
        // per prompt for nothing).
        let ids = match msg.request_id {
            Some(id) if self.core.is_pending(&msg.session, &id) => vec![id],
            Some(_) => return,
            None => self.core.pending_ids(&msg.session),
        };
        let effects = ids
            .into_iter()
            .map(|request_id| super::core::Effect::ReadDecision {
                session: msg.session.clone(),
                request_id,
            })
            .collect();
        self.perform(effects, ctx);
    }
}

impl Handler<SeenElsewhere> for PermissionRegistry {
    type Result = ();

    /// Publish, on this instance's event stream, what another instance recorded for a
    /// session it owns: `permission_requested` for a new prompt, `permission_answered`
    /// (delivery `queued`: its owner writes it) for a decision. Read from the ledger.
    fn handle(&mut self, msg: SeenElsewhere, ctx: &mut Context<Self>) {
        if !self.owned_elsewhere(&msg.session) {
            return; // owned here: this registry published it itself
        }
        let Some(ledger) = self.ledger.clone() else {
            return;
        };
        let span = permission_span(&msg.session, &msg.request_id);
        let read = ledger.entry(&msg.session, &msg.request_id);
        ctx.spawn(read.into_actor(self).map(move |found, act, _| {
            let _span = span.entered();
            let found = match found {
                Ok(Some(found)) => found,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read another instance's prompt for the event stream");
                    return;
                }
            };
            let session = msg.session;
            let event = match (msg.decided, found.decision) {
                (false, _) => Event::permission_requested(
                    &session,
                    &msg.request_id,
                    &Arc::new(found.prompt.to_prompt()),
                    true,
                ),
                (true, Some(d)) => Event::PermissionAnswered {
                    behavior: super::core::behavior_of(
                        d.answer.as_deref().unwrap_or(""),
                        d.outcome,
                    ),
                    session_id: session,
                    request_id: msg.request_id,
                    decided_by: d.decided_by,
                    delivery: Delivery::Queued,
                    reason: d.reason,
                },
                (true, None) => return,
            };
            act.bus.publish(event);
        }));
    }
}
