//! Decision ledger route: `GET /v1/audit` (the path keeps its name; the module is the ledger's).

use actix_web::{web, HttpResponse};

use super::auth::Viewer;
use super::{read, ApiError, ApiState};
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
    let page = read::ledger_page(&state, params.into_inner()).await?;
    Ok(HttpResponse::Ok().json(page))
}
