//! Unit tests of the core, without actix: inputs in, effects out, in order. The ledger,
//! the session actors and the clock are played by the tests, feeding results back.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::effect::{Arrived, Decision, Timer, TimerKind};
use super::*;
use crate::ledger::DecisionRecord;
use crate::policy::{PolicyConfig, RuleAction, RuleConfig};
use crate::registry::store::DecideError;
use crate::telemetry::permissions::Canceller;
use ccr_protocol::api::{AnswerBody, Decider, DecisionBody, Delivery};
use ccr_protocol::reply::{DecisionReceipt, Outcome};
use ccr_protocol::PermissionPrompt;

fn sid() -> Arc<str> {
    Arc::from("s1")
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
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

fn rule(action: RuleAction) -> RuleConfig {
    RuleConfig::new("bash", action, "Bash")
}

fn core_with(policy: PolicyConfig) -> Core {
    let policy = Policy::compile(&policy).expect("valid rules");
    let mut core = Core::new(Arc::new(policy));
    let fx = core.track_session(sid(), Arc::from([]), at(0));
    assert!(fx.is_empty(), "nothing restored");
    core
}

/// A core without rules or deadlines, running session `s1`.
fn core() -> Core {
    core_with(PolicyConfig::default())
}

fn allow(id: &str) -> Answer {
    let body = AnswerBody::Permission(DecisionBody::Allow {
        updated_input: None,
        updated_permissions: None,
    });
    Answer::operator(sid(), id.into(), body, "alice".into())
}

/// What each effect is, in order, e.g. `emit:prompt_shown`, `record:decision`.
fn kinds(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .map(|e| match e {
            Effect::Emit(h) => format!("emit:{}", h.name()),
            Effect::ForgetHistory(_) => "forget_history".into(),
            Effect::Record(Record::Prompt { .. }) => "record:prompt".into(),
            Effect::Record(Record::Decision(_)) => "record:decision".into(),
            Effect::Record(Record::DecisionUntilDurable(_)) => "record:until_durable".into(),
            Effect::Record(Record::Delivered { .. }) => "record:delivered".into(),
            Effect::Record(Record::Ending(_)) => "record:ending".into(),
            Effect::Record(Record::PromptLater { .. }) => "record:prompt_later".into(),
            Effect::Lookup(Lookup::Resend { .. }) => "lookup:resend".into(),
            Effect::Lookup(Lookup::Check { .. }) => "lookup:check".into(),
            Effect::Write(w) => format!("write:{}", w.conn),
            Effect::StartTimer { .. } => "timer".into(),
            Effect::Reply(..) => "reply".into(),
            Effect::ReadDecision { .. } => "read_decision".into(),
        })
        .collect()
}

/// The one effect `pick` selects (panics if there is not exactly one).
fn one<T>(fx: Vec<Effect>, pick: impl Fn(Effect) -> Option<T>) -> T {
    let mut got: Vec<T> = fx.into_iter().filter_map(pick).collect();
    assert_eq!(got.len(), 1, "exactly one matching effect");
    got.remove(0)
}

fn prompt_record(fx: Vec<Effect>) -> Arrived {
    one(fx, |e| match e {
        Effect::Record(Record::Prompt { arrived, .. }) => Some(arrived),
        _ => None,
    })
}

fn decision_write(fx: Vec<Effect>) -> DecisionWrite {
    one(fx, |e| match e {
        Effect::Record(Record::Decision(w) | Record::DecisionUntilDurable(w)) => Some(w),
        _ => None,
    })
}

fn write(fx: Vec<Effect>) -> Write {
    one(fx, |e| match e {
        Effect::Write(w) => Some(w),
        _ => None,
    })
}

fn reply(fx: Vec<Effect>) -> (Ticket, Result<DecisionReceipt, DecideError>) {
    one(fx, |e| match e {
        Effect::Reply(t, r) => Some((t, r)),
        _ => None,
    })
}

fn answered_delivery(fx: &[Effect]) -> Option<Delivery> {
    fx.iter().find_map(|e| match e {
        Effect::Emit(Happening::Answered(a)) => Some(a.delivery),
        _ => None,
    })
}

/// The latency an `AnswerDelivered` in `fx` observes.
fn delivered_latency(fx: &[Effect]) -> Option<Duration> {
    fx.iter().find_map(|e| match e {
        Effect::Emit(Happening::Delivered(d)) => d.latency,
        _ => None,
    })
}

/// How a `PromptAnswered` in `fx` is counted: outcome and source.
fn answered_counted(fx: &[Effect]) -> Option<(Outcome, &'static str)> {
    fx.iter().find_map(|e| match e {
        Effect::Emit(Happening::Answered(a)) => Some((a.outcome, a.source)),
        _ => None,
    })
}

/// Who withdrew the prompt of a `PromptCancelled` in `fx`.
fn cancelled_by(fx: &[Effect]) -> Option<Canceller> {
    fx.iter().find_map(|e| match e {
        Effect::Emit(Happening::Cancelled(c)) => Some(c.by),
        _ => None,
    })
}

/// `id` arrives on `conn` and the ledger records it: what arriving (besides its record)
/// and showing it did. For a prompt no rule answers.
fn shown(core: &mut Core, conn: ConnId, id: &str) -> Vec<Effect> {
    let fx = core.on_prompt(sid(), conn, prompt(id), Arc::from([]), None, at(0));
    assert_eq!(
        kinds(&fx).last().map(String::as_str),
        Some("record:prompt"),
        "recorded before anyone sees it"
    );
    let (mut before, record): (Vec<Effect>, Vec<Effect>) = fx
        .into_iter()
        .partition(|e| !matches!(e, Effect::Record(Record::Prompt { .. })));
    before.extend(core.on_prompt_recorded(prompt_record(record), Ok(()), at(0)));
    before
}

/// `id` arrives on `conn` and a rule (or `refusal`) answers it at once: the one write of
/// its row and its answer.
fn ruled(core: &mut Core, conn: ConnId, id: &str, refusal: Option<Refusal>) -> DecisionWrite {
    let fx = core.on_prompt(sid(), conn, prompt(id), Arc::from([]), refusal, at(0));
    assert_eq!(
        kinds(&fx),
        ["record:decision"],
        "nothing shown before durable"
    );
    let w = decision_write(fx);
    assert!(w.unshown, "shown once durable");
    assert!(w.prompt.is_some(), "the prompt's row goes with its answer");
    w
}

/// An operator allows `id` and the ledger takes it: the effects after it is durable.
fn allowed(core: &mut Core, id: &str, ticket: u64) -> Vec<Effect> {
    let fx = core.decide(allow(id), Ticket(ticket), at(1));
    assert_eq!(
        kinds(&fx),
        ["record:decision"],
        "nothing written before durable"
    );
    core.on_decision_recorded(decision_write(fx), Ok(()), at(1))
}

fn ledger_down() -> LedgerError {
    LedgerError::Storage("disk full".into())
}

#[test]
fn a_new_prompt_is_recorded_then_shown() {
    let mut core = core();
    let fx = shown(&mut core, 1, "p1");
    assert_eq!(kinds(&fx), ["emit:prompt_shown"]);
    let listed = core.pending(None, false, at(2));
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].request_id.as_str(), listed[0].age_ms),
        ("p1", 2000)
    );
}

#[test]
fn an_allow_is_recorded_then_written_then_published_with_its_receipt() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    let fx = allowed(&mut core, "p1", 7);
    assert_eq!(
        kinds(&fx),
        ["write:1"],
        "nothing counted or published before the write"
    );
    let w = write(fx);
    assert!(w.frame.contains("\"behavior\":\"allow\""), "{}", w.frame);
    let fx = core.on_write(w, true, at(3));
    assert_eq!(
        kinds(&fx),
        [
            "record:delivered",
            "emit:answer_delivered",
            "emit:resolved_memory_sized",
            "emit:prompt_answered",
            "reply",
        ]
    );
    assert_eq!(answered_delivery(&fx), Some(Delivery::Sent));
    let (latency, (outcome, source)) = (
        delivered_latency(&fx),
        answered_counted(&fx).expect("answered"),
    );
    assert_eq!(latency, Some(Duration::from_secs(3)), "from its arrival");
    assert_eq!((outcome, source), (Outcome::Allowed, "operator"));
    let (ticket, receipt) = reply(fx);
    let receipt = receipt.expect("accepted");
    assert_eq!(ticket, Ticket(7));
    assert_eq!(
        (receipt.status, receipt.delivery),
        (Outcome::Allowed, Delivery::Sent)
    );
    assert_eq!(core.tallies()[&sid()].decisions, 1);
}

#[test]
fn a_replay_of_an_answered_prompt_gets_the_recorded_answer_without_a_second_record() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    let first = write(allowed(&mut core, "p1", 1));
    let frame = first.frame.clone();
    core.on_write(first, true, at(2));
    // The session reconnects and replays the prompt: it never read the answer.
    core.on_disconnected(&sid(), Some(1));
    core.on_connected(&sid(), 2);
    let fx = core.on_prompt(sid(), 2, prompt("p1"), Arc::from([]), None, at(3));
    assert_eq!(
        kinds(&fx),
        ["emit:answer_resent", "write:2"],
        "no record, no event: just the answer (and its log line)"
    );
    let again = write(fx);
    assert_eq!(again.frame, frame);
    assert!(again.decision.is_none());
    let fx = core.on_write(again, true, at(4));
    assert_eq!(
        kinds(&fx),
        [
            "record:delivered",
            "emit:answer_written_again",
            "emit:resolved_memory_sized"
        ]
    );
    // The same replay on the same connection again is ignored: only logged.
    let fx = core.on_prompt(sid(), 2, prompt("p1"), Arc::from([]), None, at(5));
    assert_eq!(kinds(&fx), ["emit:replay_ignored"]);
}

#[test]
fn an_answer_decided_while_away_is_written_when_the_session_replays_on_reconnect() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    core.on_disconnected(&sid(), Some(1));
    let fx = allowed(&mut core, "p1", 3);
    assert_eq!(kinds(&fx), ["emit:prompt_answered", "reply"]);
    assert_eq!(answered_delivery(&fx), Some(Delivery::Queued));
    assert_eq!(reply(fx).1.expect("accepted").delivery, Delivery::Queued);
    // Nothing goes out on the new connection until the session shows it still waits.
    core.on_connected(&sid(), 2);
    let w = write(core.on_prompt(sid(), 2, prompt("p1"), Arc::from([]), None, at(2)));
    assert_eq!(w.conn, 2);
    let fx = core.on_write(w, true, at(3));
    assert_eq!(
        kinds(&fx),
        [
            "record:delivered",
            "emit:answer_delivered",
            "emit:resolved_memory_sized"
        ]
    );
    assert_eq!(delivered_latency(&fx), Some(Duration::from_secs(3)));
}

#[test]
fn a_failed_write_moves_to_the_newer_connection_and_the_receipt_says_queued() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    let w = write(allowed(&mut core, "p1", 1));
    // Connection 2 opened and the session replayed the prompt there while the write was
    // on its way to connection 1, which is gone.
    core.on_connected(&sid(), 2);
    let fx = core.on_prompt(sid(), 2, prompt("p1"), Arc::from([]), None, at(2));
    assert_eq!(
        kinds(&fx),
        ["emit:replay_ignored"],
        "the write is on its way"
    );
    let fx = core.on_write(w, false, at(3));
    assert_eq!(
        kinds(&fx),
        [
            "emit:write_retrying",
            "write:2",
            "emit:prompt_answered",
            "reply"
        ]
    );
    assert_eq!(answered_delivery(&fx), Some(Delivery::Queued));
}

#[test]
fn an_operator_decision_the_ledger_refused_is_undone_and_refused() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    let fx = core.decide(allow("p1"), Ticket(1), at(1));
    let fx = core.on_decision_recorded(decision_write(fx), Err(ledger_down()), at(1));
    assert_eq!(kinds(&fx), ["emit:prompt_record_failed", "reply"]);
    let (_, refused) = reply(fx);
    assert!(matches!(refused, Err(DecideError::LedgerUnavailable(_))));
    assert_eq!(core.pending(None, false, at(2)).len(), 1, "pending again");
    let fx = allowed(&mut core, "p1", 2);
    assert_eq!(kinds(&fx), ["write:1"], "answerable again");
}

#[test]
fn an_automatic_answer_the_ledger_refused_is_held_back_until_durable() {
    let mut core = core_with(PolicyConfig {
        rules: vec![rule(RuleAction::Allow)],
        ..PolicyConfig::default()
    });
    core.on_connected(&sid(), 1);
    let w = ruled(&mut core, 1, "p1", None);
    let fx = core.on_decision_recorded(w, Err(ledger_down()), at(1));
    assert_eq!(
        kinds(&fx),
        [
            "emit:prompt_shown",
            "emit:prompt_record_failed",
            "record:until_durable"
        ],
        "shown loudly, not written, not undone"
    );
    assert!(core.pending(None, false, at(1)).is_empty(), "answered");
    let fx = core.on_decision_retried(decision_write(fx), Ok(()), at(2));
    assert_eq!(kinds(&fx), ["write:1"], "written once durable");
    let w = write(fx);
    assert_eq!(w.conn, 1);
    assert_eq!(
        w.decision.as_ref().map(|d| d.decided_by.as_str()),
        Some("rule:bash")
    );
}

#[test]
fn a_prompt_answered_on_arrival_is_shown_once_recorded_with_its_answer_or_at_once_when_that_fails()
{
    let mut core = core_with(PolicyConfig {
        rules: vec![rule(RuleAction::Allow)],
        ..PolicyConfig::default()
    });
    core.on_connected(&sid(), 1);
    // Durable at once: shown, then written in the same turn.
    let w = ruled(&mut core, 1, "p1", None);
    let fx = core.on_decision_recorded(w, Ok(()), at(1));
    assert_eq!(kinds(&fx), ["emit:prompt_shown", "write:1"]);
    // The write fails: the prompt is shown at once as unrecorded (never silent) while its
    // answer waits; the lease is then lost: the answer is undone, the prompt left pending
    // for whoever holds the session next.
    let w = ruled(&mut core, 1, "p2", None);
    let fx = core.on_decision_recorded(w, Err(ledger_down()), at(1));
    assert_eq!(kinds(&fx)[0], "emit:prompt_shown");
    let lost = LedgerError::NotOwner {
        session_id: "s1".into(),
    };
    let fx = core.on_decision_retried(decision_write(fx), Err(lost), at(2));
    assert_eq!(kinds(&fx), ["emit:prompt_record_failed"]);
    let pending = core.pending(None, false, at(2));
    assert_eq!(pending.len(), 1, "pending again: {pending:?}");
    // Another instance decided it first: it is shown (its row is there), and the winner
    // is read back.
    let w = ruled(&mut core, 1, "p3", None);
    let first = LedgerError::AlreadyDecided {
        session_id: "s1".into(),
        request_id: "p3".into(),
        outcome: Outcome::Denied,
    };
    let fx = core.on_decision_recorded(w, Err(first), at(3));
    assert_eq!(
        kinds(&fx),
        [
            "emit:prompt_shown",
            "emit:decision_refused",
            "read_decision"
        ]
    );
}

#[test]
fn policy_answers_count_their_rule_and_record_why() {
    let mut core = core_with(PolicyConfig {
        rules: vec![rule(RuleAction::Deny)],
        ..PolicyConfig::default()
    });
    let w = ruled(&mut core, 1, "p1", None);
    assert_eq!(w.row.outcome, Outcome::Denied);
    assert_eq!(w.row.decided_by, "rule:bash");
    assert!(w.row.reason.is_some());
    assert!(w.decision.reply.is_none(), "nobody waits for a rule");
    assert_eq!(core.policy_report().hits.get("bash"), Some(&1));
}

#[test]
fn a_dry_run_rule_and_a_refused_decision_are_only_logged() {
    let mut dry = rule(RuleAction::Deny);
    dry.dry_run = true;
    let mut core = core_with(PolicyConfig {
        rules: vec![dry],
        ..PolicyConfig::default()
    });
    // The dry run is logged before the prompt is shown; a human is asked.
    let fx = shown(&mut core, 1, "p1");
    assert_eq!(kinds(&fx), ["emit:dry_run_matched", "emit:prompt_shown"]);
    let matched = one(fx, |e| match e {
        Effect::Emit(Happening::DryRunMatched(m)) => Some(m),
        _ => None,
    });
    assert_eq!(
        (&*matched.session, matched.request_id.as_str()),
        ("s1", "p1")
    );
    assert_eq!((matched.rule.as_str(), matched.would), ("bash", "deny"));
    // An answer to a prompt the store does not know: logged, refused, nothing recorded.
    let fx = core.decide(allow("nope"), Ticket(1), at(1));
    assert_eq!(kinds(&fx), ["emit:decision_refused", "reply"]);
    assert!(reply(fx).1.is_err());
}

#[test]
fn a_prompt_whose_record_failed_is_shown_loudly_and_its_decision_records_it_first() {
    let mut core = core();
    let fx = core.on_prompt(sid(), 1, prompt("p1"), Arc::from([]), None, at(0));
    let fx = core.on_prompt_recorded(prompt_record(fx), Err(ledger_down()), at(0));
    assert_eq!(
        kinds(&fx),
        [
            "emit:prompt_record_failed",
            "record:prompt_later",
            "emit:prompt_shown"
        ],
        "retried in the background until durable"
    );
    let w = decision_write(core.decide(allow("p1"), Ticket(1), at(1)));
    assert!(w.prompt.is_some(), "the prompt's row goes first");
}

#[test]
fn a_prompt_the_supervisor_could_not_read_is_denied_by_its_limit() {
    let mut core = core_with(PolicyConfig {
        rules: vec![rule(RuleAction::Allow)],
        ..PolicyConfig::default()
    });
    let refusal = Refusal {
        decided_by: LIMIT_FRAME_BYTES,
        message: "too large".into(),
        reason: "frame of 2 MiB".into(),
    };
    let w = ruled(&mut core, 1, "p1", Some(refusal));
    assert_eq!(w.row.decided_by, LIMIT_FRAME_BYTES);
    assert_eq!(w.row.outcome, Outcome::Denied);
    assert_eq!(w.row.reason.as_deref(), Some("frame of 2 MiB"));
    assert!(
        core.policy_report().hits.is_empty(),
        "the policy was not asked"
    );
}

#[test]
fn the_ask_deadline_denies_a_prompt_still_pending_and_the_reminder_comes_first() {
    let mut core = core_with(PolicyConfig {
        ask_timeout: Duration::from_secs(30),
        remind_after: Duration::from_secs(10),
        ..PolicyConfig::default()
    });
    let fx = shown(&mut core, 1, "p1");
    let timers: Vec<(Duration, Timer)> = fx
        .into_iter()
        .filter_map(|e| match e {
            Effect::StartTimer { after, timer } => Some((after, timer)),
            _ => None,
        })
        .collect();
    let afters: Vec<_> = timers.iter().map(|(d, t)| (d.as_secs(), t.kind)).collect();
    let overdue = TimerKind::Overdue {
        after: Duration::from_secs(10),
    };
    assert_eq!(afters, [(10, overdue), (30, TimerKind::AskDeadline)]);
    let fx = core.on_timer(timers[0].1.clone(), at(12));
    let waited = one(fx, |e| match e {
        Effect::Emit(Happening::Overdue(o)) => Some(o.waiting),
        _ => None,
    });
    assert_eq!(waited, Duration::from_secs(12));
    let fx = core.on_timer(timers[1].1.clone(), at(30));
    assert_eq!(kinds(&fx), ["emit:prompt_expired", "record:decision"]);
    let w = decision_write(fx);
    assert_eq!(
        (w.row.outcome, w.row.decided_by.as_str()),
        (Outcome::Expired, "timeout")
    );
    // Once answered, neither timer does anything.
    core.on_decision_recorded(w, Ok(()), at(1));
    assert!(core.on_timer(timers[0].1.clone(), at(40)).is_empty());
    assert!(core.on_timer(timers[1].1.clone(), at(40)).is_empty());
}

#[test]
fn a_restored_prompt_keeps_its_clock_for_its_deadline() {
    let mut core = core_with(PolicyConfig {
        ask_timeout: Duration::from_secs(30),
        ..PolicyConfig::default()
    });
    assert_eq!(core.restore(vec![unfinished_bash("p1")]), 1);
    let fx = core.on_started(at(120));
    assert_eq!(kinds(&fx), ["emit:prompt_restored", "timer"]);
    let confirmed = fx.iter().find_map(|e| match e {
        Effect::Emit(Happening::Restored(r)) => Some(r.confirmed),
        _ => None,
    });
    assert_eq!(
        confirmed,
        Some(false),
        "unconfirmed until the session re-sends it"
    );
    let after = one(fx, |e| match e {
        Effect::StartTimer { after, .. } => Some(after),
        _ => None,
    });
    assert_eq!(
        after,
        Duration::from_secs(10),
        "30 s from its arrival, not from now"
    );
}

/// The session of a removed session's prompt may still wait on it: the prompt is denied
/// for it (recorded, after its history is dropped), not cancelled, so that the session
/// gets that answer when it is added back.
#[test]
fn removing_a_session_denies_its_pending_prompts_after_dropping_its_history() {
    let mut core = core();
    shown(&mut core, 1, "p1");
    let fx = core.forget_session(&sid(), at(2));
    assert_eq!(
        kinds(&fx),
        [
            "forget_history",
            "record:ending",
            "emit:prompt_answered",
            "emit:resolved_memory_sized"
        ]
    );
    assert_eq!(
        answered_counted(&fx),
        Some((Outcome::Denied, "session_removed"))
    );
    let ending = one(fx, |e| match e {
        Effect::Record(Record::Ending(row)) => Some(row),
        _ => None,
    });
    assert_eq!(
        (ending.outcome, ending.decided_by.as_str()),
        (Outcome::Denied, "session_removed")
    );
    let answer: serde_json::Value =
        serde_json::from_str(ending.answer.as_deref().unwrap()).unwrap();
    assert_eq!(answer["response"]["response"]["behavior"], "deny");
    assert_eq!(
        answer["response"]["response"]["message"],
        crate::registry::store::REMOVED_MESSAGE
    );
    assert!(core.pending(None, false, at(3)).is_empty());
}

/// Added back in the same process, the session replays what it still waits on: the
/// removal's answer for a prompt pending then, the operator's queued answer for one
/// decided then; neither is shown or answered anew (once, the replay was new again and
/// a second answer was written while the ledger kept the first).
#[test]
fn a_session_added_back_gets_the_answers_of_its_removal_for_its_replays() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    shown(&mut core, 1, "p2");
    core.on_disconnected(&sid(), Some(1));
    let queued = allowed(&mut core, "p2", 7);
    assert!(
        !kinds(&queued).iter().any(|k| k.starts_with("write")),
        "queued"
    );
    let fx = core.forget_session(&sid(), at(2));
    let denial = one(fx, |e| match e {
        Effect::Record(Record::Ending(row)) => Some(row),
        _ => None,
    });
    assert_eq!(
        denial.request_id, "p1",
        "the decided one is kept, not voided"
    );

    assert!(core.track_session(sid(), Arc::from([]), at(3)).is_empty());
    core.on_connected(&sid(), 2);
    for (id, behavior) in [("p1", "deny"), ("p2", "allow")] {
        let fx = core.on_prompt(sid(), 2, prompt(id), Arc::from([]), None, at(4));
        let frame = one(fx, |e| match e {
            Effect::Write(w) => Some(w.frame),
            _ => None,
        });
        let sent: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(sent["response"]["response"]["behavior"], behavior, "{id}");
        assert_eq!(sent["response"]["request_id"], id);
    }
    assert!(
        core.pending(None, false, at(5)).is_empty(),
        "nothing shown anew"
    );
    let (_, refused) = reply(core.decide(allow("p1"), Ticket(9), at(5)));
    assert!(
        matches!(refused, Err(DecideError::AlreadyAnswered(_))),
        "{refused:?}"
    );
}

/// After a restart the removal's answer is an undelivered decision in the ledger: the
/// replay of a session added back gets it (once, the row said cancelled and the replay
/// was ignored: the session hung).
#[test]
fn after_a_restart_the_replay_of_a_removed_sessions_prompt_gets_the_removal_answer() {
    let mut before = core();
    shown(&mut before, 1, "p1");
    let row = one(before.forget_session(&sid(), at(2)), |e| match e {
        Effect::Record(Record::Ending(row)) => Some(row),
        _ => None,
    });
    let p = prompt("p1");
    let unfinished = Unfinished {
        prompt: crate::ledger::PromptRecord {
            session_id: "s1".into(),
            request_id: "p1".into(),
            tool_use_id: p.tool_use_id,
            tool_name: p.tool_name,
            input: p.input,
            request: p.request,
            received_at: at(0),
        },
        decision: Some(row.clone()),
    };
    let mut restarted = core();
    assert_eq!(restarted.restore(vec![unfinished]), 1);
    restarted.on_started(at(10));
    restarted.on_connected(&sid(), 1);
    let fx = restarted.on_prompt(sid(), 1, prompt("p1"), Arc::from([]), None, at(11));
    let frame = one(fx, |e| match e {
        Effect::Write(w) => Some(w.frame),
        _ => None,
    });
    assert_eq!(Some(&*frame), row.answer.as_deref());
}

#[test]
fn answers_for_sessions_the_supervisor_does_not_run_are_refused_as_unknown() {
    let mut core = core();
    shown(&mut core, 1, "p1");
    let mut other = allow("p1");
    other.session = Arc::from("nope");
    let (_, refused) = reply(core.decide(other, Ticket(1), at(1)));
    assert_eq!(
        refused.unwrap_err(),
        DecideError::UnknownSession("nope".into())
    );
    let (_, refused) = reply(core.decide(allow("zzz"), Ticket(2), at(1)));
    assert!(matches!(refused, Err(DecideError::UnknownPrompt { .. })));
    // Removed, it is unknown from then on.
    core.forget_session(&sid(), at(2));
    let (_, refused) = reply(core.decide(allow("p1"), Ticket(3), at(3)));
    assert_eq!(
        refused.unwrap_err(),
        DecideError::UnknownSession("s1".into())
    );
}

#[test]
fn a_cancel_is_recorded_published_and_voids_a_queued_answer() {
    let mut core = core();
    shown(&mut core, 1, "p1");
    allowed(&mut core, "p1", 1); // not connected: queued
    let fx = core.on_cancelled(sid(), "p1".into(), at(2));
    assert_eq!(
        kinds(&fx),
        [
            "record:ending",
            "emit:prompt_cancelled",
            "emit:resolved_memory_sized"
        ]
    );
    assert_eq!(
        cancelled_by(&fx),
        Some(Canceller::Session { was_pending: false }),
        "its answer was queued"
    );
    let ending = one(fx, |e| match e {
        Effect::Record(Record::Ending(row)) => Some(row),
        _ => None,
    });
    assert_eq!(
        (ending.outcome, ending.decided_by.as_str()),
        (Outcome::Cancelled, "session")
    );
    core.on_connected(&sid(), 2);
    let fx = core.on_prompt(sid(), 2, prompt("p1"), Arc::from([]), None, at(3));
    assert_eq!(
        kinds(&fx),
        ["emit:replay_ignored"],
        "a withdrawn prompt's replay is ignored: nothing recorded, written or published"
    );
    let fx = core.on_cancelled(sid(), "p1".into(), at(4));
    assert_eq!(
        kinds(&fx),
        ["emit:cancel_ignored"],
        "a second cancel is ignored: nothing recorded or published"
    );
}

#[test]
fn an_unknown_prompt_of_an_incomplete_session_is_looked_up_before_it_is_shown() {
    let mut core = core();
    core.restore_resolved(ResolvedRows {
        rows: Vec::new(),
        incomplete: vec!["s1".into()],
    });
    core.on_connected(&sid(), 1);
    let fx = core.on_prompt(sid(), 1, prompt("old"), Arc::from([]), None, at(0));
    assert_eq!(
        kinds(&fx),
        ["emit:unknown_prompt_looked_up", "lookup:check"]
    );
    let check = one(fx, |e| match e {
        Effect::Lookup(l) => Some(l),
        _ => None,
    });
    // Answered before the restart: the recorded answer goes out, nothing is shown.
    let frame = "{\"type\":\"control_response\"}".to_owned();
    let fx = core.on_looked_up(check, Ok(Stored::Answered(frame.clone())), at(1));
    assert_eq!(kinds(&fx), ["emit:answer_resent", "write:1"]);
    assert_eq!(write(fx).frame.as_ref(), frame);
    // Unknown to the ledger as well: a new prompt after all.
    let fx = core.on_prompt(sid(), 1, prompt("new"), Arc::from([]), None, at(2));
    let check = one(fx, |e| match e {
        Effect::Lookup(l) => Some(l),
        _ => None,
    });
    let fx = core.on_looked_up(check, Err(ledger_down()), at(3));
    assert_eq!(
        kinds(&fx),
        ["emit:ledger_lookup_failed", "record:prompt"],
        "a failed read counts as unknown (and is logged)"
    );
}

#[test]
fn prompts_the_initialize_reply_did_not_list_become_unconfirmed() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    shown(&mut core, 1, "p2");
    core.on_disconnected(&sid(), Some(1));
    core.on_connected(&sid(), 2);
    let fx = core.on_prompt(sid(), 2, prompt("p2"), Arc::from([]), None, at(1));
    assert_eq!(kinds(&fx), ["emit:replay_ignored"]);
    let fx = core.on_initialized(&sid(), 2);
    let unseen = one(fx, |e| match e {
        Effect::Emit(Happening::Unconfirmed(u)) => Some(u.request_ids),
        _ => None,
    });
    assert_eq!(unseen, ["p1"]);
}

#[test]
fn the_decision_carried_to_the_write_names_who_waits() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    let w = write(allowed(&mut core, "p1", 9));
    let Some(Decision { reply, decider, .. }) = w.decision else {
        panic!("the first write carries its decision");
    };
    assert_eq!((reply, decider), (Some(Ticket(9)), Decider::Operator));
}

#[test]
fn the_latency_source_of_a_recorded_decider() {
    use super::answer::source_of;
    assert_eq!(source_of("timeout"), "timeout");
    assert_eq!(source_of("rule:reads"), "rule");
    assert_eq!(source_of("limit:max_frame_bytes"), "limit");
    assert_eq!(source_of("oncall"), "operator");
}

#[test]
fn a_replaced_policy_keeps_the_hits_of_the_ids_it_is_told_to() {
    let mut core = core_with(PolicyConfig {
        rules: vec![
            rule(RuleAction::Deny),
            RuleConfig::new("other", RuleAction::Allow, "Read"),
        ],
        ..PolicyConfig::default()
    });
    ruled(&mut core, 1, "p1", None);
    assert_eq!(core.policy_report().hits.get("bash"), Some(&1));
    let next = Policy::compile(&PolicyConfig {
        rules: vec![
            rule(RuleAction::Deny),
            RuleConfig::new("new", RuleAction::Allow, "Bash"),
        ],
        ..PolicyConfig::default()
    })
    .unwrap();
    core.replace_policy(Arc::new(next.clone()), &["bash".to_owned()]);
    assert_eq!(core.policy_report().hits.get("bash"), Some(&1), "kept");
    let ids: Vec<String> = core
        .policy_report()
        .policy
        .rules
        .iter()
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(ids, ["bash", "new"], "the new rules answer");
    core.replace_policy(Arc::new(next), &[]);
    assert!(
        core.policy_report().hits.is_empty(),
        "a changed rule starts at 0"
    );
}

/// The winner of a race another instance won: what the shared ledger holds for `id`.
fn recorded_elsewhere(id: &str, by: &str, frame: &str) -> Unfinished {
    let p = prompt(id);
    Unfinished {
        prompt: crate::ledger::PromptRecord {
            session_id: "s1".into(),
            request_id: id.into(),
            tool_use_id: p.tool_use_id,
            tool_name: p.tool_name,
            input: p.input,
            request: p.request,
            received_at: at(0),
        },
        decision: Some(DecisionRecord {
            session_id: "s1".into(),
            request_id: id.into(),
            outcome: Outcome::Denied,
            decided_by: by.into(),
            decided_at: at(1),
            updated_input: None,
            answer: Some(frame.into()),
            reason: None,
        }),
    }
}

#[test]
fn a_decision_another_instance_recorded_first_is_refused_here_with_409_and_the_winner_delivered() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    let fx = core.decide(allow("p1"), Ticket(7), at(1));
    let lost = LedgerError::AlreadyDecided {
        session_id: "s1".into(),
        request_id: "p1".into(),
        outcome: Outcome::Denied,
    };
    let fx = core.on_decision_recorded(decision_write(fx), Err(lost), at(1));
    assert_eq!(
        kinds(&fx),
        ["emit:decision_refused", "read_decision", "reply"],
        "nothing written"
    );
    let (_, receipt) = reply(fx);
    assert!(
        matches!(receipt, Err(DecideError::AlreadyAnswered(_))),
        "{receipt:?}"
    );
    // The winner, read back from the ledger, goes out from here (the owner).
    let frame = r#"{"type":"control_response","response":{"subtype":"success","request_id":"p1","response":{"behavior":"deny","message":"no"}}}"#;
    let fx = core.on_decided_elsewhere(recorded_elsewhere("p1", "bob", frame));
    let w = write(fx);
    assert_eq!(&*w.frame, frame);
    let fx = core.on_write(w, true, at(2));
    assert_eq!(answered_counted(&fx), Some((Outcome::Denied, "operator")));
    assert!(core.pending(None, false, at(2)).is_empty());
    // Told again (its NOTIFY after the read): nothing more.
    assert!(core
        .on_decided_elsewhere(recorded_elsewhere("p1", "bob", frame))
        .is_empty());
}

#[test]
fn an_adopted_session_shows_its_prompts_and_a_released_one_forgets_them_recording_nothing() {
    let mut core = core();
    let s2: Arc<str> = Arc::from("s2");
    let mut pending = recorded_elsewhere("p1", "x", "{}");
    pending.prompt.session_id = "s2".into();
    pending.decision = None;
    let fx = core.adopt_session(&s2, vec![pending], ResolvedRows::default(), at(5));
    assert!(
        kinds(&fx).contains(&"emit:prompt_restored".to_owned()),
        "{:?}",
        kinds(&fx)
    );
    assert_eq!(core.pending(Some("s2"), false, at(5)).len(), 1);
    assert!(core.tracks("s2"));
    let fx = core.release_session(&s2);
    assert!(
        fx.iter().all(|e| !matches!(e, Effect::Record(_))),
        "handed over: nothing recorded, {:?}",
        kinds(&fx)
    );
    assert!(core.pending(Some("s2"), false, at(6)).is_empty());
}

#[test]
fn only_a_prompt_still_pending_here_is_pending() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    assert!(core.is_pending("s1", "p1"));
    assert!(!core.is_pending("s1", "nope"));
    let fx = core.decide(allow("p1"), Ticket(1), at(1));
    assert!(!core.is_pending("s1", "p1"), "decided, being recorded");
    core.on_decision_recorded(decision_write(fx), Ok(()), at(1));
    assert!(!core.is_pending("s1", "p1"));
}

#[test]
fn a_replay_of_a_prompt_the_last_owner_finished_is_matched_to_its_record_not_shown_again() {
    let mut core = core();
    let s2: Arc<str> = Arc::from("s2");
    let finished = ResolvedRows {
        rows: vec![(
            "s2".into(),
            "old".into(),
            Stored::Answered("{\"answer\":1}".into()),
        )],
        incomplete: Vec::new(),
    };
    core.adopt_session(&s2, Vec::new(), finished, at(5));
    core.on_connected(&s2, 3);
    let fx = core.on_prompt(s2.clone(), 3, prompt("old"), Arc::from([]), None, at(6));
    assert!(
        !kinds(&fx).contains(&"record:prompt".to_owned()),
        "not new: {:?}",
        kinds(&fx)
    );
    assert_eq!(&*write(fx).frame, "{\"answer\":1}", "its answer re-sent");
    // A prompt it never saw is new, with no ledger lookup (the history was complete).
    let fx = core.on_prompt(s2, 3, prompt("new"), Arc::from([]), None, at(6));
    assert_eq!(kinds(&fx), ["record:prompt"]);
}

#[test]
fn a_lapsed_lease_renewed_writes_the_answers_that_waited_and_records_the_prompts_that_could_not_be()
{
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    let w = write(allowed(&mut core, "p1", 1));
    // The lease lapsed before the write: the session actor refused it (nothing sent), and
    // there is no newer connection to try.
    let fx = core.on_write(w, false, at(2));
    assert_eq!(answered_delivery(&fx), Some(Delivery::Queued));
    assert!(!kinds(&fx).iter().any(|k| k.starts_with("write:")));
    // A prompt arrives meanwhile: its fenced record is refused (the lease has lapsed). It
    // is held back unseen: nobody is shown a prompt before it is recorded.
    let fx = core.on_prompt(sid(), 1, prompt("p2"), Arc::from([]), None, at(3));
    let fx = core.on_prompt_recorded(prompt_record(fx), Err(lapsed()), at(3));
    assert_eq!(
        kinds(&fx),
        ["emit:prompt_held"],
        "neither shown nor retried by itself"
    );
    assert!(core.pending(None, false, at(3)).is_empty(), "not listed");
    let refused = reply(core.decide(allow("p2"), Ticket(2), at(3))).1;
    assert!(
        matches!(refused, Err(DecideError::UnknownPrompt { .. })),
        "not answerable: {refused:?}"
    );
    // The database renews the lease at its epoch: p2 is recorded afresh, p1 goes out on
    // the socket kept open.
    let fx = core.on_resumed(&sid());
    assert_eq!(kinds(&fx), ["record:prompt", "write:1"]);
    let mut fx = fx.into_iter();
    let again = prompt_record(fx.next().into_iter().collect());
    assert_eq!(again.request_id, "p2");
    let w = write(fx.collect());
    assert_eq!(w.request_id, "p1");
    let fx = core.on_write(w, true, at(4));
    assert!(kinds(&fx).contains(&"emit:answer_delivered".to_owned()));
    // Recorded now: shown, listed, answerable.
    let fx = core.on_prompt_recorded(again, Ok(()), at(4));
    assert_eq!(kinds(&fx), ["emit:prompt_shown"]);
    assert_eq!(core.pending(None, false, at(4)).len(), 1);
    // Nothing waits any more.
    assert!(core.on_resumed(&sid()).is_empty());
    // A session not held here has nothing to resume.
    assert!(core.on_resumed(&Arc::from("other")).is_empty());
}

fn lapsed() -> LedgerError {
    LedgerError::LeaseLapsed {
        session_id: "s1".into(),
    }
}

fn not_owner(session: &str) -> LedgerError {
    LedgerError::NotOwner {
        session_id: session.into(),
    }
}

/// Found by the short cluster chaos run (seed 11913598742228337466): an instance handed
/// a session over (released it), and a prompt came on the session's connection while it
/// was still closing. Its record was refused (the lease is not held here); it was shown
/// anyway and listed by this instance until it died, while no other instance knew it
/// (404): a prompt seen before it was recorded.
#[test]
fn a_prompt_of_a_session_released_here_is_never_shown_and_its_replay_after_readoption_is_new() {
    let mut core = core();
    let s2: Arc<str> = Arc::from("s2");
    core.adopt_session(&s2, Vec::new(), ResolvedRows::default(), at(1));
    core.on_connected(&s2, 7);
    core.release_session(&s2);
    let fx = core.on_prompt(s2.clone(), 7, prompt("late"), Arc::from([]), None, at(2));
    let fx = core.on_prompt_recorded(prompt_record(fx), Err(not_owner("s2")), at(2));
    assert_eq!(kinds(&fx), ["emit:prompt_held"], "not shown, not retried");
    assert!(core.pending(None, false, at(2)).is_empty(), "not listed");
    // Should this instance own the session again, the session's replay of it is new here.
    core.adopt_session(&s2, Vec::new(), ResolvedRows::default(), at(3));
    core.on_connected(&s2, 8);
    let fx = core.on_prompt(s2.clone(), 8, prompt("late"), Arc::from([]), None, at(4));
    assert_eq!(kinds(&fx), ["record:prompt"], "recorded, then shown");
    let fx = core.on_prompt_recorded(prompt_record(fx), Ok(()), at(4));
    assert_eq!(kinds(&fx), ["emit:prompt_shown"]);
    assert_eq!(core.pending(Some("s2"), false, at(4)).len(), 1);
}

#[test]
fn a_prompt_a_rule_answers_on_a_lapsed_lease_is_held_unseen_and_on_a_lost_one_dropped() {
    let mut core = core_with(PolicyConfig {
        rules: vec![rule(RuleAction::Allow)],
        ..PolicyConfig::default()
    });
    core.on_connected(&sid(), 1);
    // Lapsed: held unseen with its answer, retried until the lease is renewed.
    let w = ruled(&mut core, 1, "p1", None);
    let fx = core.on_decision_recorded(w, Err(lapsed()), at(1));
    assert_eq!(kinds(&fx), ["emit:prompt_held", "record:until_durable"]);
    assert!(core.pending(None, true, at(1)).is_empty(), "not listed");
    let fx = core.on_decision_retried(decision_write(fx), Ok(()), at(2));
    assert_eq!(kinds(&fx), ["emit:prompt_shown", "write:1"], "renewed");
    // Not held here (handed over, its socket closing): dropped without a trace, so that
    // the session's replay of it is new should this instance hold the session again.
    let w = ruled(&mut core, 1, "p2", None);
    let fx = core.on_decision_recorded(w, Err(not_owner("s1")), at(3));
    assert_eq!(kinds(&fx), ["emit:prompt_held"]);
    assert!(core.pending(None, true, at(3)).is_empty(), "not listed");
    ruled(&mut core, 1, "p2", None);
    // Lapsed, then lost: dropped alike.
    let w = ruled(&mut core, 1, "p3", None);
    let fx = core.on_decision_recorded(w, Err(lapsed()), at(4));
    let fx = core.on_decision_retried(decision_write(fx), Err(not_owner("s1")), at(5));
    assert_eq!(kinds(&fx), ["emit:prompt_held"]);
    ruled(&mut core, 1, "p3", None);
}

#[test]
fn a_held_prompt_withdrawn_or_released_meanwhile_is_not_recorded_when_the_lease_is_renewed() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    for id in ["gone", "kept"] {
        let fx = core.on_prompt(sid(), 1, prompt(id), Arc::from([]), None, at(1));
        let fx = core.on_prompt_recorded(prompt_record(fx), Err(lapsed()), at(1));
        assert_eq!(kinds(&fx), ["emit:prompt_held"]);
    }
    let fx = core.on_cancelled(sid(), "gone".into(), at(2));
    assert!(kinds(&fx).contains(&"emit:prompt_cancelled".to_owned()));
    let fx = core.on_resumed(&sid());
    assert_eq!(kinds(&fx), ["record:prompt"]);
    assert_eq!(prompt_record(fx).request_id, "kept");
    // Lapsed again, then lost: released, nothing of it is held or recorded any more.
    let fx = core.on_prompt(sid(), 1, prompt("late"), Arc::from([]), None, at(3));
    core.on_prompt_recorded(prompt_record(fx), Err(lapsed()), at(3));
    core.release_session(&sid());
    assert!(core.on_resumed(&sid()).is_empty());
    assert!(core.pending(None, false, at(4)).is_empty());
}

/// A pending prompt of session `s1` as the ledger restores it.
fn unfinished_bash(id: &str) -> Unfinished {
    Unfinished {
        prompt: crate::ledger::PromptRecord {
            session_id: "s1".into(),
            request_id: id.into(),
            tool_use_id: None,
            tool_name: "Bash".into(),
            input: json!({"command":"ls"}),
            request: json!({"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"ls"}}),
            received_at: at(100),
        },
        decision: None,
    }
}

/// A prompt a label-scoped `ask` rule held for a person stays held after a restart: the
/// registry restores it before the supervisor tracks its session, so the policy waits
/// for the session's labels instead of judging it without them (once, the later `allow`
/// answered it as `rule:bash`).
#[test]
fn a_restored_prompt_is_judged_with_its_sessions_labels() {
    let mut ask = RuleConfig::new("prod-ask", RuleAction::Ask, "Bash");
    ask.sessions = Some(vec!["prod".into()]);
    ask.ask_timeout = Some(Duration::from_secs(30));
    let policy = PolicyConfig {
        rules: vec![ask, rule(RuleAction::Allow)],
        ..PolicyConfig::default()
    };
    let policy = Arc::new(Policy::compile(&policy).expect("valid rules"));
    let prod: Arc<[String]> = Arc::from(vec!["prod".to_owned()]);

    // As at a start: restored and shown, then the session is tracked with its labels.
    let mut core = Core::new(policy.clone());
    assert_eq!(core.restore(vec![unfinished_bash("p1")]), 1);
    let fx = core.on_started(at(120));
    assert_eq!(
        kinds(&fx),
        ["emit:prompt_restored"],
        "no ruling without labels"
    );
    let fx = core.track_session(sid(), prod.clone(), at(121));
    assert_eq!(
        kinds(&fx),
        ["timer"],
        "asked, under the ask rule's deadline"
    );
    let after = one(fx, |e| match e {
        Effect::StartTimer { after, .. } => Some(after),
        _ => None,
    });
    assert_eq!(
        after,
        Duration::from_secs(9),
        "30 s from its arrival at 100"
    );
    assert!(core.is_pending("s1", "p1"));
    // Tracked again (a changed spec): nothing is judged twice.
    assert!(core.track_session(sid(), prod.clone(), at(122)).is_empty());

    // Adopted in a cluster: tracked first, so judged at once, with the labels.
    let mut core = Core::new(policy.clone());
    assert!(core.track_session(sid(), prod, at(0)).is_empty());
    let fx = core.adopt_session(
        &sid(),
        vec![unfinished_bash("p1")],
        ResolvedRows::default(),
        at(120),
    );
    assert!(kinds(&fx).contains(&"timer".to_owned()), "{:?}", kinds(&fx));
    assert!(core.is_pending("s1", "p1"));

    // Without the label the allow rule answers it, as before.
    let mut core = Core::new(policy);
    core.restore(vec![unfinished_bash("p1")]);
    core.on_started(at(120));
    let w = decision_write(core.track_session(sid(), Arc::from([]), at(121)));
    assert_eq!(
        (w.row.outcome, w.row.decided_by.as_str()),
        (Outcome::Allowed, "rule:bash")
    );
}

/// The session withdraws a prompt while an operator's answer is being recorded: the
/// cancel, recorded after it, voids it; the operator hears 409 `prompt_cancelled`, not a
/// receipt of an answer nobody will get, and nothing is written or announced as answered.
#[test]
fn an_answer_the_session_withdrew_its_prompt_from_while_recording_is_refused() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    let w = decision_write(core.decide(allow("p1"), Ticket(1), at(1)));
    let fx = core.on_cancelled(sid(), "p1".into(), at(1));
    assert!(
        kinds(&fx).contains(&"record:ending".to_owned()),
        "{:?}",
        kinds(&fx)
    );
    let fx = core.on_decision_recorded(w, Ok(()), at(2));
    assert!(answered_counted(&fx).is_none(), "{:?}", kinds(&fx));
    assert!(!kinds(&fx).iter().any(|k| k.starts_with("write")));
    let (ticket, r) = reply(fx);
    assert_eq!(ticket, Ticket(1));
    assert!(matches!(r, Err(DecideError::Cancelled(_))), "{r:?}");
}

/// The ask deadline fires while an operator's answer is being recorded, and the ledger
/// then refuses that answer: the prompt is pending again and still expires (once, the
/// deadline was dropped for good and the prompt waited with none).
#[test]
fn a_deadline_that_fires_while_an_answer_is_recorded_is_kept_should_that_answer_fail() {
    let mut core = core_with(PolicyConfig {
        ask_timeout: Duration::from_secs(30),
        ..PolicyConfig::default()
    });
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p1");
    let w = decision_write(core.decide(allow("p1"), Ticket(1), at(29)));
    let deadline = Timer {
        session: sid(),
        request_id: "p1".into(),
        labels: Arc::from([]),
        kind: TimerKind::AskDeadline,
    };
    let again = one(core.on_timer(deadline, at(30)), |e| match e {
        Effect::StartTimer { after, timer } => Some((after, timer)),
        _ => None,
    });
    assert_eq!(again.0, Duration::from_secs(1), "tried again soon");
    let fx = core.on_decision_recorded(w, Err(ledger_down()), at(31));
    assert!(matches!(
        reply(fx).1,
        Err(DecideError::LedgerUnavailable(_))
    ));
    assert!(core.is_pending("s1", "p1"));
    let w = decision_write(core.on_timer(again.1.clone(), at(31)));
    assert_eq!(
        (w.row.outcome, w.row.decided_by.as_str()),
        (Outcome::Expired, "timeout")
    );

    // Recorded after all: the timer tried again finds it answered and does nothing.
    let mut core = core_with(PolicyConfig {
        ask_timeout: Duration::from_secs(30),
        ..PolicyConfig::default()
    });
    core.on_connected(&sid(), 1);
    shown(&mut core, 1, "p2");
    let w = decision_write(core.decide(allow("p2"), Ticket(2), at(29)));
    let mut timer = again.1;
    timer.request_id = "p2".into();
    assert_eq!(kinds(&core.on_timer(timer.clone(), at(30))), ["timer"]);
    core.on_decision_recorded(w, Ok(()), at(30));
    assert!(core.on_timer(timer, at(31)).is_empty());
}

/// The session withdraws a prompt while the ledger is asked about it (a replay of an
/// incomplete session): the cancel is recorded and the ledger's answer, when it comes,
/// finds it settled (once, the cancel was ignored and the withdrawn prompt then shown).
#[test]
fn a_prompt_withdrawn_while_it_is_looked_up_is_not_shown_after_the_lookup() {
    let mut core = core();
    core.restore_resolved(ResolvedRows {
        rows: Vec::new(),
        incomplete: vec!["s1".into()],
    });
    core.on_connected(&sid(), 1);
    let check = one(
        core.on_prompt(sid(), 1, prompt("p1"), Arc::from([]), None, at(0)),
        |e| match e {
            Effect::Lookup(l) => Some(l),
            _ => None,
        },
    );
    let fx = core.on_cancelled(sid(), "p1".into(), at(1));
    assert!(
        kinds(&fx).contains(&"record:ending".to_owned()),
        "{:?}",
        kinds(&fx)
    );
    assert!(cancelled_by(&fx).is_some());
    let tool_use_id = fx.iter().find_map(|e| match e {
        Effect::Emit(Happening::Cancelled(c)) => Some(c.tool_use_id.clone()),
        _ => None,
    });
    assert_eq!(tool_use_id, Some(Some("toolu_p1".to_owned())));
    let fx = core.on_looked_up(check, Ok(Stored::Pending), at(2));
    assert!(
        !kinds(&fx).contains(&"record:prompt".to_owned()),
        "{:?}",
        kinds(&fx)
    );
    assert!(core.pending(None, false, at(3)).is_empty());
}

/// A prompt whose own record is still being retried when its session is removed gets
/// no removal answer (it could reach the ledger before the prompt and be refused, while
/// the session got it): the ledger will have it pending, and a replay after the session
/// is added back is looked up there.
#[test]
fn removing_a_session_leaves_a_prompt_whose_record_is_retried_to_the_ledger() {
    let mut core = core();
    core.on_connected(&sid(), 1);
    let fx = core.on_prompt(sid(), 1, prompt("p1"), Arc::from([]), None, at(0));
    let fx = core.on_prompt_recorded(prompt_record(fx), Err(ledger_down()), at(0));
    assert!(
        kinds(&fx).contains(&"record:prompt_later".to_owned()),
        "{:?}",
        kinds(&fx)
    );
    let fx = core.forget_session(&sid(), at(1));
    assert!(
        !kinds(&fx).contains(&"record:ending".to_owned()),
        "{:?}",
        kinds(&fx)
    );
    assert!(answered_counted(&fx).is_none());
    core.track_session(sid(), Arc::from([]), at(2));
    core.on_connected(&sid(), 2);
    let fx = core.on_prompt(sid(), 2, prompt("p1"), Arc::from([]), None, at(3));
    assert_eq!(
        kinds(&fx),
        ["emit:unknown_prompt_looked_up", "lookup:check"]
    );
}
