//! The shared session table: every state change happens here, under one short lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use parking_lot::{Mutex, MutexGuard};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::conn::WsConn;
use super::script::{Script, Step};
use super::wire::{WireEvent, WireLog, WireRecord};
use super::{InitializeMode, InterruptMode, SeenRequest, SimEvent, EVENT_CAPACITY};

/// State shared by the routes, the socket actors, the script runners and the handle.
pub(crate) struct Shared {
    state: Mutex<State>,
    events: broadcast::Sender<SimEvent>,
    /// Close a socket that has been silent this long.
    pub(crate) idle_timeout: Duration,
    /// Keep every client frame in [`Entry::received`] (off for long chaos runs, which use the wire log).
    pub(crate) keep_received: bool,
}

/// Everything behind the lock.
#[derive(Default)]
pub(crate) struct State {
    /// Per session id; created lazily, also for unknown ids (to count attempts).
    pub(crate) sessions: HashMap<String, Entry>,
    /// Every accepted connection still running, by connection number.
    pub(crate) conns: HashMap<u64, Addr<WsConn>>,
    next_conn: u64,
    /// The opt-in wire log (see [`super::wire`]).
    pub(crate) wire: Option<WireLog>,
}

/// One session id: configuration, script progress and what was recorded.
pub(crate) struct Entry {
    /// Expected bearer token; `None` means the session is unknown (never added or removed).
    pub(crate) token: Option<String>,
    pub(crate) script: Arc<[Step]>,
    pub(crate) run: RunState,
    /// Prompts sent and not yet answered or cancelled, in send order.
    pub(crate) outstanding: Vec<Outstanding>,
    pub(crate) mode: InterruptMode,
    pub(crate) received: Vec<Value>,
    /// The same frames as received, text exactly as sent (binary frames as a placeholder).
    pub(crate) received_raw: Vec<String>,
    pub(crate) posted: Vec<Value>,
    pub(crate) connections: u32,
    pub(crate) attempts: u32,
    pub(crate) last_headers: Option<SeenRequest>,
    pub(crate) live: Option<Live>,
    /// Fault injection: close the next `n` otherwise-accepted connects with `code`.
    pub(crate) reject: Option<(u16, u32)>,
    /// Fault injection: answer the next `n` upgrade attempts with HTTP `status` (never opens).
    pub(crate) refuse: Option<(u16, u32)>,
    pub(crate) paused: bool,
    /// Fault injection: frames from the client are lost (as if the connection died before
    /// the session read them): neither recorded nor acted on.
    pub(crate) deaf: bool,
    /// Replay outstanding prompts on every new connection (like CCR); off to prove that an
    /// `initialize` list alone tells the client.
    pub(crate) replay: bool,
    /// How this session answers the client's `initialize`.
    pub(crate) init_mode: InitializeMode,
    /// Each user message POSTed to `/events` is echoed on the socket this many times.
    pub(crate) echo_posts: u8,
    /// Uuids of POSTed user messages the script has not consumed yet (for interrupts).
    pub(crate) queued: Vec<String>,
    /// Bumped on every change a script runner may be waiting for.
    pub(crate) wake: watch::Sender<u64>,
}

/// Script progress; survives reconnects.
#[derive(Default)]
pub(crate) struct RunState {
    pub(crate) pos: usize,
    /// The prompt the script is blocked on, if any.
    pub(crate) current: Option<Current>,
    /// The last finished script prompt, consumed by [`Step::ToolResult`].
    pub(crate) last: Option<Finished>,
    pub(crate) user_msgs: u64,
    pub(crate) consumed: u64,
}

/// A prompt sent by a script step that is waiting for its outcome.
pub(crate) struct Current {
    pub(crate) pos: usize,
    pub(crate) request_id: String,
    pub(crate) tool_name: String,
    pub(crate) input: Value,
    pub(crate) tool_use_id: String,
    /// Sent by [`Step::ToolUse`]: a deny with `interrupt` ends the turn.
    pub(crate) realistic: bool,
    pub(crate) outcome: Option<Outcome>,
}

/// How a prompt ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// `success` answer with this `PermissionResult`.
    Answered(Value),
    /// `error` answer with this message.
    Failed(String),
    /// Withdrawn with `control_cancel_request`.
    Cancelled,
    /// The turn was interrupted.
    Interrupted,
}

/// A finished script prompt, for the tool result.
pub(crate) struct Finished {
    pub(crate) tool_name: String,
    pub(crate) input: Value,
    pub(crate) tool_use_id: String,
    pub(crate) outcome: Outcome,
}

/// A prompt frame kept for replay.
pub(crate) struct Outstanding {
    pub(crate) request_id: String,
    pub(crate) frame: String,
}

/// The session's current connection.
pub(crate) struct Live {
    pub(crate) conn_id: u64,
    pub(crate) addr: Addr<WsConn>,
}

/// Decision taken on an upgrade attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Become the live connection with this number.
    Accept(u64),
    /// Accept the upgrade, then close with this code.
    Reject(u16),
}

/// What a newly attached connection must do first.
pub(crate) struct Attached {
    /// Outstanding prompt frames to re-send, in order.
    pub(crate) replay: Vec<String>,
    /// The connection it replaced, to be closed.
    pub(crate) replaced: Option<Addr<WsConn>>,
}

impl Entry {
    fn unknown() -> Self {
        Entry {
            token: None,
            script: Arc::from(Vec::new()),
            run: RunState::default(),
            outstanding: Vec::new(),
            mode: InterruptMode::Answer,
            received: Vec::new(),
            received_raw: Vec::new(),
            posted: Vec::new(),
            connections: 0,
            attempts: 0,
            last_headers: None,
            live: None,
            reject: None,
            refuse: None,
            paused: false,
            deaf: false,
            replay: true,
            init_mode: InitializeMode::default(),
            echo_posts: 0,
            queued: Vec::new(),
            wake: watch::channel(0).0,
        }
    }

    /// Wake the script runner.
    pub(crate) fn bump(&self) {
        self.wake.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// True when `conn_id` is the live connection.
    pub(crate) fn is_live(&self, conn_id: u64) -> bool {
        self.live.as_ref().is_some_and(|l| l.conn_id == conn_id)
    }
}

impl State {
    /// Append to the wire log, if it is on.
    pub(crate) fn record(&mut self, session: &str, event: WireEvent) {
        if let Some(wire) = &mut self.wire {
            wire.push(session, event);
        }
    }

    /// The entry for `id`, created as unknown if needed.
    pub(crate) fn entry(&mut self, id: &str) -> &mut Entry {
        self.sessions
            .entry(id.to_owned())
            .or_insert_with(Entry::unknown)
    }
}

impl Shared {
    /// Empty table; `wire_capacity` turns the wire log on.
    pub(crate) fn new(
        idle_timeout: Duration,
        wire_capacity: Option<usize>,
        keep_received: bool,
    ) -> Self {
        let state = State {
            wire: wire_capacity.map(WireLog::new),
            ..State::default()
        };
        Shared {
            state: Mutex::new(state),
            events: broadcast::channel(EVENT_CAPACITY).0,
            idle_timeout,
            keep_received,
        }
    }

    /// Drain the wire log: the records since the last call and the overflow count so far.
    pub(crate) fn take_wire(&self) -> (Vec<WireRecord>, u64) {
        match &mut self.lock().wire {
            Some(wire) => (wire.drain(), wire.overflowed()),
            None => (Vec::new(), 0),
        }
    }

    /// Take the lock; never hold it across an `.await`.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Broadcast an event (call while holding the lock so events follow state order).
    pub(crate) fn emit(&self, event: SimEvent) {
        let _ = self.events.send(event);
    }

    /// A new event receiver.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SimEvent> {
        self.events.subscribe()
    }

    /// Add (or reset) a session; its script restarts at step 0.
    pub(crate) fn add_session(&self, id: &str, token: &str, script: Script) {
        let mut st = self.lock();
        let e = st.entry(id);
        e.token = Some(token.to_owned());
        e.script = Arc::from(script.0);
        e.run = RunState::default();
        e.outstanding.clear();
        e.bump();
    }

    /// Forget a session; returns its live connection, to be closed with 4001.
    pub(crate) fn remove_session(&self, id: &str) -> Option<Addr<WsConn>> {
        let mut st = self.lock();
        let e = st.sessions.get_mut(id)?;
        e.token = None;
        e.script = Arc::from(Vec::new());
        e.run = RunState::default();
        e.outstanding.clear();
        e.bump();
        e.live.as_ref().map(|l| l.addr.clone())
    }

    /// Run `f` on the entry for `id`, creating it if needed.
    pub(crate) fn with_entry<R>(&self, id: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
        f(self.lock().entry(id))
    }

    /// Run `f` on the entry for `id` if it exists.
    pub(crate) fn read<R>(&self, id: &str, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        self.lock().sessions.get(id).map(f)
    }

    /// Set the interrupt mode of `id`.
    pub(crate) fn set_interrupt_mode(&self, id: &str, mode: InterruptMode) {
        self.with_entry(id, |e| e.mode = mode);
    }

    /// The live connection of `id`.
    pub(crate) fn live_addr(&self, id: &str) -> Option<Addr<WsConn>> {
        self.read(id, |e| e.live.as_ref().map(|l| l.addr.clone()))
            .flatten()
    }

    /// Every accepted connection still running.
    pub(crate) fn all_conns(&self) -> Vec<Addr<WsConn>> {
        self.lock().conns.values().cloned().collect()
    }

    /// If upgrades of `id` are being refused, record the attempt and return the HTTP status.
    pub(crate) fn take_refusal(&self, id: &str, seen: &SeenRequest) -> Option<u16> {
        let mut st = self.lock();
        let e = st.sessions.get_mut(id)?;
        let status = match &mut e.refuse {
            Some((status, n)) if *n > 0 => {
                *n -= 1;
                *status
            }
            _ => return None,
        };
        e.attempts += 1;
        e.last_headers = Some(seen.clone());
        st.record(id, WireEvent::Rejected { code: status });
        self.emit(SimEvent::Rejected {
            session: id.to_owned(),
            code: status,
        });
        Some(status)
    }

    /// Decide what happens to an upgrade attempt, recording it.
    pub(crate) fn admit(&self, id: &str, seen: SeenRequest) -> Admission {
        let mut st = self.lock();
        let conn_id = st.next_conn + 1;
        let e = st.entry(id);
        e.attempts += 1;
        let bearer_ok = e.token.is_some() && seen.bearer == e.token;
        e.last_headers = Some(seen);
        let code = if e.token.is_none() {
            Some(4001)
        } else if !bearer_ok {
            Some(4003)
        } else {
            match &mut e.reject {
                Some((code, n)) if *n > 0 => {
                    *n -= 1;
                    Some(*code)
                }
                _ => None,
            }
        };
        match code {
            Some(code) => {
                st.record(id, WireEvent::Rejected { code });
                self.emit(SimEvent::Rejected {
                    session: id.to_owned(),
                    code,
                });
                Admission::Reject(code)
            }
            None => {
                st.next_conn = conn_id;
                Admission::Accept(conn_id)
            }
        }
    }

    /// Make `conn_id` the live connection of `id`; `None` if the session vanished meanwhile.
    pub(crate) fn attach(&self, id: &str, conn_id: u64, addr: Addr<WsConn>) -> Option<Attached> {
        let mut st = self.lock();
        let e = st.sessions.get_mut(id).filter(|e| e.token.is_some())?;
        let replaced = e
            .live
            .replace(Live {
                conn_id,
                addr: addr.clone(),
            })
            .map(|old| old.addr);
        e.connections += 1;
        let replay = if e.replay {
            e.outstanding.iter().map(|o| o.frame.clone()).collect()
        } else {
            Vec::new()
        };
        let replayed = if e.replay {
            e.outstanding.iter().map(|o| o.request_id.clone()).collect()
        } else {
            Vec::new()
        };
        e.bump();
        st.conns.insert(conn_id, addr);
        st.record(
            id,
            WireEvent::Attached {
                conn: conn_id,
                replayed,
            },
        );
        self.emit(SimEvent::Connected {
            session: id.to_owned(),
            connection: conn_id,
        });
        Some(Attached { replay, replaced })
    }

    /// Forget connection `conn_id` of `id` (it stopped).
    pub(crate) fn detach(&self, id: &str, conn_id: u64) {
        let mut st = self.lock();
        st.conns.remove(&conn_id);
        st.record(id, WireEvent::Detached { conn: conn_id });
        if let Some(e) = st.sessions.get_mut(id) {
            if e.is_live(conn_id) {
                e.live = None;
                e.bump();
            }
        }
        self.emit(SimEvent::Disconnected {
            session: id.to_owned(),
            connection: conn_id,
        });
    }
}
