//! Event-stream reader caps: `[api] max_stream_subscribers` (total, SSE and
//! WebSocket together) and `max_stream_subscribers_per_token`; beyond either,
//! 503 `too_many_streams`, and a closed stream frees its place.

use std::time::{Duration, Instant};

use crate::common::sse::SseReader;
use crate::common::{client_with, Harness, Sess, ADMIN_TOKEN, VIEWER_TOKEN, WAIT};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

/// `GET /v1/events` as SSE with `client`: the open response, or the error status and body.
async fn open(
    client: &awc::Client,
    api: &str,
) -> Result<
    SseReader<
        impl futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
    >,
    (u16, Value),
> {
    let mut resp = client
        .get(format!("{api}/v1/events?session_id=s1"))
        .insert_header(("accept", "text/event-stream"))
        .send()
        .await
        .expect("GET /v1/events");
    let status = resp.status().as_u16();
    if status == 200 {
        return Ok(SseReader::new(resp));
    }
    let retry = resp.headers().get("retry-after").cloned();
    assert_eq!(
        retry.as_ref().map(|v| v.to_str().unwrap()),
        Some("5"),
        "status {status}"
    );
    let body = resp.body().await.expect("body");
    Err((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

fn refused(r: Result<impl Sized, (u16, Value)>, mentions: &str) {
    let Err((status, body)) = r else {
        panic!("a stream beyond the cap was opened");
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(mentions), "{message}");
}

#[actix_rt::test]
async fn readers_are_capped_per_token_and_in_total_and_freed_on_close() {
    let h = Harness::start(
        vec![Sess::new("s1")],
        &[
            ("CCR_SUPERVISOR__API__MAX_STREAM_SUBSCRIBERS", "3"),
            ("CCR_SUPERVISOR__API__MAX_STREAM_SUBSCRIBERS_PER_TOKEN", "2"),
            // A closed SSE reader is noticed when a write to it fails: heartbeats are writes.
            ("CCR_SUPERVISOR__API__STREAM_HEARTBEAT", "100ms"),
        ],
    )
    .await;
    h.wait_state("s1", "connected").await;
    let viewer = client_with(Some(VIEWER_TOKEN));
    let admin = client_with(Some(ADMIN_TOKEN));

    let mut v1 = open(&viewer, &h.api)
        .await
        .unwrap_or_else(|e| panic!("first viewer stream: {e:?}"));
    let mut v2 = open(&viewer, &h.api)
        .await
        .unwrap_or_else(|e| panic!("second viewer stream: {e:?}"));
    refused(
        open(&viewer, &h.api).await,
        "max_stream_subscribers_per_token",
    );

    // Another token still has room, up to the total; a WebSocket counts too.
    let (_, mut ws) = awc::Client::new()
        .ws(format!("{}/v1/events?session_id=s1", h.api))
        .bearer_auth(ADMIN_TOKEN)
        .connect()
        .await
        .expect("admin WebSocket");
    refused(open(&admin, &h.api).await, "max_stream_subscribers)");
    let ws_refused = awc::Client::new()
        .ws(format!("{}/v1/events", h.api))
        .bearer_auth(ADMIN_TOKEN)
        .connect()
        .await;
    assert!(
        matches!(&ws_refused, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 503),
        "{:?}",
        ws_refused.map(|(r, _)| r.status())
    );

    // The streams that were let in work.
    h.sim.push("s1", json!({"type": "assistant", "n": 1}));
    for sse in [&mut v1, &mut v2] {
        let e = sse.next(T).await.expect("event");
        assert_eq!(e.data["message"]["n"], 1, "{e:?}");
    }
    let text = tokio::time::timeout(T, async {
        use futures_util::StreamExt;
        loop {
            match ws.next().await {
                Some(Ok(awc::ws::Frame::Text(t))) => break t,
                Some(Ok(_)) => {}
                other => panic!("WebSocket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a WebSocket message");
    assert!(String::from_utf8_lossy(&text).contains("\"n\":1"));

    // Closing a stream gives its place back, once the server notices (a write to it fails).
    drop(v1);
    let deadline = Instant::now() + WAIT;
    let again = loop {
        match open(&viewer, &h.api).await {
            Ok(sse) => break sse,
            Err((503, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(other) => panic!("the closed stream's place was not freed: {other:?}"),
        }
    };
    drop((again, v2, ws));
}
