//! SIGHUP reloads the file: `[[sessions]]` (added started, removed stopped), the policy
//! (hit counts of unchanged rules kept), operator tokens and notification sinks; an
//! invalid file is rejected with every problem logged and nothing changed.

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use ccr_sim::SimEvent;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::support::{config_toml, get, http, start_sim, wait_sim, write_file, Supervisor, WAIT};

#[actix_rt::test]
async fn sighup_applies_the_session_diff_and_rejects_a_bad_file() {
    let sim = start_sim(&["r1", "r2"]).await;
    let mut events = sim.subscribe();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let path = write_file(
        dir.path(),
        "c.toml",
        &config_toml(&sim.base_url(), &["r1"], &ledger, ""),
    );
    let mut sup = Supervisor::spawn(&path).await;
    if !sim.is_connected("r1") {
        wait_sim(
            &mut events,
            |e| matches!(e, SimEvent::Connected { session, .. } if session == "r1"),
        )
        .await;
    }
    // r1 out, r2 in.
    write_file(
        dir.path(),
        "c.toml",
        &config_toml(&sim.base_url(), &["r2"], &ledger, ""),
    );
    sup.signal(libc::SIGHUP);
    wait_sim(
        &mut events,
        |e| matches!(e, SimEvent::Connected { session, .. } if session == "r2"),
    )
    .await;
    if sim.is_connected("r1") {
        wait_sim(
            &mut events,
            |e| matches!(e, SimEvent::Disconnected { session, .. } if session == "r1"),
        )
        .await;
    }
    // An invalid file is rejected: the process keeps running with r2.
    write_file(dir.path(), "c.toml", "[api]\nbind = \"nonsense\"\n");
    sup.signal(libc::SIGHUP);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !sup.stderr_now().contains("reload rejected") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejection logged:\n{}",
            sup.stderr_now()
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // bounded wait on the child's log
    }
    assert!(sim.is_connected("r2"), "running set kept");
    assert_eq!(sim.connections("r1"), 1, "r1 not reconnected");
    sup.signal(libc::SIGTERM);
    assert!(sup.wait_exit(Duration::from_secs(5)).await.success());
    sim.stop().await;
}

/// Wait (bounded) until the child's stderr holds `needle` at least `times` times.
async fn wait_log(sup: &Supervisor, needle: &str, times: usize) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = sup.stderr_now();
        if log.matches(needle).count() >= times {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle:?} not logged {times} time(s):\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // bounded wait on the child's log
    }
}

/// A local HTTP receiver of notifications: each request's body, in order.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let server = HttpServer::new(move || {
        let tx = tx.clone();
        App::new().default_service(web::to(move |body: web::Bytes| {
            let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
            async { HttpResponse::Ok().finish() }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("receiver binds");
    let url = format!("http://{}/hook", server.addrs()[0]);
    actix_rt::spawn(server.run());
    (url, rx)
}

/// The hit count of rule `id` in `GET /v1/policy`.
async fn hits(api: &str, id: &str) -> u64 {
    let (status, report) = get(&http(), &format!("{api}/v1/policy")).await;
    assert_eq!(status, 200, "{report}");
    report["hits"][id].as_u64().unwrap_or(0)
}

/// `GET /v1/sessions` with `token`: the status.
async fn status_with(api: &str, token: &str) -> u16 {
    let client = awc::Client::builder()
        .add_default_header(("authorization", format!("Bearer {token}")))
        .finish();
    let resp = client
        .get(format!("{api}/v1/sessions"))
        .send()
        .await
        .expect("GET");
    resp.status().as_u16()
}

/// Prompt `request_id` for `tool` on `r1` and wait until the simulator has its answer.
async fn answered(
    sim: &ccr_sim::SimHandle,
    events: &mut tokio::sync::broadcast::Receiver<SimEvent>,
    request_id: &str,
    tool: &str,
) {
    assert!(sim.prompt("r1", request_id, tool, json!({"file_path": "/x"})));
    wait_sim(
        events,
        |e| matches!(e, SimEvent::Answered { request_id: r, .. } if r == request_id),
    )
    .await;
}

const KEEP_RULE: &str = "\n[[policy.rules]]\nid = \"keep\"\naction = \"allow\"\ntool = \"Read\"\n";

#[actix_rt::test]
async fn sighup_with_an_invalid_policy_keeps_the_old_one_and_a_valid_one_takes_effect() {
    let sim = start_sim(&["r1"]).await;
    let mut events = sim.subscribe();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let base = config_toml(&sim.base_url(), &["r1"], &ledger, "");
    let path = write_file(dir.path(), "c.toml", &format!("{base}{KEEP_RULE}"));
    let mut sup = Supervisor::spawn(&path).await;
    if !sim.is_connected("r1") {
        wait_sim(
            &mut events,
            |e| matches!(e, SimEvent::Connected { session, .. } if session == "r1"),
        )
        .await;
    }
    answered(&sim, &mut events, "p1", "Read").await;
    assert_eq!(hits(&sup.api, "keep").await, 1);

    // Invalid: a second rule's tool pattern does not compile. Its token and sink must not
    // appear either: all or nothing.
    let newbie_digest = hex_sha256("newbie-token");
    let newbie = format!(
        "[[api.tokens]]\nname = \"newbie\"\nrole = \"viewer\"\nsha256 = \"{newbie_digest}\"\n"
    );
    let bad = format!(
        "{}{KEEP_RULE}\n[[policy.rules]]\nid = \"bash\"\naction = \"allow\"\ntool = \"Bash(\"\n",
        base.replace("[ccr]", &format!("{newbie}\n[ccr]"))
    );
    write_file(dir.path(), "c.toml", &bad);
    sup.signal(libc::SIGHUP);
    let log = wait_log(&sup, "reload rejected", 1).await;
    assert!(
        log.contains("policy.rules[1].tool"),
        "key path logged:\n{log}"
    );
    answered(&sim, &mut events, "p2", "Read").await;
    assert_eq!(
        hits(&sup.api, "keep").await,
        2,
        "the old rule still answers"
    );
    assert_eq!(hits(&sup.api, "bash").await, 0);
    assert_eq!(
        status_with(&sup.api, "newbie-token").await,
        401,
        "no token from a refused file"
    );

    // Valid: the new rule answers, `keep`'s count survives, the viewer token is gone, the
    // new token and the new sink work.
    let (hook, mut notices) = receiver().await;
    let viewer = format!(
        "[[api.tokens]]\nname = \"viewer\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
        hex_sha256(crate::common::VIEWER_TOKEN)
    );
    assert!(
        base.contains(&viewer),
        "the base config has the viewer token"
    );
    let good = format!(
        "{}{KEEP_RULE}\n[[policy.rules]]\nid = \"bash\"\naction = \"allow\"\ntool = \"Bash\"\n\
         \n[[notify]]\nname = \"hook\"\nkind = \"slack\"\nurl = \"{hook}\"\nevents = [\"permission_requested\"]\n",
        base.replace(&viewer, "")
            .replace("[ccr]", &format!("{newbie}\n[ccr]"))
    );
    write_file(dir.path(), "c.toml", &good);
    assert_eq!(
        status_with(&sup.api, crate::common::VIEWER_TOKEN).await,
        200
    );
    sup.signal(libc::SIGHUP);
    let log = wait_log(&sup, "SIGHUP: config reloaded", 1).await;
    let line = log
        .lines()
        .find(|l| l.contains("SIGHUP: config reloaded"))
        .unwrap();
    for part in [
        "rules_added=bash",
        "tokens_added=newbie",
        "tokens_removed=viewer",
        "notify_added=hook",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    assert!(!log.contains(&newbie_digest), "no digest logged");
    assert!(!log.contains(&hook), "no sink URL logged");
    answered(&sim, &mut events, "p3", "Bash").await;
    assert_eq!(hits(&sup.api, "bash").await, 1, "the new rule answered");
    assert_eq!(
        hits(&sup.api, "keep").await,
        2,
        "an unchanged rule keeps its count"
    );
    assert_eq!(status_with(&sup.api, "newbie-token").await, 200);
    assert_eq!(
        status_with(&sup.api, crate::common::VIEWER_TOKEN).await,
        401
    );
    // Nobody's rule answers a Write: left to a human, so the new sink hears of it.
    assert!(sim.prompt("r1", "p4", "Write", json!({"file_path": "/x"})));
    let notice = tokio::time::timeout(WAIT, notices.recv())
        .await
        .expect("a notification within the wait")
        .expect("receiver open");
    assert!(
        notice.to_string().contains("p4") || notice.to_string().contains("Write"),
        "{notice}"
    );
    sup.signal(libc::SIGTERM);
    assert!(sup.wait_exit(Duration::from_secs(5)).await.success());
    sim.stop().await;
}

fn hex_sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}
