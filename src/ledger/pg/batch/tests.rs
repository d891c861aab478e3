use std::sync::Arc;

use super::*;
use crate::ledger::writer::PromptRow;

fn prompt(s: &str, r: &str) -> Write {
    Write::Prompt(PromptRow {
        session_id: s.into(),
        request_id: r.into(),
        tool_use_id: None,
        tool_name: "Bash".into(),
        input: "{}".into(),
        request: "{}".into(),
        received_at: 1,
    })
}

fn decision(s: &str, r: &str, outcome: Outcome, by: &str) -> DecisionRow {
    DecisionRow {
        session_id: s.into(),
        request_id: r.into(),
        outcome,
        decided_by: by.into(),
        decided_at: 2,
        updated_input: None,
        answer: None,
        reason: None,
    }
}

fn delivered(s: &str, r: &str) -> Write {
    Write::Delivered {
        session_id: s.into(),
        request_id: r.into(),
        at: 3,
    }
}

fn run(prompts: &[usize], decisions: &[usize], deliveries: &[usize]) -> Run {
    Run {
        prompts: prompts.to_vec(),
        decisions: decisions.to_vec(),
        deliveries: deliveries.to_vec(),
    }
}

#[test]
fn writes_of_different_prompts_share_a_run_and_a_second_write_of_one_starts_the_next() {
    let fence = Fence {
        owner: Arc::from("a"),
        epoch: 1,
    };
    let writes = [
        prompt("s1", "r1"),
        Write::Decision(decision("s1", "r0", Outcome::Allowed, "x")),
        delivered("s2", "r0"),
        prompt("s2", "r1"),
        // The same prompt again, then its decision and its delivery: each in a run after
        // the one before, so each sees what came before it.
        prompt("s1", "r1"),
        Write::Decision(decision("s1", "r1", Outcome::Allowed, "x")),
        prompt("s3", "r1"),
        delivered("s1", "r1"),
        // Same request id in another session: another prompt.
        delivered("s3", "r0"),
        prompt("s9", "r1"),
    ];
    let batch: Vec<(&Write, Option<&Fence>)> = writes.iter().map(|w| (w, Some(&fence))).collect();
    assert_eq!(
        runs(&batch),
        [
            run(&[0, 3], &[1], &[2]),
            run(&[4], &[], &[]),
            run(&[6], &[5], &[]),
            run(&[9], &[], &[7, 8]),
        ]
    );
    assert_eq!(runs(&[]), []);
    assert_eq!(runs(&batch[..1]), [run(&[0], &[], &[])]);
}

#[test]
fn ordinals_are_one_based_and_checked() {
    assert_eq!(ordinal(1, 3), Some(0));
    assert_eq!(ordinal(3, 3), Some(2));
    assert_eq!(ordinal(4, 3), None);
    assert_eq!(ordinal(0, 3), None);
    assert_eq!(ordinal(-1, 3), None);
}

#[test]
fn a_decision_that_changed_nothing_is_refused_with_what_is_stored_or_read_again() {
    let d = decision("s", "r", Outcome::Allowed, "alice");
    assert!(matches!(
        undecided(&d, false, None, None),
        Said::Refused(LedgerError::UnknownPrompt { .. })
    ));
    // Undecided before the statement, unchanged by it: another decision won meanwhile.
    assert!(matches!(undecided(&d, true, None, None), Said::Raced));
    // The same decision again is a no-op.
    assert!(matches!(
        undecided(&d, true, Some("allowed".into()), Some("alice".into())),
        Said::Done
    ));
    match undecided(&d, true, Some("denied".into()), Some("bob".into())) {
        Said::Refused(LedgerError::AlreadyDecided { outcome, .. }) => {
            assert_eq!(outcome, Outcome::Denied)
        }
        other => panic!("{other:?}"),
    }
    // The same outcome by someone else is another decision.
    assert!(matches!(
        undecided(&d, true, Some("allowed".into()), Some("bob".into())),
        Said::Refused(LedgerError::AlreadyDecided { .. })
    ));
}

#[test]
fn a_delivery_that_changed_nothing_says_why() {
    assert!(matches!(
        undelivered("s", "r", false, true),
        Said::Refused(LedgerError::NotOwner { .. })
    ));
    assert!(matches!(
        undelivered("s", "r", true, true),
        Said::Refused(LedgerError::NotDecided { .. })
    ));
    assert!(matches!(
        undelivered("s", "r", true, false),
        Said::Refused(LedgerError::UnknownPrompt { .. })
    ));
}
