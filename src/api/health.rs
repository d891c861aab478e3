//! `/healthz` (no auth: the process is alive), `/readyz` and `/metrics` (viewer).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::auth::Viewer;
use super::{ApiError, ApiState};
use crate::metrics::Snapshot;
use crate::registry::ListPending;
use crate::supervisor::ListSessions;

/// Mount the health and metrics routes.
pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready once config is loaded, the API is bound (we are answering) and the
/// supervisor answers; lists the sessions that are not connected.
async fn readyz(_who: Viewer, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let sessions = state
        .supervisor
        .send(ListSessions::default())
        .await
        .map_err(|e| ApiError::Unavailable(format!("supervisor: {e}")))?;
    let not_connected: Vec<_> = sessions
        .iter()
        .filter(|s| s.status.state.name() != "connected")
        .map(|s| json!({"id": s.id, "state": s.status.state.name()}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "ready": true,
        "sessions": sessions.len(),
        "not_connected": not_connected,
    })))
}

async fn metrics(_who: Viewer, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
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
