//! The actix-web routes: WebSocket subscribe (PROTOCOL §1) and `POST /events` (§4).

use std::collections::HashMap;

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use futures_util::{stream, StreamExt};
use serde_json::json;

use std::sync::Arc;

use super::conn::WsConn;
use super::control::PostError;
use super::socket::{Gated, ReadGate, SocketId};
use super::state::Shared;
use super::SeenRequest;

/// Largest frame accepted from a client.
const MAX_CLIENT_FRAME: usize = 16 << 20;

/// Register the simulator's routes.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/sessions/ws/{session_id}/subscribe",
        web::get().to(subscribe),
    )
    .route(
        "/v1/sessions/{session_id}/events",
        web::post().to(post_events),
    );
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_owned)
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    Some(req.headers().get(name)?.to_str().ok()?.to_owned())
}

async fn subscribe(
    req: HttpRequest,
    stream: web::Payload,
    path: web::Path<String>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    let session = path.into_inner();
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok();
    let seen = SeenRequest {
        anthropic_version: header(&req, "anthropic-version"),
        organization_uuid: query.and_then(|q| q.get("organization_uuid").cloned()),
        bearer: bearer(&req),
        peer: req.peer_addr(),
    };
    if let Some(status) = shared.take_refusal(&session, &seen) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Ok(HttpResponse::build(status).finish());
    }
    let admission = shared.admit(&session, seen);
    let gate = Arc::new(ReadGate::default());
    let socket = req.conn_data::<SocketId>().copied();
    let actor = WsConn::new(
        shared.into_inner(),
        session,
        admission,
        gate.clone(),
        socket,
    );
    let mut response = ws::handshake(&req)?;
    let frames = ws::WebsocketContext::with_codec(
        actor,
        Gated::new(stream, gate),
        actix_http::ws::Codec::new().max_size(MAX_CLIENT_FRAME),
    );
    // When the actor stops, its last frames (a close frame, or none for a drop)
    // are flushed and then the TCP connection is closed, as a real server does.
    // A normal end of stream is not enough: actix-http may keep an upgraded
    // connection open after it. The yield lets the dispatcher flush first; then the
    // socket is shut down (a FIN). Only when that is impossible does the stream end in
    // an error (which actix-http logs at ERROR: not for an ordinary close).
    let hang_up = stream::once(async move {
        tokio::task::yield_now().await;
        match socket {
            Some(s) if s.hang_up() => None,
            _ => Some(Err(actix_web::error::ErrorInternalServerError(
                "sim: connection closed",
            ))),
        }
    })
    .filter_map(std::future::ready);
    Ok(response.streaming(frames.chain(hang_up)))
}

async fn post_events(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let session = path.into_inner();
    match shared.post_events(&session, bearer(&req).as_deref(), &body) {
        Ok(()) => HttpResponse::Ok().json(json!({})),
        Err(err) => {
            let (status, kind) = match &err {
                PostError::NotFound => (StatusCode::NOT_FOUND, "not_found_error"),
                PostError::Unauthorized => (StatusCode::UNAUTHORIZED, "authentication_error"),
                PostError::Malformed(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            };
            tracing::debug!(session, %err, "sim refuses events POST");
            HttpResponse::build(status).json(json!({
                "type":"error","error":{"type":kind,"message":err.to_string()}
            }))
        }
    }
}
