//! The readers' window of recent events (pure data structure): what the live
//! cursor readers of the operator event stream have yet to look at.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::retained::{Evicted, Retained};
use super::Envelope;

/// The most recent events in publication order, for live readers that each keep
/// their own cursor (the last sequence number they have looked at). It holds
/// only what some reader has yet to look at, bounded by count and by bytes of
/// JSON (the newest event is always kept), so its size follows the slowest
/// reader's lag. A reader whose next event was already dropped here has lagged.
#[derive(Debug)]
pub struct Recent {
    kept: Retained,
    max_events: usize,
    max_bytes: usize,
    /// Each joined reader's cursor, as last reported, by reader id.
    cursors: HashMap<u64, u64>,
    /// How many readers sit at each cursor; the first key is the slowest reader's.
    /// Both are O(log n) per read: with thousands of readers, a scan of every
    /// reader on every read (under the lock that publishing takes too) made one
    /// burst of events cost O(readers²), and answers waited behind it.
    at: BTreeMap<u64, usize>,
    next_reader: u64,
}

/// What a live reader gets from [`Recent::read`].
#[derive(Debug)]
pub enum Read {
    /// Events after the cursor (possibly none), and the new cursor: the last
    /// sequence number looked at, delivered or filtered out.
    Events(Vec<Arc<Envelope>>, u64),
    /// The reader's next events were already dropped: this many it can never get.
    Lagged(u64),
}

impl Recent {
    /// Empty, holding at most `max_events` events and `max_bytes` bytes of JSON.
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            kept: Retained::default(),
            max_events: max_events.max(1),
            max_bytes,
            cursors: HashMap::new(),
            at: BTreeMap::new(),
            next_reader: 0,
        }
    }

    /// A new reader whose cursor is `cursor`; returns its id. The window keeps
    /// what it has yet to look at from now on.
    pub fn join(&mut self, cursor: u64) -> u64 {
        let id = self.next_reader;
        self.next_reader += 1;
        self.cursors.insert(id, cursor);
        *self.at.entry(cursor).or_insert(0) += 1;
        id
    }

    /// One reader fewer at `cursor`.
    fn unmark(&mut self, cursor: u64) {
        if let Some(n) = self.at.get_mut(&cursor) {
            *n -= 1;
            if *n == 0 {
                self.at.remove(&cursor);
            }
        }
    }

    /// Reader `id` has looked at everything up to `cursor`: events that no
    /// reader needs any more are moved to `evicted`.
    pub fn advance(&mut self, id: u64, cursor: u64, evicted: &mut Evicted) {
        let Some(old) = self.cursors.get_mut(&id) else {
            return;
        };
        if *old == cursor {
            return;
        }
        let old = std::mem::replace(old, cursor);
        self.unmark(old);
        *self.at.entry(cursor).or_insert(0) += 1;
        self.trim(evicted);
    }

    /// Reader `id` is gone; with no reader left the window empties.
    pub fn leave(&mut self, id: u64, evicted: &mut Evicted) {
        if let Some(cursor) = self.cursors.remove(&id) {
            self.unmark(cursor);
        }
        self.trim(evicted);
    }

    /// How many events the window holds now (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.kept.events.len()
    }

    /// Drop the events every reader has looked at (all of them when nobody reads).
    fn trim(&mut self, evicted: &mut Evicted) {
        let Some(&slowest) = self.at.keys().next() else {
            return self.clear(evicted);
        };
        while self.kept.events.front().is_some_and(|k| k.seq <= slowest) {
            if let Some(old) = self.kept.pop_front() {
                evicted.push(old.env);
            }
        }
    }

    /// Keep `env` (stamped after every event kept so far) if some reader will
    /// look at it; what no longer fits is moved to `evicted`, to be freed after
    /// the caller's lock. After a gap (events not pushed while nobody read) the
    /// window starts over at `env`.
    pub fn push(&mut self, env: &Arc<Envelope>, evicted: &mut Evicted) {
        if self.cursors.is_empty() {
            return;
        }
        if self
            .kept
            .events
            .back()
            .is_some_and(|k| k.seq + 1 != env.seq)
        {
            self.clear(evicted);
        }
        self.kept.push_back(env);
        while self.kept.over(self.max_events, self.max_bytes) {
            let Some(old) = self.kept.pop_front() else {
                break;
            };
            evicted.push(old.env);
        }
    }

    /// Drop every event (moved to `evicted`).
    fn clear(&mut self, evicted: &mut Evicted) {
        let kept = std::mem::take(&mut self.kept);
        evicted.extend(kept.events.into_iter().map(|k| k.env));
    }

    /// Up to `max` events after `cursor` (of one session, or all), looking at
    /// no more than `4 * max` events so that a filtered reader never holds the
    /// lock for long.
    pub fn read(&self, cursor: u64, session: Option<&str>, max: usize) -> Read {
        let Some(front) = self.kept.events.front().map(|k| k.seq) else {
            return Read::Events(Vec::new(), cursor);
        };
        if cursor.saturating_add(1) < front {
            return Read::Lagged(front - cursor - 1);
        }
        // Sequence numbers here are consecutive: the cursor's successor is at this index.
        let start = usize::try_from(cursor + 1 - front).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut last = cursor;
        for k in self
            .kept
            .events
            .iter()
            .skip(start)
            .take(max.saturating_mul(4))
        {
            if out.len() == max {
                break;
            }
            last = k.seq;
            if session.is_none_or(|id| id == k.env.event.session_id()) {
                out.push(k.env.clone());
            }
        }
        Read::Events(out, last)
    }
}

#[cfg(test)]
mod tests;
