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
fn a_prompt_s_second_write_goes_in_the_next_run_and_other_prompts_share_runs() {
    let fence = Fence {
        owner: Arc::from("a"),
        epoch: 1,
    };
    let writes = [
        prompt("s1", "r1"),
        Write::Decision(decision("s1", "r0", Outcome::Allowed, "x")),
        delivered("s2", "r0"),
        prompt("s2", "r1"),
        // s1/r1 again, then its decision and its delivery: each in the run after the one
        // before, so each sees what came before it.
        prompt("s1", "r1"),
        Write::Decision(decision("s1", "r1", Outcome::Allowed, "x")),
        prompt("s3", "r1"),
        delivered("s1", "r1"),
        // The same request id in another session is another prompt.
        delivered("s3", "r0"),
        // A prompt and its decision queued together (a rule's answer on arrival, or its
        // record failed and is redone first), twice: the prompts inserted decided, the
        // decisions in no run of their own.
        prompt("s9", "r1"),
        Write::Decision(decision("s9", "r1", Outcome::Denied, "x")),
        prompt("s9", "r2"),
        Write::Decision(decision("s9", "r2", Outcome::Denied, "x")),
        // s1/r0's second write.
        delivered("s1", "r0"),
    ];
    let batch: Vec<(&Write, Option<&Fence>)> = writes.iter().map(|w| (w, Some(&fence))).collect();
    assert_eq!(
        runs(&batch),
        [
            run(&[0, 3, 6, 9, 11], &[1], &[2, 8]),
            run(&[4], &[], &[13]),
            // s1/r1's decision (5) went in with its prompt (4); its delivery still comes
            // after both.
            run(&[], &[], &[7]),
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

#[test]
fn a_prompt_is_inserted_with_the_decision_right_after_it_on_the_same_prompt_only() {
    let writes = [
        prompt("s1", "r1"),
        Write::Decision(decision("s1", "r1", Outcome::Allowed, "rule")),
        prompt("s1", "r2"),
        Write::Decision(decision("s1", "r1", Outcome::Denied, "op")),
        prompt("s1", "r3"),
        delivered("s1", "r3"),
        Write::Decision(decision("s1", "r3", Outcome::Allowed, "op")),
        prompt("s2", "r4"),
    ];
    let batch: Vec<(&Write, Option<&Fence>)> = writes.iter().map(|w| (w, None)).collect();
    let with = |i| decided_with(&batch, i).map(|d| (d.outcome, d.decided_by.as_str()));
    assert_eq!(with(0), Some((Outcome::Allowed, "rule")));
    // The next write decides another prompt; a decision is not a prompt; a delivery
    // comes between; nothing follows.
    assert_eq!(with(2), None);
    assert_eq!(with(1), None);
    assert_eq!(with(4), None);
    assert_eq!(with(7), None);
    assert_eq!(with(8), None);
}

/// With the writer's planner settings, a batch's decisions (and the decisions its prompts'
/// insert applies) look their rows up by key even in a table never analyzed (a new
/// database), in the generic plan the writer's prepared statements always run: no scan of
/// the whole table, nor of the whole partial index of unfinished prompts, per statement
/// (before the settings: a hash join over a sequential scan, twice).
#[tokio::test]
async fn the_writer_s_decisions_look_their_rows_up_by_key() {
    let Some(server) = ccr_pgtest::require() else {
        return;
    };
    let url = server.unique_database("decide_plan").unwrap();
    let (mut db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    crate::ledger::pg::schema::migrate(&mut db).await.unwrap();
    db.batch_execute(WRITER_PLANNER).await.unwrap();
    let n = 30;
    // The arguments as SQL (EXPLAIN EXECUTE takes no bound parameters): 30 keys, or 30 of
    // one value.
    let keys = format!(
        "ARRAY[{}]",
        (0..n)
            .map(|i| format!("'k{i}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let text = format!("array_fill('allowed'::text, ARRAY[{n}])");
    let none = format!("array_fill(NULL::text, ARRAY[{n}])");
    let num = format!("array_fill(1::int8, ARRAY[{n}])");
    let decisions = [&keys, &keys, &text, &text, &num, &none, &none, &none];
    // The prompts' insert, which decides the prompts it does not write and reads them back.
    let prompts = [
        &keys, &keys, &none, &text, &text, &text, &num, &none, &num, &text, &text, &num, &none,
        &none, &none,
    ];
    for (k, (sql, args)) in [(decide(), &decisions[..]), (insert_prompts(), &prompts[..])]
        .into_iter()
        .enumerate()
    {
        // Prepared and executed as the writer does: the plan it runs is the generic one.
        db.batch_execute(&format!("PREPARE s{k} AS {sql}"))
            .await
            .unwrap();
        let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        let plan: Vec<String> = db
            .query(&format!("EXPLAIN EXECUTE s{k}({})", args.join(", ")), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan on ccr_prompts"), "{plan}");
        assert!(!plan.contains("ccr_prompts_unfinished"), "{plan}");
        assert!(plan.contains("Index Scan using ccr_prompts_"), "{plan}");
    }
}
