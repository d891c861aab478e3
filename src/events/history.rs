//! Sequencing and bounded per-session history of events (pure data structure).
//!
//! Every event gets a process-wide, strictly increasing sequence number and is
//! serialized once. Each session keeps its recent events, bounded by count
//! AND bytes, and all sessions together by a total byte budget (the globally
//! oldest event goes first, found in O(1) from a queue of every retained
//! event in publication order), so a client can resume with `after=SEQ` or page a
//! transcript; what was evicted is remembered as a high-water mark so a resume
//! that falls into the gap is answered with an explicit `lagged`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use super::envelope::Prepared;
use super::retained::{Evicted, Retained};
use super::{Envelope, Event};

/// History bounds: per session, and for all sessions together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// At most this many events per session.
    pub events: usize,
    /// At most this many bytes of event JSON per session.
    pub bytes: usize,
    /// At most this many bytes of event JSON in all histories together.
    pub total_bytes: usize,
}

/// One session's retained events, and how far eviction got.
#[derive(Debug, Default)]
struct SessionHistory {
    kept: Retained,
    /// Highest sequence number evicted so far (0 = nothing evicted).
    evicted_up_to: u64,
}

/// What a resuming reader gets from history.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Retained events after the requested point, oldest first.
    pub events: Vec<Arc<Envelope>>,
    /// Set when events after the requested point were already evicted:
    /// the first sequence number still available (resume from there).
    pub lagged_from: Option<u64>,
    /// The requested point is not one this history gave (another instance's, or an
    /// earlier run's): `events` is everything retained, and `lagged_from` says where it
    /// starts.
    pub unknown_point: bool,
}

/// Sequence counter plus the per-session histories.
#[derive(Debug)]
pub struct History {
    limits: HistoryLimits,
    /// The first sequence number this history gives (its run's base, plus one).
    first_seq: u64,
    next_seq: u64,
    /// Session id → its slot in `slots`.
    index: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
    /// Per-session histories; `None` is a free slot (its session was forgotten).
    slots: Vec<Option<SessionHistory>>,
    free: Vec<usize>,
    /// Bytes of event JSON retained in all sessions.
    total_bytes: usize,
    /// Events retained in all sessions.
    retained: usize,
    /// `(seq, slot)` of every event retained when it was published, oldest
    /// first. An entry goes stale when its session drops the event on its own
    /// limits or is forgotten: it is then older than its slot's oldest event
    /// (a reused slot only holds newer ones). Stale entries are skipped when
    /// they reach the front, and swept out when they outnumber live ones.
    /// 16 bytes per retained event, not counted in `total_bytes` (like the
    /// per-session queues' own entries).
    order: VecDeque<(u64, usize)>,
}

impl History {
    /// Empty history with these bounds, numbering its events from 1.
    pub fn new(limits: HistoryLimits) -> Self {
        Self::numbered_after(limits, 0)
    }

    /// Empty history with these bounds, numbering its events from `base + 1`.
    pub fn numbered_after(limits: HistoryLimits, base: u64) -> Self {
        Self {
            limits,
            first_seq: base + 1,
            next_seq: base + 1,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            total_bytes: 0,
            retained: 0,
            order: VecDeque::new(),
        }
    }

    /// Bytes of event JSON retained in all sessions.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether `after` is a resume point this history could have given: 0 (everything),
    /// the point before its first event, or one of its events' numbers.
    pub fn gave(&self, after: u64) -> bool {
        after == 0 || (self.first_seq - 1..self.next_seq).contains(&after)
    }

    /// Stamp, serialize and retain `event`.
    pub fn push(&mut self, event: Event, at: SystemTime) -> Arc<Envelope> {
        self.stamp(Prepared::new(event, at), &mut Evicted::new())
    }

    /// Give a prepared event the next sequence number and retain it. Evicted
    /// envelopes are moved to `evicted`, so the caller can free them after
    /// releasing its lock. Cheap: the JSON was built by `Prepared::new`, and
    /// `{"seq":N,` is formatted only where it is written out.
    pub fn stamp(&mut self, p: Prepared, evicted: &mut Evicted) -> Arc<Envelope> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let env = Arc::new(p.stamp(seq));
        let slot = self.slot_of(env.event.session_id());
        let h = self.slots[slot].get_or_insert_with(SessionHistory::default);
        self.total_bytes += h.kept.push_back(&env);
        self.retained += 1;
        self.order.push_back((seq, slot));
        while h.kept.over(self.limits.events, self.limits.bytes) {
            self.total_bytes -= evict_front(h, evicted);
            self.retained -= 1;
        }
        self.evict_oldest(seq, evicted);
        if self.order.len() > 2 * self.retained + 1024 {
            self.sweep();
        }
        env
    }

    /// The slot of `session`'s history, taken (a free one first, left for the
    /// caller to fill) if it has none.
    fn slot_of(&mut self, session: &str) -> usize {
        if let Some(&slot) = self.index.get(session) {
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.index.insert(Arc::from(session), slot);
        slot
    }

    /// Whether `(seq, slot)` of `order` is still retained.
    fn live(slots: &[Option<SessionHistory>], seq: u64, slot: usize) -> bool {
        slots[slot]
            .as_ref()
            .and_then(|h| h.kept.events.front())
            .is_some_and(|oldest| oldest.seq <= seq)
    }

    /// Drop the stale entries of `order`.
    fn sweep(&mut self) {
        let slots = &self.slots;
        self.order
            .retain(|&(seq, slot)| Self::live(slots, seq, slot));
    }

    /// Evict the globally oldest events until the total fits, never the one
    /// just stamped (`newest`), so a single huge event is still retained alone.
    fn evict_oldest(&mut self, newest: u64, evicted: &mut Evicted) {
        while self.total_bytes > self.limits.total_bytes {
            let Some(&(seq, slot)) = self.order.front() else {
                return;
            };
            if seq == newest {
                return;
            }
            self.order.pop_front();
            // Live, the globally oldest event is also its session's oldest.
            // Emptied, a session keeps its high-water mark (for `lagged`).
            if let Some(h) = self.slots[slot].as_mut() {
                if h.kept.events.front().is_some_and(|k| k.seq == seq) {
                    self.total_bytes -= evict_front(h, evicted);
                    self.retained -= 1;
                }
            }
        }
    }

    /// Events after `after` (of one session, or of all, merged in order).
    pub fn backlog(&self, session: Option<&str>, after: u64) -> Backlog {
        if !self.gave(after) {
            let mut all = self.backlog(session, 0);
            all.unknown_point = true;
            let first = all.events.first().map_or(self.next_seq, |e| e.seq);
            all.lagged_from = Some(all.lagged_from.map_or(first, |f| f.min(first)));
            return all;
        }
        let mut out = Backlog::default();
        let lag = |h: &SessionHistory, out: &mut Backlog| {
            if h.evicted_up_to > after {
                let first = h.kept.events.front().map_or(self.next_seq, |k| k.seq);
                out.lagged_from = Some(out.lagged_from.map_or(first, |f: u64| f.min(first)));
            }
            out.events.extend(
                h.kept
                    .events
                    .iter()
                    .filter(|k| k.seq > after)
                    .map(|k| k.env.clone()),
            );
        };
        match session {
            Some(id) => {
                if let Some(h) = self
                    .index
                    .get(id)
                    .and_then(|&slot| self.slots[slot].as_ref())
                {
                    lag(h, &mut out);
                }
            }
            None => {
                for h in self.slots.iter().flatten() {
                    lag(h, &mut out);
                }
                out.events.sort_by_key(|e| e.seq);
            }
        }
        out
    }

    /// Forget a session's history (it was removed).
    pub fn forget(&mut self, session: &str) {
        let Some(slot) = self.index.remove(session) else {
            return;
        };
        if let Some(h) = self.slots[slot].take() {
            self.total_bytes -= h.kept.bytes;
            self.retained -= h.kept.events.len();
        }
        self.free.push(slot);
    }
}

/// Move a session's oldest event to `evicted`; returns its bytes.
fn evict_front(h: &mut SessionHistory, evicted: &mut Evicted) -> usize {
    let Some(old) = h.kept.pop_front() else {
        return 0;
    };
    h.evicted_up_to = old.seq;
    evicted.push(old.env);
    old.len
}

#[cfg(test)]
mod tests;
