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
    /// How long past its deadline a lease not renewed is kept, lapsed (`outage_grace`).
    grace: Duration,
    held: HashMap<Arc<str>, Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    epoch: Epoch,
    deadline: Instant,
    /// Its deadline passed without a renewal: nothing may be sent for it (its fence says
    /// so by the same deadline), but its session keeps its socket until `deadline + grace`.
    lapsed: bool,
}

/// What a renewal's answer means for each lease it asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Renewal {
    /// Still held: session, epoch and its new deadline.
    pub(super) kept: Vec<(Arc<str>, Epoch, Instant)>,
    /// Of `kept`, those that had lapsed: their sessions may act again.
    pub(super) resumed: Vec<Arc<str>>,
    /// Lost (the database did not renew it, or its grace ran out before the answer came):
    /// already out of the book.
    pub(super) lost: Vec<Arc<str>>,
}

/// What the passing of time did to the book ([`Book::expire`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Expired {
    /// Deadline passed just now: kept, lapsed, until renewed or their grace runs out.
    pub(super) lapsed: Vec<Arc<str>>,
    /// Grace run out: out of the book, let go.
    pub(super) gone: Vec<Arc<str>>,
}

impl Book {
    /// No leases; each lasts `period` from the instant its claim or renewal was sent, and
    /// one not renewed by then is kept, lapsed, for `grace` more.
    pub(super) fn new(period: Duration, grace: Duration) -> Self {
        Self {
            period,
            grace,
            held: HashMap::new(),
        }
    }

    /// Leases held (lapsed ones included).
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    /// Leases held that have lapsed.
    pub(super) fn lapsed(&self) -> usize {
        self.held.values().filter(|e| e.lapsed).count()
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

    /// The leases to renew (lapsed ones included), by session id.
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
        let entry = Entry {
            epoch,
            deadline,
            lapsed: false,
        };
        self.held.insert(session.clone(), entry);
        deadline
    }

    /// A renewal of `asked` was sent at `sent` and the database renewed `renewed`; at `now`
    /// (its answer's arrival). A lease is kept only if it is still in the book at the epoch
    /// asked and was renewed; one the database did not renew is lost. A renewal never
    /// moves a deadline back, and one whose new deadline has already passed by `now` keeps
    /// the lease lapsed (the next round renews it again).
    ///
    /// Renewing a lapsed lease is safe: the database renews only at the same epoch, which
    /// only a claim changes, so nobody else held the session meanwhile.
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
            if !renewed.contains(s) || now >= entry.deadline + self.grace {
                self.held.remove(s);
                out.lost.push(s.clone());
                continue;
            }
            // Lapsed, or its deadline passed while this renewal was on its way (no round
            // marked it yet): the fences refused its writes meanwhile, as lapsed.
            let passed = entry.lapsed || now >= entry.deadline;
            entry.deadline = entry.deadline.max(sent + self.period);
            if now < entry.deadline {
                out.kept.push((s.clone(), *epoch, entry.deadline));
                entry.lapsed = false;
                if passed {
                    out.resumed.push(s.clone());
                }
            }
        }
        out
    }

    /// Take `session` out (lost or handed over); its epoch if it was held.
    pub(super) fn remove(&mut self, session: &str) -> Option<Epoch> {
        self.held.remove(session).map(|e| e.epoch)
    }

    /// At `now`: mark the leases whose deadline passed as lapsed, and take out those whose
    /// grace ran out too; each by session id.
    pub(super) fn expire(&mut self, now: Instant) -> Expired {
        let mut out = Expired::default();
        for (s, e) in &mut self.held {
            if now >= e.deadline + self.grace {
                out.gone.push(s.clone());
            } else if now >= e.deadline && !e.lapsed {
                e.lapsed = true;
                out.lapsed.push(s.clone());
            }
        }
        out.gone.sort();
        out.lapsed.sort();
        for s in &out.gone {
            self.held.remove(s);
        }
        out
    }

    /// The next instant [`Book::expire`] has something to do: the earliest deadline of
    /// the leases not lapsed, or end of grace of those lapsed.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.held
            .values()
            .map(|e| {
                if e.lapsed {
                    e.deadline + self.grace
                } else {
                    e.deadline
                }
            })
            .min()
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
        let mut b = Book::new(P, Duration::ZERO);
        let t0 = Instant::now();
        assert_eq!(b.claimed(&s("a"), 1, t0), t0 + P);
        assert_eq!(b.next_deadline(), Some(t0 + P));
        assert_eq!(
            b.expire(t0 + P - Duration::from_millis(1)),
            Expired::default()
        );
        assert_eq!(b.expire(t0 + P).gone, vec![s("a")]);
        assert!(b.is_empty());
    }

    #[test]
    fn a_renewal_keeps_what_the_database_renewed_and_loses_the_rest() {
        let mut b = Book::new(P, Duration::ZERO);
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
        let mut b = Book::new(P, Duration::ZERO);
        let t0 = Instant::now();
        b.claimed(&s("a"), 1, t0);
        b.claimed(&s("b"), 1, t0);
        let asked = b.to_renew();
        let sent = t0 + Duration::from_secs(9);
        // The database was slow: "a" expired locally meanwhile (the loop let it go)...
        assert_eq!(b.expire(t0 + P).gone, vec![s("a"), s("b")]);
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
        let mut b = Book::new(P, Duration::ZERO);
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
        let mut b = Book::new(P, Duration::ZERO);
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

    const G: Duration = Duration::from_secs(60);

    #[test]
    fn a_lease_not_renewed_lapses_at_its_deadline_and_goes_when_its_grace_runs_out() {
        let mut b = Book::new(P, G);
        let t0 = Instant::now();
        b.claimed(&s("a"), 1, t0);
        assert_eq!(b.next_deadline(), Some(t0 + P));
        let at_deadline = b.expire(t0 + P);
        assert_eq!(at_deadline.lapsed, vec![s("a")]);
        assert!(at_deadline.gone.is_empty());
        assert_eq!((b.len(), b.lapsed()), (1, 1));
        assert_eq!(
            b.next_deadline(),
            Some(t0 + P + G),
            "next: the end of its grace"
        );
        assert_eq!(
            b.expire(t0 + P + Duration::from_secs(1)),
            Expired::default(),
            "reported lapsed once"
        );
        assert_eq!(b.expire(t0 + P + G).gone, vec![s("a")]);
        assert!(b.is_empty());
    }

    #[test]
    fn a_lapsed_lease_renewed_at_its_epoch_resumes_with_a_new_deadline() {
        let mut b = Book::new(P, G);
        let t0 = Instant::now();
        b.claimed(&s("a"), 3, t0);
        b.claimed(&s("b"), 5, t0);
        b.expire(t0 + P);
        let asked = b.to_renew();
        assert_eq!(
            asked,
            vec![(s("a"), 3), (s("b"), 5)],
            "lapsed leases are renewed"
        );
        // The database is back 30 s later: "a" is still ours, "b" was claimed by another.
        let sent = t0 + Duration::from_secs(40);
        let r = b.renewed(&asked, &HashSet::from([s("a")]), sent, sent);
        assert_eq!(r.kept, vec![(s("a"), 3, sent + P)]);
        assert_eq!(r.resumed, vec![s("a")]);
        assert_eq!(r.lost, vec![s("b")]);
        assert_eq!((b.len(), b.lapsed()), (1, 0));
        assert_eq!(b.next_deadline(), Some(sent + P));
        // A renewal of a lease that had not lapsed is no resumption.
        let again = b.renewed(&b.to_renew(), &HashSet::from([s("a")]), sent, sent);
        assert!(again.resumed.is_empty());
    }

    /// Found by reading: a deadline that passed during the renewal's round trip made the
    /// fences refuse writes as lapsed, but only leases a round had marked lapsed were
    /// reported resumed, so prompts held meanwhile were never recorded.
    #[test]
    fn a_lease_whose_deadline_passed_while_its_renewal_was_on_its_way_resumes() {
        let mut b = Book::new(P, G);
        let t0 = Instant::now();
        b.claimed(&s("a"), 1, t0);
        let asked = b.to_renew();
        let sent = t0 + P - Duration::from_millis(1);
        let r = b.renewed(&asked, &HashSet::from([s("a")]), sent, t0 + P);
        assert_eq!(r.kept, vec![(s("a"), 1, sent + P)]);
        assert_eq!(r.resumed, vec![s("a")]);
        assert_eq!(b.lapsed(), 0);
    }

    #[test]
    fn a_renewal_granted_after_the_grace_ran_out_is_still_a_loss() {
        let mut b = Book::new(P, G);
        let t0 = Instant::now();
        b.claimed(&s("a"), 1, t0);
        let asked = b.to_renew();
        let r = b.renewed(&asked, &HashSet::from([s("a")]), t0 + P, t0 + P + G);
        assert_eq!(r.lost, vec![s("a")]);
        assert!(b.is_empty());
    }

    #[test]
    fn a_renewal_whose_new_deadline_passed_before_its_answer_keeps_the_lease_lapsed() {
        let mut b = Book::new(P, G);
        let t0 = Instant::now();
        b.claimed(&s("a"), 1, t0);
        b.expire(t0 + P);
        let asked = b.to_renew();
        // Sent at t0 + P, answered a whole period later: too late to send on.
        let r = b.renewed(&asked, &HashSet::from([s("a")]), t0 + P, t0 + P + P);
        assert_eq!(r, Renewal::default());
        assert_eq!((b.len(), b.lapsed()), (1, 1));
        assert_eq!(b.next_deadline(), Some(t0 + P + P + G));
    }
}
