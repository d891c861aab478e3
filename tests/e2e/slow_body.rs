//! `[api] request_body_timeout`: a request whose body stalls or trickles is answered
//! 408 `request_timeout` and its connection closed, while other requests keep working.

use std::time::{Duration, Instant};

use crate::common::{Harness, Sess, ADMIN_TOKEN, WAIT};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The configured limit in these tests.
const LIMIT: Duration = Duration::from_millis(400);

async fn start() -> Harness {
    Harness::start(
        vec![Sess::new("s1")],
        &[("CCR_SUPERVISOR__API__REQUEST_BODY_TIMEOUT", "400ms")],
    )
    .await
}

/// Open a raw connection and send a request head with a valid admin token that
/// announces a 64-byte JSON body, plus the first `first` bytes of it.
async fn begin_slow_post(h: &Harness, first: &[u8]) -> TcpStream {
    let addr = h.app().api_addr;
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/sessions/s1/permissions/r1 HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n\
         Content-Length: 64\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(first).await.unwrap();
    sock
}

/// Everything the server sends until it closes the connection (bounded by `WAIT`).
async fn read_to_close(sock: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut out))
        .await
        .expect("the server answered and closed the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn assert_408(answer: &str) {
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert!(!answer.contains(ADMIN_TOKEN), "{answer}");
}

#[actix_rt::test]
async fn a_stalled_body_is_answered_408_and_others_keep_working() {
    let mut h = start().await;
    h.wait_sim_connected("s1").await;
    // An event-stream WebSocket is an upgrade: its payload lives as long as the socket.
    let (_, mut ws) = awc::Client::new()
        .ws(format!("{}/v1/events?session_id=s1", h.api))
        .bearer_auth(ADMIN_TOKEN)
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    let mut stalled = begin_slow_post(&h, b"{\"behav").await;
    // While that body stalls, the single API worker still serves everyone else.
    let (status, body) = h.get("/v1/sessions").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = h
        .decide("s1", "nope", serde_json::json!({"behavior":"allow"}))
        .await;
    assert_eq!(status, 404, "a complete body is read as usual: {body}");
    let answer = read_to_close(&mut stalled).await;
    assert_408(&answer);
    assert!(started.elapsed() >= LIMIT, "not before the limit");
    // The WebSocket opened before the limit still carries events after it.
    h.prompt("s1", "late", "Bash", serde_json::json!({"command":"ls"}))
        .await;
    let seen = tokio::time::timeout(WAIT, async {
        while let Some(frame) = ws.next().await {
            if let Ok(awc::ws::Frame::Text(t)) = frame {
                let v: serde_json::Value = serde_json::from_slice(&t).unwrap();
                if v["type"] == "permission_requested" {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "WebSocket stream still open");
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_trickled_body_gets_no_more_than_the_limit_in_total() {
    let h = start().await;
    let mut sock = begin_slow_post(&h, b"{").await;
    let started = Instant::now();
    // One byte every 50 ms: never idle for long, but 64 bytes would take 3.2 s.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                n = sock.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                },
                _ = tick.tick() => {
                    // The server may already have closed: a failed write ends the trickle.
                    let _ = sock.write_all(b" ").await;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .expect("answered within the test's bound");
    assert_408(&answer);
    assert!(started.elapsed() >= LIMIT, "not before the limit");
    h.shutdown().await;
}
