//! The live event stream (SSE and WebSocket): framing, order, resume, lagged, transcript.

use std::time::Duration;

use crate::common::sse::SseReader;
use crate::common::{Harness, Sess, ADMIN_TOKEN};
use futures_util::StreamExt;
use serde_json::json;

const T: Duration = Duration::from_secs(10);

#[actix_rt::test]
async fn sse_streams_events_in_order_and_resumes_with_after() {
    let h = Harness::start(vec![Sess::new("s1"), Sess::new("s2")], &[]).await;
    // Settle both sessions first: their state changes would be events too.
    h.wait_state("s1", "connected").await;
    h.wait_state("s2", "connected").await;
    let resp = h
        .http
        .get(format!("{}/v1/events?session_id=s1", h.api))
        .insert_header(("accept", "text/event-stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut sse = SseReader::new(resp);
    for i in 0..5 {
        h.sim.push("s2", json!({"type":"assistant","other":i}));
        h.sim.push("s1", json!({"type":"assistant","n":i}));
    }
    let mut seqs = vec![];
    for i in 0..5 {
        let e = sse.next(T).await.unwrap();
        assert_eq!(e.event, "sdk_message");
        assert_eq!(e.data["session_id"], "s1", "filtered to s1");
        assert_eq!(e.data["message"]["n"], i, "in order");
        assert_eq!(e.id, e.data["seq"].as_u64());
        seqs.push(e.id.unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Reconnect with after = the second one: exactly the rest, from history.
    let resp = h
        .http
        .get(format!(
            "{}/v1/events?session_id=s1&after={}",
            h.api, seqs[1]
        ))
        .send()
        .await
        .unwrap();
    let mut again = SseReader::new(resp);
    for want in &seqs[2..] {
        assert_eq!(again.next(T).await.unwrap().id, Some(*want));
    }
    // Last-Event-ID does the same.
    let resp = h
        .http
        .get(format!("{}/v1/events?session_id=s1", h.api))
        .insert_header(("last-event-id", seqs[3].to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        SseReader::new(resp).next(T).await.unwrap().id,
        Some(seqs[4])
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn evicted_history_gives_an_explicit_lagged() {
    let env = [("CCR_SUPERVISOR__API__HISTORY_EVENTS", "3")];
    let h = Harness::start(vec![Sess::new("s1")], &env).await;
    h.wait_state("s1", "connected").await;
    let mut bus = h.bus();
    for i in 0..10 {
        h.sim.push("s1", json!({"type":"assistant","n":i}));
    }
    // The first message's number: a point of this stream whose successors are evicted.
    let first_seq = tokio::time::timeout(T, async {
        loop {
            let env = bus.recv().await.expect("bus");
            if matches!(&env.event, ccr_supervisor::events::Event::SdkMessage { message, .. } if message.contains("\"n\":0")) {
                break env.seq;
            }
        }
    })
    .await
    .expect("the first message");
    crate::common::wait_bus(&mut bus, |e| matches!(e, ccr_supervisor::events::Event::SdkMessage { message, .. } if message.contains("\"n\":9"))).await;
    let resp = h
        .http
        .get(format!(
            "{}/v1/events?session_id=s1&after={first_seq}",
            h.api
        ))
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(resp);
    let lag = sse.next(T).await.unwrap();
    assert_eq!(lag.event, "lagged");
    assert_eq!(lag.data["reason"], "history_evicted");
    let first = sse.next(T).await.unwrap();
    assert_eq!(first.id, lag.data["resume_from"].as_u64());
    let page = h.get("/v1/sessions/s1/messages?after=0&limit=2").await.1;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2, "{page}");
    assert!(page["lagged_from"].is_u64(), "{page}");
    // A point this run never gave (a 1-based one, as an earlier run's could be): said so,
    // then everything retained.
    let resp = h
        .http
        .get(format!("{}/v1/events?session_id=s1&after=5", h.api))
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(resp);
    let lag = sse.next(T).await.unwrap();
    assert_eq!(lag.data["reason"], "resume_point_unknown", "{lag:?}");
    assert_eq!(
        sse.next(T).await.unwrap().id,
        lag.data["resume_from"].as_u64()
    );
    let page = h.get("/v1/sessions/s1/messages?after=5").await.1;
    assert_eq!(page["messages"].as_array().unwrap().len(), 3, "{page}");
    h.shutdown().await;
}

#[actix_rt::test]
async fn slow_subscriber_is_dropped_with_lagged_while_sessions_keep_flowing() {
    slow_subscriber_is_dropped(&[("CCR_SUPERVISOR__API__EVENT_BUFFER", "16")]).await;
}

#[actix_rt::test]
async fn a_reader_may_not_fall_behind_by_more_than_the_history_budget() {
    // A count the flood never reaches: the byte bound (here 4 frames) drops it.
    slow_subscriber_is_dropped(&[
        ("CCR_SUPERVISOR__API__EVENT_BUFFER", "1000000"),
        ("CCR_SUPERVISOR__API__HISTORY_TOTAL_BYTES", "65536"),
    ])
    .await;
}

async fn slow_subscriber_is_dropped(bounds: &[(&str, &str)]) {
    let mut env = vec![("CCR_SUPERVISOR__CCR__MAX_FRAME_BYTES", "65536")];
    env.extend_from_slice(bounds);
    let h = Harness::start(vec![Sess::new("s1")], &env).await;
    h.wait_state("s1", "connected").await;
    // Subscribe and then do not read: the socket fills, the server stops pulling.
    let resp = h
        .http
        .get(format!("{}/v1/events", h.api))
        .send()
        .await
        .unwrap();
    let pad = "x".repeat(16_000);
    let frames = 1500u64;
    let mut bus = h.bus();
    for i in 0..frames {
        h.sim
            .push("s1", json!({"type":"stream_event","i":i,"pad":pad}));
    }
    h.sim.push("s1", json!({"type":"result","marker":true}));
    // The session routed every frame although the subscriber is stuck. (This
    // watcher shares the tiny buffer, so it skips what it missed.)
    tokio::time::timeout(T, async {
        loop {
            match bus.recv().await {
                Ok(e) if e.json().contains("\"marker\":true") => break,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("marker routed");
    assert_eq!(
        h.session("s1").await["counters"]["frames_in"]["sdk"],
        frames + 1
    );
    // Now read: some events, then a `lagged` notice, then the end of the stream.
    let mut sse = SseReader::new(resp);
    let mut last = None;
    while let Some(e) = sse.next(T).await {
        last = Some(e);
    }
    let last = last.expect("some events");
    assert_eq!(last.event, "lagged", "{last:?}");
    assert_eq!(last.data["reason"], "slow_reader");
    assert!(last.data["missed"].as_u64().unwrap() > 0);
    h.shutdown().await;
}

#[actix_rt::test]
async fn websocket_stream_carries_the_same_events() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    let (_, mut ws) = awc::Client::new()
        .ws(format!("{}/v1/events?session_id=s1", h.api))
        .bearer_auth(ADMIN_TOKEN)
        .connect()
        .await
        .unwrap();
    h.prompt("s1", "ws1", "Bash", json!({"command":"ls"})).await;
    let frame = tokio::time::timeout(T, async {
        loop {
            match ws.next().await {
                Some(Ok(awc::ws::Frame::Text(t))) => {
                    let v = serde_json::from_slice::<serde_json::Value>(&t).unwrap();
                    // The session's own state changes may come first.
                    if v["type"] == "permission_requested" {
                        return v;
                    }
                }
                Some(Ok(_)) => continue,
                other => panic!("stream ended: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(frame["type"], "permission_requested");
    assert_eq!(frame["request_id"], "ws1");
    assert!(frame["seq"].is_u64());
    h.shutdown().await;
}

#[actix_rt::test]
async fn sse_types_filter_keeps_only_the_named_types() {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    let resp = h
        .http
        .get(format!(
            "{}/v1/events?types=permission_requested,%20permission_answered",
            h.api
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut sse = SseReader::new(resp);
    h.sim.push("s1", json!({"type":"assistant","n":1}));
    h.prompt("s1", "r1", "Bash", json!({"command": "ls"})).await;
    let (status, _) = h.decide("s1", "r1", json!({"behavior": "allow"})).await;
    assert_eq!(status, 200);
    // No sdk_message, no permission_delivered: only the two named types, in order.
    let first = sse.next(T).await.unwrap();
    assert_eq!(first.event, "permission_requested");
    let second = sse.next(T).await.unwrap();
    assert_eq!(second.event, "permission_answered");
    assert_eq!(second.data["request_id"], "r1");

    let (status, body) = h.get("/v1/events?types=permission_requested,nope").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
    h.shutdown().await;
}
