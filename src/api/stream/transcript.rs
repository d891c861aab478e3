//! `GET /v1/sessions/{id}/messages`: pages of a session's event history. In a cluster,
//! the history is its owner's: asked of another instance, the request is forwarded there.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::auth::Viewer;
use crate::api::forward;
use crate::api::lookup::lookup;
use crate::api::{ApiError, ApiState};
use ccr_protocol::api::PageQuery;
use ccr_protocol::reply::TranscriptPage;

/// A page of the session's event history (its transcript), oldest first.
#[utoipa::path(get, path = "/v1/sessions/{id}/messages", tag = "events",
    params(("id" = String, Path, description = "Session id"), PageQuery),
    responses((status = 200, description = "One page", body = TranscriptPage)))]
pub async fn transcript(
    who: Viewer,
    state: web::Data<ApiState>,
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    lookup(&state, &id).await?;
    match forward::to_owner(&state, &req, &who.0, &id, web::Bytes::new()).await {
        Ok(Some(owners)) => return Ok(owners),
        // Held by nobody right now: this instance's history is what there is.
        Ok(None) | Err(ApiError::NotConnected(_)) => {}
        Err(e) => return Err(e),
    }
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::InvalidQuery("limit must be 1..=1000".into()));
    }
    let after = query.after.unwrap_or(0);
    let page = state.bus.page(&id, after, limit);
    let next_after = page.events.last().map_or(after, |e| e.seq);
    // Events are already JSON: splice them in instead of re-serializing.
    let mut body = String::from("{\"session_id\":");
    body.push_str(&serde_json::to_string(&id).unwrap_or_default());
    body.push_str(",\"messages\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.extend(e.json_parts().pieces());
    }
    body.push_str(&format!(
        "],\"next_after\":{next_after},\"lagged_from\":{}}}",
        page.lagged_from
            .map_or("null".to_owned(), |s| s.to_string())
    ));
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}
