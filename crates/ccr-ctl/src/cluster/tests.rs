//! The `cluster` table from `GET /v1/cluster` bodies.

use ccr_protocol::reply::{ClusterLease, ClusterMemberStatus, ClusterStatus};

use super::*;

fn lease(id: &str, age_ms: u64) -> ClusterLease {
    ClusterLease {
        session_id: id.into(),
        epoch: 1,
        lease_age_ms: age_ms,
    }
}

fn member(id: &str, draining: bool, sessions: Vec<ClusterLease>) -> ClusterMemberStatus {
    ClusterMemberStatus {
        instance_id: id.into(),
        advertise_url: (id != "c").then(|| format!("http://{id}:8700/")),
        heartbeat_age_ms: 1200,
        draining,
        sessions,
    }
}

#[test]
fn one_line_per_member_with_counts_and_lease_ages() {
    let body = ClusterStatus {
        instance_id: "b".into(),
        members: vec![
            member("a", false, vec![lease("s1", 2_000), lease("s2", 185_000)]),
            member("b", false, vec![lease("s3", 500)]),
            member("c", true, vec![]),
        ],
    };
    let want = "\
INSTANCE  SESSIONS  LEASE AGES  HEARTBEAT  STATE     ADVERTISE URL
a         2         2s..3m05s   1s ago     active    http://a:8700/
b (this)  1         500ms       1s ago     active    http://b:8700/
c         0         -           1s ago     draining  -
3 members, 3 sessions held";
    assert_eq!(cluster_table(&body), want);
}

#[test]
fn no_members_yet_says_so() {
    let body = ClusterStatus {
        instance_id: "a".into(),
        members: vec![],
    };
    assert_eq!(
        cluster_table(&body),
        "no live members (this instance, a, has not been heard from yet)"
    );
}

#[test]
fn the_wire_shape_is_the_documented_one() {
    let body = ClusterStatus {
        instance_id: "a".into(),
        members: vec![member("a", false, vec![lease("s1", 5)])],
    };
    let v = serde_json::to_value(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"instance_id": "a", "members": [{
            "instance_id": "a", "advertise_url": "http://a:8700/", "heartbeat_age_ms": 1200,
            "draining": false, "sessions": [{"session_id": "s1", "epoch": 1, "lease_age_ms": 5}]
        }]})
    );
}
