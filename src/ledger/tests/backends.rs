//! The shared ledger suite: the same writes on SQLite and on PostgreSQL must store the same
//! rows and answer every audit query, lookup and restore alike; and what only PostgreSQL
//! does (refusals reported, several instances on one database, the database restarting).

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::*;
use crate::config::{LedgerBackend, PgUrlSource, PostgresConfig};

/// A PostgreSQL ledger on a fresh database of `url`'s server, read from an environment
/// variable named after the database (as an operator gives it).
pub(super) fn pg_config(url: &str) -> LedgerConfig {
    let var = format!(
        "CCR_TEST_PG_URL_{}",
        url.rsplit('/').next().unwrap().to_uppercase()
    );
    // Each test sets its own variable once, before any ledger reads it.
    std::env::set_var(&var, url);
    LedgerConfig {
        retain_days: 0,
        backend: LedgerBackend::Postgres(PostgresConfig {
            url: PgUrlSource::Env(var),
            pool_size: 4,
            statement_timeout: Duration::from_secs(5),
            ca_file: None,
        }),
        ..LedgerConfig::default()
    }
}

/// A ledger on a new database of the shared test server; `None` when PostgreSQL is not
/// installed and not required.
fn pg_ledger(name: &str) -> Option<(LedgerConfig, Ledger)> {
    let pg = ccr_pgtest::require()?;
    let cfg = pg_config(&pg.unique_database(name).unwrap());
    let ledger = Ledger::open(&cfg).unwrap();
    Some((cfg, ledger))
}

const SESSIONS: [&str; 3] = ["s-a", "s-b", "s-c"];
const TOOLS: [&str; 3] = ["Bash", "Edit", "Read"];
const DECIDERS: [&str; 4] = ["alice", "bob", "rule:no-rm", "timeout"];
const OUTCOMES: [Outcome; 4] = [
    Outcome::Allowed,
    Outcome::Denied,
    Outcome::Cancelled,
    Outcome::Expired,
];

/// A random history of writes over a few prompts: prompts (some received at the same
/// millisecond, so paging must order by the whole key), decisions that win, repeat or
/// conflict, cancels, and deliveries before and after a decision.
fn random_writes(seed: u64, n: usize) -> Vec<Write> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut known: Vec<(String, String)> = Vec::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let new = known.is_empty() || rng.gen_bool(0.4);
        if new {
            let session = SESSIONS[rng.gen_range(0..3)].to_owned();
            let request = format!("r{i}");
            let mut p = prompt(
                &session,
                &request,
                TOOLS[rng.gen_range(0..3)],
                at(1_000 + rng.gen_range(0..20)),
            );
            if rng.gen_bool(0.2) {
                p.request = json!({"subtype": "elicitation", "message": "which?"});
            }
            known.push((session, request));
            out.push(Write::Prompt(p.into()));
            continue;
        }
        let (s, r) = known[rng.gen_range(0..known.len())].clone();
        if rng.gen_bool(0.3) {
            out.push(Write::Delivered {
                session_id: s,
                request_id: r,
                at: 2_000_000_000_000 + i as i64,
            });
        } else {
            let mut d = decision(
                &s,
                &r,
                OUTCOMES[rng.gen_range(0..4)],
                DECIDERS[rng.gen_range(0..4)],
            );
            if rng.gen_bool(0.3) {
                d.answer = Some(format!(
                    r#"{{"response":{{"response":{{"decisionClassification":"user_temporary","n":{i}}}}}}}"#
                ));
                d.updated_input = Some(json!({"command": format!("ls {i}")}));
            }
            out.push(Write::Decision(d.into()));
        }
    }
    out
}

/// Apply `writes` in order, each awaited before the next is queued; each one's result
/// (the backend's: SQLite reports refusals only in its counters, PostgreSQL in the
/// result too).
fn apply(ledger: &Ledger, writes: Vec<Write>) -> Vec<String> {
    let results = writes
        .into_iter()
        .map(|w| answer(block_on(ledger.write_raw(w))))
        .collect();
    block_on(ledger.flush()).unwrap();
    results
}

/// Queue every write of `writes` at once, so that the writer commits them in batches
/// (PostgreSQL: as many as are queued, in a few multi-row statements); each one's result.
fn apply_queued(ledger: &Ledger, writes: Vec<Write>) -> Vec<String> {
    let queued: Vec<Written> = writes.into_iter().map(|w| ledger.write_raw(w)).collect();
    let results = queued.into_iter().map(|w| answer(block_on(w))).collect();
    block_on(ledger.flush()).unwrap();
    results
}

/// A write's result, comparable across ledgers.
fn answer(r: Result<(), LedgerError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

/// Every page of `q` walked with `limit`, as the API client would.
pub(super) fn walk(ledger: &Ledger, mut q: LedgerQuery, limit: usize) -> Vec<LedgerRow> {
    q.limit = Some(limit);
    let mut rows = Vec::new();
    loop {
        let page = block_on(ledger.query(q.clone())).unwrap();
        rows.extend(page.rows);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return rows,
        }
    }
}

/// The queries an operator runs: each filter alone, some together, and time windows.
fn queries() -> Vec<LedgerQuery> {
    let mut out = vec![LedgerQuery::default()];
    for s in SESSIONS {
        out.push(LedgerQuery {
            session_id: Some(s.into()),
            ..Default::default()
        });
    }
    for t in TOOLS {
        out.push(LedgerQuery {
            tool: Some(t.into()),
            outcome: Some(OutcomeFilter::Is(Outcome::Allowed)),
            ..Default::default()
        });
    }
    for d in DECIDERS {
        out.push(LedgerQuery {
            decided_by: Some(d.into()),
            ..Default::default()
        });
    }
    out.push(LedgerQuery {
        outcome: Some(OutcomeFilter::Pending),
        ..Default::default()
    });
    for o in OUTCOMES {
        out.push(LedgerQuery {
            outcome: Some(OutcomeFilter::Is(o)),
            ..Default::default()
        });
    }
    out.push(LedgerQuery {
        since: Some(at(1_005)),
        until: Some(at(1_012)),
        ..Default::default()
    });
    out
}

/// A prompt recorded together with its decision (a rule's answer on arrival) is stored as
/// when written in turn, on either backend; on PostgreSQL (which reports refusals to the
/// writer) a decision refused refuses the pair. Either way the first decision stays.
#[test]
fn a_prompt_and_its_decision_written_together_are_stored_alike_on_both_backends() {
    let Some((_cfg, pg)) = pg_ledger("together") else {
        return;
    };
    let (_dir, _scfg, sqlite) = temp_ledger(Tuning::default());
    for ledger in [&sqlite, &pg] {
        let together = |request: &str, outcome, by: &str| {
            let p = prompt("s-a", request, "Bash", at(1_000));
            let d = decision("s-a", request, outcome, by);
            block_on(ledger.append_prompt_and_decision("s-a", &p.to_prompt(), at(1_000), d))
        };
        together("p1", Outcome::Allowed, "rule:ls").unwrap();
        // The same pair again (a retry) is a no-op; another answer to it is refused.
        together("p1", Outcome::Allowed, "rule:ls").unwrap();
        let other = together("p1", Outcome::Denied, "rule:no");
        if std::ptr::eq(ledger, &pg) {
            assert!(
                matches!(other, Err(LedgerError::AlreadyDecided { .. })),
                "{other:?}"
            );
        }
    }
    let rows = all_rows(&sqlite);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].decided_by.as_deref(), Some("rule:ls"));
    assert_eq!(all_rows(&pg), rows);
}

#[test]
fn both_backends_store_and_answer_the_same() {
    let Some((_cfg, pg)) = pg_ledger("shared_suite") else {
        return;
    };
    let (_dir, _scfg, sqlite) = temp_ledger(Tuning::default());
    let writes = || random_writes(29, 400);
    apply(&sqlite, writes());
    let one_by_one = apply(&pg, writes());
    // The same writes queued at once: committed in batches, where one prompt's writes
    // may share a transaction; each answered as when committed alone.
    let (_cfg, batched) = pg_ledger("shared_suite_batched").expect("the server is up");
    assert_eq!(apply_queued(&batched, writes()), one_by_one);
    assert!(
        one_by_one.iter().any(|a| a.contains("already")),
        "{one_by_one:?}"
    );
    assert!(one_by_one
        .iter()
        .any(|a| a.contains("no decision to deliver")));
    assert!(one_by_one.iter().any(|a| a == "ok"));

    let everything = walk(&sqlite, LedgerQuery::default(), 1000);
    assert!(everything.len() > 100, "{}", everything.len());
    let outcomes: BTreeSet<_> = everything
        .iter()
        .map(|r| r.outcome.map(Outcome::as_str))
        .collect();
    assert_eq!(outcomes.len(), 5, "every outcome and pending: {outcomes:?}");
    assert!(everything.iter().any(|r| r.classification.is_some()));
    assert!(everything.iter().any(|r| r.kind == "elicitation"));
    assert!(everything.iter().any(|r| r.deliveries > 1));
    assert_eq!(walk(&batched, LedgerQuery::default(), 1000), everything);
    for q in queries() {
        for limit in [1000, 7] {
            let (a, b) = (walk(&sqlite, q.clone(), limit), walk(&pg, q.clone(), limit));
            assert_eq!(a, b, "query {q:?}, pages of {limit}");
        }
    }
    // A cursor from one backend pages the other alike (clients keep them across restarts).
    let first = block_on(sqlite.query(LedgerQuery {
        limit: Some(5),
        ..Default::default()
    }))
    .unwrap();
    let resumed = LedgerQuery {
        cursor: first.next_cursor,
        limit: Some(9),
        ..Default::default()
    };
    assert_eq!(
        block_on(sqlite.query(resumed.clone())).unwrap(),
        block_on(pg.query(resumed)).unwrap()
    );

    assert_eq!(
        sqlite.load_unfinished().unwrap(),
        pg.load_unfinished().unwrap()
    );
    let (a, b) = (
        sqlite.load_resolved(50, 1 << 20).unwrap(),
        pg.load_resolved(50, 1 << 20).unwrap(),
    );
    assert_eq!((a.rows, a.incomplete), (b.rows, b.incomplete));
    for r in &everything {
        assert_eq!(
            block_on(sqlite.lookup(&r.session_id, &r.request_id)).unwrap(),
            block_on(pg.lookup(&r.session_id, &r.request_id)).unwrap(),
        );
    }
    assert_eq!(
        block_on(pg.lookup("s-a", "never")).unwrap(),
        Stored::Nothing
    );
    let mut exported = Vec::new();
    pg.export(&LedgerQuery::default(), |r| {
        exported.push(r);
        Ok(())
    })
    .unwrap();
    assert_eq!(exported, everything);

    // Retention deletes the same finished rows.
    let cut = at(1_010);
    assert_eq!(
        block_on(sqlite.prune(cut)).unwrap(),
        block_on(pg.prune(cut)).unwrap()
    );
    assert_eq!(
        walk(&sqlite, LedgerQuery::default(), 1000),
        walk(&pg, LedgerQuery::default(), 1000)
    );
}

#[test]
fn postgres_reports_each_refusal_to_the_writer() {
    let Some((_cfg, pg)) = pg_ledger("refusals") else {
        return;
    };
    block_on(pg.record_prompt(prompt("s", "r1", "Bash", at(1)))).unwrap();
    let err = block_on(pg.mark_delivered("s", "r1", at(2))).unwrap_err();
    assert!(matches!(err, LedgerError::NotDecided { .. }), "{err}");
    let err = block_on(pg.record_decision(decision("s", "nope", Outcome::Allowed, "a")));
    assert!(
        matches!(err, Err(LedgerError::UnknownPrompt { .. })),
        "{err:?}"
    );
    block_on(pg.record_decision(decision("s", "r1", Outcome::Allowed, "alice"))).unwrap();
    // The same decision again is a no-op; another one is refused with what is stored.
    block_on(pg.record_decision(decision("s", "r1", Outcome::Allowed, "alice"))).unwrap();
    match block_on(pg.record_decision(decision("s", "r1", Outcome::Denied, "bob"))) {
        Err(LedgerError::AlreadyDecided { outcome, .. }) => assert_eq!(outcome, Outcome::Allowed),
        other => panic!("{other:?}"),
    }
    // The same operator allowing again with another answer (an edited input, say) is not
    // the same decision: refused, so that the session acts only on the recorded one (a
    // cluster's second instance once took it for a repeat and sent its own answer).
    let mut edited = decision("s", "r1", Outcome::Allowed, "alice");
    edited.answer = Some(r#"{"type":"control_response","edited":true}"#.into());
    match block_on(pg.record_decision(edited)) {
        Err(LedgerError::AlreadyDecided { outcome, .. }) => assert_eq!(outcome, Outcome::Allowed),
        other => panic!("{other:?}"),
    }
    // A cancel still voids the undelivered answer, keeping it for the audit trail.
    block_on(pg.record_decision(decision("s", "r1", Outcome::Cancelled, "session"))).unwrap();
    let row = &block_on(pg.query(LedgerQuery::default())).unwrap().rows[0];
    assert_eq!(row.outcome, Some(Outcome::Cancelled));
    assert!(row.answer.is_some());
    assert_eq!(pg.write_errors(), 4);
}

#[test]
fn instances_on_one_database_agree_on_the_first_decision() {
    let Some(server) = ccr_pgtest::require() else {
        return;
    };
    let cfg = pg_config(&server.unique_database("race").unwrap());
    // Opened at once: the schema is migrated exactly once.
    let opened: Vec<Ledger> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| Ledger::open(&cfg).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let versions = server
        .psql(
            cfg_database(&cfg).as_str(),
            "SELECT count(*), max(version) FROM ccr_migrations",
        )
        .unwrap();
    assert_eq!(
        versions.trim(),
        format!("{0}|{0}", crate::ledger::pg::schema::latest())
    );
    let (a, b) = (&opened[0], &opened[1]);
    let n = 200;
    let recorded: Vec<Written> = (0..n)
        .map(|i| a.record_prompt(prompt("s", &format!("r{i}"), "Bash", at(1))))
        .collect();
    for r in recorded {
        block_on(r).unwrap();
    }
    // Both instances answer every prompt at once, differently: one wins each, and the
    // loser is told what won.
    let (wa, wb): (Vec<_>, Vec<_>) = (0..n)
        .map(|i| {
            let r = format!("r{i}");
            (
                a.record_decision(decision("s", &r, Outcome::Allowed, "alice")),
                b.record_decision(decision("s", &r, Outcome::Denied, "bob")),
            )
        })
        .unzip();
    let (mut a_won, mut b_won) = (0, 0);
    for (i, (x, y)) in wa.into_iter().zip(wb).enumerate() {
        match (block_on(x), block_on(y)) {
            (Ok(()), Err(LedgerError::AlreadyDecided { outcome, .. })) => {
                assert_eq!(outcome, Outcome::Allowed);
                a_won += 1;
            }
            (Err(LedgerError::AlreadyDecided { outcome, .. }), Ok(())) => {
                assert_eq!(outcome, Outcome::Denied);
                b_won += 1;
            }
            other => panic!("prompt r{i}: {other:?}"),
        }
    }
    assert_eq!(a_won + b_won, n);
    let rows = walk(b, LedgerQuery::default(), 1000);
    let allowed = rows
        .iter()
        .filter(|r| r.outcome == Some(Outcome::Allowed))
        .count();
    assert_eq!((allowed, rows.len() - allowed), (a_won, b_won));
}

/// The database name in a test config's URL.
fn cfg_database(cfg: &LedgerConfig) -> String {
    let Some(PostgresConfig {
        url: PgUrlSource::Env(var),
        ..
    }) = cfg.postgres()
    else {
        unreachable!("a test config")
    };
    let url = std::env::var(var).unwrap();
    url.rsplit('/').next().unwrap().to_owned()
}

#[test]
fn a_postgres_restart_fails_writes_meanwhile_and_then_they_pass_again() {
    let Some(mut server) = ccr_pgtest::require_own() else {
        return;
    };
    let cfg = pg_config(&server.create_database("restarted").unwrap());
    let ledger = Ledger::open(&cfg).unwrap();
    block_on(ledger.record_prompt(prompt("s", "before", "Bash", at(1)))).unwrap();
    server.stop().unwrap();
    // Not acknowledged while the database is away: the caller hears it.
    let err = block_on(ledger.record_prompt(prompt("s", "during", "Bash", at(2)))).unwrap_err();
    assert!(matches!(err, LedgerError::Storage(_)), "{err}");
    assert!(block_on(ledger.postgres().unwrap().ping()).is_err());
    server.resume().unwrap();
    // The writer connects again by itself; the first write after may still meet the
    // pause after a failure, never an error that needs a restart.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match block_on(ledger.record_prompt(prompt("s", "after", "Bash", at(3)))) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                assert!(matches!(e, LedgerError::Storage(_)), "{e}")
            }
            Err(e) => panic!("still failing after the restart: {e}"),
        }
    }
    block_on(ledger.postgres().unwrap().ping()).unwrap();
    let ids: Vec<String> = walk(&ledger, LedgerQuery::default(), 100)
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(ids, ["after", "before"]);
}

#[test]
fn the_database_url_never_appears_in_an_error() {
    let secret = "hunter2-sekret";
    let var = "CCR_TEST_PG_URL_UNREACHABLE";
    // A port nothing listens on (bound, then released) with a password in the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::env::set_var(
        var,
        format!("postgres://admin:{secret}@127.0.0.1:{port}/ledger?connect_timeout=2"),
    );
    let mut cfg = pg_config_from_var(var);
    let err = Ledger::open(&cfg).err().expect("nothing listens");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("postgres"), "{text}");

    std::env::set_var(var, format!("not a url {secret} ==="));
    let err = Ledger::open(&cfg).err().expect("unparseable");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains(var), "names where the URL came from: {text}");

    cfg.backend = LedgerBackend::Postgres(PostgresConfig {
        url: PgUrlSource::Env("CCR_TEST_PG_URL_NEVER_SET".into()),
        pool_size: 1,
        statement_timeout: Duration::from_secs(1),
        ca_file: None,
    });
    let err = Ledger::open(&cfg).err().expect("unset");
    assert!(
        err.to_string()
            .contains("CCR_TEST_PG_URL_NEVER_SET is not set"),
        "{err}"
    );
}

fn pg_config_from_var(var: &str) -> LedgerConfig {
    LedgerConfig {
        backend: LedgerBackend::Postgres(PostgresConfig {
            url: PgUrlSource::Env(var.into()),
            pool_size: 1,
            statement_timeout: Duration::from_secs(1),
            ca_file: None,
        }),
        ..LedgerConfig::default()
    }
}

/// `session`'s lease for `owner`, as the cluster's store claims it (the ledger only reads
/// the table): a new epoch unless another owner's lease is live (then nothing changes and
/// this panics).
pub(super) async fn claim(db: &tokio_postgres::Client, session: &str, owner: &str) -> i64 {
    db.query_one(
        "INSERT INTO ccr_leases AS l (session_id, owner, epoch, expires_at) \
         VALUES ($1, $2, 1, now() + interval '30 seconds') ON CONFLICT (session_id) DO UPDATE \
         SET owner = EXCLUDED.owner, epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at \
         WHERE l.expires_at <= now() OR l.owner = EXCLUDED.owner RETURNING epoch",
        &[&session, &owner],
    )
    .await
    .unwrap()
    .get(0)
}

/// In a cluster a prompt and a delivery are recorded only under this instance's lease
/// at its epoch: not without one, and not after another instance took the session over,
/// even while this one still believes it holds it (paused). Decisions need no lease.
#[tokio::test]
async fn a_cluster_member_records_prompts_and_deliveries_only_under_its_lease() {
    use crate::ledger::pg::fence::Fences;
    let Some(server) = ccr_pgtest::require() else {
        return;
    };
    let url = server.unique_database("fenced").unwrap();
    let cfg = pg_config(&url);
    let fences = Fences::new("inst-a");
    let ledger = Ledger::open_clustered(&cfg, Tuning::default(), Some(fences.clone())).unwrap();
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);

    let err = ledger
        .record_prompt(prompt("s1", "r0", "Bash", at(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::NotOwner { .. }), "{err}");

    let period = Duration::from_secs(30);
    let s1: std::sync::Arc<str> = "s1".into();
    let epoch = claim(&db, "s1", "inst-a").await;
    fences.hold(&s1, epoch, Instant::now() + period);
    ledger
        .record_prompt(prompt("s1", "r1", "Bash", at(1)))
        .await
        .unwrap();
    ledger
        .record_decision(decision("s1", "r1", Outcome::Allowed, "alice"))
        .await
        .unwrap();
    ledger.mark_delivered("s1", "r1", at(2)).await.unwrap();
    ledger
        .record_prompt(prompt("s1", "pending", "Bash", at(1)))
        .await
        .unwrap();

    // The lease lapses (the database out of reach past its deadline): a write waits, as a
    // transient failure, whether this instance or the database notices first...
    db.execute(
        "UPDATE ccr_leases SET expires_at = now() - interval '1 second'",
        &[],
    )
    .await
    .unwrap();
    let err = ledger
        .record_prompt(prompt("s1", "lapsed", "Bash", at(3)))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::LeaseLapsed { .. }), "{err}");
    assert!(!err.is_refusal(), "retried, not given up");
    fences.hold(&s1, epoch, Instant::now());
    let err = ledger
        .record_prompt(prompt("s1", "lapsed", "Bash", at(3)))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::LeaseLapsed { .. }), "{err}");
    // ...and counts once the lease is renewed at its epoch.
    db.execute(
        "UPDATE ccr_leases SET expires_at = now() + interval '30 seconds'",
        &[],
    )
    .await
    .unwrap();
    fences.hold(&s1, epoch, Instant::now() + period);
    ledger
        .record_prompt(prompt("s1", "lapsed", "Bash", at(3)))
        .await
        .unwrap();
    ledger
        .record_decision(decision("s1", "lapsed", Outcome::Allowed, "alice"))
        .await
        .unwrap();
    ledger.mark_delivered("s1", "lapsed", at(3)).await.unwrap();

    // Another instance takes the session over (the lease ran out while this one slept).
    db.execute(
        "UPDATE ccr_leases SET expires_at = now() - interval '1 second'",
        &[],
    )
    .await
    .unwrap();
    claim(&db, "s1", "inst-b").await;
    // The database refuses; until the lease loop hears of it, that is a lapse here.
    let err = ledger
        .record_prompt(prompt("s1", "r2", "Bash", at(3)))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::LeaseLapsed { .. }), "{err}");
    fences.drop_lease("s1");
    let err = ledger
        .record_prompt(prompt("s1", "r2", "Bash", at(3)))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::NotOwner { .. }), "{err}");
    let err = ledger.mark_delivered("s1", "r1", at(4)).await.unwrap_err();
    assert!(matches!(err, LedgerError::NotOwner { .. }), "{err}");
    // An operator's decision posted here is still recorded (the first wins); the owner delivers it.
    ledger
        .record_decision(decision("s1", "pending", Outcome::Denied, "bob"))
        .await
        .unwrap();
    let rows = walk(&ledger, LedgerQuery::default(), 100);
    let ids: Vec<(&str, Option<Outcome>, Option<SystemTime>, u64)> = rows
        .iter()
        .map(|r| {
            (
                r.request_id.as_str(),
                r.outcome,
                r.delivered_at,
                r.deliveries,
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("lapsed", Some(Outcome::Allowed), Some(at(3)), 1),
            ("r1", Some(Outcome::Allowed), Some(at(2)), 1),
            ("pending", Some(Outcome::Denied), None, 0)
        ],
        "nothing recorded after the takeover but the decision"
    );
}

/// As on SQLite: a lookup waits for the writer only for a prompt it still has a write of
/// (every new prompt of a session whose older prompts the registry forgot is looked up).
#[tokio::test]
async fn a_postgres_lookup_waits_for_the_writer_only_for_a_prompt_it_has_not_answered() {
    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("in time")
    }
    let Some(server) = ccr_pgtest::require() else {
        return;
    };
    let url = server.unique_database("lookup_wait").unwrap();
    let ledger = Ledger::open(&pg_config(&url)).unwrap();
    ledger
        .record_prompt(prompt("s", "old", "Bash", at(1)))
        .await
        .unwrap();
    let (mut db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // Writes wait on this lock; plain reads do not.
    let lock = db.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE ccr_prompts IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let queued = tokio::spawn(ledger.record_prompt(prompt("s", "queued", "Bash", at(2))));
    // Committed, or never written: a lookup reads at once, the writer still blocked.
    assert_eq!(
        within(ledger.lookup("s", "old")).await.unwrap(),
        Stored::Pending
    );
    assert_eq!(
        within(ledger.lookup("s", "never")).await.unwrap(),
        Stored::Nothing
    );
    // So is an entry (another instance's prompt, heard of by a notification).
    let old = within(ledger.entry("s", "old")).await.unwrap();
    assert_eq!(old.map(|e| e.prompt.request_id).as_deref(), Some("old"));
    // Still with the writer: read once it is committed, never as new.
    let mut waiting = tokio::spawn(ledger.lookup("s", "queued"));
    let early = tokio::time::timeout(Duration::from_millis(200), &mut waiting).await;
    assert!(
        early.is_err(),
        "read before its write was committed: {early:?}"
    );
    lock.rollback().await.unwrap();
    within(queued).await.unwrap().unwrap();
    assert_eq!(within(waiting).await.unwrap().unwrap(), Stored::Pending);
}
