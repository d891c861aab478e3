//! The SQL of `ccr_sessions` (migration 4): sessions added at run time, stored so that
//! every instance knows them, and configured sessions removed cluster-wide.
//!
//! A row with a `spec` is a session added with `POST /v1/sessions` (the body as stored
//! JSON: token references, never a secret). A row without one marks a configured session
//! removed with `DELETE`: every instance leaves it out until a reload that lists it
//! ([`restore_configured`]) or a `POST` of its id. `revision` grows at every change (a
//! sequence), so a round reads the specs of changed rows only. Each statement is one
//! commit; a trigger notifies [`SESSIONS_CHANNEL`](crate::cluster::SESSIONS_CHANNEL) in it.

use std::sync::Arc;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, GenericClient};

use crate::cluster::catalog::Listed;

/// Every row: its session, revision, and whether it marks a removal.
pub async fn list(client: &impl GenericClient) -> Result<Vec<Listed>, Error> {
    let rows = client
        .query(
            "SELECT session_id, revision, spec IS NULL FROM ccr_sessions ORDER BY session_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Listed {
            id: Arc::from(r.get::<_, &str>(0)),
            revision: r.get(1),
            removed: r.get(2),
        })
        .collect())
}

/// The stored specs of `ids` that have one: session, revision, JSON.
pub async fn specs(
    client: &impl GenericClient,
    ids: &[Arc<str>],
) -> Result<Vec<(Arc<str>, i64, String)>, Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = ids.iter().map(|s| &**s).collect();
    let rows = client
        .query(
            "SELECT session_id, revision, spec FROM ccr_sessions
             WHERE session_id = ANY($1) AND spec IS NOT NULL",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (Arc::from(r.get::<_, &str>(0)), r.get(1), r.get(2)))
        .collect())
}

/// Who asked for a change: the operator token's name, and the instance it asked.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The operator token's name.
    pub by: &'a str,
    /// This instance's id.
    pub on: &'a str,
}

/// Store session `id` with `spec` (its stored JSON). `false`: a session of that id is
/// stored already (a removed configured session's mark is replaced: added again).
pub async fn add(
    client: &impl GenericClient,
    id: &str,
    spec: &str,
    who: Who<'_>,
) -> Result<bool, Error> {
    let n = client
        .execute(
            "INSERT INTO ccr_sessions AS s (session_id, spec, added_by, added_on)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (session_id) DO UPDATE
             SET spec = EXCLUDED.spec, revision = nextval('ccr_sessions_revision'),
                 added_by = EXCLUDED.added_by, added_on = EXCLUDED.added_on, added_at = now(),
                 removed_by = NULL, removed_on = NULL, removed_at = NULL
             WHERE s.spec IS NULL",
            &[&id, &spec, &who.by, &who.on],
        )
        .await?;
    Ok(n == 1)
}

/// Remove session `id` cluster-wide. `configured_here`: it is in this instance's config,
/// so its row becomes a removal mark (the instances whose config lists it leave it out
/// too); otherwise its row is deleted. `None`: nothing to remove (no stored session of
/// that id, or already marked removed); else whether an instance held its lease as the
/// removal committed (that owner denies its pending prompts as it lets go).
pub async fn remove(
    client: &impl GenericClient,
    id: &str,
    configured_here: bool,
    who: Who<'_>,
) -> Result<Option<bool>, Error> {
    let (change, params): (&str, &[&(dyn ToSql + Sync)]) = if configured_here {
        (
            "INSERT INTO ccr_sessions AS s (session_id, spec, added_by, added_on,
                                            removed_by, removed_on, removed_at)
             VALUES ($1, NULL, $2, $3, $2, $3, now())
             ON CONFLICT (session_id) DO UPDATE
             SET spec = NULL, revision = nextval('ccr_sessions_revision'),
                 removed_by = EXCLUDED.removed_by, removed_on = EXCLUDED.removed_on,
                 removed_at = now()
             WHERE s.spec IS NOT NULL
             RETURNING 1",
            &[&id, &who.by, &who.on],
        )
    } else {
        (
            "DELETE FROM ccr_sessions WHERE session_id = $1 AND spec IS NOT NULL RETURNING 1",
            &[&id],
        )
    };
    let row = client
        .query_one(
            &format!(
                "WITH changed AS ({change})
                 SELECT EXISTS (SELECT 1 FROM changed),
                        EXISTS (SELECT 1 FROM ccr_leases
                                WHERE session_id = $1 AND expires_at > now())"
            ),
            params,
        )
        .await?;
    Ok(row.get::<_, bool>(0).then(|| row.get(1)))
}

/// A reload lists `ids` in its config: delete their removal marks, so that every instance
/// whose config has them runs them again. Returns how many marks were deleted.
pub async fn restore_configured(client: &impl GenericClient, ids: &[&str]) -> Result<u64, Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    client
        .execute(
            "DELETE FROM ccr_sessions WHERE spec IS NULL AND session_id = ANY($1)",
            &[&ids],
        )
        .await
}

#[cfg(test)]
mod tests;
