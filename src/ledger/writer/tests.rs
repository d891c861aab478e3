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
