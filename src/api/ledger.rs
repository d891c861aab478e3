//! Decision ledger route: `GET /v1/audit` (the path keeps its name; the module is the ledger's).

use actix_web::{web, HttpResponse};

use super::auth::Viewer;
use super::{read, ApiError, ApiState};
use ccr_protocol::api::LedgerParams;

/// `GET /v1/audit?session_id=&tool=&outcome=&decided_by=&since=&until=&limit=&cursor=`:
/// a page of the decision ledger, newest first.
pub async fn query(
    _who: Viewer,
    state: web::Data<ApiState>,
    params: web::Query<LedgerParams>,
) -> Result<HttpResponse, ApiError> {
    let page = read::ledger_page(&state, params.into_inner()).await?;
    Ok(HttpResponse::Ok().json(page))
}
