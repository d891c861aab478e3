//! Which sessions this instance should claim, hand over or give up (pure): one
//! [`Planner::step`] per round over a [`Snapshot`] of the lease table and the live members.
//!
//! The plan is only a proposal: the database's conditional claim decides who owns a
//! session (`store::claim` takes a lease only when it is absent, expired or already
//! ours), so planners that disagree — different snapshots, a member that just joined —
//! cost a refused claim, never two owners. Planners that read the same snapshot agree
//! exactly: every orphan is assigned to one member, so they never race for it.
//!
//! - **Orphans** (no lease row, or an expired one) are assigned by rendezvous hashing
//!   with bounded load: in each orphan's rendezvous order, first a member below
//!   `floor(N / members)`, then one below `ceil(N / members)`, then anyone. Loads count
//!   as assignments are made, so all the orphans of a failed member are placed in one
//!   round and no member is given more than `ceil` while another has room.
//! - **Stale orphans** (orphaned for a lease period or more: the member they were
//!   assigned to did not take them) go to the next member of that order, one more
//!   place along per period, so failover never waits on a wrong guess or a stuck member.
//! - **Balance**: a member above `floor` while another is below it (or above `ceil`
//!   while another is below `ceil`) releases one session per lease period, which the
//!   next round assigns to the underloaded member. The member that released stays at or
//!   above the bound it released down to, so it is never assigned the session back.
//! - **Draining** (graceful shutdown): the member releases its sessions in batches and
//!   claims nothing; the others count it out and take them.
//! - **Pools** ([`Pools`]): sessions stored in the database (added at run time) are
//!   spread over every live member; configured sessions only over the members whose
//!   config lists the same ones (the same [`Member::digest`]), so a session is never
//!   assigned, nor balanced, to a member that would not claim it. Each pool is placed
//!   and balanced on its own, as above.
//!
//! A lease whose owner is no longer a live member but has not expired is left alone:
//! the claim would be refused until it expires (fencing needs the old owner's lease to
//! have run out or been released), and it counts for nobody's load meanwhile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::ledger::pg::fence::Epoch;

/// A live member of the cluster, as the members table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its `[cluster] instance_id`.
    pub id: String,
    /// It is shutting down and handing its sessions over.
    pub draining: bool,
    /// The [`digest`](super::catalog::digest) of its configured sessions: configured
    /// sessions are placed only on members whose config has them.
    pub digest: i64,
}

/// One row of the lease table, with its expiry told by the database's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The instance that holds (or last held) it.
    pub owner: String,
    /// Its fencing epoch.
    pub epoch: Epoch,
    /// `None` while the lease holds; how long ago it expired once it has.
    pub expired_for: Option<Duration>,
}

/// What a round reads from the database: the live members and every lease row.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Members whose heartbeat is recent enough.
    pub members: Vec<Member>,
    /// Lease rows by session id.
    pub leases: HashMap<Arc<str>, Lease>,
}

/// The sessions a round plans over, in two pools placed apart
/// ([`catalog`](super::catalog)): each is spread evenly over the members that may run it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pools<'a> {
    /// Sessions every live member may be given (stored in the database).
    pub shared: &'a [Arc<str>],
    /// Sessions of this instance's config: only members with the same `digest` as this
    /// one may be given them. A session in both pools counts as shared.
    pub configured: &'a [Arc<str>],
}

/// What this instance should do after a round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Sessions to claim (orphans assigned here, and leases the table says are ours but
    /// this process does not hold, e.g. after a restart with a fixed `instance_id`).
    pub claim: Vec<Arc<str>>,
    /// Sessions to hand over: release the lease (by its epoch), then close the socket
    /// with 1000. At most one per lease period for balance; a batch when draining; all
    /// held sessions that are no longer configured.
    pub release: Vec<(Arc<str>, Epoch)>,
    /// Sessions held here whose lease is gone (expired, or taken over): close their
    /// sockets without sending anything.
    pub lost: Vec<Arc<str>>,
}

/// The lease planner of one instance; its only state is the timing of past rounds.
#[derive(Debug, Clone)]
pub struct Planner {
    me: String,
    period: Duration,
    drain_batch: usize,
    /// When each session without a lease row was first seen orphaned (rows carry their own age).
    first_seen: HashMap<Arc<str>, Instant>,
    /// When the last balancing release was planned.
    last_release: Option<Instant>,
}

impl Planner {
    /// A planner for instance `me` with leases of `period`; when draining, it releases
    /// `drain_batch` sessions per round (at least one).
    pub fn new(me: impl Into<String>, period: Duration, drain_batch: usize) -> Self {
        Self {
            me: me.into(),
            period,
            drain_batch: drain_batch.max(1),
            first_seen: HashMap::new(),
            last_release: None,
        }
    }

    /// This planner's instance id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Plan one round at `now` from `snap`, the configured `sessions` (the same on every
    /// member of `snap` with this one's digest) and the leases this process `held`
    /// (session → the epoch its claim returned).
    pub fn step(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        sessions: &[Arc<str>],
        held: &HashMap<Arc<str>, Epoch>,
    ) -> Plan {
        let pools = Pools {
            shared: &[],
            configured: sessions,
        };
        self.plan(now, snap, pools, held)
    }

    /// Plan one round at `now` from `snap`, the sessions of `pools` and the leases this
    /// process `held` (session → the epoch its claim returned). Held sessions in neither
    /// pool are handed over.
    pub fn plan(
        &mut self,
        now: Instant,
        snap: &Snapshot,
        pools: Pools<'_>,
        held: &HashMap<Arc<str>, Epoch>,
    ) -> Plan {
        let mut plan = Plan::default();
        let shared: HashSet<&str> = pools.shared.iter().map(|s| &**s).collect();
        let configured: Vec<Arc<str>> = pools
            .configured
            .iter()
            .filter(|s| !shared.contains(&***s))
            .cloned()
            .collect();
        let known: HashSet<&str> = shared
            .iter()
            .copied()
            .chain(configured.iter().map(|s| &**s))
            .collect();
        let mine = |s: &str| {
            snap.leases
                .get(s)
                .filter(|l| l.owner == self.me && l.expired_for.is_none())
        };
        for (s, &epoch) in held {
            match mine(s) {
                Some(l) if l.epoch == epoch => {
                    if !known.contains(&**s) {
                        plan.release.push((s.clone(), epoch));
                    }
                }
                _ => plan.lost.push(s.clone()),
            }
        }
        let me = snap.members.iter().find(|m| m.id == self.me);
        let mut orphans: HashSet<Arc<str>> = HashSet::new();
        if me.is_some_and(|m| m.draining) {
            let ours: BTreeMap<Arc<str>, Epoch> = pools
                .shared
                .iter()
                .chain(&configured)
                .filter_map(|s| mine(s).map(|l| (s.clone(), l.epoch)))
                .collect();
            plan.release.extend(drain(&ours, self.drain_batch));
        } else if let Some(me) = me {
            let digest = me.digest;
            let views = [
                View::new(snap, pools.shared, |_| true),
                View::new(snap, &configured, |m| m.digest == digest),
            ];
            for view in &views {
                orphans.extend(view.orphans.iter().cloned());
                if view.rank_of(&self.me).is_some() {
                    self.claims(now, view, held, &mut plan);
                    self.balance(now, view, held, &mut plan);
                }
            }
        }
        self.first_seen.retain(|s, _| orphans.contains(s));
        sort(&mut plan);
        plan
    }

    /// The orphans assigned to this instance, and our leases this process does not hold.
    fn claims(
        &mut self,
        now: Instant,
        view: &View,
        held: &HashMap<Arc<str>, Epoch>,
        plan: &mut Plan,
    ) {
        let mut loads = view.loads.clone();
        for s in &view.orphans {
            let age = match view.leases.get(s) {
                Some(l) => l.expired_for.unwrap_or_default(),
                None => {
                    now.saturating_duration_since(*self.first_seen.entry(s.clone()).or_insert(now))
                }
            };
            let stale = usize::try_from(age.as_nanos() / self.period.as_nanos().max(1))
                .unwrap_or(usize::MAX);
            let who = view.assign(s, &loads, stale);
            loads[who] += 1;
            if view.live[who] == self.me {
                plan.claim.push(s.clone());
            }
        }
        plan.claim.extend(
            view.held_by(&self.me)
                .filter(|(s, _)| !held.contains_key(*s))
                .map(|(s, _)| s.clone()),
        );
    }

    /// At most one release per lease period, from above a bound to below it.
    fn balance(
        &mut self,
        now: Instant,
        view: &View,
        held: &HashMap<Arc<str>, Epoch>,
        plan: &mut Plan,
    ) {
        if self
            .last_release
            .is_some_and(|t| now.saturating_duration_since(t) < self.period)
        {
            return;
        }
        let Some(me) = view.rank_of(&self.me) else {
            return;
        };
        let (floor, ceil) = view.bounds();
        let mine = view.loads[me];
        let min = view.loads.iter().copied().min().unwrap_or(0);
        let bound = if mine > floor && min < floor {
            floor
        } else if mine > ceil && min < ceil {
            ceil
        } else {
            return;
        };
        let under: Vec<usize> = (0..view.live.len())
            .filter(|&m| view.loads[m] < bound)
            .collect();
        // Ours both in this process and in the table.
        let candidates: Vec<(&Arc<str>, Epoch)> = view
            .held_by(&self.me)
            .filter(|(s, e)| held.get(*s) == Some(e))
            .collect();
        // Prefer a session whose rendezvous favourite is underloaded: it goes home.
        let home = candidates
            .iter()
            .find(|(s, _)| under.contains(&view.ranking(s)[0]));
        if let Some((s, epoch)) = home.or(candidates.first()) {
            plan.release.push(((*s).clone(), *epoch));
            self.last_release = Some(now);
        }
    }
}

/// The sessions a draining member hands over this round: `batch` of those it holds, by id.
pub fn drain(ours: &BTreeMap<Arc<str>, Epoch>, batch: usize) -> Vec<(Arc<str>, Epoch)> {
    ours.iter()
        .take(batch.max(1))
        .map(|(s, e)| (s.clone(), *e))
        .collect()
}

fn sort(plan: &mut Plan) {
    plan.claim.sort();
    plan.claim.dedup();
    plan.release.sort();
    plan.release.dedup_by(|a, b| a.0 == b.0);
    plan.lost.sort();
}

/// A round's reading of the snapshot, the same for every planner that reads it.
struct View<'a> {
    leases: &'a HashMap<Arc<str>, Lease>,
    /// Live, non-draining members, by id.
    live: Vec<&'a str>,
    /// Valid leases of configured sessions held by each of `live`.
    loads: Vec<usize>,
    /// Configured sessions without a lease or with an expired one, by id.
    orphans: Vec<Arc<str>>,
    /// Configured sessions, by id, with their valid lease if any.
    sessions: Vec<(&'a Arc<str>, Option<&'a Lease>)>,
}

impl<'a> View<'a> {
    /// `sessions` over the live members that pass `may_run`.
    fn new(
        snap: &'a Snapshot,
        sessions: &'a [Arc<str>],
        may_run: impl Fn(&Member) -> bool,
    ) -> Self {
        let mut live: Vec<&str> = snap
            .members
            .iter()
            .filter(|m| !m.draining && may_run(m))
            .map(|m| m.id.as_str())
            .collect();
        live.sort_unstable();
        live.dedup();
        let mut view = Self {
            leases: &snap.leases,
            loads: vec![0; live.len()],
            live,
            orphans: Vec::new(),
            sessions: Vec::with_capacity(sessions.len()),
        };
        let mut sorted: Vec<&Arc<str>> = sessions.iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        for s in sorted {
            let valid = snap.leases.get(s).filter(|l| l.expired_for.is_none());
            match valid {
                None => view.orphans.push(s.clone()),
                Some(l) => {
                    if let Some(m) = view.rank_of(&l.owner) {
                        view.loads[m] += 1;
                    }
                }
            }
            view.sessions.push((s, valid));
        }
        view
    }

    /// Index of `id` among the live members.
    fn rank_of(&self, id: &str) -> Option<usize> {
        self.live.binary_search(&id).ok()
    }

    /// `floor(N / members)` and `ceil(N / members)` over the configured sessions.
    fn bounds(&self) -> (usize, usize) {
        let (n, m) = (self.sessions.len(), self.live.len().max(1));
        (n / m, n.div_ceil(m))
    }

    /// Configured sessions with a valid lease held by `owner`, with its epoch.
    fn held_by<'s>(&'s self, owner: &'s str) -> impl Iterator<Item = (&'a Arc<str>, Epoch)> + 's {
        self.sessions
            .iter()
            .filter_map(move |(s, l)| l.filter(|l| l.owner == owner).map(|l| (*s, l.epoch)))
    }

    /// The live members in `session`'s rendezvous order (highest weight first).
    fn ranking(&self, session: &str) -> Vec<usize> {
        let mut order: Vec<(u64, usize)> = (0..self.live.len())
            .map(|m| (weight(session, self.live[m]), m))
            .collect();
        order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        order.into_iter().map(|(_, m)| m).collect()
    }

    /// The member an orphan goes to: its rendezvous order, members below `floor` first,
    /// then below `ceil`, then the rest. Once `stale` (unclaimed for that many periods),
    /// it skips the first of that order — most likely the member that did not take it —
    /// and moves one place along the others per period.
    fn assign(&self, session: &str, loads: &[usize], stale: usize) -> usize {
        let (floor, ceil) = self.bounds();
        let ranking = self.ranking(session);
        let tier = |m: &usize| match loads[*m] {
            l if l < floor => 0,
            l if l < ceil => 1,
            _ => 2,
        };
        let mut order = ranking;
        order.sort_by_key(tier);
        match (stale, order.len()) {
            (0, _) | (_, 1) => order[0],
            (k, n) => order[1 + (k - 1) % (n - 1)],
        }
    }
}

/// Rendezvous weight of `member` for `session`: FNV-1a, then the splitmix64 finaliser.
///
/// A fixed function, not std's hasher: every instance, whatever it was built with,
/// must rank the members the same way.
pub fn weight(session: &str, member: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in session.bytes().chain([0xff]).chain(member.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests;
