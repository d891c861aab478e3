//! Forwarding to a session's owner, in a cluster: an interrupt or a user message posted to
//! an instance that does not run the session goes to the instance that does (its
//! `[cluster] advertise_url`, from the members table), on the caller's behalf (a
//! credential naming the caller and its role, signed with the cluster's key: [`grant`],
//! so a console sign-in works too), and the owner's answer comes back as is. A forwarded
//! request is never forwarded again.
//!
//! A session's event stream is forwarded the same way ([`stream_from_owner`]), its body
//! relayed chunk by chunk for as long as the owner keeps it open.
//!
//! An `https://` owner's certificate is checked against `[cluster] ca_file`'s CAs, or the
//! public roots without one ([`ApiState::forward_tls`]).

use std::time::Duration;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream::{self, Stream, StreamExt};

use super::auth::Principal;
use super::{grant, path_and_query, ApiError, ApiState};
use crate::limits::streams::StreamPermit;

/// The header a forwarded request carries (the forwarding instance's id).
pub(super) const FORWARDED: &str = "x-ccr-forwarded-by";

/// How long the owner may take (an interrupt waits for the session's acknowledgement).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to the owner may take, for a forwarded stream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the owner may take to start answering a forwarded stream (it answers at once).
const STREAM_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A forwarded stream the owner sends nothing on (not even a heartbeat) for this many
/// heartbeats is ended: the owner is gone or cut off.
const STREAM_IDLE_HEARTBEATS: u32 = 3;
/// Largest error body of an owner relayed back.
const ERROR_BODY_LIMIT: usize = 64 << 10;

/// Who runs a session, in a cluster, as the lease table says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// Nobody holds its lease.
    Nobody,
    /// This instance.
    Me,
    /// Another instance, reached at `url`.
    Other {
        /// Its instance id.
        id: String,
        /// Its `[cluster] advertise_url`.
        url: String,
    },
}

/// Who runs `session` (clustered only): 503 when the database does not say, or when the
/// owner has no `advertise_url` to be reached at.
pub(super) async fn owner(state: &ApiState, session: &str) -> Result<Owner, ApiError> {
    let Some(pg) = state.postgres() else {
        return Ok(Owner::Me);
    };
    let owner = pg
        .owner_of(session)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot find the session's owner: {e}")))?;
    match owner {
        None => Ok(Owner::Nobody),
        Some((owner, _)) if owner == pg.instance_id() => Ok(Owner::Me),
        Some((id, Some(url))) => Ok(Owner::Other { id, url }),
        Some((owner, None)) => Err(ApiError::Unavailable(format!(
            "session {session} runs on instance {owner}, which has no [cluster] advertise_url to forward to"
        ))),
    }
}

/// This request's path and query at the owner's `url`.
fn target(url: &str, req: &HttpRequest) -> String {
    format!("{}{}", url.trim_end_matches('/'), path_and_query(req))
}

/// The headers that make `req`, forwarded from this instance, `who`'s at the owner:
/// `x-ccr-forwarded-by` and the signed credential ([`grant`]), which the owner judges the
/// request by: a console sign-in is this instance's own, unknown to the owner, and a token
/// need not be known there either (one that a reload gave this instance first). A token's
/// `Authorization` goes along too, for an owner of an older build that knows no
/// forwarded credential (a rolling upgrade). With `[api] auth = "disabled"` here there is
/// nobody to vouch for: no credential is made (an owner that checks callers refuses).
fn on_behalf(
    state: &ApiState,
    req: &HttpRequest,
    who: &Principal,
    (to, body): (&str, &[u8]),
) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    let pg = state
        .postgres()
        .ok_or_else(|| ApiError::Unavailable("not in a cluster".into()))?;
    let me = pg.instance_id();
    let value = |v: &str| {
        HeaderValue::from_str(v)
            .map_err(|_| ApiError::Unavailable("cannot forward: a header is not ASCII".into()))
    };
    let mut headers = vec![(HeaderName::from_static(FORWARDED), value(me)?)];
    if state.auth.enabled() {
        let request = grant::Forwarded {
            by: me,
            to,
            method: req.method(),
            target: path_and_query(req),
        };
        let credential = grant::sign(
            pg.cluster_key().bytes(),
            who,
            request,
            body,
            grant::now_ms(),
        );
        headers.push((
            HeaderName::from_static(grant::FORWARDED_AUTH),
            value(&credential)?,
        ));
    }
    if let Some(token) = req.headers().get(header::AUTHORIZATION) {
        headers.push((header::AUTHORIZATION, token.clone()));
    }
    Ok(headers)
}

/// When clustered and `session` is run by another instance, the owner's answer to this
/// request, made on `who`'s behalf; `None` when it is to be served here (not clustered,
/// owned here, or already forwarded once).
pub(super) async fn to_owner(
    state: &ApiState,
    req: &HttpRequest,
    who: &Principal,
    session: &str,
    body: web::Bytes,
) -> Result<Option<HttpResponse>, ApiError> {
    if state.postgres().is_none() || req.headers().contains_key(FORWARDED) {
        return Ok(None);
    }
    let (owner, url) = match owner(state, session).await? {
        Owner::Nobody => return Err(ApiError::NotConnected(session.to_owned())),
        Owner::Me => return Ok(None),
        Owner::Other { id, url } => (id, url),
    };
    let client = awc::Client::builder()
        .timeout(FORWARD_TIMEOUT)
        .connector(awc::Connector::new().rustls_0_23(state.forward_tls.clone()))
        .finish();
    let mut out = client.request(req.method().clone(), target(&url, req));
    for h in on_behalf(state, req, who, (&owner, &body))? {
        out = out.insert_header(h);
    }
    if let Some(v) = req.headers().get(header::CONTENT_TYPE) {
        out = out.insert_header((header::CONTENT_TYPE, v.clone()));
    }
    let mut resp = out.send_body(body).await.map_err(|e| {
        ApiError::Unavailable(format!(
            "session {session}'s owner {owner} did not answer: {}",
            with_hint(&e)
        ))
    })?;
    let bytes = resp.body().limit(1 << 20).await.map_err(|e| {
        ApiError::Unavailable(format!(
            "session {session}'s owner {owner} answered badly: {e}"
        ))
    })?;
    let mut answer = HttpResponse::build(resp.status());
    if let Some(ct) = resp.headers().get(header::CONTENT_TYPE) {
        answer.insert_header((header::CONTENT_TYPE, ct.clone()));
    }
    Ok(Some(answer.body(bytes)))
}

/// `GET /v1/events?session_id=...` (Server-Sent Events) as instance `owner` at `url` serves
/// it to `who`: the same path and query (`after` too) and `Last-Event-ID`, on `who`'s
/// behalf, so the events and their `seq` are the owner's. The owner's body is relayed
/// chunk by chunk (read only as fast as the caller takes it), holding `permit`, until the
/// owner ends it (it shuts down, or hands the session over: the caller then reconnects and
/// finds the new owner), falls silent for [`STREAM_IDLE_HEARTBEATS`] heartbeats, or this
/// instance shuts down. An answer other than 200 comes back as is; an owner that cannot be
/// reached is 503.
pub(super) async fn stream_from_owner(
    state: &ApiState,
    req: &HttpRequest,
    who: &Principal,
    session: &str,
    owner: (&str, &str),
    permit: StreamPermit,
) -> Result<HttpResponse, ApiError> {
    let body = match owner_stream(state, req, who, session, owner, permit).await? {
        Ok(body) => body,
        Err(answer) => return Ok(answer),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// The body of the owner's Server-Sent Events stream of `session` (as
/// [`stream_from_owner`] relays it: chunk by chunk, ending as it says), or, when the owner
/// answers other than 200, its answer as is (`Err`); an owner that cannot be reached is
/// 503.
pub(super) async fn owner_stream(
    state: &ApiState,
    req: &HttpRequest,
    who: &Principal,
    session: &str,
    (owner, url): (&str, &str),
    permit: StreamPermit,
) -> Result<
    Result<impl Stream<Item = Result<web::Bytes, std::convert::Infallible>>, HttpResponse>,
    ApiError,
> {
    let unavailable =
        |what: String| ApiError::Unavailable(format!("session {session}'s owner {owner} {what}"));
    // No total timeout: the stream lasts as long as the owner keeps it open.
    let client = awc::Client::builder()
        .disable_timeout()
        .connector(
            awc::Connector::new()
                .rustls_0_23(state.forward_tls.clone())
                .timeout(CONNECT_TIMEOUT),
        )
        .finish();
    // Server-Sent Events whatever the caller asked for (a WebSocket reader's stream is
    // relayed from them too).
    let mut out = client
        .get(target(url, req))
        .insert_header((header::ACCEPT, "text/event-stream"));
    for h in on_behalf(state, req, who, (owner, b""))? {
        out = out.insert_header(h);
    }
    let last_event_id = HeaderName::from_static("last-event-id");
    if let Some(v) = req.headers().get(&last_event_id) {
        out = out.insert_header((last_event_id, v.clone()));
    }
    let mut resp = match tokio::time::timeout(STREAM_HEAD_TIMEOUT, out.send()).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return Err(unavailable(format!("did not answer: {}", with_hint(&e)))),
        Err(_) => {
            return Err(unavailable(format!(
                "did not answer within {STREAM_HEAD_TIMEOUT:?}"
            )))
        }
    };
    if !resp.status().is_success() {
        let body =
            tokio::time::timeout(STREAM_HEAD_TIMEOUT, resp.body().limit(ERROR_BODY_LIMIT)).await;
        let Ok(Ok(bytes)) = body else {
            return Err(unavailable("answered badly".into()));
        };
        let mut answer = HttpResponse::build(resp.status());
        if let Some(ct) = resp.headers().get(header::CONTENT_TYPE) {
            answer.insert_header((header::CONTENT_TYPE, ct.clone()));
        }
        return Ok(Err(answer.body(bytes)));
    }
    tracing::debug!(session_id = %session, owner, "relaying the owner's event stream");
    let idle = state.stream_heartbeat * STREAM_IDLE_HEARTBEATS;
    Ok(Ok(relay(resp, idle, state.bus.closed(), permit)))
}

/// A failure to reach an owner, in words; one about its certificate says where a private
/// CA is configured.
fn with_hint(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    if text.to_ascii_lowercase().contains("certificate") {
        format!("{text} (is the CA that signed the owner's certificate in [cluster] ca_file?)")
    } else {
        text
    }
}

/// `body`'s chunks as they come, ending when it ends or breaks, when nothing came for
/// `idle`, or when `closed` resolves; `permit` is held until then.
fn relay<B, E>(
    body: B,
    idle: Duration,
    closed: impl std::future::Future<Output = ()> + 'static,
    permit: StreamPermit,
) -> impl Stream<Item = Result<web::Bytes, std::convert::Infallible>>
where
    B: Stream<Item = Result<web::Bytes, E>> + Unpin + 'static,
    E: std::fmt::Display,
{
    let closed = Box::pin(closed);
    stream::unfold(
        (body, closed, permit),
        move |(mut body, mut closed, permit)| async move {
            let next = tokio::select! {
                () = &mut closed => None,
                next = tokio::time::timeout(idle, body.next()) => match next {
                    Ok(Some(Ok(chunk))) => Some(chunk),
                    Ok(Some(Err(e))) => {
                        tracing::debug!(error = %e, "the owner's event stream broke");
                        None
                    }
                    Ok(None) => None,
                    Err(_) => {
                        tracing::warn!(idle_ms = idle.as_millis() as u64, "the owner's event stream fell silent; ending it");
                        None
                    }
                },
            };
            next.map(|chunk| (Ok(chunk), (body, closed, permit)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permit() -> StreamPermit {
        crate::limits::streams::StreamCaps::new(4, 4)
            .enter(std::sync::Arc::from("t"))
            .expect("a permit")
    }

    async fn all(
        s: impl Stream<Item = Result<web::Bytes, std::convert::Infallible>>,
    ) -> Vec<String> {
        s.map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
            .collect()
            .await
    }

    #[actix_rt::test]
    async fn a_relay_passes_each_chunk_and_ends_with_the_owner_s_stream() {
        let body = stream::iter(["a", "b"].map(|c| Ok::<_, String>(web::Bytes::from(c))));
        let got = all(relay(
            body,
            Duration::from_secs(5),
            std::future::pending(),
            permit(),
        ))
        .await;
        assert_eq!(got, ["a", "b"]);
        let broken = stream::iter([
            Ok(web::Bytes::from("a")),
            Err("reset".to_owned()),
            Ok(web::Bytes::from("never")),
        ]);
        let got = all(relay(
            broken,
            Duration::from_secs(5),
            std::future::pending(),
            permit(),
        ))
        .await;
        assert_eq!(got, ["a"], "a broken body ends the stream");
    }

    #[actix_rt::test]
    async fn a_silent_owner_or_a_shutdown_ends_the_relay() {
        let silent =
            stream::iter([Ok::<_, String>(web::Bytes::from("a"))]).chain(stream::pending());
        let started = std::time::Instant::now();
        let got = all(relay(
            silent,
            Duration::from_millis(50),
            std::future::pending(),
            permit(),
        ))
        .await;
        assert_eq!(got, ["a"]);
        assert!(started.elapsed() >= Duration::from_millis(50));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let quiet = stream::pending::<Result<web::Bytes, String>>();
        let relayed = relay(
            quiet,
            Duration::from_secs(60),
            async move {
                let _ = stopped.await;
            },
            permit(),
        );
        drop(stop);
        let got = tokio::time::timeout(Duration::from_secs(5), all(relayed))
            .await
            .expect("ended by the shutdown");
        assert!(got.is_empty());
    }
}
