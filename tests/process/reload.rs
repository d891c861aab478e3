//! SIGHUP reloads `[[sessions]]` from the file: added started, removed stopped;
//! an invalid file is rejected and the running set kept.

use std::time::Duration;

use ccr_sim::SimEvent;

use crate::support::{config_toml, start_sim, wait_sim, write_file, Supervisor};

#[actix_rt::test]
async fn sighup_applies_the_session_diff_and_rejects_a_bad_file() {
    let sim = start_sim(&["r1", "r2"]).await;
    let mut events = sim.subscribe();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let path = write_file(
        dir.path(),
        "c.toml",
        &config_toml(&sim.base_url(), &["r1"], &ledger, ""),
    );
    let mut sup = Supervisor::spawn(&path).await;
    if !sim.is_connected("r1") {
        wait_sim(
            &mut events,
            |e| matches!(e, SimEvent::Connected { session, .. } if session == "r1"),
        )
        .await;
    }
    // r1 out, r2 in.
    write_file(
        dir.path(),
        "c.toml",
        &config_toml(&sim.base_url(), &["r2"], &ledger, ""),
    );
    sup.signal(libc::SIGHUP);
    wait_sim(
        &mut events,
        |e| matches!(e, SimEvent::Connected { session, .. } if session == "r2"),
    )
    .await;
    if sim.is_connected("r1") {
        wait_sim(
            &mut events,
            |e| matches!(e, SimEvent::Disconnected { session, .. } if session == "r1"),
        )
        .await;
    }
    // An invalid file is rejected: the process keeps running with r2.
    write_file(dir.path(), "c.toml", "[api]\nbind = \"nonsense\"\n");
    sup.signal(libc::SIGHUP);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !sup.stderr_now().contains("reload rejected") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejection logged:\n{}",
            sup.stderr_now()
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // bounded wait on the child's log
    }
    assert!(sim.is_connected("r2"), "running set kept");
    assert_eq!(sim.connections("r1"), 1, "r1 not reconnected");
    sup.signal(libc::SIGTERM);
    assert!(sup.wait_exit(Duration::from_secs(5)).await.success());
    sim.stop().await;
}
