//! The wire log: an opt-in, totally ordered record of what crossed each
//! session's sockets, for checkers that must know which connection carried
//! which prompt, replay, cancel and answer (the chaos test, `ccr-chaos`).
//!
//! Records are appended under the simulator's one lock, in the same critical
//! section as the state change they describe, so their order is the order in
//! which the simulated worker saw things happen. The log is bounded: a reader
//! drains it with [`crate::SimHandle::take_wire`]; records that do not fit
//! are counted, never silently lost.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::Value;

/// One thing that happened on a session's wire.
#[derive(Clone, Debug, PartialEq)]
pub struct WireRecord {
    /// Position in the simulator-wide order (starts at 1, no gaps unless records overflowed).
    pub seq: u64,
    /// When it happened.
    pub at: Instant,
    /// Session id.
    pub session: String,
    /// What happened.
    pub event: WireEvent,
}

/// What a [`WireRecord`] describes.
#[derive(Clone, Debug, PartialEq)]
pub enum WireEvent {
    /// Connection `conn` became live; these outstanding prompts were re-sent on it first, in order.
    Attached {
        /// Simulator-wide connection number.
        conn: u64,
        /// Request ids replayed on it.
        replayed: Vec<String>,
    },
    /// Connection `conn` ended (closed, dropped, reset, replaced or stopped).
    Detached {
        /// Connection number.
        conn: u64,
    },
    /// A new prompt is tracked; it went out on `conn` when one was live, else it goes with the next replay.
    Prompted {
        /// The prompt's id.
        request_id: String,
        /// The live connection it was written to, if any.
        conn: Option<u64>,
    },
    /// The session withdrew a prompt: it is no longer tracked (nor replayed).
    Cancelled {
        /// The withdrawn prompt.
        request_id: String,
        /// The connection a `control_cancel_request` was written to; `None` when
        /// it was withdrawn while no connection was live, so no client was told
        /// (as when another client answered it meanwhile).
        conn: Option<u64>,
    },
    /// The client sent a `control_response` for `request_id` on `conn` (also for unknown or settled ids).
    Answered {
        /// The id it answers.
        request_id: String,
        /// Connection it arrived on.
        conn: u64,
        /// The frame's `response` object (`subtype`, `request_id`, and `response` or `error`).
        body: Value,
        /// True when the prompt was outstanding, i.e. this answer settled it.
        settled: bool,
    },
    /// An upgrade attempt was refused (HTTP status) or accepted and closed at once (close code).
    Rejected {
        /// The status or close code.
        code: u16,
    },
}

/// The bounded log itself (lives behind the simulator's lock).
#[derive(Debug)]
pub(crate) struct WireLog {
    records: VecDeque<WireRecord>,
    capacity: usize,
    next_seq: u64,
    overflowed: u64,
}

impl WireLog {
    /// An empty log holding at most `capacity` undrained records.
    pub(crate) fn new(capacity: usize) -> Self {
        WireLog {
            records: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 1,
            overflowed: 0,
        }
    }

    /// Append a record (counted as overflow when the log is full).
    pub(crate) fn push(&mut self, session: &str, event: WireEvent) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.records.len() >= self.capacity {
            self.overflowed += 1;
            return;
        }
        self.records.push_back(WireRecord {
            seq,
            at: Instant::now(),
            session: session.to_owned(),
            event,
        });
    }

    /// Everything recorded since the last drain, in order.
    pub(crate) fn drain(&mut self) -> Vec<WireRecord> {
        self.records.drain(..).collect()
    }

    /// Records dropped because the log was full.
    pub(crate) fn overflowed(&self) -> u64 {
        self.overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_numbered_drained_in_order_and_overflow_is_counted() {
        let mut log = WireLog::new(2);
        log.push("s", WireEvent::Detached { conn: 1 });
        log.push("s", WireEvent::Detached { conn: 2 });
        log.push("s", WireEvent::Detached { conn: 3 });
        assert_eq!(log.overflowed(), 1);
        let got: Vec<u64> = log.drain().iter().map(|r| r.seq).collect();
        assert_eq!(got, [1, 2]);
        log.push("s", WireEvent::Detached { conn: 4 });
        let got = log.drain();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].seq, 4,
            "the overflowed record keeps its number: the gap shows"
        );
    }
}
