//! The `PermissionRegistry` actor and its message protocol. Each handler asks the
//! [`Core`] what to do and performs the effects it returns ([`super::perform`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;

use super::core::{Answer, Core, Refusal};
use super::perform::{permission_span, Replies};
use super::store::{ConnId, DecideError, SessionTally};
use crate::events::EventBus;
use crate::ledger::{Ledger, ResolvedRows, Unfinished};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::policy::Policy;
use ccr_protocol::api::AnswerBody;
use ccr_protocol::policy::PolicyReport;
use ccr_protocol::reply::{DecisionReceipt, PendingPrompt};
use ccr_protocol::PermissionPrompt;

/// Holds every pending prompt and routes answers to the right session connection.
pub struct PermissionRegistry {
    pub(super) core: Core,
    /// The live connection of each session and where to send its answers.
    pub(super) writers: HashMap<Arc<str>, (ConnId, Recipient<Deliver>)>,
    pub(super) bus: EventBus,
    pub(super) ledger: Option<Ledger>,
    pub(super) metrics: Arc<Metrics>,
    /// Where notifications of prompts go.
    pub(super) notifier: Notifier,
    /// Operators waiting for a decision's receipt.
    pub(super) replies: Replies,
    /// In a cluster: the leases held here and the sessions adopted.
    pub(super) cluster: Option<super::cluster::Clustered>,
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
            core: Core::new(policy),
            writers: HashMap::new(),
            bus,
            ledger,
            metrics,
            notifier: Notifier::none(),
            replies: Replies::default(),
            cluster: None,
        }
    }

    /// Offer notifications of prompts to `notifier`'s sinks.
    pub fn notifying(mut self, notifier: Notifier) -> Self {
        self.notifier = notifier;
        self
    }

    /// Remember at most `records` finished prompts in `bytes` (all sessions together), and
    /// let operators answer dialogs of `dialog_kinds` only.
    pub fn remembering(mut self, records: usize, bytes: usize, dialog_kinds: Vec<String>) -> Self {
        self.core = self.core.remembering(records, bytes, dialog_kinds);
        self
    }

    /// Put back what the ledger says was unfinished when the process stopped.
    pub fn restore(&mut self, unfinished: Vec<Unfinished>) -> usize {
        self.core.restore(unfinished)
    }

    /// Remember the finished prompts the ledger loaded, so that a replay of one after the
    /// restart is matched to its record (its answer re-sent), never shown as new.
    pub fn restore_resolved(&mut self, loaded: ResolvedRows) -> usize {
        let n = self.core.restore_resolved(loaded);
        self.core.resolved_gauge().emit(&self.metrics, &self.bus);
        n
    }
}

impl Actor for PermissionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let effects = self.core.on_started(SystemTime::now());
        self.perform(effects, ctx);
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

impl Handler<PromptReceived> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: PromptReceived, ctx: &mut Context<Self>) {
        let _span = permission_span(&msg.session_id, &msg.prompt.request_id).entered();
        let (session, conn, labels) = (msg.session_id, msg.conn, msg.labels);
        let now = SystemTime::now();
        let effects = self
            .core
            .on_prompt(session, conn, msg.prompt, labels, msg.refusal, now);
        self.perform(effects, ctx);
    }
}

/// An operator's answer to a prompt.
#[derive(Message)]
#[rtype(result = "Result<DecisionReceipt, DecideError>")]
pub struct Decide {
    /// Session id.
    pub session_id: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// The answer as given.
    pub body: AnswerBody,
    /// Who decided (the operator's token name).
    pub decided_by: String,
}

impl Handler<Decide> for PermissionRegistry {
    type Result = ResponseActFuture<Self, Result<DecisionReceipt, DecideError>>;

    /// Accepted, recorded in the ledger, then written (or queued): the receipt says which.
    fn handle(&mut self, msg: Decide, ctx: &mut Context<Self>) -> Self::Result {
        let _span = permission_span(&msg.session_id, &msg.request_id).entered();
        // Also a session this instance does not run at all (configured only on others):
        // every instance lists every pending prompt of the cluster, so each answers it.
        if self.owned_elsewhere(&msg.session_id) {
            let tracked = self.core.tracks(&msg.session_id);
            return self.decide_for_owner(msg, tracked);
        }
        let (ticket, receipt) = self.replies.open();
        let answer = Answer::operator(msg.session_id, msg.request_id, msg.body, msg.decided_by);
        let effects = self.core.decide(answer, ticket, SystemTime::now());
        self.perform(effects, ctx);
        Box::pin(receipt.into_actor(self))
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

    fn handle(&mut self, msg: PromptCancelled, ctx: &mut Context<Self>) {
        let _span = permission_span(&msg.session_id, &msg.request_id).entered();
        let now = SystemTime::now();
        let effects = self.core.on_cancelled(msg.session_id, msg.request_id, now);
        self.perform(effects, ctx);
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
        self.core.on_connected(&msg.session_id, msg.conn);
        self.writers.insert(msg.session_id, (msg.conn, msg.writer));
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

    fn handle(&mut self, msg: SessionInitialized, ctx: &mut Context<Self>) {
        let effects = self.core.on_initialized(&msg.session_id, msg.conn);
        self.perform(effects, ctx);
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
        self.core.on_disconnected(&msg.session_id, msg.conn);
        if let Some((c, _)) = self.writers.get(&msg.session_id) {
            if msg.conn.is_none() || msg.conn == Some(*c) {
                self.writers.remove(&msg.session_id);
            }
        }
    }
}

/// What became of a [`Deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written to the socket.
    Written,
    /// Not written: that connection is gone (or the write failed).
    NotWritten,
    /// Not written: in a cluster, the session's lease has lapsed here (nothing may be sent
    /// until it is renewed).
    LeaseLapsed,
}

/// Sent to a session actor: write this answer if `conn` is still your live connection.
#[derive(Message)]
#[rtype(result = "WriteOutcome")]
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

impl Handler<ListPending> for PermissionRegistry {
    type Result = ResponseActFuture<Self, Vec<PendingPrompt>>;

    fn handle(&mut self, msg: ListPending, _: &mut Context<Self>) -> Self::Result {
        if self.cluster.is_some() {
            return self.list_cluster_pending(msg);
        }
        let session = msg.session_id.as_deref();
        let pending = self.core.pending(session, msg.questions, SystemTime::now());
        Box::pin(actix::fut::ready(pending))
    }
}

/// Per-session tallies (pending, queued, prompts, decisions).
#[derive(Message)]
#[rtype(result = "HashMap<Arc<str>, SessionTally>")]
pub struct CountPending;

impl Handler<CountPending> for PermissionRegistry {
    type Result = MessageResult<CountPending>;

    fn handle(&mut self, _: CountPending, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.tallies())
    }
}

/// A session joined the supervisor's set, with its labels: operators may answer its
/// prompts from now on (until [`ForgetSession`]), and the policy applies to those
/// restored from the ledger.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TrackSession(pub Arc<str>, pub Arc<[String]>);

impl Handler<TrackSession> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: TrackSession, ctx: &mut Context<Self>) {
        let effects = self.core.track_session(msg.0, msg.1, SystemTime::now());
        self.perform(effects, ctx);
    }
}

/// A session was removed: drop its history and answer its pending prompts for the session
/// (denied, `session_removed`; written should it be added back and replay them).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForgetSession(pub Arc<str>);

impl Handler<ForgetSession> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ForgetSession, ctx: &mut Context<Self>) {
        if let Some(c) = self.cluster.as_mut() {
            c.owned.remove(&msg.0);
        }
        self.writers.remove(&msg.0);
        let effects = self.core.forget_session(&msg.0, SystemTime::now());
        self.perform(effects, ctx);
    }
}

/// The policy as `GET /v1/policy` shows it, with hit counts.
#[derive(Message)]
#[rtype(result = "PolicyReport")]
pub struct PolicyInfo;

impl Handler<PolicyInfo> for PermissionRegistry {
    type Result = MessageResult<PolicyInfo>;

    fn handle(&mut self, _: PolicyInfo, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.policy_report())
    }
}

/// A reload's new policy: prompts from now on are answered by it. Hit counts are kept
/// for the rule ids in `keep_hits` (rules the reload left unchanged) and dropped for the
/// others. Prompts already waiting keep the timers the old policy gave them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReplacePolicy {
    /// The compiled new policy.
    pub policy: Arc<Policy>,
    /// Rule ids whose hit counts carry over.
    pub keep_hits: Vec<String>,
}

impl Handler<ReplacePolicy> for PermissionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ReplacePolicy, _: &mut Context<Self>) {
        self.core.replace_policy(msg.policy, &msg.keep_hits);
    }
}
