//! Decisions recorded by other instances: a connection of its own that `LISTEN`s on
//! [`DECIDED_CHANNEL`] and tells the registry about each decision for a session held here;
//! on [`PROMPTED_CHANNEL`] (prompts of sessions held elsewhere, for the event stream); and
//! on [`SESSIONS_CHANNEL`], which wakes the lease loop to read the session set again.
//!
//! A notification is delivered only to connections listening when its transaction commits:
//! while this connection is down (the database restarting, a network cut) decisions made
//! elsewhere go unheard. The connection is re-established with backoff, and every time it
//! is, [`ClusterStats::listen_reconnects`] grows, the registry is asked to re-check the
//! ledger for decisions of every prompt pending in the sessions held here, and the lease
//! loop to read the session set (each round reads it anyway).

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Notification};

use super::sessions::SetShared;
use super::Backoff;
use crate::cluster::{
    DecidedElsewhere, Fences, SeenElsewhere, DECIDED_CHANNEL, PROMPTED_CHANNEL, SESSIONS_CHANNEL,
};
use crate::ledger::pg::{describe, PgTarget};
use crate::metrics::ClusterStats;

/// Where a notification goes, and what the listener counts.
pub(super) struct Listener {
    pub(super) target: Arc<PgTarget>,
    pub(super) fences: Arc<Fences>,
    pub(super) decided: Recipient<DecidedElsewhere>,
    /// Where prompts recorded and decided for sessions held elsewhere go (the event stream).
    pub(super) seen: Recipient<SeenElsewhere>,
    /// Woken when the cluster's stored sessions change.
    pub(super) sessions: Arc<SetShared>,
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
                "LISTEN {DECIDED_CHANNEL}; LISTEN {PROMPTED_CHANNEL}; LISTEN {SESSIONS_CHANNEL}"
            ))
            .await
        {
            return describe(&e);
        }
        if std::mem::replace(listened_before, true) {
            self.stats.listen_reconnects.inc();
            self.sessions.refresh.notify_one();
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

    /// Tell the registry about a decision for a session held here, or a prompt or a
    /// decision of one held elsewhere; wake the lease loop for a change of the sessions.
    fn forward(&self, n: &Notification) {
        if n.channel() == SESSIONS_CHANNEL {
            self.sessions.refresh.notify_one();
            return;
        }
        let Some((session, request_id)) = parse(n.payload()) else {
            tracing::warn!(
                payload = n.payload(),
                "cluster: a decision notification without `session\\nrequest`"
            );
            return;
        };
        let held = self.fences.epoch(session).is_some();
        let decided = n.channel() == DECIDED_CHANNEL;
        match (held, decided) {
            (true, true) => self.decided.do_send(DecidedElsewhere {
                session: Arc::from(session),
                request_id: Some(request_id.to_owned()),
            }),
            // Recorded by this instance, which published it already.
            (true, false) => {}
            (false, decided) => self.seen.do_send(SeenElsewhere {
                session: Arc::from(session),
                request_id: request_id.to_owned(),
                decided,
            }),
        }
    }
}

/// A payload's session id and request id (`session_id`, a newline, `request_id`).
pub(super) fn parse(payload: &str) -> Option<(&str, &str)> {
    payload
        .split_once('\n')
        .filter(|(s, r)| !s.is_empty() && !r.is_empty())
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
    use super::parse;

    #[test]
    fn payloads_are_session_newline_request() {
        assert_eq!(parse("s1\nr1"), Some(("s1", "r1")));
        assert_eq!(
            parse("s1\nr\n1"),
            Some(("s1", "r\n1")),
            "split at the first"
        );
        assert_eq!(parse("s1"), None);
        assert_eq!(parse("\nr1"), None);
        assert_eq!(parse("s1\n"), None);
    }
}
