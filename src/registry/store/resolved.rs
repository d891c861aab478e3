//! What the store remembers of finished prompts: just enough to match a replay (pure).
//!
//! A finished prompt (answered and written once, or withdrawn) is kept as a compact
//! [`Resolved`] record — no tool input — so that a replay is never shown again and an
//! answered one is sent again. The memory is bounded globally by count and by bytes;
//! the oldest records go first. A session that lost records that way is marked
//! *incomplete*: a prompt it sends that the store does not know may still be in the
//! ledger, so the registry asks the ledger before showing it as new.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::ConnId;

/// Answers up to this size are kept with their record for a quick resend; larger ones
/// are read back from the ledger when the session replays their prompt.
pub const KEPT_FRAME_MAX: usize = 16 * 1024;

/// Bytes charged per record besides its id and frame (map and queue slots).
const RECORD_OVERHEAD: usize = 96;

/// Default bounds of [`ResolvedMemory`]: records and bytes, all sessions together
/// (the defaults of `[supervisor] resolved_prompts` and `resolved_prompts_bytes`).
pub const DEFAULT_MAX_RECORDS: usize = crate::config::DEFAULT_RESOLVED_PROMPTS;
/// See [`DEFAULT_MAX_RECORDS`].
pub const DEFAULT_MAX_BYTES: usize = crate::config::DEFAULT_RESOLVED_PROMPTS_BYTES;

/// How a finished prompt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Withdrawn by the session (or voided): a replay is ignored.
    Cancelled,
    /// Answered; `frame` is the exact answer when small enough to keep.
    Answered {
        /// The `control_response` written, if kept ([`KEPT_FRAME_MAX`]).
        frame: Option<Arc<str>>,
    },
}

/// One remembered finished prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// How it ended.
    pub ending: Ending,
    /// The connection the answer was last written on (`None`: restored after a restart,
    /// so any replay gets it again).
    pub written_on: Option<ConnId>,
}

#[derive(Debug, Default)]
struct SessionMemory {
    records: HashMap<Arc<str>, Resolved>,
    incomplete: bool,
}

/// The bounded memory of finished prompts, all sessions together.
#[derive(Debug)]
pub struct ResolvedMemory {
    sessions: HashMap<Arc<str>, SessionMemory>,
    order: VecDeque<(Arc<str>, Arc<str>)>,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
}

impl Default for ResolvedMemory {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RECORDS, DEFAULT_MAX_BYTES)
    }
}

fn cost(request_id: &str, ending: &Ending) -> usize {
    let frame = match ending {
        Ending::Answered { frame: Some(f) } => f.len(),
        _ => 0,
    };
    RECORD_OVERHEAD + request_id.len() + frame
}

impl ResolvedMemory {
    /// A memory of at most `max_records` records and `max_bytes` bytes (both at least 1).
    pub fn new(max_records: usize, max_bytes: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_records: max_records.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Remember `request_id` as finished; the oldest records go when over a bound.
    pub fn insert(&mut self, session: &Arc<str>, request_id: &str, resolved: Resolved) {
        let ending = match resolved.ending {
            Ending::Answered { frame: Some(f) } if f.len() > KEPT_FRAME_MAX => {
                Ending::Answered { frame: None }
            }
            other => other,
        };
        let id: Arc<str> = Arc::from(request_id);
        let bytes = cost(&id, &ending);
        let records = &mut self.sessions.entry(session.clone()).or_default().records;
        let resolved = Resolved { ending, ..resolved };
        if let Some(old) = records.insert(id.clone(), resolved) {
            self.bytes -= cost(&id, &old.ending);
        } else {
            self.order.push_back((session.clone(), id));
        }
        self.bytes += bytes;
        self.evict();
    }

    fn evict(&mut self) {
        while self.order.len() > self.max_records || self.bytes > self.max_bytes {
            let Some((session, id)) = self.order.pop_front() else {
                break;
            };
            if let Some(s) = self.sessions.get_mut(&session) {
                if let Some(old) = s.records.remove(&id) {
                    self.bytes -= cost(&id, &old.ending);
                    s.incomplete = true;
                }
            }
        }
    }

    /// The record of `request_id`, if remembered.
    pub fn get(&self, session: &str, request_id: &str) -> Option<&Resolved> {
        self.sessions.get(session)?.records.get(request_id)
    }

    /// Note that the answer of `request_id` was written on `conn`.
    pub fn written(&mut self, session: &str, request_id: &str, conn: ConnId) -> bool {
        match self
            .sessions
            .get_mut(session)
            .and_then(|s| s.records.get_mut(request_id))
        {
            Some(r) => {
                r.written_on = Some(conn);
                true
            }
            None => false,
        }
    }

    /// True when records of `session` were dropped (or never loaded): an unknown prompt of
    /// it may still be in the ledger.
    pub fn incomplete(&self, session: &str) -> bool {
        self.sessions.get(session).is_some_and(|s| s.incomplete)
    }

    /// Mark `session` incomplete (the restore did not load all of its history).
    pub fn mark_incomplete(&mut self, session: &Arc<str>) {
        self.sessions.entry(session.clone()).or_default().incomplete = true;
    }

    /// Forget a session's records (it was removed).
    pub fn forget(&mut self, session: &str) {
        if let Some(s) = self.sessions.remove(session) {
            for (id, r) in s.records {
                self.bytes -= cost(&id, &r.ending);
            }
            self.order.retain(|(sess, _)| &**sess != session);
        }
    }

    /// Records held, all sessions.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Bytes charged for the records held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(frame: &str) -> Resolved {
        Resolved {
            ending: Ending::Answered {
                frame: Some(Arc::from(frame)),
            },
            written_on: Some(1),
        }
    }

    #[test]
    fn bounded_by_count_oldest_first_and_the_session_marked_incomplete() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut m = ResolvedMemory::new(3, usize::MAX);
        m.insert(&a, "1", answered("x"));
        m.insert(&b, "2", answered("y"));
        m.insert(&a, "3", answered("z"));
        assert!(!m.incomplete("a") && !m.incomplete("b"));
        m.insert(&b, "4", answered("w"));
        assert_eq!(m.len(), 3);
        assert!(m.get("a", "1").is_none(), "oldest went first");
        assert!(m.incomplete("a"), "a lost a record");
        assert!(!m.incomplete("b"));
        assert!(m.get("a", "3").is_some() && m.get("b", "4").is_some());
    }

    #[test]
    fn bounded_by_bytes_and_large_answers_are_not_kept() {
        let s: Arc<str> = Arc::from("s");
        let big = "x".repeat(KEPT_FRAME_MAX + 1);
        let mut m = ResolvedMemory::new(usize::MAX, 3 * (RECORD_OVERHEAD + 1 + 10));
        m.insert(&s, "b", answered(&big));
        assert_eq!(
            m.get("s", "b").unwrap().ending,
            Ending::Answered { frame: None },
            "read back from the ledger on replay"
        );
        for id in ["1", "2", "3"] {
            m.insert(&s, id, answered(&"y".repeat(10)));
        }
        assert!(m.bytes() <= 3 * (RECORD_OVERHEAD + 1 + 10));
        assert!(m.get("s", "b").is_none(), "evicted for bytes");
        m.forget("s");
        assert_eq!((m.len(), m.bytes()), (0, 0));
    }

    #[test]
    fn a_resend_updates_where_it_was_written() {
        let s: Arc<str> = Arc::from("s");
        let mut m = ResolvedMemory::default();
        m.insert(
            &s,
            "r",
            Resolved {
                ending: Ending::Cancelled,
                written_on: None,
            },
        );
        assert!(m.written("s", "r", 9));
        assert_eq!(m.get("s", "r").unwrap().written_on, Some(9));
        assert!(!m.written("s", "nope", 9));
    }
}
