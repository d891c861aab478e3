//! The `PermissionRegistry` actor and its message protocol.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;
use serde::Serialize;
use serde_json::Value;
use tracing::{debug, error, info, info_span, warn};

use super::decide::{Source, Verdict};
use super::store::{Arrival, ConnId, Known, SessionTally, Store};
use crate::audit::{Ledger, Outcome as LedgerOutcome, ResolvedRows, Stored, Unfinished};
use crate::events::{Event, EventBus};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::protocol::api::{AnswerBody, DecisionBody, QuestionAnswer};
use crate::protocol::{PermissionPrompt, PromptKind};

/// Holds every pending prompt and routes answers to the right session connection.
pub struct PermissionRegistry {
    pub(super) store: Store,
    writers: HashMap<Arc<str>, (ConnId, Recipient<Deliver>)>,
    pub(super) bus: EventBus,
    pub(super) policy: Arc<Policy>,
    /// Evaluations per rule id (including dry runs).
    pub(super) hits: HashMap<String, u64>,
    pub(super) ledger: Option<Ledger>,
    pub(super) metrics: Arc<Metrics>,
}

impl PermissionRegistry {
    /// A registry publishing to `bus`, answering by `policy`, recording in `ledger`.
    pub fn new(
        bus: EventBus,
        policy: Arc<Policy>,
        ledger: Option<Ledger>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store: Store::new(),
            writers: HashMap::new(),
            bus,
            policy,
            hits: HashMap::new(),
            ledger,
            metrics,
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
        self.resolved_gauges();
        n
    }

    /// Publish the size of the finished-prompt memory.
    pub(super) fn resolved_gauges(&self) {
        let (records, bytes) = self.store.resolved_size();
        self.metrics.set_resolved(records, bytes);
    }

    /// Hand `frame` to the session actor owning `conn`; resolves to whether it was written.
    pub(super) fn dispatch(
        &self,
        session: Arc<str>,
        request_id: String,
        conn: ConnId,
        frame: Arc<str>,
    ) -> ResponseActFuture<Self, bool> {
        let writer = self
            .writers
            .get(&session)
            .filter(|(c, _)| *c == conn)
            .map(|(_, w)| w.clone());
        let msg = Deliver {
            conn,
            request_id: request_id.clone(),
            frame,
        };
        let send = async move {
            match writer {
                Some(w) => w.send(msg).await.unwrap_or(false),
                None => false,
            }
        };
        Box::pin(send.into_actor(self).map(move |written, act, ctx| {
            let _span =
                info_span!("permission", session_id = %session, request_id = %request_id).entered();
            if written {
                let received = act.store.get(&session, &request_id).map(|e| e.received_at);
                // Every write is recorded: the ledger counts how often an answer went out.
                act.ledger_delivered(&session, &request_id);
                if act.store.on_written(&session, &request_id, conn) {
                    if let Some(age) = received.and_then(|t| t.elapsed().ok()) {
                        act.metrics.decision_latency.observe(age.as_secs_f64());
                    }
                    debug!(conn, "answer written");
                    act.bus.publish(Event::PermissionDelivered {
                        session_id: session.clone(),
                        request_id: request_id.clone(),
                    });
                } else {
                    debug!(conn, "answer written again after a replay");
                }
                act.resolved_gauges();
            } else if let Some((next, frame)) =
                act.store.on_write_failed(&session, &request_id, conn)
            {
                debug!(conn, next, "write failed; retrying on the newer connection");
                ctx.spawn(
                    act.dispatch(session, request_id, next, frame)
                        .map(|_, _, _| ()),
                );
            } else {
                info!(conn, "session not connected; answer queued for reconnect");
            }
            written
        }))
    }
}

impl Actor for PermissionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Prompts restored from the ledger: shown (unconfirmed until the session re-sends
        // them); the policy and deadlines apply again, from their original arrival.
        for (session, request_id) in self.store.pending_ids() {
            if let Some(entry) = self.store.get(&session, &request_id) {
                let event = Event::permission_requested(
                    &session,
                    &request_id,
                    &entry.prompt,
                    entry.confirmed,
                );
                self.bus.publish(event);
            }
            self.apply_policy(session, request_id, Arc::from(Vec::new()), ctx);
        }
    }
}

/// A session received a `can_use_tool` prompt on connection `conn`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PromptReceived {
    /// Session id.
    pub session_id: Arc<str>,
    /// Connection it arrived on.
    pub conn: ConnId,
    /// The prompt.
    pub prompt: PermissionPrompt,
    /// The session's labels (for policy selectors).
    pub labels: Arc<[String]>,
    /// Set when the supervisor could not read the prompt: it is recorded and answered
    /// with this deny instead of going to the policy or an operator.
    pub refusal: Option<Refusal>,
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

/// `decided_by` of a prompt denied for exceeding `[ccr] max_frame_bytes`.
pub const LIMIT_FRAME_BYTES: &str = "limit:max_frame_bytes";
/// `decided_by` of a prompt denied because it nests deeper than JSON parsers accept.
pub const LIMIT_JSON_DEPTH: &str = "limit:max_json_depth";
/// `decided_by` of a prompt denied because it is not valid JSON.
pub const LIMIT_UNPARSEABLE: &str = "limit:unparseable";

impl Handler<PromptReceived> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: PromptReceived, ctx: &mut Context<Self>) {
        let PromptReceived {
            session_id,
            conn,
            prompt,
            labels,
            refusal,
        } = msg;
        let request_id = prompt.request_id.clone();
        let _span =
            info_span!("permission", session_id = %session_id, request_id = %request_id).entered();
        let outcome = self
            .store
            .on_prompt(&session_id, conn, prompt, SystemTime::now());
        let arrived = Arrived {
            session_id,
            request_id,
            conn,
            labels,
            refusal,
        };
        self.on_outcome(arrived, outcome, ctx);
    }
}

/// A prompt that arrived, with what its handling needs after the store has seen it.
pub(super) struct Arrived {
    pub session_id: Arc<str>,
    pub request_id: String,
    pub conn: ConnId,
    pub labels: Arc<[String]>,
    pub refusal: Option<Refusal>,
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

impl PermissionRegistry {
    /// Perform what the store decided for an arriving prompt.
    fn on_outcome(&mut self, a: Arrived, outcome: Arrival, ctx: &mut Context<Self>) {
        match outcome {
            Arrival::New => self.on_new(a, ctx),
            Arrival::Duplicate => debug!("replayed prompt ignored"),
            Arrival::Confirmed => {
                info!("restored prompt re-sent by the session: confirmed");
                self.bus.publish(Event::PermissionConfirmed {
                    session_id: a.session_id,
                    request_id: a.request_id,
                });
            }
            Arrival::Resend { conn, frame } => {
                info!(
                    conn,
                    "session replayed an answered prompt on a connection that never had the answer; resending it"
                );
                ctx.spawn(
                    self.dispatch(a.session_id, a.request_id, conn, frame)
                        .map(|_, _, _| ()),
                );
            }
            Arrival::ResendFromLedger { conn } => {
                let Some(ledger) = self.ledger.clone() else {
                    return;
                };
                let lookup = ledger.lookup(&a.session_id, &a.request_id);
                ctx.spawn(lookup.into_actor(self).map(move |stored, act, ctx| {
                    match stored {
                        Ok(Stored::Answered(frame)) => {
                            info!(session_id = %a.session_id, request_id = %a.request_id, conn, "resending an answer read back from the ledger");
                            ctx.spawn(
                                act.dispatch(a.session_id, a.request_id, conn, Arc::from(frame))
                                    .map(|_, _, _| ()),
                            );
                        }
                        other => {
                            error!(session_id = %a.session_id, request_id = %a.request_id, ?other, "cannot read back an answer to resend");
                        }
                    }
                }));
            }
            Arrival::Check(prompt) => {
                let Some(ledger) = self.ledger.clone() else {
                    let out = self.store.on_checked(
                        &a.session_id,
                        a.conn,
                        *prompt,
                        Known::Nothing,
                        SystemTime::now(),
                    );
                    return self.on_outcome(a, out, ctx);
                };
                debug!("unknown prompt of a session whose older answers were forgotten: asking the ledger");
                let lookup = ledger.lookup(&a.session_id, &a.request_id);
                ctx.spawn(lookup.into_actor(self).map(move |stored, act, ctx| {
                    // A failed read is treated as unknown: showing a prompt again is
                    // recoverable (its decision is refused by the ledger), hanging is not.
                    let stored = stored.unwrap_or_else(|e| {
                        warn!(session_id = %a.session_id, request_id = %a.request_id, error = %e, "ledger lookup failed; treating the prompt as new");
                        Stored::Nothing
                    });
                    let out = act.store.on_checked(
                        &a.session_id,
                        a.conn,
                        *prompt,
                        known(stored),
                        SystemTime::now(),
                    );
                    act.on_outcome(a, out, ctx);
                }));
            }
        }
    }

    /// A prompt seen for the first time: record it, let the policy (or the refusal)
    /// answer it, then show it.
    fn on_new(&mut self, a: Arrived, ctx: &mut Context<Self>) {
        let Arrived {
            session_id,
            request_id,
            labels,
            refusal,
            ..
        } = a;
        let Some(entry) = self.store.get(&session_id, &request_id) else {
            return;
        };
        let received_at = entry.received_at;
        // Recorded before anyone sees it (replays are never written again); shown even if
        // the ledger failed (loudly: a decision then records it first). A rule's answer
        // is journaled right behind the prompt.
        let recorded = match &self.ledger {
            Some(ledger) => ledger.append_prompt(&session_id, &entry.prompt, received_at),
            None => Ok(()),
        };
        let verdict = match refusal {
            Some(r) => Some(Verdict::Answer {
                body: match entry.prompt.kind() {
                    PromptKind::Elicitation => AnswerBody::Question(QuestionAnswer::Decline),
                    _ => AnswerBody::Permission(DecisionBody::Deny {
                        message: Some(r.message),
                        interrupt: None,
                    }),
                },
                decided_by: r.decided_by.to_owned(),
                source: Source::Limit(r.reason),
            }),
            None => self.verdict(&session_id, &request_id, &labels),
        };
        if let Err(e) = &recorded {
            self.ledger_failed("record prompt", &session_id, e);
        }
        let durable = recorded.is_ok();
        match verdict {
            Some(Verdict::Answer {
                body,
                decided_by,
                source,
            }) => {
                // Shown, then answered in the same turn: nobody can answer it in between.
                self.on_recorded(session_id.clone(), request_id.clone(), None, durable, ctx);
                let rec =
                    self.decide_and_record(session_id, request_id, body, decided_by, source, true);
                match rec {
                    Ok(rec) => {
                        ctx.spawn(self.deliver_recorded(rec).map(|_, _, _| ()));
                    }
                    Err(e) => warn!(error = %e, "automatic answer refused"),
                }
            }
            Some(Verdict::Ask(eval)) => {
                self.on_recorded(session_id, request_id, Some(eval), durable, ctx)
            }
            None => self.on_recorded(session_id, request_id, None, durable, ctx),
        }
    }
}

/// The session withdrew one of its prompts.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PromptCancelled {
    /// Session id.
    pub session_id: Arc<str>,
    /// Prompt id.
    pub request_id: String,
}

impl Handler<PromptCancelled> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: PromptCancelled, _: &mut Context<Self>) {
        let _span =
            info_span!("permission", session_id = %msg.session_id, request_id = %msg.request_id)
                .entered();
        match self.store.on_cancel(&msg.session_id, &msg.request_id) {
            Some(w) => {
                info!(
                    was_pending = w.was_pending,
                    "permission cancelled by the session"
                );
                self.ledger_outcome(
                    &msg.session_id,
                    &msg.request_id,
                    LedgerOutcome::Cancelled,
                    "session",
                );
                self.metrics.decision("cancelled", "session");
                self.bus.publish(Event::PermissionCancelled {
                    session_id: msg.session_id,
                    request_id: msg.request_id,
                    tool_use_id: w.tool_use_id,
                });
                self.resolved_gauges();
            }
            None => debug!("cancel for an unknown or resolved prompt ignored"),
        }
    }
}

/// A session connection opened; `writer` accepts answers for it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionConnected {
    /// Session id.
    pub session_id: Arc<str>,
    /// The new connection.
    pub conn: ConnId,
    /// Where to send answers.
    pub writer: Recipient<Deliver>,
}

impl Handler<SessionConnected> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionConnected, _: &mut Context<Self>) {
        self.writers
            .insert(msg.session_id.clone(), (msg.conn, msg.writer));
        // Queued answers go out when the session re-sends their prompts on this connection.
        self.store.on_connected(&msg.session_id, msg.conn);
    }
}

/// A session's `initialize` reply on `conn` listed what it waits on (PROTOCOL §6); the
/// listed requests were routed just before, as replays.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionInitialized {
    /// Session id.
    pub session_id: Arc<str>,
    /// The connection the reply came on.
    pub conn: ConnId,
}

impl Handler<SessionInitialized> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionInitialized, _: &mut Context<Self>) {
        let unseen = self.store.unconfirm_unseen(&msg.session_id, msg.conn);
        if !unseen.is_empty() {
            info!(session_id = %msg.session_id, count = unseen.len(),
                "pending prompts the session neither re-sent nor listed are unconfirmed");
        }
        for request_id in unseen {
            self.bus.publish(Event::PermissionUnconfirmed {
                session_id: msg.session_id.clone(),
                request_id,
            });
        }
    }
}

/// A session connection closed (`conn: None` when the actor died).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionDisconnected {
    /// Session id.
    pub session_id: Arc<str>,
    /// The connection that closed, if known.
    pub conn: Option<ConnId>,
}

impl Handler<SessionDisconnected> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionDisconnected, _: &mut Context<Self>) {
        self.store.on_disconnected(&msg.session_id, msg.conn);
        if let Some((c, _)) = self.writers.get(&msg.session_id) {
            if msg.conn.is_none() || msg.conn == Some(*c) {
                self.writers.remove(&msg.session_id);
            }
        }
    }
}

/// Sent to a session actor: write this answer if `conn` is still your live connection.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Deliver {
    /// Connection the answer is meant for.
    pub conn: ConnId,
    /// Prompt id (for logs).
    pub request_id: String,
    /// The `control_response` frame.
    pub frame: Arc<str>,
}

/// List pending prompts (or questions), confirmed ones oldest first, then unconfirmed.
#[derive(Message)]
#[rtype(result = "Vec<PendingPrompt>")]
pub struct ListPending {
    /// Only this session, if given.
    pub session_id: Option<String>,
    /// `false`: `can_use_tool` prompts; `true`: elicitations and dialogs.
    pub questions: bool,
}

/// A pending prompt as shown to operators.
#[derive(Debug, Clone, Serialize)]
pub struct PendingPrompt {
    /// Session id.
    pub session_id: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// Tool name.
    pub tool_name: String,
    /// Tool-use id.
    pub tool_use_id: Option<String>,
    /// Tool input.
    pub input: Value,
    /// The raw request object, unknown fields included.
    pub request: Value,
    /// When it arrived.
    #[serde(with = "crate::util::as_rfc3339")]
    pub received_at: SystemTime,
    /// Age in milliseconds.
    pub age_ms: u64,
    /// False for a prompt restored from the ledger that its session has not re-sent or
    /// listed since the restart (it may no longer be waited on).
    pub confirmed: bool,
    /// `can_use_tool`, `elicitation` or `request_user_dialog`.
    pub kind: crate::protocol::PromptKind,
    /// False for a dialog of a kind this supervisor does not render: shown, never answered.
    pub answerable: bool,
}

impl Handler<ListPending> for PermissionRegistry {
    type Result = MessageResult<ListPending>;

    fn handle(&mut self, msg: ListPending, _: &mut Context<Self>) -> Self::Result {
        let now = SystemTime::now();
        let store = &self.store;
        MessageResult(
            store
                .pending(msg.session_id.as_deref())
                .into_iter()
                .filter(|(_, e)| (e.prompt.kind() != PromptKind::CanUseTool) == msg.questions)
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
                    answerable: store.answerable(&e.prompt),
                })
                .collect(),
        )
    }
}

/// Per-session tallies (pending, queued, prompts, decisions).
#[derive(Message)]
#[rtype(result = "HashMap<Arc<str>, SessionTally>")]
pub struct CountPending;

impl Handler<CountPending> for PermissionRegistry {
    type Result = MessageResult<CountPending>;

    fn handle(&mut self, _: CountPending, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.store.tallies())
    }
}

/// A session was removed: drop its prompts (pending ones are reported cancelled) and history.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForgetSession(pub Arc<str>);

impl Handler<ForgetSession> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ForgetSession, _: &mut Context<Self>) {
        let session = msg.0;
        self.writers.remove(&session);
        // Forget the history first, so the cancellations below stay resumable.
        self.bus.forget(&session);
        for prompt in self.store.forget_session(&session) {
            self.metrics.decision("cancelled", "session_removed");
            self.ledger_outcome(
                &session,
                &prompt.request_id,
                LedgerOutcome::Cancelled,
                "session_removed",
            );
            self.bus.publish(Event::PermissionCancelled {
                session_id: session.clone(),
                request_id: prompt.request_id.clone(),
                tool_use_id: prompt.tool_use_id.clone(),
            });
        }
        self.resolved_gauges();
    }
}
