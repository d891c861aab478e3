//! Admin routes: `POST /v1/admin/reload`, the same reload `SIGHUP` does.
//!
//! The reload itself lives above the API (`crate::reload`, which needs the app's pieces);
//! the API reaches it through the small [`Reload`] trait, set in [`super::ApiState`].

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use futures_util::future::LocalBoxFuture;

use super::auth::Admin;
use super::table::{endpoint, Endpoint};
use super::{ApiError, ApiState};
use ccr_protocol::api::ReloadBody;
use ccr_protocol::error::Code;
use ccr_protocol::reply::ReloadSummary;

/// Why a reload changed nothing, or not everything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadFailure {
    /// The file is invalid: every problem, each with its key path. Nothing changed.
    #[error("invalid configuration, nothing changed: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The service was started without a config file to read again.
    #[error("no config file to reload")]
    NoFile,
    /// Applying failed after the file was validated (the service is shutting down).
    #[error("{0}")]
    Apply(String),
}

impl From<ReloadFailure> for ApiError {
    fn from(e: ReloadFailure) -> Self {
        match e {
            ReloadFailure::Invalid(_) => ApiError::InvalidConfig(e.to_string()),
            ReloadFailure::NoFile | ReloadFailure::Apply(_) => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// Reads the config file again and applies it (`crate::reload::Reloader`).
pub trait Reload: Send + Sync {
    /// Reload now; `trigger` (`SIGHUP`, `api`) is named in the log line.
    fn reload(
        &self,
        trigger: &'static str,
    ) -> LocalBoxFuture<'_, Result<ReloadSummary, ReloadFailure>>;
}

/// The admin routes.
pub fn endpoints() -> Vec<Endpoint> {
    use crate::config::Role;
    use Code::*;
    vec![endpoint(
        Method::POST,
        "/v1/admin/reload",
        Some(Role::Admin),
        &[InvalidBody, InvalidConfig, RequestTimeout, Unavailable],
        reload,
    )]
}

/// Read the config file again and apply sessions, policy, operator tokens and
/// notification sinks at once, or nothing when the file is invalid.
///
/// The body is optional (empty or `{}`). The answer lists what changed, by name, and the
/// keys that changed but need a restart.
#[utoipa::path(post, path = "/v1/admin/reload", tag = "admin",
    request_body(content = Option<ReloadBody>, description = "Optional: empty or `{}`"),
    responses((status = 200, description = "Applied; what changed", body = ReloadSummary)))]
pub(super) async fn reload(
    _who: Admin,
    state: web::Data<ApiState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !body.iter().all(u8::is_ascii_whitespace) {
        let _: ReloadBody =
            serde_json::from_slice(&body).map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    }
    let reloader = state
        .reloader
        .as_ref()
        .ok_or_else(|| ApiError::from(ReloadFailure::NoFile))?;
    let summary = reloader.reload("api").await?;
    Ok(HttpResponse::Ok().json(summary))
}
