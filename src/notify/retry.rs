//! What an attempt's result means and when the next one goes (pure): 2xx is delivered, a
//! 5xx, a 429 (rate limited: Slack allows about one message a second) or 408, or a
//! transport failure (timeout, refused, reset) is retried after a capped, jittered
//! exponential backoff; anything else (other 4xx, a redirect) is given up at once.

use std::time::Duration;

use crate::config::NotifyDelivery;

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered this HTTP status.
    Status(u16),
    /// No answer: timeout, connection refused or reset, name not found.
    Transport(Transport),
}

/// A transport failure, coarsely (never the error's text: it may name the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The attempt's `timeout` passed.
    Timeout,
    /// Connecting failed (refused, unreachable, name not found).
    Connect,
    /// Anything else on the way (reset, malformed answer).
    Other,
}

impl Transport {
    /// Its name in log lines.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Timeout => "timeout",
            Transport::Connect => "connect",
            Transport::Other => "transport",
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered: count it sent.
    Delivered,
    /// Failed, worth another attempt (5xx, 429, 408, transport).
    Retry,
    /// Failed for good (other 4xx, 3xx): the receiver refuses it; retrying would not help.
    GiveUp,
}

/// The verdict on one attempt.
pub fn classify(attempt: Attempt) -> Verdict {
    match attempt {
        Attempt::Status(s) if (200..300).contains(&s) => Verdict::Delivered,
        Attempt::Status(s) if (500..600).contains(&s) => Verdict::Retry,
        // Too many requests, request timeout: the receiver would take it later.
        Attempt::Status(429 | 408) => Verdict::Retry,
        Attempt::Status(_) => Verdict::GiveUp,
        Attempt::Transport(_) => Verdict::Retry,
    }
}

/// The pause before retry number `retry` (1 = after the first attempt):
/// `backoff_initial × 2^(retry-1)`, capped at `backoff_max`, then jittered within its upper
/// half by `unit` (uniform in 0..1): never above `backoff_max`, never below half the step.
pub fn backoff(delivery: &NotifyDelivery, retry: u32, unit: f64) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1));
    let step = delivery
        .backoff_initial
        .saturating_mul(factor)
        .min(delivery.backoff_max);
    step / 2 + step.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
}
