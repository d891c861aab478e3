//! [`Fences`]: the leases this instance holds, as the ledger and the session actors check
//! them before a write. The database fences every ledger write by epoch; the local
//! deadline stops a socket write the database cannot see: an instance that was paused
//! past its lease finds every deadline passed when it wakes, before its lease loop has
//! run, and sends nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use tokio::sync::watch;

/// A lease's fencing token: it grows by one at every claim of the session.
pub type Epoch = i64;

/// The SQL condition that holds only while the lease of session `$first` is held by owner
/// `$first + 1` at epoch `$first + 2`, and has not expired by the database's clock.
///
/// It locks the lease row `FOR KEY SHARE` until the writing transaction ends: a claim
/// (which locks the row `FOR UPDATE` first: [`CLAIM_LEASE`]) then waits for the write to
/// commit, so the new owner reads it; and a write that comes after a claim re-checks the
/// updated row and is refused. Without the lock, a write that checked the old lease could
/// commit after the new owner had read the ledger.
///
/// `FOR KEY SHARE`, the weakest lock, because a renewal or a release (an `UPDATE` of
/// `expires_at` alone, `FOR NO KEY UPDATE`) must not wait for the writes, nor they for
/// it: with `FOR SHARE` every renewal of a busy owner's leases stalled its writes behind
/// it, and them behind the writes in flight. The lock carries over to the row a renewal
/// or a release makes, so a claim after them still waits for the write.
pub fn condition(first: usize) -> String {
    format!(
        "EXISTS (SELECT 1 FROM ccr_leases WHERE session_id = ${} AND owner = ${} \
         AND epoch = ${} AND expires_at > now() FOR KEY SHARE)",
        first,
        first + 1,
        first + 2
    )
}

/// The lease loop's renewal (`cluster::store::renew`; parameters: owner, period in seconds,
/// session ids, epochs): extends those leases still this owner's at those epochs, expired or
/// not (a lapsed lease nobody claimed is this owner's again), and returns their session ids.
/// It locks them in the order of their session ids, as the writer locks the leases of its
/// writes (`batch::LOCK_LEASES`): two statements that lock several rows in one order cannot
/// deadlock. Kept here, beside the writes it must not deadlock with.
pub const RENEW_LEASES: &str = "WITH locked AS (SELECT l.session_id FROM ccr_leases l
        JOIN unnest($3::text[], $4::bigint[]) AS h(session_id, epoch)
        ON l.session_id = h.session_id AND l.epoch = h.epoch
        WHERE l.owner = $1
        ORDER BY l.session_id FOR NO KEY UPDATE OF l)
     UPDATE ccr_leases AS l SET expires_at = now() + make_interval(secs => $2)
     FROM locked WHERE l.session_id = locked.session_id
     RETURNING l.session_id";

/// A claim of session `$1` for owner `$2` for `$3` seconds (`cluster::store::claim`): the
/// lease is taken if the session has none, or its lease expired, or it is already this
/// owner's; then with a new epoch, which is returned. It first locks the lease row
/// `FOR UPDATE`, the one lock the writers' `FOR KEY SHARE` ([`condition`]) conflicts with:
/// an `INSERT ... ON CONFLICT DO UPDATE` that changes no key column locks only
/// `FOR NO KEY UPDATE`, which would not wait for a write of the old owner in flight.
/// Kept here, beside the writes it must wait for.
pub const CLAIM_LEASE: &str = "WITH locked AS MATERIALIZED (SELECT 1 FROM ccr_leases \
        WHERE session_id = $1 FOR UPDATE) \
     INSERT INTO ccr_leases AS l (session_id, owner, epoch, expires_at, acquired_at) \
     SELECT $1::text, $2::text, 1, now() + make_interval(secs => $3::float8), now() \
     FROM (SELECT count(*) FROM locked) AS waited \
     ON CONFLICT (session_id) DO UPDATE \
     SET owner = EXCLUDED.owner, epoch = l.epoch + 1, \
         expires_at = EXCLUDED.expires_at, acquired_at = now() \
     WHERE l.expires_at <= now() OR l.owner = EXCLUDED.owner \
     RETURNING epoch";

/// The leases held here: session → epoch and the local deadline of the last renewal.
#[derive(Debug)]
pub struct Fences {
    me: String,
    held: RwLock<HashMap<Arc<str>, Held>>,
    /// Bumped whenever a lease is dropped or held at a new epoch ([`Fences::released`]).
    changes: watch::Sender<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: Epoch,
    /// When the lease may have run out, on this process's monotonic clock: the instant
    /// the renewal (or claim) was *sent*, plus the lease period, so it is never later
    /// than the database's own expiry.
    deadline: Instant,
}

impl Fences {
    /// No leases yet, for instance `me`.
    pub fn new(me: impl Into<String>) -> Arc<Self> {
        Arc::new(Fences {
            me: me.into(),
            held: RwLock::new(HashMap::new()),
            changes: watch::Sender::new(0),
        })
    }

    /// This instance's id (the `owner` of its leases).
    pub fn me(&self) -> &str {
        &self.me
    }

    /// `session` is held at `epoch` until `deadline` (a claim, or a renewal).
    pub fn hold(&self, session: &Arc<str>, epoch: Epoch, deadline: Instant) {
        let before = self
            .held
            .write()
            .insert(session.clone(), Held { epoch, deadline });
        if before.is_some_and(|b| b.epoch != epoch) {
            self.changed();
        }
    }

    /// `session` is no longer held here (handed over, or lost).
    pub fn drop_lease(&self, session: &str) {
        if self.held.write().remove(session).is_some() {
            self.changed();
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Resolves once `session` is no longer held here at `epoch` (handed over, lost, or
    /// held again at another epoch); at once if it is not now.
    pub fn released(
        self: &Arc<Self>,
        session: &str,
        epoch: Epoch,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (fences, session) = (self.clone(), session.to_owned());
        // Subscribed before the first look: a change after it is seen.
        let mut changes = self.changes.subscribe();
        async move {
            loop {
                let now = fences.held.read().get(session.as_str()).map(|h| h.epoch);
                if now != Some(epoch) || changes.changed().await.is_err() {
                    return;
                }
            }
        }
    }

    /// The epoch `session` is held at, while its deadline has not passed.
    pub fn epoch(&self, session: &str) -> Option<Epoch> {
        self.epoch_at(session, Instant::now())
    }

    /// [`Fences::epoch`] at `now`.
    pub fn epoch_at(&self, session: &str, now: Instant) -> Option<Epoch> {
        self.held
            .read()
            .get(session)
            .filter(|h| now < h.deadline)
            .map(|h| h.epoch)
    }

    /// Whether `session` is held here at `epoch`, its deadline passed or not (a lapsed lease
    /// is held until the lease loop lets it go).
    pub fn holds(&self, session: &str, epoch: Epoch) -> bool {
        self.held
            .read()
            .get(session)
            .is_some_and(|h| h.epoch == epoch)
    }

    /// Whether `session` is held here at all, its deadline passed or not.
    pub fn holds_any(&self, session: &str) -> bool {
        self.held.read().contains_key(session)
    }

    /// The epoch `session` is held at, its deadline passed or not.
    pub fn held_epoch(&self, session: &str) -> Option<Epoch> {
        self.held.read().get(session).map(|h| h.epoch)
    }

    /// Whether this instance may write to `session`'s socket now.
    pub fn may_send(&self, session: &str) -> bool {
        self.epoch(session).is_some()
    }

    /// Sessions held (deadline passed or not), with their epochs.
    pub fn held(&self) -> Vec<(Arc<str>, Epoch)> {
        self.held
            .read()
            .iter()
            .map(|(s, h)| (s.clone(), h.epoch))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_lease_counts_until_its_deadline_and_not_after_it_is_dropped() {
        let f = Fences::new("a");
        let s: Arc<str> = Arc::from("s1");
        let now = Instant::now();
        assert_eq!(f.epoch_at("s1", now), None);
        f.hold(&s, 3, now + Duration::from_secs(10));
        assert_eq!(f.epoch_at("s1", now), Some(3));
        assert_eq!(
            f.epoch_at("s1", now + Duration::from_secs(10)),
            None,
            "paused past it"
        );
        assert_eq!(
            f.held_epoch("s1"),
            Some(3),
            "held all the same, lapsed or not"
        );
        f.hold(&s, 3, now + Duration::from_secs(20));
        assert_eq!(
            f.epoch_at("s1", now + Duration::from_secs(10)),
            Some(3),
            "renewed"
        );
        f.drop_lease("s1");
        assert_eq!(f.epoch_at("s1", now), None);
        assert_eq!(f.held_epoch("s1"), None);
        assert_eq!(f.held(), vec![]);
    }

    #[actix_rt::test]
    async fn released_resolves_when_the_lease_is_dropped_or_held_at_another_epoch() {
        use futures_util::FutureExt;
        let f = Fences::new("a");
        let s: Arc<str> = Arc::from("s1");
        let later = Instant::now() + Duration::from_secs(60);
        assert!(f.released("s1", 3).now_or_never().is_some(), "not held");
        f.hold(&s, 3, later);
        let mut gone = Box::pin(f.released("s1", 3));
        assert!((&mut gone).now_or_never().is_none());
        f.hold(&s, 3, later + Duration::from_secs(1));
        assert!(
            (&mut gone).now_or_never().is_none(),
            "a renewal is no release"
        );
        f.drop_lease("s1");
        tokio::time::timeout(Duration::from_secs(5), gone)
            .await
            .expect("released");
        f.hold(&s, 4, later);
        let reclaimed = f.released("s1", 4);
        f.drop_lease("s1");
        f.hold(&s, 5, later);
        tokio::time::timeout(Duration::from_secs(5), reclaimed)
            .await
            .expect("held again at another epoch");
    }
}
