//! Small shared helpers: background thread priority, a value swapped whole while read.

use std::sync::Arc;

use parking_lot::RwLock;

/// A shared value replaced whole at run time (a reload) while readers keep the one they
/// loaded: `load` clones an `Arc` under a read lock held for no longer than that.
#[derive(Debug, Default)]
pub struct Swap<T>(RwLock<Arc<T>>);

impl<T> Swap<T> {
    /// Hold `value`.
    pub fn new(value: Arc<T>) -> Self {
        Self(RwLock::new(value))
    }

    /// The current value.
    pub fn load(&self) -> Arc<T> {
        self.0.read().clone()
    }

    /// Replace the value; readers that loaded the old one keep it until they drop it.
    pub fn store(&self, value: Arc<T>) {
        *self.0.write() = value;
    }
}

/// How the named entries `new` differ from `old` (pure): names only in `new` are added,
/// only in `old` removed, in both with unequal values changed; each list in its side's order.
pub fn name_changes<'a, V: PartialEq + 'a>(
    old: impl IntoIterator<Item = (&'a str, V)>,
    new: impl IntoIterator<Item = (&'a str, V)>,
) -> ccr_protocol::reply::NameChanges {
    let old: Vec<(&str, V)> = old.into_iter().collect();
    let new: Vec<(&str, V)> = new.into_iter().collect();
    let mut out = ccr_protocol::reply::NameChanges::default();
    for (name, value) in &new {
        match old.iter().find(|(n, _)| n == name) {
            None => out.added.push((*name).to_owned()),
            Some((_, was)) if was != value => out.changed.push((*name).to_owned()),
            Some(_) => {}
        }
    }
    for (name, _) in &old {
        if !new.iter().any(|(n, _)| n == name) {
            out.removed.push((*name).to_owned());
        }
    }
    out
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

#[cfg(test)]
mod swap_tests {
    use super::*;

    #[test]
    fn name_changes_lists_added_removed_and_changed_in_order() {
        let old = [("a", 1), ("b", 2), ("c", 3)];
        let new = [("d", 0), ("c", 4), ("a", 1), ("e", 0)];
        let c = name_changes(old, new);
        assert_eq!(c.added, ["d", "e"]);
        assert_eq!(c.removed, ["b"]);
        assert_eq!(c.changed, ["c"]);
        assert!(name_changes([("x", 1)], [("x", 1)]).is_empty());
    }

    #[test]
    fn a_swap_keeps_what_a_reader_loaded() {
        let swap = Swap::new(Arc::new(1));
        let before = swap.load();
        swap.store(Arc::new(2));
        assert_eq!((*before, *swap.load()), (1, 2));
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

/// Join `thread` from a thread of its own, so that whoever drops its handle (an actor's
/// thread) never blocks on it; a panic is logged, as `what`'s.
pub fn join_in_background(thread: std::thread::JoinHandle<()>, what: &'static str) {
    std::thread::spawn(move || {
        if thread.join().is_err() {
            tracing::error!("{what} panicked");
        }
    });
}

/// Start a thread named `name` running a current-thread tokio runtime (for work that must
/// never run on, nor wait on, an actor's thread): `setup` runs on it first, then `run` with
/// the runtime until it returns. Blocks until `setup` is done; its error, or a thread or
/// runtime that cannot start, is returned (the thread then ends). Else the thread, a
/// handle of its runtime and what `setup` gave.
pub fn runtime_thread<T: Send + 'static>(
    name: &str,
    setup: impl FnOnce(&tokio::runtime::Runtime) -> Result<T, String> + Send + 'static,
    run: impl FnOnce(tokio::runtime::Runtime) + Send + 'static,
) -> Result<(std::thread::JoinHandle<()>, tokio::runtime::Handle, T), String> {
    let (ready, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(format!("cannot start its runtime: {e}")));
                    return;
                }
            };
            match setup(&runtime) {
                Ok(made) => {
                    let _ = ready.send(Ok((runtime.handle().clone(), made)));
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            }
            run(runtime);
        })
        .map_err(|e| format!("cannot start thread {name}: {e}"))?;
    match ready_rx.recv() {
        Ok(Ok((handle, made))) => Ok((thread, handle, made)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("thread {name} stopped while starting")),
    }
}
