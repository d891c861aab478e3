//! `kill -9` and restart on the same ledger: an unanswered prompt comes back
//! answerable (and is not shown twice when the session replays it); a decision
//! recorded but not delivered is delivered exactly once after the restart.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use ccr_sim::SimEvent;
use serde_json::{json, Value};

use crate::support::{self, Supervisor, WAIT};

/// The audit rows of `session` (newest first, as the API returns them).
async fn audit_rows(http: &awc::Client, api: &str, session: &str) -> Vec<Value> {
    let (status, body) = support::get(http, &format!("{api}/v1/audit?session_id={session}")).await;
    assert_eq!(status, 200, "GET /v1/audit: {body}");
    body["rows"].as_array().cloned().unwrap_or_default()
}

fn pending_ids(body: &Value) -> Vec<(String, String)> {
    body["permissions"]
        .as_array()
        .expect("permissions array")
        .iter()
        .map(|p| {
            (
                p["session_id"].as_str().unwrap_or_default().to_owned(),
                p["request_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[actix_rt::test]
async fn kill_9_restart_keeps_pending_prompts_and_delivers_queued_answer_once() {
    kill_9_restart(&[], &["restored unanswered prompts", "restored=2"]).await;
}

/// The same on a PostgreSQL ledger: its writes are durable once committed there.
#[actix_rt::test]
async fn kill_9_restart_on_postgres_keeps_pending_prompts_and_delivers_queued_answer_once() {
    let Some(pg) = ccr_pgtest::require() else {
        return;
    };
    let url = pg.unique_database("restart").unwrap();
    // A PostgreSQL ledger makes the instance a cluster member: with a fixed instance id
    // the restarted process takes its own leases back at once (not after they expire).
    let env = &[
        ("CCR_SUPERVISOR__LEDGER__BACKEND", "postgres"),
        ("CCR_SUPERVISOR__LEDGER__URL_ENV", "CCR_TEST_LEDGER_URL"),
        ("CCR_TEST_LEDGER_URL", &url),
        ("CCR_SUPERVISOR__CLUSTER__INSTANCE_ID", "restarted"),
        ("CCR_SUPERVISOR__CLUSTER__LEASE_PERIOD", "1s"),
    ];
    // Restored per session, as each lease is taken.
    let restored = [
        "from the ledger session_id=s1 restored=1",
        "from the ledger session_id=s2 restored=1",
    ];
    kill_9_restart(env, &restored).await;
}

/// Both processes run with `env` added (the ledger's backend); the second one's log says
/// each of `restored` (that p1, undelivered, and p2, unanswered, were restored at start).
async fn kill_9_restart(env: &[(&str, &str)], restored: &[&str]) {
    let sim = support::start_sim(&["s1", "s2"]).await;
    let mut sim_events = sim.subscribe();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = support::config_toml(
        &sim.base_url(),
        &["s1", "s2"],
        &dir.path().join("ledger.db"),
        "",
    );
    let cfg = support::write_file(dir.path(), "config.toml", &cfg);
    let http = support::http();

    // ---- first process: p1 (s1) decided while s1 is away; p2 (s2) unanswered.
    let mut first = Supervisor::spawn_with_env(&cfg, env).await;
    let mut sse = support::open_sse(&http, &first.api).await;
    let mut seen = vec![];
    sse.wait_connected(&mut seen, &["s1", "s2"]).await;
    assert!(sim.prompt("s1", "p1", "Bash", json!({"command": "make"})));
    assert!(sim.prompt("s2", "p2", "Bash", json!({"command": "make test"})));
    sse.wait_until(&mut seen, |all| {
        ["p1", "p2"]
            .iter()
            .all(|r| all.iter().any(|e| support::is_requested(e, r)))
    })
    .await;
    let (status, body) = support::get(&http, &format!("{}/v1/permissions", first.api)).await;
    assert_eq!(status, 200, "{body}");
    let listed = pending_ids(&body);
    assert!(
        listed.contains(&("s1".into(), "p1".into()))
            && listed.contains(&("s2".into(), "p2".into())),
        "{body}"
    );

    sim.refuse_upgrade("s1", 503, u32::MAX);
    assert!(sim.drop_connection("s1"));
    support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Rejected { session, code: 503 } if session == "s1"),
    )
    .await;
    let (status, body) = support::post(
        &http,
        &format!("{}/v1/sessions/s1/permissions/p1", first.api),
        json!({"behavior": "allow"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "allowed", "{body}");
    assert_eq!(body["delivery"], "queued", "s1 is disconnected: {body}");
    assert!(support::answers(&sim, "s1", "p1").is_empty());

    first.signal(libc::SIGKILL);
    let status = first.wait_exit(WAIT).await;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    drop(sse);
    drop(first);
    support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Disconnected { session, .. } if session == "s2"),
    )
    .await;
    let s2_connections = sim.connections("s2");

    // ---- second process, same config and ledger.
    let mut second = Supervisor::spawn_with_env(&cfg, env).await;
    let mut sse = support::open_sse(&http, &second.api).await;
    let mut seen = vec![];
    sse.wait_connected(&mut seen, &["s2"]).await;
    while sim.connections("s2") <= s2_connections {
        support::wait_sim(
            &mut sim_events,
            |e| matches!(e, SimEvent::Connected { session, .. } if session == "s2"),
        )
        .await;
    }
    // The simulator replays p2 first thing on the new connection; a frame
    // pushed after it is processed after it, so once that frame shows up on
    // the stream the replay has been handled.
    assert!(sim.push("s2", json!({"type": "assistant", "marker": "after-replay"})));
    sse.wait_for(&mut seen, |e| {
        e.event == "sdk_message" && e.data["message"]["marker"] == "after-replay"
    })
    .await;
    let p2_shown = seen
        .iter()
        .filter(|e| support::is_requested(e, "p2"))
        .count();
    assert!(p2_shown <= 1, "p2 announced {p2_shown} times after restart");

    let (status, body) = support::get(&http, &format!("{}/v1/permissions", second.api)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        pending_ids(&body),
        vec![("s2".to_owned(), "p2".to_owned())],
        "exactly p2 is pending after the restart (p1 is decided): {body}"
    );
    let (_, s2) = support::get(&http, &format!("{}/v1/sessions/s2", second.api)).await;
    assert_eq!(
        s2["counters"]["prompts"], 1,
        "replayed p2 counted once: {s2}"
    );
    assert_eq!(s2["pending"], 1, "{s2}");

    // p2 is answerable, and reaches the session.
    let (status, body) = support::post(
        &http,
        &format!("{}/v1/sessions/s2/permissions/p2", second.api),
        json!({"behavior": "deny", "message": "not now"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivery"], "sent", "{body}");
    support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "p2"),
    )
    .await;

    // s1 comes back: the queued allow of p1 is delivered.
    sim.refuse_upgrade("s1", 503, 0);
    let answered = support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "p1"),
    )
    .await;
    if let SimEvent::Answered { response, .. } = answered {
        assert_eq!(response["behavior"], "allow", "{response}");
        assert_eq!(response["updatedInput"], json!({"command": "make"}));
    }
    // Barrier on s1's own connection: a later prompt answered through the API
    // is written after anything the supervisor did about the p1 replay.
    assert!(sim.prompt("s1", "p3", "Read", json!({"file_path": "/tmp/x"})));
    sse.wait_for(&mut seen, |e| support::is_requested(e, "p3"))
        .await;
    let (status, body) = support::post(
        &http,
        &format!("{}/v1/sessions/s1/permissions/p3", second.api),
        json!({"behavior": "allow"}),
    )
    .await;
    assert_eq!((status, &body["delivery"]), (200, &json!("sent")), "{body}");
    support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "p3"),
    )
    .await;
    let p1_answers = support::answers(&sim, "s1", "p1");
    assert_eq!(
        p1_answers.len(),
        1,
        "p1 answered exactly once: {p1_answers:?}"
    );
    assert_eq!(support::answers(&sim, "s2", "p2").len(), 1);

    // The ledger: p1 allowed by the admin token, delivered (the delivery mark
    // is written after the socket write; no event crosses the process
    // boundary for it, so poll with a bound).
    let deadline = Instant::now() + WAIT;
    let p1 = loop {
        let rows = audit_rows(&http, &second.api, "s1").await;
        let p1 = rows.iter().find(|r| r["request_id"] == "p1").cloned();
        if let Some(row) = p1.filter(|r| !r["delivered_at"].is_null()) {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "p1 never marked delivered: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(p1["outcome"], "allowed", "{p1}");
    assert_eq!(p1["decided_by"], "admin", "{p1}");
    let s2_rows = audit_rows(&http, &second.api, "s2").await;
    let p2_rows: Vec<_> = s2_rows.iter().filter(|r| r["request_id"] == "p2").collect();
    assert_eq!(p2_rows.len(), 1, "one ledger row for p2: {s2_rows:?}");
    assert_eq!(p2_rows[0]["outcome"], "denied", "{s2_rows:?}");

    second.signal(libc::SIGTERM);
    let status = second.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{status}");
    let stderr = second.stderr_all().await;
    assert!(
        restored.iter().all(|r| stderr.contains(r)),
        "p1 (undelivered) and p2 (unanswered) restored at start ({restored:?}):\n{stderr}"
    );
    sim.stop().await;
}

/// Issue 24.1: the answer was written (200 `sent`) but the connection died before the
/// session read it; after `kill -9` and a restart the session replays the prompt. The
/// recorded answer must be sent again — never the prompt shown as new and answered twice.
#[actix_rt::test]
async fn an_answer_lost_with_its_connection_before_a_kill_9_is_resent_after_the_restart() {
    let support::Setup {
        sim,
        dir: _dir,
        cfg,
    } = support::Setup::new(&["s1"], "").await;
    let mut sim_events = sim.subscribe();
    let http = support::http();

    let first = Supervisor::spawn(&cfg).await;
    let mut sse = support::open_sse(&http, &first.api).await;
    let mut seen = vec![];
    sse.wait_connected(&mut seen, &["s1"]).await;
    // Whatever the supervisor writes from now on is lost with the connection.
    sim.set_deaf("s1", true);
    let input = json!({"command": "rm -rf build"});
    assert!(sim.prompt("s1", "p1", "Bash", input.clone()));
    sse.wait_for(&mut seen, |e| support::is_requested(e, "p1"))
        .await;
    let (status, body) = support::post(
        &http,
        &format!("{}/v1/sessions/s1/permissions/p1", first.api),
        json!({"behavior": "allow"}),
    )
    .await;
    assert_eq!((status, &body["delivery"]), (200, &json!("sent")), "{body}");
    sse.wait_for(&mut seen, |e| {
        e.event == "permission_delivered" && e.data["request_id"] == "p1"
    })
    .await;
    drop(sse);
    support::kill9(first).await;
    assert!(
        support::answers(&sim, "s1", "p1").is_empty(),
        "the session never read it"
    );
    sim.set_deaf("s1", false);

    let second = Supervisor::spawn(&cfg).await;
    // The simulator replays p1 on the new connection; the recorded allow goes out again.
    let answered = support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "p1"),
    )
    .await;
    let SimEvent::Answered { response, .. } = answered else {
        unreachable!()
    };
    assert_eq!(response["behavior"], "allow", "{response}");
    assert_eq!(response["updatedInput"], input);
    let (_, body) = support::get(&http, &format!("{}/v1/permissions", second.api)).await;
    assert_eq!(body["permissions"], json!([]), "never shown as new: {body}");
    let (status, body) = support::post(
        &http,
        &format!("{}/v1/sessions/s1/permissions/p1", second.api),
        json!({"behavior": "deny", "message": "second opinion"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "already_answered", "{body}");
    assert_eq!(support::answers(&sim, "s1", "p1").len(), 1);
    // The ledger tells the truth: allowed, written twice.
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = audit_rows(&http, &second.api, "s1").await;
        let row = rows.iter().find(|r| r["request_id"] == "p1").cloned();
        let row = row.expect("p1 is in the ledger");
        if row["deliveries"] == 2 {
            assert_eq!(row["outcome"], "allowed", "{row}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never reached 2: {row}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 23.3: after a restart, prompts the session still waits on (it replays and lists
/// them) are confirmed; one it dropped meanwhile stays answerable but `unconfirmed`, listed
/// after the confirmed ones even though it is the oldest.
#[actix_rt::test]
async fn restored_prompts_the_session_still_waits_on_are_confirmed_and_listed_first() {
    let support::Setup {
        sim,
        dir: _dir,
        cfg,
    } = support::Setup::new(&["s1"], "").await;
    let http = support::http();

    let mut first = Supervisor::spawn(&cfg).await;
    let mut sse = support::open_sse(&http, &first.api).await;
    let mut seen = vec![];
    sse.wait_connected(&mut seen, &["s1"]).await;
    for id in ["gone", "kept-a", "kept-b"] {
        assert!(sim.prompt("s1", id, "Bash", json!({ "command": id })));
        sse.wait_for(&mut seen, |e| support::is_requested(e, id))
            .await;
    }
    first.signal(libc::SIGKILL);
    first.wait_exit(WAIT).await;
    drop(sse);
    drop(first);
    // The session dropped one prompt while nobody was connected.
    assert!(sim.forget_prompt("s1", "gone"));

    let second = Supervisor::spawn(&cfg).await;
    let mut sse = support::open_sse(&http, &second.api).await;
    let mut seen = vec![];
    sse.wait_until(&mut seen, |all| {
        ["kept-a", "kept-b"].iter().all(|id| {
            all.iter()
                .any(|e| e.event == "permission_confirmed" && e.data["request_id"] == *id)
        })
    })
    .await;
    let (_, body) = support::get(&http, &format!("{}/v1/permissions", second.api)).await;
    let order: Vec<(String, bool)> = body["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .map(|p| {
            (
                p["request_id"].as_str().unwrap_or_default().to_owned(),
                p["confirmed"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("kept-a".to_owned(), true),
            ("kept-b".to_owned(), true),
            ("gone".to_owned(), false)
        ],
        "{body}"
    );
    // Still answerable (an inherited prompt may be), and the ledger records it.
    let (status, body) = support::post(
        &http,
        &format!("{}/v1/sessions/s1/permissions/gone", second.api),
        json!({"behavior": "deny", "message": "stale"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
