//! Small shared helpers: background thread priority.

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
