//! The PostgreSQL writer's multi-row statements: writes committed together in one batch
//! are answered each on its own, exactly as if each had been committed alone.

use std::sync::Arc;

use super::backends::{claim, pg_config, walk};
use super::*;
use crate::ledger::pg::fence::Fences;

/// Whose rows in `pg_stat_activity` wait for a lock: the writer, once its batch is blocked.
async fn waiting_for_a_lock(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// One batch holding, for sessions held here, elsewhere and at a stale epoch: prompts, a
/// prompt twice, a decision and the delivery of a prompt recorded in the same batch,
/// conflicting and repeated decisions, deliveries refused for each reason. Each write
/// gets its own answer and only what was allowed is stored.
#[tokio::test]
async fn one_batch_mixing_fenced_out_refused_and_valid_writes_answers_each_alone() {
    let Some(server) = ccr_pgtest::require() else {
        return;
    };
    let url = server.unique_database("batched").unwrap();
    let cfg = pg_config(&url);
    let fences = Fences::new("inst-a");
    let ledger = Ledger::open_clustered(&cfg, Tuning::default(), Some(fences.clone())).unwrap();
    let connect = || async {
        let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        db
    };
    let (mut admin, watcher) = (connect().await, connect().await);
    let deadline = Instant::now() + Duration::from_secs(30);
    let [s1, s2, s3]: [Arc<str>; 3] = ["s1".into(), "s2".into(), "s3".into()];
    // s1 is held here; s2 by another instance (this one still believes it holds it);
    // s3 here, but claimed again since (the epoch known here is stale).
    fences.hold(&s1, claim(&admin, "s1", "inst-a").await, deadline);
    fences.hold(&s2, 1, deadline);
    claim(&admin, "s2", "inst-b").await;
    fences.hold(&s3, claim(&admin, "s3", "inst-a").await, deadline);
    claim(&admin, "s3", "inst-a").await;
    for r in ["block", "pending", "decided", "known", "twice"] {
        ledger
            .record_prompt(prompt("s1", r, "Bash", at(1)))
            .await
            .unwrap();
    }
    for r in ["decided", "twice"] {
        ledger
            .record_decision(decision("s1", r, Outcome::Denied, "bob"))
            .await
            .unwrap();
    }
    // A prompt of s2, recorded by its owner.
    admin
        .execute(
            "INSERT INTO ccr_prompts (session_id, request_id, tool_name, input, request, \
             received_at) VALUES ('s2', 'theirs', 'Bash', '{}', '{}', 1000)",
            &[],
        )
        .await
        .unwrap();

    // Hold the writer on a row lock, so that everything queued meanwhile is one batch.
    let tx = admin.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM ccr_prompts WHERE request_id = 'block' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let blocker = ledger.record_decision(decision("s1", "block", Outcome::Allowed, "x"));
    while waiting_for_a_lock(&watcher).await == 0 {
        assert!(Instant::now() < deadline, "the writer never waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivered = |s: &str, r: &str| Write::Delivered {
        session_id: s.into(),
        request_id: r.into(),
        at: 5,
    };
    let decided = |s: &str, r: &str, o, by| Write::Decision(decision(s, r, o, by).into());
    let writes = vec![
        (
            Write::Prompt(prompt("s1", "new", "Bash", at(2)).into()),
            "ok",
        ),
        (
            Write::Prompt(prompt("s2", "new", "Bash", at(2)).into()),
            "lapsed",
        ),
        (
            Write::Prompt(prompt("s1", "new", "Bash", at(2)).into()),
            "ok",
        ),
        (decided("s1", "new", Outcome::Allowed, "alice"), "ok"),
        (delivered("s1", "new"), "ok"),
        (
            decided("s1", "new", Outcome::Denied, "bob"),
            "already allowed",
        ),
        (decided("s1", "new", Outcome::Allowed, "alice"), "ok"),
        (delivered("s1", "new"), "ok"),
        (
            Write::Prompt(prompt("s3", "new", "Bash", at(2)).into()),
            "lapsed",
        ),
        (decided("s1", "nope", Outcome::Allowed, "alice"), "unknown"),
        (delivered("s1", "pending"), "not decided"),
        (delivered("s1", "nope"), "unknown"),
        (delivered("s2", "new"), "lapsed"),
        (delivered("s3", "decided"), "lapsed"),
        (delivered("s1", "decided"), "ok"),
        (
            decided("s1", "decided", Outcome::Allowed, "alice"),
            "already denied",
        ),
        // A decision needs no lease: a prompt of a session held elsewhere is decided here.
        (decided("s2", "theirs", Outcome::Denied, "carol"), "ok"),
        // A prompt the lease refuses, with its decision right behind it (the prompt goes
        // in decided, when written): nothing is written, the decision finds no prompt.
        (
            Write::Prompt(prompt("s2", "gone", "Bash", at(3)).into()),
            "lapsed",
        ),
        (decided("s2", "gone", Outcome::Allowed, "alice"), "unknown"),
        (
            Write::Prompt(prompt("s1", "last", "Bash", at(3)).into()),
            "ok",
        ),
        (decided("s1", "last", Outcome::Cancelled, "session"), "ok"),
        // Known prompts with a decision right behind: not inserted again; the decision is
        // applied as on its own (first decision wins).
        (
            Write::Prompt(prompt("s1", "known", "Bash", at(1)).into()),
            "ok",
        ),
        (decided("s1", "known", Outcome::Allowed, "alice"), "ok"),
        (
            Write::Prompt(prompt("s1", "twice", "Bash", at(1)).into()),
            "ok",
        ),
        (
            decided("s1", "twice", Outcome::Allowed, "alice"),
            "already denied",
        ),
    ];
    let (writes, expected): (Vec<Write>, Vec<&str>) = writes.into_iter().unzip();
    let queued: Vec<Written> = writes.into_iter().map(|w| ledger.write_raw(w)).collect();
    tx.commit().await.unwrap();
    blocker.await.unwrap();
    let mut answers = Vec::new();
    for q in queued {
        answers.push(match q.await {
            Ok(()) => "ok".to_owned(),
            Err(LedgerError::NotOwner { .. }) => "not owner".to_owned(),
            // Refused by the database while this instance's fences still hold the session
            // (at a stale epoch, or held elsewhere): lapsed here until the lease loop lets go.
            Err(LedgerError::LeaseLapsed { .. }) => "lapsed".to_owned(),
            Err(LedgerError::UnknownPrompt { .. }) => "unknown".to_owned(),
            Err(LedgerError::NotDecided { .. }) => "not decided".to_owned(),
            Err(LedgerError::AlreadyDecided { outcome, .. }) => {
                format!("already {}", outcome.as_str())
            }
            Err(e) => format!("{e:?}"),
        });
    }
    assert_eq!(answers, expected);

    let rows = walk(&ledger, LedgerQuery::default(), 100);
    let mut stored: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.session_id.as_str(),
                r.request_id.as_str(),
                r.outcome,
                r.deliveries,
            )
        })
        .collect();
    stored.sort_by_key(|r| (r.0, r.1));
    assert_eq!(
        stored,
        [
            ("s1", "block", Some(Outcome::Allowed), 0),
            ("s1", "decided", Some(Outcome::Denied), 1),
            ("s1", "known", Some(Outcome::Allowed), 0),
            ("s1", "last", Some(Outcome::Cancelled), 0),
            ("s1", "new", Some(Outcome::Allowed), 2),
            ("s1", "pending", None, 0),
            ("s1", "twice", Some(Outcome::Denied), 0),
            ("s2", "theirs", Some(Outcome::Denied), 0),
        ]
    );
}

/// A batch whose prompt and delivery count under two leases, while a renewal of both runs:
/// the writer locks its leases `FOR KEY SHARE`, which the renewal's `FOR NO KEY UPDATE`
/// does not conflict with, so the renewal goes through while the batch holds them, and
/// the batch's writes all commit after. (With `FOR SHARE` locked statement by statement,
/// the prompt's lease, then the delivery's, a renewal holding the second and waiting for
/// the first deadlocked, and PostgreSQL broke it after a second by failing one of them;
/// locked first and in order, the renewal waited for the whole batch.)
#[tokio::test]
async fn a_renewal_during_a_batch_of_fenced_writes_neither_waits_for_it_nor_deadlocks() {
    let Some(server) = ccr_pgtest::require() else {
        return;
    };
    let url = server.unique_database("renewal").unwrap();
    let cfg = pg_config(&url);
    let fences = Fences::new("inst-a");
    let ledger = Ledger::open_clustered(&cfg, Tuning::default(), Some(fences.clone())).unwrap();
    let connect = || async {
        let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        db
    };
    let (admin, watcher, lease_loop) = (connect().await, connect().await, connect().await);
    let (mut lock_first, mut lock_block) = (connect().await, connect().await);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (a, b): (Arc<str>, Arc<str>) = ("s-a".into(), "s-b".into());
    let (epoch_a, epoch_b) = (
        claim(&admin, "s-a", "inst-a").await,
        claim(&admin, "s-b", "inst-a").await,
    );
    fences.hold(&a, epoch_a, deadline);
    fences.hold(&b, epoch_b, deadline);
    for (s, r) in [("s-a", "first"), ("s-a", "block"), ("s-b", "decided")] {
        ledger
            .record_prompt(prompt(s, r, "Bash", at(1)))
            .await
            .unwrap();
    }
    ledger
        .record_decision(decision("s-b", "decided", Outcome::Allowed, "alice"))
        .await
        .unwrap();
    let waiting = || waiting_for_a_lock(&watcher);
    let wait_until = |n: i64, what: &'static str| {
        let waiting = &waiting;
        async move {
            while waiting().await < n {
                assert!(Instant::now() < deadline, "{what}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    // The writer is held on a prompt's row lock: everything queued meanwhile is one batch.
    let (first_held, block_held) = (
        lock_first.transaction().await.unwrap(),
        lock_block.transaction().await.unwrap(),
    );
    for (tx, r) in [(&first_held, "first"), (&block_held, "block")] {
        tx.execute(
            "SELECT 1 FROM ccr_prompts WHERE request_id = $1 FOR UPDATE",
            &[&r],
        )
        .await
        .unwrap();
    }
    let first = ledger.record_decision(decision("s-a", "first", Outcome::Denied, "x"));
    wait_until(1, "the writer never waited").await;
    // The batch: s-a's prompt (its lease), a decision that waits for a row lock, then
    // s-b's delivery (its lease).
    let batch = [
        ledger.record_prompt(prompt("s-a", "new", "Bash", at(2))),
        ledger.record_decision(decision("s-a", "block", Outcome::Allowed, "bob")),
        ledger.mark_delivered("s-b", "decided", at(3)),
    ];
    first_held.rollback().await.unwrap();
    first.await.unwrap();
    wait_until(1, "the batch never waited for the row lock").await;
    // Renew both leases, s-b first: the renewal holds s-b only if the batch had not
    // locked it yet.
    let renewal = tokio::spawn(async move {
        // The lease loop's own statement (`cluster::store::renew`).
        let sessions: Vec<&str> = vec![&b, &a];
        let epochs = vec![epoch_b, epoch_a];
        let rows = lease_loop
            .query(
                crate::ledger::pg::fence::RENEW_LEASES,
                &[&"inst-a", &30.0f64, &sessions, &epochs],
            )
            .await;
        rows.map(|rows| {
            rows.iter()
                .map(|r| Arc::<str>::from(r.get::<_, &str>(0)))
                .collect::<Vec<_>>()
        })
    });
    // The batch still waits for the row lock, holding both leases: the renewal does not
    // wait for it.
    let mut renewed = tokio::time::timeout(Duration::from_secs(20), renewal)
        .await
        .expect("the renewal waited for the batch")
        .unwrap()
        .unwrap();
    renewed.sort();
    assert_eq!(renewed, [Arc::<str>::from("s-a"), Arc::from("s-b")]);
    assert_eq!(waiting().await, 1, "the batch still waits for the row lock");
    block_held.rollback().await.unwrap();
    for w in batch {
        w.await.unwrap();
    }
}

/// Notifications a connection heard, as (channel, payload).
type Heard = tokio::sync::mpsc::UnboundedReceiver<(String, String)>;

/// A connection to `url` that has run `listen` (its `LISTEN`s), and what it hears.
async fn listening(url: &str, listen: &str) -> (tokio_postgres::Client, Heard) {
    let (db, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    db.batch_execute(listen).await.unwrap();
    (db, heard)
}

/// The next notification heard, within 10 s.
async fn next_note(heard: &mut Heard) -> (String, String) {
    tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .expect("a notification")
        .expect("listening")
}

/// A prompt committed together with its decision (a rule's answer on arrival) is written
/// once, decided (one row version, not an insert and then an update), and still tells the
/// other instances both that it was prompted and that it was decided, in that order.
#[tokio::test]
async fn a_prompt_written_with_its_decision_is_one_row_version_and_notifies_both() {
    let Some(server) = ccr_pgtest::require() else {
        return;
    };
    let url = server.unique_database("together_once").unwrap();
    let ledger = Ledger::open(&pg_config(&url)).unwrap();
    let (listener, mut heard) = listening(&url, "LISTEN ccr_prompted; LISTEN ccr_decided").await;
    let p = prompt("s1", "r1", "Bash", at(1_000));
    let d = decision("s1", "r1", Outcome::Allowed, "rule:ls");
    ledger
        .append_prompt_and_decision("s1", &p.to_prompt(), at(1_000), d)
        .await
        .unwrap();
    let key = r#"[["s1", "r1"]]"#.to_owned();
    for channel in ["ccr_prompted", "ccr_decided"] {
        assert_eq!(
            next_note(&mut heard).await,
            (channel.to_owned(), key.clone())
        );
    }
    // The first version of the first row of the table: never updated.
    let (ctid, outcome): (String, Option<String>) = listener
        .query_one(
            "SELECT ctid::text, outcome FROM ccr_prompts WHERE request_id = 'r1'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        (ctid.as_str(), outcome.as_deref()),
        ("(0,1)", Some("allowed"))
    );
}

/// The decision trigger runs only for the rows a statement decides: a delivery mark (a
/// third of the writer's writes) calls no trigger function at all, a statement deciding two
/// prompts calls it twice and sends one `ccr_decided` per prompt, and setting the same
/// outcome again calls nothing. (Before schema migration 7 a statement-level trigger ran,
/// with both transition tables kept, for every `UPDATE` of `ccr_prompts`.)
#[tokio::test]
async fn only_a_statement_that_decides_runs_the_decision_trigger_once_per_row_it_decides() {
    let Some(server) = ccr_pgtest::require() else {
        return;
    };
    let url = server.unique_database("decided_per_row").unwrap();
    let ledger = Ledger::open(&pg_config(&url)).unwrap();
    for r in ["r1", "r2"] {
        let p = prompt("s1", r, "Bash", at(1_000));
        ledger
            .append_prompt("s1", &p.to_prompt(), at(1_000))
            .await
            .unwrap();
    }
    let (mut db, mut heard) = listening(&url, "LISTEN ccr_decided").await;
    let t = db.transaction().await.unwrap();
    t.batch_execute("SET LOCAL track_functions = 'pl'")
        .await
        .unwrap();
    let calls = || async {
        let n: i64 = t
            .query_one(
                "SELECT COALESCE(pg_stat_get_xact_function_calls('ccr_notify_decided'::regproc), 0)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n
    };
    t.execute(
        "UPDATE ccr_prompts SET delivered_at = 5, deliveries = deliveries + 1, \
         last_delivered_at = 5 WHERE session_id = 's1'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(calls().await, 0, "a delivery mark ran the decision trigger");
    t.execute(
        "UPDATE ccr_prompts SET outcome = 'allowed', decided_by = 'operator', decided_at = 6 \
         WHERE session_id = 's1'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(calls().await, 2, "one call for each prompt decided");
    t.execute(
        "UPDATE ccr_prompts SET outcome = 'allowed' WHERE session_id = 's1'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(calls().await, 2, "the same outcome again decides nothing");
    t.commit().await.unwrap();
    let mut notes = vec![next_note(&mut heard).await, next_note(&mut heard).await];
    notes.sort();
    let note = |r: &str| ("ccr_decided".to_owned(), format!(r#"[["s1", "{r}"]]"#));
    assert_eq!(notes, [note("r1"), note("r2")]);
    drop(ledger);
}

/// A prompt written together with its decision, one commit at a time (the writer idle: its
/// one-row statement): a new prompt goes in decided; a known one is not inserted again and
/// its decision applies as it would alone: first decision wins, the same decision again is
/// done, and an unknown session's lease is not needed for it (no fences here).
#[tokio::test]
async fn a_prompt_known_already_and_written_with_a_decision_is_decided_as_the_decision_alone() {
    let Some(server) = ccr_pgtest::require() else {
        return;
    };
    let url = server.unique_database("together_known").unwrap();
    let ledger = Ledger::open(&pg_config(&url)).unwrap();
    let together = |r: &'static str, outcome, by: &'static str| {
        let p = prompt("s1", r, "Bash", at(1_000));
        ledger.append_prompt_and_decision(
            "s1",
            &p.to_prompt(),
            at(1_000),
            decision("s1", r, outcome, by),
        )
    };
    for r in ["pending", "denied"] {
        let p = prompt("s1", r, "Bash", at(1_000));
        ledger
            .append_prompt("s1", &p.to_prompt(), at(1_000))
            .await
            .unwrap();
    }
    ledger
        .record_decision(decision("s1", "denied", Outcome::Denied, "bob"))
        .await
        .unwrap();
    together("new", Outcome::Allowed, "rule:ls").await.unwrap();
    together("pending", Outcome::Allowed, "rule:ls")
        .await
        .unwrap();
    match together("denied", Outcome::Allowed, "rule:ls").await {
        Err(LedgerError::AlreadyDecided { outcome, .. }) => assert_eq!(outcome, Outcome::Denied),
        other => panic!("{other:?}"),
    }
    together("new", Outcome::Allowed, "rule:ls").await.unwrap();
    let rows = walk(&ledger, LedgerQuery::default(), 100);
    let mut stored: Vec<_> = rows
        .iter()
        .map(|r| (r.request_id.as_str(), r.outcome, r.decided_by.as_deref()))
        .collect();
    stored.sort_by_key(|r| r.0);
    assert_eq!(
        stored,
        [
            ("denied", Some(Outcome::Denied), Some("bob")),
            ("new", Some(Outcome::Allowed), Some("rule:ls")),
            ("pending", Some(Outcome::Allowed), Some("rule:ls")),
        ]
    );
}
