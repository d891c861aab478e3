//! The reads behind the viewer routes, as the public reply types: the routes answer them
//! as JSON and the console renders the very same values, so the two never disagree.

use crate::ledger::{LedgerError, LedgerQuery};
use crate::registry::{CountPending, ListPending, PolicyInfo, SessionTally};
use crate::supervisor::ListSessions;
use ccr_protocol::api::LedgerParams;
use ccr_protocol::policy::PolicyReport;
use ccr_protocol::reply::{LedgerPage, PendingPrompt, SessionBody, SessionView};
use ccr_protocol::session::SessionState;

use super::lookup::lookup;
use super::{ApiError, ApiState};

fn merge(mut view: SessionView, tally: Option<&SessionTally>) -> SessionBody {
    let t = tally.copied().unwrap_or_default();
    view.status.counters.prompts = t.prompts;
    view.status.counters.decisions = t.decisions;
    SessionBody {
        view,
        pending: t.pending,
        queued_decisions: t.queued,
        owner: None,
    }
}

/// Every session (or only `only`), with the registry's tallies (`GET /v1/sessions`). In a
/// cluster, each with its owner; a session run elsewhere in the state its owner announced
/// last, one held by nobody `disconnected`.
pub async fn sessions(
    state: &ApiState,
    only: Option<String>,
) -> Result<Vec<SessionBody>, ApiError> {
    let views = state
        .supervisor
        .send(ListSessions {
            only,
            elsewhere: true,
        })
        .await?;
    let tallies = state.registry.send(CountPending).await?;
    let mut bodies: Vec<SessionBody> = views
        .into_iter()
        .map(|v| {
            let t = tallies.get(&v.id);
            merge(v, t)
        })
        .collect();
    if let Some(pg) = state.postgres() {
        // Clustered: who owns each session, and the pending counts of those owned elsewhere.
        match pg.overview().await {
            Ok(overview) => {
                let me = pg.instance_id();
                for b in &mut bodies {
                    let (owner, pending) = overview.get(&*b.view.id).cloned().unwrap_or_default();
                    if owner.as_deref() != Some(me) {
                        b.pending = pending;
                        b.queued_decisions = 0;
                    }
                    if owner.is_none() {
                        // Held by nobody (its owner died, or it is between owners): whatever
                        // its last owner announced, nobody runs it now.
                        b.view.status.state = SessionState::Disconnected;
                    }
                    b.owner = Some(owner);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster's owners; listing this instance's view")
            }
        }
    }
    Ok(bodies)
}

/// Pending prompts (`questions: false`) or questions, of one session when `session_id`
/// names one (404 `unknown_session` for an unknown one).
pub async fn pending(
    state: &ApiState,
    session_id: Option<String>,
    questions: bool,
) -> Result<Vec<PendingPrompt>, ApiError> {
    if let Some(id) = &session_id {
        lookup(state, id).await?;
    }
    Ok(state
        .registry
        .send(ListPending {
            session_id,
            questions,
        })
        .await?)
}

/// A page of the decision ledger, newest first (`GET /v1/audit`).
pub async fn ledger_page(state: &ApiState, params: LedgerParams) -> Result<LedgerPage, ApiError> {
    let ledger = state
        .ledger
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("the decision ledger is disabled".into()))?;
    let query = LedgerQuery::try_from(params).map_err(|e| match e {
        LedgerError::BadQuery { param, message } => {
            ApiError::InvalidQuery(format!("{param}: {message}"))
        }
        other => ApiError::Unavailable(other.to_string()),
    })?;
    ledger
        .query(query)
        .await
        .map_err(|e| ApiError::Unavailable(format!("ledger: {e}")))
}

/// The rules, deadlines and hit counts (`GET /v1/policy`).
pub async fn policy(state: &ApiState) -> Result<PolicyReport, ApiError> {
    Ok(state.registry.send(PolicyInfo).await?)
}
