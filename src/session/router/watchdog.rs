//! The response watchdog, as plain data.

use std::time::{Duration, Instant};

/// The response watchdog (PROTOCOL §6): after the supervisor sends something, the session
/// must say something (anything) within the timeout, or the connection is presumed dead.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    /// When the oldest unanswered send happened (`None`: nothing awaited).
    waiting_since: Option<Instant>,
}

impl Watchdog {
    /// The supervisor sent something.
    pub fn sent(&mut self, now: Instant) {
        self.waiting_since.get_or_insert(now);
    }

    /// The session said something (no clock read: this runs for every frame).
    pub fn heard(&mut self) {
        self.waiting_since = None;
    }

    /// Time left before an unanswered send expires (`None`: nothing awaited).
    pub fn left(&self, now: Instant, timeout: Duration) -> Option<Duration> {
        let since = self.waiting_since?;
        Some(timeout.saturating_sub(now.saturating_duration_since(since)))
    }

    /// True once `timeout` has passed since an unanswered send (`timeout` zero: never).
    pub fn expired(&self, now: Instant, timeout: Duration) -> bool {
        !timeout.is_zero()
            && self
                .waiting_since
                .is_some_and(|since| now.saturating_duration_since(since) >= timeout)
    }
}
