//! What the other instances do: a connection of its own that `LISTEN`s on
//! [`DECIDED_CHANNEL`] (decisions: for a session held here the registry delivers it, for
//! one held elsewhere it publishes it), [`PROMPTED_CHANNEL`] (prompts recorded elsewhere,
//! published), [`STATE_CHANNEL`] (session states announced by their owners: the
//! supervisor publishes and shows those of sessions not held here) and
//! [`SESSIONS_CHANNEL`] (the cluster's stored sessions changed: the lease loop reads the
//! session set again). The same connection sends this instance's own session states,
//! from the [`StateOutbox`], in batches of one statement each; its own notifications come
//! back to it and are ignored.
//!
//! A notification is delivered only to connections listening when its transaction commits:
//! while this connection is down (the database restarting, a network cut) what happens
//! elsewhere goes unheard. The connection is re-established with backoff, and every time it
//! is, [`ClusterStats::listen_reconnects`] grows and the lease loop is asked to read the
//! session set (each round reads it anyway). Every time it starts listening (the first
//! time too: the lease loop may have claimed sessions before) the registry is asked to
//! re-check the ledger for decisions of every prompt pending in the sessions held here. Each time it starts
//! listening (the first time too) it asks every member to announce the state of the
//! sessions it holds again (a resync request on [`STATE_CHANNEL`]). And each time it
//! listens again after a break, the prompts recorded or decided elsewhere meanwhile (from
//! a little before the break: at least once, see [`CATCH_UP_MARGIN`]) are read from the
//! ledger and published as if heard ([`Listener::catch_up`]).

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Notification};

use super::sessions::SetShared;
use super::Backoff;
use crate::cluster::state::{self, Heard};
use crate::cluster::{
    AnnounceStates, DecidedElsewhere, Fences, SeenElsewhere, StateElsewhere, StateOutbox,
    DECIDED_CHANNEL, PROMPTED_CHANNEL, SESSIONS_CHANNEL, STATE_CHANNEL,
};
use crate::ledger::pg::{describe, PgTarget};
use crate::metrics::ClusterStats;

/// How far before a break the catch-up after it reads: a notification is sent at its
/// transaction's commit, some time after the prompt's `received_at` or `decided_at` was
/// taken, and one on its way when the connection broke was not heard. What was heard in
/// this margin is published twice (at least once, rather than at most once).
const CATCH_UP_MARGIN: Duration = Duration::from_secs(5);
/// Decisions made during a break are read only for prompts received this long before
/// it (the time index bounds the read; `decided_at` has none).
const CATCH_UP_DECIDED_LOOKBACK: Duration = Duration::from_secs(24 * 3600);
/// Most prompts a catch-up publishes.
const CATCH_UP_MAX: i64 = 10_000;

/// Most session states announced in one statement.
const ANNOUNCE_BATCH: usize = 256;
/// ... and about this many bytes of them.
const ANNOUNCE_BATCH_BYTES: usize = 256 << 10;

/// Where a notification goes, and what the listener counts.
pub(super) struct Listener {
    pub(super) target: Arc<PgTarget>,
    pub(super) fences: Arc<Fences>,
    pub(super) decided: Recipient<DecidedElsewhere>,
    /// Where prompts recorded and decided for sessions held elsewhere go (the event stream).
    pub(super) seen: Recipient<SeenElsewhere>,
    /// This instance's session states, to announce.
    pub(super) outbox: Arc<StateOutbox>,
    /// Where the states of sessions held elsewhere go (the supervisor).
    pub(super) states: Recipient<StateElsewhere>,
    /// Who announces every state held here again when asked (the supervisor).
    pub(super) announce: Recipient<AnnounceStates>,
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
        let mut broke_at = None;
        loop {
            let e = self
                .listen(&mut listened_before, &mut backoff, broke_at)
                .await;
            broke_at = Some(std::time::SystemTime::now());
            tracing::warn!(error = %e, "cluster: the decision notifications' connection ended; reconnecting");
            tokio::time::sleep(backoff.next()).await;
        }
    }

    /// One connection: LISTEN, then forward notifications until it ends (the reason).
    async fn listen(
        &self,
        listened_before: &mut bool,
        backoff: &mut Backoff,
        broke_at: Option<std::time::SystemTime>,
    ) -> String {
        let (client, mut connection) = match self.target.open().await {
            Ok(c) => c,
            Err(e) => return self.target.failure(&e),
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
                "LISTEN {DECIDED_CHANNEL}; LISTEN {PROMPTED_CHANNEL}; LISTEN {STATE_CHANNEL}; \
                 LISTEN {SESSIONS_CHANNEL}"
            ))
            .await
        {
            return describe(&e);
        }
        // Listening from here on: every state announced from now is heard, and those
        // announced before are announced again.
        let resync = state::encode_resync(self.fences.me());
        if let Err(e) = client
            .execute("SELECT pg_notify($1, $2)", &[&STATE_CHANNEL, &resync])
            .await
        {
            return describe(&e);
        }
        if std::mem::replace(listened_before, true) {
            self.stats.listen_reconnects.inc();
            self.sessions.refresh.notify_one();
            tracing::info!("cluster: listening for decisions again; re-checking the pending prompts of the sessions held here");
        }
        // Listening from here on, so a decision is either heard or already in the ledger
        // for this re-check to read. The first time too: the lease loop may have claimed
        // sessions before (its first connection came before this one's, after an outage
        // at start), and a decision recorded elsewhere meanwhile was heard by nobody here.
        for (session, _) in self.fences.held() {
            self.decided.do_send(DecidedElsewhere {
                session,
                request_id: None,
            });
        }
        if let Some(broke_at) = broke_at {
            if let Err(e) = self.catch_up(&client, broke_at).await {
                return e;
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
                () = self.outbox.wait() => {
                    if let Err(e) = self.announce_queued(&client).await {
                        return e;
                    }
                }
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

    /// What was recorded elsewhere while this connection was down, for the event stream:
    /// each prompt of a session not held here received since a little before the break
    /// (`ccr_prompted`), and each decided since then (`ccr_decided`), as if heard.
    async fn catch_up(
        &self,
        client: &tokio_postgres::Client,
        broke_at: std::time::SystemTime,
    ) -> Result<(), String> {
        let ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let since = ms(broke_at.checked_sub(CATCH_UP_MARGIN).unwrap_or(broke_at));
        let lookback = since - CATCH_UP_DECIDED_LOOKBACK.as_millis() as i64;
        let rows = tokio::time::timeout(
            self.check_every.max(Duration::from_secs(5)),
            client.query(
                "SELECT session_id, request_id, received_at >= $1, decided_at >= $1 \
                 FROM ccr_prompts WHERE received_at >= $1 \
                 OR (received_at >= $2 AND decided_at >= $1) \
                 ORDER BY received_at LIMIT $3",
                &[&since, &lookback, &CATCH_UP_MAX],
            ),
        )
        .await;
        let rows = match rows {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => return Err(describe(&e)),
            Err(_) => return Err("the database did not answer the catch-up in time".to_owned()),
        };
        let mut published = 0;
        for row in rows {
            let session: String = row.get(0);
            if self.fences.holds_any(&session) {
                continue; // held here: this instance recorded (or re-checks) it itself
            }
            let request_id: String = row.get(1);
            let received: bool = row.get(2);
            let decided: Option<bool> = row.get(3);
            let session: Arc<str> = Arc::from(session);
            if received {
                self.seen.do_send(SeenElsewhere {
                    session: session.clone(),
                    request_id: request_id.clone(),
                    decided: false,
                });
            }
            if decided == Some(true) {
                self.seen.do_send(SeenElsewhere {
                    session,
                    request_id,
                    decided: true,
                });
            }
            published += 1;
        }
        tracing::info!(
            prompts = published,
            "cluster: published what other instances recorded while the notifications' connection was down"
        );
        Ok(())
    }

    /// Send the oldest batch of queued states (one statement); on failure they go back to
    /// the outbox and the connection is given up. When states were dropped from a full
    /// outbox, every state held here is queued again.
    async fn announce_queued(&self, client: &tokio_postgres::Client) -> Result<(), String> {
        let batch = self.outbox.take(ANNOUNCE_BATCH, ANNOUNCE_BATCH_BYTES);
        if batch.is_empty() {
            return Ok(());
        }
        let payloads: Vec<&str> = batch.iter().map(|(_, p)| p.as_str()).collect();
        let sent = tokio::time::timeout(
            self.check_every,
            client.execute(
                "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                &[&STATE_CHANNEL, &payloads],
            ),
        )
        .await;
        let failed = match sent {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(describe(&e)),
            Err(_) => Some("the database did not take the session states in time".to_owned()),
        };
        if let Some(e) = failed {
            self.outbox.requeue(batch);
            return Err(e);
        }
        if self.outbox.take_overflowed() {
            self.announce.do_send(AnnounceStates);
        }
        Ok(())
    }

    /// Hand a notification to whom it concerns: a session state to the supervisor, a
    /// change of the stored sessions to the lease loop, a decision for a session held
    /// here to the registry, a prompt or a decision of one held elsewhere to the registry.
    fn forward(&self, n: &Notification) {
        if n.channel() == SESSIONS_CHANNEL {
            self.sessions.refresh.notify_one();
            return;
        }
        if n.channel() == STATE_CHANNEL {
            self.heard_state(n.payload());
            return;
        }
        let keys = match parse(n.payload()) {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(channel = n.channel(), error = %e, "cluster: a notification that cannot be read");
                return;
            }
        };
        let decided = n.channel() == DECIDED_CHANNEL;
        for (session, request_id) in keys {
            // A lapsed lease is still held here: a decision made elsewhere meanwhile is
            // the registry's to deliver once the lease is renewed (or the next owner's).
            let held = self.fences.holds_any(&session);
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

    /// A `ccr_state` notification: another member's session state, for the supervisor
    /// when the session is not held here (here, its own state wins); a resync request,
    /// answered by announcing every state held here. This instance's own are ignored.
    fn heard_state(&self, payload: &str) {
        let heard = match state::decode(payload) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: a session-state notification not understood");
                return;
            }
        };
        if heard.from() == self.fences.me() {
            return;
        }
        match heard {
            Heard::Resync { .. } => self.announce.do_send(AnnounceStates),
            Heard::State(note) => {
                if self.fences.epoch(&note.session).is_none() {
                    self.states.do_send(StateElsewhere(note));
                }
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
/// schema migration 5), or the one row a decision's trigger was called for (migration 7).
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
