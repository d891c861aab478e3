//! Pending-permission store (pure): the lifecycle of every prompt of every session.
//!
//! `pending → allowed | denied | cancelled`. A decision is kept with its wire
//! frame until it has been written on a live connection:
//!
//! - `Queued`: no connection; flushed by [`Store::on_connected`].
//! - `InFlight(conn)`: handed to the session actor for connection `conn`.
//! - `Written(conn)`: written on `conn`. If the session replays the prompt on a
//!   *different* connection it never saw the answer, so it is sent again; a
//!   replay on the same connection is ignored.
//!
//! Resolved entries are remembered (bounded per session) so that late answers
//! get a clear 409 and replays are never shown twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use crate::protocol::api::{Decider, DecisionBody, DecisionBodyError};
use crate::protocol::{permission_response, PermissionPrompt, PermissionResult};

/// Identifies one open socket of a session (unique within the process).
pub type ConnId = u64;

/// How many resolved prompts each session remembers.
pub const RESOLVED_MEMORY: usize = 1024;

/// Where a decision is on its way to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Being recorded in the ledger; nothing may be written before that.
    Recording,
    /// Waiting for the session to (re)connect.
    Queued,
    /// Handed to the session actor for this connection.
    InFlight(ConnId),
    /// Written on this connection.
    Written(ConnId),
}

/// Lifecycle state of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Waiting for an answer.
    Pending,
    /// Answered; the frame is kept until written.
    Decided {
        /// The answer.
        result: PermissionResult,
        /// Who answered.
        decided_by: String,
        /// When.
        decided_at: SystemTime,
        /// The serialized `control_response`.
        frame: Arc<str>,
        /// Delivery progress.
        delivery: DeliveryState,
        /// Written at least once (a resend after a replay is not a new delivery).
        delivered: bool,
    },
    /// Withdrawn by the session.
    Cancelled,
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
}

/// What to do with an inbound prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptOutcome {
    /// First time seen: show it.
    New,
    /// A replay of a known prompt: do not show it again.
    Duplicate,
    /// A replay of an answered prompt on a new connection: send the answer again.
    Resend {
        /// Connection to write on.
        conn: ConnId,
        /// The answer frame.
        frame: Arc<str>,
    },
}

/// Why a decision was refused. Nothing is sent in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
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
}

/// A decision accepted by the store (in `Recording` until [`Store::recorded`]).
#[derive(Debug, Clone)]
pub struct Decided {
    /// The answer.
    pub result: PermissionResult,
    /// The serialized `control_response`.
    pub frame: Arc<str>,
    /// The operator's edited input, when it differs from the original.
    pub edited_input: Option<Value>,
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
    /// Answers waiting for the session to reconnect.
    pub queued: usize,
    /// Distinct prompts received.
    pub prompts: u64,
    /// Answers written to the socket.
    pub decisions: u64,
}

#[derive(Debug, Default)]
struct SessionEntries {
    by_id: HashMap<String, Entry>,
    conn: Option<ConnId>,
    resolved: VecDeque<String>,
    prompts: u64,
    decisions: u64,
}

impl SessionEntries {
    fn remember_resolved(&mut self, request_id: &str) {
        self.resolved.push_back(request_id.to_owned());
        while self.resolved.len() > RESOLVED_MEMORY {
            let Some(old) = self.resolved.pop_front() else {
                break;
            };
            let done = matches!(
                self.by_id.get(&old).map(|e| &e.status),
                Some(Status::Cancelled)
                    | Some(Status::Decided {
                        delivery: DeliveryState::Written(_),
                        ..
                    })
            );
            if done {
                self.by_id.remove(&old);
            }
        }
    }
}

/// All prompts of all sessions.
#[derive(Debug, Default)]
pub struct Store {
    sessions: HashMap<Arc<str>, SessionEntries>,
    next_seq: u64,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
    ) -> PromptOutcome {
        let seq = self.next_seq;
        let s = self.session(session);
        if let Some(entry) = s.by_id.get_mut(&prompt.request_id) {
            return match &mut entry.status {
                Status::Decided {
                    delivery: delivery @ DeliveryState::Written(_),
                    frame,
                    ..
                } if *delivery != DeliveryState::Written(conn) => {
                    *delivery = DeliveryState::InFlight(conn);
                    PromptOutcome::Resend {
                        conn,
                        frame: frame.clone(),
                    }
                }
                _ => PromptOutcome::Duplicate,
            };
        }
        s.prompts += 1;
        s.by_id.insert(
            prompt.request_id.clone(),
            Entry {
                prompt: Arc::new(prompt),
                received_at: now,
                seq,
                status: Status::Pending,
                visible: false,
            },
        );
        self.next_seq += 1;
        PromptOutcome::New
    }

    /// Show a recorded prompt to operators. False if it is gone or no longer pending.
    pub fn reveal(&mut self, session: &str, request_id: &str) -> bool {
        match self
            .sessions
            .get_mut(session)
            .and_then(|s| s.by_id.get_mut(request_id))
        {
            Some(e) => {
                e.visible = true;
                e.status == Status::Pending
            }
            None => false,
        }
    }

    /// Put back a prompt from the ledger after a restart: pending, or answered
    /// with `frame` still to be delivered.
    pub fn restore(
        &mut self,
        session: &Arc<str>,
        prompt: PermissionPrompt,
        received_at: SystemTime,
        answer: Option<(PermissionResult, String, SystemTime, Arc<str>)>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let status = match answer {
            None => Status::Pending,
            Some((result, decided_by, decided_at, frame)) => Status::Decided {
                result,
                decided_by,
                decided_at,
                frame,
                delivery: DeliveryState::Queued,
                delivered: false,
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
            },
        );
    }

    /// Record an operator's (or policy's) answer. Operators only see shown
    /// prompts; `unshown` lets the policy answer one whose record is still being written.
    pub fn decide(
        &mut self,
        session: &Arc<str>,
        request_id: &str,
        body: DecisionBody,
        (decided_by, decider): (&str, Decider),
        now: SystemTime,
        unshown: bool,
    ) -> Result<Decided, DecideError> {
        let unknown = || DecideError::UnknownPrompt {
            session_id: session.to_string(),
            request_id: request_id.to_owned(),
        };
        let s = self.sessions.get_mut(session).ok_or_else(unknown)?;
        let entry = s
            .by_id
            .get_mut(request_id)
            .filter(|e| e.visible || unshown)
            .ok_or_else(unknown)?;
        match entry.status {
            Status::Pending => {}
            Status::Decided { .. } => return Err(DecideError::AlreadyAnswered(request_id.into())),
            Status::Cancelled => return Err(DecideError::Cancelled(request_id.into())),
        }
        let prompt = &entry.prompt;
        let result = body.into_result(&prompt.input, prompt.tool_use_id.as_deref(), decider)?;
        let frame: Arc<str> = permission_response(request_id, &result).into();
        let edited_input = match &result {
            PermissionResult::Allow { updated_input, .. }
                if *updated_input != entry.prompt.input =>
            {
                Some(updated_input.clone())
            }
            _ => None,
        };
        entry.status = Status::Decided {
            result: result.clone(),
            decided_by: decided_by.to_owned(),
            decided_at: now,
            frame: frame.clone(),
            delivery: DeliveryState::Recording,
            delivered: false,
        };
        Ok(Decided {
            result,
            frame,
            edited_input,
        })
    }

    /// The ledger has the decision: where to write it now (`None`: queued for reconnect).
    pub fn recorded(&mut self, session: &str, request_id: &str) -> Option<(ConnId, Arc<str>)> {
        self.hand_on(session, request_id, DeliveryState::Recording, |_| true)
    }

    /// The session withdrew a prompt. `None` when it was unknown or already resolved.
    pub fn on_cancel(&mut self, session: &Arc<str>, request_id: &str) -> Option<Withdrawn> {
        let s = self.sessions.get_mut(session)?;
        let entry = s.by_id.get_mut(request_id)?;
        let was_pending = match &entry.status {
            Status::Pending => true,
            // An answer still waiting for its first delivery is void: the session no
            // longer wants it. One already written once (and now being re-sent after a
            // replay) stays answered: the session had it.
            Status::Decided {
                delivery:
                    DeliveryState::Recording | DeliveryState::Queued | DeliveryState::InFlight(_),
                delivered: false,
                ..
            } => false,
            _ => return None,
        };
        let tool_use_id = entry.prompt.tool_use_id.clone();
        entry.status = Status::Cancelled;
        s.remember_resolved(request_id);
        Some(Withdrawn {
            tool_use_id,
            was_pending,
        })
    }

    /// A connection opened: returns the queued answers to write on it.
    pub fn on_connected(&mut self, session: &Arc<str>, conn: ConnId) -> Vec<(String, Arc<str>)> {
        let s = self.session(session);
        s.conn = Some(conn);
        let mut out: Vec<(u64, String, Arc<str>)> = vec![];
        for (id, entry) in s.by_id.iter_mut() {
            if let Status::Decided {
                delivery: delivery @ DeliveryState::Queued,
                frame,
                ..
            } = &mut entry.status
            {
                *delivery = DeliveryState::InFlight(conn);
                out.push((entry.seq, id.clone(), frame.clone()));
            }
        }
        out.sort_by_key(|(seq, ..)| *seq);
        out.into_iter().map(|(_, id, f)| (id, f)).collect()
    }

    /// A connection closed (`None`: whichever is current, e.g. the actor died).
    pub fn on_disconnected(&mut self, session: &Arc<str>, conn: Option<ConnId>) {
        if let Some(s) = self.sessions.get_mut(session) {
            if conn.is_none() || s.conn == conn {
                s.conn = None;
            }
        }
    }

    /// The session actor wrote an answer on `conn`. True if this was its first
    /// write (false for the same answer re-sent after the session replayed its prompt).
    pub fn on_written(&mut self, session: &Arc<str>, request_id: &str, conn: ConnId) -> bool {
        let Some(s) = self.sessions.get_mut(session) else {
            return false;
        };
        let Some(entry) = s.by_id.get_mut(request_id) else {
            return false;
        };
        if let Status::Decided {
            delivery,
            delivered,
            ..
        } = &mut entry.status
        {
            if *delivery == DeliveryState::InFlight(conn) {
                *delivery = DeliveryState::Written(conn);
                if !std::mem::replace(delivered, true) {
                    s.decisions += 1;
                    s.remember_resolved(request_id);
                    return true;
                }
            }
        }
        false
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
        let Status::Decided {
            delivery, frame, ..
        } = &mut entry.status
        else {
            return None;
        };
        if *delivery != from {
            return None;
        }
        match current.filter(|c| usable(*c)) {
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

    /// Pending prompts, oldest first, optionally of one session.
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
        out.sort_by_key(|(_, e)| e.seq);
        out
    }

    /// Look up one prompt.
    pub fn get(&self, session: &str, request_id: &str) -> Option<&Entry> {
        self.sessions.get(session)?.by_id.get(request_id)
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
                        Status::Decided {
                            delivery:
                                DeliveryState::Recording
                                | DeliveryState::Queued
                                | DeliveryState::InFlight(_),
                            ..
                        } => t.queued += 1,
                        _ => {}
                    }
                }
                (id.clone(), t)
            })
            .collect()
    }

    /// Drop a session entirely; returns its prompts that were still pending
    /// and those whose answer never reached it (both are now void).
    pub fn forget_session(&mut self, session: &str) -> Vec<Arc<PermissionPrompt>> {
        self.sessions
            .remove(session)
            .map(|s| {
                s.by_id
                    .into_values()
                    .filter(|e| match &e.status {
                        Status::Pending => true,
                        Status::Decided { delivery, .. } => {
                            !matches!(delivery, DeliveryState::Written(_))
                        }
                        Status::Cancelled => false,
                    })
                    .map(|e| e.prompt)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pending prompts (restored from the ledger), for re-arming policy and deadlines.
    pub fn pending_ids(&self) -> Vec<(Arc<str>, String)> {
        self.pending(None)
            .into_iter()
            .map(|(s, e)| (s, e.prompt.request_id.clone()))
            .collect()
    }
}

/// Convenience for tests and views: the original tool input of a prompt.
pub fn input_of(entry: &Entry) -> &Value {
    &entry.prompt.input
}

#[cfg(test)]
mod tests;
