//! The registry's logic (pure): every input — a prompt, an answer, a finished write, a
//! ledger read, a timer — goes in, and what the actor must do comes out as [`Effect`]s.
//!
//! No actix here: the `PermissionRegistry` actor performs the effects in order and
//! reports what came of the waiting ones back through the `on_*` methods. A prompt goes
//! `on_prompt → Record → on_prompt_recorded → Emit(Shown)` (plus its timers when a human
//! is asked: [`arrival`], [`rules`]), or, when a rule answers it on arrival, `on_prompt →
//! Record (the prompt and its answer) → on_decision_recorded → Emit(Shown) + Write`; an
//! answer goes `decide → Record → on_decision_recorded → Write → on_write →
//! Emit(Answered) + Reply` ([`answer`]).
//!
//! What happens to a prompt is returned as data too ([`Effect::Emit`] of a
//! [`Happening`]): the actor logs, counts and publishes each in one call. So is what the
//! core only notices along the way (a replay ignored, a write retried, a decision
//! refused: `crate::telemetry::diagnostics`) — the core itself never logs.

mod answer;
mod arrival;
mod cluster;
pub(crate) use cluster::behavior_of;
mod effect;
mod rules;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

pub use answer::{Answer, Refusal, LIMIT_FRAME_BYTES, LIMIT_JSON_DEPTH, LIMIT_UNPARSEABLE};
use effect::Arrived;
pub use effect::{DecisionWrite, Effect, Lookup, Record, Ticket, Write};

use super::store::{
    cancelled, ConnId, Known, Removed, SessionTally, Store, REMOVED_REASON, SESSION_REMOVED,
};
use crate::ledger::{LedgerError, ResolvedRows, Stored, Unfinished};
use crate::policy::Policy;
use crate::telemetry::diagnostics::CancelIgnored;
use crate::telemetry::permissions::{
    Canceller, Happening, PromptAnswered, PromptCancelled, PromptRecordFailed, PromptRestored,
    PromptsUnconfirmed,
};
use crate::telemetry::prompts::ResolvedMemorySized;
use ccr_protocol::api::Delivery;
use ccr_protocol::policy::PolicyReport;
use ccr_protocol::reply::{Outcome, PendingPrompt};
use ccr_protocol::PromptKind;

/// The pending prompts of every session, the policy, and the rules that answer them.
pub struct Core {
    store: Store,
    policy: Arc<Policy>,
    /// Evaluations per rule id (dry runs included).
    hits: HashMap<String, u64>,
    /// Sessions the supervisor runs, with their labels (for the policy's selectors): an
    /// operator's answer for any other is refused.
    sessions: HashMap<Arc<str>, Arc<[String]>>,
    /// Sessions whose restored prompts wait for the policy: restored before the session
    /// was tracked, so before its labels were known (a label-scoped `ask` rule must still
    /// hold them for a person).
    unruled: HashSet<Arc<str>>,
    /// In a cluster, new prompts whose record the session's lapsed lease refused: not
    /// shown (nobody sees a prompt before it is recorded), recorded again when the lease
    /// is renewed (`on_resumed`). One per prompt still in the store; dropped with it.
    held: HashMap<(Arc<str>, String), Arrived>,
}

impl Core {
    /// An empty core answering by `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        Self {
            store: Store::new(),
            policy,
            hits: HashMap::new(),
            sessions: HashMap::new(),
            unruled: HashSet::new(),
            held: HashMap::new(),
        }
    }

    /// Remember at most `records` finished prompts in `bytes` (all sessions together), and
    /// let operators answer dialogs of `dialog_kinds` only.
    pub fn remembering(mut self, records: usize, bytes: usize, dialog_kinds: Vec<String>) -> Self {
        self.store = Store::with_bounds(records, bytes).with_dialog_kinds(dialog_kinds);
        self
    }

    /// Put back what the ledger says was unfinished when the process stopped.
    pub fn restore(&mut self, unfinished: Vec<Unfinished>) -> usize {
        let n = unfinished.len();
        for u in unfinished {
            let session: Arc<str> = Arc::from(u.prompt.session_id.as_str());
            let prompt = u.prompt.to_prompt();
            let answer = u.decision.and_then(|d| {
                let frame = d.answer?;
                Some((d.decided_by, d.decided_at, Arc::from(frame), false))
            });
            self.store
                .restore(&session, prompt, u.prompt.received_at, answer);
        }
        n
    }

    /// Remember the finished prompts the ledger loaded, so that a replay of one after the
    /// restart is matched to its record (its answer re-sent), never shown as new.
    pub fn restore_resolved(&mut self, loaded: ResolvedRows) -> usize {
        let n = loaded.rows.len();
        // Oldest first, so the memory's own eviction order matches the ledger's.
        for (session, request_id, stored) in loaded.rows.into_iter().rev() {
            let session: Arc<str> = Arc::from(session.as_str());
            self.store
                .restore_resolved(&session, &request_id, known(stored));
        }
        for session in loaded.incomplete {
            self.store.mark_incomplete(&Arc::from(session.as_str()));
        }
        n
    }

    /// The size of the finished-prompt memory, as a telemetry event.
    pub fn resolved_gauge(&self) -> Happening {
        let (records, bytes) = self.store.resolved_size();
        Happening::ResolvedSized(ResolvedMemorySized { records, bytes })
    }

    /// The registry started: show the prompts restored from the ledger (unconfirmed until
    /// their session re-sends them) and apply the policy and timers again, from their
    /// original arrival.
    pub fn on_started(&mut self, now: SystemTime) -> Vec<Effect> {
        self.show_restored(None, now)
    }

    /// Show the restored pending prompts (of `session` only, if given) and apply the
    /// policy and timers to them again, from their original arrival.
    fn show_restored(&mut self, session: Option<&str>, now: SystemTime) -> Vec<Effect> {
        let mut fx = Vec::new();
        for (session, request_id) in self.store.pending_ids(session) {
            if let Some(e) = self.store.get(&session, &request_id) {
                fx.push(Effect::Emit(Happening::Restored(PromptRestored {
                    session: session.clone(),
                    request_id: request_id.clone(),
                    prompt: e.prompt.clone(),
                    confirmed: e.confirmed,
                })));
            }
            match self.sessions.get(&session).cloned() {
                Some(labels) => fx.extend(self.apply_policy(session, request_id, labels, now)),
                // Until the session is tracked (`track_session`), with its labels.
                None => {
                    self.unruled.insert(session);
                }
            }
        }
        fx
    }

    /// Whether prompt `request_id` of `session` waits for an answer here.
    pub fn is_pending(&self, session: &str, request_id: &str) -> bool {
        self.store
            .get(session, request_id)
            .is_some_and(|e| e.status == crate::registry::store::Status::Pending)
    }

    /// The ids of `session`'s pending prompts.
    pub fn pending_ids(&self, session: &str) -> Vec<String> {
        self.store
            .pending_ids(Some(session))
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    /// Whether the supervisor runs `session` (in a cluster: whether it is configured).
    pub fn tracks(&self, session: &str) -> bool {
        self.sessions.contains_key(session)
    }

    /// The sessions the supervisor runs now include `session`, labelled `labels`: the
    /// policy and timers apply now to its restored prompts that waited for them.
    pub fn track_session(
        &mut self,
        session: Arc<str>,
        labels: Arc<[String]>,
        now: SystemTime,
    ) -> Vec<Effect> {
        self.sessions.insert(session.clone(), labels.clone());
        if !self.unruled.remove(&session) {
            return Vec::new();
        }
        let mut fx = Vec::new();
        for (session, request_id) in self.store.pending_ids(Some(&session)) {
            fx.extend(self.apply_policy(session, request_id, labels.clone(), now));
        }
        fx
    }

    /// The session withdrew one of its prompts.
    pub fn on_cancelled(
        &mut self,
        session: Arc<str>,
        request_id: String,
        now: SystemTime,
    ) -> Vec<Effect> {
        self.held.remove(&(session.clone(), request_id.clone()));
        let Some(w) = self.store.on_cancel(&session, &request_id) else {
            return vec![Effect::Emit(Happening::CancelIgnored(CancelIgnored))];
        };
        vec![
            Effect::Record(Record::Ending(cancelled(
                &session,
                &request_id,
                "session",
                now,
            ))),
            Effect::Emit(Happening::Cancelled(PromptCancelled {
                session,
                request_id,
                tool_use_id: w.tool_use_id,
                by: Canceller::Session {
                    was_pending: w.was_pending,
                },
            })),
            Effect::Emit(self.resolved_gauge()),
        ]
    }

    /// A connection of `session` opened. Queued answers go out when the session re-sends
    /// their prompts on it.
    pub fn on_connected(&mut self, session: &Arc<str>, conn: ConnId) {
        self.store.on_connected(session, conn);
    }

    /// A connection closed (`None`: whichever is current, e.g. the actor died).
    pub fn on_disconnected(&mut self, session: &Arc<str>, conn: Option<ConnId>) {
        self.store.on_disconnected(session, conn);
    }

    /// The session's `initialize` reply on `conn` listed what it waits on (the listed
    /// prompts were routed just before, as replays): the others become unconfirmed.
    pub fn on_initialized(&mut self, session: &Arc<str>, conn: ConnId) -> Vec<Effect> {
        let unseen = self.store.unconfirm_unseen(session, conn);
        if unseen.is_empty() {
            return Vec::new();
        }
        vec![Effect::Emit(Happening::Unconfirmed(PromptsUnconfirmed {
            session: session.clone(),
            request_ids: unseen,
        }))]
    }

    /// The supervisor removed `session`: drop its history, and answer its pending prompts
    /// for the session's sake, which may still wait on them (denied, recorded as decided
    /// by `session_removed`, written should it replay them once added back); answers it
    /// never got stay as they were, for that replay too.
    pub fn forget_session(&mut self, session: &Arc<str>, now: SystemTime) -> Vec<Effect> {
        self.sessions.remove(session);
        self.unruled.remove(session);
        self.held.retain(|(s, _), _| s != session);
        // Forget the history first, so the events below stay resumable.
        let mut fx = vec![Effect::ForgetHistory(session.clone())];
        for Removed {
            prompt,
            answer,
            row,
        } in self.store.remove_session(session, now)
        {
            fx.push(Effect::Record(Record::Ending(row)));
            let request_id = prompt.request_id.clone();
            fx.push(Effect::Emit(match answer {
                Some(built) => Happening::Answered(PromptAnswered {
                    session: session.clone(),
                    request_id,
                    behavior: built.behavior,
                    decided_by: SESSION_REMOVED.to_owned(),
                    delivery: Delivery::Queued,
                    reason: Some(REMOVED_REASON.to_owned()),
                    outcome: Outcome::Denied,
                    source: SESSION_REMOVED,
                }),
                None => Happening::Cancelled(PromptCancelled {
                    session: session.clone(),
                    request_id,
                    tool_use_id: prompt.tool_use_id.clone(),
                    by: Canceller::SessionRemoved,
                }),
            }));
        }
        fx.push(Effect::Emit(self.resolved_gauge()));
        fx
    }

    /// Pending prompts (`questions: false`) or questions, confirmed ones oldest first,
    /// then unconfirmed ones.
    pub fn pending(
        &self,
        session: Option<&str>,
        questions: bool,
        now: SystemTime,
    ) -> Vec<PendingPrompt> {
        self.store
            .pending(session)
            .into_iter()
            .filter(|(_, e)| (e.prompt.kind() != PromptKind::CanUseTool) == questions)
            .map(|(session_id, e)| PendingPrompt {
                session_id,
                request_id: e.prompt.request_id.clone(),
                tool_name: e.prompt.tool_name.clone(),
                tool_use_id: e.prompt.tool_use_id.clone(),
                input: e.prompt.input.clone(),
                request: e.prompt.request.clone(),
                received_at: e.received_at,
                age_ms: now
                    .duration_since(e.received_at)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                confirmed: e.confirmed,
                kind: e.prompt.kind(),
                answerable: self.store.answerable(&e.prompt),
                owner: None,
            })
            .collect()
    }

    /// Whether operators may answer `prompt` (a dialog of a kind this supervisor renders).
    pub fn answerable(&self, prompt: &ccr_protocol::PermissionPrompt) -> bool {
        self.store.answerable(prompt)
    }

    /// The dialog kinds operators may answer.
    pub fn dialog_kinds(&self) -> &[String] {
        self.store.dialog_kinds()
    }

    /// Per-session tallies (pending, queued, prompts, decisions).
    pub fn tallies(&self) -> HashMap<Arc<str>, SessionTally> {
        self.store.tallies()
    }

    /// Answer by `policy` from now on, keeping the hit counts of `keep_hits` only (the
    /// rule ids a reload left unchanged).
    pub fn replace_policy(&mut self, policy: Arc<Policy>, keep_hits: &[String]) {
        self.policy = policy;
        self.hits.retain(|id, _| keep_hits.contains(id));
    }

    /// The policy with its hit counts.
    pub fn policy_report(&self) -> PolicyReport {
        PolicyReport {
            policy: self.policy.view(),
            hits: self.hits.clone(),
        }
    }
}

/// A failed ledger write: loud, counted (by the ledger), and visible to operators —
/// never silent.
fn ledger_failed(what: &'static str, session: &Arc<str>, e: &LedgerError) -> Effect {
    Effect::Emit(Happening::RecordFailed(PromptRecordFailed {
        session: session.clone(),
        what,
        error: e.to_string(),
    }))
}

/// The store's view of a ledger lookup.
fn known(stored: Stored) -> Known {
    match stored {
        Stored::Nothing => Known::Nothing,
        Stored::Pending => Known::Pending,
        Stored::Answered(frame) => Known::Answered(Arc::from(frame)),
        Stored::Finished => Known::Finished,
    }
}

#[cfg(test)]
mod tests;
