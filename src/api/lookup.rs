//! What several handler modules share: finding the session a path or query names.
//! Handler modules import this, never each other.

use super::{ApiError, ApiState};
use crate::supervisor::{LookupSession, SessionRef};

/// The session `id`, or 404 `unknown_session`.
pub(super) async fn lookup(state: &ApiState, id: &str) -> Result<SessionRef, ApiError> {
    state
        .supervisor
        .send(LookupSession(id.to_owned()))
        .await?
        .ok_or_else(|| ApiError::UnknownSession(id.to_owned()))
}
