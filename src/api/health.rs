//! `/healthz` (no auth: the process is alive), `/readyz` and `/metrics` (viewer).

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use ccr_protocol::error::Code;
use ccr_protocol::reply::{Health, NotConnected, Readiness};

use super::auth::Viewer;
use super::table::{endpoint, Endpoint};
use super::{ApiError, ApiState};
use crate::config::Role;
use crate::metrics::Snapshot;
use crate::registry::ListPending;
use crate::supervisor::ListSessions;

/// The health and metrics routes.
pub fn endpoints() -> Vec<Endpoint> {
    let unavailable = &[Code::Unavailable];
    vec![
        endpoint(Method::GET, "/healthz", None, &[], healthz),
        endpoint(
            Method::GET,
            "/readyz",
            Some(Role::Viewer),
            unavailable,
            readyz,
        ),
        endpoint(
            Method::GET,
            "/metrics",
            Some(Role::Viewer),
            unavailable,
            metrics,
        ),
    ]
}

/// Liveness: the process answers (no token).
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the config is loaded, the API bound and the supervisor answers.
///
/// Lists the sessions that are not connected.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready", body = Readiness)))]
pub(super) async fn readyz(
    _who: Viewer,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let sessions = state
        .supervisor
        .send(ListSessions::default())
        .await
        .map_err(|e| ApiError::Unavailable(format!("supervisor: {e}")))?;
    let not_connected = sessions
        .iter()
        .filter(|s| s.status.state.name() != "connected")
        .map(|s| NotConnected {
            id: s.id.to_string(),
            state: s.status.state.name().to_owned(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(Readiness {
        ready: true,
        sessions: sessions.len(),
        not_connected,
    }))
}

/// Process and session metrics, OpenMetrics text (see operations.md).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "OpenMetrics text",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
pub(super) async fn metrics(
    _who: Viewer,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let sessions = state.supervisor.send(ListSessions::default()).await?;
    let pending = state
        .registry
        .send(ListPending {
            session_id: None,
            questions: false,
        })
        .await?;
    let snapshot = Snapshot {
        sessions_by_state: sessions
            .iter()
            .map(|s| s.status.state.name().to_owned())
            .collect(),
        prompts_pending: pending.len(),
        oldest_prompt_age_secs: pending.iter().map(|p| p.age_ms).max().unwrap_or(0) as f64 / 1000.0,
        stream_subscribers: state.bus.subscribers(),
        ledger_write_errors: state.ledger.as_ref().map_or(0, |l| l.write_errors()),
    };
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render(&snapshot)))
}
