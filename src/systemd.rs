//! systemd's service notifications (`Type=notify`, the `sd-notify` crate): `READY=1` once
//! the API is bound and the sessions started, `WATCHDOG=1` every half `WatchdogSec` while
//! the actor system answers, `STOPPING=1` when the shutdown begins.
//!
//! Each is a no-op when systemd did not ask for it: no `NOTIFY_SOCKET` (not run by
//! systemd, or `Type=simple`), no `WATCHDOG_USEC` (no `WatchdogSec=`).

use std::future::Future;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, info, warn};

/// Tell systemd the service is up (`READY=1`).
pub fn ready() {
    send(&[NotifyState::Ready], "READY=1");
}

/// Tell systemd the service is shutting down (`STOPPING=1`).
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

fn send(states: &[NotifyState], what: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    match sd_notify::notify(false, states) {
        Ok(()) => debug!("sent {what} to systemd"),
        Err(e) => warn!(error = %e, "cannot send {what} to systemd (NOTIFY_SOCKET)"),
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as `sd_watchdog_enabled(3)`
/// advises; `None` when the watchdog is off (unset, zero or unreadable), or when
/// `WATCHDOG_PID` names another process (`me` is ours; an unset `WATCHDOG_PID` means us).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// When systemd runs a watchdog on us (`WatchdogSec=`), send `WATCHDOG=1` every half
/// period, but only after `alive()` answered `true` within that half period: a hung
/// actor system stops the pings, and systemd restarts the service. Must run inside an
/// actix `System`; does nothing without a watchdog.
pub fn spawn_watchdog<F, Fut>(alive: F)
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = bool> + 'static,
{
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    let Some(every) = watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id()) else {
        return;
    };
    info!(
        every_ms = every.as_millis() as u64,
        "systemd watchdog on: pinging while the supervisor answers"
    );
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A failure is logged when it starts and when it ends, not at every tick.
        let mut failing = false;
        loop {
            tick.tick().await;
            let problem = match tokio::time::timeout(every, alive()).await {
                Ok(true) => sd_notify::notify(false, &[NotifyState::Watchdog])
                    .err()
                    .map(|e| format!("cannot send WATCHDOG=1 to systemd: {e}")),
                _ => Some("the supervisor did not answer in time; WATCHDOG=1 not sent".into()),
            };
            match (problem, failing) {
                (Some(problem), false) => {
                    warn!("systemd watchdog: {problem}");
                    failing = true;
                }
                (None, true) => {
                    info!("systemd watchdog: WATCHDOG=1 sent again");
                    failing = false;
                }
                _ => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::watchdog_interval;
    use std::time::Duration;

    #[test]
    fn the_watchdog_pings_at_half_its_period_for_this_process_only() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("30000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(
            watchdog_interval(Some("1"), None, 7),
            Some(Duration::from_millis(1)),
            "never a zero interval"
        );
    }
}
