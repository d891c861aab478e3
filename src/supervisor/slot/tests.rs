//! Unit tests of [`Slot`]: what the supervisor does when a session actor ends, and when a
//! lapsed lease is renewed.

use super::*;
use crate::config::TokenSpec;

fn cfg(max_restarts: u32) -> SupervisorConfig {
    SupervisorConfig {
        arbiters: 1,
        max_restarts,
        restart_period: Duration::from_secs(10),
        restart_backoff_initial: Duration::from_millis(100),
        restart_backoff_max: Duration::from_secs(1),
        resolved_prompts: 10,
        resolved_prompts_bytes: 1 << 20,
    }
}

/// A slot whose first incarnation runs.
fn running(max_restarts: u32) -> Slot {
    let spec = Arc::new(SessionSpec {
        id: Arc::from("s1"),
        labels: Vec::new(),
        token: TokenSpec::Env("CCR_TOKEN".into()),
        viewer_only: false,
        base_url: None,
        organization_uuid: None,
    });
    let mut slot = Slot::new(spec, &cfg(max_restarts), 0);
    slot.incarnation = 1;
    slot.status.state = SessionState::Connected;
    slot
}

#[test]
fn a_panic_restarts_with_backoff_and_carries_the_counters() {
    let mut slot = running(5);
    slot.status.counters.decisions = 3;
    let now = Instant::now();
    let action = slot.on_exit(1, Some("boom"), false, now);
    assert!(matches!(&action, ExitAction::Restart { after, cause }
            if *after == Duration::from_millis(100) && cause == "session actor panicked: boom"));
    assert_eq!(
        slot.status.state,
        SessionState::Restarting {
            restart: 1,
            delay_ms: 100
        }
    );
    assert_eq!(slot.restarts, 1);
    assert_eq!(slot.carried.decisions, 3);
    assert_eq!(slot.status.counters.decisions, 0);
    assert_eq!(
        slot.last_crash.as_deref(),
        Some("session actor panicked: boom")
    );
    slot.incarnation = 2;
    let action = slot.on_exit(2, None, false, now);
    assert!(
        matches!(&action, ExitAction::Restart { after, cause }
            if *after == Duration::from_millis(200) && cause == "session actor stopped unexpectedly"),
        "an unexpected stop is a crash too, backing off further"
    );
}

#[test]
fn crashes_beyond_the_budget_give_up_and_leave_the_session_failed() {
    let mut slot = running(1);
    let now = Instant::now();
    assert!(matches!(
        slot.on_exit(1, Some("one"), false, now),
        ExitAction::Restart { .. }
    ));
    slot.incarnation = 2;
    assert!(matches!(
        slot.on_exit(2, Some("two"), false, now),
        ExitAction::GiveUp { cause } if cause == "session actor panicked: two"
    ));
    let SessionState::Failed { reason, detail } = &slot.status.state else {
        panic!("failed, got {:?}", slot.status.state);
    };
    assert_eq!(reason, "restart_budget_exhausted");
    assert!(detail.contains("more than 1 restarts") && detail.ends_with("panicked: two"));
}

#[test]
fn an_exit_in_a_final_state_is_left_alone() {
    let mut slot = running(5);
    slot.status.state = SessionState::Failed {
        reason: "unauthorized".into(),
        detail: String::new(),
    };
    assert!(matches!(
        slot.on_exit(1, None, false, Instant::now()),
        ExitAction::Stop { state: "failed" }
    ));
    assert_eq!(slot.restarts, 0);
    assert!(slot.last_crash.is_none());
}

#[test]
fn an_older_incarnation_changes_nothing() {
    let mut slot = running(5);
    slot.incarnation = 2;
    slot.status.counters.decisions = 4;
    assert!(matches!(
        slot.on_exit(1, Some("late"), false, Instant::now()),
        ExitAction::Stale
    ));
    assert_eq!(slot.status.counters.decisions, 4);
    assert_eq!(slot.status.state, SessionState::Connected);
}

#[test]
fn the_plan_wins_over_the_exit_kind() {
    let now = Instant::now();
    let mut slot = running(5);
    let (tx, _rx) = oneshot::channel();
    slot.plan = ExitPlan::Remove(vec![tx]);
    let action = slot.on_exit(1, Some("even a panic"), false, now);
    assert!(matches!(action, ExitAction::Forget(w) if w.len() == 1));
    assert_eq!(slot.restarts, 0);

    let mut slot = running(5);
    slot.plan = ExitPlan::Respawn;
    assert!(matches!(
        slot.on_exit(1, None, false, now),
        ExitAction::Respawn
    ));
    assert!(matches!(slot.plan, ExitPlan::Supervise), "used once");
}

#[test]
fn while_shutting_down_an_exit_is_a_disconnect_not_a_crash() {
    let now = Instant::now();
    let mut slot = running(5);
    slot.plan = ExitPlan::Respawn;
    assert!(matches!(
        slot.on_exit(1, Some("boom"), true, now),
        ExitAction::Drained
    ));
    assert_eq!(slot.status.state, SessionState::Disconnected);
    assert_eq!(slot.restarts, 0);
}

#[test]
fn a_renewed_lease_starts_a_session_that_crashed_or_waited_but_not_one_that_failed() {
    let now = Instant::now();
    // Crashed while the lease had lapsed: its restart could send nothing, so it waits.
    let mut crashed = running(5);
    crashed.on_exit(1, Some("boom"), false, now);
    assert!(crashed.starts_when_resumed());
    // Adopted while the lease had lapsed: never started.
    let mut waiting = running(5);
    waiting.addr = None;
    waiting.status.state = SessionState::Connecting;
    assert!(waiting.starts_when_resumed());
    assert!(waiting.cluster.start_adopting());
    assert!(!waiting.starts_when_resumed(), "its adoption starts it");
    // Its restart budget spent, or refused by the server for good: it stays failed.
    let mut gave_up = running(0);
    assert!(matches!(
        gave_up.on_exit(1, Some("boom"), false, now),
        ExitAction::GiveUp { .. }
    ));
    assert!(!gave_up.starts_when_resumed());
    let mut refused = running(5);
    refused.status.state = SessionState::Failed {
        reason: "unauthorized".into(),
        detail: String::new(),
    };
    refused.on_exit(1, None, false, now);
    assert!(!refused.starts_when_resumed());
}
