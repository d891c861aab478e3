//! Unit tests of the pure store: every lifecycle path, replay and delivery race.

use super::*;
use serde_json::json;

fn sid() -> Arc<str> {
    Arc::from("s1")
}

fn prompt(id: &str) -> PermissionPrompt {
    PermissionPrompt {
        request_id: id.into(),
        tool_name: "Bash".into(),
        tool_use_id: Some(format!("toolu_{id}")),
        input: json!({"command":"npm test"}),
        request: json!({"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"npm test"}}),
    }
}

fn allow() -> DecisionBody {
    DecisionBody::Allow {
        updated_input: None,
        updated_permissions: None,
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

#[test]
fn decision_while_connected_is_dispatched_once() {
    let mut st = Store::new();
    st.on_connected(&sid(), 7);
    assert_eq!(
        st.on_prompt(&sid(), 7, prompt("r1"), now()),
        PromptOutcome::New
    );
    let d = st.decide(&sid(), "r1", allow(), "alice", now()).unwrap();
    let (conn, frame) = d.dispatch.unwrap();
    assert_eq!(conn, 7);
    let v: Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(
        v["response"]["response"]["updatedInput"],
        json!({"command":"npm test"})
    );
    assert!(st.on_written(&sid(), "r1", 7));
    assert!(
        !st.on_written(&sid(), "r1", 7),
        "second write ack is ignored"
    );
    assert_eq!(
        st.decide(&sid(), "r1", allow(), "bob", now()).unwrap_err(),
        DecideError::AlreadyAnswered("r1".into())
    );
    assert_eq!(st.tallies()[&sid()].decisions, 1);
}

#[test]
fn replay_is_recorded_once() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    assert_eq!(
        st.on_prompt(&sid(), 1, prompt("r1"), now()),
        PromptOutcome::New
    );
    st.on_disconnected(&sid(), Some(1));
    st.on_connected(&sid(), 2);
    assert_eq!(
        st.on_prompt(&sid(), 2, prompt("r1"), now()),
        PromptOutcome::Duplicate
    );
    assert_eq!(st.pending(None).len(), 1);
    assert_eq!(st.tallies()[&sid()].prompts, 1);
}

#[test]
fn decision_while_disconnected_is_flushed_once_on_reconnect() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    st.on_prompt(&sid(), 1, prompt("r1"), now());
    st.on_disconnected(&sid(), Some(1));
    let d = st.decide(&sid(), "r1", allow(), "alice", now()).unwrap();
    assert!(d.dispatch.is_none(), "queued");
    assert_eq!(st.tallies()[&sid()].queued, 1);
    let flush = st.on_connected(&sid(), 2);
    assert_eq!(flush.len(), 1);
    // The session replays the prompt on the new connection before reading our answer:
    assert_eq!(
        st.on_prompt(&sid(), 2, prompt("r1"), now()),
        PromptOutcome::Duplicate
    );
    assert!(st.on_written(&sid(), "r1", 2));
    assert_eq!(
        st.on_prompt(&sid(), 2, prompt("r1"), now()),
        PromptOutcome::Duplicate
    );
    // A second reconnect flushes nothing more.
    st.on_disconnected(&sid(), Some(2));
    assert!(st.on_connected(&sid(), 3).is_empty());
}

#[test]
fn answer_lost_with_its_connection_is_resent_when_the_session_replays() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    st.on_prompt(&sid(), 1, prompt("r1"), now());
    st.decide(&sid(), "r1", allow(), "a", now()).unwrap();
    assert!(st.on_written(&sid(), "r1", 1));
    st.on_disconnected(&sid(), Some(1));
    st.on_connected(&sid(), 2);
    let PromptOutcome::Resend { conn, .. } = st.on_prompt(&sid(), 2, prompt("r1"), now()) else {
        panic!("expected resend")
    };
    assert_eq!(conn, 2);
    assert!(st.on_written(&sid(), "r1", 2));
}

#[test]
fn failed_write_is_requeued_or_moved_to_the_newer_connection() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    st.on_prompt(&sid(), 1, prompt("r1"), now());
    st.on_prompt(&sid(), 1, prompt("r2"), now());
    st.decide(&sid(), "r1", allow(), "a", now()).unwrap();
    st.decide(&sid(), "r2", allow(), "a", now()).unwrap();
    // The actor had already lost connection 1 and nobody told us yet: queue.
    assert_eq!(st.on_write_failed(&sid(), "r1", 1), None);
    assert_eq!(st.tallies()[&sid()].queued, 2);
    // A new connection arrives while r2's failure is still in the mailbox.
    let flush = st.on_connected(&sid(), 2);
    assert_eq!(flush.len(), 1, "only r1 was queued");
    let retry = st.on_write_failed(&sid(), "r2", 1).unwrap();
    assert_eq!(retry.0, 2);
    assert!(st.on_written(&sid(), "r1", 2));
    assert!(st.on_written(&sid(), "r2", 2));
    assert_eq!(st.tallies()[&sid()].decisions, 2);
}

#[test]
fn cancel_removes_prompt_and_voids_a_queued_answer() {
    let mut st = Store::new();
    st.on_prompt(&sid(), 1, prompt("r1"), now());
    st.on_prompt(&sid(), 1, prompt("r2"), now());
    let w = st.on_cancel(&sid(), "r1").unwrap();
    assert_eq!(w.tool_use_id.as_deref(), Some("toolu_r1"));
    assert!(w.was_pending);
    assert_eq!(
        st.decide(&sid(), "r1", allow(), "a", now()).unwrap_err(),
        DecideError::Cancelled("r1".into())
    );
    st.decide(&sid(), "r2", allow(), "a", now()).unwrap();
    let w = st.on_cancel(&sid(), "r2").unwrap();
    assert!(!w.was_pending);
    assert!(
        st.on_connected(&sid(), 2).is_empty(),
        "voided answer is not sent"
    );
    assert_eq!(st.on_cancel(&sid(), "nope"), None);
    assert_eq!(
        st.on_cancel(&sid(), "r1"),
        None,
        "second cancel is harmless"
    );
}

#[test]
fn unknown_prompt_and_bad_body_send_nothing() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    assert!(matches!(
        st.decide(&sid(), "zzz", allow(), "a", now()),
        Err(DecideError::UnknownPrompt { .. })
    ));
    st.on_prompt(&sid(), 1, prompt("r1"), now());
    let bad = DecisionBody::Allow {
        updated_input: Some(json!("rm -rf /")),
        updated_permissions: None,
    };
    assert!(matches!(
        st.decide(&sid(), "r1", bad, "a", now()),
        Err(DecideError::InvalidBody(_))
    ));
    assert_eq!(st.pending(None).len(), 1, "still pending after a bad body");
}

#[test]
fn pending_lists_oldest_first_and_filters() {
    let mut st = Store::new();
    let other: Arc<str> = Arc::from("s2");
    st.on_prompt(&sid(), 1, prompt("a"), now());
    st.on_prompt(&other, 2, prompt("b"), now());
    st.on_prompt(&sid(), 1, prompt("c"), now());
    let ids: Vec<_> = st
        .pending(None)
        .into_iter()
        .map(|(_, e)| e.prompt.request_id.clone())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(st.pending(Some("s2")).len(), 1);
    assert_eq!(st.forget_session("s1").len(), 2);
    assert_eq!(st.pending(None).len(), 1);
}

#[test]
fn resolved_memory_is_bounded() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    for i in 0..(RESOLVED_MEMORY + 10) {
        let id = format!("r{i}");
        st.on_prompt(&sid(), 1, prompt(&id), now());
        st.decide(&sid(), &id, allow(), "a", now()).unwrap();
        assert!(st.on_written(&sid(), &id, 1));
    }
    assert!(st.get("s1", "r0").is_none(), "oldest resolved forgotten");
    assert!(st.get("s1", &format!("r{}", RESOLVED_MEMORY + 9)).is_some());
}
