//! The SQL of cluster members and session leases (PostgreSQL, `tokio_postgres`).
//!
//! Every expiry is decided by the database's clock (`now()`), never a local one: the
//! instances' clocks may disagree, and a paused process cannot tell how long it slept.
//! Each operation is one statement, so it is atomic without a transaction of its own.
//!
//! A lease is a row `(session_id, owner, epoch, expires_at)`. [`claim`] takes it when it
//! is absent, expired or already ours, and always with a new epoch; [`renew`] extends
//! only leases still ours at the epoch we hold; [`release`] expires one at once so
//! another instance can claim it without waiting. A write made on behalf of a session
//! is conditional on [`fence`], so an owner that lost its lease (paused, partitioned)
//! cannot record anything for the session afterwards.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error, GenericClient, IsolationLevel, Transaction};

// The tables are created by the service's migrations (`ledger::pg::schema`, versions 2 and 4).

pub mod sessions;

use super::catalog::{Catalog, Listed};
use super::plan::{Epoch, Lease, Member, Snapshot};

/// One row of `ccr_members`, with its ages told by the database's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    /// Its `[cluster] instance_id`.
    pub instance_id: String,
    /// Its `[cluster] advertise_url`, if set.
    pub advertise_url: Option<String>,
    /// Handing its sessions over before exit.
    pub draining: bool,
    /// Since its first heartbeat.
    pub up_for: Duration,
    /// Since its last heartbeat.
    pub heartbeat_age: Duration,
    /// The digest of its configured sessions ([`crate::cluster::catalog::digest`]).
    pub digest: i64,
}

/// One row of `ccr_leases`, with its times told by the database's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRow {
    /// The session it is for.
    pub session_id: Arc<str>,
    /// The instance that holds (or last held) it.
    pub owner: String,
    /// Its fencing epoch.
    pub epoch: Epoch,
    /// `None` while it holds; how long ago it expired once it has.
    pub expired_for: Option<Duration>,
    /// How long its current owner has held it (since its claim).
    pub held_for: Duration,
}

impl From<&MemberRow> for Member {
    fn from(row: &MemberRow) -> Self {
        Member {
            id: row.instance_id.clone(),
            draining: row.draining,
            digest: row.digest,
        }
    }
}

impl From<&LeaseRow> for Lease {
    fn from(row: &LeaseRow) -> Self {
        Lease {
            owner: row.owner.clone(),
            epoch: row.epoch,
            expired_for: row.expired_for,
        }
    }
}

/// Say this instance is alive (and whether it is draining, and the `digest` of its
/// configured sessions); the first call records when it started. Returns nothing:
/// liveness is read back by [`members`].
pub async fn heartbeat(
    client: &impl GenericClient,
    me: &str,
    advertise_url: Option<&str>,
    draining: bool,
    digest: i64,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO ccr_members (instance_id, advertise_url, started_at, heartbeat_at, draining,
                                      sessions_digest)
             VALUES ($1, $2, now(), now(), $3, $4)
             ON CONFLICT (instance_id) DO UPDATE
             SET advertise_url = EXCLUDED.advertise_url, heartbeat_at = now(),
                 draining = EXCLUDED.draining, sessions_digest = EXCLUDED.sessions_digest",
            &[&me, &advertise_url, &draining, &digest],
        )
        .await
        .map(drop)
}

/// Remove this instance's member row (graceful exit, after its leases are released), so the
/// others count it out at once instead of after `live_within`.
pub async fn leave(client: &impl GenericClient, me: &str) -> Result<(), Error> {
    client
        .execute("DELETE FROM ccr_members WHERE instance_id = $1", &[&me])
        .await
        .map(drop)
}

/// Members whose last heartbeat is less than `live_within` old, by id.
pub async fn members(
    client: &impl GenericClient,
    live_within: Duration,
) -> Result<Vec<MemberRow>, Error> {
    let rows = client
        .query(
            "SELECT instance_id, advertise_url, draining,
                    (EXTRACT(EPOCH FROM now() - started_at) * 1000)::bigint,
                    (EXTRACT(EPOCH FROM now() - heartbeat_at) * 1000)::bigint,
                    sessions_digest
             FROM ccr_members
             WHERE heartbeat_at > now() - make_interval(secs => $1)
             ORDER BY instance_id",
            &[&live_within.as_secs_f64()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| MemberRow {
            instance_id: r.get(0),
            advertise_url: r.get(1),
            draining: r.get(2),
            up_for: millis(r.get(3)),
            heartbeat_age: millis(r.get(4)),
            digest: r.get(5),
        })
        .collect())
}

/// Every lease row, by session id.
pub async fn leases(client: &impl GenericClient) -> Result<Vec<LeaseRow>, Error> {
    let rows = client
        .query(
            "SELECT session_id, owner, epoch,
                    (EXTRACT(EPOCH FROM now() - expires_at) * 1000)::bigint,
                    expires_at <= now(),
                    (EXTRACT(EPOCH FROM now() - acquired_at) * 1000)::bigint
             FROM ccr_leases ORDER BY session_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LeaseRow {
            session_id: Arc::from(r.get::<_, &str>(0)),
            owner: r.get(1),
            epoch: r.get(2),
            expired_for: r.get::<_, bool>(4).then(|| millis(r.get(3))),
            held_for: millis(r.get(5)),
        })
        .collect())
}

/// The members heard from within `live_within` and every lease row, read in one
/// repeatable-read transaction (one `now()` for both).
pub async fn rows(
    client: &mut Client,
    live_within: Duration,
) -> Result<(Vec<MemberRow>, Vec<LeaseRow>), Error> {
    let tx = snapshot_transaction(client).await?;
    let members = members(&tx, live_within).await?;
    let leases = leases(&tx).await?;
    tx.commit().await?;
    Ok((members, leases))
}

/// A read-only repeatable-read transaction: every statement in it sees one snapshot, and
/// one `now()`.
async fn snapshot_transaction(client: &mut Client) -> Result<Transaction<'_>, Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

/// Members and leases as [`rows`] reads them: what
/// [`Planner::step`](super::plan::Planner::step) plans on.
pub async fn snapshot(client: &mut Client, live_within: Duration) -> Result<Snapshot, Error> {
    let (members, leases) = rows(client, live_within).await?;
    Ok(shape(&members, &leases))
}

fn shape(members: &[MemberRow], leases: &[LeaseRow]) -> Snapshot {
    Snapshot {
        members: members.iter().map(Member::from).collect(),
        leases: leases
            .iter()
            .map(|l| (l.session_id.clone(), Lease::from(l)))
            .collect(),
    }
}

/// What a round reads, in one repeatable-read transaction: the [`snapshot`], the rows of
/// `ccr_sessions` listed, and the specs of those `catalog` has not read at their revision.
/// One transaction, so that a session released because it was removed is never seen
/// released but not removed.
pub async fn round(
    client: &mut Client,
    live_within: Duration,
    catalog: &Catalog,
) -> Result<RoundRead, Error> {
    let tx = snapshot_transaction(client).await?;
    let members = members(&tx, live_within).await?;
    let leases = leases(&tx).await?;
    let listed = sessions::list(&tx).await?;
    let to_read = catalog.to_read(&listed);
    let specs = sessions::specs(&tx, &to_read).await?;
    tx.commit().await?;
    Ok(RoundRead {
        snapshot: shape(&members, &leases),
        listed,
        specs,
    })
}

/// What [`round`] read.
#[derive(Debug, Clone, Default)]
pub struct RoundRead {
    /// Members and leases.
    pub snapshot: Snapshot,
    /// Every row of `ccr_sessions`.
    pub listed: Vec<Listed>,
    /// The specs read: session, revision, stored JSON.
    pub specs: Vec<(Arc<str>, i64, String)>,
}

/// Claim `session` for `me` for `period`: taken if it has no lease, or its lease expired,
/// or it is already ours; then with a new epoch, which is returned. `None`: another
/// instance holds it. Concurrent claims of one session get one epoch between them.
pub async fn claim(
    client: &impl GenericClient,
    session: &str,
    me: &str,
    period: Duration,
) -> Result<Option<Epoch>, Error> {
    let row = client
        .query_opt(
            crate::ledger::pg::fence::CLAIM_LEASE,
            &[&session, &me, &period.as_secs_f64()],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Extend by `period` those of `held` (session, epoch) that are still ours at that epoch;
/// returns the sessions renewed. The others are lost: close them.
///
/// An expired lease is renewed too while its epoch is unchanged (the database was out of
/// reach past the expiry, and nobody claimed the session meanwhile): only a claim changes
/// the epoch, so nobody else held it, and whatever a claim of it now would race is decided
/// by the row lock, one way or the other.
pub async fn renew(
    client: &impl GenericClient,
    me: &str,
    held: &[(Arc<str>, Epoch)],
    period: Duration,
) -> Result<Vec<Arc<str>>, Error> {
    let sessions: Vec<&str> = held.iter().map(|(s, _)| &**s).collect();
    let epochs: Vec<Epoch> = held.iter().map(|(_, e)| *e).collect();
    let rows = client
        .query(
            crate::ledger::pg::fence::RENEW_LEASES,
            &[&me, &period.as_secs_f64(), &sessions, &epochs],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Arc::from(r.get::<_, &str>(0)))
        .collect())
}

/// Hand `session` over: expire our lease at `epoch` now, so another instance claims it at
/// once. `false`: it was no longer ours (then nothing changed).
pub async fn release(
    client: &impl GenericClient,
    me: &str,
    session: &str,
    epoch: Epoch,
) -> Result<bool, Error> {
    let n = client
        .execute(
            "UPDATE ccr_leases SET expires_at = now()
             WHERE session_id = $1 AND owner = $2 AND epoch = $3 AND expires_at > now()",
            &[&session, &me, &epoch],
        )
        .await?;
    Ok(n == 1)
}

/// A lease held by this instance, as a write's condition: see [`Fence::condition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence<'a> {
    /// The session the write is for.
    pub session: &'a str,
    /// This instance's id.
    pub owner: &'a str,
    /// The epoch its claim returned.
    pub epoch: Epoch,
}

impl<'a> Fence<'a> {
    /// The SQL condition that holds only while the lease is ours at this epoch, with its
    /// values as parameters `$first`, `$first + 1` and `$first + 2` (see [`Fence::params`]);
    /// the ledger's ([`crate::ledger::pg::fence::condition`]), which locks the lease row.
    ///
    /// `INSERT INTO t (session_id, v) SELECT $1, $2 WHERE {Fence::condition(3)}`
    pub fn condition(first: usize) -> String {
        crate::ledger::pg::fence::condition(first)
    }

    /// The values of [`Fence::condition`]'s parameters, in order.
    pub fn params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.session, &self.owner, &self.epoch]
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0).unsigned_abs())
}

#[cfg(test)]
mod tests;
