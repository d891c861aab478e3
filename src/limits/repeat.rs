//! Rate limit for repeated identical log lines: the first few of each message
//! per interval are written, the rest only counted, and the count is written
//! once when the interval is over. A mass failure (thousands of sessions
//! failing the same way) then logs a handful of lines, not one per attempt.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What to do with one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Write it; `suppressed` identical lines were dropped since the last one written.
    Log {
        /// Lines of this key dropped since the last written one (not yet reported).
        suppressed: u64,
    },
    /// Drop it (it is counted).
    Suppress,
}

/// Lines dropped in an interval that is over, to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// The message.
    pub key: String,
    /// How many identical lines were dropped.
    pub count: u64,
}

/// Key under which lines are counted once the table of keys is full.
pub const OTHER: &str = "(other messages)";

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

/// Per-key windows: at most `burst` lines of one key per `interval`.
#[derive(Debug)]
pub struct RepeatLimiter {
    interval: Duration,
    burst: u32,
    max_keys: usize,
    keys: HashMap<String, Window>,
    overflow: u64,
}

impl RepeatLimiter {
    /// At most `burst` lines per key per `interval`, tracking at most `max_keys` keys
    /// (lines of further keys are counted together under [`OTHER`]).
    pub fn new(interval: Duration, burst: u32, max_keys: usize) -> Self {
        Self {
            interval,
            burst: burst.max(1),
            max_keys: max_keys.max(1),
            keys: HashMap::new(),
            overflow: 0,
        }
    }

    /// Whether to write a line with this `key` at `now`.
    pub fn check(&mut self, key: &str, now: Instant) -> Emit {
        if let Some(w) = self.keys.get_mut(key) {
            if now.saturating_duration_since(w.start) >= self.interval {
                let suppressed = w.suppressed;
                *w = Window {
                    start: now,
                    logged: 1,
                    suppressed: 0,
                };
                return Emit::Log { suppressed };
            }
            if w.logged < self.burst {
                w.logged += 1;
                return Emit::Log { suppressed: 0 };
            }
            w.suppressed += 1;
            return Emit::Suppress;
        }
        if self.keys.len() >= self.max_keys {
            let interval = self.interval;
            // Forget finished windows that dropped nothing; the others wait for `flush`.
            self.keys.retain(|_, w| {
                w.suppressed > 0 || now.saturating_duration_since(w.start) < interval
            });
            if self.keys.len() >= self.max_keys {
                self.overflow += 1;
                return Emit::Suppress;
            }
        }
        self.keys.insert(
            key.to_owned(),
            Window {
                start: now,
                logged: 1,
                suppressed: 0,
            },
        );
        Emit::Log { suppressed: 0 }
    }

    /// The counts of windows that are over (each reported once), oldest key
    /// order not guaranteed; finished windows are forgotten.
    pub fn flush(&mut self, now: Instant) -> Vec<Suppressed> {
        let interval = self.interval;
        let mut out = Vec::new();
        self.keys.retain(|key, w| {
            if now.saturating_duration_since(w.start) < interval {
                return true;
            }
            if w.suppressed > 0 {
                out.push(Suppressed {
                    key: key.clone(),
                    count: w.suppressed,
                });
            }
            false
        });
        if self.overflow > 0 {
            out.push(Suppressed {
                key: OTHER.to_owned(),
                count: std::mem::take(&mut self.overflow),
            });
        }
        out
    }

    /// The interval of the windows.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// Interval of the process-wide limiter of session warnings.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The process-wide limiter of session connection warnings, keyed by message
/// (the message carries no session id: a mass failure is one key).
static SESSION_WARNINGS: LazyLock<Mutex<RepeatLimiter>> =
    LazyLock::new(|| Mutex::new(RepeatLimiter::new(WARN_INTERVAL, 5, 1024)));

/// Write `warn!(error = message, "{what}")` unless identical warnings were
/// already written `burst` times in this interval (the session span says which session).
pub fn session_warning(what: &'static str, message: &str) {
    let verdict = SESSION_WARNINGS.lock().check(message, Instant::now());
    match verdict {
        Emit::Log { suppressed: 0 } => tracing::warn!(error = %message, "{what}"),
        Emit::Log { suppressed } => {
            tracing::warn!(error = %message, suppressed, "{what} (and {suppressed} identical warnings before it were suppressed)")
        }
        Emit::Suppress => {}
    }
}

/// Report the warnings the process-wide limiter dropped in intervals that are
/// over; called every [`WARN_INTERVAL`] by the app.
pub fn flush_session_warnings() {
    let over = SESSION_WARNINGS.lock().flush(Instant::now());
    for s in over {
        tracing::warn!(
            error = %s.key,
            suppressed = s.count,
            "{} identical session warnings suppressed in the last {:?}",
            s.count,
            WARN_INTERVAL
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_burst_is_written_then_counted_then_reported_once() {
        let t0 = Instant::now();
        let mut l = RepeatLimiter::new(10 * SEC, 2, 16);
        assert_eq!(l.check("emfile", t0), Emit::Log { suppressed: 0 });
        assert_eq!(l.check("emfile", t0 + SEC), Emit::Log { suppressed: 0 });
        for i in 0..1000 {
            assert_eq!(
                l.check("emfile", t0 + 2 * SEC + i * SEC / 1000),
                Emit::Suppress
            );
        }
        assert!(l.flush(t0 + 9 * SEC).is_empty(), "the window is not over");
        let out = l.flush(t0 + 10 * SEC);
        assert_eq!(
            out,
            vec![Suppressed {
                key: "emfile".into(),
                count: 1000
            }]
        );
        assert!(l.flush(t0 + 20 * SEC).is_empty(), "reported once");
        // A new window starts with the next line.
        assert_eq!(
            l.check("emfile", t0 + 21 * SEC),
            Emit::Log { suppressed: 0 }
        );
    }

    #[test]
    fn a_line_after_the_window_carries_the_count_instead_of_flush() {
        let t0 = Instant::now();
        let mut l = RepeatLimiter::new(10 * SEC, 1, 16);
        assert_eq!(l.check("x", t0), Emit::Log { suppressed: 0 });
        assert_eq!(l.check("x", t0 + SEC), Emit::Suppress);
        assert_eq!(l.check("x", t0 + 2 * SEC), Emit::Suppress);
        assert_eq!(l.check("x", t0 + 10 * SEC), Emit::Log { suppressed: 2 });
        assert!(l.flush(t0 + 30 * SEC).is_empty(), "already reported");
    }

    #[test]
    fn different_messages_are_limited_separately() {
        let t0 = Instant::now();
        let mut l = RepeatLimiter::new(10 * SEC, 1, 16);
        assert_eq!(l.check("a", t0), Emit::Log { suppressed: 0 });
        assert_eq!(l.check("b", t0), Emit::Log { suppressed: 0 });
        assert_eq!(l.check("a", t0), Emit::Suppress);
        assert_eq!(l.check("b", t0), Emit::Suppress);
        let mut out = l.flush(t0 + 10 * SEC);
        out.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(out.iter().map(|s| s.count).collect::<Vec<_>>(), [1, 1]);
    }

    #[test]
    fn the_key_table_is_bounded() {
        let t0 = Instant::now();
        let mut l = RepeatLimiter::new(10 * SEC, 1, 2);
        assert!(matches!(l.check("a", t0), Emit::Log { .. }));
        assert!(matches!(l.check("b", t0), Emit::Log { .. }));
        for n in 0..100 {
            assert_eq!(l.check(&format!("k{n}"), t0), Emit::Suppress);
        }
        assert_eq!(l.keys.len(), 2);
        let out = l.flush(t0 + 10 * SEC);
        assert_eq!(
            out,
            vec![Suppressed {
                key: OTHER.into(),
                count: 100
            }]
        );
        // Finished windows make room again.
        assert!(matches!(l.check("c", t0 + 11 * SEC), Emit::Log { .. }));
    }

    #[test]
    fn a_full_table_forgets_finished_quiet_windows_to_make_room() {
        let t0 = Instant::now();
        let mut l = RepeatLimiter::new(10 * SEC, 1, 1);
        assert!(matches!(l.check("a", t0), Emit::Log { .. }));
        assert!(matches!(l.check("b", t0 + 10 * SEC), Emit::Log { .. }));
        assert_eq!(l.interval(), 10 * SEC);
    }
}
