//! The checker against hand-built runs: one per invariant, plus the legitimate
//! oddities (resends after a replay, answers crossing a cancel) that must not count.

use std::time::Instant;

use serde_json::{json, Value};

use super::*;
use crate::records::{Attempt, Records};
use ccr_sim::WireRecord;

const S: &str = "s1";

/// A run built step by step; wire records get consecutive numbers.
struct Run(Records);

fn run() -> Run {
    Run(Records {
        start: Instant::now(),
        wire: Vec::new(),
        wire_overflowed: 0,
        attempts: Vec::new(),
        rule_prompts: Default::default(),
        kills: Vec::new(),
        faults: Vec::new(),
        ledger: Vec::new(),
        crashes: Vec::new(),
    })
}

fn allow() -> AnswerKey {
    AnswerKey::Allow(json!({"command": "ls"}))
}

fn edit(mark: &str) -> AnswerKey {
    AnswerKey::Allow(json!({"command": "ls", "chaos_edit": mark}))
}

fn deny(m: &str) -> AnswerKey {
    AnswerKey::Deny(m.into())
}

fn body(rid: &str, key: &AnswerKey) -> Value {
    let result = match key {
        AnswerKey::Allow(input) => json!({"behavior": "allow", "updatedInput": input}),
        AnswerKey::Deny(m) => json!({"behavior": "deny", "message": m}),
        AnswerKey::Other(v) => v.clone(),
    };
    json!({"subtype": "success", "request_id": rid, "response": result})
}

/// The input of rule prompt `rid` (a `Read`).
fn read_input(rid: &str) -> Value {
    json!({"file_path": format!("/repo/{rid}.md")})
}

/// The rule's answer to rule prompt `rid`: allow, input unchanged.
fn by_rule(rid: &str) -> AnswerKey {
    AnswerKey::Allow(read_input(rid))
}

fn sent() -> ApiResult {
    ApiResult::Accepted {
        delivery: "sent".into(),
    }
}

fn refused(code: &str) -> ApiResult {
    ApiResult::Refused {
        status: 409,
        code: code.into(),
    }
}

impl Run {
    fn wire(mut self, event: WireEvent) -> Self {
        let seq = self.0.wire.len() as u64 + 1;
        self.0.wire.push(WireRecord {
            seq,
            at: Instant::now(),
            session: S.into(),
            event,
        });
        self
    }
    fn attach(self, conn: u64, replayed: &[&str]) -> Self {
        let replayed = replayed.iter().map(|r| r.to_string()).collect();
        self.wire(WireEvent::Attached { conn, replayed })
    }
    fn prompt(self, rid: &str, conn: u64) -> Self {
        self.wire(WireEvent::Prompted {
            request_id: rid.into(),
            conn: Some(conn),
        })
    }
    /// A prompt of the rule's tool (the rule answers it).
    fn rule_prompt(mut self, rid: &str, conn: u64) -> Self {
        let id = (S.to_owned(), rid.to_owned());
        self.0.rule_prompts.insert(id, read_input(rid));
        self.prompt(rid, conn)
    }
    fn cancel(self, rid: &str, conn: u64) -> Self {
        self.wire(WireEvent::Cancelled {
            request_id: rid.into(),
            conn: Some(conn),
        })
    }
    fn withdraw_unseen(self, rid: &str) -> Self {
        self.wire(WireEvent::Cancelled {
            request_id: rid.into(),
            conn: None,
        })
    }
    fn answer(self, rid: &str, conn: u64, key: &AnswerKey, settled: bool) -> Self {
        self.wire(WireEvent::Answered {
            request_id: rid.into(),
            conn,
            body: body(rid, key),
            settled,
        })
    }
    fn api(mut self, op: &str, rid: &str, key: &AnswerKey, result: ApiResult) -> Self {
        self.0.attempts.push(Attempt {
            operator: op.into(),
            session: S.into(),
            request_id: rid.into(),
            answer: key.clone(),
            pid: 1,
            instance: String::new(),
            listed_by: (1, String::new()),
            sent_at: Instant::now(),
            done_at: Instant::now(),
            result,
        });
        self
    }
    fn row(self, rid: &str, outcome: &str, answer: Option<&AnswerKey>, delivered: bool) -> Self {
        self.row_by(rid, outcome, answer, delivered, "op-a")
    }
    fn row_by(
        mut self,
        rid: &str,
        outcome: &str,
        answer: Option<&AnswerKey>,
        delivered: bool,
        by: &str,
    ) -> Self {
        self.0.ledger.push(LedgerRow {
            session: S.into(),
            request_id: rid.into(),
            outcome: outcome.into(),
            decided_by: Some(by.into()),
            answer: answer.cloned(),
            delivered,
        });
        self
    }
    fn kinds(&self) -> Vec<Kind> {
        check(&self.0).violations.iter().map(|v| v.kind).collect()
    }
}

#[test]
fn a_clean_answer_breaks_nothing() {
    let r = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .api("op-a", "p1", &allow(), sent())
        .api("op-b", "p1", &deny("no"), refused("already_answered"))
        .answer("p1", 1, &allow(), true)
        .row("p1", "allowed", Some(&allow()), true);
    assert_eq!(r.kinds(), []);
    let c = check(&r.0).counts;
    assert_eq!(
        (c.prompts, c.answered, c.api_sent, c.api_already_answered),
        (1, 1, 1, 1)
    );
}

#[test]
fn unanswered_and_not_withdrawn_is_lost() {
    let r = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .row("p1", "pending", None, false);
    assert_eq!(r.kinds(), [Kind::Lost]);
}

#[test]
fn a_restart_that_shows_a_replay_as_new_breaks_several_invariants() {
    // op-a's edit was written on connection 1, which died unread; after the
    // restart the replay was shown again and op-b's deny took effect.
    let r = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .api("op-a", "p1", &edit("op-a#1"), sent())
        .wire(WireEvent::Detached { conn: 1 })
        .attach(2, &["p1"])
        .api("op-b", "p1", &deny("op-b#2"), sent())
        .answer("p1", 2, &deny("op-b#2"), true)
        .row("p1", "allowed", Some(&edit("op-a#1")), true);
    assert_eq!(
        r.kinds(),
        [Kind::AckNotDelivered, Kind::DoubleAck, Kind::LedgerMismatch]
    );
    assert!(check(&r.0).violations.iter().all(|v| !v.across_restart));
    let mut killed = r;
    let at = killed.0.wire[2].at;
    killed.0.kills.push(crate::records::Kill {
        at,
        pid: 1,
        instance: String::new(),
        how: crate::records::Signal::Kill9,
    });
    assert!(check(&killed.0).violations.iter().all(|v| v.across_restart));
}

#[test]
fn a_resend_after_a_replay_is_legitimate_and_counted() {
    let r = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .attach(2, &["p1"])
        .answer("p1", 1, &allow(), true)
        .answer("p1", 2, &allow(), false)
        .api("op-a", "p1", &allow(), sent())
        .row("p1", "allowed", Some(&allow()), true);
    assert_eq!(r.kinds(), []);
    let c = check(&r.0).counts;
    assert_eq!((c.resends, c.answered_after_replay), (1, 0));
    let replayed = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .attach(2, &["p1"])
        .api("op-a", "p1", &allow(), sent())
        .answer("p1", 2, &allow(), true)
        .row("p1", "allowed", Some(&allow()), true);
    assert_eq!(replayed.kinds(), []);
    assert_eq!(check(&replayed.0).counts.answered_after_replay, 1);
}

#[test]
fn a_repeat_without_a_replay_or_with_other_content_is_answered_twice() {
    let base = || {
        run()
            .attach(1, &[])
            .prompt("p1", 1)
            .api("op-a", "p1", &allow(), sent())
            .answer("p1", 1, &allow(), true)
            .attach(2, &[])
            .row("p1", "allowed", Some(&allow()), true)
    };
    assert_eq!(
        base().answer("p1", 2, &allow(), false).kinds(),
        [Kind::DuplicateAnswer]
    );
    let other = base()
        .api("op-b", "p1", &deny("x"), ApiResult::Failed("reset".into()))
        .answer("p1", 2, &deny("x"), false);
    assert_eq!(other.kinds(), [Kind::DifferentAnswers]);
}

#[test]
fn answers_after_a_cancel_count_only_on_a_later_connection() {
    let crossed = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .api("op-a", "p1", &allow(), sent())
        .cancel("p1", 1)
        .answer("p1", 1, &allow(), false)
        .row("p1", "allowed", Some(&allow()), true);
    assert_eq!(crossed.kinds(), []);
    assert_eq!(check(&crossed.0).counts.crossed_cancels, 1);

    let later = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .cancel("p1", 1)
        .attach(2, &[])
        .api("op-a", "p1", &allow(), sent())
        .answer("p1", 2, &allow(), false)
        .row("p1", "allowed", Some(&allow()), true);
    assert_eq!(later.kinds(), [Kind::AnswerAfterCancel]);

    // Withdrawn while disconnected (another client answered), never replayed:
    // an answer on the next connection is one the session no longer wants.
    let unseen = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .wire(WireEvent::Detached { conn: 1 })
        .withdraw_unseen("p1")
        .attach(2, &[])
        .api("op-a", "p1", &allow(), sent())
        .answer("p1", 2, &allow(), false)
        .row("p1", "allowed", Some(&allow()), true);
    assert_eq!(unseen.kinds(), [Kind::AnswerAfterCancel]);
    let c = check(&unseen.0).counts;
    assert_eq!((c.cancels, c.withdrawn_unseen), (0, 1));
}

#[test]
fn a_200_for_a_withdrawn_prompt_need_not_arrive() {
    let r = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .cancel("p1", 1)
        .api("op-a", "p1", &allow(), sent())
        .row("p1", "cancelled", None, false);
    assert_eq!(r.kinds(), []);
    assert_eq!(check(&r.0).counts.acked_then_withdrawn, 1);
}

#[test]
fn answers_the_api_refused_or_nobody_sent_are_violations() {
    let refused_delivered = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .api("op-a", "p1", &deny("x"), refused("prompt_cancelled"))
        .answer("p1", 1, &deny("x"), true)
        .row("p1", "denied", Some(&deny("x")), true);
    assert_eq!(refused_delivered.kinds(), [Kind::RefusedButDelivered]);
    let unrequested = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .answer("p1", 1, &allow(), true)
        .answer("p9", 1, &allow(), false)
        .row("p1", "allowed", Some(&allow()), true);
    assert_eq!(
        unrequested.kinds(),
        [Kind::UnrequestedAnswer, Kind::ForeignAnswer]
    );
}

#[test]
fn the_ledger_must_agree_with_the_session() {
    let acted = || {
        run()
            .attach(1, &[])
            .prompt("p1", 1)
            .api("op-a", "p1", &allow(), sent())
            .answer("p1", 1, &allow(), true)
    };
    assert_eq!(acted().kinds(), [Kind::LedgerMissing]);
    let unmarked = acted().row("p1", "allowed", Some(&allow()), false);
    assert_eq!(unmarked.kinds(), [], "delivered_at is only counted");
    assert_eq!(check(&unmarked.0).counts.rows_without_delivery, 1);
    assert_eq!(
        acted().row("p1", "denied", Some(&deny("no")), true).kinds(),
        [Kind::LedgerMismatch]
    );
    assert_eq!(
        acted().row("p1", "cancelled", None, false).kinds(),
        [Kind::LedgerMismatch]
    );
    let stale = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .cancel("p1", 1)
        .row("p1", "pending", None, false)
        .row("p9", "pending", None, false);
    let found = check(&stale.0).violations;
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|v| v.kind == Kind::LedgerMismatch));
    // Withdrawn before the supervisor saw it: no row needed.
    let unseen = run().attach(1, &[]).prompt("p1", 1).cancel("p1", 1);
    assert_eq!(unseen.kinds(), []);
}

#[test]
fn incomplete_records_and_crashes_are_reported() {
    let mut r = run();
    r.0.wire_overflowed = 3;
    r.0.crashes.push("pid 7 exited: signal 6".into());
    assert_eq!(r.kinds(), [Kind::RecordsIncomplete, Kind::SupervisorExited]);
}

#[test]
fn a_prompt_the_rule_answers_needs_no_operator_and_refused_operators_are_fine() {
    let rule = "rule:chaos-reads";
    let r = run()
        .attach(1, &[])
        .rule_prompt("r1", 1)
        .prompt("p1", 1)
        .answer("r1", 1, &by_rule("r1"), true)
        // An operator who tries it anyway is refused; the same content is no violation.
        .api("op-a", "r1", &by_rule("r1"), refused("already_answered"))
        .api("op-b", "r1", &deny("op-b#1"), refused("already_answered"))
        .api("op-b", "p1", &deny("op-b#2"), sent())
        .answer("p1", 1, &deny("op-b#2"), true)
        .attach(2, &["r1"])
        .answer("r1", 2, &by_rule("r1"), false)
        .row_by("r1", "allowed", Some(&by_rule("r1")), true, rule)
        .row_by("p1", "denied", Some(&deny("op-b#2")), true, "op-b");
    assert_eq!(r.kinds(), []);
    let c = check(&r.0).counts;
    assert_eq!(
        (
            c.answered,
            c.rule_prompts,
            c.rule_answered,
            c.operator_answered
        ),
        (2, 1, 1, 1)
    );
    assert_eq!((c.rule_prompts_tried, c.resends), (1, 1));
    // Withdrawn before the rule's answer reached the session: the row still says the rule.
    let withdrawn = run()
        .attach(1, &[])
        .rule_prompt("r1", 1)
        .cancel("r1", 1)
        .answer("r1", 1, &by_rule("r1"), false)
        .row_by("r1", "allowed", Some(&by_rule("r1")), false, rule);
    assert_eq!(withdrawn.kinds(), []);
    assert_eq!(check(&withdrawn.0).counts.rule_answered, 0);
    // Nobody answered it: lost, as any prompt.
    let lost = run().attach(1, &[]).rule_prompt("r1", 1);
    assert_eq!(lost.kinds(), [Kind::Lost]);
}

#[test]
fn a_prompt_the_rule_answers_answered_twice_or_by_an_operator_is_a_violation() {
    let rule = "rule:chaos-reads";
    let answered = || {
        run()
            .attach(1, &[])
            .rule_prompt("r1", 1)
            .answer("r1", 1, &by_rule("r1"), true)
            .row_by("r1", "allowed", Some(&by_rule("r1")), true, rule)
    };
    // The rule's answer again on a connection that did not replay it.
    let twice = answered()
        .attach(2, &[])
        .answer("r1", 2, &by_rule("r1"), false);
    assert_eq!(twice.kinds(), [Kind::DuplicateAnswer]);
    // An operator's 200 with the rule's very content is still an operator over the rule.
    let same = answered().api("op-a", "r1", &by_rule("r1"), sent());
    assert_eq!(same.kinds(), [Kind::OperatorOverRule]);
    // An operator's answer reaching the session after the rule's.
    let after = answered()
        .api("op-b", "r1", &edit("op-b#1"), sent())
        .answer("r1", 1, &edit("op-b#1"), false);
    assert_eq!(
        after.kinds(),
        [
            Kind::DifferentAnswers,
            Kind::RuleNotApplied,
            Kind::OperatorOverRule
        ]
    );
    // An operator answered instead of the rule, and the ledger says so.
    let instead = run()
        .attach(1, &[])
        .rule_prompt("r1", 1)
        .api("op-a", "r1", &deny("op-a#1"), sent())
        .answer("r1", 1, &deny("op-a#1"), true)
        .row_by("r1", "denied", Some(&deny("op-a#1")), true, "op-a");
    assert_eq!(
        instead.kinds(),
        [
            Kind::RuleNotApplied,
            Kind::OperatorOverRule,
            Kind::LedgerMismatch
        ]
    );
    // Not the rule's answer (an edited input) and nobody sent it.
    let altered = run()
        .attach(1, &[])
        .rule_prompt("r1", 1)
        .answer(
            "r1",
            1,
            &AnswerKey::Allow(json!({"file_path": "/etc/shadow"})),
            true,
        )
        .row_by("r1", "allowed", Some(&by_rule("r1")), true, rule);
    assert_eq!(
        altered.kinds(),
        [
            Kind::UnrequestedAnswer,
            Kind::RuleNotApplied,
            Kind::LedgerMismatch
        ]
    );
}

#[test]
fn the_rule_answer_on_another_prompt_is_no_operator_answer() {
    // A Bash prompt (not the rule's tool) allowed as asked by nobody, recorded as the rule's.
    let r = run()
        .attach(1, &[])
        .prompt("p1", 1)
        .answer("p1", 1, &allow(), true)
        .row_by("p1", "allowed", Some(&allow()), true, "rule:chaos-reads");
    assert_eq!(r.kinds(), [Kind::UnrequestedAnswer, Kind::LedgerMismatch]);
    // The same while the session withdrew it first: the row alone is wrong.
    let withdrawn = run().attach(1, &[]).prompt("p1", 1).cancel("p1", 1).row_by(
        "p1",
        "allowed",
        Some(&allow()),
        false,
        "rule:chaos-reads",
    );
    assert_eq!(withdrawn.kinds(), [Kind::LedgerMismatch]);
}

#[test]
fn the_ledger_names_who_decided() {
    let acted = || {
        run()
            .attach(1, &[])
            .prompt("p1", 1)
            .api("op-a", "p1", &allow(), sent())
            .api("op-b", "p1", &deny("op-b#1"), refused("already_answered"))
            .answer("p1", 1, &allow(), true)
    };
    let by = |who: &str| acted().row_by("p1", "allowed", Some(&allow()), true, who);
    assert_eq!(by("op-a").kinds(), []);
    let found = check(&by("op-b").0).violations;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, Kind::LedgerMismatch);
    assert!(
        found[0].detail.contains("decided_by op-b (sent by op-a)"),
        "{found:?}"
    );
    assert_eq!(by("timeout").kinds(), [Kind::LedgerMismatch]);
    // The rule's prompt decided by an operator in the ledger, although the rule answered it.
    let ruled = run()
        .attach(1, &[])
        .rule_prompt("r1", 1)
        .answer("r1", 1, &by_rule("r1"), true)
        .row_by("r1", "allowed", Some(&by_rule("r1")), true, "op-a");
    let found = check(&ruled.0).violations;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .detail
            .contains("decided_by op-a (not rule:chaos-reads)"),
        "{found:?}"
    );
}
