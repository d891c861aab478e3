//! More sessions than the open-files limit allows: the real binary under a low
//! `RLIMIT_NOFILE` keeps a reserve for its API (`/healthz` and an answer still
//! work), connects as many sessions as its budget holds, and lets the others
//! wait for a slot with a clear `last_error`, without an `EMFILE` storm or a
//! warning per session.

use std::collections::HashSet;
use std::time::Duration;

use ccr_sim::SimEvent;
use ccr_supervisor::app::arbiter_count;
use ccr_supervisor::config::{
    ApiLimits, DEFAULT_API_MAX_CONNECTIONS, DEFAULT_MAX_STREAM_SUBSCRIBERS,
};
use ccr_supervisor::limits::fd::{plan, FdDemand};
use serde_json::{json, Value};

use crate::support::{self, SseEvent, Supervisor};

/// The child's open-files limit (soft and hard).
const NOFILE: u64 = 256;
/// Sessions configured: more than fit under [`NOFILE`].
const SESSIONS: usize = 300;

/// `GET /healthz` on a connection of its own (a fresh client), within 5 s.
async fn healthz_fresh(api: &str) -> Result<u16, String> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let resp = client
        .get(format!("{api}/healthz"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(resp.status().as_u16())
}

/// Ids of the sessions reported `connected` in `events`.
fn connected(events: &[SseEvent]) -> HashSet<String> {
    events
        .iter()
        .filter(|e| e.event == "session_state" && e.data["state"] == "connected")
        .filter_map(|e| e.data["session_id"].as_str().map(str::to_owned))
        .collect()
}

/// Ids of the sessions reported waiting for a connection slot in `events`.
fn waiting(events: &[SseEvent]) -> HashSet<String> {
    events
        .iter()
        .filter(|e| e.event == "session_state")
        .filter(|e| {
            e.data["last_error"]
                .as_str()
                .is_some_and(|m| m.starts_with("waiting for a free connection slot"))
        })
        .filter_map(|e| e.data["session_id"].as_str().map(str::to_owned))
        .collect()
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[actix_rt::test]
async fn under_a_low_open_files_limit_the_api_answers_and_extra_sessions_wait() {
    let ids: Vec<String> = (1..=SESSIONS).map(|n| format!("fd{n}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let sim = support::start_sim(&ids).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = support::config_toml(&sim.base_url(), &ids, &dir.path().join("ledger.db"), "");
    let cfg = support::write_file(dir.path(), "config.toml", &cfg);
    let budget = plan(
        NOFILE,
        &FdDemand {
            sessions: SESSIONS,
            fds_per_session: 1,
            api_connections: DEFAULT_API_MAX_CONNECTIONS,
            stream_subscribers: DEFAULT_MAX_STREAM_SUBSCRIBERS,
            // The child's: default API workers, `arbiters = 2`.
            threads: ApiLimits::default().worker_count() + arbiter_count(2),
        },
    );
    assert!(budget.session_slots > 0 && budget.session_slots < SESSIONS);

    let mut sup = Supervisor::spawn_with_nofile(&cfg, NOFILE).await;
    for _ in 0..5 {
        assert_eq!(
            healthz_fresh(&sup.api).await,
            Ok(200),
            "/healthz while sessions connect"
        );
    }

    // Exactly the budget's sessions connect; the rest wait, saying why.
    let http = support::http();
    let mut sse = support::open_sse(&http, &sup.api).await;
    let mut seen = vec![];
    sse.wait_until(&mut seen, |all| {
        connected(all).len() >= budget.session_slots
            && waiting(all).len() >= SESSIONS - budget.session_slots
    })
    .await;
    let (status, body) = support::get(&http, &format!("{}/v1/sessions", sup.api)).await;
    assert_eq!(status, 200, "{body}");
    let list = body["sessions"].as_array().expect("sessions").clone();
    let (up, waiting): (Vec<&Value>, Vec<&Value>) =
        list.iter().partition(|s| s["state"] == "connected");
    assert_eq!(up.len(), budget.session_slots, "{budget:?}");
    assert_eq!(waiting.len(), SESSIONS - budget.session_slots);
    for s in &waiting {
        let error = s["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("waiting for a free connection slot") && error.contains("limit 256"),
            "{s}"
        );
    }
    for _ in 0..5 {
        assert_eq!(
            healthz_fresh(&sup.api).await,
            Ok(200),
            "/healthz at the limit"
        );
    }
    let fds = open_fds(sup.pid);
    eprintln!("open descriptors: {fds} of {NOFILE}; plan {budget:?}");
    assert!(
        fds + budget.api_connections <= NOFILE as usize,
        "{fds} open leave no room for {} API connections",
        budget.api_connections
    );

    // An answer still goes through.
    let mut sim_events = sim.subscribe();
    let id = up[0]["id"].as_str().expect("id").to_owned();
    assert!(sim.prompt(&id, "fd-p1", "Bash", json!({"command": "ls"})));
    sse.wait_for(&mut seen, |e| support::is_requested(e, "fd-p1"))
        .await;
    let url = format!("{}/v1/sessions/{id}/permissions/fd-p1", sup.api);
    let (status, body) = support::post(&http, &url, json!({"behavior": "allow"})).await;
    assert_eq!(status, 200, "{body}");
    support::wait_sim(
        &mut sim_events,
        |e| matches!(e, SimEvent::Answered { request_id, .. } if request_id == "fd-p1"),
    )
    .await;

    // A freed slot goes to a waiting session.
    let before = connected(&seen);
    let resp = http
        .delete(format!("{}/v1/sessions/{id}", sup.api))
        .send()
        .await
        .expect("DELETE");
    assert!(resp.status().is_success(), "{}", resp.status());
    sse.wait_until(&mut seen, |all| connected(all).len() > before.len())
        .await;

    let stderr = sup.stderr_now();
    assert!(
        stderr.contains("open-files limit") && stderr.contains("limit=256"),
        "the limit is logged:\n{stderr}"
    );
    assert!(
        stderr.contains("open-files limit 256 is too low"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Too many open files"),
        "the reserve held:\n{stderr}"
    );
    let waits = stderr
        .matches("session waits for a connection slot")
        .count();
    assert!(
        (1..=waiting.len() / 4).contains(&waits),
        "{waits} slot warnings for {} waiting sessions: not rate-limited",
        waiting.len()
    );
    sup.signal(libc::SIGTERM);
    sup.wait_exit(Duration::from_secs(15)).await;
}
