//! `ctl cluster`: the members of the cluster (`GET /v1/cluster`), their session counts and
//! lease ages, as a table (pure).

use ccr_protocol::reply::{ClusterMemberStatus, ClusterStatus};

use super::render::{age, dash, rendered, table};

/// The `cluster` table: one member a line, by id; the one that answered marked `(this)`.
pub fn cluster_table(body: &ClusterStatus) -> String {
    if body.members.is_empty() {
        return format!(
            "no live members (this instance, {}, has not been heard from yet)",
            body.instance_id
        );
    }
    let mut t = table(&[
        "INSTANCE",
        "SESSIONS",
        "LEASE AGES",
        "HEARTBEAT",
        "STATE",
        "ADVERTISE URL",
    ]);
    for m in &body.members {
        let mut id = m.instance_id.clone();
        if m.instance_id == body.instance_id {
            id.push_str(" (this)");
        }
        t.add_row(vec![
            id,
            m.sessions.len().to_string(),
            lease_ages(m),
            format!("{} ago", age(m.heartbeat_age_ms)),
            if m.draining { "draining" } else { "active" }.to_owned(),
            dash(m.advertise_url.as_deref()),
        ]);
    }
    let held: usize = body.members.iter().map(|m| m.sessions.len()).sum();
    let members = body.members.len();
    let plural = if members == 1 { "" } else { "s" };
    format!(
        "{}\n{members} member{plural}, {held} sessions held",
        rendered(t)
    )
}

/// `newest..oldest` of a member's leases (one age when they agree, `-` with none).
fn lease_ages(m: &ClusterMemberStatus) -> String {
    let ages = m.sessions.iter().map(|l| l.lease_age_ms);
    match (ages.clone().min(), ages.max()) {
        (Some(lo), Some(hi)) if age(lo) == age(hi) => age(lo),
        (Some(lo), Some(hi)) => format!("{}..{}", age(lo), age(hi)),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests;
