//! Properties of the planner over random lease tables and cluster sizes (proptest).
//!
//! - Planners that read one snapshot claim disjoint sets of sessions.
//! - Planners that read different snapshots may overlap, and then the database's
//!   conditional claim decides: no session ever has two owners.
//! - From any table, a cluster settles with every session held and every load within
//!   `floor(N / members)..=ceil(N / members)`.
//! - A killed member's sessions are held again within two lease periods.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::super::{Lease, Member, Plan, Planner, Snapshot};
use super::sim::{assert_disjoint_claims, Cluster, Db, Health, Row, PERIOD, ROUNDS_PER_PERIOD};
use ccr_protocol::fuzz::config;

/// One lease row: owner index (the last index is a member that is gone), epoch, and
/// seconds left (negative: expired that long ago).
type RowSpec = Option<(usize, i64, i64)>;

fn table(max_sessions: usize) -> impl Strategy<Value = Vec<RowSpec>> {
    prop::collection::vec(
        prop::option::of((0usize..6, 1i64..5, -25i64..25)),
        0..max_sessions,
    )
}

fn name(i: usize) -> String {
    format!("m{i}")
}

/// The rows of `spec` in the simulated database at `now`, owners among `members` + 1.
fn fill(db: &mut Db, sessions: &[Arc<str>], spec: &[RowSpec], members: usize, now: Instant) {
    for (s, row) in sessions.iter().zip(spec) {
        let Some((owner, epoch, left)) = *row else {
            continue;
        };
        let expires_at = if left >= 0 {
            now + Duration::from_secs(left.unsigned_abs())
        } else {
            now - Duration::from_secs(left.unsigned_abs())
        };
        let owner = name(owner % (members + 1));
        db.rows.insert(
            s.clone(),
            Row {
                owner,
                epoch,
                expires_at,
            },
        );
    }
}

/// Each member's valid leases in `snap`, as the process that claimed them holds them.
fn held_in(snap: &Snapshot, me: &str) -> HashMap<Arc<str>, i64> {
    snap.leases
        .iter()
        .filter(|(_, l)| l.owner == me && l.expired_for.is_none())
        .map(|(s, l)| (s.clone(), l.epoch))
        .collect()
}

fn members(n: usize, draining: &[bool]) -> Vec<Member> {
    (0..n)
        .map(|i| Member {
            id: name(i),
            draining: draining.get(i).copied().unwrap_or(false),
            digest: 0,
        })
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_one_snapshot_never_gives_a_session_to_two_planners(
        spec in table(60),
        n_members in 1usize..6,
        draining in prop::collection::vec(prop::bool::weighted(0.2), 6),
        stale_secs in 0u64..40,
    ) {
        let now = Instant::now() + Duration::from_secs(100);
        let sessions: Vec<Arc<str>> = (0..spec.len()).map(|i| Arc::from(format!("s{i}"))).collect();
        let mut db = Db::default();
        fill(&mut db, &sessions, &spec, n_members, now);
        let mut snap = db.snapshot(now);
        snap.members = members(n_members, &draining);
        // Planners that have seen the rowless orphans for a while, all for as long.
        let plans: Vec<Option<Plan>> = snap
            .members
            .iter()
            .map(|m| {
                let mut p = Planner::new(m.id.clone(), PERIOD, 4);
                let held = held_in(&snap, &m.id);
                p.step(now - Duration::from_secs(stale_secs), &snap, &sessions, &held);
                Some(p.step(now, &snap, &sessions, &held))
            })
            .collect();
        assert_disjoint_claims(&plans);
        for (m, plan) in snap.members.iter().zip(plans.iter().flatten()) {
            for s in &plan.claim {
                let lease: Option<&Lease> = snap.leases.get(s);
                prop_assert!(lease.is_none_or(|l| l.expired_for.is_some()), "{} claims a held {s}", m.id);
            }
            prop_assert!(plan.lost.is_empty());
            let most = if m.draining { 4 } else { 1 };
            prop_assert!(plan.release.len() <= most);
        }
    }

    #[test]
    fn fuzz_planners_on_different_snapshots_are_refereed_by_the_database(
        spec in table(40),
        n_members in 2usize..6,
        hidden in prop::collection::vec(prop::bool::weighted(0.3), 6),
        order in any::<u64>(),
    ) {
        let now = Instant::now() + Duration::from_secs(100);
        let sessions: Vec<Arc<str>> = (0..spec.len()).map(|i| Arc::from(format!("s{i}"))).collect();
        let mut db = Db::default();
        fill(&mut db, &sessions, &spec, n_members, now);
        let full = db.snapshot(now);
        let all = members(n_members, &[]);
        // Each planner misses some members (a join or a death it has not seen yet).
        let mut claims: Vec<(String, Arc<str>)> = Vec::new();
        for (i, m) in all.iter().enumerate() {
            let mut snap = full.clone();
            snap.members = all
                .iter()
                .enumerate()
                .filter(|(j, _)| *j == i || !hidden[(*j + i) % hidden.len()])
                .map(|(_, m)| m.clone())
                .collect();
            let plan = Planner::new(m.id.clone(), PERIOD, 4)
                .step(now, &snap, &sessions, &held_in(&snap, &m.id));
            claims.extend(plan.claim.into_iter().map(|s| (m.id.clone(), s)));
        }
        // Applied in a random order, each claim conditional as in SQL.
        let mut order = order;
        let mut winners: HashMap<Arc<str>, String> = HashMap::new();
        while !claims.is_empty() {
            order = order.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (me, s) = claims.swap_remove((order >> 33) as usize % claims.len());
            let before = db.rows.get(&s).cloned();
            if let Some(epoch) = db.claim(&s, &me, now) {
                let claimable = before.as_ref().is_none_or(|r| r.expires_at <= now || r.owner == me);
                prop_assert!(claimable, "{me} took a valid lease of {s}");
                prop_assert_eq!(epoch, before.map_or(1, |r| r.epoch + 1));
                if let Some(first) = winners.insert(s.clone(), me.clone()) {
                    prop_assert_eq!(first, me, "two owners of {}", s);
                }
            }
        }
    }

    #[test]
    fn fuzz_any_start_settles_evenly(
        spec in table(120),
        n_members in 1usize..5,
    ) {
        let mut c = Cluster::new(spec.len());
        for i in 0..n_members {
            c.join(&name(i), 8);
        }
        let now = c.now;
        let sessions = c.sessions.clone();
        fill(&mut c.db, &sessions, &spec, n_members, now);
        c.settle(spec.len() as u32 + 10);
        let (floor, ceil) = (spec.len() / n_members, spec.len().div_ceil(n_members));
        for load in c.loads() {
            prop_assert!((floor..=ceil).contains(&load), "{:?}", c.loads());
        }
        prop_assert_eq!(c.unheld(), 0);
    }

    #[test]
    fn fuzz_failover_takes_two_periods_at_most(
        n_sessions in 1usize..200,
        n_members in 2usize..5,
        victim in 0usize..5,
    ) {
        let mut c = Cluster::new(n_sessions);
        for i in 0..n_members {
            c.join(&name(i), 8);
        }
        c.settle(n_sessions as u32 + 10);
        c.nodes[victim % n_members].health = Health::Dead;
        let mut rounds = 0;
        while c.unheld() > 0 || rounds == 0 {
            prop_assert!(rounds < 2 * ROUNDS_PER_PERIOD, "{} unheld after 2 periods", c.unheld());
            c.round();
            rounds += 1;
        }
    }
}
