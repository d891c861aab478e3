//! Small shared helpers: time formatting for JSON bodies, background thread priority.

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

/// Give the calling thread the scheduling weight of `nice` (Linux keeps one per thread),
/// so background work yields the CPU to the answer path on a busy machine. Best effort:
/// false where it is not supported or not allowed.
pub fn lower_thread_priority(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
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

    fn own_nice() -> i32 {
        // SAFETY: as above; getpriority may return -1 legitimately, errno is not needed here.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }
    }

    #[test]
    fn lowering_priority_affects_only_the_calling_thread() {
        let before = own_nice();
        let other = std::thread::spawn(|| (lower_thread_priority(19), own_nice()))
            .join()
            .unwrap();
        assert_eq!(other, (true, 19));
        assert_eq!(own_nice(), before);
    }
}
