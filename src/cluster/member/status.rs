//! `GET /v1/cluster`'s body: the member and lease rows read in one transaction, shaped
//! into the wire type ([`shape`] is pure).

use std::time::Duration;

use ccr_protocol::reply::{ClusterLease, ClusterMemberStatus, ClusterStatus};
use tokio_postgres::Client;

use crate::cluster::store::{self, LeaseRow, MemberRow};

/// Members shown are those heard from within this many lease periods: a member that just
/// died stays visible a little while, with its heartbeat age growing.
pub(super) const SHOWN_PERIODS: u32 = 3;

/// Read the members and leases (one snapshot) and shape them for `me`.
pub(super) async fn read(
    client: &mut Client,
    me: &str,
    period: Duration,
) -> Result<ClusterStatus, tokio_postgres::Error> {
    let (members, leases) = store::rows(client, period * SHOWN_PERIODS).await?;
    Ok(shape(me, &members, &leases))
}

/// The body for `me`: each member with the valid leases it holds, both by id.
pub(super) fn shape(me: &str, members: &[MemberRow], leases: &[LeaseRow]) -> ClusterStatus {
    let mut out: Vec<ClusterMemberStatus> = members
        .iter()
        .map(|m| ClusterMemberStatus {
            instance_id: m.instance_id.clone(),
            advertise_url: m.advertise_url.clone(),
            heartbeat_age_ms: millis(m.heartbeat_age),
            draining: m.draining,
            sessions: leases
                .iter()
                .filter(|l| l.owner == m.instance_id && l.expired_for.is_none())
                .map(|l| ClusterLease {
                    session_id: l.session_id.to_string(),
                    epoch: l.epoch,
                    lease_age_ms: millis(l.held_for),
                })
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    for m in &mut out {
        m.sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
    }
    ClusterStatus {
        instance_id: me.to_owned(),
        members: out,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn member(id: &str, age_ms: u64) -> MemberRow {
        MemberRow {
            instance_id: id.into(),
            advertise_url: Some(format!("http://{id}:8700")),
            draining: id == "b",
            up_for: Duration::from_secs(60),
            heartbeat_age: Duration::from_millis(age_ms),
            digest: 0,
        }
    }

    fn lease(s: &str, owner: &str, expired: bool) -> LeaseRow {
        LeaseRow {
            session_id: Arc::from(s),
            owner: owner.into(),
            epoch: 7,
            expired_for: expired.then(|| Duration::from_secs(1)),
            held_for: Duration::from_millis(1500),
        }
    }

    #[test]
    fn each_member_lists_its_valid_leases_by_id() {
        let members = [member("b", 20), member("a", 10)];
        let leases = [
            lease("s2", "a", false),
            lease("s1", "a", false),
            lease("s3", "a", true),
            lease("s4", "gone", false),
        ];
        let st = shape("a", &members, &leases);
        assert_eq!(st.instance_id, "a");
        let ids: Vec<_> = st.members.iter().map(|m| m.instance_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let a = &st.members[0];
        assert_eq!(a.heartbeat_age_ms, 10);
        assert_eq!(a.advertise_url.as_deref(), Some("http://a:8700"));
        let held: Vec<_> = a.sessions.iter().map(|l| l.session_id.as_str()).collect();
        assert_eq!(held, ["s1", "s2"], "not the expired s3");
        assert_eq!(a.sessions[0].lease_age_ms, 1500);
        assert_eq!(a.sessions[0].epoch, 7);
        assert!(st.members[1].draining && st.members[1].sessions.is_empty());
    }
}
