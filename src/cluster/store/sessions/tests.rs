//! The SQL of `ccr_sessions` against a real PostgreSQL (`ccr-pgtest`; skipped with a
//! notice when PostgreSQL is not installed, unless `CCR_SYSTEM_TESTS=required`).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::*;

const WHO: Who<'static> = Who { by: "ops", on: "a" };

/// A fresh migrated database: a client, and the notifications a second one `LISTEN`s to
/// on `ccr_sessions`; `None` when skipped.
async fn database(name: &str) -> Option<(Client, Client, mpsc::UnboundedReceiver<String>)> {
    let pg = ccr_pgtest::require()?;
    let url = pg.unique_database(name).expect("create database");
    let (mut client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    crate::ledger::pg::schema::migrate(&mut client)
        .await
        .expect("migrate");
    let (listener, mut connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send(format!("{}:{}", n.channel(), n.payload()));
            }
        }
    });
    listener
        .batch_execute("LISTEN ccr_sessions")
        .await
        .expect("listen");
    Some((client, listener, rx))
}

async fn heard(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a notification")
        .expect("open")
}

fn ids(listed: &[Listed]) -> Vec<(&str, bool)> {
    listed.iter().map(|l| (&*l.id, l.removed)).collect()
}

#[tokio::test]
async fn a_session_is_stored_once_removed_and_each_change_notified_with_a_new_revision() {
    let Some((c, _listener, mut notes)) = database("sessions_store").await else {
        return;
    };
    assert!(add(&c, "rt", r#"{"id":"rt","token_env":"T"}"#, WHO)
        .await
        .unwrap());
    assert_eq!(heard(&mut notes).await, "ccr_sessions:rt");
    assert!(!add(&c, "rt", "{}", WHO).await.unwrap(), "stored already");
    let first = list(&c).await.unwrap();
    assert_eq!(ids(&first), [("rt", false)]);
    let read = specs(&c, &[Arc::from("rt"), Arc::from("none")])
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].1, first[0].revision);
    assert_eq!(read[0].2, r#"{"id":"rt","token_env":"T"}"#, "as stored");
    let row = c
        .query_one("SELECT added_by, added_on FROM ccr_sessions", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, &str>(0), row.get::<_, &str>(1)), ("ops", "a"));

    // Not configured here: the row goes.
    crate::cluster::store::claim(&c, "rt", "a", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        remove(&c, "rt", false, WHO).await.unwrap(),
        Some(true),
        "held"
    );
    assert_eq!(heard(&mut notes).await, "ccr_sessions:rt");
    assert_eq!(remove(&c, "rt", false, WHO).await.unwrap(), None);
    assert!(list(&c).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_configured_session_removed_is_marked_until_restored_or_added_again() {
    let Some((c, _listener, mut notes)) = database("sessions_marks").await else {
        return;
    };
    let marked = remove(&c, "cfg", true, WHO).await.unwrap();
    assert_eq!(marked, Some(false), "marked; no lease held");
    assert_eq!(heard(&mut notes).await, "ccr_sessions:cfg");
    let again = remove(&c, "cfg", true, WHO).await.unwrap();
    assert_eq!(again, None, "marked already");
    let marked = list(&c).await.unwrap();
    assert_eq!(ids(&marked), [("cfg", true)]);
    assert!(specs(&c, &[Arc::from("cfg")]).await.unwrap().is_empty());

    // A POST of its id replaces the mark, with a new revision.
    assert!(add(&c, "cfg", r#"{"id":"cfg","token_env":"T"}"#, WHO)
        .await
        .unwrap());
    let added = list(&c).await.unwrap();
    assert_eq!(ids(&added), [("cfg", false)]);
    assert!(added[0].revision > marked[0].revision);
    // A stored session configured here: removed as a mark too.
    assert_eq!(remove(&c, "cfg", true, WHO).await.unwrap(), Some(false));
    assert_eq!(ids(&list(&c).await.unwrap()), [("cfg", true)]);

    // A reload that lists it deletes the mark; a stored session it lists stays.
    assert!(add(&c, "rt", r#"{"id":"rt","token_env":"T"}"#, WHO)
        .await
        .unwrap());
    assert_eq!(
        restore_configured(&c, &["cfg", "rt", "other"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(ids(&list(&c).await.unwrap()), [("rt", false)]);
    assert_eq!(restore_configured(&c, &[]).await.unwrap(), 0);
}
