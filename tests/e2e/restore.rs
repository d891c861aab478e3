//! Prompts restored from the ledger after a restart keep their original clock: deadlines
//! and reminders run from `received_at`, not from the restart.

use std::time::{Duration, SystemTime};

use crate::common::{wait_bus, wait_received, Harness, Sess};
use ccr_supervisor::config::LedgerConfig;
use ccr_supervisor::events::Event;
use ccr_supervisor::ledger::{Ledger, PromptRecord};
use serde_json::json;

fn record(request_id: &str, received_at: SystemTime) -> PromptRecord {
    PromptRecord {
        session_id: "s1".into(),
        request_id: request_id.into(),
        tool_use_id: Some(format!("toolu_{request_id}")),
        tool_name: "Bash".into(),
        input: json!({"command": "make"}),
        request: json!({"subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "make"}}),
        received_at,
    }
}

/// A ledger in a new temp dir holding what an earlier process left: these prompts.
async fn ledger_with(prompts: &[(&str, SystemTime)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = Ledger::open(&LedgerConfig {
        path: path.clone(),
        ..LedgerConfig::default()
    })
    .unwrap();
    for (id, at) in prompts {
        ledger.record_prompt(record(id, *at)).await.unwrap();
    }
    ledger.flush().await.unwrap();
    (dir, path.display().to_string())
}

#[actix_rt::test]
async fn a_restored_prompt_keeps_its_original_clock_for_deadline_and_reminder() {
    // One prompt two hours old, one just received.
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    let (_dir, ledger) =
        ledger_with(&[("ancient", two_hours_ago), ("recent", SystemTime::now())]).await;
    let env = [("CCR_SUPERVISOR__LEDGER__PATH", ledger.as_str())];
    let extra = "[policy]\nask_timeout = \"1h\"\nremind_after = \"90m\"\nask_timeout_message = \"too old\"\n";
    let mut h = Harness::start_with(vec![Sess::new("s1")], &env, extra).await;
    h.wait_sim_connected("s1").await;
    // The session still waits on `ancient` and sends it again. Two hours is past the
    // deadline: denied at once, not an hour after the restart.
    assert!(h
        .sim
        .prompt("s1", "ancient", "Bash", json!({"command": "make"})));
    let frame = wait_received(&mut h.sim_events, "s1", |f| {
        f["response"]["request_id"] == "ancient"
    })
    .await;
    assert_eq!(frame["response"]["response"]["message"], "too old");
    let audit = h.get("/v1/audit?session_id=s1").await.1;
    let ancient = audit["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request_id"] == "ancient")
        .cloned()
        .unwrap();
    assert_eq!(ancient["outcome"], "expired", "{audit}");
    let listed = h.get("/v1/permissions").await.1;
    assert_eq!(
        listed["permissions"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    assert_eq!(listed["permissions"][0]["request_id"], "recent");
    assert_eq!(
        listed["permissions"][0]["confirmed"], false,
        "this simulator never sent it"
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn an_old_restored_prompt_gets_its_overdue_reminder_at_once() {
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let (_dir, ledger) = ledger_with(&[("waiting", an_hour_ago)]).await;
    let env = [("CCR_SUPERVISOR__LEDGER__PATH", ledger.as_str())];
    let extra = "[policy]\nremind_after = \"30m\"\n";
    // Subscribe before the registry starts: build the harness, then look at the history.
    let h = Harness::start_with(vec![Sess::new("s1")], &env, extra).await;
    let mut bus = h.bus();
    let overdue = async {
        // The reminder may already be in the history (published at start): replay it.
        let (_, page) = h.get("/v1/sessions/s1/messages?after=0").await;
        let seen = page["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["type"] == "permission.overdue" && m["request_id"] == "waiting");
        if !seen {
            wait_bus(&mut bus, |e| {
                matches!(e, Event::PermissionOverdue { request_id, .. } if request_id == "waiting")
            })
            .await;
        }
    };
    overdue.await;
    h.shutdown().await;
}
