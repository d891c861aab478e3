use super::*;

#[test]
fn the_applier_waits_for_work_unless_something_is_due() {
    let now = Instant::now();
    let soon = now + Duration::from_secs(5);
    assert_eq!(idle_wait(true, true, soon, now), Duration::ZERO);
    assert_eq!(idle_wait(false, true, soon, now), Duration::from_secs(5));
    assert_eq!(idle_wait(false, true, now, soon), Duration::ZERO);
    // Retention off (`retain_days = 0`): no prune is ever due, so no busy polling.
    assert_eq!(
        idle_wait(false, false, now, soon),
        Duration::from_secs(3600)
    );
}

fn apply_state() -> ApplyState {
    ApplyState {
        applied: AtomicU64::new(0),
        queued: AtomicUsize::new(0),
        retrying: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        barriers: AtomicUsize::new(0),
    }
}

/// The gathering ends on the flags even when the thread's park token was already spent
/// (as the queue's own wake-up spends it): the shutdown that once waited out a whole
/// `apply_delay`.
#[test]
fn gathering_ends_at_once_for_a_close_or_a_barrier_without_a_park_token() {
    let long = Duration::from_secs(3600);
    let closing = apply_state();
    closing.closing.store(true, Ordering::Release);
    let started = Instant::now();
    gather(long, &closing);
    let hurried = apply_state();
    hurried.barriers.store(1, Ordering::Release);
    gather(long, &hurried);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn gathering_lasts_its_delay_when_nothing_hurries_it() {
    let state = apply_state();
    // A stray park token (a spurious wake) does not end the gathering early.
    std::thread::current().unpark();
    let started = Instant::now();
    gather(Duration::from_millis(50), &state);
    assert!(started.elapsed() >= Duration::from_millis(50));
}
