//! A queue of retained envelopes with the bytes they hold: what a session's
//! [`History`](super::History) and the readers' [`Recent`](super::Recent) window keep.

use std::collections::VecDeque;
use std::sync::Arc;

use super::Envelope;

/// Envelopes that a publish or a read let go, to be freed by the caller after it
/// releases the hub lock. Usually one or two, so kept inline: no allocation per event.
pub(super) type Evicted = smallvec::SmallVec<[Arc<Envelope>; 4]>;

/// A retained envelope with what eviction needs, so evicting never reads the
/// (long cold) envelope itself under the hub lock.
#[derive(Debug)]
pub(super) struct Kept {
    pub(super) seq: u64,
    pub(super) len: usize,
    pub(super) env: Arc<Envelope>,
}

/// Retained envelopes, oldest first, and their bytes of JSON: the queue behind a
/// session's history and behind the readers' window.
#[derive(Debug, Default)]
pub(super) struct Retained {
    pub(super) events: VecDeque<Kept>,
    pub(super) bytes: usize,
}

impl Retained {
    /// Keep `env` as the newest; returns the bytes it holds ([`Envelope::retained_len`]).
    pub(super) fn push_back(&mut self, env: &Arc<Envelope>) -> usize {
        let len = env.retained_len();
        self.bytes += len;
        self.events.push_back(Kept {
            seq: env.seq,
            len,
            env: env.clone(),
        });
        len
    }

    /// Give up the oldest.
    pub(super) fn pop_front(&mut self) -> Option<Kept> {
        let old = self.events.pop_front()?;
        self.bytes -= old.len;
        Some(old)
    }

    /// Over `max_events`, or over `max_bytes` while holding more than the newest
    /// (a single event larger than the bound is still kept).
    pub(super) fn over(&self, max_events: usize, max_bytes: usize) -> bool {
        self.events.len() > max_events || (self.bytes > max_bytes && self.events.len() > 1)
    }
}
