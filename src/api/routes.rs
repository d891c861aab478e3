//! Route handlers: thin adapters from HTTP to actor messages.

use std::sync::Arc;

use actix_web::{web, HttpResponse};

use super::auth::{Admin, Approver, Viewer};
use super::lookup::lookup;
use super::{ledger, policy, read, stream, ApiError, ApiState};
use crate::registry::Decide;
use crate::session::{InterruptSession, SendUserMessage};
use crate::supervisor::{AddSession, RemoveSession, SessionSetError};
use ccr_protocol::api::{AnswerBody, DecisionBody, QuestionAnswer, SendMessageBody};
use ccr_protocol::api::{InterruptBody, PendingQuery};
use ccr_protocol::reply::{PermissionList, QuestionList, Removed, SessionList};

/// Mount the v1 routes.
pub fn register(cfg: &mut web::ServiceConfig) {
    let method_not_allowed =
        || web::route().to(|| async { Err::<HttpResponse, _>(ApiError::MethodNotAllowed) });
    cfg.service(
        web::resource("/v1/sessions")
            .route(web::get().to(list_sessions))
            .route(web::post().to(add_session))
            .default_service(method_not_allowed()),
    )
    .service(
        web::resource("/v1/sessions/{id}")
            .route(web::get().to(get_session))
            .route(web::delete().to(remove_session))
            .default_service(method_not_allowed()),
    )
    .service(
        web::resource("/v1/permissions")
            .route(web::get().to(list_permissions))
            .default_service(method_not_allowed()),
    )
    .service(
        web::resource("/v1/sessions/{id}/permissions/{request_id}")
            .route(web::post().to(answer_permission))
            .default_service(method_not_allowed()),
    )
    .service(
        web::resource("/v1/questions")
            .route(web::get().to(list_questions))
            .default_service(method_not_allowed()),
    )
    .service(
        web::resource("/v1/sessions/{id}/questions/{request_id}")
            .route(web::post().to(answer_question))
            .default_service(method_not_allowed()),
    )
    .service(
        web::resource("/v1/sessions/{id}/interrupt")
            .route(web::post().to(interrupt))
            .default_service(method_not_allowed()),
    )
    .service(
        web::resource("/v1/sessions/{id}/messages")
            .route(web::get().to(stream::transcript))
            .route(web::post().to(send_message))
            .default_service(method_not_allowed()),
    )
    .service(
        web::resource("/v1/policy")
            .route(web::get().to(policy::policy))
            .default_service(method_not_allowed()),
    )
    .service(
        web::resource("/v1/policy/evaluate")
            .route(web::post().to(policy::evaluate))
            .default_service(method_not_allowed()),
    )
    .service(
        web::resource("/v1/audit")
            .route(web::get().to(ledger::query))
            .default_service(method_not_allowed()),
    )
    .service(
        web::resource("/v1/events")
            .route(web::get().to(stream::events))
            .default_service(method_not_allowed()),
    );
}

async fn list_sessions(_who: Viewer, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let list = read::sessions(&state, None).await?;
    Ok(HttpResponse::Ok().json(SessionList { sessions: list }))
}

async fn get_session(
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

async fn list_permissions(
    _who: Viewer,
    state: web::Data<ApiState>,
    query: web::Query<PendingQuery>,
) -> Result<HttpResponse, ApiError> {
    let permissions = read::pending(&state, query.into_inner().session_id, false).await?;
    Ok(HttpResponse::Ok().json(PermissionList { permissions }))
}

/// `GET /v1/questions[?session_id=]` (viewer): pending elicitations and dialogs.
async fn list_questions(
    _who: Viewer,
    state: web::Data<ApiState>,
    query: web::Query<PendingQuery>,
) -> Result<HttpResponse, ApiError> {
    let questions = read::pending(&state, query.into_inner().session_id, true).await?;
    Ok(HttpResponse::Ok().json(QuestionList { questions }))
}

/// `POST /v1/sessions/{id}/questions/{request_id}` (approver): answer an elicitation or a
/// dialog with its SDK shape.
async fn answer_question(
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

async fn answer_permission(
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

async fn interrupt(
    _who: Approver,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
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

async fn send_message(
    _who: Approver,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    body: web::Json<SendMessageBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let body = body.into_inner();
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

/// `POST /v1/sessions` (admin): add and start a session. Same fields as
/// `[[sessions]]`; the token only from a source `[api] runtime_token_sources`
/// allows (`token_env`, `token_file` inside `runtime_token_dirs`), never a command.
async fn add_session(
    _who: Admin,
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
    state
        .supervisor
        .send(AddSession(spec))
        .await?
        .map_err(set_error)?;
    let mut list = read::sessions(&state, Some(id.clone())).await?;
    match list.pop() {
        Some(s) => Ok(HttpResponse::Created().json(s)),
        None => Err(ApiError::UnknownSession(id)),
    }
}

/// `DELETE /v1/sessions/{id}` (admin): close with 1000, cancel its pending prompts, forget it.
async fn remove_session(
    _who: Admin,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    state
        .supervisor
        .send(RemoveSession(id.clone()))
        .await?
        .map_err(set_error)?;
    Ok(HttpResponse::Ok().json(Removed { removed: id }))
}
