//! Ledger lifecycle tests: round trip, restart restore, idempotence, retention, errors.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tempfile::TempDir;

use super::*;

/// Drive a future on this thread with no runtime at all: the ledger must not need one.
pub(super) fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// A ledger in a fresh temp dir (kept alive by the returned `TempDir`).
///
/// It keeps rows forever: the fixtures' 1970 timestamps would otherwise be pruned at startup.
pub(super) fn temp_ledger(tuning: Tuning) -> (TempDir, LedgerConfig, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LedgerConfig {
        path: dir.path().join("nested/dir/ledger.db"),
        retain_days: 0,
        ..LedgerConfig::default()
    };
    let ledger = Ledger::open_with(&cfg, tuning).unwrap();
    (dir, cfg, ledger)
}

/// `secs` seconds after the epoch, as a timestamp.
pub(super) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A prompt of `tool` received at `at`.
pub(super) fn prompt(session: &str, request: &str, tool: &str, at: SystemTime) -> PromptRecord {
    PromptRecord {
        session_id: session.into(),
        request_id: request.into(),
        tool_use_id: Some(format!("toolu_{request}")),
        tool_name: tool.into(),
        input: json!({"command": "ls", "n": 1}),
        request: json!({"subtype": "can_use_tool", "tool_name": tool, "extra": [1, 2]}),
        received_at: at,
    }
}

/// A decision on `(session, request)`.
pub(super) fn decision(session: &str, request: &str, outcome: Outcome, by: &str) -> DecisionRecord {
    DecisionRecord {
        session_id: session.into(),
        request_id: request.into(),
        outcome,
        decided_by: by.into(),
        decided_at: at(2_000_000_000),
        updated_input: None,
        answer: Some(json!({"type": "control_response", "request_id": request})),
        reason: None,
    }
}

fn all_rows(ledger: &Ledger) -> Vec<AuditRow> {
    let mut rows = vec![];
    ledger
        .export(&AuditQuery::default(), |r| {
            rows.push(r);
            Ok(())
        })
        .unwrap();
    rows
}

#[test]
fn prompt_decision_delivery_round_trip() {
    let (_dir, _cfg, ledger) = temp_ledger(Tuning::default());
    block_on(ledger.record_prompt(prompt("s1", "r1", "Bash", at(1_000)))).unwrap();
    let mut d = decision("s1", "r1", Outcome::Allowed, "alice");
    d.updated_input = Some(json!({"command": "ls -la"}));
    block_on(ledger.record_decision(d)).unwrap();
    block_on(ledger.mark_delivered("s1", "r1", at(2_000_000_001))).unwrap();
    // The first delivery counts; a re-send after a reconnect does not move it.
    block_on(ledger.mark_delivered("s1", "r1", at(2_000_000_999))).unwrap();

    let page = block_on(ledger.query(AuditQuery::default())).unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(page.next_cursor, None);
    let row = &page.rows[0];
    assert_eq!(row.tool_use_id.as_deref(), Some("toolu_r1"));
    assert_eq!(row.request["extra"], json!([1, 2]));
    assert_eq!(row.outcome, Some(Outcome::Allowed));
    assert_eq!(row.decided_by.as_deref(), Some("alice"));
    assert_eq!(row.delivered_at, Some(at(2_000_000_001)));
    let v = serde_json::to_value(row).unwrap();
    assert_eq!(v["received_at"], "1970-01-01T00:16:40.000Z");
    assert_eq!(v["outcome"], "allowed");
    assert_eq!(v["updated_input"], json!({"command": "ls -la"}));
    assert_eq!(v["answer"]["type"], "control_response");
    assert_eq!(ledger.write_errors(), 0);
}

#[test]
fn reopen_restores_exactly_pending_prompts_and_undelivered_answers() {
    let (_dir, cfg, ledger) = temp_ledger(Tuning::default());
    let steps: [(&str, Option<Outcome>, bool); 6] = [
        ("pending", None, false),
        ("allowed-undelivered", Some(Outcome::Allowed), false),
        ("allowed-delivered", Some(Outcome::Allowed), true),
        ("cancelled", Some(Outcome::Cancelled), false),
        ("expired", Some(Outcome::Expired), false),
        ("denied-undelivered", Some(Outcome::Denied), false),
    ];
    // Fire and forget: commands are queued on call, in order; `flush` awaits them all.
    for (i, (id, outcome, delivered)) in steps.iter().enumerate() {
        drop(ledger.record_prompt(prompt("s", id, "Bash", at(100 - i as u64))));
        if let Some(o) = outcome {
            drop(ledger.record_decision(decision("s", id, *o, "op")));
        }
        if *delivered {
            drop(ledger.mark_delivered("s", id, at(5_000)));
        }
    }
    block_on(ledger.flush()).unwrap();
    drop(ledger);

    let reopened = Ledger::open(&cfg).unwrap();
    let got = reopened.load_unfinished().unwrap();
    let ids: Vec<&str> = got.iter().map(|u| u.prompt.request_id.as_str()).collect();
    // Oldest first (the later steps were received earlier). An expired prompt
    // carries a deny that must still reach the session.
    assert_eq!(
        ids,
        [
            "denied-undelivered",
            "expired",
            "allowed-undelivered",
            "pending"
        ]
    );
    assert_eq!(got[3].decision, None);
    assert_eq!(got[3].prompt, prompt("s", "pending", "Bash", at(100)));
    assert_eq!(
        got[0].decision,
        Some(decision("s", "denied-undelivered", Outcome::Denied, "op"))
    );
    assert_eq!(
        got[2].prompt.to_prompt().tool_use_id.as_deref(),
        Some("toolu_allowed-undelivered")
    );
    assert_eq!(
        got[1].decision.as_ref().map(|d| d.outcome),
        Some(Outcome::Expired)
    );
}

#[test]
fn recording_the_same_prompt_twice_is_idempotent() {
    let (_dir, cfg, ledger) = temp_ledger(Tuning::default());
    block_on(ledger.record_prompt(prompt("s", "r", "Bash", at(10)))).unwrap();
    block_on(ledger.record_prompt(prompt("s", "r", "Bash", at(20)))).unwrap();
    drop(ledger);
    // Re-sent after a restart: matched to the stored record by (session_id, request_id).
    let ledger = Ledger::open(&cfg).unwrap();
    block_on(ledger.record_prompt(prompt("s", "r", "Bash", at(30)))).unwrap();
    let rows = all_rows(&ledger);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].received_at, at(10));
    assert_eq!(ledger.write_errors(), 0);
}

#[test]
fn decisions_follow_the_lifecycle_and_refusals_are_counted() {
    let (_dir, _cfg, ledger) = temp_ledger(Tuning::default());
    let unknown = block_on(ledger.record_decision(decision("s", "nope", Outcome::Allowed, "a")));
    assert!(
        matches!(unknown, Err(LedgerError::UnknownPrompt { .. })),
        "{unknown:?}"
    );
    block_on(ledger.record_prompt(prompt("s", "r", "Bash", at(1)))).unwrap();
    let early = block_on(ledger.mark_delivered("s", "r", at(2)));
    assert!(
        matches!(early, Err(LedgerError::NotDecided { .. })),
        "{early:?}"
    );
    block_on(ledger.record_decision(decision("s", "r", Outcome::Allowed, "a"))).unwrap();
    // Same decision again (e.g. a retry) is fine; a different one is refused.
    block_on(ledger.record_decision(decision("s", "r", Outcome::Allowed, "a"))).unwrap();
    let second = block_on(ledger.record_decision(decision("s", "r", Outcome::Denied, "b")));
    assert!(
        matches!(
            second,
            Err(LedgerError::AlreadyDecided {
                outcome: Outcome::Allowed,
                ..
            })
        ),
        "{second:?}"
    );
    // A cancel voids the undelivered answer but keeps it for the audit trail.
    let mut cancel = decision("s", "r", Outcome::Cancelled, "session");
    cancel.answer = None;
    block_on(ledger.record_decision(cancel.clone())).unwrap();
    let row = &all_rows(&ledger)[0];
    assert_eq!(row.outcome, Some(Outcome::Cancelled));
    assert_eq!(row.answer.as_ref().unwrap()["type"], "control_response");
    assert!(ledger.load_unfinished().unwrap().is_empty());
    // Once delivered, an answer can no longer be cancelled.
    block_on(ledger.record_prompt(prompt("s", "r2", "Bash", at(1)))).unwrap();
    block_on(ledger.record_decision(decision("s", "r2", Outcome::Denied, "a"))).unwrap();
    block_on(ledger.mark_delivered("s", "r2", at(3))).unwrap();
    cancel.request_id = "r2".into();
    assert!(block_on(ledger.record_decision(cancel)).is_err());
    assert_eq!(ledger.write_errors(), 4);
}

#[test]
fn pruning_deletes_only_old_finished_rows() {
    let (_dir, _cfg, ledger) = temp_ledger(Tuning::default());
    let now = SystemTime::now();
    let old = now - Duration::from_secs(40 * 86_400);
    let new = now - Duration::from_secs(86_400);
    let cases = [
        ("old-delivered", old, Some(Outcome::Allowed), true),
        ("old-cancelled", old, Some(Outcome::Cancelled), false),
        ("old-expired", old, Some(Outcome::Expired), false),
        ("old-pending", old, None, false),
        ("old-undelivered", old, Some(Outcome::Denied), false),
        ("new-delivered", new, Some(Outcome::Allowed), true),
    ];
    for (id, received, outcome, delivered) in cases {
        drop(ledger.record_prompt(prompt("s", id, "Bash", received)));
        if let Some(o) = outcome {
            drop(ledger.record_decision(decision("s", id, o, "op")));
        }
        if delivered {
            drop(ledger.mark_delivered("s", id, now));
        }
    }
    let cutoff = now - Duration::from_secs(30 * 86_400);
    // An expired prompt's deny still has to reach the session: not finished yet.
    assert_eq!(block_on(ledger.prune(cutoff)).unwrap(), 2);
    let mut left: Vec<String> = all_rows(&ledger)
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "new-delivered",
            "old-expired",
            "old-pending",
            "old-undelivered"
        ]
    );
    assert_eq!(block_on(ledger.prune(cutoff)).unwrap(), 0);
}

#[test]
fn background_pruning_runs_at_startup_in_chunks() {
    let (_dir, cfg, ledger) = temp_ledger(Tuning::default());
    let old = SystemTime::now() - Duration::from_secs(31 * 86_400);
    for i in 0..25 {
        let id = format!("r{i}");
        drop(ledger.record_prompt(prompt("s", &id, "Bash", old)));
        drop(ledger.record_decision(decision("s", &id, Outcome::Cancelled, "session")));
    }
    drop(ledger.record_prompt(prompt("s", "keep", "Bash", old)));
    block_on(ledger.flush()).unwrap();
    drop(ledger);
    let tuning = Tuning {
        prune_chunk: 10,
        ..Tuning::default()
    };
    let cfg = LedgerConfig {
        retain_days: 30,
        ..cfg
    };
    let ledger = Ledger::open_with(&cfg, tuning).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while all_rows(&ledger).len() > 1 {
        assert!(Instant::now() < deadline, "background pruning did not run");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(all_rows(&ledger)[0].request_id, "keep");
}

#[test]
fn unusable_paths_fail_clearly_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "not a directory").unwrap();
    let open = |path: std::path::PathBuf| {
        let cfg = LedgerConfig {
            path,
            ..LedgerConfig::default()
        };
        Ledger::open(&cfg)
            .err()
            .expect("open must fail")
            .to_string()
    };
    let under_file = open(file.join("ledger.db"));
    assert!(
        under_file.contains("cannot open decision ledger"),
        "{under_file}"
    );
    assert!(under_file.contains("plain-file"), "{under_file}");
    assert!(open(dir.path().to_path_buf()).contains("is a directory"));
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let corrupt = open(garbage);
    assert!(corrupt.contains("not a database"), "{corrupt}");
}

#[test]
fn read_only_directory_fails_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), "x").is_ok() {
        return; // Running as root: permissions are not enforced, nothing to prove here.
    }
    let cfg = LedgerConfig {
        path: ro.join("ledger.db"),
        ..LedgerConfig::default()
    };
    let err = Ledger::open(&cfg)
        .err()
        .expect("open must fail")
        .to_string();
    assert!(err.contains("ro/ledger.db"), "{err}");
}

#[test]
fn full_queue_fails_at_once_and_is_counted() {
    let tuning = Tuning {
        queue_capacity: 4,
        ..Tuning::default()
    };
    let (_dir, _cfg, ledger) = temp_ledger(tuning);
    let guard = ledger.hold_writer();
    let mut waiting = vec![];
    let full = (0..20).find_map(|i| {
        let fut = ledger.record_prompt(prompt("s", &format!("r{i}"), "Bash", at(i)));
        // A refused command resolves at once; a queued one stays pending while the writer is held.
        let mut fut = Box::pin(fut);
        let waker = std::task::Waker::noop();
        match fut.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => {
                waiting.push(fut);
                None
            }
        }
    });
    assert!(
        matches!(full, Some(Err(LedgerError::QueueFull { capacity: 4 }))),
        "{full:?}"
    );
    assert_eq!(ledger.write_errors(), 1);
    drop(guard);
    for fut in waiting {
        block_on(fut).unwrap();
    }
    assert_eq!(ledger.write_errors(), 1);
}

#[test]
fn a_failing_command_does_not_fail_its_batch_neighbours() {
    let (_dir, cfg, ledger) = temp_ledger(Tuning::default());
    let outside = rusqlite::Connection::open(&cfg.path).unwrap();
    outside
        .execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON prompts WHEN NEW.tool_name = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
        )
        .unwrap();
    let guard = ledger.hold_writer();
    let futs = ["ok1", "bad", "ok2"].map(|id| {
        let tool = if id == "bad" { "boom" } else { "Bash" };
        ledger.record_prompt(prompt("s", id, tool, at(1)))
    });
    drop(guard);
    let [ok1, bad, ok2] = futs.map(block_on);
    assert!(ok1.is_ok() && ok2.is_ok(), "{ok1:?} {ok2:?}");
    let err = bad.unwrap_err().to_string();
    assert!(
        err.contains("storage error") && err.contains("disk on fire"),
        "{err}"
    );
    assert_eq!(all_rows(&ledger).len(), 2);
    assert_eq!(ledger.write_errors(), 1);
}
