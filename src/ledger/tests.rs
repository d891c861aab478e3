//! Ledger lifecycle tests: round trip, restart restore, idempotence, retention, errors.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tempfile::TempDir;

use super::writer::Write;
use super::*;
use ccr_protocol::reply::{LedgerRow, Outcome};

mod backends;
mod batched;
mod query;
mod tls;

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

/// Open the ledger at `cfg` again after its last handle was dropped. The lock is an
/// `flock` on an open file, and a child that another test's thread forks keeps a copy of
/// every descriptor until it executes its program (then close-on-exec closes it): on a
/// busy machine that can outlast the drop by a moment. Retried on `InUse` for up to 10 s.
pub(super) fn reopen(cfg: &LedgerConfig) -> Ledger {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Ledger::open(cfg) {
            Err(LedgerError::InUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
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
        // Keys not in sorted order, as a real frame has them: a restore must give this text back as is.
        answer: Some(format!(
            r#"{{"type":"control_response","request_id":{}}}"#,
            json!(request)
        )),
        reason: None,
    }
}

/// Every row, once every write queued so far is applied.
fn all_rows(ledger: &Ledger) -> Vec<LedgerRow> {
    block_on(ledger.flush()).unwrap();
    let mut rows = vec![];
    ledger
        .export(&LedgerQuery::default(), |r| {
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

    let page = block_on(ledger.query(LedgerQuery::default())).unwrap();
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

    let reopened = reopen(&cfg);
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
    let ledger = reopen(&cfg);
    block_on(ledger.record_prompt(prompt("s", "r", "Bash", at(30)))).unwrap();
    let rows = all_rows(&ledger);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].received_at, at(10));
    assert_eq!(ledger.write_errors(), 0);
}

/// Await `write` (acknowledged once journaled), then the applier; the error count after.
fn applied(ledger: &Ledger, write: impl Future<Output = Result<(), LedgerError>>) -> u64 {
    block_on(write).unwrap();
    block_on(ledger.flush()).unwrap();
    ledger.write_errors()
}

#[test]
fn decisions_follow_the_lifecycle_and_refusals_are_counted() {
    let (_dir, _cfg, ledger) = temp_ledger(Tuning::default());
    // Writes are acknowledged once durable; the rules are applied behind them, and a
    // refused write changes nothing but the error count.
    let unknown = ledger.record_decision(decision("s", "nope", Outcome::Allowed, "a"));
    assert_eq!(applied(&ledger, unknown), 1);
    assert!(all_rows(&ledger).is_empty());
    assert_eq!(
        applied(
            &ledger,
            ledger.record_prompt(prompt("s", "r", "Bash", at(1)))
        ),
        1
    );
    assert_eq!(applied(&ledger, ledger.mark_delivered("s", "r", at(2))), 2);
    assert_eq!(all_rows(&ledger)[0].delivered_at, None);
    let allow = || decision("s", "r", Outcome::Allowed, "a");
    assert_eq!(applied(&ledger, ledger.record_decision(allow())), 2);
    // Same decision again (e.g. a retry) is fine; a different one is refused.
    assert_eq!(applied(&ledger, ledger.record_decision(allow())), 2);
    let deny = decision("s", "r", Outcome::Denied, "b");
    assert_eq!(applied(&ledger, ledger.record_decision(deny)), 3);
    let row = &all_rows(&ledger)[0];
    assert_eq!(row.outcome, Some(Outcome::Allowed));
    assert_eq!(row.decided_by.as_deref(), Some("a"));
    // A cancel voids the undelivered answer but keeps it for the audit trail.
    let mut cancel = decision("s", "r", Outcome::Cancelled, "session");
    cancel.answer = None;
    assert_eq!(applied(&ledger, ledger.record_decision(cancel.clone())), 3);
    let row = &all_rows(&ledger)[0];
    assert_eq!(row.outcome, Some(Outcome::Cancelled));
    assert_eq!(row.answer.as_ref().unwrap()["type"], "control_response");
    assert!(ledger.load_unfinished().unwrap().is_empty());
    // Once delivered, an answer can no longer be cancelled.
    block_on(ledger.record_prompt(prompt("s", "r2", "Bash", at(1)))).unwrap();
    block_on(ledger.record_decision(decision("s", "r2", Outcome::Denied, "a"))).unwrap();
    block_on(ledger.mark_delivered("s", "r2", at(3))).unwrap();
    cancel.request_id = "r2".into();
    assert_eq!(applied(&ledger, ledger.record_decision(cancel)), 4);
    let r2 = all_rows(&ledger)
        .into_iter()
        .find(|r| r.request_id == "r2")
        .unwrap();
    assert_eq!(r2.outcome, Some(Outcome::Denied));
}

#[test]
fn the_rules_refuse_with_the_matching_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = schema::open_writer(&dir.path().join("ledger.db")).unwrap();
    let mut apply = |w: Write| sql::commit(&mut conn, &[(1, &w)]).unwrap().pop().unwrap();
    let unknown = apply(Write::Decision(
        decision("s", "nope", Outcome::Allowed, "a").into(),
    ));
    assert!(
        matches!(unknown, Err(LedgerError::UnknownPrompt { .. })),
        "{unknown:?}"
    );
    apply(Write::Prompt(prompt("s", "r", "Bash", at(1)).into())).unwrap();
    let early = apply(Write::Delivered {
        session_id: "s".into(),
        request_id: "r".into(),
        at: 2,
    });
    assert!(
        matches!(early, Err(LedgerError::NotDecided { .. })),
        "{early:?}"
    );
    apply(Write::Decision(
        decision("s", "r", Outcome::Allowed, "a").into(),
    ))
    .unwrap();
    let again = apply(Write::Decision(
        decision("s", "r", Outcome::Allowed, "a").into(),
    ));
    assert!(matches!(again, Ok(0)), "{again:?}");
    let second = apply(Write::Decision(
        decision("s", "r", Outcome::Denied, "b").into(),
    ));
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
}

/// Write journal records for `writes` (numbered from `first`) as a crashed run would leave them.
fn leave_journal(db: &std::path::Path, first: u64, writes: &[Write]) {
    let mut journal = journal::Journal::create(db, first, 1 << 20).unwrap();
    for (seq, w) in (first..).zip(writes) {
        let mut buf = Vec::new();
        journal::encode(seq, w, &mut buf).unwrap();
        journal.append(&buf, seq).unwrap();
    }
    // Dropped, not closed: the segment stays, as after `kill -9`.
}

#[test]
fn open_replays_what_a_crash_left_in_the_journal_once() {
    let (_dir, cfg, ledger) = temp_ledger(Tuning::default());
    block_on(ledger.record_prompt(prompt("s", "old", "Bash", at(1)))).unwrap();
    drop(ledger);
    assert!(
        journal::segments(&cfg.path).unwrap().is_empty(),
        "a clean stop leaves no journal"
    );
    let applied = sql::applied_seq(&schema::open_reader(&cfg.path).unwrap()).unwrap();
    assert_eq!(applied, 1);
    // Records 1 (already applied: skipped) to 3 (new), and a torn tail.
    leave_journal(
        &cfg.path,
        1,
        &[
            Write::Decision(decision("s", "old", Outcome::Denied, "x").into()),
            Write::Prompt(prompt("s", "new", "Bash", at(2)).into()),
            Write::Decision(decision("s", "new", Outcome::Allowed, "op").into()),
        ],
    );
    let (_, seg) = journal::segments(&cfg.path).unwrap().pop().unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &[9, 0, 0]))
        .unwrap();

    let ledger = Ledger::open(&cfg).unwrap();
    let segments = journal::segments(&cfg.path).unwrap();
    assert_eq!(
        segments.len(),
        1,
        "only the new run's segment: {segments:?}"
    );
    assert_eq!(segments[0].0, 4, "numbered after the replayed records");
    let rows = all_rows(&ledger);
    let outcome = |id: &str| rows.iter().find(|r| r.request_id == id).map(|r| r.outcome);
    assert_eq!(
        outcome("old"),
        Some(None),
        "record 1 was applied before: not replayed"
    );
    assert_eq!(outcome("new"), Some(Some(Outcome::Allowed)));
    let restored = ledger.load_unfinished().unwrap();
    assert_eq!(
        restored.len(),
        2,
        "old pending, new undelivered: {restored:?}"
    );
    assert_eq!(ledger.write_errors(), 0);
    block_on(ledger.mark_delivered("s", "new", at(3))).unwrap();
    drop(ledger);
    let applied = sql::applied_seq(&schema::open_reader(&cfg.path).unwrap()).unwrap();
    assert_eq!(applied, 4);
}

#[test]
fn applied_journal_segments_are_deleted_while_running() {
    let tuning = Tuning {
        journal_segment_bytes: 128,
        ..Tuning::default()
    };
    let (_dir, cfg, ledger) = temp_ledger(tuning);
    for i in 0..50 {
        block_on(ledger.record_prompt(prompt("s", &format!("r{i}"), "Bash", at(i)))).unwrap();
    }
    // Segments are named by their first record's number, so the newest one tells how
    // far the journal rotated, however many the applier deleted already.
    let segments = journal::segments(&cfg.path).unwrap();
    let newest = segments.iter().map(|(first, _)| *first).max().unwrap_or(0);
    assert!(
        newest > 10,
        "rotated only up to record {newest}: {segments:?}"
    );
    // The applier deletes each full segment once its records are committed, before a
    // later flush is answered.
    block_on(ledger.flush()).unwrap();
    let left = journal::segments(&cfg.path).unwrap();
    assert_eq!(left.len(), 1, "only the current segment is left: {left:?}");
    assert_eq!(all_rows(&ledger).len(), 50);
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
        ("old-removed", old, Some(Outcome::Denied), false),
        ("new-removed", new, Some(Outcome::Denied), false),
        ("new-delivered", new, Some(Outcome::Allowed), true),
    ];
    for (id, received, outcome, delivered) in cases {
        drop(ledger.record_prompt(prompt("s", id, "Bash", received)));
        // Denied as its session was removed: kept for a replay, until retention.
        let by = if id.ends_with("removed") {
            "session_removed"
        } else {
            "op"
        };
        if let Some(o) = outcome {
            drop(ledger.record_decision(decision("s", id, o, by)));
        }
        if delivered {
            drop(ledger.mark_delivered("s", id, now));
        }
    }
    let cutoff = now - Duration::from_secs(30 * 86_400);
    // An expired prompt's deny still has to reach the session: not finished yet.
    assert_eq!(block_on(ledger.prune(cutoff)).unwrap(), 3);
    let mut left: Vec<String> = all_rows(&ledger)
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "new-delivered",
            "new-removed",
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
    let guard = ledger.hold_applier();
    // Durable (and acknowledged) at once while the applier falls behind, up to the bound.
    let results: Vec<_> = (0..6)
        .map(|i| block_on(ledger.record_prompt(prompt("s", &format!("r{i}"), "Bash", at(i)))))
        .collect();
    assert!(results[..4].iter().all(Result::is_ok), "{results:?}");
    for full in &results[4..] {
        assert!(
            matches!(full, Err(LedgerError::QueueFull { capacity: 4 })),
            "{full:?}"
        );
    }
    assert_eq!(ledger.write_errors(), 2);
    // A flush is still accepted, and returns once the applier has caught up.
    drop(guard);
    block_on(ledger.flush()).unwrap();
    block_on(ledger.record_prompt(prompt("s", "later", "Bash", at(10)))).unwrap();
    assert_eq!(all_rows(&ledger).len(), 5);
    assert_eq!(ledger.write_errors(), 2);
}

#[test]
fn a_prune_gives_its_place_in_the_queue_back() {
    let tuning = Tuning {
        queue_capacity: 2,
        ..Tuning::default()
    };
    let (_dir, _cfg, ledger) = temp_ledger(tuning);
    for _ in 0..3 {
        block_on(ledger.prune(SystemTime::UNIX_EPOCH)).unwrap();
    }
    for i in 0..2 {
        block_on(ledger.record_prompt(prompt("s", &format!("r{i}"), "Bash", at(i)))).unwrap();
    }
    assert_eq!(ledger.write_errors(), 0);
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
    let guard = ledger.hold_applier();
    let futs = ["ok1", "bad", "ok2"].map(|id| {
        let tool = if id == "bad" { "boom" } else { "Bash" };
        ledger.record_prompt(prompt("s", id, tool, at(1)))
    });
    drop(guard);
    // All three are durable in the journal; SQLite refuses one when they are applied
    // (in one transaction: the applier was held until all three were queued).
    for result in futs.map(block_on) {
        result.unwrap();
    }
    block_on(ledger.flush()).unwrap();
    let ids: Vec<String> = all_rows(&ledger)
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert!(
        ids.len() == 2 && !ids.contains(&"bad".to_owned()),
        "{ids:?}"
    );
    assert_eq!(ledger.write_errors(), 1);
}

#[test]
fn dropping_the_last_handle_leaves_only_the_database_file() {
    for _ in 0..5 {
        let (_dir, cfg, ledger) = temp_ledger(Tuning::default());
        block_on(ledger.record_prompt(prompt("s", "r", "Bash", at(1)))).unwrap();
        // A query puts the readers' read-only connections to use.
        let page = block_on(ledger.query(LedgerQuery::default())).unwrap();
        assert_eq!(page.rows.len(), 1);
        drop(ledger);
        let dir = cfg.path.parent().unwrap();
        let files = file_names(dir);
        // The lock file stays (removing it would race a next instance opening it); unlocked.
        assert_eq!(files, ["ledger.db", "ledger.db.lock"]);
        // Released (retried as `reopen` does, for a forked child's copy of the descriptor).
        drop(reopen(&cfg));
    }
}

/// Dropping the ledger while its applier gathers writes (`apply_delay`) commits them at
/// once: a shutdown does not wait out the gathering.
#[test]
fn dropping_the_ledger_commits_what_its_applier_is_gathering_without_waiting() {
    let tuning = Tuning {
        apply_delay: Duration::from_secs(60),
        ..Tuning::default()
    };
    let (_dir, cfg, ledger) = temp_ledger(tuning);
    block_on(ledger.record_prompt(prompt("s", "gathered", "Bash", at(1)))).unwrap();
    let started = Instant::now();
    drop(ledger);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited {:?} for the applier",
        started.elapsed()
    );
    assert_eq!(
        request_ids(&cfg.path),
        ["gathered"],
        "committed, not replayed later"
    );
}

/// A ledger file as an older build left it: `sql` run on a new database, and the config
/// that opens it (no retention, so its old rows stay).
fn ledger_made_by(sql: &str) -> (tempfile::TempDir, LedgerConfig) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
    let cfg = LedgerConfig {
        path,
        retain_days: 0,
        ..LedgerConfig::default()
    };
    (dir, cfg)
}

#[test]
fn kind_and_classification_are_read_from_what_was_stored_also_in_a_version_1_file() {
    // A version-1 file: the table without the computed columns.
    let (_dir, cfg) = ledger_made_by(
            "CREATE TABLE prompts (session_id TEXT NOT NULL, request_id TEXT NOT NULL,
               tool_use_id TEXT, tool_name TEXT NOT NULL, input TEXT NOT NULL, request TEXT NOT NULL,
               received_at INTEGER NOT NULL,
               outcome TEXT CHECK (outcome IN ('allowed', 'denied', 'cancelled', 'expired')),
               decided_by TEXT, decided_at INTEGER, updated_input TEXT, answer TEXT, reason TEXT,
               delivered_at INTEGER, PRIMARY KEY (session_id, request_id)) STRICT;
             INSERT INTO prompts VALUES ('s', 'old', NULL, 'Bash', '{}', '{\"subtype\":\"can_use_tool\"}',
               1000, 'denied', 'op', 2000, NULL, '{\"type\":\"control_response\"}', NULL, 3000);
             PRAGMA user_version = 1;",
    );
    let ledger = Ledger::open_with(&cfg, Tuning::default()).unwrap();
    let mut q = prompt("s", "q1", "mcp-server", at(5));
    q.request = json!({"subtype": "elicitation", "mcp_server_name": "mcp-server"});
    block_on(ledger.record_prompt(q)).unwrap();
    block_on(ledger.record_prompt(prompt("s", "p1", "Bash", at(6)))).unwrap();
    let mut d = decision("s", "p1", Outcome::Allowed, "op");
    d.answer = Some(
        r#"{"type":"control_response","response":{"subtype":"success","request_id":"p1","response":{"behavior":"allow","updatedInput":{},"decisionClassification":"user_permanent"}}}"#
            .into(),
    );
    block_on(ledger.record_decision(d)).unwrap();
    let page = block_on(ledger.query(LedgerQuery::default())).unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = page
        .rows
        .iter()
        .map(|r| {
            (
                r.request_id.as_str(),
                r.kind.as_str(),
                r.classification.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("p1", "can_use_tool", Some("user_permanent")),
            ("q1", "elicitation", None),
            ("old", "can_use_tool", None),
        ]
    );
}

#[test]
fn a_version_3_file_is_upgraded_in_place_and_keeps_its_rows() {
    // Version 3: `kind` and `classification` as virtual generated columns, which SQLite
    // computed (parsing `request` and `answer`) on every insert into the STRICT table.
    let (_dir, cfg) = ledger_made_by(
            "CREATE TABLE prompts (session_id TEXT NOT NULL, request_id TEXT NOT NULL,
               tool_use_id TEXT, tool_name TEXT NOT NULL, input TEXT NOT NULL, request TEXT NOT NULL,
               received_at INTEGER NOT NULL,
               outcome TEXT CHECK (outcome IN ('allowed', 'denied', 'cancelled', 'expired')),
               decided_by TEXT, decided_at INTEGER, updated_input TEXT, answer TEXT, reason TEXT,
               delivered_at INTEGER, deliveries INTEGER NOT NULL DEFAULT 0, last_delivered_at INTEGER,
               kind TEXT GENERATED ALWAYS AS (CASE WHEN json_valid(request)
                 THEN CAST(coalesce(json_extract(request, '$.subtype'), 'can_use_tool') AS TEXT)
                 ELSE 'can_use_tool' END) VIRTUAL,
               classification TEXT GENERATED ALWAYS AS (CASE WHEN json_valid(answer)
                 THEN CAST(json_extract(answer, '$.response.response.decisionClassification') AS TEXT)
                 END) VIRTUAL, PRIMARY KEY (session_id, request_id)) STRICT;
             INSERT INTO prompts (session_id, request_id, tool_name, input, request, received_at,
               outcome, decided_by, decided_at, answer, delivered_at, deliveries, last_delivered_at)
             VALUES ('s', 'old', 'mcp', '{}', '{\"subtype\":\"elicitation\"}', 1000, 'denied',
               'op', 2000, '{\"response\":{\"response\":{\"decisionClassification\":\"user_reject\"}}}',
               3000, 1, 3000);
             INSERT INTO prompts (session_id, request_id, tool_name, input, request, received_at)
             VALUES ('s', 'pend', 'Bash', '{}', '{}', 1500);
             CREATE INDEX prompts_unfinished ON prompts (received_at, session_id, request_id)
               WHERE outcome IS NULL OR (outcome IN ('allowed', 'denied', 'expired') AND delivered_at IS NULL);
             PRAGMA user_version = 3;",
    );
    let ledger = Ledger::open_with(&cfg, Tuning::default()).unwrap();
    let page = block_on(ledger.query(LedgerQuery::default())).unwrap();
    let row = page.rows.iter().find(|r| r.request_id == "old").unwrap();
    assert_eq!(
        (row.kind.as_str(), row.classification.as_deref()),
        ("elicitation", Some("user_reject"))
    );
    let unfinished = ledger.load_unfinished().unwrap();
    let ids: Vec<&str> = unfinished
        .iter()
        .map(|u| u.prompt.request_id.as_str())
        .collect();
    assert_eq!(ids, ["pend"]);
    drop(ledger);
    let conn = rusqlite::Connection::open(&cfg.path).unwrap();
    let generated: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_xinfo('prompts') WHERE hidden != 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(generated, 0, "no column is computed on insert");
    // No `IN` list is evaluated per insert (SQLite builds a temporary b-tree for one of
    // three or more constants); the rule itself still holds.
    let mut schema = conn
        .prepare(
            "SELECT name, sql FROM sqlite_schema WHERE tbl_name = 'prompts' AND sql IS NOT NULL",
        )
        .unwrap();
    let schema: Vec<(String, String)> = schema
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(schema.iter().any(|(n, _)| n == "prompts_unfinished"));
    for (name, sql) in &schema {
        assert!(!sql.contains(" IN ("), "{name}: {sql}");
    }
    let bogus = conn.execute(
        "UPDATE prompts SET outcome = 'bogus' WHERE request_id = 'old'",
        [],
    );
    assert!(bogus.is_err(), "the outcome check still holds");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
}

#[test]
fn a_second_open_of_the_same_ledger_is_refused_until_the_first_is_dropped() {
    let (_dir, cfg, ledger) = temp_ledger(Tuning::default());
    block_on(ledger.record_prompt(prompt("s", "r", "Bash", at(1)))).unwrap();
    let journal = journal_files(&cfg.path).unwrap();
    let err = Ledger::open(&cfg).err().expect("second open refused");
    assert!(matches!(err, LedgerError::InUse { .. }), "{err}");
    // The refused open replayed and rotated nothing.
    assert_eq!(journal_files(&cfg.path).unwrap(), journal);
    drop(ledger);
    let reopened = reopen(&cfg);
    assert_eq!(
        block_on(reopened.query(LedgerQuery::default()))
            .unwrap()
            .rows
            .len(),
        1
    );
}

#[test]
fn a_backup_while_running_holds_every_acknowledged_write_in_one_file() {
    let (dir, cfg, ledger) = temp_ledger(Tuning::default());
    block_on(ledger.record_prompt(prompt("s", "applied", "Bash", at(1)))).unwrap();
    block_on(ledger.flush()).unwrap();
    // Held applier: the next write is acknowledged (journaled) but not in SQLite.
    let guard = ledger.hold_applier();
    block_on(ledger.record_prompt(prompt("s", "journal-only", "Bash", at(2)))).unwrap();
    let dest = dir.path().join("backup.db");
    let report = backup(&cfg.path, &dest, false).unwrap();
    drop(guard);
    assert_eq!(report.prompts, 2, "{report:?}");
    assert!(report.journal_segments >= 1, "{report:?}");
    assert_eq!(request_ids(&dest), ["applied", "journal-only"]);
    // One file: no journal segments, no WAL, no temporary left beside it.
    assert_eq!(file_names(dir.path()), ["backup.db", "nested"]);

    let exists = backup(&cfg.path, &dest, false).unwrap_err();
    assert!(matches!(exists, BackupError::Exists(_)), "{exists}");
    assert!(exists.to_string().contains("--force"), "{exists}");
    block_on(ledger.record_prompt(prompt("s", "later", "Bash", at(3)))).unwrap();
    assert_eq!(backup(&cfg.path, &dest, true).unwrap().prompts, 3);
    assert_eq!(request_ids(&dest), ["applied", "journal-only", "later"]);
    let same = backup(&cfg.path, &cfg.path, true).unwrap_err();
    assert!(matches!(same, BackupError::SameFile(_)), "{same}");
    let none = backup(&dir.path().join("nothing.db"), &dest, true).unwrap_err();
    assert!(matches!(none, BackupError::NoLedger(_)), "{none}");
    // Restored, the copy is a ledger the service opens like its own.
    drop(ledger);
    let restored = Ledger::open(&LedgerConfig { path: dest, ..cfg }).unwrap();
    let page = block_on(restored.query(LedgerQuery::default())).unwrap();
    assert_eq!(page.rows.len(), 3);
}

/// The names of the files in `dir`, sorted.
fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The request ids of the prompts in the SQLite file at `db`, oldest first.
fn request_ids(db: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT request_id FROM prompts ORDER BY received_at")
        .unwrap();
    let ids = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ids
}

/// The shutdown waits on [`Ledger::closing`]: it is heard only once the last handle is
/// gone, whichever thread drops it, and then the journal and WAL are folded in.
#[test]
fn closing_is_heard_when_the_last_handle_is_dropped_on_any_thread() {
    let (_dir, cfg, ledger) = temp_ledger(Tuning::default());
    block_on(ledger.record_prompt(prompt("s", "r", "Bash", at(1)))).unwrap();
    let closing = ledger.closing().expect("a SQLite ledger");
    assert!(ledger.closing().is_none(), "taken once");
    let (go, gone) = std::sync::mpsc::channel::<()>();
    let other = ledger.clone();
    let worker = std::thread::spawn(move || {
        let _ = gone.recv();
        drop(other);
    });
    drop(ledger);
    assert!(
        !closing.wait(Duration::from_millis(50)),
        "another thread still holds it"
    );
    go.send(()).unwrap();
    assert!(closing.wait(Duration::from_secs(30)), "closed");
    worker.join().unwrap();
    let files = file_names(cfg.path.parent().unwrap());
    assert_eq!(files, ["ledger.db", "ledger.db.lock"]);
}

/// A barrier taken while the applier is idle is spent by it: the next write is gathered
/// for `apply_delay` as usual, not committed alone at once (once, a flag left set by the
/// idle flush cut the next gathering short).
#[test]
fn a_flush_while_idle_does_not_cut_the_next_gathering_short() {
    let tuning = Tuning {
        apply_delay: Duration::from_secs(20),
        ..Tuning::default()
    };
    let (_dir, cfg, ledger) = temp_ledger(tuning);
    block_on(ledger.flush()).unwrap();
    block_on(ledger.record_prompt(prompt("s", "gathered", "Bash", at(1)))).unwrap();
    // Not committed yet: the applier gathers (a commit would show in another connection).
    std::thread::sleep(Duration::from_millis(300));
    assert!(request_ids(&cfg.path).is_empty(), "committed alone at once");
    // A flush still cuts the gathering short.
    block_on(ledger.flush()).unwrap();
    assert_eq!(request_ids(&cfg.path), ["gathered"]);
}

#[test]
fn a_lookup_waits_for_the_applier_only_for_a_prompt_it_has_not_committed() {
    // Every new prompt of a session whose older prompts the registry forgot is looked up;
    // a flush per lookup made the applier commit every few writes. Only a prompt with a
    // write still queued needs one.
    let (_dir, _cfg, ledger) = temp_ledger(Tuning::default());
    block_on(ledger.record_prompt(prompt("s", "old", "Bash", at(1)))).unwrap();
    block_on(ledger.flush()).unwrap();
    let guard = ledger.hold_applier();
    block_on(ledger.record_prompt(prompt("s", "queued", "Bash", at(2)))).unwrap();
    let look = |id: &'static str| {
        let (tx, rx) = std::sync::mpsc::channel();
        let lookup = ledger.lookup("s", id);
        std::thread::spawn(move || tx.send(block_on(lookup)));
        rx
    };
    let answered = |rx: std::sync::mpsc::Receiver<Result<Stored, LedgerError>>| {
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the lookup answers")
            .unwrap()
    };
    // Committed, or never written: read at once, the applier still held.
    assert!(matches!(answered(look("old")), Stored::Pending));
    assert!(matches!(answered(look("never")), Stored::Nothing));
    // Queued: read only once the applier has committed it, never as new.
    let queued = look("queued");
    assert!(
        queued
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err(),
        "read before its write was committed"
    );
    drop(guard);
    assert!(matches!(answered(queued), Stored::Pending));
}

#[test]
fn the_unapplied_map_keeps_what_is_uncommitted_and_sheds_the_rest() {
    let mut u = super::writes::Unapplied::default();
    for seq in 1..=10_000u64 {
        // The applier keeps up to 100 writes behind.
        u.wrote("s", &format!("r{seq}"), seq, seq.saturating_sub(100));
    }
    assert!(!u.committed("s", "r10000", 9_900));
    assert!(u.committed("s", "r10000", 10_000));
    assert!(u.committed("s", "r1", 9_900), "committed long ago");
    assert!(u.committed("s", "unknown", 0));
    assert!(u.len() <= 8_192, "bounded: {}", u.len());
}
