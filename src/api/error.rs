//! The one API error type: an HTTP status plus a stable machine-readable code.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use ccr_protocol::error::{Code, ErrorBody};

use crate::registry::DecideError;
use crate::session::SessionError;

/// Every error the operator API returns, as `{"error":{"code":..,"message":..}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the JSON body is malformed or invalid.
    #[error("{0}")]
    InvalidBody(String),
    /// 400: a query parameter is invalid.
    #[error("{0}")]
    InvalidQuery(String),
    /// 400: the config file a reload read is invalid (every problem); nothing changed.
    #[error("{0}")]
    InvalidConfig(String),
    /// 404: no such session.
    #[error("unknown session {0}")]
    UnknownSession(String),
    /// 404: no such prompt in that session.
    #[error("no prompt {request_id} in session {session_id}")]
    UnknownPrompt {
        /// Session id.
        session_id: String,
        /// Prompt id.
        request_id: String,
    },
    /// 404: no such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// 404: a cluster route on an instance that is not in a cluster.
    #[error("clustering is off: this instance's ledger is not PostgreSQL, so it shares its sessions with no other instance")]
    ClusterOff,
    /// 405: route exists, method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the prompt was already answered.
    #[error("prompt {0} was already answered")]
    AlreadyAnswered(String),
    /// 409: a dialog of a kind this supervisor does not render (never answered).
    #[error("{0}")]
    NotAnswerable(String),
    /// 409: the prompt was cancelled by the session.
    #[error("prompt {0} was cancelled by the session")]
    PromptCancelled(String),
    /// 409: a session with this id already exists.
    #[error("session {0} already exists")]
    SessionExists(String),
    /// 409: the session is viewer-only.
    #[error("session {0} is viewer-only: the supervisor never interrupts it or sends it messages (its prompts are still answered)")]
    ViewerOnly(String),
    /// 409: the session has no live connection right now.
    #[error("session {0} is not connected")]
    NotConnected(String),
    /// 502: the session answered with an error.
    #[error("session answered with an error: {0}")]
    SessionRejected(String),
    /// 502: the CCR endpoint failed.
    #[error("{0}")]
    Upstream(String),
    /// 504: the session or endpoint did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// 401: missing or invalid bearer token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the token's role is not enough.
    #[error("token {name:?} lacks the {required} role")]
    Forbidden {
        /// The role the route needs.
        required: crate::config::Role,
        /// The caller's token name.
        name: String,
    },
    /// 403: a state-changing request signed in by the console's cookie came without an
    /// `Origin`, or from another origin (cross-site request forgery).
    #[error("{0}")]
    CrossOrigin(&'static str),
    /// 406: the event stream needs a WebSocket upgrade or `Accept: text/event-stream`.
    #[error("{0}")]
    NotAcceptable(&'static str),
    /// 408: the request body did not arrive in full within `[api] request_body_timeout`.
    #[error("{0}")]
    RequestTimeout(String),
    /// 503: an internal actor is not available (shutting down).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 503: the decision ledger cannot record an answer now (e.g. a full disk); the answer
    /// was not taken and nothing was sent: retry later.
    #[error("{0}")]
    LedgerUnavailable(String),
    /// 503: the event-stream reader caps are reached (in total or for this token).
    #[error("{0}")]
    TooManyStreams(#[from] crate::limits::streams::StreamCapError),
}

impl ApiError {
    /// The stable code in the JSON body (its HTTP status comes with it).
    pub fn code(&self) -> Code {
        match self {
            ApiError::InvalidBody(_) => Code::InvalidBody,
            ApiError::InvalidQuery(_) => Code::InvalidQuery,
            ApiError::InvalidConfig(_) => Code::InvalidConfig,
            ApiError::UnknownSession(_) => Code::UnknownSession,
            ApiError::UnknownPrompt { .. } => Code::UnknownPrompt,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::ClusterOff => Code::ClusterOff,
            ApiError::MethodNotAllowed => Code::MethodNotAllowed,
            ApiError::AlreadyAnswered(_) => Code::AlreadyAnswered,
            ApiError::PromptCancelled(_) => Code::PromptCancelled,
            ApiError::NotAnswerable(_) => Code::NotAnswerable,
            ApiError::ViewerOnly(_) => Code::ViewerOnly,
            ApiError::SessionExists(_) => Code::SessionExists,
            ApiError::NotConnected(_) => Code::SessionNotConnected,
            ApiError::SessionRejected(_) => Code::SessionError,
            ApiError::Upstream(_) => Code::UpstreamError,
            ApiError::Timeout(_) => Code::Timeout,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::LedgerUnavailable(_) => Code::LedgerUnavailable,
            ApiError::Unauthorized(_) => Code::Unauthorized,
            ApiError::Forbidden { .. } => Code::Forbidden,
            ApiError::CrossOrigin(_) => Code::CrossOrigin,
            ApiError::NotAcceptable(_) => Code::NotAcceptable,
            ApiError::RequestTimeout(_) => Code::RequestTimeout,
            ApiError::TooManyStreams(_) => Code::TooManyStreams,
        }
    }

    /// Map a session actor's error, naming the session.
    pub fn from_session(session_id: &str, e: SessionError) -> Self {
        match e {
            SessionError::ViewerOnly => ApiError::ViewerOnly(session_id.into()),
            SessionError::NotConnected | SessionError::ConnectionLost => {
                ApiError::NotConnected(session_id.into())
            }
            SessionError::LeaseNotHeld => {
                ApiError::Unavailable(format!("session {session_id}: {e}"))
            }
            SessionError::Timeout(_) => ApiError::Timeout(e.to_string()),
            SessionError::Rejected(m) => ApiError::SessionRejected(m),
            SessionError::Token(_) | SessionError::Upstream { .. } | SessionError::Request(_) => {
                ApiError::Upstream(e.to_string())
            }
        }
    }
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::UnknownSession(id) => ApiError::UnknownSession(id),
            DecideError::UnknownPrompt {
                session_id,
                request_id,
            } => ApiError::UnknownPrompt {
                session_id,
                request_id,
            },
            DecideError::AlreadyAnswered(id) => ApiError::AlreadyAnswered(id),
            DecideError::Cancelled(id) => ApiError::PromptCancelled(id),
            DecideError::InvalidBody(b) => ApiError::InvalidBody(b.to_string()),
            e @ DecideError::LedgerUnavailable(_) => ApiError::LedgerUnavailable(e.to_string()),
            DecideError::WrongKind(m) => ApiError::InvalidBody(m),
            e @ DecideError::NotAnswerable { .. } => ApiError::NotAnswerable(e.to_string()),
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_)) {
            resp.insert_header(("www-authenticate", "Bearer"));
        }
        if matches!(self, ApiError::TooManyStreams(_)) {
            resp.insert_header(("retry-after", "5"));
        }
        resp.json(ErrorBody::new(self.code(), self.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_rt::test]
    async fn body_shape_is_stable() {
        let e = ApiError::AlreadyAnswered("r1".into());
        assert_eq!(e.status_code(), StatusCode::CONFLICT);
        let body = to_bytes(e.error_response().into_body()).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "already_answered");
        assert!(v["error"]["message"].as_str().unwrap().contains("r1"));
    }

    #[actix_rt::test]
    async fn too_many_streams_is_503_with_a_stable_code_and_retry_after() {
        let e = ApiError::from(crate::limits::streams::StreamCapError::Total { max: 3 });
        assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        let resp = e.error_response();
        assert_eq!(resp.headers().get("retry-after").unwrap(), "5");
        let body = to_bytes(resp.into_body()).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_streams");
    }
}
