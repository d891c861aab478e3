//! The `PermissionRegistry` actor and its message protocol.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;
use serde::Serialize;
use serde_json::Value;
use tracing::{debug, info, info_span, warn};

use super::decide::{RecordFut, Source, Verdict};
use super::store::{ConnId, PromptOutcome, SessionTally, Store};
use crate::audit::{Ledger, Outcome as LedgerOutcome, Unfinished};
use crate::events::{Event, EventBus};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::protocol::api::DecisionBody;
use crate::protocol::{PermissionPrompt, PermissionResult};

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

    /// Put back what the ledger says was unfinished when the process stopped.
    pub fn restore(&mut self, unfinished: Vec<Unfinished>) -> usize {
        let n = unfinished.len();
        for u in unfinished {
            let session: Arc<str> = Arc::from(u.prompt.session_id.as_str());
            let prompt = u.prompt.to_prompt();
            let answer = u.decision.and_then(|d| {
                let frame = d.answer?;
                let result = restored_result(&frame)?;
                Some((result, d.decided_by, d.decided_at, Arc::from(frame)))
            });
            self.store
                .restore(&session, prompt, u.prompt.received_at, answer);
        }
        n
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
                if act.store.on_written(&session, &request_id, conn) {
                    if let Some(age) = received.and_then(|t| t.elapsed().ok()) {
                        act.metrics.decision_latency.observe(age.as_secs_f64());
                    }
                    debug!(conn, "answer written");
                    act.ledger_delivered(&session, &request_id);
                    act.bus.publish(Event::PermissionDelivered {
                        session_id: session.clone(),
                        request_id: request_id.clone(),
                    });
                } else {
                    debug!(
                        conn,
                        "answer written again (already delivered once) or no longer tracked"
                    );
                }
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
        // Prompts restored from the ledger: the policy and deadlines apply again.
        for (session, request_id) in self.store.pending_ids() {
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
        let received_at = SystemTime::now();
        match self.store.on_prompt(&session_id, conn, prompt, received_at) {
            PromptOutcome::New => {
                // Recorded before anyone sees it (replays are never written
                // again); shown even if the ledger failed (loudly). A rule's
                // answer is queued right behind the prompt, so both usually
                // commit in one ledger batch and the answer waits for one write.
                let record: Option<RecordFut> =
                    match (&self.ledger, self.store.get(&session_id, &request_id)) {
                        (Some(ledger), Some(entry)) => Some(Box::pin(ledger.record_received(
                            &session_id,
                            &entry.prompt,
                            received_at,
                        ))),
                        _ => None,
                    };
                let verdict = match refusal {
                    Some(r) => Some(Verdict::Answer {
                        body: DecisionBody::Deny {
                            message: Some(r.message),
                            interrupt: None,
                        },
                        decided_by: r.decided_by.to_owned(),
                        source: Source::Limit(r.reason),
                    }),
                    None => self.verdict(&session_id, &request_id, &labels),
                };
                let (answer, eval) = match verdict {
                    Some(Verdict::Answer {
                        body,
                        decided_by,
                        source,
                    }) => {
                        let rec = self.decide_and_record(
                            session_id.clone(),
                            request_id.clone(),
                            body,
                            decided_by,
                            source,
                            true,
                        );
                        (
                            rec.inspect_err(|e| warn!(error = %e, "policy answer refused"))
                                .ok(),
                            None,
                        )
                    }
                    Some(Verdict::Ask(eval)) => (None, Some(eval)),
                    None => (None, None),
                };
                let recorded = async move {
                    match record {
                        Some(fut) => fut.await,
                        None => Ok(()),
                    }
                };
                ctx.spawn(recorded.into_actor(self).then(move |res, act, ctx| {
                    if let Err(e) = res {
                        act.ledger_failed("record prompt", &session_id, &e);
                    }
                    act.on_recorded(session_id, request_id, eval, ctx);
                    match answer {
                        Some(rec) => act.deliver_recorded(rec).map(|_, _, _| ()).boxed_local(),
                        None => actix::fut::ready(()).boxed_local(),
                    }
                }));
            }
            PromptOutcome::Duplicate => debug!("replayed prompt ignored"),
            PromptOutcome::Resend { conn, frame } => {
                info!(
                    conn,
                    "session replayed an answered prompt on a new connection; resending"
                );
                ctx.spawn(
                    self.dispatch(session_id, request_id, conn, frame)
                        .map(|_, _, _| ()),
                );
            }
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

    fn handle(&mut self, msg: SessionConnected, ctx: &mut Context<Self>) {
        self.writers
            .insert(msg.session_id.clone(), (msg.conn, msg.writer));
        let flush = self.store.on_connected(&msg.session_id, msg.conn);
        if !flush.is_empty() {
            info!(session_id = %msg.session_id, count = flush.len(), "delivering answers queued while disconnected");
        }
        for (request_id, frame) in flush {
            ctx.spawn(
                self.dispatch(msg.session_id.clone(), request_id, msg.conn, frame)
                    .map(|_, _, _| ()),
            );
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

/// List pending prompts, oldest first.
#[derive(Message)]
#[rtype(result = "Vec<PendingPrompt>")]
pub struct ListPending {
    /// Only this session, if given.
    pub session_id: Option<String>,
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
}

impl Handler<ListPending> for PermissionRegistry {
    type Result = MessageResult<ListPending>;

    fn handle(&mut self, msg: ListPending, _: &mut Context<Self>) -> Self::Result {
        let now = SystemTime::now();
        MessageResult(
            self.store
                .pending(msg.session_id.as_deref())
                .into_iter()
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

/// The answer inside a stored `control_response` frame.
fn restored_result(frame: &str) -> Option<PermissionResult> {
    let frame: Value = serde_json::from_str(frame).ok()?;
    serde_json::from_value(frame.get("response")?.get("response")?.clone()).ok()
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
    }
}
