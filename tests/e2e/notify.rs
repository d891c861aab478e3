//! Notifications end to end: the real app posts to a real HTTP receiver (actix-web on
//! 127.0.0.1, port 0, inside the test). Signatures, retries, refusals, overflow, and
//! that a hanging receiver never delays answering a prompt. Every wait is on an event.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use ccr_protocol::metrics::sample;
use ccr_sim::SimEvent;
use ccr_supervisor::notify::sign::verify;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::common::{Harness, Sess, WAIT};

/// One request the receiver got.
#[derive(Debug)]
struct Got {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How the receiver answers: statuses from a script (then 200), or never.
enum Mode {
    Script(VecDeque<u16>),
    Hang,
}

struct State {
    mode: Mutex<Mode>,
    tx: mpsc::UnboundedSender<Got>,
}

/// A local HTTP receiver and the requests it got, in order.
struct Receiver {
    url: String,
    got: mpsc::UnboundedReceiver<Got>,
    server: ServerHandle,
}

impl Receiver {
    async fn start(mode: Mode) -> Self {
        let (tx, got) = mpsc::unbounded_channel();
        let state = web::Data::new(State {
            mode: Mutex::new(mode),
            tx,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .expect("receiver binds");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
            server: handle,
        }
    }

    /// The next request the receiver got.
    async fn next(&mut self) -> Got {
        tokio::time::timeout(WAIT, self.got.recv())
            .await
            .expect("timed out waiting for a notification")
            .expect("receiver open")
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, st: web::Data<State>) -> HttpResponse {
    let status = match &mut *st.mode.lock().unwrap() {
        Mode::Script(q) => Some(q.pop_front().unwrap_or(200)),
        Mode::Hang => None,
    };
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let _ = st.tx.send(Got {
        headers,
        body: body.to_vec(),
    });
    match status {
        Some(s) => HttpResponse::build(StatusCode::from_u16(s).unwrap()).finish(),
        None => std::future::pending().await,
    }
}

/// A `[[notify]]` webhook to `url`, signed with the secret in `secret_file`, plus `more` keys.
fn webhook(url: &str, secret_file: &std::path::Path, events: &str, more: &str) -> String {
    format!(
        "\n[[notify]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"{}\"\nevents = {events}\nbackoff_initial = \"10ms\"\nbackoff_max = \"20ms\"\n{more}\n",
        secret_file.display()
    )
}

fn secret_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("hook-secret");
    std::fs::write(&path, "whsec-test-1\n").unwrap();
    path
}

async fn metrics(h: &Harness) -> String {
    let mut resp = h
        .http
        .get(format!("{}/metrics", h.api))
        .send()
        .await
        .unwrap();
    String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap()
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

fn answered(id: String) -> impl FnMut(&SimEvent) -> bool {
    move |e| matches!(e, SimEvent::Answered { request_id, .. } if *request_id == id)
}

const READ_RULE: &str =
    "[policy]\n[[policy.rules]]\nid = \"reads\"\naction = \"allow\"\ntool = \"Read\"\n";

#[actix_rt::test]
async fn a_prompt_left_to_a_human_is_posted_signed_with_its_console_link() {
    let dir = tempfile::tempdir().unwrap();
    let mut recv = Receiver::start(Mode::Script(VecDeque::new())).await;
    let toml = format!(
        "{READ_RULE}[console]\npublic_url = \"https://console.example/ccr/\"\n{}",
        webhook(
            &recv.url,
            &secret_file(&dir),
            "[\"permission_requested\"]",
            ""
        )
    );
    let mut h = Harness::start_with(vec![Sess::new("s1")], &[], &toml).await;
    h.wait_sim_connected("s1").await;
    // A rule answers this one: it is never notified (the next request is about b/1).
    h.sim
        .prompt("s1", "r1", "Read", json!({"file_path": "/etc/hosts"}));
    h.wait_sim(answered("r1".into())).await;
    h.prompt("s1", "b 1", "Bash", json!({"command": "make deploy"}))
        .await;
    let got = recv.next().await;
    let body = got.json();
    assert_eq!(body["type"], "permission_requested", "{body}");
    assert_eq!(body["request_id"], "b 1");
    assert_eq!(body["session_id"], "s1");
    assert_eq!(body["labels"], json!(["test"]));
    assert_eq!(body["tool_name"], "Bash");
    assert_eq!(body["input_summary"], "make deploy");
    assert_eq!(
        body["link"],
        "https://console.example/ccr/ui/prompts/s1/b%201"
    );
    assert_eq!(got.headers["x-ccr-event"], "permission_requested");
    assert_eq!(got.headers["content-type"], "application/json");
    let ts: u64 = got.headers["x-ccr-timestamp"].parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) < 60, "timestamp {ts} vs now {now}");
    let sig = &got.headers["x-ccr-signature"];
    assert!(verify(b"whsec-test-1", ts, &got.body, sig), "{sig}");
    assert!(
        !verify(b"whsec-test-1", ts + 1, &got.body, sig),
        "the timestamp is signed"
    );
    // The operator answers as usual; nothing else is posted for it.
    let (status, _) = h.decide("s1", "b%201", json!({"behavior": "allow"})).await;
    assert_eq!(status, 200);
    let text = metrics(&h).await;
    assert!(
        !text.contains(&recv.url) && !text.contains("127.0.0.1:"),
        "no URL in metrics"
    );
    assert!(
        !crate::common::logs::all().contains(&recv.url),
        "no URL in logs"
    );
    recv.server.stop(false).await;
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_503_is_retried_until_delivered_and_a_4xx_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let script = VecDeque::from([503, 503, 200, 400, 200]);
    let mut recv = Receiver::start(Mode::Script(script)).await;
    let toml = webhook(
        &recv.url,
        &secret_file(&dir),
        "[\"permission_requested\"]",
        "max_attempts = 5",
    );
    let mut h = Harness::start_with(vec![Sess::new("s1")], &[], &toml).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "p1", "Bash", json!({"command": "a"})).await;
    let tries: Vec<Got> = vec![recv.next().await, recv.next().await, recv.next().await];
    let ids: Vec<&str> = tries
        .iter()
        .map(|g| g.headers["x-ccr-delivery"].as_str())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one delivery, three attempts: {ids:?}"
    );
    assert!(tries.iter().all(|g| g.json()["request_id"] == "p1"));
    h.prompt("s1", "p2", "Bash", json!({"command": "b"})).await;
    assert_eq!(recv.next().await.json()["request_id"], "p2", "answered 400");
    h.prompt("s1", "p3", "Bash", json!({"command": "c"})).await;
    // p2 was refused and not tried again: the next request is p3. The sink's one thread
    // finished counting p2 before it took p3, and p3's delivery is counted before its
    // thread takes anything else; so, once p3 is here and one more is delivered, the
    // counts are final.
    assert_eq!(recv.next().await.json()["request_id"], "p3");
    h.prompt("s1", "p4", "Bash", json!({"command": "d"})).await;
    assert_eq!(recv.next().await.json()["request_id"], "p4");
    let text = metrics(&h).await;
    assert!(
        value(&text, "ccr_supervisor_notify_sent_total{sink=\"hook\"}") >= 2.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "ccr_supervisor_notify_failed_total{sink=\"hook\"}"),
        3.0
    );
    let dropped = |reason: &str| {
        value(
            &text,
            &format!("ccr_supervisor_notify_dropped_total{{sink=\"hook\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(dropped("rejected"), 1.0);
    assert_eq!(dropped("retries_exhausted"), 0.0);
    assert!(
        value(
            &text,
            "ccr_supervisor_notify_latency_seconds_count{sink=\"hook\"}"
        ) >= 2.0
    );
    recv.server.stop(false).await;
    h.shutdown().await;
}

#[actix_rt::test]
async fn a_full_queue_drops_and_counts_the_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let mut recv = Receiver::start(Mode::Hang).await;
    let more = "timeout = \"60s\"\nqueue_events = 1";
    let toml = webhook(
        &recv.url,
        &secret_file(&dir),
        "[\"permission_requested\"]",
        more,
    );
    let mut h = Harness::start_with(vec![Sess::new("s1")], &[], &toml).await;
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "q1", "Bash", json!({"command": "1"})).await;
    // The sink's thread holds q1, waiting on the receiver that never answers.
    assert_eq!(recv.next().await.json()["request_id"], "q1");
    h.prompt("s1", "q2", "Bash", json!({"command": "2"})).await; // queued
    h.prompt("s1", "q3", "Bash", json!({"command": "3"})).await; // no room
    h.prompt("s1", "q4", "Bash", json!({"command": "4"})).await; // no room
                                                                 // Counted before the prompt is published, so final once `prompt` returned.
    let text = metrics(&h).await;
    let overflow = "ccr_supervisor_notify_dropped_total{sink=\"hook\",reason=\"overflow\"}";
    assert_eq!(value(&text, overflow), 2.0, "{text}");
    assert_eq!(
        value(&text, "ccr_supervisor_notify_sent_total{sink=\"hook\"}"),
        0.0
    );
    h.shutdown().await;
    recv.server.stop(false).await;
}

/// Prompt → operator answer → answer at the session, `n` times; the durations sorted.
async fn answer_latencies(h: &mut Harness, prefix: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        let started = Instant::now();
        h.prompt("s1", &id, "Bash", json!({"command": format!("echo {i}")}))
            .await;
        let (status, body) = h.decide("s1", &id, json!({"behavior": "allow"})).await;
        assert_eq!(status, 200, "{body}");
        h.wait_sim(answered(id)).await;
        out.push(started.elapsed());
    }
    out.sort();
    out
}

#[actix_rt::test]
async fn a_hanging_receiver_never_delays_answering_prompts() {
    const N: usize = 30;
    let mut base = Harness::start(vec![Sess::new("s1")], &[]).await;
    base.wait_sim_connected("s1").await;
    let _warm = answer_latencies(&mut base, "warm", 3).await;
    let baseline = answer_latencies(&mut base, "lat", N).await;
    base.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let mut recv = Receiver::start(Mode::Hang).await;
    let events = "[\"permission_requested\", \"permission.overdue\", \"permission_expired\", \"session_failed\"]";
    let more = "timeout = \"60s\"\nqueue_events = 4";
    let toml = webhook(&recv.url, &secret_file(&dir), events, more);
    let mut h = Harness::start_with(vec![Sess::new("s1")], &[], &toml).await;
    h.wait_sim_connected("s1").await;
    let _warm = answer_latencies(&mut h, "warm", 3).await;
    assert_eq!(
        recv.next().await.json()["request_id"],
        "warm-0",
        "the sink hangs on it"
    );
    let hanging = answer_latencies(&mut h, "lat", N).await;
    let text = metrics(&h).await;
    let overflow = "ccr_supervisor_notify_dropped_total{sink=\"hook\",reason=\"overflow\"}";
    assert!(value(&text, overflow) >= (N - 4) as f64, "{text}");

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (b50, h50) = (ms(baseline[N / 2]), ms(hanging[N / 2]));
    let (b90, h90) = (ms(baseline[N * 9 / 10]), ms(hanging[N * 9 / 10]));
    println!(
        "answer latency over {N} prompts (prompt sent -> answer at the session): \
         no sink: p50 {b50:.2} ms, p90 {b90:.2} ms, max {:.2} ms; \
         hanging webhook: p50 {h50:.2} ms, p90 {h90:.2} ms, max {:.2} ms",
        ms(baseline[N - 1]),
        ms(hanging[N - 1]),
    );
    // Generous: a shared 2-core box varies by 2x between runs; a blocked path would add the
    // receiver's whole 60 s timeout.
    assert!(h50 <= b50 * 4.0 + 25.0, "p50 {h50:.2} ms vs {b50:.2} ms");
    assert!(h90 <= b90 * 4.0 + 50.0, "p90 {h90:.2} ms vs {b90:.2} ms");
    h.shutdown().await;
    recv.server.stop(false).await;
}

#[actix_rt::test]
async fn slack_hears_of_overdue_and_expired_prompts_and_failed_sessions() {
    let mut recv = Receiver::start(Mode::Script(VecDeque::new())).await;
    let bad = Sess::new("bad").token_toml("token = \"nope\"", "right");
    let toml = format!(
        "[policy]\nremind_after = \"50ms\"\nask_timeout = \"150ms\"\n\n[[notify]]\nname = \"chat\"\nkind = \"slack\"\nurl = \"{}\"\nevents = [\"permission.overdue\", \"permission_expired\", \"session_failed\"]\n",
        recv.url
    );
    let mut h = Harness::start_with(vec![Sess::new("s1"), bad], &[], &toml).await;
    let failed = recv.next().await.json();
    let text = failed["text"].as_str().unwrap();
    assert!(
        text.contains("Session `bad` failed (unauthorized)"),
        "{text}"
    );
    h.wait_sim_connected("s1").await;
    h.prompt("s1", "slow", "Bash", json!({"command": "sleep 1"}))
        .await;
    let overdue = recv.next().await.json();
    let text = overdue["text"].as_str().unwrap();
    assert!(text.contains("Permission overdue"), "{text}");
    assert!(
        text.contains("`sleep 1`") && text.contains("*Session:* `s1`"),
        "{text}"
    );
    let link = format!("<{}/ui/prompts/s1/slow|Open in console>", h.api);
    assert!(text.contains(&link), "{text}");
    let expired = recv.next().await.json();
    assert!(
        expired["text"]
            .as_str()
            .unwrap()
            .contains("Permission expired"),
        "{expired}"
    );
    recv.server.stop(false).await;
    h.shutdown().await;
}
