//! Reconnect policy against a real server: 4003 permanent, 4001 budget, drops, missing pongs.

use crate::common::{Harness, Sess};
use ccr_sim::SimEvent;

#[actix_rt::test]
async fn unauthorized_4003_fails_and_never_reconnects() {
    let sess = Sess::new("s1").token_toml("token = \"wrong\"", "right");
    let h = Harness::start(vec![sess], &[]).await;
    let s = h.wait_state("s1", "failed").await;
    assert_eq!(s["reason"], "unauthorized", "{s}");
    assert_eq!(h.sim.attempts("s1"), 1);
    assert_eq!(s["incarnation"], 1, "not restarted by the supervisor");
    assert_eq!(s["counters"]["restarts"], 0);
    h.shutdown().await;
}

#[actix_rt::test]
async fn not_found_4001_is_retried_three_times_then_fails() {
    let h = Harness::start(vec![Sess::new("ghost").unknown_to_sim()], &[]).await;
    let s = h.wait_state("ghost", "failed").await;
    assert_eq!(s["reason"], "session_not_found", "{s}");
    assert_eq!(h.sim.attempts("ghost"), 4, "first attempt + 3 retries");
    h.shutdown().await;
}

#[actix_rt::test]
async fn transient_4001_right_after_creation_recovers() {
    let mut h = Harness::start(vec![Sess::new("late")], &[]).await;
    h.wait_sim_connected("late").await;
    h.sim.reject_next("late", 4001, 2);
    let before = h.sim.connections("late");
    assert!(h.sim.drop_connection("late"));
    h.wait_connections("late", before + 1).await;
    h.wait_state("late", "connected").await;
    assert_eq!(h.sim.connections("late"), 2);
    h.shutdown().await;
}

#[actix_rt::test]
async fn transient_drops_reconnect_and_count() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    for code in [1011u16, 1001] {
        let before = h.sim.connections("s1");
        assert!(h.sim.close("s1", code));
        h.wait_connections("s1", before + 1).await;
    }
    let s = h.wait_state("s1", "connected").await;
    assert_eq!(s["counters"]["reconnects"], 2, "{s}");
    assert!(s["last_error"].as_str().unwrap().contains("1001"), "{s}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn never_opened_session_keeps_retrying_with_backoff() {
    let h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.sim.refuse_upgrade("s1", 503, 6);
    // Whatever happened first, the session is retried until the sim lets it in.
    let s = h.wait_state("s1", "connected").await;
    assert!(h.sim.attempts("s1") >= 1, "{s}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn missing_pong_counts_as_a_drop() {
    let env = [
        ("CCR_SUPERVISOR__CCR__PING_INTERVAL", "100ms"),
        ("CCR_SUPERVISOR__CCR__PONG_TIMEOUT", "100ms"),
    ];
    let mut h = Harness::start(vec![Sess::new("s1")], &env).await;
    h.wait_sim_connected("s1").await;
    let before = h.sim.connections("s1");
    h.sim.set_paused("s1", true);
    h.wait_sim(|e| matches!(e, SimEvent::Disconnected { session, .. } if session == "s1"))
        .await;
    h.sim.set_paused("s1", false);
    h.wait_connections("s1", before + 1).await;
    let s = h.wait_state("s1", "connected").await;
    assert!(s["last_error"].as_str().unwrap().contains("pong"), "{s}");
    h.shutdown().await;
}
