//! Decisions recorded by other instances: a connection of its own that `LISTEN`s on
//! [`DECIDED_CHANNEL`] and tells the registry about each decision for a session held here.
//!
//! A notification is delivered only to connections listening when its transaction commits:
//! while this connection is down (the database restarting, a network cut) decisions made
//! elsewhere go unheard. The connection is re-established with backoff, and every time it
//! is, [`ClusterStats::listen_reconnects`] grows and the registry is asked to re-check the
//! ledger for decisions of every prompt pending in the sessions held here.

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Notification};

use super::Backoff;
use crate::cluster::{DecidedElsewhere, Fences, SeenElsewhere, DECIDED_CHANNEL, PROMPTED_CHANNEL};
use crate::ledger::pg::{describe, PgTarget};
use crate::metrics::ClusterStats;

/// Where a notification goes, and what the listener counts.
pub(super) struct Listener {
    pub(super) target: Arc<PgTarget>,
    pub(super) fences: Arc<Fences>,
    pub(super) decided: Recipient<DecidedElsewhere>,
    /// Where prompts recorded and decided for sessions held elsewhere go (the event stream).
    pub(super) seen: Recipient<SeenElsewhere>,
    pub(super) stats: Arc<ClusterStats>,
    /// How often a quiet connection is checked (a cut connection sends nothing).
    pub(super) check_every: Duration,
}

impl Listener {
    /// Listen until the runtime stops, reconnecting whenever the connection ends.
    pub(super) async fn run(self) {
        let mut backoff = Backoff::new(self.check_every);
        let mut listened_before = false;
        loop {
            let e = self.listen(&mut listened_before, &mut backoff).await;
            tracing::warn!(error = %e, "cluster: the decision notifications' connection ended; reconnecting");
            tokio::time::sleep(backoff.next()).await;
        }
    }

    /// One connection: LISTEN, then forward notifications until it ends (the reason).
    async fn listen(&self, listened_before: &mut bool, backoff: &mut Backoff) -> String {
        let (client, mut connection) =
            match self.target.config().connect(tokio_postgres::NoTls).await {
                Ok(c) => c,
                Err(e) => return describe(&e),
            };
        let (tx, mut notes) = mpsc::unbounded_channel::<Notification>();
        // Driving the connection is what reads notifications; it also carries the queries.
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx.send(n).is_err() {
                            return "stopped listening".to_owned();
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return describe(&e),
                    None => return "the connection closed".to_owned(),
                }
            }
        });
        let _abort = AbortOnDrop(driver.abort_handle());
        if let Err(e) = client
            .batch_execute(&format!(
                "LISTEN {DECIDED_CHANNEL}; LISTEN {PROMPTED_CHANNEL}"
            ))
            .await
        {
            return describe(&e);
        }
        if std::mem::replace(listened_before, true) {
            self.stats.listen_reconnects.inc();
            tracing::info!("cluster: listening for decisions again; re-checking the pending prompts of the sessions held here");
            // Listening from here on, so a decision is either heard or already in the
            // ledger for this re-check to read.
            for (session, _) in self.fences.held() {
                self.decided.do_send(DecidedElsewhere {
                    session,
                    request_id: None,
                });
            }
        }
        backoff.reset();
        let mut check = tokio::time::interval(self.check_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                note = notes.recv() => match note {
                    Some(n) => self.forward(&n),
                    None => break,
                },
                _ = check.tick() => {
                    let alive = tokio::time::timeout(self.check_every, client.simple_query("")).await;
                    match alive {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return describe(&e),
                        Err(_) => return "the database did not answer a check in time".to_owned(),
                    }
                }
            }
        }
        match driver.await {
            Ok(reason) => reason,
            Err(e) => e.to_string(),
        }
    }

    /// Tell the registry about each decision for a session held here, and about each
    /// prompt recorded or decided for a session held elsewhere (the event stream).
    fn forward(&self, n: &Notification) {
        let keys = match parse(n.payload()) {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(channel = n.channel(), error = %e, "cluster: a notification that cannot be read");
                return;
            }
        };
        let decided = n.channel() == DECIDED_CHANNEL;
        for (session, request_id) in keys {
            let held = self.fences.epoch(&session).is_some();
            match (held, decided) {
                (true, true) => self.decided.do_send(DecidedElsewhere {
                    session: Arc::from(session),
                    request_id: Some(request_id),
                }),
                // Recorded by this instance, which published it already.
                (true, false) => {}
                (false, decided) => self.seen.do_send(SeenElsewhere {
                    session: Arc::from(session),
                    request_id,
                    decided,
                }),
            }
        }
    }
}

/// Why a notification's payload cannot be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum PayloadError {
    /// Not a JSON array of `[session_id, request_id]` pairs.
    #[error("not a JSON array of [session_id, request_id] pairs: {0}")]
    NotPairs(#[from] serde_json::Error),
    /// A pair with an empty id.
    #[error("a pair with an empty session or request id")]
    EmptyId,
}

/// A payload's prompts: a JSON array of `[session_id, request_id]` pairs, the rows of one
/// statement (or a part of them: a trigger cuts a long list into several notifications;
/// schema migration 4).
pub(super) fn parse(payload: &str) -> Result<Vec<(String, String)>, PayloadError> {
    let keys: Vec<(String, String)> = serde_json::from_str(payload)?;
    match keys.iter().any(|(s, r)| s.is_empty() || r.is_empty()) {
        true => Err(PayloadError::EmptyId),
        false => Ok(keys),
    }
}

/// Stops the connection's task when the listener lets go of it.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, PayloadError};

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(s, r)| (s.to_string(), r.to_string()))
            .collect()
    }

    #[test]
    fn payloads_are_json_arrays_of_session_request_pairs() {
        assert_eq!(parse(r#"[["s1", "r1"]]"#).unwrap(), pairs(&[("s1", "r1")]));
        assert_eq!(
            parse(r#"[["s1","r1"],["s 2","r\n\"2\u00e9"]]"#).unwrap(),
            pairs(&[("s1", "r1"), ("s 2", "r\n\"2\u{e9}")])
        );
        assert_eq!(parse("[]").unwrap(), pairs(&[]));
        for bad in [
            "s1\nr1",
            r#"[["s1"]]"#,
            r#"[["s1","r1","x"]]"#,
            r#"[["s1",1]]"#,
            r#"{"s1":"r1"}"#,
            r#"[["s1","r1"]"#,
        ] {
            assert!(
                matches!(parse(bad), Err(PayloadError::NotPairs(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse(r#"[["","r1"]]"#),
            Err(PayloadError::EmptyId)
        ));
        assert!(matches!(
            parse(r#"[["s1","r1"],["s1",""]]"#),
            Err(PayloadError::EmptyId)
        ));
    }
}
