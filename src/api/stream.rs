//! The live operator event stream: `GET /v1/events` as Server-Sent Events or a
//! WebSocket, resumable with `?after=SEQ` (SSE: `Last-Event-ID`), plus the
//! transcript pages of `GET /v1/sessions/{id}/messages`.
//!
//! Both transports read the same item stream: history after the resume point,
//! then live events, heartbeats, and a final `lagged` notice when a slow
//! reader overflows its bounded queue (the reader is then dropped, so it can
//! never slow a session down).

mod reader;
mod relayed;
mod socket;
mod sse;
pub(super) mod transcript;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use actix::AsyncContext;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use futures_util::stream;

use super::auth::Viewer;
use super::forward::{self, Owner};
use super::lookup::lookup;
use super::{ApiError, ApiState};
use crate::events::{Envelope, Event};
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
///
/// In a cluster, one session's stream (Server-Sent Events or WebSocket) asked of an
/// instance that does not run it is relayed from its owner, with the owner's `seq` (503
/// `unavailable` when the owner cannot be found or reached); it ends when the owner stops
/// running the session.
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
    let EventsQuery {
        session_id,
        after,
        types,
    } = query.into_inner();
    let types = types.as_deref().map(parse_types).transpose()?;
    if let Some(id) = &session_id {
        lookup(&state, id).await?;
    }
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = after.or(last_event_id);
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    // A WebSocket's handshake, or an SSE reader's `Accept`, is checked before anything
    // is asked of an owner.
    let handshake = if upgrade {
        Some(ws::handshake(&req).map_err(|_| ApiError::NotAcceptable("bad websocket handshake"))?)
    } else {
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
        None
    };
    let heartbeat = state.stream_heartbeat;
    // Made when the socket starts, so that its heartbeat counts from then.
    let reader = move || EventSocket {
        heartbeat,
        last_pong: Instant::now(),
    };
    // In a cluster, one session's stream is its owner's.
    let mut ends = None;
    if let Some(id) = &session_id {
        match placement(&state, &req, id).await? {
            Placement::Held(released) => ends = Some(released),
            Placement::Here => {}
            Placement::Owner { id: owner, url } => {
                let permit = state.streams.enter(who.0.name.clone())?;
                let owner = (owner.as_str(), url.as_str());
                let Some(mut resp) = handshake else {
                    return forward::stream_from_owner(&state, &req, &who.0, id, owner, permit)
                        .await;
                };
                let body =
                    match forward::owner_stream(&state, &req, &who.0, id, owner, permit).await? {
                        Ok(body) => body,
                        Err(answer) => return Ok(answer),
                    };
                let items = relayed::items(body, heartbeat);
                let body = ws::WebsocketContext::with_factory(payload, move |ctx| {
                    ctx.add_stream(items);
                    reader()
                });
                return Ok(resp.streaming(body));
            }
        }
    }
    let filter = session_id.map(|s| Arc::from(s.as_str()));
    let permit = state.streams.enter(who.0.name.clone())?;
    let drops = state.metrics.stream_drops.clone();
    let batches = batches(&state.bus, filter, after, heartbeat, drops, permit);
    let batches = until(only_types(batches, types), ends);
    if let Some(mut resp) = handshake {
        let items = stream::StreamExt::flat_map(batches, stream::iter);
        let body = ws::WebsocketContext::with_factory(payload, move |ctx| {
            ctx.add_stream(items);
            reader()
        });
        return Ok(resp.streaming(body));
    }
    let body = stream::StreamExt::flat_map(batches, |batch| {
        stream::iter(SseChunks::new(batch).map(Ok::<_, std::convert::Infallible>))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// Where one session's stream is served, in a cluster.
enum Placement {
    /// Here, by the session's owner: it ends when this instance no longer holds the
    /// session (handed over, lost), so that its reader reconnects and finds the new owner.
    Held(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Here, as any instance's stream: the session's permission and state events only.
    Here,
    /// Relayed from the owner.
    Owner {
        /// Its instance id.
        id: String,
        /// Its `[cluster] advertise_url`.
        url: String,
    },
}

/// Where session `id`'s stream is served ([`Placement`]): here when not clustered, or
/// while this instance holds the session; an instance asked by another as the owner but
/// no longer holding it answers 503 (the caller asks again and finds the new owner).
/// Otherwise the stream (Server-Sent Events or a WebSocket, a token's or a console's) is
/// relayed from the owner, on the caller's behalf; a session nobody holds is served here.
async fn placement(state: &ApiState, req: &HttpRequest, id: &str) -> Result<Placement, ApiError> {
    let Some(pg) = state.postgres() else {
        return Ok(Placement::Here);
    };
    let Some(fences) = pg.fences() else {
        return Ok(Placement::Here);
    };
    if let Some(epoch) = fences.epoch(id) {
        return Ok(Placement::Held(Box::pin(fences.released(id, epoch))));
    }
    if req.headers().contains_key(forward::FORWARDED) {
        return Err(ApiError::Unavailable(format!(
            "session {id} is not held by instance {} (any more); ask again",
            pg.instance_id()
        )));
    }
    Ok(match forward::owner(state, id).await? {
        Owner::Nobody | Owner::Me => Placement::Here,
        Owner::Other { id, url } => Placement::Owner { id, url },
    })
}

/// The stream, ended when `ends` (if any) resolves.
fn until(
    batches: impl futures_util::Stream<Item = Vec<Item>>,
    ends: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
) -> impl futures_util::Stream<Item = Vec<Item>> {
    let ends = ends.unwrap_or_else(|| Box::pin(std::future::pending()));
    stream::StreamExt::take_until(batches, ends)
}

/// The `types` filter: known event types, comma-separated (400 `invalid_query` otherwise).
fn parse_types(list: &str) -> Result<Vec<&'static str>, ApiError> {
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            Event::KINDS
                .iter()
                .copied()
                .find(|k| *k == t)
                .ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "types: unknown event type {t:?} (known: {})",
                        Event::KINDS.join(", ")
                    ))
                })
        })
        .collect()
}

/// Keep only events of `types` (heartbeats and the `lagged` notice always pass); a batch
/// left empty is not sent.
fn only_types(
    batches: impl futures_util::Stream<Item = Vec<Item>>,
    types: Option<Vec<&'static str>>,
) -> impl futures_util::Stream<Item = Vec<Item>> {
    stream::StreamExt::filter_map(batches, move |mut batch| {
        if let Some(types) = &types {
            batch.retain(|item| match item {
                Item::Event(e) => types.contains(&e.event.kind()),
                Item::Lagged(_) | Item::Heartbeat => true,
            });
        }
        std::future::ready((!batch.is_empty()).then_some(batch))
    })
}

#[cfg(test)]
mod tests;
