//! Decision ledger route: `GET /v1/audit` (the path keeps its name; the module is the ledger's).

use actix_web::{web, HttpResponse};

use super::auth::Viewer;
use super::{ApiError, ApiState};
use crate::ledger::{LedgerError, LedgerQuery};
use ccr_protocol::api::LedgerParams;
use ccr_protocol::reply::LedgerPage;

/// A page of the decision ledger, newest first (unknown parameters are ignored).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(LedgerParams),
    responses((status = 200, description = "One page; `next_cursor` for the next", body = LedgerPage)))]
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
