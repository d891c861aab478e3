//! Route handlers: thin adapters from HTTP to actor messages.

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{Admin, Approver, Viewer};
use super::lookup::lookup;
use super::table::{endpoint, Endpoint};
use super::{bulk, forward, grant, ledger, policy, read, stored, stream, ApiError, ApiState};
use crate::registry::Decide;
use crate::session::{InterruptSession, SendUserMessage};
use crate::supervisor::{AddSession, RemoveSession, SessionSetError};
use ccr_protocol::api::{AddSessionBody, RawDecision, RawQuestionAnswer};
use ccr_protocol::api::{AnswerBody, DecisionBody, QuestionAnswer, SendMessageBody};
use ccr_protocol::api::{InterruptBody, PendingQuery};
use ccr_protocol::error::Code;
use ccr_protocol::reply::{
    DecisionReceipt, InterruptAnswer, PermissionList, QuestionList, Removed, SentMessage,
    SessionBody, SessionList,
};

/// The v1 routes (the health routes are in `health`, the document's own in `openapi`).
pub fn endpoints() -> Vec<Endpoint> {
    use crate::config::Role;
    use Code::*;
    let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
    vec![
        endpoint(
            get.clone(),
            "/v1/sessions",
            Some(Role::Viewer),
            &[Unavailable],
            list_sessions,
        ),
        endpoint(
            post.clone(),
            "/v1/sessions",
            Some(Role::Admin),
            &[InvalidBody, RequestTimeout, SessionExists, Unavailable],
            add_session,
        ),
        endpoint(
            get.clone(),
            "/v1/sessions/{id}",
            Some(Role::Viewer),
            &[UnknownSession, Unavailable],
            get_session,
        ),
        endpoint(
            delete,
            "/v1/sessions/{id}",
            Some(Role::Admin),
            &[UnknownSession, Unavailable],
            remove_session,
        ),
        endpoint(
            get.clone(),
            "/v1/permissions",
            Some(Role::Viewer),
            &[InvalidQuery, UnknownSession, Unavailable],
            list_permissions,
        ),
        endpoint(
            post.clone(),
            "/v1/sessions/{id}/permissions/{request_id}",
            Some(Role::Approver),
            &[
                InvalidBody,
                RequestTimeout,
                UnknownSession,
                UnknownPrompt,
                AlreadyAnswered,
                PromptCancelled,
                LedgerUnavailable,
                Unavailable,
            ],
            answer_permission,
        ),
        endpoint(
            post.clone(),
            "/v1/decisions",
            Some(Role::Approver),
            &[InvalidBody, RequestTimeout],
            bulk::answer_many,
        ),
        endpoint(
            get.clone(),
            "/v1/questions",
            Some(Role::Viewer),
            &[InvalidQuery, UnknownSession, Unavailable],
            list_questions,
        ),
        endpoint(
            post.clone(),
            "/v1/sessions/{id}/questions/{request_id}",
            Some(Role::Approver),
            &[
                InvalidBody,
                RequestTimeout,
                UnknownSession,
                UnknownPrompt,
                AlreadyAnswered,
                PromptCancelled,
                NotAnswerable,
                LedgerUnavailable,
                Unavailable,
            ],
            answer_question,
        ),
        endpoint(
            post.clone(),
            "/v1/sessions/{id}/interrupt",
            Some(Role::Approver),
            &[
                InvalidBody,
                RequestTimeout,
                UnknownSession,
                ViewerOnly,
                SessionNotConnected,
                SessionError,
                UpstreamError,
                Unavailable,
                Timeout,
            ],
            interrupt,
        ),
        endpoint(
            get.clone(),
            "/v1/sessions/{id}/messages",
            Some(Role::Viewer),
            &[InvalidQuery, UnknownSession, Unavailable],
            stream::transcript,
        ),
        endpoint(
            post.clone(),
            "/v1/sessions/{id}/messages",
            Some(Role::Approver),
            &[
                InvalidBody,
                RequestTimeout,
                UnknownSession,
                ViewerOnly,
                SessionNotConnected,
                SessionError,
                UpstreamError,
                Unavailable,
                Timeout,
            ],
            send_message,
        ),
        endpoint(
            get.clone(),
            "/v1/policy",
            Some(Role::Viewer),
            &[Unavailable],
            policy::policy,
        ),
        endpoint(
            post,
            "/v1/policy/evaluate",
            Some(Role::Viewer),
            &[InvalidBody, RequestTimeout, UnknownSession, Unavailable],
            policy::evaluate,
        ),
        endpoint(
            get.clone(),
            "/v1/audit",
            Some(Role::Viewer),
            &[InvalidQuery, Unavailable],
            ledger::query,
        ),
        endpoint(
            get,
            "/v1/events",
            Some(Role::Viewer),
            &[
                InvalidQuery,
                UnknownSession,
                NotAcceptable,
                TooManyStreams,
                Unavailable,
            ],
            stream::events,
        ),
    ]
}

/// Every session: state, counters, pending prompts.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    responses((status = 200, description = "Every session, in id order", body = SessionList)))]
pub(super) async fn list_sessions(
    _who: Viewer,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let list = read::sessions(&state, None).await?;
    Ok(HttpResponse::Ok().json(SessionList { sessions: list }))
}

/// One session.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "Session id")),
    responses((status = 200, description = "The session", body = SessionBody)))]
pub(super) async fn get_session(
    _who: Viewer,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let mut list = read::sessions(&state, Some(id.clone())).await?;
    match list.pop() {
        Some(s) => Ok(HttpResponse::Ok().json(s)),
        None => Err(ApiError::UnknownSession(id)),
    }
}

/// Pending permission prompts: confirmed ones oldest first, then unconfirmed ones.
#[utoipa::path(get, path = "/v1/permissions", tag = "prompts", params(PendingQuery),
    responses((status = 200, description = "Pending prompts", body = PermissionList)))]
pub(super) async fn list_permissions(
    _who: Viewer,
    state: web::Data<ApiState>,
    query: web::Query<PendingQuery>,
) -> Result<HttpResponse, ApiError> {
    let permissions = read::pending(&state, query.into_inner().session_id, false).await?;
    Ok(HttpResponse::Ok().json(PermissionList { permissions }))
}

/// Pending questions that are not permission prompts (MCP elicitations, dialogs).
#[utoipa::path(get, path = "/v1/questions", tag = "prompts", params(PendingQuery),
    responses((status = 200, description = "Pending questions", body = QuestionList)))]
pub(super) async fn list_questions(
    _who: Viewer,
    state: web::Data<ApiState>,
    query: web::Query<PendingQuery>,
) -> Result<HttpResponse, ApiError> {
    let questions = read::pending(&state, query.into_inner().session_id, true).await?;
    Ok(HttpResponse::Ok().json(QuestionList { questions }))
}

/// Answer a question (an elicitation or a dialog) with its SDK shape.
///
/// An elicitation takes `action` (`accept` with `content`, `decline`, `cancel`); a dialog
/// takes `behavior` (`completed` with `result`, `cancelled`).
#[utoipa::path(post, path = "/v1/sessions/{id}/questions/{request_id}", tag = "prompts",
    params(("id" = String, Path, description = "Session id"), ("request_id" = String, Path, description = "Prompt (request) id")), request_body = RawQuestionAnswer,
    responses((status = 200, description = "Taken: `allowed` (accept, completed) or `denied`", body = DecisionReceipt)))]
pub(super) async fn answer_question(
    Approver(who): Approver,
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    body: web::Json<QuestionAnswer>,
) -> Result<HttpResponse, ApiError> {
    let (session_id, request_id) = path.into_inner();
    // Straight to the registry: it knows the sessions the supervisor runs.
    let receipt = state
        .registry
        .send(Decide {
            session_id: Arc::from(session_id.as_str()),
            request_id,
            body: AnswerBody::Question(body.into_inner()),
            decided_by: who.name.to_string(),
        })
        .await??;
    Ok(HttpResponse::Ok().json(receipt))
}

/// Answer a permission prompt: allow (optionally with an edited input and rule updates)
/// or deny.
///
/// The protocol's spellings `updatedInput` / `updatedPermissions` are accepted too.
#[utoipa::path(post, path = "/v1/sessions/{id}/permissions/{request_id}", tag = "prompts",
    params(("id" = String, Path, description = "Session id"), ("request_id" = String, Path, description = "Prompt (request) id")), request_body = RawDecision,
    responses((status = 200, description = "Taken, recorded, and written (`sent`) or `queued`", body = DecisionReceipt)))]
pub(super) async fn answer_permission(
    Approver(who): Approver,
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    body: web::Json<DecisionBody>,
) -> Result<HttpResponse, ApiError> {
    let (session_id, request_id) = path.into_inner();
    let body = body.into_inner();
    body.validate()
        .map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    // Straight to the registry: it knows the sessions the supervisor runs (404
    // `unknown_session` otherwise), so the supervisor is not asked.
    let receipt = state
        .registry
        .send(Decide {
            session_id: Arc::from(session_id.as_str()),
            request_id,
            body: AnswerBody::Permission(body),
            decided_by: who.name.to_string(),
        })
        .await??;
    Ok(HttpResponse::Ok().json(receipt))
}

/// Interrupt the session's turn and wait for its answer.
///
/// The body is optional; `cancel_queued` also cancels the queued user messages.
#[utoipa::path(post, path = "/v1/sessions/{id}/interrupt", tag = "sessions", params(("id" = String, Path, description = "Session id")),
    request_body(content = Option<InterruptBody>, description = "Optional"),
    responses((status = 200, description = "The session's answer", body = InterruptAnswer)))]
pub(super) async fn interrupt(
    who: Approver,
    state: web::Data<ApiState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    grant::check_body(&req, &body)?;
    if let Some(owners) = forward::to_owner(&state, &req, &who.0, &id, body.clone()).await? {
        return Ok(owners);
    }
    let body: InterruptBody = if body.iter().all(u8::is_ascii_whitespace) {
        InterruptBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidBody(e.to_string()))?
    };
    let session = lookup(&state, &id).await?;
    if session.viewer_only {
        return Err(ApiError::ViewerOnly(id));
    }
    let addr = session
        .addr
        .ok_or_else(|| ApiError::NotConnected(id.clone()))?;
    let answer = addr
        .send(InterruptSession {
            cancel_queued: body.cancel_queued,
        })
        .await?
        .map_err(|e| ApiError::from_session(&id, e))?;
    Ok(HttpResponse::Ok().json(answer))
}

/// Send a user message to the session (the CCR events endpoint).
#[utoipa::path(post, path = "/v1/sessions/{id}/messages", tag = "sessions", params(("id" = String, Path, description = "Session id")),
    request_body = SendMessageBody,
    responses((status = 200, description = "Accepted by the endpoint", body = SentMessage)))]
pub(super) async fn send_message(
    who: Approver,
    state: web::Data<ApiState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<SendMessageBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let body = body.into_inner();
    // As forwarded, and as a forwarding instance signed it (it sends this serialization).
    let raw = web::Bytes::from(
        serde_json::to_vec(&body).map_err(|e| ApiError::InvalidBody(e.to_string()))?,
    );
    grant::check_body(&req, &raw)?;
    if let Some(owners) = forward::to_owner(&state, &req, &who.0, &id, raw).await? {
        return Ok(owners);
    }
    body.validate()
        .map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    let session = lookup(&state, &id).await?;
    if session.viewer_only {
        return Err(ApiError::ViewerOnly(id));
    }
    let addr = session
        .addr
        .ok_or_else(|| ApiError::NotConnected(id.clone()))?;
    let sent = addr
        .send(SendUserMessage {
            content: body.content,
        })
        .await?
        .map_err(|e| ApiError::from_session(&id, e))?;
    Ok(HttpResponse::Ok().json(sent))
}

fn set_error(e: SessionSetError) -> ApiError {
    match e {
        SessionSetError::Exists(id) => ApiError::SessionExists(id),
        SessionSetError::Unknown(id) => ApiError::UnknownSession(id),
        SessionSetError::ShuttingDown => ApiError::Unavailable("shutting down".into()),
    }
}

/// Add and start a session.
///
/// Same fields as `[[sessions]]`; the token only from a source `[api]
/// runtime_token_sources` allows (`token_env`, `token_file` inside `runtime_token_dirs`),
/// never a command.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = AddSessionBody,
    responses((status = 201, description = "Added; the session as `GET /v1/sessions/{id}` shows it", body = SessionBody)))]
pub(super) async fn add_session(
    Admin(who): Admin,
    state: web::Data<ApiState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let rules = &state.runtime_tokens;
    let spec = crate::config::runtime_session_from_json(&body, rules).map_err(|errors| {
        ApiError::InvalidBody(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let id = spec.id.to_string();
    match &state.cluster {
        // The cluster's set: stored for every instance; one of them claims and runs it.
        Some(cluster) => stored::add(&state, cluster, &spec, &who.name).await?,
        None => state
            .supervisor
            .send(AddSession(spec.clone()))
            .await?
            .map_err(set_error)?,
    }
    let mut list = read::sessions(&state, Some(id.clone())).await?;
    match list.pop() {
        Some(s) => Ok(HttpResponse::Created().json(s)),
        None if state.cluster.is_some() => {
            Ok(HttpResponse::Created().json(stored::not_yet_listed(&spec)))
        }
        None => Err(ApiError::UnknownSession(id)),
    }
}

/// Remove a session: close with 1000, report its pending prompts cancelled, forget it.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "Session id")),
    responses((status = 200, description = "Removed", body = Removed)))]
pub(super) async fn remove_session(
    Admin(who): Admin,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    match &state.cluster {
        // Removed for every instance; its owner denies its pending prompts and closes it.
        Some(cluster) => stored::remove(&state, cluster, &id, &who.name).await?,
        None => state
            .supervisor
            .send(RemoveSession(id.clone()))
            .await?
            .map_err(set_error)?,
    }
    Ok(HttpResponse::Ok().json(Removed { removed: id }))
}
