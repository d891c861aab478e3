//! The user-message POST to a session's CCR events endpoint (`ctl send`, `POST /v1/sessions/{id}/messages`).

use std::sync::Arc;

use serde_json::Value;
use tracing::info;

use super::client::redact;
use super::messages::SessionError;
use super::token::TokenSource;
use crate::config::CcrConfig;
use ccr_protocol::reply::SentMessage;

/// POST `content` as one user message of `session_id` to `url`; the receipt, or why not.
/// The token never appears in an error: the endpoint's answer is redacted.
pub async fn post_user_message(
    client: awc::Client,
    ccr: CcrConfig,
    url: String,
    token_source: TokenSource,
    session_id: Arc<str>,
    content: Value,
) -> Result<SentMessage, SessionError> {
    let token = token_source.fetch(ccr.token_command_timeout).await?;
    let uuid = uuid::Uuid::new_v4().to_string();
    let body = ccr_protocol::user_message_events(&uuid, &session_id, &content);
    let mut resp = client
        .post(url)
        .bearer_auth(token.expose())
        .insert_header(("anthropic-version", ccr.anthropic_version.as_str()))
        .insert_header(("anthropic-beta", ccr.anthropic_beta.as_str()))
        .insert_header(("x-organization-uuid", ccr.organization_uuid.as_str()))
        .content_type("application/json")
        .timeout(ccr.send_timeout)
        .send_body(body)
        .await
        .map_err(|e| match e {
            awc::error::SendRequestError::Timeout => SessionError::Timeout(ccr.send_timeout),
            other => SessionError::Request(redact(other.to_string(), token.expose())),
        })?;
    let status = resp.status().as_u16();
    if status == 200 || status == 201 {
        // The target this line always had (RUST_LOG filters, JSON logs).
        info!(target: "ccr_supervisor::session::actor", %uuid, "user message sent");
        return Ok(SentMessage { uuid, status });
    }
    let body = resp.body().limit(4096).await.unwrap_or_default();
    let body = redact(String::from_utf8_lossy(&body).into_owned(), token.expose());
    Err(SessionError::Upstream { status, body })
}
