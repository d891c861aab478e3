//! `POST /v1/sessions` and `DELETE /v1/sessions/{id}` in a cluster: the session set is the
//! cluster's, stored in PostgreSQL (`ccr_sessions`), so an addition or a removal is a
//! committed row that every instance's lease loop reads (told at once by `NOTIFY`), not a
//! change to this instance's supervisor alone. Codes are a single instance's: 409
//! `session_exists`, 404 `unknown_session`, 503 `unavailable` when the database does not
//! answer.

use std::time::{Duration, Instant, SystemTime};

use ccr_protocol::reply::{SessionBody, SessionView};

use super::lookup::lookup;
use super::{ApiError, ApiState};
use crate::cluster::ClusterApi;
use crate::config::SessionSpec;
use crate::ledger::LedgerError;
use crate::registry::store::removal;
use crate::session::{SessionState, SessionStatus};
use ccr_protocol::PermissionPrompt;

/// How long a removal waits for the session's owner to hand it over (a single instance's
/// `DELETE` waits as long for the session to close), or a lease period and
/// [`REMOVE_SLACK`] if that is longer (its owner died: its lease runs out).
const REMOVE_WAIT: Duration = Duration::from_secs(10);
/// See [`REMOVE_WAIT`].
const REMOVE_SLACK: Duration = Duration::from_secs(1);
/// How long, once its owner let go, its prompts may take to show answered before the
/// removing instance answers them itself (its owner died instead of letting go).
const CANCEL_WAIT: Duration = Duration::from_secs(2);
/// How often the owner (then the prompts) is looked up meanwhile.
const REMOVE_POLL: Duration = Duration::from_millis(50);

fn unavailable(e: String) -> ApiError {
    ApiError::Unavailable(format!("the cluster's database: {e}"))
}

/// Store `spec` for the cluster (added by operator `by`); answered once committed and this
/// instance lists it. 409 when this instance knows a session of its id (configured here,
/// or stored) or the table stores one.
pub(super) async fn add(
    state: &ApiState,
    cluster: &ClusterApi,
    spec: &SessionSpec,
    by: &str,
) -> Result<(), ApiError> {
    let id = spec.id.to_string();
    if lookup(state, &id).await.is_ok() {
        return Err(ApiError::SessionExists(id));
    }
    if !cluster.add_session(spec, by).await.map_err(unavailable)? {
        return Err(ApiError::SessionExists(id));
    }
    Ok(())
}

/// The body of a session added to the cluster that this instance does not list yet (its
/// lease loop did not read it back in time): as it will list it, not running here.
pub(super) fn not_yet_listed(spec: &SessionSpec) -> SessionBody {
    SessionBody {
        view: SessionView {
            id: spec.id.clone(),
            labels: spec.labels.clone(),
            viewer_only: spec.viewer_only,
            incarnation: 0,
            status: SessionStatus {
                state: SessionState::Disconnected,
                ..SessionStatus::initial()
            },
        },
        pending: 0,
        queued_decisions: 0,
        owner: Some(None),
    }
}

/// Remove session `id` from the cluster (by operator `by`), then wait (see
/// [`REMOVE_WAIT`]) until no instance holds its lease: its owner, told by `NOTIFY`, has
/// denied its pending prompts (`session_removed`), handed the lease over and closed it
/// with 1000. When no instance held it, its undecided prompts are denied here.
pub(super) async fn remove(
    state: &ApiState,
    cluster: &ClusterApi,
    id: &str,
    by: &str,
) -> Result<(), ApiError> {
    let Some(held) = cluster.remove_session(id, by).await.map_err(unavailable)? else {
        return Err(ApiError::UnknownSession(id.to_owned()));
    };
    let Some(ledger) = &state.ledger else {
        return Ok(());
    };
    let Some(pg) = ledger.postgres() else {
        return Ok(());
    };
    // A dead owner's lease runs out within a lease period: then the prompts it held are
    // denied below.
    let wait = REMOVE_WAIT.max(cluster.lease_period() + REMOVE_SLACK);
    let deadline = Instant::now() + wait;
    loop {
        match pg.owner_of(id).await {
            Ok(None) => break,
            Ok(Some(_)) if Instant::now() < deadline => {}
            Ok(Some((owner, _))) => {
                // Removed all the same: its owner closes it when it hears.
                tracing::warn!(session_id = %id, %owner, "removed; its owner did not close it within {wait:?}");
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(session_id = %id, error = %e, "removed; cannot see whether its owner closed it");
                return Ok(());
            }
        }
        tokio::time::sleep(REMOVE_POLL).await;
    }
    // Its owner, if alive, denies what it held (every unfinished prompt of the session,
    // adopted with the lease) as it lets go; what is still undecided a moment later, or
    // when no instance held it, had no owner to do so (it had just died): denied here,
    // as its owner would have (the first decision recorded wins).
    let settle = Instant::now() + if held { CANCEL_WAIT } else { Duration::ZERO };
    let pending = loop {
        match pg.pending(Some(id)).await {
            Ok(rows) if rows.is_empty() => return Ok(()),
            Ok(_) if Instant::now() < settle => {}
            Ok(rows) => break rows,
            Err(e) => {
                tracing::warn!(session_id = %id, error = %e, "removed; cannot read its pending prompts to answer them");
                return Ok(());
            }
        }
        tokio::time::sleep(REMOVE_POLL).await;
    };
    for (row, _) in pending {
        // Answered as its owner would have (`Core::forget_session`): the session may still
        // wait on it, and gets that answer if it is added back and replays it.
        let prompt = PermissionPrompt {
            raw: None,
            request_id: row.request_id,
            tool_name: row.tool_name,
            tool_use_id: row.tool_use_id,
            input: row.input,
            request: row.request,
        };
        let (_, ending) = removal(id, &prompt, &state.dialog_kinds, SystemTime::now());
        match ledger.record_decision(ending).await {
            Ok(()) | Err(LedgerError::AlreadyDecided { .. }) => {}
            Err(e) => {
                tracing::warn!(session_id = %id, error = %e, "removed; cannot answer one of its pending prompts")
            }
        }
    }
    Ok(())
}
