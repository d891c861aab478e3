//! Whole simulated clusters: joining, failover, a stuck member, draining, a pause.

use super::sim::{Cluster, Health, PERIOD, ROUNDS_PER_PERIOD};

/// Rounds until every session is held; panics after `max_rounds`.
fn rounds_until_all_held(c: &mut Cluster, max_rounds: u32) -> u32 {
    for r in 1..=max_rounds {
        c.round();
        if c.unheld() == 0 {
            return r;
        }
    }
    panic!("still {} unheld after {max_rounds} rounds", c.unheld());
}

/// Each instance's releases are at least a lease period apart.
fn assert_one_release_per_period(c: &Cluster) {
    for n in &c.nodes {
        for pair in n.released_at.windows(2) {
            assert!(
                pair[1] - pair[0] >= PERIOD,
                "{} released twice within a period",
                n.planner.me()
            );
        }
    }
}

/// Rounds until settled, checking that a released session is unheld for one round at most.
fn settle_handing_over(c: &mut Cluster, max_periods: u32) {
    let mut quiet = 0;
    for _ in 0..max_periods * ROUNDS_PER_PERIOD {
        let round = c.round();
        assert!(
            c.unheld() <= round.releases,
            "{} unheld after a round that released {}",
            c.unheld(),
            round.releases
        );
        quiet = if round.claims + round.releases > 0 {
            0
        } else {
            quiet + 1
        };
        if quiet == ROUNDS_PER_PERIOD {
            return;
        }
    }
    panic!("not settled: {:?}", c.loads());
}

#[test]
fn three_instances_joining_one_by_one_end_within_ten_percent() {
    let mut c = Cluster::new(300);
    c.join("a", 50);
    c.settle(3);
    assert_eq!(c.loads(), [300]);
    c.join("b", 50);
    settle_handing_over(&mut c, 200);
    assert_eq!(c.loads(), [150, 150]);
    c.join("c", 50);
    settle_handing_over(&mut c, 200);
    for load in c.loads() {
        assert!((90..=110).contains(&load), "{:?}", c.loads());
    }
    assert_eq!(c.loads(), [100, 100, 100], "300 over 3 is exact");
    assert_one_release_per_period(&c);
    // Gradually: "b" took its 150 one release of "a" per period.
    assert_eq!(c.nodes[0].released_at.len(), 150 + 50);
}

#[test]
fn a_killed_instance_s_sessions_are_taken_within_two_periods() {
    let mut c = Cluster::new(300);
    for id in ["a", "b", "c"] {
        c.join(id, 50);
    }
    c.settle(100);
    // Killed right after renewing: its leases run the longest, a full period.
    c.nodes[2].health = Health::Dead;
    let rounds = rounds_until_all_held(&mut c, 2 * ROUNDS_PER_PERIOD);
    assert!(rounds <= 2 * ROUNDS_PER_PERIOD, "{rounds}");
    c.settle(10);
    assert_eq!(c.loads()[..2], [150, 150]);
}

#[test]
fn orphans_left_to_a_stuck_member_are_taken_by_another_within_two_periods() {
    // "s" heartbeats (so it counts as live) but never claims: every orphan that
    // rendezvous gives it must still be taken, by someone else, a period later.
    let mut c = Cluster::new(300);
    for id in ["a", "b", "s"] {
        c.join(id, 50);
    }
    c.nodes[2].health = Health::Stuck;
    let rounds = rounds_until_all_held(&mut c, 2 * ROUNDS_PER_PERIOD);
    assert!(rounds > 1, "some were left to the stuck member at first");
    assert_eq!(c.loads()[2], 0);
}

#[test]
fn a_draining_instance_hands_everything_over_in_batches() {
    let mut c = Cluster::new(300);
    for id in ["a", "b", "c"] {
        c.join(id, 25);
    }
    c.settle(100);
    c.nodes[2].draining = true;
    let before = c.nodes[2].released_at.len();
    settle_handing_over(&mut c, 20);
    assert_eq!(c.loads(), [150, 150, 0]);
    let drained = &c.nodes[2].released_at[before..];
    assert_eq!(drained.len(), 100);
    for at in drained {
        let same_round = drained.iter().filter(|t| *t == at).count();
        assert!(same_round <= 25, "{same_round} in one round");
    }
}

#[test]
fn a_paused_instance_finds_every_lease_lost_and_never_shares_one() {
    let mut c = Cluster::new(300);
    c.join("a", 50);
    c.join("b", 50);
    c.settle(200);
    let paused: Vec<_> = c.nodes[1].held.keys().cloned().collect();
    assert_eq!(paused.len(), 150);
    c.nodes[1].health = Health::Dead;
    rounds_until_all_held(&mut c, 2 * ROUNDS_PER_PERIOD);
    c.round();
    assert_eq!(c.loads()[0], 300);
    // Back from SIGSTOP: its renewals fail and its first plan gives them all up; the
    // simulation checks after every round that no session has two holders.
    c.nodes[1].health = Health::Running;
    let round = c.round();
    assert_eq!(round.lost, 150);
    for s in &paused {
        assert_eq!(c.db.rows[s].owner, "a", "taken over with a newer epoch");
        assert!(c.db.rows[s].epoch >= 2);
    }
    settle_handing_over(&mut c, 200);
    assert_eq!(c.loads(), [150, 150]);
}
