//! The lease store against a real PostgreSQL (`ccr-pgtest`: a throwaway server on
//! 127.0.0.1; skipped with a notice when PostgreSQL is not installed, unless
//! `CCR_SYSTEM_TESTS=required`).

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::*;

const PERIOD: Duration = Duration::from_secs(30);

/// A fresh database with the schema, and a connection to it; `None` when skipped.
async fn database(name: &str) -> Option<(String, Client)> {
    let pg = ccr_pgtest::require()?;
    let url = pg.unique_database(name).expect("create database");
    let mut client = connect(&url).await;
    migrate(&mut client).await.expect("migrate");
    Some((url, client))
}

/// The service's own migrations (the ledger's, with the cluster's tables in version 2).
async fn migrate(client: &mut Client) -> Result<i32, String> {
    crate::ledger::pg::schema::migrate(client).await
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// Expire `session`'s lease a second ago, as if its owner had been paused past it.
async fn expire(admin: &Client, session: &str) {
    admin
        .execute(
            "UPDATE ccr_leases SET expires_at = now() - interval '1 second' WHERE session_id = $1",
            &[&session],
        )
        .await
        .expect("expire");
}

/// A write on behalf of `session` that counts only while `fence` holds; rows written.
async fn fenced_write(client: &impl GenericClient, fence: Fence<'_>, note: &str) -> u64 {
    let sql = format!(
        "INSERT INTO answers (session_id, note) SELECT $1, $4 WHERE {}",
        Fence::condition(1)
    );
    let [s, o, e] = fence.params();
    client
        .execute(&sql, &[s, o, e, &note])
        .await
        .expect("fenced write")
}

async fn answers_table(client: &Client) {
    client
        .batch_execute("CREATE TABLE answers (session_id text NOT NULL, note text NOT NULL)")
        .await
        .expect("answers table");
}

#[tokio::test]
async fn migrating_from_two_instances_at_once_is_safe_and_idempotent() {
    let Some((url, mut first)) = database("lease_migrate").await else {
        return;
    };
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(connect(&url).await);
    }
    let runs = clients.iter_mut().map(migrate);
    for result in futures_util::future::join_all(runs).await {
        result.expect("concurrent migrate");
    }
    migrate(&mut first).await.expect("again");
}

#[tokio::test]
async fn concurrent_claims_of_one_session_give_exactly_one_epoch() {
    let Some((url, admin)) = database("lease_race").await else {
        return;
    };
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(connect(&url).await);
    }
    let names: Vec<String> = (0..clients.len()).map(|i| format!("i{i}")).collect();
    for round in 0..5 {
        let session = format!("sess_{round}");
        // A fresh session, then a takeover of its expired lease: one winner each time.
        for expected in [1, 2] {
            if expected == 2 {
                expire(&admin, &session).await;
            }
            let claims = clients
                .iter()
                .zip(&names)
                .map(|(c, me)| claim(c, &session, me, PERIOD));
            let results = futures_util::future::join_all(claims).await;
            let won: Vec<Epoch> = results
                .into_iter()
                .filter_map(|r| r.expect("claim"))
                .collect();
            assert_eq!(won, [expected], "{session}");
        }
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_the_next_epoch_and_fences_the_old_owner() {
    let Some((url, a)) = database("lease_takeover").await else {
        return;
    };
    let b = connect(&url).await;
    answers_table(&a).await;
    assert_eq!(claim(&a, "s1", "a", PERIOD).await.unwrap(), Some(1));
    assert_eq!(
        claim(&b, "s1", "b", PERIOD).await.unwrap(),
        None,
        "held by a"
    );
    let old = Fence {
        session: "s1",
        owner: "a",
        epoch: 1,
    };
    assert_eq!(fenced_write(&a, old, "by a").await, 1);

    // "a" is paused past its lease; "b" takes the session over.
    expire(&a, "s1").await;
    assert_eq!(claim(&b, "s1", "b", PERIOD).await.unwrap(), Some(2));
    let new = Fence {
        session: "s1",
        owner: "b",
        epoch: 2,
    };
    // "a" wakes up: nothing it does for s1 counts any more.
    let held = [(Arc::from("s1"), 1)];
    assert!(renew(&a, "a", &held, PERIOD).await.unwrap().is_empty());
    assert_eq!(fenced_write(&a, old, "late, by a").await, 0);
    assert!(!release(&a, "a", "s1", 1).await.unwrap());
    assert_eq!(claim(&a, "s1", "a", PERIOD).await.unwrap(), None);
    assert_eq!(fenced_write(&b, new, "by b").await, 1);
    let notes: Vec<String> = a
        .query("SELECT note FROM answers ORDER BY note", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(notes, ["by a", "by b"]);
    let rows = leases(&a).await.unwrap();
    assert_eq!((rows[0].owner.as_str(), rows[0].epoch), ("b", 2));
    assert_eq!(rows[0].expired_for, None);
}

#[tokio::test]
async fn a_released_lease_is_claimed_by_another_at_once() {
    let Some((url, a)) = database("lease_release").await else {
        return;
    };
    let b = connect(&url).await;
    let epoch = claim(&a, "s1", "a", PERIOD).await.unwrap().unwrap();
    assert!(
        !release(&a, "a", "s1", epoch + 1).await.unwrap(),
        "wrong epoch"
    );
    assert!(release(&a, "a", "s1", epoch).await.unwrap());
    assert_eq!(claim(&b, "s1", "b", PERIOD).await.unwrap(), Some(epoch + 1));
    let snap = snapshot(&mut connect(&url).await, PERIOD).await.unwrap();
    assert_eq!(snap.leases["s1"].owner, "b");
}

#[tokio::test]
async fn renew_extends_only_our_leases_at_our_epochs_expired_or_not() {
    let Some((_, a)) = database("lease_renew").await else {
        return;
    };
    for s in ["s1", "s2", "s3", "s4"] {
        claim(&a, s, "a", Duration::from_secs(5)).await.unwrap();
    }
    claim(&a, "theirs", "b", PERIOD).await.unwrap();
    // s3 lapsed (expired, nobody claimed it); s4 expired and another instance took it.
    expire(&a, "s3").await;
    expire(&a, "s4").await;
    assert_eq!(claim(&a, "s4", "b", PERIOD).await.unwrap(), Some(2));
    let held: Vec<(Arc<str>, Epoch)> = [
        ("s1", 1),
        ("s2", 7),
        ("s3", 1),
        ("s4", 1),
        ("theirs", 1),
        ("none", 1),
    ]
    .into_iter()
    .map(|(s, e)| (Arc::from(s), e))
    .collect();
    let mut renewed = renew(&a, "a", &held, Duration::from_secs(600))
        .await
        .unwrap();
    renewed.sort();
    assert_eq!(renewed, [Arc::from("s1"), Arc::from("s3")]);
    let rows = leases(&a).await.unwrap();
    let s1 = rows.iter().find(|r| &*r.session_id == "s1").unwrap();
    let s2 = rows.iter().find(|r| &*r.session_id == "s2").unwrap();
    let s3 = rows.iter().find(|r| &*r.session_id == "s3").unwrap();
    let s4 = rows.iter().find(|r| &*r.session_id == "s4").unwrap();
    assert_eq!(s1.expired_for, None);
    assert_eq!(
        s3.expired_for, None,
        "a lapsed lease at our epoch is ours again"
    );
    assert_eq!((s4.owner.as_str(), s4.epoch), ("b", 2), "the claim stands");
    // s1 now runs 10 minutes, s2 still about 5 seconds: compare in the database.
    let longer: bool = a
        .query_one(
            "SELECT (SELECT expires_at FROM ccr_leases WHERE session_id = 's1')
                  > (SELECT expires_at FROM ccr_leases WHERE session_id = 's2') + interval '5 minutes'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(longer, "{s1:?} {s2:?}");
    assert!(renew(&a, "a", &[], PERIOD).await.unwrap().is_empty());
}

#[tokio::test]
async fn members_are_those_heard_from_within_the_window() {
    let Some((url, a)) = database("lease_members").await else {
        return;
    };
    heartbeat(&a, "a", Some("http://10.0.0.1:8700"), false, 7)
        .await
        .unwrap();
    heartbeat(&a, "b", None, true, 0).await.unwrap();
    heartbeat(&a, "old", None, false, 0).await.unwrap();
    a.execute(
        "UPDATE ccr_members SET heartbeat_at = now() - interval '1 minute', started_at = now() - interval '1 minute' WHERE instance_id = 'old'",
        &[],
    )
    .await
    .unwrap();
    let live = members(&a, PERIOD).await.unwrap();
    let ids: Vec<(&str, bool)> = live
        .iter()
        .map(|m| (m.instance_id.as_str(), m.draining))
        .collect();
    assert_eq!(ids, [("a", false), ("b", true)]);
    assert_eq!(
        live[0].advertise_url.as_deref(),
        Some("http://10.0.0.1:8700")
    );
    assert_eq!(
        (live[0].digest, live[1].digest),
        (7, 0),
        "each its own digest"
    );
    // A heartbeat keeps started_at and brings "old" back.
    heartbeat(&a, "old", None, false, 0).await.unwrap();
    let old = members(&a, PERIOD).await.unwrap().pop().unwrap();
    assert_eq!(old.instance_id, "old");
    assert!(old.up_for >= Duration::from_secs(59), "{old:?}");
    leave(&a, "b").await.unwrap();
    claim(&a, "s1", "a", PERIOD).await.unwrap();
    let snap = snapshot(&mut connect(&url).await, PERIOD).await.unwrap();
    let ids: Vec<&str> = snap.members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["a", "old"]);
    assert_eq!(snap.leases["s1"].epoch, 1);
}

#[tokio::test]
async fn a_takeover_waits_for_a_fenced_write_in_flight_and_then_sees_it() {
    let Some((url, mut a)) = database("lease_fence_lock").await else {
        return;
    };
    let admin = connect(&url).await;
    // "a" writes inside a transaction and has not committed when its lease runs out.
    let tx = write_in_flight(&admin, &mut a, Duration::from_secs(2)).await;
    wait_for(
        &admin,
        "SELECT expires_at <= now() FROM ccr_leases WHERE session_id = 's1'",
    )
    .await;
    // "b" claims the expired lease: it must wait for the write's lock, not pass it by.
    claim_waits_for_the_write(&url, &admin, tx).await;
}

/// A renewal and a release (which move only the expiry) neither wait for a fenced write in
/// flight nor hold it up; a claim after them still waits for it. With the writes locking
/// `FOR SHARE`, the renewal waited for every write of the owner in flight.
#[tokio::test]
async fn a_renewal_and_a_release_pass_a_fenced_write_in_flight_and_a_claim_still_waits_for_it() {
    let Some((url, mut a)) = database("lease_renew_passes").await else {
        return;
    };
    let admin = connect(&url).await;
    let tx = write_in_flight(&admin, &mut a, PERIOD).await;
    // The lease loop has a connection of its own.
    let leases = connect(&url).await;
    let held = [(Arc::from("s1"), 1)];
    let renewed = tokio::time::timeout(PERIOD, renew(&leases, "a", &held, PERIOD))
        .await
        .expect("the renewal did not wait for the write")
        .unwrap();
    assert_eq!(renewed, [Arc::from("s1")]);
    let released = tokio::time::timeout(PERIOD, release(&leases, "a", "s1", 1))
        .await
        .expect("the release did not wait for the write")
        .unwrap();
    assert!(released);
    claim_waits_for_the_write(&url, &admin, tx).await;
}

/// "a" claims `s1` for `period` (epoch 1) and makes a fenced write in a transaction it
/// leaves open: the write in flight, returned.
async fn write_in_flight<'c>(
    admin: &Client,
    a: &'c mut Client,
    period: Duration,
) -> tokio_postgres::Transaction<'c> {
    answers_table(admin).await;
    claim(&*a, "s1", "a", period).await.unwrap();
    let tx = a.transaction().await.unwrap();
    let fence = Fence {
        session: "s1",
        owner: "a",
        epoch: 1,
    };
    assert_eq!(fenced_write(&tx, fence, "in flight").await, 1);
    tx
}

/// "b" claims `s1` (expired or released by "a", whose write is in flight in `tx`): the
/// claim waits for the write's lock; once `tx` commits it takes the lease at epoch 2 and
/// reads the write.
async fn claim_waits_for_the_write(url: &str, admin: &Client, tx: tokio_postgres::Transaction<'_>) {
    let b = Arc::new(connect(url).await);
    let b_pid: i32 = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let claimer = b.clone();
    let takeover = tokio::spawn(async move { claim(&*claimer, "s1", "b", PERIOD).await.unwrap() });
    let waiting =
        format!("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = {b_pid}");
    while !poll(admin, &waiting).await {
        assert!(
            !takeover.is_finished(),
            "the takeover did not wait for the write"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.commit().await.unwrap();
    assert_eq!(takeover.await.unwrap(), Some(2));
    let seen: i64 = b
        .query_one("SELECT count(*) FROM answers WHERE session_id = 's1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 1, "the new owner reads what the old one committed");
}

/// Poll `sql` (one boolean) until it is true: waits on the database's clock or locks.
async fn wait_for(client: &Client, sql: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if poll(client, sql).await {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never true: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `sql` (one boolean) is true now.
async fn poll(client: &Client, sql: &str) -> bool {
    let row = client.query_opt(sql, &[]).await.expect("poll");
    row.is_some_and(|r| r.get::<_, Option<bool>>(0) == Some(true))
}
