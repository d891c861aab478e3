//! `ctl watch`: rendering against a canned SSE endpoint (the stream contract),
//! and a guarded run against the real app that asserts only what it serves.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::{mpsc, Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};

use super::{ctl, ctl_command, started};
use crate::common::WAIT;

const AT: &str = "2026-11-24T01:02:03.456Z";

/// A stream in the contract's shape: comments, every event kind we render, an unknown one.
fn canned_stream() -> String {
    let events = [
        json!({"seq":1,"at":AT,"type":"session_state","session_id":"demo-1","state":"connected","last_error":null}),
        json!({"seq":2,"at":AT,"type":"permission_requested","session_id":"demo-1","request_id":"req-9",
               "tool_name":"Bash","tool_use_id":"toolu_9",
               "request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"rm -rf build"},"future_field":1}}),
        json!({"seq":3,"at":AT,"type":"permission_answered","session_id":"demo-1","request_id":"req-9",
               "behavior":"allow","decided_by":"operator","delivery":"sent"}),
        json!({"seq":4,"at":AT,"type":"lagged","missed":5}),
        json!({"seq":5,"at":AT,"type":"mystery","session_id":"demo-1","detail":{"k":1}}),
        json!({"seq":6,"at":AT,"type":"sdk_message","session_id":"demo-1","msg_type":"assistant",
               "message":{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Cleaning up"}]}}}),
    ];
    let mut body = String::from(": connected\n\n");
    for e in &events {
        body.push_str(&format!(
            "id: {}\nevent: {}\ndata: {e}\n\n: heartbeat\n\n",
            e["seq"],
            e["type"].as_str().unwrap()
        ));
    }
    body
}

/// What the canned endpoint saw of each request: query, `Accept`, `Authorization`.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

/// Serve the whole canned stream and end it, or (`Hold(true)`) send the first
/// event and keep the stream open forever.
#[derive(Clone, Copy)]
struct Hold(bool);

async fn events(req: HttpRequest, seen: web::Data<Seen>, hold: web::Data<Hold>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    seen.lock().unwrap().push((
        req.query_string().to_owned(),
        header("accept"),
        header("authorization"),
    ));
    let mut resp = HttpResponse::Ok();
    resp.content_type("text/event-stream");
    if !hold.0 {
        return resp.body(canned_stream());
    }
    let first = canned_stream()
        .split("\n\n")
        .take(3)
        .collect::<Vec<_>>()
        .join("\n\n")
        + "\n\n";
    let chunks = stream::once(async move { Ok::<_, actix_web::Error>(Bytes::from(first)) })
        .chain(stream::pending());
    resp.streaming(chunks)
}

/// Serve the canned stream on 127.0.0.1:0 (see [`Hold`]).
async fn canned_server(hold: bool) -> (String, Seen, actix_web::dev::ServerHandle) {
    let seen: Seen = Arc::default();
    let data = web::Data::new(seen.clone());
    let hold = web::Data::new(Hold(hold));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(hold.clone())
            .route("/v1/events", web::get().to(events))
            .route(
                "/v1/permissions",
                web::get().to(|| async { HttpResponse::Ok().json(json!({"permissions":[]})) }),
            )
            .route(
                "/v1/questions",
                web::get().to(|| async { HttpResponse::Ok().json(json!({"questions":[]})) }),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let url = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (url, seen, handle)
}

#[actix_rt::test]
async fn watch_renders_the_canned_stream_one_line_each_without_colour() {
    let (url, seen, server) = canned_server(false).await;
    let out = ctl(
        &url,
        &["--token", "tok-secret", "watch", "demo-1", "--after", "7"],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let t = "01:02:03.456Z";
    let expected = [
        format!("{t} demo-1 state connected"),
        format!("{t} PERMISSION demo-1 req-9 Bash: rm -rf build"),
        format!(
            "    answer: ccr-supervisor ctl --url {url} allow demo-1 req-9   \
             (or: ccr-supervisor ctl --url {url} deny demo-1 req-9)"
        ),
        format!("{t} demo-1 allowed req-9 by operator (sent)"),
        format!("{t} - lagged missed 5 events; the server ends the stream"),
        format!(r#"{t} demo-1 mystery {{"detail":{{"k":1}}}}"#),
        format!("{t} demo-1 sdk assistant: Cleaning up"),
    ];
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), expected);
    assert!(!out.stdout.contains('\u{1b}'), "no colour when not a TTY");
    assert!(!out.stdout.contains("tok-secret") && !out.stderr.contains("tok-secret"));
    assert_eq!(
        out.stderr,
        format!("stream ended by the server; resume with: ccr-supervisor ctl --url {url} watch demo-1 --after 6\n")
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(
            "session_id=demo-1&after=7".to_owned(),
            Some("text/event-stream".to_owned()),
            Some("Bearer tok-secret".to_owned())
        )]
    );
    server.stop(true).await;
}

#[actix_rt::test]
async fn watch_json_prints_one_event_per_line_verbatim() {
    let (url, seen, server) = canned_server(false).await;
    let out = ctl(&url, &["--json", "watch"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let data: Vec<String> = canned_stream()
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_owned))
        .collect();
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), data);
    for line in out.stdout.lines() {
        serde_json::from_str::<Value>(line).expect("each line is one JSON event");
    }
    let seen = seen.lock().unwrap().clone();
    let bearer = format!("Bearer {}", crate::common::ADMIN_TOKEN);
    assert_eq!(
        (seen[0].0.as_str(), seen[0].2.as_deref()),
        ("", Some(bearer.as_str()))
    );
    server.stop(true).await;
}

/// Lines appear as events arrive (not when the stream ends), and Ctrl-C exits 0.
#[actix_rt::test]
async fn watch_prints_live_events_and_exits_0_on_ctrl_c() {
    let (url, _seen, server) = canned_server(true).await;
    let mut child = ctl_command(&url, &["watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let pid = child.id().to_string();
    let (first, status) = actix_rt::task::spawn_blocking(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("first line");
        // SIGINT to our own child, by pid, as a terminal's Ctrl-C would send it.
        let killed = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill -INT");
        assert!(killed.success());
        (line, child.wait().expect("wait"))
    })
    .await
    .expect("join");
    assert_eq!(first, "01:02:03.456Z demo-1 state connected\n");
    assert_eq!(status.code(), Some(0), "Ctrl-C ends watch with exit 0");
    server.stop(false).await;
}

/// Against the real app: until `/v1/events` exists, `watch` must report the
/// server's `not_found` and exit 1; once it exists, a new prompt must show up
/// as a PERMISSION line.
#[actix_rt::test]
async fn watch_against_the_real_server() {
    let h = started().await;
    let resp = h
        .http
        .get(format!("{}/v1/events?session_id=s1", h.api))
        .insert_header(("Accept", "text/event-stream"))
        .send()
        .await
        .expect("GET /v1/events");
    let status = resp.status().as_u16();
    drop(resp);
    assert_eq!(status, 200, "the event stream answers");
    // `--after 0` replays what the subscription might have missed, so the
    // prompt is seen whether the stream opens before or after it arrives.
    let mut child = ctl_command(&h.api, &["watch", "s1", "--after", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    h.prompt("s1", "req-w", "Bash", json!({"command":"make deploy"}))
        .await;
    let found = actix_rt::task::spawn_blocking(move || loop {
        match rx.recv_timeout(WAIT) {
            Ok(l) if l.contains("PERMISSION s1 req-w Bash: make deploy") => return Ok(l),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    })
    .await
    .expect("join");
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert!(found.is_ok(), "no PERMISSION line; stderr: {stderr}");
    h.shutdown().await;
}
