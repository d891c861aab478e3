//! The prompts of one load-mode session, across its connections (pure): which wait for
//! an answer, which were answered, and what an answer to a request id means.
//!
//! Kept per session, not per connection, so a prompt sent on one connection and answered
//! on the next (after the supervisor holding it failed over) counts once, and an answer
//! delivered twice — by the old owner and again by the new — counts as a duplicate.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// The prompts of one session.
#[derive(Debug, Default)]
pub(crate) struct Book {
    /// Sent, not answered: when each was sent and its `control_request` frame (listed
    /// again in the next `initialize` reply, as a real CLI does).
    waiting: HashMap<String, (Instant, String)>,
    answered: HashSet<String>,
}

/// What an answer to a request id was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The first answer to a prompt sent at this time.
    First(Instant),
    /// A prompt already answered.
    Duplicate,
    /// No prompt of this session has that id.
    Unknown,
}

impl Book {
    /// Prompt `id` (its frame `frame`) was handed to the socket at `at`.
    pub(crate) fn sent(&mut self, id: String, frame: String, at: Instant) {
        self.waiting.insert(id, (at, frame));
    }

    /// An answer to `id` arrived.
    pub(crate) fn answer(&mut self, id: &str) -> Answer {
        match self.waiting.remove_entry(id) {
            Some((id, (at, _))) => {
                self.answered.insert(id);
                Answer::First(at)
            }
            None if self.answered.contains(id) => Answer::Duplicate,
            None => Answer::Unknown,
        }
    }

    /// The frames of the prompts still waiting, oldest first (for an `initialize` reply).
    pub(crate) fn pending_frames(&self) -> Vec<&str> {
        let mut w: Vec<&(Instant, String)> = self.waiting.values().collect();
        w.sort_by_key(|(at, _)| *at);
        w.into_iter().map(|(_, f)| f.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_answer_counts_once_then_as_a_duplicate() {
        let mut b = Book::default();
        let t = Instant::now();
        b.sent("p1".into(), "{1}".into(), t);
        assert_eq!(b.answer("p1"), Answer::First(t));
        assert_eq!(b.answer("p1"), Answer::Duplicate);
        assert_eq!(b.answer("p2"), Answer::Unknown);
        assert!(b.pending_frames().is_empty());
    }

    #[test]
    fn waiting_prompts_are_listed_oldest_first_until_answered() {
        let mut b = Book::default();
        let t = Instant::now();
        b.sent("late".into(), "{late}".into(), t + Duration::from_millis(5));
        b.sent("early".into(), "{early}".into(), t);
        assert_eq!(b.pending_frames(), ["{early}", "{late}"]);
        assert!(matches!(b.answer("early"), Answer::First(_)));
        assert_eq!(b.pending_frames(), ["{late}"]);
    }
}
