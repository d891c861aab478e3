//! Policy routes: `GET /v1/policy` and `POST /v1/policy/evaluate`.

use actix_web::{web, HttpResponse};
use serde_json::Value;

use super::auth::Viewer;
use super::lookup::lookup;
use super::{read, ApiError, ApiState};
use crate::policy::PromptContext;
use ccr_protocol::policy::{EvaluateBody, Evaluation, PolicyReport};
use ccr_protocol::PermissionPrompt;

/// The policy: its rules in order, deadlines, and each rule's hit count.
#[utoipa::path(get, path = "/v1/policy", tag = "policy",
    responses((status = 200, description = "The policy", body = PolicyReport)))]
pub async fn policy(_who: Viewer, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let report = read::policy(&state).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// What the policy would do with a prompt; no side effects.
#[utoipa::path(post, path = "/v1/policy/evaluate", tag = "policy", request_body = EvaluateBody,
    responses((status = 200, description = "The verdict and the rule that gave it", body = Evaluation)))]
pub async fn evaluate(
    _who: Viewer,
    state: web::Data<ApiState>,
    body: web::Json<EvaluateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if body.tool_name.trim().is_empty() {
        return Err(ApiError::InvalidBody("tool_name must not be empty".into()));
    }
    let mut labels = body.labels;
    let session_id = body.session_id.unwrap_or_default();
    if !session_id.is_empty() {
        let session = lookup(&state, &session_id).await?;
        labels.extend(session.labels);
    }
    let mut request = match body.request {
        Some(Value::Object(map)) => Value::Object(map),
        Some(_) => return Err(ApiError::InvalidBody("request must be an object".into())),
        None => Value::Object(Default::default()),
    };
    request["subtype"] = "can_use_tool".into();
    request["tool_name"] = body.tool_name.clone().into();
    request["input"] = body.input.clone();
    let prompt = PermissionPrompt {
        raw: None,
        request_id: "evaluate".into(),
        tool_name: body.tool_name,
        tool_use_id: None,
        input: body.input,
        request,
    };
    let eval = state
        .policy
        .load()
        .evaluate(&PromptContext::new(&session_id, &labels, &prompt));
    Ok(HttpResponse::Ok().json(eval))
}
