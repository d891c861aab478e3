//! Unit tests of the pure store: every lifecycle path, replay and delivery race.

use super::*;
use ccr_protocol::api::{DecisionBody, QuestionAnswer};
use serde_json::json;

fn sid() -> Arc<str> {
    Arc::from("s1")
}

fn prompt(id: &str) -> PermissionPrompt {
    PermissionPrompt {
        raw: None,
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
    fn shown(&mut self, session: &Arc<str>, conn: ConnId, p: PermissionPrompt) -> Arrival;
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
            AnswerBody::Permission(body),
            (by, Decider::Operator),
            at,
            false,
        )?;
        Ok(self.recorded(session, request_id))
    }
}

impl Shown for Store {
    fn shown(&mut self, session: &Arc<str>, conn: ConnId, p: PermissionPrompt) -> Arrival {
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
    assert_eq!(st.shown(&sid(), 7, prompt("r1")), Arrival::New);
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
    assert_eq!(st.shown(&sid(), 1, prompt("r1")), Arrival::New);
    st.on_disconnected(&sid(), Some(1));
    st.on_connected(&sid(), 2);
    assert_eq!(st.shown(&sid(), 2, prompt("r1")), Arrival::Duplicate);
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
    st.on_connected(&sid(), 2);
    assert_eq!(
        st.tallies()[&sid()].queued,
        1,
        "not written blindly on connect"
    );
    // The session replays the prompt on the new connection: it still waits, so it gets it.
    assert!(matches!(
        st.shown(&sid(), 2, prompt("r1")),
        Arrival::Resend { conn: 2, .. }
    ));
    assert!(st.on_written(&sid(), "r1", 2));
    assert_eq!(st.shown(&sid(), 2, prompt("r1")), Arrival::Duplicate);
    assert_eq!(st.tallies()[&sid()].decisions, 1);
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
    let Arrival::Resend { conn, .. } = st.shown(&sid(), 2, prompt("r1")) else {
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
    // Replayed on connection 2: resent there, once.
    st.on_connected(&sid(), 2);
    assert!(matches!(
        st.shown(&sid(), 2, prompt("r1")),
        Arrival::Resend { conn: 2, .. }
    ));
    assert_eq!(st.on_cancel(&sid(), "r1"), None, "answered once already");
    assert!(!st.on_written(&sid(), "r1", 2));
    assert_eq!(
        st.shown(&sid(), 2, prompt("r1")),
        Arrival::Duplicate,
        "once per connection"
    );
    // Lost again: the next connection's replay gets it once more.
    st.on_connected(&sid(), 3);
    assert!(matches!(
        st.shown(&sid(), 3, prompt("r1")),
        Arrival::Resend { conn: 3, .. }
    ));
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
    // A new connection, on which the session replays r2 only (r1 was settled elsewhere).
    st.on_connected(&sid(), 2);
    assert_eq!(
        st.shown(&sid(), 2, prompt("r2")),
        Arrival::Duplicate,
        "r2 in flight"
    );
    let retry = st.on_write_failed(&sid(), "r2", 1).unwrap();
    assert_eq!(retry.0, 2, "r2 was seen on the newer connection");
    assert!(st.on_written(&sid(), "r2", 2));
    assert_eq!(st.tallies()[&sid()].queued, 1, "r1 waits for its replay");
    assert!(matches!(
        st.shown(&sid(), 2, prompt("r1")),
        Arrival::Resend { conn: 2, .. }
    ));
    assert!(st.on_written(&sid(), "r1", 2));
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
    st.on_connected(&sid(), 2);
    assert_eq!(
        st.shown(&sid(), 2, prompt("r2")),
        Arrival::Duplicate,
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
fn finished_prompts_are_remembered_without_their_input_within_the_global_bounds() {
    let mut st = Store::with_bounds(100, usize::MAX);
    st.on_connected(&sid(), 1);
    for i in 0..110 {
        let id = format!("r{i}");
        if let Arrival::Check(p) = st.on_prompt(&sid(), 1, prompt(&id), now()) {
            assert!(i >= 100, "checked only once records were dropped");
            assert_eq!(
                st.on_checked(&sid(), 1, *p, Known::Nothing, now()),
                Arrival::New
            );
        }
        st.reveal(&sid(), &id);
        st.decide_now(&sid(), &id, allow(), "a", now()).unwrap();
        assert!(st.on_written(&sid(), &id, 1));
        assert!(
            st.get("s1", &id).is_none(),
            "the full prompt is dropped once written"
        );
    }
    assert_eq!(st.resolved_size().0, 100);
    assert!(st.finished("s1", "r0").is_none(), "oldest forgotten");
    assert!(st.finished("s1", "r109").is_some());
    // The session's memory is incomplete now: an unknown prompt is looked up first.
    let Arrival::Check(p) = st.on_prompt(&sid(), 2, prompt("r0"), now()) else {
        panic!("expected a ledger check")
    };
    assert_eq!(
        st.on_prompt(&sid(), 2, prompt("r0"), now()),
        Arrival::Duplicate,
        "a replay during the check"
    );
    let frame: Arc<str> = Arc::from("{\"answer\":1}");
    assert_eq!(
        st.on_checked(&sid(), 2, *p, Known::Answered(frame.clone()), now()),
        Arrival::Resend { conn: 2, frame },
        "matched to its record, never shown as new"
    );
    assert_eq!(
        st.on_prompt(&sid(), 2, prompt("r0"), now()),
        Arrival::Duplicate,
        "listed again right behind: once per connection"
    );
    let Arrival::Check(p) = st.on_prompt(&sid(), 2, prompt("brand-new"), now()) else {
        panic!()
    };
    assert_eq!(
        st.on_checked(&sid(), 2, *p, Known::Nothing, now()),
        Arrival::New
    );
}

#[test]
fn unrecorded_prompt_is_neither_listed_nor_answerable() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    assert_eq!(st.on_prompt(&sid(), 1, prompt("r1"), now()), Arrival::New);
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
        AnswerBody::Permission(allow()),
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

fn frame(id: &str) -> Arc<str> {
    let result = PermissionResult::Allow {
        updated_input: json!({}),
        updated_permissions: None,
        tool_use_id: None,
        decision_classification: None,
    };
    ccr_protocol::permission_response(id, &result).into()
}

#[test]
fn restored_answers_wait_for_the_session_to_replay_their_prompt() {
    let mut st = Store::new();
    st.restore(
        &sid(),
        prompt("r1"),
        now(),
        Some(("a".into(), now(), frame("r1"), false)),
    );
    st.restore(&sid(), prompt("r2"), now(), None);
    assert_eq!(st.pending(None).len(), 1);
    st.on_connected(&sid(), 5);
    assert_eq!(st.tallies()[&sid()].queued, 1);
    assert!(matches!(
        st.on_prompt(&sid(), 5, prompt("r1"), now()),
        Arrival::Resend { conn: 5, .. }
    ));
    assert!(st.on_written(&sid(), "r1", 5));
    assert_eq!(
        st.on_prompt(&sid(), 5, prompt("r2"), now()),
        Arrival::Confirmed,
        "the restored prompt is waited on"
    );
    assert_eq!(
        st.on_prompt(&sid(), 5, prompt("r2"), now()),
        Arrival::Duplicate
    );
}

#[test]
fn restored_finished_prompts_are_matched_not_shown_again() {
    let mut st = Store::new();
    st.restore_resolved(&sid(), "done", Known::Answered(frame("done")));
    st.restore_resolved(&sid(), "gone", Known::Finished);
    st.on_connected(&sid(), 1);
    assert_eq!(
        st.on_prompt(&sid(), 1, prompt("done"), now()),
        Arrival::Resend {
            conn: 1,
            frame: frame("done")
        },
        "the recorded answer, again"
    );
    assert_eq!(
        st.on_prompt(&sid(), 1, prompt("done"), now()),
        Arrival::Duplicate,
        "once per connection, also while the first resend is still being written \
         (a replay and the initialize list arrive back to back)"
    );
    st.on_written(&sid(), "done", 1);
    assert_eq!(
        st.on_prompt(&sid(), 1, prompt("gone"), now()),
        Arrival::Duplicate
    );
    assert!(matches!(
        st.decide_now(&sid(), "done", allow(), "b", now()),
        Err(DecideError::AlreadyAnswered(_))
    ));
    assert!(st.pending(None).is_empty());
}

#[test]
fn unconfirmed_prompts_are_listed_after_confirmed_ones() {
    let mut st = Store::new();
    st.restore(&sid(), prompt("old-a"), now(), None);
    st.restore(&sid(), prompt("old-b"), now(), None);
    st.shown(&sid(), 1, prompt("live"));
    assert_eq!(st.shown(&sid(), 1, prompt("old-b")), Arrival::Confirmed);
    let order: Vec<(String, bool)> = st
        .pending(None)
        .into_iter()
        .map(|(_, e)| (e.prompt.request_id.clone(), e.confirmed))
        .collect();
    assert_eq!(
        order,
        [
            ("old-b".into(), true),
            ("live".into(), true),
            ("old-a".into(), false)
        ]
    );
}

#[test]
fn a_decision_the_ledger_refused_is_undone() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    st.shown(&sid(), 1, prompt("r1"));
    st.decide(
        &sid(),
        "r1",
        AnswerBody::Permission(allow()),
        ("op", Decider::Operator),
        now(),
        false,
    )
    .unwrap();
    assert!(st.undecide(&sid(), "r1"));
    assert_eq!(
        st.pending(None).len(),
        1,
        "pending again; nothing was written"
    );
    st.decide_now(&sid(), "r1", allow(), "op", now()).unwrap();
    assert!(!st.undecide(&sid(), "r1"), "recorded: no longer undoable");
}

#[test]
fn nothing_is_flushed_while_the_ledger_records() {
    let mut st = Store::new();
    st.shown(&sid(), 1, prompt("r1"));
    st.on_disconnected(&sid(), Some(1));
    st.decide(
        &sid(),
        "r1",
        AnswerBody::Permission(allow()),
        ("a", Decider::Operator),
        now(),
        false,
    )
    .unwrap();
    st.on_connected(&sid(), 2);
    assert_eq!(
        st.shown(&sid(), 2, prompt("r1")),
        Arrival::Duplicate,
        "replayed, but not recorded yet: not written"
    );
    let (conn, _) = st.recorded(&sid(), "r1").expect("now it goes out");
    assert_eq!(conn, 2);
    assert!(st.recorded(&sid(), "r1").is_none(), "only once");
}

fn question(id: &str, request: Value) -> PermissionPrompt {
    match ccr_protocol::classify(
        &json!({"type":"control_request","request_id":id,"request":request}).to_string(),
    ) {
        Ok(ccr_protocol::Inbound::PermissionPrompt(p)) => p,
        other => panic!("not a question: {other:?}"),
    }
}

#[test]
fn questions_take_their_own_answers_and_unrendered_dialogs_none() {
    let mut st = Store::new().with_dialog_kinds(vec!["pick_one".into()]);
    st.on_connected(&sid(), 1);
    let elicit = question(
        "e1",
        json!({"subtype":"elicitation","mcp_server_name":"jira","message":"Project?",
            "requested_schema":{"type":"object","properties":{"key":{"type":"string"}}}}),
    );
    assert_eq!(elicit.kind(), PromptKind::Elicitation);
    assert_eq!(elicit.tool_name, "jira");
    st.shown(&sid(), 1, elicit);
    let answer = |a: QuestionAnswer| AnswerBody::Question(a);
    let op = ("op", Decider::Operator);
    assert!(matches!(
        st.decide(
            &sid(),
            "e1",
            AnswerBody::Permission(allow()),
            op,
            now(),
            false
        ),
        Err(DecideError::WrongKind(_))
    ));
    assert!(matches!(
        st.decide(
            &sid(),
            "e1",
            answer(QuestionAnswer::Dismissed),
            op,
            now(),
            false
        ),
        Err(DecideError::WrongKind(_))
    ));
    let accept = QuestionAnswer::Accept {
        content: Some(json!({"key":"OPS"})),
    };
    let d = st
        .decide(&sid(), "e1", answer(accept), op, now(), false)
        .unwrap();
    assert_eq!((d.behavior, d.grants), ("accept", true));
    assert_eq!(
        serde_json::from_str::<Value>(&d.frame).unwrap(),
        json!({"type":"control_response","response":{"subtype":"success","request_id":"e1",
            "response":{"action":"accept","content":{"key":"OPS"}}}})
    );
    for (id, kind, answerable) in [
        ("d1", "pick_one", true),
        ("d2", "refusal_fallback_prompt", false),
    ] {
        let dialog = question(
            id,
            json!({"subtype":"request_user_dialog","dialog_kind":kind,"payload":{"x":1}}),
        );
        assert_eq!(st.answerable(&dialog), answerable, "{kind}");
        st.shown(&sid(), 1, dialog);
    }
    assert!(matches!(
        st.decide(
            &sid(),
            "d2",
            answer(QuestionAnswer::Dismissed),
            op,
            now(),
            false
        ),
        Err(DecideError::NotAnswerable { .. })
    ));
    let d = st
        .decide(
            &sid(),
            "d1",
            answer(QuestionAnswer::Dismissed),
            op,
            now(),
            false,
        )
        .unwrap();
    assert_eq!((d.behavior, d.grants), ("cancelled", false));
}

#[test]
fn an_answer_goes_only_where_the_session_showed_it_still_waits() {
    let mut st = Store::new();
    st.on_connected(&sid(), 1);
    st.shown(&sid(), 1, prompt("r1"));
    st.shown(&sid(), 1, prompt("r2"));
    // Reconnected; the session's initialize lists only r2 (r1 was settled while away).
    st.on_disconnected(&sid(), Some(1));
    st.on_connected(&sid(), 2);
    assert_eq!(st.shown(&sid(), 2, prompt("r2")), Arrival::Duplicate);
    assert_eq!(st.unconfirm_unseen("s1", 2), ["r1"]);
    let order: Vec<_> = st
        .pending(None)
        .into_iter()
        .map(|(_, e)| (e.prompt.request_id.clone(), e.confirmed))
        .collect();
    assert_eq!(order, [("r2".into(), true), ("r1".into(), false)]);
    // Still answerable, but the answer waits for the session to send r1 again.
    assert_eq!(
        st.decide_now(&sid(), "r1", allow(), "op", now()).unwrap(),
        None,
        "queued, not written to a session that may not want it"
    );
    assert!(st
        .decide_now(&sid(), "r2", allow(), "op", now())
        .unwrap()
        .is_some());
    assert_eq!(
        st.shown(&sid(), 2, prompt("r1")),
        Arrival::Resend {
            conn: 2,
            frame: st
                .get("s1", "r1")
                .and_then(|e| match &e.status {
                    Status::Decided { frame, .. } => Some(frame.clone()),
                    _ => None,
                })
                .unwrap()
        },
        "re-sent: now it goes out"
    );
}

/// A prompt as a session's frame carries it, `input` spelled as the session spelled it.
fn classified(id: &str, input: &str) -> PermissionPrompt {
    let frame = format!(
        r#"{{"type":"control_request","request_id":"{id}","request":{{"subtype":"can_use_tool","tool_name":"Write","input":{input},"tool_use_id":"toolu_{id}"}}}}"#
    );
    match ccr_protocol::classify(&frame) {
        Ok(ccr_protocol::Inbound::PermissionPrompt(p)) => p,
        other => panic!("not a prompt: {other:?}"),
    }
}

/// An allow without an edit answers with the input's text as the session sent it (the
/// frame the ledger records and the session receives); an edit with the edit; the
/// parsed input where there is no text (a prompt built here).
#[test]
fn an_unedited_allow_answers_with_the_input_as_it_came_and_an_edit_with_the_edit() {
    let input = r#"{"file_path":"/tmp/a.txt", "content":"line\n\u00e9", "mode":1e2}"#;
    let p = classified("w1", input);
    let answer = |body: DecisionBody, p: &PermissionPrompt| {
        build_answer(
            p,
            "w1",
            AnswerBody::Permission(body),
            Decider::Operator,
            &[],
        )
        .unwrap()
    };
    let built = answer(allow(), &p);
    assert!(
        built.frame.contains(&format!(r#""updatedInput":{input},"#)),
        "{}",
        built.frame
    );
    assert_eq!(built.edited_input, None);
    let sent: Value = serde_json::from_str(&built.frame).unwrap();
    assert_eq!(sent["response"]["response"]["updatedInput"], p.input);

    let edit = json!({"file_path":"/tmp/b.txt","content":"x"});
    let edited = DecisionBody::Allow {
        updated_input: Some(edit.clone()),
        updated_permissions: None,
    };
    let built = answer(edited, &p);
    let sent: Value = serde_json::from_str(&built.frame).unwrap();
    assert_eq!(sent["response"]["response"]["updatedInput"], edit);
    assert_eq!(built.edited_input, Some(edit));

    // The same input again as an "edit" is no edit, and is sent as the parsed value.
    let same = DecisionBody::Allow {
        updated_input: Some(p.input.clone()),
        updated_permissions: None,
    };
    let built = answer(same, &p);
    assert_eq!(built.edited_input, None);
    let sent: Value = serde_json::from_str(&built.frame).unwrap();
    assert_eq!(sent["response"]["response"]["updatedInput"], p.input);

    let built = answer(allow(), &prompt("w1"));
    let sent: Value = serde_json::from_str(&built.frame).unwrap();
    assert_eq!(
        sent["response"]["response"]["updatedInput"],
        json!({"command":"npm test"})
    );
}
