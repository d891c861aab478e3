//! Reconnect policy (pure): what to do after a connection attempt ends.
//!
//! Follows the reference client (PROTOCOL §1) — 4003 is permanent, 4001 is
//! retried a few times with a growing delay, a transient drop is retried after
//! a fixed delay — except that attempts that never open are retried forever
//! with capped exponential backoff. Every delay is jittered so that thousands
//! of sessions dropped at once do not come back in the same instant.
//!
//! In a cluster an attempt is made only under a valid lease ([`ReconnectPolicy::due`]):
//! opening a connection displaces whichever connection CCR had for the session, so an
//! instance whose lease has lapsed (it may already be another instance's) or is gone
//! waits, connecting nothing, until the lease is renewed ([`ReconnectPolicy::lease_renewed`])
//! or the session is let go.

use std::sync::Arc;
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

/// The session's lease as a connection attempt finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Not clustered, or this instance holds the lease and its local deadline is ahead.
    Valid,
    /// Clustered, and the lease is not held valid here now: lapsed (its deadline passed
    /// without a renewal: the database is out of reach, or the process was paused and
    /// another instance may own the session by now), or let go.
    NotValid,
}

/// What to do when a connection attempt is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Open the connection now.
    Connect,
    /// Open nothing: wait for the lease's renewal (or for the session to be let go).
    AwaitLease,
}

/// Counters of the reconnect policy for one session.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    /// Shared by every session (a copy each was 80 bytes of every session's memory).
    cfg: Arc<ReconnectConfig>,
    /// Attempts since the last connection that opened (0 = none pending).
    attempt: u32,
    /// Consecutive 4001 closes since the last connection that received a frame.
    not_found: u32,
    /// Whether any connection of this session ever opened.
    ever_opened: bool,
    /// Failed attempts since we left the fixed-delay phase.
    backoff_step: u32,
    /// An attempt came due while the lease was not valid: it waits for the renewal.
    awaiting_lease: bool,
}

impl ReconnectPolicy {
    /// A fresh policy.
    pub fn new(cfg: impl Into<Arc<ReconnectConfig>>) -> Self {
        Self {
            cfg: cfg.into(),
            attempt: 0,
            not_found: 0,
            ever_opened: false,
            backoff_step: 0,
            awaiting_lease: false,
        }
    }

    /// An attempt is due (the session started, a retry's delay ran out, or an attempt was
    /// about to open its socket) and the lease is `lease`: connect only under a valid one.
    /// An instance that reconnected on a lapsed lease would take the session's connection
    /// from its new owner (CCR keeps one per session), and be dropped when it learns it
    /// lost the lease, leaving the session with none.
    pub fn due(&mut self, lease: Lease) -> Attempt {
        self.awaiting_lease = lease == Lease::NotValid;
        if self.awaiting_lease {
            Attempt::AwaitLease
        } else {
            Attempt::Connect
        }
    }

    /// The lease may have been renewed, and is `lease` now: true when an attempt waited for
    /// it and is to be made now (nothing waited, or the lease is still not valid: false).
    pub fn lease_renewed(&mut self, lease: Lease) -> bool {
        if self.awaiting_lease && lease == Lease::Valid {
            self.awaiting_lease = false;
            return true;
        }
        false
    }

    /// Whether an attempt waits for the lease's renewal.
    pub fn is_awaiting_lease(&self) -> bool {
        self.awaiting_lease
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
    fn no_attempt_is_made_while_the_lease_is_not_valid_until_it_is_renewed() {
        let mut p = no_jitter();
        assert_eq!(p.due(Lease::Valid), Attempt::Connect, "held: connect");
        p.on_open();
        // The socket closed while the lease was lapsed (paused past it, or the database
        // out of reach): the retry comes due, and waits.
        assert!(matches!(
            p.on_end(Ended::Closed { code: Some(1000) }, 0.5),
            Next::Retry { .. }
        ));
        assert_eq!(p.due(Lease::NotValid), Attempt::AwaitLease);
        assert!(p.is_awaiting_lease());
        assert!(
            !p.lease_renewed(Lease::NotValid),
            "still lapsed: still nothing"
        );
        assert!(p.lease_renewed(Lease::Valid), "renewed: connect now");
        assert!(!p.is_awaiting_lease());
        assert!(
            !p.lease_renewed(Lease::Valid),
            "once: a second renewal finds nothing waiting"
        );
    }

    #[test]
    fn a_renewal_without_an_attempt_waiting_connects_nothing() {
        let mut p = no_jitter();
        assert!(!p.lease_renewed(Lease::Valid), "nothing was due");
        assert_eq!(p.due(Lease::Valid), Attempt::Connect);
        assert!(
            !p.lease_renewed(Lease::Valid),
            "the attempt went ahead: a renewal must not start another"
        );
        // Due under a lapsed lease, then due again under a valid one (a retry timer that
        // fired after the renewal): it connects then, and the renewal does not again.
        assert_eq!(p.due(Lease::NotValid), Attempt::AwaitLease);
        assert_eq!(p.due(Lease::Valid), Attempt::Connect);
        assert!(!p.lease_renewed(Lease::Valid));
    }

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
