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

/// Record a prompt and show it, as the registry does once the ledger has it.
trait Shown {
    fn shown(&mut self, session: &Arc<str>, conn: ConnId, p: PermissionPrompt) -> PromptOutcome;
}

/// Decide and let the (absent) ledger acknowledge at once: where to write, if anywhere.
trait DecideNow {
    fn decide_now(
        &mut self,
        session: &Arc<str>,
        request_id: &str,
        body: DecisionBody,
        by: &str,
        at: SystemTime,
    ) -> Result<Option<(ConnId, Arc<str>)>, DecideError>;
}

impl DecideNow for Store {
    fn decide_now(
        &mut self,
        session: &Arc<str>,
        request_id: &str,
        body: DecisionBody,
        by: &str,
        at: SystemTime,
    ) -> Result<Option<(ConnId, Arc<str>)>, DecideError> {
        self.decide(
            session,
            request_id,
            body,
            (by, Decider::Operator),
            at,
            false,
        )?;
        Ok(self.recorded(session, request_id))
    }
}

impl Shown for Store {
    fn shown(&mut self, session: &Arc<str>, conn: ConnId, p: PermissionPrompt) -> PromptOutcome {
        let id = p.request_id.clone();
        let out = self.on_prompt(session, conn, p, now());
        self.reveal(session, &id);
        out
    }
}

#[test]
fn decision_while_connected_is_dispatched_once() {
    let mut st = Store::new();
    st.on_connected(&sid(), 7);
    assert_eq!(st.shown(&sid(), 7, prompt("r1")), PromptOutcome::New);
    let d = st
        .decide_now(&sid(), "r1", allow(), "alice", now())
        .unwrap();
    let (conn, frame) = d.unwrap();
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
        st.decide_now(&sid(), "r1", allow(), "bob", now())
            .unwrap_err(),
        DecideError::AlreadyAnswered("r1".into())
    );
    assert_eq!(st.tallies()[&sid()].decisions, 1);
}

#[test]
fn replay_is_recorded_once() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    assert_eq!(st.shown(&sid(), 1, prompt("r1")), PromptOutcome::New);
    st.on_disconnected(&sid(), Some(1));
    st.on_connected(&sid(), 2);
    assert_eq!(st.shown(&sid(), 2, prompt("r1")), PromptOutcome::Duplicate);
    assert_eq!(st.pending(None).len(), 1);
    assert_eq!(st.tallies()[&sid()].prompts, 1);
}

#[test]
fn decision_while_disconnected_is_flushed_once_on_reconnect() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    st.shown(&sid(), 1, prompt("r1"));
    st.on_disconnected(&sid(), Some(1));
    let d = st
        .decide_now(&sid(), "r1", allow(), "alice", now())
        .unwrap();
    assert!(d.is_none(), "queued");
    assert_eq!(st.tallies()[&sid()].queued, 1);
    let flush = st.on_connected(&sid(), 2);
    assert_eq!(flush.len(), 1);
    // The session replays the prompt on the new connection before reading our answer:
    assert_eq!(st.shown(&sid(), 2, prompt("r1")), PromptOutcome::Duplicate);
    assert!(st.on_written(&sid(), "r1", 2));
    assert_eq!(st.shown(&sid(), 2, prompt("r1")), PromptOutcome::Duplicate);
    // A second reconnect flushes nothing more.
    st.on_disconnected(&sid(), Some(2));
    assert!(st.on_connected(&sid(), 3).is_empty());
}

#[test]
fn answer_lost_with_its_connection_is_resent_when_the_session_replays() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    st.shown(&sid(), 1, prompt("r1"));
    st.decide_now(&sid(), "r1", allow(), "a", now()).unwrap();
    assert!(st.on_written(&sid(), "r1", 1));
    st.on_disconnected(&sid(), Some(1));
    st.on_connected(&sid(), 2);
    let PromptOutcome::Resend { conn, .. } = st.shown(&sid(), 2, prompt("r1")) else {
        panic!("expected resend")
    };
    assert_eq!(conn, 2);
    assert!(
        !st.on_written(&sid(), "r1", 2),
        "written again, but delivered (and counted) once"
    );
    assert_eq!(st.tallies()[&sid()].decisions, 1);
    assert_eq!(st.tallies()[&sid()].queued, 0);
}

#[test]
fn a_cancel_does_not_void_an_answer_that_was_already_written_once() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    st.shown(&sid(), 1, prompt("r1"));
    st.decide_now(&sid(), "r1", allow(), "a", now()).unwrap();
    assert!(st.on_written(&sid(), "r1", 1));
    // Replayed on connection 2: the re-send is in flight, then fails and is queued.
    st.on_connected(&sid(), 2);
    assert!(matches!(
        st.shown(&sid(), 2, prompt("r1")),
        PromptOutcome::Resend { conn: 2, .. }
    ));
    assert_eq!(st.on_cancel(&sid(), "r1"), None, "in flight again");
    st.on_disconnected(&sid(), Some(2));
    assert_eq!(st.on_write_failed(&sid(), "r1", 2), None);
    assert_eq!(st.on_cancel(&sid(), "r1"), None, "queued again");
    // Still answered: the next connection gets it once more.
    let flush = st.on_connected(&sid(), 3);
    assert_eq!(flush.len(), 1);
    assert!(!st.on_written(&sid(), "r1", 3));
    assert_eq!(st.tallies()[&sid()].decisions, 1);
}

#[test]
fn failed_write_is_requeued_or_moved_to_the_newer_connection() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    st.shown(&sid(), 1, prompt("r1"));
    st.shown(&sid(), 1, prompt("r2"));
    st.decide_now(&sid(), "r1", allow(), "a", now()).unwrap();
    st.decide_now(&sid(), "r2", allow(), "a", now()).unwrap();
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
    st.shown(&sid(), 1, prompt("r1"));
    st.shown(&sid(), 1, prompt("r2"));
    let w = st.on_cancel(&sid(), "r1").unwrap();
    assert_eq!(w.tool_use_id.as_deref(), Some("toolu_r1"));
    assert!(w.was_pending);
    assert_eq!(
        st.decide_now(&sid(), "r1", allow(), "a", now())
            .unwrap_err(),
        DecideError::Cancelled("r1".into())
    );
    st.decide_now(&sid(), "r2", allow(), "a", now()).unwrap();
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
        st.decide_now(&sid(), "zzz", allow(), "a", now()),
        Err(DecideError::UnknownPrompt { .. })
    ));
    st.shown(&sid(), 1, prompt("r1"));
    let bad = DecisionBody::Allow {
        updated_input: Some(json!("rm -rf /")),
        updated_permissions: None,
    };
    assert!(matches!(
        st.decide_now(&sid(), "r1", bad, "a", now()),
        Err(DecideError::InvalidBody(_))
    ));
    assert_eq!(st.pending(None).len(), 1, "still pending after a bad body");
}

#[test]
fn pending_lists_oldest_first_and_filters() {
    let mut st = Store::new();
    let other: Arc<str> = Arc::from("s2");
    st.shown(&sid(), 1, prompt("a"));
    st.shown(&other, 2, prompt("b"));
    st.shown(&sid(), 1, prompt("c"));
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
        st.shown(&sid(), 1, prompt(&id));
        st.decide_now(&sid(), &id, allow(), "a", now()).unwrap();
        assert!(st.on_written(&sid(), &id, 1));
    }
    assert!(st.get("s1", "r0").is_none(), "oldest resolved forgotten");
    assert!(st.get("s1", &format!("r{}", RESOLVED_MEMORY + 9)).is_some());
}

#[test]
fn unrecorded_prompt_is_neither_listed_nor_answerable() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    assert_eq!(
        st.on_prompt(&sid(), 1, prompt("r1"), now()),
        PromptOutcome::New
    );
    assert!(st.pending(None).is_empty());
    assert!(matches!(
        st.decide_now(&sid(), "r1", allow(), "a", now()),
        Err(DecideError::UnknownPrompt { .. })
    ));
    assert!(st.reveal(&sid(), "r1"));
    assert_eq!(st.pending(None).len(), 1);
}

#[test]
fn the_policy_may_answer_a_prompt_before_it_is_shown() {
    let mut st = Store::new();
    st.on_prompt(&sid(), 1, prompt("r1"), now());
    st.on_connected(&sid(), 1);
    st.decide(
        &sid(),
        "r1",
        allow(),
        ("rule:r", Decider::Automatic),
        now(),
        true,
    )
    .expect("the policy path may decide an unshown prompt");
    assert!(
        !st.reveal(&sid(), "r1"),
        "shown once recorded, already answered"
    );
    assert!(st.pending(None).is_empty());
    assert_eq!(
        st.recorded(&sid(), "r1").map(|(conn, _)| conn),
        Some(1),
        "written once the ledger has both"
    );
    assert!(matches!(
        st.decide_now(&sid(), "r1", allow(), "op", now()),
        Err(DecideError::AlreadyAnswered(_))
    ));
}

#[test]
fn restored_answers_are_flushed_on_connect() {
    let mut st = Store::new();
    let result = PermissionResult::Allow {
        updated_input: json!({}),
        updated_permissions: None,
        tool_use_id: None,
        decision_classification: None,
    };
    let frame: Arc<str> = crate::protocol::permission_response("r1", &result).into();
    st.restore(
        &sid(),
        prompt("r1"),
        now(),
        Some((result, "a".into(), now(), frame)),
    );
    st.restore(&sid(), prompt("r2"), now(), None);
    assert_eq!(st.pending(None).len(), 1);
    assert_eq!(st.on_connected(&sid(), 5).len(), 1);
    assert_eq!(
        st.on_prompt(&sid(), 5, prompt("r2"), now()),
        PromptOutcome::Duplicate,
        "re-sent prompt matched"
    );
}

#[test]
fn nothing_is_flushed_while_the_ledger_records() {
    let mut st = Store::new();
    st.shown(&sid(), 1, prompt("r1"));
    st.on_disconnected(&sid(), Some(1));
    st.decide(
        &sid(),
        "r1",
        allow(),
        ("a", Decider::Operator),
        now(),
        false,
    )
    .unwrap();
    assert!(
        st.on_connected(&sid(), 2).is_empty(),
        "not recorded yet: not written"
    );
    let (conn, _) = st.recorded(&sid(), "r1").expect("now it goes out");
    assert_eq!(conn, 2);
    assert!(st.recorded(&sid(), "r1").is_none(), "only once");
}
