//! One instance per ledger: a second `ccr-supervisor` on the same ledger is refused at
//! once (exit 2, naming the path, the lock file and the holder's pid), having written
//! nothing, bound nothing and connected to no session.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use ccr_sim::SimEvent;
use serde_json::json;

use crate::support::{self, Setup, Supervisor, WAIT};

/// Every file in `dir`: name -> (modification time, bytes).
fn files(dir: &Path) -> BTreeMap<String, (SystemTime, Vec<u8>)> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("dir entry");
            let meta = e.metadata().expect("metadata");
            (
                e.file_name().to_string_lossy().into_owned(),
                (
                    meta.modified().expect("mtime"),
                    std::fs::read(e.path()).expect("read file"),
                ),
            )
        })
        .collect()
}

#[actix_rt::test]
async fn a_second_instance_on_the_same_ledger_exits_2_having_touched_nothing() {
    let setup = Setup::new(&["s1"], "").await;
    let http = support::http();
    let first = Supervisor::spawn(&setup.cfg).await;
    let mut sse = support::open_sse(&http, &first.api).await;
    let mut seen = vec![];
    sse.wait_connected(&mut seen, &["s1"]).await;
    assert!(setup
        .sim
        .prompt("s1", "p1", "Bash", json!({"command": "make"})));
    sse.wait_for(&mut seen, |e| support::is_requested(e, "p1"))
        .await;
    // Audit reads wait for the applier: the prompt is in SQLite, not only in the journal.
    let (status, audit) = support::get(&http, &format!("{}/v1/audit", first.api)).await;
    assert_eq!(
        (status, audit["rows"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{audit}"
    );

    // Frozen, the first instance writes nothing and holds its lock: any change is the second's.
    first.signal(libc::SIGSTOP);
    let mut sim_events = setup.sim.subscribe();
    let before = files(setup.dir.path());
    assert!(before.contains_key("ledger.db.lock"), "{:?}", before.keys());
    let (out, took) = support::run_to_exit(
        &["--config", setup.cfg.to_str().unwrap()],
        Duration::from_secs(5),
    )
    .await;
    let after = files(setup.dir.path());
    first.signal(libc::SIGCONT);

    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("second instance: {} after {took:?}: {stderr}", out.status);
    assert_eq!(out.status.code(), Some(2), "{}\n{stderr}", out.status);
    let ledger = setup.dir.path().join("ledger.db");
    for needed in [
        format!("ledger {} is in use by pid {}", ledger.display(), first.pid),
        format!("(lock {}.lock)", ledger.display()),
        "stop it first".to_owned(),
    ] {
        assert!(stderr.contains(&needed), "{needed:?} not in:\n{stderr}");
    }
    assert!(
        !stdout.contains("operator API on"),
        "no API bound: {stdout}"
    );
    assert!(
        before == after,
        "the ledger, its journal and the lock file are untouched: {:?} -> {:?}",
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    while let Ok(event) = sim_events.try_recv() {
        assert!(
            !matches!(
                event,
                SimEvent::Connected { .. } | SimEvent::Rejected { .. } | SimEvent::Received { .. }
            ),
            "the second instance reached the simulator: {event:?}"
        );
    }

    // The first one carries on: the prompt is still answerable through it.
    let mut answered = setup.sim.subscribe();
    support::answer_and_wait(
        &http,
        &first.api,
        &mut answered,
        ("s1", "p1"),
        json!({"behavior": "allow"}),
    )
    .await;
    assert!(took < WAIT, "refused at once, took {took:?}");
}

#[actix_rt::test]
async fn the_lock_of_a_killed_instance_does_not_block_the_next_one() {
    let setup = Setup::new(&[], "").await;
    let first = Supervisor::spawn(&setup.cfg).await;
    let lock = setup.dir.path().join("ledger.db.lock");
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        first.pid.to_string()
    );
    support::kill9(first).await;
    // The pid text remains; the kernel released the lock with the process.
    let second = Supervisor::spawn(&setup.cfg).await;
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        second.pid.to_string()
    );
}
