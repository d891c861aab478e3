//! Small shared helpers: time formatting for JSON bodies, background thread priority,
//! child processes.

pub mod child;

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 UTC timestamp with millisecond precision (`2026-11-24T01:02:03.456Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Nice value a background thread falls back to where `SCHED_IDLE` is refused.
const BACKGROUND_NICE: i32 = 19;

/// Make the calling thread a background one (Linux schedules each thread on its own):
/// `SCHED_IDLE`, so the scheduler lets any ordinary thread that wakes preempt it at once,
/// or else nice 19. With nice alone a background thread keeps the CPU for the rest of its
/// time slice, which delays a waking answer path by up to a millisecond on a busy box.
/// Best effort: false where neither is supported or allowed.
pub fn background_thread_priority() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id, with a parameter struct
        // that lives across the call; no memory is shared.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) == 0
                || libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Serde helper: `Option<SystemTime>` as an RFC 3339 string or null.
pub mod opt_rfc3339 {
    use serde::Serializer;
    use std::time::SystemTime;

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339(*t)),
            None => s.serialize_none(),
        }
    }
}

/// Serde helper: `SystemTime` as an RFC 3339 string.
pub mod as_rfc3339 {
    use serde::Serializer;
    use std::time::SystemTime;

    /// Serialize.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_482_123_456);
        assert_eq!(rfc3339(t), "2026-11-24T01:02:03.456Z");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod priority_tests {
    use super::*;

    fn own_policy() -> i32 {
        // SAFETY: as above.
        unsafe { libc::sched_getscheduler(libc::syscall(libc::SYS_gettid) as libc::pid_t) }
    }

    #[test]
    fn a_background_thread_is_sched_idle_and_others_are_untouched() {
        let before = own_policy();
        let other = std::thread::spawn(|| (background_thread_priority(), own_policy()))
            .join()
            .unwrap();
        assert_eq!(other, (true, libc::SCHED_IDLE));
        assert_eq!(own_policy(), before);
        assert_ne!(before, libc::SCHED_IDLE);
    }
}
