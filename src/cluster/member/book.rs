//! [`Book`]: the leases the lease loop holds, each with its local deadline (pure).
//!
//! The loop keeps its own book beside [`Fences`](crate::cluster::Fences) (which it mirrors):
//! the book decides, from the instants the loop measured, which leases a renewal keeps and
//! which are lost, and when the next local deadline passes, so the loop can let go of a
//! lease on time even while the database does not answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::plan::Epoch;

/// The leases held, session → epoch and local deadline.
#[derive(Debug, Clone)]
pub(super) struct Book {
    period: Duration,
    held: HashMap<Arc<str>, Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    epoch: Epoch,
    deadline: Instant,
}

/// What a renewal's answer means for each lease it asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Renewal {
    /// Still held: session, epoch and its new deadline.
    pub(super) kept: Vec<(Arc<str>, Epoch, Instant)>,
    /// Lost (the database did not renew it, or its deadline passed before the answer came):
    /// already out of the book.
    pub(super) lost: Vec<Arc<str>>,
}

impl Book {
    /// No leases; each lasts `period` from the instant its claim or renewal was sent.
    pub(super) fn new(period: Duration) -> Self {
        Self {
            period,
            held: HashMap::new(),
        }
    }

    /// Leases held.
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no lease is held.
    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Session → epoch, as [`Planner::step`](crate::cluster::plan::Planner::step) takes them.
    pub(super) fn epochs(&self) -> HashMap<Arc<str>, Epoch> {
        self.held
            .iter()
            .map(|(s, e)| (s.clone(), e.epoch))
            .collect()
    }

    /// The leases to renew, by session id.
    pub(super) fn to_renew(&self) -> Vec<(Arc<str>, Epoch)> {
        let mut all: Vec<_> = self
            .held
            .iter()
            .map(|(s, e)| (s.clone(), e.epoch))
            .collect();
        all.sort();
        all
    }

    /// The epoch `session` is held at, if it is.
    #[cfg(test)]
    pub(super) fn epoch(&self, session: &str) -> Option<Epoch> {
        self.held.get(session).map(|e| e.epoch)
    }

    /// A claim sent at `sent` was granted at `epoch`; returns the lease's deadline.
    pub(super) fn claimed(&mut self, session: &Arc<str>, epoch: Epoch, sent: Instant) -> Instant {
        let deadline = sent + self.period;
        self.held.insert(session.clone(), Entry { epoch, deadline });
        deadline
    }

    /// A renewal of `asked` was sent at `sent` and the database renewed `renewed`; at `now`
    /// (its answer's arrival). A lease is kept only if it is still in the book at the epoch
    /// asked, was renewed, and its deadline had not passed by `now`: a lease whose deadline
    /// passed was already let go (or must be now), and a late renewal does not bring it back.
    pub(super) fn renewed(
        &mut self,
        asked: &[(Arc<str>, Epoch)],
        renewed: &HashSet<Arc<str>>,
        sent: Instant,
        now: Instant,
    ) -> Renewal {
        let mut out = Renewal::default();
        for (s, epoch) in asked {
            let Some(entry) = self.held.get_mut(s).filter(|e| e.epoch == *epoch) else {
                continue; // let go meanwhile; its loss was reported then
            };
            if renewed.contains(s) && now < entry.deadline {
                entry.deadline = entry.deadline.max(sent + self.period);
                out.kept.push((s.clone(), *epoch, entry.deadline));
            } else {
                self.held.remove(s);
                out.lost.push(s.clone());
            }
        }
        out
    }

    /// Take `session` out (lost or handed over); its epoch if it was held.
    pub(super) fn remove(&mut self, session: &str) -> Option<Epoch> {
        self.held.remove(session).map(|e| e.epoch)
    }

    /// Take out every lease whose deadline passed by `now`, by session id.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<Arc<str>> {
        let mut gone: Vec<Arc<str>> = self
            .held
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(s, _)| s.clone())
            .collect();
        gone.sort();
        for s in &gone {
            self.held.remove(s);
        }
        gone
    }

    /// The earliest deadline of the leases held.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.held.values().map(|e| e.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_secs(10);

    fn s(id: &str) -> Arc<str> {
        Arc::from(id)
    }

    #[test]
    fn a_claim_holds_one_period_from_when_it_was_sent() {
        let mut b = Book::new(P);
        let t0 = Instant::now();
        assert_eq!(b.claimed(&s("a"), 1, t0), t0 + P);
        assert_eq!(b.next_deadline(), Some(t0 + P));
        assert_eq!(
            b.expire(t0 + P - Duration::from_millis(1)),
            Vec::<Arc<str>>::new()
        );
        assert_eq!(b.expire(t0 + P), vec![s("a")]);
        assert!(b.is_empty());
    }

    #[test]
    fn a_renewal_keeps_what_the_database_renewed_and_loses_the_rest() {
        let mut b = Book::new(P);
        let t0 = Instant::now();
        b.claimed(&s("a"), 1, t0);
        b.claimed(&s("b"), 4, t0);
        let sent = t0 + Duration::from_secs(3);
        let asked = b.to_renew();
        let r = b.renewed(&asked, &HashSet::from([s("a")]), sent, sent);
        assert_eq!(r.kept, vec![(s("a"), 1, sent + P)]);
        assert_eq!(r.lost, vec![s("b")]);
        assert_eq!(b.epochs(), HashMap::from([(s("a"), 1)]));
    }

    #[test]
    fn a_renewal_answered_after_the_deadline_does_not_bring_the_lease_back() {
        let mut b = Book::new(P);
        let t0 = Instant::now();
        b.claimed(&s("a"), 1, t0);
        b.claimed(&s("b"), 1, t0);
        let asked = b.to_renew();
        let sent = t0 + Duration::from_secs(9);
        // The database was slow: "a" expired locally meanwhile (the loop let it go)...
        assert_eq!(b.expire(t0 + P), vec![s("a"), s("b")]);
        // ...and "b" was re-claimed at a new epoch before the old renewal's answer came.
        b.claimed(&s("b"), 2, t0 + P);
        let both = HashSet::from([s("a"), s("b")]);
        let r = b.renewed(&asked, &both, sent, t0 + P + Duration::from_secs(1));
        assert_eq!(
            r,
            Renewal::default(),
            "nothing kept, nothing reported twice"
        );
        assert_eq!(b.epoch("a"), None);
        assert_eq!(b.epoch("b"), Some(2));
    }

    #[test]
    fn a_renewal_arriving_after_its_deadline_is_a_loss_even_if_granted() {
        let mut b = Book::new(P);
        let t0 = Instant::now();
        b.claimed(&s("a"), 1, t0);
        let asked = b.to_renew();
        let r = b.renewed(
            &asked,
            &HashSet::from([s("a")]),
            t0 + Duration::from_secs(9),
            t0 + P,
        );
        assert_eq!(r.lost, vec![s("a")]);
        assert!(r.kept.is_empty());
    }

    #[test]
    fn a_deadline_never_moves_back() {
        let mut b = Book::new(P);
        let t0 = Instant::now();
        b.claimed(&s("a"), 1, t0 + Duration::from_secs(5));
        let asked = b.to_renew();
        let r = b.renewed(
            &asked,
            &HashSet::from([s("a")]),
            t0,
            t0 + Duration::from_secs(6),
        );
        assert_eq!(r.kept, vec![(s("a"), 1, t0 + Duration::from_secs(5) + P)]);
    }
}
