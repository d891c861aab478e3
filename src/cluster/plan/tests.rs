//! Unit tests of the lease planner: single decisions here; whole simulated clusters in
//! `tests/scenarios.rs`; properties over random tables in `tests/props.rs`.

mod props;
mod scenarios;
mod sim;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

const P: Duration = Duration::from_secs(10);

fn ids(names: &[&str]) -> Vec<Arc<str>> {
    names.iter().map(|s| Arc::from(*s)).collect()
}

fn member(id: &str) -> Member {
    Member {
        id: id.to_owned(),
        draining: false,
        digest: 0,
    }
}

fn lease(owner: &str, epoch: Epoch, expired_for: Option<u64>) -> Lease {
    Lease {
        owner: owner.to_owned(),
        epoch,
        expired_for: expired_for.map(Duration::from_secs),
    }
}

fn snap(members: &[Member], leases: &[(&str, Lease)]) -> Snapshot {
    Snapshot {
        members: members.to_vec(),
        leases: leases
            .iter()
            .map(|(s, l)| (Arc::from(*s), l.clone()))
            .collect(),
    }
}

fn held(pairs: &[(&str, Epoch)]) -> HashMap<Arc<str>, Epoch> {
    pairs.iter().map(|(s, e)| (Arc::from(*s), *e)).collect()
}

#[test]
fn weight_is_a_fixed_function_of_session_and_member() {
    // Pinned: instances built apart must rank members alike.
    assert_eq!(weight("sess_1", "a"), weight("sess_1", "a"));
    assert_ne!(weight("sess_1", "a"), weight("sess_1", "b"));
    assert_ne!(weight("ab", "c"), weight("a", "bc"), "the separator counts");
    assert_eq!(weight("sess_1", "a"), 0x4680_bfe1_7596_8ed2);
}

#[test]
fn a_single_member_claims_every_orphan_and_nothing_it_already_holds() {
    let mut p = Planner::new("a", P, 10);
    let s = snap(
        &[member("a")],
        &[("s1", lease("a", 3, None)), ("s2", lease("b", 1, Some(0)))],
    );
    let plan = p.step(
        Instant::now(),
        &s,
        &ids(&["s1", "s2", "s3"]),
        &held(&[("s1", 3)]),
    );
    assert_eq!(plan.claim, ids(&["s2", "s3"]));
    assert!(plan.release.is_empty() && plan.lost.is_empty(), "{plan:?}");
}

#[test]
fn held_sessions_whose_lease_expired_or_moved_are_lost() {
    let mut p = Planner::new("a", P, 10);
    let s = snap(
        &[member("a"), member("b")],
        &[
            ("expired", lease("a", 1, Some(1))),
            ("taken", lease("b", 2, None)),
            ("newer", lease("a", 5, None)),
            ("kept", lease("a", 1, None)),
        ],
    );
    let mine = held(&[
        ("expired", 1),
        ("taken", 1),
        ("newer", 4),
        ("kept", 1),
        ("gone", 1),
    ]);
    let sessions = ids(&["expired", "taken", "newer", "kept", "gone"]);
    let plan = p.step(Instant::now(), &s, &sessions, &mine);
    assert_eq!(plan.lost, ids(&["expired", "gone", "newer", "taken"]));
}

#[test]
fn a_held_session_no_longer_configured_is_released() {
    let mut p = Planner::new("a", P, 10);
    let s = snap(&[member("a")], &[("old", lease("a", 2, None))]);
    let plan = p.step(Instant::now(), &s, &ids(&["new"]), &held(&[("old", 2)]));
    assert_eq!(plan.release, vec![(Arc::from("old"), 2)]);
    assert_eq!(plan.claim, ids(&["new"]));
}

#[test]
fn our_own_lease_from_an_earlier_process_is_claimed_again() {
    // Restarted with a fixed instance_id: the table says "a", this process holds nothing.
    let mut p = Planner::new("a", P, 10);
    let s = snap(&[member("a")], &[("s1", lease("a", 7, None))]);
    let plan = p.step(Instant::now(), &s, &ids(&["s1"]), &HashMap::new());
    assert_eq!(
        plan.claim,
        ids(&["s1"]),
        "claimed anew, so with a new epoch"
    );
}

#[test]
fn a_valid_lease_of_a_member_gone_from_the_table_waits_for_its_expiry() {
    let s = snap(&[member("a")], &[("s1", lease("gone", 1, None))]);
    let plan = Planner::new("a", P, 10).step(Instant::now(), &s, &ids(&["s1"]), &HashMap::new());
    assert!(
        plan.claim.is_empty(),
        "the claim would be refused: {plan:?}"
    );
    let s = snap(&[member("a")], &[("s1", lease("gone", 1, Some(0)))]);
    let plan = Planner::new("a", P, 10).step(Instant::now(), &s, &ids(&["s1"]), &HashMap::new());
    assert_eq!(plan.claim, ids(&["s1"]));
}

#[test]
fn a_member_missing_from_the_live_list_plans_nothing() {
    let s = snap(&[member("b")], &[]);
    let plan = Planner::new("a", P, 10).step(Instant::now(), &s, &ids(&["s1"]), &HashMap::new());
    assert_eq!(plan, Plan::default());
}

#[test]
fn balance_releases_one_session_per_period_towards_the_underloaded() {
    let sessions: Vec<Arc<str>> = (0..6).map(|i| Arc::from(format!("s{i}"))).collect();
    let leases: Vec<(&str, Lease)> = sessions
        .iter()
        .map(|s| (&**s, lease("a", 1, None)))
        .collect();
    let s = snap(&[member("a"), member("b")], &leases);
    let mine: HashMap<Arc<str>, Epoch> = sessions.iter().map(|s| (s.clone(), 1)).collect();
    let mut p = Planner::new("a", P, 10);
    let t0 = Instant::now();
    let first = p.step(t0, &s, &sessions, &mine);
    assert_eq!(first.release.len(), 1, "{first:?}");
    let (gone, _) = &first.release[0];
    assert!(
        weight(gone, "b") > weight(gone, "a"),
        "it prefers a session that rendezvous gives to b"
    );
    assert!(p.step(t0 + P / 2, &s, &sessions, &mine).release.is_empty());
    assert_eq!(p.step(t0 + P, &s, &sessions, &mine).release.len(), 1);
}

#[test]
fn balanced_within_floor_and_ceil_releases_nothing() {
    // 5 sessions over 2: 3 and 2 is as even as it gets.
    let sessions = ids(&["s0", "s1", "s2", "s3", "s4"]);
    let owners = ["a", "a", "a", "b", "b"];
    let leases: Vec<(&str, Lease)> = sessions
        .iter()
        .zip(owners)
        .map(|(s, o)| (&**s, lease(o, 1, None)))
        .collect();
    let s = snap(&[member("a"), member("b")], &leases);
    let mine = held(&[("s0", 1), ("s1", 1), ("s2", 1)]);
    let plan = Planner::new("a", P, 10).step(Instant::now(), &s, &sessions, &mine);
    assert_eq!(plan, Plan::default());
}

#[test]
fn a_draining_member_claims_nothing_and_hands_over_in_batches() {
    let sessions = ids(&["s0", "s1", "s2", "s3", "s4"]);
    let mut leases: Vec<(&str, Lease)> = sessions
        .iter()
        .map(|s| (&**s, lease("a", 2, None)))
        .collect();
    leases[4].1.expired_for = Some(Duration::ZERO);
    let draining = Member {
        id: "a".into(),
        draining: true,
        digest: 0,
    };
    let s = snap(&[draining, member("b")], &leases);
    let mine = held(&[("s0", 2), ("s1", 2), ("s2", 2), ("s3", 2)]);
    let plan = Planner::new("a", P, 3).step(Instant::now(), &s, &sessions, &mine);
    assert!(plan.claim.is_empty(), "{plan:?}");
    assert_eq!(
        plan.release,
        vec![
            (Arc::from("s0"), 2),
            (Arc::from("s1"), 2),
            (Arc::from("s2"), 2)
        ]
    );
    // The others count the draining member out and take the orphan at once.
    let plan = Planner::new("b", P, 3).step(Instant::now(), &s, &sessions, &HashMap::new());
    assert_eq!(plan.claim, ids(&["s4"]));
    let ours: BTreeMap<Arc<str>, Epoch> = mine.into_iter().collect();
    assert_eq!(drain(&ours, 0).len(), 1, "a batch is at least one");
    assert_eq!(drain(&ours, 10).len(), 4);
}

#[test]
fn an_orphan_nobody_took_for_a_period_goes_to_another_member() {
    // Two members, one orphan: exactly one of them claims it now; once it is a period
    // stale (its first pick did not take it), the other one does.
    let sessions = ids(&["s1"]);
    let members = [member("a"), member("b")];
    let fresh = snap(&members, &[("s1", lease("x", 1, Some(0)))]);
    let stale = snap(&members, &[("s1", lease("x", 1, Some(10)))]);
    let claimers = |s: &Snapshot| -> Vec<&str> {
        ["a", "b"]
            .into_iter()
            .filter(|me| {
                let plan =
                    Planner::new(*me, P, 1).step(Instant::now(), s, &sessions, &HashMap::new());
                !plan.claim.is_empty()
            })
            .collect()
    };
    let first = claimers(&fresh);
    let second = claimers(&stale);
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
}

fn member_with(id: &str, digest: i64) -> Member {
    Member {
        digest,
        ..member(id)
    }
}

/// Who claims each of `sessions` when every member plans once on `s` over `pools(member)`.
fn claims_of<'a>(
    s: &Snapshot,
    members: &[&'a str],
    pools: impl Fn(&str) -> (Vec<Arc<str>>, Vec<Arc<str>>),
) -> BTreeMap<Arc<str>, Vec<&'a str>> {
    let mut by: BTreeMap<Arc<str>, Vec<&str>> = BTreeMap::new();
    for me in members {
        let (shared, configured) = pools(me);
        let pools = Pools {
            shared: &shared,
            configured: &configured,
        };
        let plan = Planner::new(*me, P, 10).plan(Instant::now(), s, pools, &HashMap::new());
        for c in plan.claim {
            by.entry(c).or_default().push(me);
        }
    }
    by
}

#[test]
fn a_configured_session_is_placed_only_on_members_whose_config_has_it() {
    // a and b share a config (digest 1), c has another (digest 2) without s0..s5.
    let s = snap(
        &[
            member_with("a", 1),
            member_with("b", 1),
            member_with("c", 2),
        ],
        &[],
    );
    let config = ids(&["s0", "s1", "s2", "s3", "s4", "s5"]);
    let by = claims_of(&s, &["a", "b", "c"], |me| {
        let configured = if me == "c" {
            Vec::new()
        } else {
            config.clone()
        };
        (Vec::new(), configured)
    });
    assert_eq!(by.len(), 6, "every session claimed: {by:?}");
    assert!(by.values().all(|who| who.len() == 1), "once each: {by:?}");
    let on = |m: &str| by.values().filter(|w| w.contains(&m)).count();
    assert_eq!((on("a"), on("b"), on("c")), (3, 3, 0), "{by:?}");
}

#[test]
fn a_stored_session_is_placed_on_any_member_whatever_its_config() {
    let s = snap(
        &[
            member_with("a", 1),
            member_with("b", 1),
            member_with("c", 2),
        ],
        &[],
    );
    let stored: Vec<Arc<str>> = (0..30).map(|i| Arc::from(format!("rt{i:02}"))).collect();
    let config = ids(&["s0", "s1"]);
    let by = claims_of(&s, &["a", "b", "c"], |me| {
        let configured = if me == "c" {
            Vec::new()
        } else {
            config.clone()
        };
        (stored.clone(), configured)
    });
    assert_eq!(by.len(), 32, "{by:?}");
    assert!(by.values().all(|who| who.len() == 1), "once each: {by:?}");
    let stored_on = |m: &str| {
        by.iter()
            .filter(|(s, w)| s.starts_with("rt") && w.contains(&m))
            .count()
    };
    assert_eq!(
        (stored_on("a"), stored_on("b"), stored_on("c")),
        (10, 10, 10),
        "the stored pool is spread over all three: {by:?}"
    );
}

#[test]
fn balance_never_hands_a_configured_session_to_a_member_without_it() {
    // a holds all four configured sessions; c (another config) holds nothing: a is over
    // its share of the whole cluster, but c could never claim what a released.
    let sessions = ids(&["s0", "s1", "s2", "s3"]);
    let leases: Vec<(&str, Lease)> = sessions
        .iter()
        .map(|s| (&**s, lease("a", 1, None)))
        .collect();
    let s = snap(&[member_with("a", 1), member_with("c", 2)], &leases);
    let mine: HashMap<Arc<str>, Epoch> = sessions.iter().map(|s| (s.clone(), 1)).collect();
    let pools = Pools {
        shared: &[],
        configured: &sessions,
    };
    let plan = Planner::new("a", P, 10).plan(Instant::now(), &s, pools, &mine);
    assert_eq!(plan, Plan::default());
    // The same four as stored sessions: balanced towards c.
    let pools = Pools {
        shared: &sessions,
        configured: &[],
    };
    let plan = Planner::new("a", P, 10).plan(Instant::now(), &s, pools, &mine);
    assert_eq!(plan.release.len(), 1, "{plan:?}");
}

#[test]
fn a_held_session_removed_from_both_pools_is_handed_over_and_one_in_both_counts_once() {
    let s = snap(
        &[member("a")],
        &[
            ("removed", lease("a", 3, None)),
            ("kept", lease("a", 1, None)),
        ],
    );
    let both = ids(&["kept", "new"]);
    let pools = Pools {
        shared: &both,
        configured: &both,
    };
    let plan = Planner::new("a", P, 10).plan(
        Instant::now(),
        &s,
        pools,
        &held(&[("removed", 3), ("kept", 1)]),
    );
    assert_eq!(plan.release, vec![(Arc::from("removed"), 3)]);
    assert_eq!(plan.claim, ids(&["new"]), "claimed once");
    assert!(plan.lost.is_empty());
}
