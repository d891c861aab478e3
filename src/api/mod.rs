//! Operator HTTP API (actix-web, JSON): sessions, pending prompts, answers, interrupt, send.
//!
//! Every route is in the route table ([`table::endpoints`]), which [`configure`] mounts
//! (`main` and the tests share it) and the OpenAPI document ([`openapi`]) is checked against.

pub mod access;
pub mod admin;
pub mod auth;
pub mod body_deadline;
mod bulk;
mod cluster;
pub mod cookie;
mod error;
mod fanout;
mod forward;
pub mod grant;
pub mod health;
mod ledger;
mod lookup;
pub mod openapi;
mod policy;
pub mod read;
mod routes;
mod stored;
pub mod stream;
pub mod table;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::{web, HttpRequest};

pub use auth::{identify, Admin, Approver, Authenticator, Principal, Viewer};
pub use error::ApiError;

use crate::events::EventBus;
use crate::registry::PermissionRegistry;
use crate::supervisor::Supervisor;

/// Handles the API needs; cloned into every worker.
#[derive(Clone)]
pub struct ApiState {
    /// The supervisor (session set).
    pub supervisor: Addr<Supervisor>,
    /// The permission registry.
    pub registry: Addr<PermissionRegistry>,
    /// The event bus.
    pub bus: EventBus,
    /// Operator token checks.
    pub auth: Arc<Authenticator>,
    /// `[api] request_body_timeout`, applied by [`body_deadline::limit_body_time`].
    pub request_body_timeout: Duration,
    /// What sessions added over the API may use as a token source.
    pub runtime_tokens: crate::config::RuntimeTokenRules,
    /// Heartbeat of event streams.
    pub stream_heartbeat: Duration,
    /// The policy (for side-effect-free evaluation); a reload replaces it.
    pub policy: Arc<crate::util::Swap<crate::policy::Policy>>,
    /// The decision ledger, when enabled.
    pub ledger: Option<crate::ledger::Ledger>,
    /// Process metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Largest JSON body accepted: room for an edited input as large as a prompt may be.
    pub max_body_bytes: usize,
    /// Caps on live event-stream readers (total and per token).
    pub streams: Arc<crate::limits::streams::StreamCaps>,
    /// Browsers signed in to the console (by cookie).
    pub console: Arc<cookie::ConsoleSessions>,
    /// `[console] public_url`'s origin, accepted as a console request's `Origin` beside
    /// the scheme and host the request was made to.
    pub public_origin: Option<String>,
    /// What start-up has done, for `/readyz`.
    pub started: Arc<health::StartFlags>,
    /// `/readyz`'s last checks, reused for a second: the route needs no token, so a
    /// caller must not make every request write a probe file and list every session.
    pub readiness: Arc<health::ReadyCache>,
    /// `[api] metrics_auth`: whether `/metrics` needs a viewer token.
    pub metrics_auth: crate::config::MetricsAuth,
    /// Whether the API itself serves TLS (`[api] tls_cert`): the console's cookie is then `Secure`.
    pub tls: bool,
    /// `POST /v1/admin/reload`'s reload; `None` when started without a config file.
    pub reloader: Option<Arc<dyn admin::Reload>>,
    /// The cluster's lease loop (`GET /v1/cluster`); `None` when not in a cluster.
    pub cluster: Option<crate::cluster::ClusterApi>,
    /// The dialog kinds this supervisor answers (`[ccr] supported_dialog_kinds`), for the
    /// answers it gives a removed session's prompts that no owner ended.
    pub dialog_kinds: Arc<[String]>,
    /// The TLS of requests forwarded to another instance (`https://` owners): trusting
    /// `[cluster] ca_file`'s CAs, or the public roots.
    pub forward_tls: Arc<rustls::ClientConfig>,
}

impl ApiState {
    /// The PostgreSQL ledger, when this instance is one of a cluster's (`None` with SQLite
    /// or no ledger).
    pub fn postgres(&self) -> Option<&crate::ledger::pg::PgLedger> {
        self.ledger.as_ref().and_then(|l| l.postgres())
    }
}

/// A request's path and query, as its request line has them.
fn path_and_query(req: &HttpRequest) -> &str {
    req.uri()
        .path_and_query()
        .map_or(req.path(), |p| p.as_str())
}

/// Register every route, the JSON error handlers and the JSON 404/405 fallbacks.
pub fn configure(state: ApiState) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        let json_cfg = web::JsonConfig::default()
            .limit(state.max_body_bytes)
            .error_handler(|err, _| body_deadline::json_error(err).into());
        let query_cfg = web::QueryConfig::default()
            .error_handler(|err, _| ApiError::InvalidQuery(err.to_string()).into());
        let path_cfg = web::PathConfig::default()
            .error_handler(|err, _| ApiError::InvalidQuery(err.to_string()).into());
        cfg.app_data(web::Data::new(state.clone()))
            .app_data(json_cfg)
            .app_data(query_cfg)
            .app_data(path_cfg)
            .configure(|cfg| table::mount(cfg, table::endpoints()))
            .default_service(web::to(not_found));
    }
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "{} {}",
        req.method(),
        req.path()
    )))
}

#[cfg(test)]
mod tests;
