//! A simulated cluster for the planner's tests: a lease table with the store's
//! conditional claim, renew and release, and instances that heartbeat, renew, read one
//! snapshot per round, plan and perform their plans.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::{Epoch, Lease, Member, Plan, Planner, Snapshot};

/// The lease period of every simulation.
pub(super) const PERIOD: Duration = Duration::from_secs(10);
/// Rounds per lease period (an instance renews and plans every `PERIOD / 4`).
pub(super) const ROUNDS_PER_PERIOD: u32 = 4;

/// One row of the simulated lease table.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) owner: String,
    pub(super) epoch: Epoch,
    pub(super) expires_at: Instant,
}

/// The simulated database: what `store.rs` does in SQL, on the simulation's clock.
#[derive(Debug, Default)]
pub(super) struct Db {
    pub(super) rows: HashMap<Arc<str>, Row>,
    /// Member id → (last heartbeat, draining).
    pub(super) heartbeats: HashMap<String, (Instant, bool)>,
}

impl Db {
    /// `store::claim`: insert, or take over an expired lease or our own, with epoch + 1.
    pub(super) fn claim(&mut self, s: &Arc<str>, me: &str, now: Instant) -> Option<Epoch> {
        let expires_at = now + PERIOD;
        match self.rows.get_mut(s) {
            None => {
                let owner = me.to_owned();
                self.rows.insert(
                    s.clone(),
                    Row {
                        owner,
                        epoch: 1,
                        expires_at,
                    },
                );
                Some(1)
            }
            Some(r) if r.expires_at <= now || r.owner == me => {
                *r = Row {
                    owner: me.to_owned(),
                    epoch: r.epoch + 1,
                    expires_at,
                };
                Some(r.epoch)
            }
            Some(_) => None,
        }
    }

    /// `store::renew` of one lease.
    pub(super) fn renew(&mut self, s: &str, me: &str, epoch: Epoch, now: Instant) -> bool {
        match self.rows.get_mut(s) {
            Some(r) if r.owner == me && r.epoch == epoch && r.expires_at > now => {
                r.expires_at = now + PERIOD;
                true
            }
            _ => false,
        }
    }

    /// `store::release`: expire it now.
    pub(super) fn release(&mut self, s: &str, me: &str, epoch: Epoch, now: Instant) -> bool {
        match self.rows.get_mut(s) {
            Some(r) if r.owner == me && r.epoch == epoch && r.expires_at > now => {
                r.expires_at = now;
                true
            }
            _ => false,
        }
    }

    /// `store::snapshot`: members heard from within a period, and every lease row.
    pub(super) fn snapshot(&self, now: Instant) -> Snapshot {
        let mut members: Vec<Member> = self
            .heartbeats
            .iter()
            .filter(|(_, (at, _))| now.saturating_duration_since(*at) < PERIOD)
            .map(|(id, (_, draining))| Member {
                id: id.clone(),
                draining: *draining,
                digest: 0,
            })
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let leases = self
            .rows
            .iter()
            .map(|(s, r)| {
                let lease = Lease {
                    owner: r.owner.clone(),
                    epoch: r.epoch,
                    expired_for: (r.expires_at <= now).then(|| now - r.expires_at),
                };
                (s.clone(), lease)
            })
            .collect();
        Snapshot { members, leases }
    }
}

/// How a simulated instance behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Health {
    /// Heartbeats, renews, plans and performs its plans.
    Running,
    /// Heartbeats and renews but never plans (a member stuck elsewhere).
    Stuck,
    /// Gone (`kill -9`) or paused (SIGSTOP, a partition): does nothing at all.
    Dead,
}

/// One simulated instance.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) planner: Planner,
    pub(super) held: HashMap<Arc<str>, Epoch>,
    pub(super) health: Health,
    pub(super) draining: bool,
    /// When each of its releases was made.
    pub(super) released_at: Vec<Instant>,
}

/// The simulated cluster.
#[derive(Debug)]
pub(super) struct Cluster {
    pub(super) db: Db,
    pub(super) nodes: Vec<Node>,
    pub(super) sessions: Vec<Arc<str>>,
    pub(super) now: Instant,
}

/// What one round did.
#[derive(Debug, Default)]
pub(super) struct Round {
    pub(super) claims: usize,
    pub(super) granted: usize,
    pub(super) releases: usize,
    pub(super) lost: usize,
}

impl Cluster {
    /// `n` sessions, no instances yet.
    pub(super) fn new(n: usize) -> Self {
        Self {
            db: Db::default(),
            nodes: Vec::new(),
            sessions: (0..n).map(|i| Arc::from(format!("sess_{i:04}"))).collect(),
            now: Instant::now(),
        }
    }

    /// Start an instance named `id`, draining its sessions `drain_batch` at a time.
    pub(super) fn join(&mut self, id: &str, drain_batch: usize) -> usize {
        self.nodes.push(Node {
            planner: Planner::new(id, PERIOD, drain_batch),
            held: HashMap::new(),
            health: Health::Running,
            draining: false,
            released_at: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// One round: every instance heartbeats and renews, then all read one snapshot,
    /// plan on it and perform their plans one after another (claims in node order).
    pub(super) fn round(&mut self) -> Round {
        self.now += PERIOD / ROUNDS_PER_PERIOD;
        let now = self.now;
        for node in self.nodes.iter().filter(|n| n.health != Health::Dead) {
            let id = node.planner.me().to_owned();
            self.db.heartbeats.insert(id.clone(), (now, node.draining));
            for (s, e) in &node.held {
                self.db.renew(s, &id, *e, now);
            }
        }
        let snap = self.db.snapshot(now);
        let plans: Vec<Option<Plan>> = self
            .nodes
            .iter_mut()
            .map(|n| {
                (n.health == Health::Running)
                    .then(|| n.planner.step(now, &snap, &self.sessions, &n.held))
            })
            .collect();
        assert_disjoint_claims(&plans);
        let mut round = Round::default();
        for (node, plan) in self.nodes.iter_mut().zip(plans) {
            let Some(plan) = plan else { continue };
            let me = node.planner.me().to_owned();
            for s in &plan.lost {
                node.held.remove(s);
            }
            for (s, e) in &plan.release {
                self.db.release(s, &me, *e, now);
                node.held.remove(s);
                node.released_at.push(now);
            }
            for s in &plan.claim {
                if let Some(e) = self.db.claim(s, &me, now) {
                    node.held.insert(s.clone(), e);
                    round.granted += 1;
                }
            }
            round.claims += plan.claim.len();
            round.releases += plan.release.len();
            round.lost += plan.lost.len();
        }
        self.assert_one_holder();
        round
    }

    /// Rounds until one full period passes without a claim, a release or a loss, and
    /// every session is held; panics after `max_periods`. Returns the periods it took.
    pub(super) fn settle(&mut self, max_periods: u32) -> u32 {
        let mut quiet = 0;
        for r in 1..=max_periods * ROUNDS_PER_PERIOD {
            let round = self.round();
            let busy = round.claims + round.releases + round.lost > 0;
            quiet = if busy || self.unheld() > 0 {
                0
            } else {
                quiet + 1
            };
            if quiet == ROUNDS_PER_PERIOD {
                return r.div_ceil(ROUNDS_PER_PERIOD);
            }
        }
        panic!(
            "not settled in {max_periods} periods: loads {:?}",
            self.loads()
        );
    }

    /// Sessions each instance holds.
    pub(super) fn loads(&self) -> Vec<usize> {
        self.nodes.iter().map(|n| n.held.len()).collect()
    }

    /// Configured sessions no instance that is not dead holds.
    pub(super) fn unheld(&self) -> usize {
        self.sessions
            .iter()
            .filter(|s| {
                self.nodes
                    .iter()
                    .all(|n| n.health == Health::Dead || !n.held.contains_key(*s))
            })
            .count()
    }

    /// No session is held by two instances that are not dead (or paused: what a dead
    /// instance remembers no longer matters, its lease is fenced).
    fn assert_one_holder(&self) {
        for s in &self.sessions {
            let holders: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| n.health != Health::Dead && n.held.contains_key(s))
                .map(|n| n.planner.me())
                .collect();
            assert!(holders.len() <= 1, "{s} held by {holders:?}");
        }
    }
}

/// Planners that read the same snapshot never claim the same session.
pub(super) fn assert_disjoint_claims(plans: &[Option<Plan>]) {
    let mut seen: HashMap<&Arc<str>, usize> = HashMap::new();
    for (i, plan) in plans.iter().enumerate() {
        for s in plan.iter().flat_map(|p| &p.claim) {
            if let Some(j) = seen.insert(s, i) {
                panic!("{s} claimed by planners {j} and {i} on one snapshot");
            }
        }
    }
}
