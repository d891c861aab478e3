//! OTP-style restart intensity (pure): at most `max_restarts` in `period`, with
//! exponential backoff between restarts. actix's own `Supervisor` has neither a
//! limit nor panic isolation, so both are ours.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::SupervisorConfig;

/// What a crash leads to: a restart after a backoff, or the end of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    /// Restart after `delay`; `restart` counts restarts within the current period.
    Restart {
        /// Backoff before the restart.
        delay: Duration,
        /// 1-based restart number within the period.
        restart: u32,
    },
    /// Budget spent: the session is failed.
    Exhausted,
}

/// Restart history of one session.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    max_restarts: u32,
    period: Duration,
    initial: Duration,
    max_delay: Duration,
    history: VecDeque<Instant>,
}

impl RestartBudget {
    /// A budget from `[supervisor]` settings.
    pub fn new(cfg: &SupervisorConfig) -> Self {
        Self {
            max_restarts: cfg.max_restarts,
            period: cfg.restart_period,
            initial: cfg.restart_backoff_initial,
            max_delay: cfg.restart_backoff_max,
            history: VecDeque::new(),
        }
    }

    /// At most this many restarts within this period.
    pub fn limit(&self) -> (u32, Duration) {
        (self.max_restarts, self.period)
    }

    /// The actor crashed at `now`.
    pub fn on_crash(&mut self, now: Instant) -> AfterCrash {
        while let Some(&first) = self.history.front() {
            if now.saturating_duration_since(first) >= self.period {
                self.history.pop_front();
            } else {
                break;
            }
        }
        if self.history.len() as u32 >= self.max_restarts {
            return AfterCrash::Exhausted;
        }
        self.history.push_back(now);
        let n = self.history.len() as u32;
        let delay = self
            .initial
            .saturating_mul(1u32 << (n - 1).min(20))
            .min(self.max_delay);
        AfterCrash::Restart { delay, restart: n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max: u32) -> SupervisorConfig {
        SupervisorConfig {
            arbiters: 1,
            max_restarts: max,
            restart_period: Duration::from_secs(10),
            restart_backoff_initial: Duration::from_millis(100),
            restart_backoff_max: Duration::from_millis(350),
            resolved_prompts: 10,
            resolved_prompts_bytes: 1 << 20,
        }
    }

    #[test]
    fn restarts_back_off_then_exhaust() {
        let mut b = RestartBudget::new(&cfg(4));
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let got: Vec<_> = (0..5).map(|i| b.on_crash(t0 + ms(i))).collect();
        assert_eq!(
            got,
            vec![
                AfterCrash::Restart {
                    delay: ms(100),
                    restart: 1
                },
                AfterCrash::Restart {
                    delay: ms(200),
                    restart: 2
                },
                AfterCrash::Restart {
                    delay: ms(350),
                    restart: 3
                },
                AfterCrash::Restart {
                    delay: ms(350),
                    restart: 4
                },
                AfterCrash::Exhausted,
            ]
        );
    }

    #[test]
    fn old_crashes_leave_the_window() {
        let mut b = RestartBudget::new(&cfg(2));
        let t0 = Instant::now();
        assert!(matches!(b.on_crash(t0), AfterCrash::Restart { .. }));
        assert!(matches!(b.on_crash(t0), AfterCrash::Restart { .. }));
        assert_eq!(
            b.on_crash(t0 + Duration::from_secs(1)),
            AfterCrash::Exhausted
        );
        assert_eq!(
            b.on_crash(t0 + Duration::from_secs(11)),
            AfterCrash::Restart {
                delay: Duration::from_millis(100),
                restart: 1
            }
        );
    }

    #[test]
    fn zero_budget_never_restarts() {
        let mut b = RestartBudget::new(&cfg(0));
        assert_eq!(b.on_crash(Instant::now()), AfterCrash::Exhausted);
    }
}
