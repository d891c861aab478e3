//! The machine's own scheduling noise during a run: a harness thread sleeps
//! 1 ms at a time and counts how late it wakes. A late wake-up here (an idle
//! vCPU the hypervisor is slow to resume, or a busy CPU) is one that any thread
//! on the box can suffer, the supervisor's and the simulator's alike, so a
//! latency tail can be set against it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How late a sleeping thread woke over a run.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Lateness {
    /// Length of each sleep, in ms.
    pub sleep_ms: f64,
    /// Sleeps taken.
    pub sleeps: u64,
    /// Wake-ups more than 1 ms past the sleep's end.
    pub late_over_1ms: u64,
    /// Wake-ups more than 2 ms past the sleep's end.
    pub late_over_2ms: u64,
    /// Wake-ups more than 3 ms past the sleep's end.
    pub late_over_3ms: u64,
    /// The latest wake-up, in ms past the sleep's end.
    pub max_late_ms: f64,
}

impl Lateness {
    /// Count one wake-up that came `late` past the end of its sleep.
    pub fn record(&mut self, late: Duration) {
        self.sleeps += 1;
        let ms = late.as_secs_f64() * 1e3;
        self.late_over_1ms += u64::from(ms > 1.0);
        self.late_over_2ms += u64::from(ms > 2.0);
        self.late_over_3ms += u64::from(ms > 3.0);
        self.max_late_ms = self.max_late_ms.max((ms * 1e3).round() / 1e3);
    }
}

/// A running sleeper thread; [`WakeupProbe::finish`] stops it and returns what
/// it saw (dropped unfinished, it stops after its current sleep).
pub struct WakeupProbe {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Lateness>>,
}

impl WakeupProbe {
    /// Start sleeping `sleep` at a time on a thread of its own.
    pub fn start(sleep: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bench-wakeups".into())
            .spawn(move || {
                let mut seen = Lateness {
                    sleep_ms: sleep.as_secs_f64() * 1e3,
                    ..Lateness::default()
                };
                loop {
                    let due = Instant::now() + sleep;
                    std::thread::sleep(sleep);
                    seen.record(Instant::now().saturating_duration_since(due));
                    if flag.load(Ordering::Relaxed) {
                        return seen;
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop the thread (after its current sleep; it always takes one) and return its counts.
    pub fn finish(mut self) -> Lateness {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for WakeupProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_counts_each_threshold_and_the_maximum() {
        let mut l = Lateness::default();
        for us in [0, 900, 1_500, 2_500, 3_001, 7_250] {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.sleeps, 6);
        assert_eq!(
            (l.late_over_1ms, l.late_over_2ms, l.late_over_3ms),
            (4, 3, 2)
        );
        assert_eq!(l.max_late_ms, 7.25);
    }

    #[test]
    fn a_probe_finished_at_once_has_slept_once_and_timed_it() {
        let started = Instant::now();
        let seen = WakeupProbe::start(Duration::from_millis(2))
            .expect("spawn")
            .finish();
        let took = started.elapsed();
        assert!(seen.sleeps >= 1, "{seen:?}");
        assert_eq!(seen.sleep_ms, 2.0);
        // Each sleep lasted at least its 2 ms, and the lateness fits in the time that passed.
        assert!(
            took >= Duration::from_millis(2 * seen.sleeps),
            "{took:?} {seen:?}"
        );
        assert!(
            seen.max_late_ms <= took.as_secs_f64() * 1e3,
            "{took:?} {seen:?}"
        );
    }
}
