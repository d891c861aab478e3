//! Cluster route: `GET /v1/cluster`, the members sharing the sessions and the leases each
//! holds (404 `cluster_off` on an instance that is not in a cluster).

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use ccr_protocol::error::Code;
use ccr_protocol::reply::ClusterStatus;

use super::auth::Viewer;
use super::table::{endpoint, Endpoint};
use super::{ApiError, ApiState};
use crate::config::Role;

/// The cluster's routes.
pub fn endpoints() -> Vec<Endpoint> {
    vec![endpoint(
        Method::GET,
        "/v1/cluster",
        Some(Role::Viewer),
        &[Code::ClusterOff, Code::Unavailable],
        status,
    )]
}

/// The live members (heard from within three lease periods), each with the sessions whose
/// lease it holds, as the shared database shows them.
#[utoipa::path(get, path = "/v1/cluster", tag = "cluster",
    responses((status = 200, description = "The members, by id, and their leases", body = ClusterStatus)))]
pub async fn status(_who: Viewer, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let cluster = state.cluster.as_ref().ok_or(ApiError::ClusterOff)?;
    let body = cluster
        .status()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the cluster's database: {e}")))?;
    Ok(HttpResponse::Ok().json(body))
}
