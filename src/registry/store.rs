//! Pending-permission store (pure): the lifecycle of every prompt of every session.
//!
//! `pending → decided → written`, or `→ cancelled`. A decision is kept with its wire
//! frame until it has been written, and **it is written only on a connection on which the
//! session has shown it waits for it**: the prompt arrived there (live or replayed), or
//! the session's `initialize` reply listed it. A prompt last seen on an older connection
//! may have been answered by another client or withdrawn while nobody watched; CCR
//! replays every prompt it still waits on, so the answer goes out with that replay.
//!
//! - `Recording`: being made durable in the ledger; nothing is written before.
//! - `Queued`: waiting for the session to show, on a live connection, that it still waits
//!   (it was away, or the answer was restored from the ledger after a restart).
//! - `InFlight(conn)`: handed to the session actor for connection `conn`.
//!
//! Once written, and once withdrawn, a prompt leaves the store for the bounded
//! [`ResolvedMemory`]: a replay on a *different* connection proves the session never
//! read the answer, so it is sent again (once per connection); a replay of a withdrawn
//! prompt is ignored. A session whose records were evicted is *incomplete*: an unknown
//! prompt of it is first looked up in the ledger ([`Arrival::Check`]).
//!
//! Prompts restored from the ledger are `unconfirmed` until the session re-sends them or
//! lists them; they stay answerable but are listed after confirmed ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use crate::ledger::DecisionRecord;
use ccr_protocol::api::{AnswerBody, Decider, DecisionBody, DecisionBodyError, QuestionAnswer};
use ccr_protocol::reply::Outcome;
use ccr_protocol::{
    permission_response, permission_response_as_asked, question_response, PermissionPrompt,
    PermissionResult, PromptKind, RawRequest,
};

pub mod resolved;

pub use resolved::{Ending, Resolved, ResolvedMemory};

/// Identifies one open socket of a session (unique within the process).
pub type ConnId = u64;

/// Where a decision is on its way to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Being recorded in the ledger; nothing may be written before that.
    Recording,
    /// Waiting for the session to (re)connect.
    Queued,
    /// Handed to the session actor for this connection.
    InFlight(ConnId),
}

/// Lifecycle state of a prompt the store holds in full.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Waiting for an answer.
    Pending,
    /// Answered; the frame is kept until written.
    Decided {
        /// Who answered.
        decided_by: String,
        /// When.
        decided_at: SystemTime,
        /// The serialized `control_response`.
        frame: Arc<str>,
        /// Delivery progress.
        delivery: DeliveryState,
        /// Written at least once before (a restored answer whose first write is in the ledger).
        delivered: bool,
    },
}

/// One prompt with its metadata.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The prompt as received.
    pub prompt: Arc<PermissionPrompt>,
    /// When it first arrived.
    pub received_at: SystemTime,
    /// Arrival order across all sessions.
    pub seq: u64,
    /// Lifecycle state.
    pub status: Status,
    /// Shown to operators: false until the ledger has recorded the prompt.
    pub visible: bool,
    /// False for a prompt restored from the ledger that the session has not re-sent or
    /// listed since: it may no longer be waited on.
    pub confirmed: bool,
    /// The prompt's own ledger record is durable (a decision re-tries it when not).
    pub recorded: bool,
    /// The last connection on which the session sent (or listed) this prompt.
    pub seen_on: Option<ConnId>,
}

/// Prompts whose own ledger record is not durable: request id, prompt, arrival.
pub type Unrecorded = Vec<(String, Arc<PermissionPrompt>, SystemTime)>;

/// What an inbound prompt is to the store, and so what to do with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrival {
    /// First time seen: record and show it.
    New,
    /// A replay of a known prompt: do not show it again.
    Duplicate,
    /// A restored, unconfirmed prompt the session just re-sent: it is waited on.
    Confirmed,
    /// A replay of an answered prompt on a connection that never had the answer: send it.
    Resend {
        /// Connection to write on.
        conn: ConnId,
        /// The answer frame.
        frame: Arc<str>,
    },
    /// Like `Resend`, but the answer was too large to keep: read it from the ledger.
    ResendFromLedger {
        /// Connection to write on.
        conn: ConnId,
    },
    /// Unknown, and the session's memory is incomplete: ask the ledger before showing the
    /// prompt (given back) with [`Store::on_checked`]; replays meanwhile are duplicates.
    Check(Box<PermissionPrompt>),
}

/// What the ledger holds for a prompt the store did not know ([`Store::on_checked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// No row: a new prompt.
    Nothing,
    /// Recorded and not decided.
    Pending,
    /// Answered with this frame.
    Answered(Arc<str>),
    /// Withdrawn, or decided without a frame.
    Finished,
}

/// Why a decision was refused. Nothing is sent in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// An operator answered for a session the supervisor does not run.
    #[error("unknown session {0}")]
    UnknownSession(String),
    /// No such prompt for this session.
    #[error("no pending prompt {request_id} in session {session_id}")]
    UnknownPrompt {
        /// Session id.
        session_id: String,
        /// Prompt id.
        request_id: String,
    },
    /// Already answered.
    #[error("prompt {0} was already answered")]
    AlreadyAnswered(String),
    /// Withdrawn by the session.
    #[error("prompt {0} was cancelled by the session")]
    Cancelled(String),
    /// The body is not a valid answer.
    #[error(transparent)]
    InvalidBody(#[from] DecisionBodyError),
    /// The ledger could not make the decision durable: it was not taken (nothing sent).
    #[error("the decision ledger cannot record the answer now ({0}); nothing was sent, try again")]
    LedgerUnavailable(String),
    /// The answer is for another kind of request (a decision for a question, or the reverse).
    #[error("{0}")]
    WrongKind(String),
    /// A dialog whose kind this supervisor does not render: it must never be answered.
    #[error("request {request_id} is a {dialog_kind} dialog, which this supervisor does not render (not in [ccr] supported_dialog_kinds): it is shown read-only and never answered")]
    NotAnswerable {
        /// Prompt id.
        request_id: String,
        /// The dialog's kind.
        dialog_kind: String,
    },
}

/// A decision accepted by the store (in `Recording` until [`Store::recorded`]).
#[derive(Debug, Clone)]
pub struct Decided {
    /// `allow` / `deny`, or a question's `accept`, `decline`, `cancel`, `completed`, `cancelled`.
    pub behavior: &'static str,
    /// True when it grants what was asked (`allowed` in the ledger).
    pub grants: bool,
    /// The serialized `control_response`.
    pub frame: Arc<str>,
    /// The operator's edited input, when it differs from the original.
    pub edited_input: Option<Value>,
    /// The prompt's own record is not durable yet: record it before the decision.
    pub prompt_unrecorded: bool,
}

/// A prompt withdrawn by the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawn {
    /// Its tool-use id, if known.
    pub tool_use_id: Option<String>,
    /// True when it was still waiting for an operator.
    pub was_pending: bool,
}

/// Per-session tallies kept by the registry (they survive session crashes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTally {
    /// Prompts waiting for an answer.
    pub pending: usize,
    /// Answers waiting for the session to reconnect (or, restored, to replay its prompt).
    pub queued: usize,
    /// Distinct prompts received.
    pub prompts: u64,
    /// Answers written to the socket.
    pub decisions: u64,
}

/// A map keyed by ids, hashed with foldhash (randomly seeded; SipHash was a hot spot on
/// the prompt path).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct SessionEntries {
    by_id: FastMap<String, Entry>,
    conn: Option<ConnId>,
    /// Unknown prompts being looked up in the ledger, with their `tool_use_id` (for the
    /// event of a cancel that arrives meanwhile).
    checking: FastMap<String, Option<String>>,
    prompts: u64,
    decisions: u64,
}

/// All prompts of all sessions.
#[derive(Debug, Default)]
pub struct Store {
    sessions: FastMap<Arc<str>, SessionEntries>,
    resolved: ResolvedMemory,
    next_seq: u64,
    /// `request_user_dialog` kinds this supervisor renders; other dialogs are read-only.
    dialog_kinds: Vec<String>,
}

impl Store {
    /// An empty store with the default bounds on remembered finished prompts.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store remembering at most `records` finished prompts in `bytes`.
    pub fn with_bounds(records: usize, bytes: usize) -> Self {
        Self {
            resolved: ResolvedMemory::new(records, bytes),
            ..Self::default()
        }
    }

    /// Dialog kinds operators may answer (`[ccr] supported_dialog_kinds`).
    pub fn with_dialog_kinds(mut self, kinds: Vec<String>) -> Self {
        self.dialog_kinds = kinds;
        self
    }

    /// The dialog kinds operators may answer (`[policy] dialog_kinds`).
    pub fn dialog_kinds(&self) -> &[String] {
        &self.dialog_kinds
    }

    /// True when operators may answer `prompt`: anything but a dialog of a kind this
    /// supervisor does not render.
    pub fn answerable(&self, prompt: &PermissionPrompt) -> bool {
        match prompt.dialog_kind() {
            Some(kind) => self.dialog_kinds.iter().any(|k| k == kind),
            None => true,
        }
    }

    fn session(&mut self, session: &Arc<str>) -> &mut SessionEntries {
        self.sessions.entry(session.clone()).or_default()
    }

    /// Record an inbound prompt that arrived on connection `conn`.
    pub fn on_prompt(
        &mut self,
        session: &Arc<str>,
        conn: ConnId,
        prompt: PermissionPrompt,
        now: SystemTime,
    ) -> Arrival {
        if let Some(out) = self.replay(session, &prompt.request_id, conn) {
            return out;
        }
        if self.resolved.incomplete(session) {
            self.session(session)
                .checking
                .insert(prompt.request_id.clone(), prompt.tool_use_id.clone());
            return Arrival::Check(Box::new(prompt));
        }
        self.insert_new(session, conn, prompt, now)
    }

    /// What a prompt the store knows means when it arrives again on `conn`; `None` if unknown.
    fn replay(&mut self, session: &Arc<str>, request_id: &str, conn: ConnId) -> Option<Arrival> {
        if let Some(s) = self.sessions.get_mut(session) {
            if s.checking.contains_key(request_id) {
                return Some(Arrival::Duplicate);
            }
            if let Some(entry) = s.by_id.get_mut(request_id) {
                entry.seen_on = Some(conn);
                let was_confirmed = std::mem::replace(&mut entry.confirmed, true);
                return Some(match &mut entry.status {
                    Status::Pending if !was_confirmed => Arrival::Confirmed,
                    Status::Decided {
                        delivery: delivery @ DeliveryState::Queued,
                        frame,
                        ..
                    } if s.conn == Some(conn) => {
                        *delivery = DeliveryState::InFlight(conn);
                        Arrival::Resend {
                            conn,
                            frame: frame.clone(),
                        }
                    }
                    _ => Arrival::Duplicate,
                });
            }
        }
        let r = self.resolved.get(session, request_id)?;
        let out = match &r.ending {
            Ending::Cancelled => Arrival::Duplicate,
            _ if r.written_on == Some(conn) => Arrival::Duplicate,
            Ending::Answered { frame: Some(frame) } => Arrival::Resend {
                conn,
                frame: frame.clone(),
            },
            Ending::Answered { frame: None } => Arrival::ResendFromLedger { conn },
        };
        if !matches!(out, Arrival::Duplicate) {
            // Marked now, not when the write completes: the same prompt listed by
            // `initialize` right after its replay must not get the answer twice.
            self.resolved.written(session, request_id, conn);
        }
        Some(out)
    }

    fn insert_new(
        &mut self,
        session: &Arc<str>,
        conn: ConnId,
        prompt: PermissionPrompt,
        now: SystemTime,
    ) -> Arrival {
        let seq = self.next_seq;
        self.next_seq += 1;
        let s = self.session(session);
        s.prompts += 1;
        s.by_id.insert(
            prompt.request_id.clone(),
            Entry {
                prompt: Arc::new(prompt),
                received_at: now,
                seq,
                status: Status::Pending,
                visible: false,
                confirmed: true,
                recorded: false,
                seen_on: Some(conn),
            },
        );
        Arrival::New
    }

    /// The ledger answered the lookup of a prompt [`Arrival::Check`] asked for.
    pub fn on_checked(
        &mut self,
        session: &Arc<str>,
        conn: ConnId,
        prompt: PermissionPrompt,
        known: Known,
        now: SystemTime,
    ) -> Arrival {
        let checking = match self.sessions.get_mut(session) {
            Some(s) => s.checking.remove(&prompt.request_id).is_some(),
            None => false,
        };
        if !checking {
            // The session was forgotten meanwhile, or another path settled it.
            return Arrival::Duplicate;
        }
        let id = prompt.request_id.clone();
        match known {
            Known::Nothing | Known::Pending => self.insert_new(session, conn, prompt, now),
            Known::Finished => {
                self.resolved.insert(
                    session,
                    &id,
                    Resolved {
                        ending: Ending::Cancelled,
                        written_on: None,
                    },
                );
                Arrival::Duplicate
            }
            Known::Answered(frame) => {
                self.resolved.insert(
                    session,
                    &id,
                    Resolved {
                        ending: Ending::Answered {
                            frame: Some(frame.clone()),
                        },
                        // Marked now: a listing of the same prompt right behind this
                        // replay must not get the answer a second time.
                        written_on: Some(conn),
                    },
                );
                Arrival::Resend { conn, frame }
            }
        }
    }

    /// The prompt's ledger record is durable: show it to operators. False if it is gone
    /// or no longer pending.
    pub fn reveal(&mut self, session: &str, request_id: &str) -> bool {
        match self
            .sessions
            .get_mut(session)
            .and_then(|s| s.by_id.get_mut(request_id))
        {
            Some(e) => {
                e.visible = true;
                e.recorded = true;
                e.status == Status::Pending
            }
            None => false,
        }
    }

    /// Show a prompt whose ledger record failed (operators must still see it); a decision
    /// records it first.
    pub fn reveal_unrecorded(&mut self, session: &str, request_id: &str) -> bool {
        let pending = self.reveal(session, request_id);
        if let Some(e) = self
            .sessions
            .get_mut(session)
            .and_then(|s| s.by_id.get_mut(request_id))
        {
            e.recorded = false;
        }
        pending
    }

    /// Put back a prompt from the ledger after a restart: pending (unconfirmed), or
    /// answered with `frame` awaiting the session's replay. `delivered`: the ledger says
    /// it was written once already.
    pub fn restore(
        &mut self,
        session: &Arc<str>,
        prompt: PermissionPrompt,
        received_at: SystemTime,
        answer: Option<(String, SystemTime, Arc<str>, bool)>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let status = match answer {
            None => Status::Pending,
            Some((decided_by, decided_at, frame, delivered)) => Status::Decided {
                decided_by,
                decided_at,
                frame,
                delivery: DeliveryState::Queued,
                delivered,
            },
        };
        let s = self.session(session);
        s.prompts += 1;
        s.by_id.insert(
            prompt.request_id.clone(),
            Entry {
                prompt: Arc::new(prompt),
                received_at,
                seq,
                status,
                visible: true,
                confirmed: false,
                recorded: true,
                seen_on: None,
            },
        );
    }

    /// Put back a finished prompt from the ledger after a restart, so that a replay of it
    /// is matched ([`Known::Answered`] / [`Known::Finished`]).
    pub fn restore_resolved(&mut self, session: &Arc<str>, request_id: &str, known: Known) {
        let ending = match known {
            Known::Answered(frame) => Ending::Answered { frame: Some(frame) },
            _ => Ending::Cancelled,
        };
        self.resolved.insert(
            session,
            request_id,
            Resolved {
                ending,
                written_on: None,
            },
        );
    }

    /// The restore did not load all of `session`'s history: look unknown prompts up.
    pub fn mark_incomplete(&mut self, session: &Arc<str>) {
        self.resolved.mark_incomplete(session);
    }

    /// Record an operator's (or policy's) answer. Operators only see shown
    /// prompts; `unshown` lets the policy answer one whose record is still being written.
    pub fn decide(
        &mut self,
        session: &Arc<str>,
        request_id: &str,
        body: AnswerBody,
        (decided_by, decider): (&str, Decider),
        now: SystemTime,
        unshown: bool,
    ) -> Result<Decided, DecideError> {
        let unknown = || DecideError::UnknownPrompt {
            session_id: session.to_string(),
            request_id: request_id.to_owned(),
        };
        if let Some(r) = self.resolved.get(session, request_id) {
            return Err(match r.ending {
                Ending::Cancelled => DecideError::Cancelled(request_id.into()),
                Ending::Answered { .. } => DecideError::AlreadyAnswered(request_id.into()),
            });
        }
        let dialog_kinds = &self.dialog_kinds;
        let s = self.sessions.get_mut(session).ok_or_else(unknown)?;
        let entry = s
            .by_id
            .get_mut(request_id)
            .filter(|e| e.visible || unshown)
            .ok_or_else(unknown)?;
        if let Status::Decided { .. } = entry.status {
            return Err(DecideError::AlreadyAnswered(request_id.into()));
        }
        let Built {
            frame,
            behavior,
            grants,
            edited_input,
        } = build_answer(&entry.prompt, request_id, body, decider, dialog_kinds)?;
        entry.status = Status::Decided {
            decided_by: decided_by.to_owned(),
            decided_at: now,
            frame: frame.clone(),
            delivery: DeliveryState::Recording,
            delivered: false,
        };
        Ok(Decided {
            behavior,
            grants,
            frame,
            edited_input,
            prompt_unrecorded: !entry.recorded,
        })
    }

    /// The ledger could not record a decision: the prompt is pending again, as if the
    /// decision had never been made (nothing was written). False if it moved on meanwhile.
    pub fn undecide(&mut self, session: &str, request_id: &str) -> bool {
        let Some(entry) = self
            .sessions
            .get_mut(session)
            .and_then(|s| s.by_id.get_mut(request_id))
        else {
            return false;
        };
        match entry.status {
            Status::Decided {
                delivery: DeliveryState::Recording,
                ..
            } => {
                entry.status = Status::Pending;
                true
            }
            _ => false,
        }
    }

    /// The prompt's record and the decision are durable: where to write it now (`None`:
    /// queued for reconnect).
    pub fn recorded(&mut self, session: &str, request_id: &str) -> Option<(ConnId, Arc<str>)> {
        if let Some(e) = self
            .sessions
            .get_mut(session)
            .and_then(|s| s.by_id.get_mut(request_id))
        {
            e.recorded = true;
        }
        self.hand_on(session, request_id, DeliveryState::Recording, |_| true)
    }

    /// The session's `initialize` reply on `conn` listed `listed` (after routing them as
    /// replays): its other pending prompts not seen on `conn` are `unconfirmed` until it
    /// re-sends them (the list confirms; it does not prove the others dead). Returns the
    /// prompts that became unconfirmed.
    pub fn unconfirm_unseen(&mut self, session: &str, conn: ConnId) -> Vec<String> {
        let Some(s) = self.sessions.get_mut(session) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, e) in s.by_id.iter_mut() {
            if e.status == Status::Pending && e.confirmed && e.seen_on != Some(conn) {
                e.confirmed = false;
                out.push(id.clone());
            }
        }
        out
    }

    /// The session withdrew a prompt. `None` when it was unknown or already resolved.
    pub fn on_cancel(&mut self, session: &Arc<str>, request_id: &str) -> Option<Withdrawn> {
        let s = self.sessions.get_mut(session)?;
        let withdrawn = match s.checking.remove(request_id) {
            // Withdrawn while the ledger is asked about it: remembered so, and the
            // answer to that question (`on_checked`) finds it settled.
            Some(tool_use_id) => Withdrawn {
                tool_use_id,
                was_pending: true,
            },
            None => Self::withdraw(s, request_id)?,
        };
        self.resolved.insert(
            session,
            request_id,
            Resolved {
                ending: Ending::Cancelled,
                written_on: None,
            },
        );
        Some(withdrawn)
    }

    /// Take `request_id` out of `s` as withdrawn, unless an answer was written for it.
    fn withdraw(s: &mut SessionEntries, request_id: &str) -> Option<Withdrawn> {
        let entry = s.by_id.get(request_id)?;
        let was_pending = match &entry.status {
            Status::Pending => true,
            // An answer not yet written is void: the session no longer wants it. One the
            // ledger says was written once (restored) stays answered: the session had it.
            Status::Decided {
                delivered: false, ..
            } => false,
            Status::Decided { .. } => return None,
        };
        let entry = s.by_id.remove(request_id)?;
        Some(Withdrawn {
            tool_use_id: entry.prompt.tool_use_id.clone(),
            was_pending,
        })
    }

    /// Whether the session withdrew `request_id` (or an answer of it was voided) and the
    /// store still remembers so.
    pub fn was_cancelled(&self, session: &str, request_id: &str) -> bool {
        self.resolved
            .get(session, request_id)
            .is_some_and(|r| r.ending == Ending::Cancelled)
    }

    /// A connection opened. Nothing is written on it before the session shows, there,
    /// which prompts it still waits on (see the module docs).
    pub fn on_connected(&mut self, session: &Arc<str>, conn: ConnId) {
        self.session(session).conn = Some(conn);
    }

    /// A connection closed (`None`: whichever is current, e.g. the actor died).
    pub fn on_disconnected(&mut self, session: &Arc<str>, conn: Option<ConnId>) {
        if let Some(s) = self.sessions.get_mut(session) {
            if conn.is_none() || s.conn == conn {
                s.conn = None;
            }
        }
    }

    /// The session actor wrote an answer on `conn`. True if this was its first write in
    /// this process (false for a resend after the session replayed its prompt).
    pub fn on_written(&mut self, session: &Arc<str>, request_id: &str, conn: ConnId) -> bool {
        if self.resolved.written(session, request_id, conn) {
            return false;
        }
        let Some(s) = self.sessions.get_mut(session) else {
            return false;
        };
        let first = match s.by_id.get(request_id).map(|e| &e.status) {
            Some(Status::Decided {
                delivery: DeliveryState::InFlight(c),
                delivered,
                ..
            }) if *c == conn => !*delivered,
            _ => return false,
        };
        let Some(entry) = s.by_id.remove(request_id) else {
            return false;
        };
        if first {
            s.decisions += 1;
        }
        let Status::Decided { frame, .. } = entry.status else {
            unreachable!("matched as decided above")
        };
        self.resolved.insert(
            session,
            request_id,
            Resolved {
                ending: Ending::Answered { frame: Some(frame) },
                written_on: Some(conn),
            },
        );
        first
    }

    /// The session actor could not write on `conn`. Returns a retry on the
    /// session's newer connection, if it has one; otherwise the answer is queued.
    pub fn on_write_failed(
        &mut self,
        session: &Arc<str>,
        request_id: &str,
        conn: ConnId,
    ) -> Option<(ConnId, Arc<str>)> {
        self.hand_on(session, request_id, DeliveryState::InFlight(conn), |c| {
            c != conn
        })
    }

    /// `session` may act again after its lease had lapsed (it kept its socket and sent
    /// nothing). Returns the answers queued meanwhile that can go out on its current
    /// connection, now in flight there (request id, connection, frame), and the prompts
    /// whose own ledger record is not durable (request id, prompt, arrival), oldest first.
    pub fn on_resumed(&mut self, session: &str) -> (Vec<(String, ConnId, Arc<str>)>, Unrecorded) {
        let Some(s) = self.sessions.get(session) else {
            return (Vec::new(), Vec::new());
        };
        let mut entries: Vec<(&String, &Entry)> = s.by_id.iter().collect();
        entries.sort_by_key(|(_, e)| e.seq);
        let queued: Vec<String> = entries
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e.status,
                    Status::Decided {
                        delivery: DeliveryState::Queued,
                        ..
                    }
                )
            })
            .map(|(id, _)| (*id).clone())
            .collect();
        let unrecorded = entries
            .iter()
            .filter(|(_, e)| !e.recorded)
            .map(|(id, e)| ((*id).clone(), e.prompt.clone(), e.received_at))
            .collect();
        let writes = queued
            .into_iter()
            .filter_map(|id| {
                let (conn, frame) = self.hand_on(session, &id, DeliveryState::Queued, |_| true)?;
                Some((id, conn, frame))
            })
            .collect();
        (writes, unrecorded)
    }

    /// Move an answer that is `from` to the session's current connection when `usable`
    /// accepts it (returning where and what to write), otherwise queue it for reconnect.
    /// `None` also when the answer is not in state `from`.
    fn hand_on(
        &mut self,
        session: &str,
        request_id: &str,
        from: DeliveryState,
        usable: impl Fn(ConnId) -> bool,
    ) -> Option<(ConnId, Arc<str>)> {
        let s = self.sessions.get_mut(session)?;
        let current = s.conn;
        let entry = s.by_id.get_mut(request_id)?;
        let seen_on = entry.seen_on;
        let Status::Decided {
            delivery, frame, ..
        } = &mut entry.status
        else {
            return None;
        };
        if *delivery != from {
            return None;
        }
        match current.filter(|c| usable(*c) && seen_on == Some(*c)) {
            Some(c) => {
                *delivery = DeliveryState::InFlight(c);
                Some((c, frame.clone()))
            }
            None => {
                *delivery = DeliveryState::Queued;
                None
            }
        }
    }

    /// Pending prompts of one session or all: confirmed ones oldest first, then
    /// unconfirmed (restored, not re-sent) ones oldest first.
    pub fn pending(&self, session: Option<&str>) -> Vec<(Arc<str>, Entry)> {
        let mut out: Vec<(Arc<str>, Entry)> = self
            .sessions
            .iter()
            .filter(|(id, _)| session.is_none_or(|want| want == &***id))
            .flat_map(|(id, s)| {
                s.by_id
                    .values()
                    .filter(|e| e.visible && e.status == Status::Pending)
                    .map(move |e| (id.clone(), e.clone()))
            })
            .collect();
        out.sort_by_key(|(_, e)| (!e.confirmed, e.seq));
        out
    }

    /// Look up one prompt the store holds in full (pending, or decided and not yet written).
    pub fn get(&self, session: &str, request_id: &str) -> Option<&Entry> {
        self.sessions.get(session)?.by_id.get(request_id)
    }

    /// The remembered ending of a finished prompt.
    pub fn finished(&self, session: &str, request_id: &str) -> Option<&Resolved> {
        self.resolved.get(session, request_id)
    }

    /// Finished prompts remembered, and the bytes charged for them.
    pub fn resolved_size(&self) -> (usize, usize) {
        (self.resolved.len(), self.resolved.bytes())
    }

    /// Tallies per session.
    pub fn tallies(&self) -> HashMap<Arc<str>, SessionTally> {
        self.sessions
            .iter()
            .map(|(id, s)| {
                let mut t = SessionTally {
                    prompts: s.prompts,
                    decisions: s.decisions,
                    ..SessionTally::default()
                };
                for e in s.by_id.values() {
                    match &e.status {
                        Status::Pending if e.visible => t.pending += 1,
                        Status::Pending => {}
                        Status::Decided { .. } => t.queued += 1,
                    }
                }
                (id.clone(), t)
            })
            .collect()
    }

    /// Drop a new prompt that was never shown nor recorded, leaving no trace: the session's
    /// lease is not held here, and a replay of it to this instance, should it own the
    /// session again, is new. False if it is not such a prompt.
    pub fn discard(&mut self, session: &str, request_id: &str) -> bool {
        let Some(s) = self.sessions.get_mut(session) else {
            return false;
        };
        let unseen = s
            .by_id
            .get(request_id)
            .is_some_and(|e| !e.visible && !e.recorded && e.status == Status::Pending);
        if unseen {
            s.by_id.remove(request_id);
        }
        unseen
    }

    /// Drop a session entirely; returns its prompts that were still pending
    /// and those whose answer never reached it (both are now void).
    pub fn forget_session(&mut self, session: &str) -> Vec<Arc<PermissionPrompt>> {
        self.resolved.forget(session);
        self.sessions
            .remove(session)
            .map(|s| {
                s.by_id
                    .into_values()
                    .filter(|e| match &e.status {
                        Status::Pending => true,
                        Status::Decided { delivered, .. } => !delivered,
                    })
                    .map(|e| e.prompt)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The supervisor removed `session` (at `now`), which may still wait on its prompts
    /// (and may be added back): each prompt still pending is answered as [`removal`] says,
    /// each decided one keeps its answer, and both are
    /// remembered, so that a replay after the session is added back gets that answer
    /// instead of being shown anew or ignored. A prompt whose own record is not yet
    /// durable, or whose answer is still being recorded, is left as the ledger will have
    /// it: the session's replays are looked up there. What is remembered of its finished
    /// prompts stays (unlike [`Store::forget_session`]). Returns the pending prompts with
    /// their answers and the rows to record.
    pub fn remove_session(&mut self, session: &Arc<str>, now: SystemTime) -> Vec<Removed> {
        let Some(s) = self.sessions.remove(&**session) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for (id, e) in s.by_id {
            let ending = match e.status {
                // Its own record is still being retried (the ledger was unavailable, or a
                // cluster lease had lapsed): an answer recorded now could land before it
                // and be refused. Left pending in the ledger; a replay is looked up.
                Status::Pending if !e.recorded => {
                    self.resolved.mark_incomplete(session);
                    continue;
                }
                Status::Pending => {
                    let (answer, row) = removal(session, &e.prompt, &self.dialog_kinds, now);
                    let ending = match &answer {
                        Some(built) => Ending::Answered {
                            frame: Some(built.frame.clone()),
                        },
                        None => Ending::Cancelled,
                    };
                    removed.push(Removed {
                        prompt: e.prompt,
                        answer,
                        row,
                    });
                    ending
                }
                // Its record may yet fail: what the ledger says is looked up at the replay.
                Status::Decided {
                    delivery: DeliveryState::Recording,
                    ..
                } => {
                    self.resolved.mark_incomplete(session);
                    continue;
                }
                Status::Decided { frame, .. } => Ending::Answered { frame: Some(frame) },
            };
            let resolved = Resolved {
                ending,
                written_on: None,
            };
            self.resolved.insert(session, &id, resolved);
        }
        removed
    }

    /// Another instance of the cluster recorded this answer for a prompt pending here:
    /// take it as this store's decision, being recorded (it is: the caller read it from the
    /// ledger). False when the prompt is not pending here (unknown, or decided already).
    pub fn decided_elsewhere(
        &mut self,
        session: &str,
        request_id: &str,
        decided_by: &str,
        decided_at: SystemTime,
        frame: Arc<str>,
    ) -> bool {
        let Some(entry) = self
            .sessions
            .get_mut(session)
            .and_then(|s| s.by_id.get_mut(request_id))
            .filter(|e| e.status == Status::Pending)
        else {
            return false;
        };
        entry.status = Status::Decided {
            decided_by: decided_by.to_owned(),
            decided_at,
            frame,
            delivery: DeliveryState::Recording,
            delivered: false,
        };
        true
    }

    /// Pending prompts (restored from the ledger), for re-arming policy and deadlines; of
    /// `session` only, if given.
    pub fn pending_ids(&self, session: Option<&str>) -> Vec<(Arc<str>, String)> {
        self.pending(session)
            .into_iter()
            .map(|(s, e)| (s, e.prompt.request_id.clone()))
            .collect()
    }
}

/// A prompt still pending when its session was removed ([`Store::remove_session`]).
pub struct Removed {
    /// The prompt.
    pub prompt: Arc<PermissionPrompt>,
    /// Its answer, if one fits its kind (else it is cancelled).
    pub answer: Option<Built>,
    /// The ledger row that records the answer (or the cancel).
    pub row: DecisionRecord,
}

/// Who decides, and why, for the prompts of a removed session.
pub const SESSION_REMOVED: &str = "session_removed";
/// The reason recorded for them.
pub const REMOVED_REASON: &str = "the session was removed from the supervisor";
/// What the model reads for a tool use the supervisor denied as its session was removed.
pub const REMOVED_MESSAGE: &str =
    "Denied: this session was removed from ccr-supervisor while the permission prompt waited.";

/// How the supervisor ends a pending `prompt` of `session` when it stops supervising the
/// session (its own store's, and in a cluster those a dead owner left): a tool is denied
/// with [`REMOVED_MESSAGE`], an elicitation declined, a dialog dismissed (the CLI applies
/// its default), recorded as `denied` by [`SESSION_REMOVED`]; a prompt no answer fits (a
/// dialog of a kind not in `dialog_kinds`) is cancelled. Its answer, if any, and the row.
pub fn removal(
    session: &str,
    prompt: &PermissionPrompt,
    dialog_kinds: &[String],
    now: SystemTime,
) -> (Option<Built>, DecisionRecord) {
    let request_id = &prompt.request_id;
    let body = match prompt.kind() {
        PromptKind::CanUseTool => AnswerBody::Permission(DecisionBody::Deny {
            message: Some(REMOVED_MESSAGE.to_owned()),
            interrupt: None,
        }),
        PromptKind::Elicitation => AnswerBody::Question(QuestionAnswer::Decline),
        PromptKind::RequestUserDialog => AnswerBody::Question(QuestionAnswer::Dismissed),
    };
    match build_answer(prompt, request_id, body, Decider::Automatic, dialog_kinds) {
        Ok(built) => {
            let row = DecisionRecord {
                session_id: session.to_owned(),
                request_id: request_id.to_owned(),
                outcome: Outcome::Denied,
                decided_by: SESSION_REMOVED.to_owned(),
                decided_at: now,
                updated_input: None,
                answer: Some(built.frame.to_string()),
                reason: Some(REMOVED_REASON.to_owned()),
            };
            (Some(built), row)
        }
        Err(_) => (None, cancelled(session, request_id, SESSION_REMOVED, now)),
    }
}

/// The ledger row of a prompt withdrawn (`decided_by` says by whom).
pub fn cancelled(
    session: &str,
    request_id: &str,
    decided_by: &str,
    now: SystemTime,
) -> DecisionRecord {
    DecisionRecord {
        session_id: session.to_owned(),
        request_id: request_id.to_owned(),
        outcome: Outcome::Cancelled,
        decided_by: decided_by.to_owned(),
        decided_at: now,
        updated_input: None,
        answer: None,
        reason: None,
    }
}

/// An answer built for a prompt: the frame and what it says.
pub struct Built {
    /// The serialized `control_response`.
    pub frame: Arc<str>,
    /// `allow` / `deny`, or a question's `accept`, `decline`, ...
    pub behavior: &'static str,
    /// True when it grants what was asked.
    pub grants: bool,
    /// The edited input, when it differs from the original.
    pub edited_input: Option<Value>,
}

/// Build the answer `body` gives to `prompt` (pure): the checks of its kind and dialog,
/// and the frame, as this store and an instance answering for another owner both do.
pub fn build_answer(
    prompt: &PermissionPrompt,
    request_id: &str,
    body: AnswerBody,
    decider: Decider,
    dialog_kinds: &[String],
) -> Result<Built, DecideError> {
    let kind = prompt.kind();
    let (frame, behavior, grants, edited_input) = match body {
        AnswerBody::Permission(_) if kind != PromptKind::CanUseTool => {
            return Err(DecideError::WrongKind(format!(
                "request {request_id} is {}, not a permission prompt: answer it at POST /v1/sessions/{{id}}/questions/{{request_id}}",
                kind.as_str()
            )))
        }
        AnswerBody::Permission(body) => {
            let as_asked = body.keeps_input();
            let result =
                body.into_result(&prompt.input, prompt.tool_use_id.as_deref(), decider)?;
            let edited = match &result {
                PermissionResult::Allow { updated_input, .. }
                    if !as_asked && *updated_input != prompt.input =>
                {
                    Some(updated_input.clone())
                }
                _ => None,
            };
            let grants = matches!(result, PermissionResult::Allow { .. });
            // The input allowed as it came goes back as the session sent it.
            let raw_input = prompt.raw.as_ref().filter(|_| as_asked);
            let frame: Arc<str> = match raw_input.and_then(RawRequest::input_json) {
                Some(input) => permission_response_as_asked(request_id, &result, input),
                None => permission_response(request_id, &result),
            }
            .into();
            (frame, result.behavior(), grants, edited)
        }
        AnswerBody::Question(answer) => {
            answer
                .fits(kind)
                .map_err(|e| DecideError::WrongKind(e.to_string()))?;
            if let Some(dialog_kind) = prompt.dialog_kind() {
                if !dialog_kinds.iter().any(|k| k == dialog_kind) {
                    return Err(DecideError::NotAnswerable {
                        request_id: request_id.into(),
                        dialog_kind: dialog_kind.into(),
                    });
                }
            }
            let (behavior, grants) = (answer.behavior(), answer.grants());
            let frame: Arc<str> = question_response(request_id, &answer.into()).into();
            (frame, behavior, grants, None)
        }
    };
    Ok(Built {
        frame,
        behavior,
        grants,
        edited_input,
    })
}

#[cfg(test)]
mod tests;
