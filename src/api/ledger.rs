//! Decision ledger route: `GET /v1/audit` (the path keeps its name; the module is the ledger's).

use actix_web::{web, HttpResponse};

use super::auth::Viewer;
use super::{ApiError, ApiState};
use crate::ledger::{LedgerError, LedgerQuery};
use ccr_protocol::api::LedgerParams;

/// `GET /v1/audit?session_id=&tool=&outcome=&decided_by=&since=&until=&limit=&cursor=`:
/// a page of the decision ledger, newest first.
pub async fn query(
    _who: Viewer,
    state: web::Data<ApiState>,
    params: web::Query<LedgerParams>,
) -> Result<HttpResponse, ApiError> {
    let ledger = state
        .ledger
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("the decision ledger is disabled".into()))?;
    let query = LedgerQuery::try_from(params.into_inner()).map_err(|e| match e {
        LedgerError::BadQuery { param, message } => {
            ApiError::InvalidQuery(format!("{param}: {message}"))
        }
        other => ApiError::Unavailable(other.to_string()),
    })?;
    let page = ledger
        .query(query)
        .await
        .map_err(|e| ApiError::Unavailable(format!("ledger: {e}")))?;
    Ok(HttpResponse::Ok().json(page))
}
