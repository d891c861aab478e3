//! Session states across the cluster: the owner of a session announces each new state of
//! it on the `NOTIFY` channel [`STATE_CHANNEL`], and every other member publishes it on its
//! own event stream and shows it in `GET /v1/sessions`.
//!
//! - [`StateNote`]: one announcement (the owner, the session, its lease epoch, the state
//!   and last error of a `session_state` event), encoded small ([`encode_state`], at most
//!   [`MAX_PAYLOAD`] bytes, far below PostgreSQL's 8000), and [`decode`]d by typed errors.
//! - A resync request ([`encode_resync`]): a member whose `LISTEN` (re)started asks every
//!   member to announce the state of each session it holds again, since notifications
//!   sent while it was not listening are lost.
//! - [`StateOutbox`]: what the supervisor hands to the lease thread to announce. It never
//!   blocks the supervisor and keeps only the latest state of each session while the
//!   database is slow ([`Queue`], pure: coalescing, bounded by count and bytes).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::Message;
use ccr_protocol::session::SessionState;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::Epoch;

/// The `NOTIFY` channel of session states (payload: JSON, [`encode_state`] /
/// [`encode_resync`]).
pub const STATE_CHANNEL: &str = "ccr_state";

/// Longest payload this build sends; PostgreSQL refuses 8000 bytes and more.
pub const MAX_PAYLOAD: usize = 2000;

/// How much of a last error (and of a failure's detail) a note keeps, tried in turn until
/// the payload fits (JSON escapes may grow text up to six times).
const TEXT_LIMITS: [usize; 3] = [600, 120, 0];

/// One session's state as its owner announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateNote {
    /// The instance that sent it (the session's owner at `epoch`).
    pub from: String,
    /// The session.
    pub session: Arc<str>,
    /// The lease epoch the owner held (or last held) the session at: a note of an older
    /// epoch than one already heard is stale.
    pub epoch: Epoch,
    /// The session's state.
    pub state: SessionState,
    /// Its last error, if any.
    pub last_error: Option<String>,
}

/// What a `ccr_state` notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A session's state, from its owner.
    State(StateNote),
    /// `from` (re)started listening: every member announces the sessions it holds again.
    Resync {
        /// Who asks.
        from: String,
    },
}

impl Heard {
    /// The instance that sent it.
    pub fn from(&self) -> &str {
        match self {
            Heard::State(n) => &n.from,
            Heard::Resync { from } => from,
        }
    }
}

/// Why a `ccr_state` payload was not understood.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Longer than any this build sends.
    #[error("payload of {0} bytes, more than {MAX_PAYLOAD}")]
    TooLarge(usize),
    /// Not the JSON of a note or a resync request.
    #[error("not a session-state payload: {0}")]
    Json(#[from] serde_json::Error),
}

/// The wire shape (unknown fields are an error).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Wire {
    State {
        from: String,
        session: Arc<str>,
        epoch: Epoch,
        state: SessionState,
        last_error: Option<String>,
    },
    Resync {
        from: String,
    },
}

/// `note` as a payload of at most [`MAX_PAYLOAD`] bytes: its last error and a failure's
/// reason and detail are shortened as much as needed (ids are bounded by the config).
pub fn encode_state(note: &StateNote) -> String {
    let mut out = String::new();
    for limit in TEXT_LIMITS {
        let state = match &note.state {
            SessionState::Failed { reason, detail } => SessionState::Failed {
                reason: clip(reason, limit.min(100)),
                detail: clip(detail, limit),
            },
            other => other.clone(),
        };
        let wire = Wire::State {
            from: note.from.clone(),
            session: note.session.clone(),
            epoch: note.epoch,
            state,
            last_error: note.last_error.as_deref().map(|e| clip(e, limit)),
        };
        out = serde_json::to_string(&wire).unwrap_or_default();
        if out.len() <= MAX_PAYLOAD {
            break;
        }
    }
    out
}

/// A resync request from `from`.
pub fn encode_resync(from: &str) -> String {
    serde_json::to_string(&Wire::Resync { from: from.into() }).unwrap_or_default()
}

/// A `ccr_state` payload.
pub fn decode(payload: &str) -> Result<Heard, DecodeError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(DecodeError::TooLarge(payload.len()));
    }
    Ok(match serde_json::from_str(payload)? {
        Wire::State {
            from,
            session,
            epoch,
            state,
            last_error,
        } => Heard::State(StateNote {
            from,
            session,
            epoch,
            state,
            last_error,
        }),
        Wire::Resync { from } => Heard::Resync { from },
    })
}

/// At most `max` bytes of `s`, cut at a character boundary, `…` marking a cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    if max < 4 {
        return String::new();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The latest payload of each session not yet sent, in the order the sessions were first
/// queued (pure). A newer state of a queued session replaces the older one in place;
/// past the bounds a new session's state is dropped and [`Queue::take_overflowed`] says so
/// (whoever sends then announces every session again).
#[derive(Debug)]
pub struct Queue {
    order: VecDeque<Arc<str>>,
    latest: HashMap<Arc<str>, String>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    overflowed: bool,
}

/// What [`Queue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued behind the others.
    Queued,
    /// Replaced the session's older state, still queued.
    Replaced,
    /// Over the bounds: dropped.
    Dropped,
}

impl Queue {
    /// An empty queue of at most `max_items` sessions and `max_bytes` of payloads.
    pub fn new(max_items: usize, max_bytes: usize) -> Self {
        Queue {
            order: VecDeque::new(),
            latest: HashMap::new(),
            bytes: 0,
            max_items,
            max_bytes,
            overflowed: false,
        }
    }

    /// Queue `payload` as `session`'s latest.
    pub fn push(&mut self, session: &Arc<str>, payload: String) -> Pushed {
        if let Some(old) = self.latest.get_mut(session) {
            let bytes = self.bytes - old.len() + payload.len();
            if bytes > self.max_bytes {
                // Its older state would stay queued: drop that too, and say so.
                self.bytes -= old.len();
                self.latest.remove(session);
                self.order.retain(|s| s != session);
                self.overflowed = true;
                return Pushed::Dropped;
            }
            self.bytes = bytes;
            *old = payload;
            return Pushed::Replaced;
        }
        if self.order.len() >= self.max_items || self.bytes + payload.len() > self.max_bytes {
            self.overflowed = true;
            return Pushed::Dropped;
        }
        self.bytes += payload.len();
        self.order.push_back(session.clone());
        self.latest.insert(session.clone(), payload);
        Pushed::Queued
    }

    /// The oldest queued payloads, up to `max_items` and about `max_bytes` (at least one).
    pub fn take(&mut self, max_items: usize, max_bytes: usize) -> Vec<(Arc<str>, String)> {
        let mut out = Vec::new();
        let mut size = 0;
        while out.len() < max_items {
            let Some(session) = self.order.front() else {
                break;
            };
            let len = self.latest.get(session).map_or(0, String::len);
            if !out.is_empty() && size + len > max_bytes {
                break;
            }
            let Some(session) = self.order.pop_front() else {
                break;
            };
            if let Some(payload) = self.latest.remove(&session) {
                size += payload.len();
                self.bytes -= payload.len();
                out.push((session, payload));
            }
        }
        out
    }

    /// Put back what could not be sent, first in line, except where a newer state was
    /// queued meanwhile (within the bounds; beyond, it is dropped as by [`Queue::push`]).
    pub fn requeue(&mut self, batch: Vec<(Arc<str>, String)>) {
        for (session, payload) in batch.into_iter().rev() {
            if self.latest.contains_key(&session) {
                continue;
            }
            if self.order.len() >= self.max_items || self.bytes + payload.len() > self.max_bytes {
                self.overflowed = true;
                continue;
            }
            self.bytes += payload.len();
            self.order.push_front(session.clone());
            self.latest.insert(session, payload);
        }
    }

    /// Whether something was dropped since the last call.
    pub fn take_overflowed(&mut self) -> bool {
        std::mem::take(&mut self.overflowed)
    }

    /// Sessions queued.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Most sessions whose state waits to be announced.
const OUTBOX_ITEMS: usize = 65_536;
/// Most bytes of payloads waiting.
const OUTBOX_BYTES: usize = 16 << 20;

/// The session states this instance has yet to announce: the supervisor pushes (never
/// waiting), the lease thread sends them (see `member::listen`).
#[derive(Debug)]
pub struct StateOutbox {
    queue: Mutex<Queue>,
    ready: Notify,
}

impl Default for StateOutbox {
    fn default() -> Self {
        StateOutbox {
            queue: Mutex::new(Queue::new(OUTBOX_ITEMS, OUTBOX_BYTES)),
            ready: Notify::new(),
        }
    }
}

impl StateOutbox {
    /// An empty outbox.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Queue `note` to be announced (replacing an older state of its session still queued).
    pub fn push(&self, note: &StateNote) {
        let payload = encode_state(note);
        let mut queue = self.queue.lock();
        let first = !queue.overflowed;
        let pushed = queue.push(&note.session, payload);
        drop(queue);
        if pushed == Pushed::Dropped && first {
            tracing::warn!(session_id = %note.session, "cluster: too many session states wait for the database; every state is announced again once they are sent");
        }
        self.ready.notify_one();
    }

    /// Resolves once something is queued (at once if something is).
    pub(crate) async fn wait(&self) {
        loop {
            if !self.queue.lock().is_empty() {
                return;
            }
            // `notify_one` keeps a permit when nobody waits: a push between the check
            // and this await is not missed.
            self.ready.notified().await;
        }
    }

    /// See [`Queue::take`].
    pub(crate) fn take(&self, max_items: usize, max_bytes: usize) -> Vec<(Arc<str>, String)> {
        self.queue.lock().take(max_items, max_bytes)
    }

    /// See [`Queue::requeue`].
    pub(crate) fn requeue(&self, batch: Vec<(Arc<str>, String)>) {
        self.queue.lock().requeue(batch);
    }

    /// See [`Queue::take_overflowed`].
    pub(crate) fn take_overflowed(&self) -> bool {
        self.queue.lock().take_overflowed()
    }
}

/// To the supervisor: another instance announced the state of a session it owns (not
/// held here): publish it as `session_state` and show it in `GET /v1/sessions`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StateElsewhere(pub StateNote);

/// To the supervisor: announce the state of every session held here again (a member
/// asked for it, or states were dropped from the outbox).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AnnounceStates;

#[cfg(test)]
mod tests;
