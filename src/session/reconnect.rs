//! Reconnect policy (pure): what to do after a connection attempt ends.
//!
//! Follows the reference client (PROTOCOL §1) — 4003 is permanent, 4001 is
//! retried a few times with a growing delay, a transient drop is retried after
//! a fixed delay — except that attempts that never open are retried forever
//! with capped exponential backoff. Every delay is jittered so that thousands
//! of sessions dropped at once do not come back in the same instant.

use std::time::Duration;

use crate::config::ReconnectConfig;

/// Close code: unauthorized (permanent).
pub const CLOSE_UNAUTHORIZED: u16 = 4003;
/// Close code: session not found (possibly transient right after creation).
pub const CLOSE_NOT_FOUND: u16 = 4001;

/// How a connection attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The socket opened and later closed, with the peer's close code if any.
    Closed {
        /// The close code from the peer's Close frame.
        code: Option<u16>,
    },
    /// The attempt never opened (refused, handshake error, timeout, no token).
    NeverOpened,
    /// The response watchdog fired: nothing arrived after the supervisor sent something,
    /// so the open socket is presumed dead and dropped by us.
    Watchdog,
}

/// Pause before reconnecting after the watchdog fired (the reference client's 500 ms).
pub const WATCHDOG_PAUSE: Duration = Duration::from_millis(500);

/// Why a session will not be reconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GiveUp {
    /// Close 4003.
    Unauthorized,
    /// Close 4001 more often than `not_found_attempts`.
    SessionNotFound,
}

impl GiveUp {
    /// Human-readable reason for state reports.
    pub fn describe(self) -> &'static str {
        match self {
            GiveUp::Unauthorized => "unauthorized: server closed with 4003",
            GiveUp::SessionNotFound => "session not found: close 4001 retry budget spent",
        }
    }
}

/// The policy's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Try again after `delay`; `attempt` counts attempts since the last good connection.
    Retry {
        /// How long to wait.
        delay: Duration,
        /// 1-based attempt number.
        attempt: u32,
    },
    /// Do not reconnect.
    GiveUp(GiveUp),
}

/// Counters of the reconnect policy for one session.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    cfg: ReconnectConfig,
    /// Attempts since the last connection that opened (0 = none pending).
    attempt: u32,
    /// Consecutive 4001 closes since the last connection that received a frame.
    not_found: u32,
    /// Whether any connection of this session ever opened.
    ever_opened: bool,
    /// Failed attempts since we left the fixed-delay phase.
    backoff_step: u32,
}

impl ReconnectPolicy {
    /// A fresh policy.
    pub fn new(cfg: ReconnectConfig) -> Self {
        Self {
            cfg,
            attempt: 0,
            not_found: 0,
            ever_opened: false,
            backoff_step: 0,
        }
    }

    /// The socket opened: transient counters reset (the 4001 counter resets on the first frame).
    pub fn on_open(&mut self) {
        self.attempt = 0;
        self.backoff_step = 0;
        self.ever_opened = true;
    }

    /// The first frame arrived on this connection: the session exists.
    pub fn on_first_frame(&mut self) {
        self.not_found = 0;
    }

    /// Decide what to do after an attempt ended. `unit` is a random number in `[0, 1)`.
    pub fn on_end(&mut self, ended: Ended, unit: f64) -> Next {
        if ended == Ended::Watchdog {
            // Like the reference: counters reset, back after a short fixed pause.
            self.attempt = 1;
            self.not_found = 0;
            self.backoff_step = 0;
            return Next::Retry {
                delay: WATCHDOG_PAUSE,
                attempt: 1,
            };
        }
        self.attempt = self.attempt.saturating_add(1);
        let base = match ended {
            Ended::Closed {
                code: Some(CLOSE_UNAUTHORIZED),
            } => return Next::GiveUp(GiveUp::Unauthorized),
            Ended::Closed {
                code: Some(CLOSE_NOT_FOUND),
            } => {
                self.not_found += 1;
                if self.not_found > self.cfg.not_found_attempts {
                    return Next::GiveUp(GiveUp::SessionNotFound);
                }
                self.cfg.not_found_delay.saturating_mul(self.not_found)
            }
            Ended::Closed { .. } => {
                // A drop after being connected: the reference's fixed delay.
                self.not_found = 0;
                self.cfg.transient_delay
            }
            Ended::NeverOpened
                if self.ever_opened && self.attempt <= self.cfg.transient_attempts =>
            {
                // Still within the reference's "5 attempts at 2 s" after a drop.
                self.cfg.transient_delay
            }
            Ended::Watchdog | Ended::NeverOpened => {
                let step = self.backoff_step.min(30);
                self.backoff_step += 1;
                self.cfg
                    .backoff_initial
                    .saturating_mul(1u32 << step)
                    .min(self.cfg.backoff_max)
            }
        };
        Next::Retry {
            delay: jitter(base, self.cfg.jitter, unit).min(self.cfg.backoff_max.max(base)),
            attempt: self.attempt,
        }
    }
}

/// Spread `base` uniformly over `base × [1 - fraction, 1 + fraction)`.
pub fn jitter(base: Duration, fraction: f64, unit: f64) -> Duration {
    let fraction = fraction.clamp(0.0, 1.0);
    let factor = 1.0 - fraction + 2.0 * fraction * unit.clamp(0.0, 1.0);
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_reconnects_after_a_short_pause_with_counters_reset() {
        let mut p = no_jitter();
        p.on_open();
        for _ in 0..3 {
            p.on_end(Ended::NeverOpened, 0.5);
        }
        assert_eq!(
            p.on_end(Ended::Watchdog, 0.5),
            Next::Retry {
                delay: WATCHDOG_PAUSE,
                attempt: 1
            }
        );
        assert!(matches!(
            p.on_end(Ended::Closed { code: None }, 0.5),
            Next::Retry { attempt: 2, .. }
        ));
    }

    fn no_jitter() -> ReconnectPolicy {
        ReconnectPolicy::new(ReconnectConfig {
            jitter: 0.0,
            ..ReconnectConfig::default()
        })
    }

    fn delay(n: Next) -> Duration {
        match n {
            Next::Retry { delay, .. } => delay,
            Next::GiveUp(g) => panic!("gave up: {g:?}"),
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn unauthorized_is_permanent() {
        let mut p = no_jitter();
        p.on_open();
        assert_eq!(
            p.on_end(Ended::Closed { code: Some(4003) }, 0.5),
            Next::GiveUp(GiveUp::Unauthorized)
        );
    }

    #[test]
    fn not_found_retries_three_times_with_growing_delay() {
        let mut p = no_jitter();
        let mut delays = vec![];
        for _ in 0..3 {
            p.on_open(); // the upgrade succeeds, then the server closes 4001
            delays.push(delay(p.on_end(Ended::Closed { code: Some(4001) }, 0.5)));
        }
        assert_eq!(delays, vec![S(2), S(4), S(6)]);
        p.on_open();
        assert_eq!(
            p.on_end(Ended::Closed { code: Some(4001) }, 0.5),
            Next::GiveUp(GiveUp::SessionNotFound)
        );
    }

    #[test]
    fn not_found_budget_resets_once_the_session_spoke() {
        let mut p = no_jitter();
        for _ in 0..3 {
            p.on_open();
            delay(p.on_end(Ended::Closed { code: Some(4001) }, 0.5));
        }
        p.on_open();
        p.on_first_frame();
        assert_eq!(
            delay(p.on_end(Ended::Closed { code: Some(4001) }, 0.5)),
            S(2)
        );
    }

    #[test]
    fn transient_drop_then_fixed_delay_then_backoff_forever() {
        let mut p = no_jitter();
        p.on_open();
        assert_eq!(
            p.on_end(Ended::Closed { code: Some(1006) }, 0.5),
            Next::Retry {
                delay: S(2),
                attempt: 1
            }
        );
        let mut delays = vec![];
        for _ in 0..12 {
            delays.push(delay(p.on_end(Ended::NeverOpened, 0.5)));
        }
        // attempts 2..=5 at the reference's 2 s, then 1, 2, 4, ... capped at 60 s
        assert_eq!(
            delays,
            vec![
                S(2),
                S(2),
                S(2),
                S(2),
                S(1),
                S(2),
                S(4),
                S(8),
                S(16),
                S(32),
                S(60),
                S(60)
            ]
        );
        p.on_open();
        assert_eq!(
            p.on_end(Ended::Closed { code: None }, 0.5),
            Next::Retry {
                delay: S(2),
                attempt: 1
            },
            "counters reset on every successful open"
        );
    }

    #[test]
    fn never_opened_session_never_gives_up() {
        let mut p = no_jitter();
        for i in 0..100u32 {
            match p.on_end(Ended::NeverOpened, 0.5) {
                Next::Retry { attempt, delay } => {
                    assert_eq!(attempt, i + 1);
                    assert!(delay <= S(60));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        assert_eq!(jitter(S(2), 0.5, 0.0), S(1));
        assert_eq!(jitter(S(2), 0.5, 0.5), S(2));
        assert!(jitter(S(2), 0.5, 0.999_999) < S(3));
        assert_eq!(jitter(S(2), 0.0, 0.9), S(2));
        let mut p = ReconnectPolicy::new(ReconnectConfig::default());
        p.on_open();
        let d = delay(p.on_end(Ended::Closed { code: Some(1001) }, 0.0));
        assert_eq!(d, S(1));
    }
}
