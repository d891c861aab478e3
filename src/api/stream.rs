//! The live operator event stream: `GET /v1/events` as Server-Sent Events or a
//! WebSocket, resumable with `?after=SEQ` (SSE: `Last-Event-ID`), plus the
//! transcript pages of `GET /v1/sessions/{id}/messages`.
//!
//! Both transports read the same item stream: history after the resume point,
//! then live events, heartbeats, and a final `lagged` notice when a slow
//! reader overflows its bounded queue (the reader is then dropped, so it can
//! never slow a session down).

mod reader;
mod socket;
mod sse;
pub(super) mod transcript;

use std::sync::Arc;
use std::time::Instant;

use actix::AsyncContext;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use futures_util::stream;

use super::auth::Viewer;
use super::lookup::lookup;
use super::{ApiError, ApiState};
use crate::events::Envelope;
use ccr_protocol::api::EventsQuery;
pub use reader::batches;
use socket::EventSocket;
use sse::SseChunks;
pub use transcript::transcript;

/// What a stream reader receives next.
#[derive(Debug, Clone)]
pub enum Item {
    /// An event (sequence number, type, JSON).
    Event(Arc<Envelope>),
    /// The reader missed events: this JSON explains, and says where to resume.
    Lagged(String),
    /// Nothing happened for a while.
    Heartbeat,
}

/// The live event stream: a WebSocket when upgraded, otherwise Server-Sent Events.
///
/// Resume with `after` or `Last-Event-ID`. Each reader counts under `[api]
/// max_stream_subscribers` (in total) and `max_stream_subscribers_per_token` (per token
/// name); beyond, 503 `too_many_streams`. See events.md for the events.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this sequence number (SSE)")),
    responses(
        (status = 200, description = "Server-Sent Events", content_type = "text/event-stream", body = String),
        (status = 101, description = "WebSocket: one event per text message")))]
pub async fn events(
    who: Viewer,
    state: web::Data<ApiState>,
    req: HttpRequest,
    query: web::Query<EventsQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let EventsQuery { session_id, after } = query.into_inner();
    if let Some(id) = &session_id {
        lookup(&state, id).await?;
    }
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = after.or(last_event_id);
    let filter = session_id.map(|s| Arc::from(s.as_str()));
    let heartbeat = state.stream_heartbeat;
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        let reader = EventSocket {
            heartbeat,
            last_pong: Instant::now(),
        };
        let mut resp =
            ws::handshake(&req).map_err(|_| ApiError::NotAcceptable("bad websocket handshake"))?;
        let permit = state.streams.enter(who.0.name.clone())?;
        let batches = batches(
            &state.bus,
            filter,
            after,
            heartbeat,
            state.metrics.stream_drops.clone(),
            permit,
        );
        let items = stream::StreamExt::flat_map(batches, stream::iter);
        let body = ws::WebsocketContext::with_factory(payload, move |ctx| {
            ctx.add_stream(items);
            reader
        });
        return Ok(resp.streaming(body));
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    if !(accept.contains("text/event-stream") || accept.contains("*/*")) {
        return Err(ApiError::NotAcceptable(
            "use a WebSocket upgrade or Accept: text/event-stream",
        ));
    }
    let permit = state.streams.enter(who.0.name.clone())?;
    let drops = state.metrics.stream_drops.clone();
    let batches = batches(&state.bus, filter, after, heartbeat, drops, permit);
    let body = stream::StreamExt::flat_map(batches, |batch| {
        stream::iter(SseChunks::new(batch).map(Ok::<_, std::convert::Infallible>))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

#[cfg(test)]
mod tests;
