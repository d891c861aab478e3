//! The checker (pure): compares every prompt the peer emitted with every answer
//! it received, every operator API call and every ledger row.
//!
//! The session's view is the truth. Per prompt the simulated worker either got
//! an answer first (the first answer settles it; no cancel can follow, the
//! peer only withdraws outstanding prompts), withdrew it first (answers after
//! that are ignored by a real worker), or neither. Invariants, each a
//! [`Kind`] when broken:
//!
//! - nothing lost: every prompt not withdrawn is answered once the run drained;
//! - one answer: no two answers with different content, and no repeat of the
//!   same answer unless the session replayed the prompt on the connection the
//!   repeat arrived on (a legitimate resend, counted apart);
//! - nothing after a withdrawal: no answer on a connection opened after the
//!   one that carried the cancel (answers on that same connection crossed the
//!   cancel on the wire and are counted apart), nor after a withdrawal made
//!   while no connection was live (another client answered it: the session
//!   only stops replaying the prompt, which is all a supervisor can see);
//! - every API 200 reached the session (its content), unless the session withdrew the prompt;
//! - one 200 per prompt, and nothing delivered that the API refused or no operator sent;
//! - the ledger agrees: the answer the session acted on, decided by the rule for
//!   a prompt of the rule's tool and by an operator who sent that answer for any
//!   other; no stale pending row. (`delivered_at` is only counted: a supervisor
//!   that writes an answer and dies before noting it cannot know, and need not
//!   resend to find out.)
//! - the policy rule ([`RULE_ID`]) answers every prompt of its tool, and only
//!   those: every answer such a prompt gets is the rule's (allow with the input
//!   unchanged; the allowances above for resends and crossed cancels hold), and
//!   no operator gets a 200 for it (a 404 or 409 is fine). The rule's answer
//!   needs no operator behind it; any other answer still does.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::process::{rule_decider, OPERATORS, RULE_ID};
use super::records::{AnswerKey, ApiResult, Attempt, LedgerRow, Records};
pub use super::verdict::{Counts, Kind, Verdict, Violation};
use ccr_sim::WireEvent;

/// One received answer.
#[derive(Debug)]
struct Answer {
    seq: u64,
    conn: u64,
    key: AnswerKey,
    body: serde_json::Value,
}

/// What the wire log says about one prompt.
#[derive(Debug, Default)]
struct PromptLog {
    replayed_on: HashSet<u64>,
    /// Wire position and connection (`None`: withdrawn while disconnected) of the withdrawal.
    cancel: Option<(u64, Option<u64>)>,
    answers: Vec<Answer>,
}

type Id = (String, String);

/// Judge a run.
pub fn check(r: &Records) -> Verdict {
    let mut v = Verdict::default();
    let mut out = |kind: Kind, id: &Id, detail: String| {
        v.violations.push(Violation {
            kind,
            session: id.0.clone(),
            request_id: id.1.clone(),
            detail,
            across_restart: false,
        })
    };
    let none: Id = (String::new(), String::new());
    if r.wire_overflowed > 0 {
        let d = format!("{} wire records were dropped", r.wire_overflowed);
        out(Kind::RecordsIncomplete, &none, d);
    }
    for crash in &r.crashes {
        out(Kind::SupervisorExited, &none, crash.clone());
    }
    let mut counts = Counts::default();
    let prompts = prompt_logs(r, &mut counts, &mut out);
    let mut attempts: HashMap<Id, Vec<&Attempt>> = HashMap::new();
    for a in &r.attempts {
        count_api(&a.result, &mut counts);
        let id = (a.session.clone(), a.request_id.clone());
        attempts.entry(id).or_default().push(a);
    }
    let mut rows: HashMap<Id, Vec<&LedgerRow>> = HashMap::new();
    for row in &r.ledger {
        counts.ledger_rows += 1;
        let id = (row.session.clone(), row.request_id.clone());
        rows.entry(id).or_default().push(row);
    }
    for (id, log) in &prompts {
        let tried = attempts.get(id).map_or(&[][..], Vec::as_slice);
        let rows = rows.get(id).map_or(&[][..], Vec::as_slice);
        // The rule's answer to this prompt, when the rule answers it.
        let rule = r
            .rule_prompts
            .get(id)
            .map(|input| AnswerKey::Allow(input.clone()));
        check_answers(id, log, &mut counts, &mut out);
        check_rule(id, log, rule.as_ref(), tried, &mut counts, &mut out);
        check_api(id, log, rule.as_ref(), tried, &mut counts, &mut out);
        check_ledger(id, log, rule.as_ref(), tried, rows, &mut counts, &mut out);
    }
    for (id, rows) in &rows {
        if !prompts.contains_key(id) {
            let d = format!("{} ledger row(s) for a prompt never emitted", rows.len());
            out(Kind::LedgerMismatch, id, d);
        }
    }
    v.counts = counts;
    let spans = spans(r);
    for x in &mut v.violations {
        if let Some((from, to)) = spans.get(&(x.session.clone(), x.request_id.clone())) {
            x.across_restart = r.kills.iter().any(|k| *from <= k.at && k.at <= *to);
        }
    }
    v.violations.sort_by(|a, b| {
        (a.kind, &a.session, &a.request_id).cmp(&(b.kind, &b.session, &b.request_id))
    });
    v
}

/// Fold the wire log into one [`PromptLog`] per emitted prompt; answers for ids never emitted are violations.
fn prompt_logs(
    r: &Records,
    counts: &mut Counts,
    out: &mut impl FnMut(Kind, &Id, String),
) -> BTreeMap<Id, PromptLog> {
    let mut prompts: BTreeMap<Id, PromptLog> = BTreeMap::new();
    for rec in &r.wire {
        let id = |rid: &str| (rec.session.clone(), rid.to_owned());
        match &rec.event {
            WireEvent::Prompted { request_id, .. } => {
                counts.prompts += 1;
                prompts.entry(id(request_id)).or_default();
            }
            WireEvent::Attached { conn, replayed } => {
                for rid in replayed {
                    counts.replays += 1;
                    if let Some(p) = prompts.get_mut(&id(rid)) {
                        p.replayed_on.insert(*conn);
                    }
                }
            }
            WireEvent::Cancelled { request_id, conn } => {
                match conn {
                    Some(_) => counts.cancels += 1,
                    None => counts.withdrawn_unseen += 1,
                }
                if let Some(p) = prompts.get_mut(&id(request_id)) {
                    p.cancel = Some((rec.seq, *conn));
                }
            }
            WireEvent::Answered {
                request_id,
                conn,
                body,
                settled,
            } => {
                counts.answer_frames += 1;
                counts.answered += u64::from(*settled);
                match prompts.get_mut(&id(request_id)) {
                    Some(p) => p.answers.push(Answer {
                        seq: rec.seq,
                        conn: *conn,
                        key: AnswerKey::from_body(body),
                        body: body.clone(),
                    }),
                    None => out(
                        Kind::ForeignAnswer,
                        &id(request_id),
                        format!("answer on connection {conn} for an id never emitted"),
                    ),
                }
            }
            WireEvent::Detached { .. } | WireEvent::Rejected { .. } => {}
        }
    }
    prompts
}

/// First and last moment each prompt was touched (wire events and API calls).
fn spans(r: &Records) -> HashMap<Id, (std::time::Instant, std::time::Instant)> {
    let mut spans: HashMap<Id, (std::time::Instant, std::time::Instant)> = HashMap::new();
    let mut touch = |id: Id, at: std::time::Instant| {
        let e = spans.entry(id).or_insert((at, at));
        e.0 = e.0.min(at);
        e.1 = e.1.max(at);
    };
    for rec in &r.wire {
        let id = |rid: &str| (rec.session.clone(), rid.to_owned());
        match &rec.event {
            WireEvent::Prompted { request_id, .. }
            | WireEvent::Cancelled { request_id, .. }
            | WireEvent::Answered { request_id, .. } => touch(id(request_id), rec.at),
            WireEvent::Attached { replayed, .. } => {
                for rid in replayed {
                    touch(id(rid), rec.at);
                }
            }
            WireEvent::Detached { .. } | WireEvent::Rejected { .. } => {}
        }
    }
    for a in &r.attempts {
        let id = (a.session.clone(), a.request_id.clone());
        touch(id.clone(), a.sent_at);
        touch(id, a.done_at);
    }
    spans
}

fn count_api(result: &ApiResult, c: &mut Counts) {
    match result {
        ApiResult::Accepted { delivery } if delivery == "queued" => c.api_queued += 1,
        ApiResult::Accepted { .. } => c.api_sent += 1,
        ApiResult::Refused { code, .. } => match code.as_str() {
            "already_answered" => c.api_already_answered += 1,
            "prompt_cancelled" => c.api_prompt_cancelled += 1,
            "unknown_prompt" => c.api_unknown_prompt += 1,
            _ => c.api_other += 1,
        },
        ApiResult::Failed(_) => c.api_failed += 1,
    }
}

/// Lost, different answers, duplicates, answers after a cancel.
fn check_answers(
    id: &Id,
    log: &PromptLog,
    counts: &mut Counts,
    out: &mut impl FnMut(Kind, &Id, String),
) {
    let Some(first) = log.answers.first() else {
        if log.cancel.is_none() {
            out(Kind::Lost, id, "never answered, never withdrawn".into());
        }
        return;
    };
    if log.cancel.is_none() && log.replayed_on.contains(&first.conn) {
        counts.answered_after_replay += 1;
    }
    for (i, a) in log.answers.iter().enumerate().skip(1) {
        if a.body != first.body {
            let d = format!(
                "{} on connection {}, then {} on connection {}",
                first.key.describe(),
                first.conn,
                a.key.describe(),
                a.conn
            );
            out(Kind::DifferentAnswers, id, d);
            continue;
        }
        let earlier_here = log.answers[..i].iter().any(|b| b.conn == a.conn);
        if log.replayed_on.contains(&a.conn) && !earlier_here {
            counts.resends += 1;
        } else {
            let d = format!(
                "{} again on connection {} (first on {}), not replayed there",
                a.key.describe(),
                a.conn,
                first.conn
            );
            out(Kind::DuplicateAnswer, id, d);
        }
    }
    if let Some((cancel_seq, cancel_conn)) = log.cancel {
        for a in log.answers.iter().filter(|a| a.seq > cancel_seq) {
            if Some(a.conn) == cancel_conn {
                counts.crossed_cancels += 1;
                continue;
            }
            let how = match cancel_conn {
                Some(c) => format!("withdrawn with a cancel on connection {c}"),
                None => "withdrawn while disconnected (not replayed since)".to_owned(),
            };
            let d = format!("{how}, then {} on connection {}", a.key.describe(), a.conn);
            out(Kind::AnswerAfterCancel, id, d);
        }
    }
}

/// The answer a prompt settled on: its first, unless the session withdrew it before.
fn settled(log: &PromptLog) -> Option<&Answer> {
    log.answers
        .first()
        .filter(|a| log.cancel.is_none_or(|(seq, _)| a.seq < seq))
}

/// A prompt of the rule's tool gets the rule's answer and nothing else, and no operator 200.
fn check_rule(
    id: &Id,
    log: &PromptLog,
    rule: Option<&AnswerKey>,
    tried: &[&Attempt],
    counts: &mut Counts,
    out: &mut impl FnMut(Kind, &Id, String),
) {
    let Some(rule) = rule else {
        counts.operator_answered += u64::from(settled(log).is_some());
        return;
    };
    counts.rule_prompts += 1;
    counts.rule_prompts_tried += u64::from(!tried.is_empty());
    if settled(log).is_some_and(|a| &a.key == rule) {
        counts.rule_answered += 1;
    }
    let mut wrong: Vec<&AnswerKey> = Vec::new();
    for a in &log.answers {
        if &a.key != rule && !wrong.contains(&&a.key) {
            wrong.push(&a.key);
            let d = format!(
                "{} on connection {}; rule {RULE_ID} answers this prompt with {}",
                a.key.describe(),
                a.conn,
                rule.describe()
            );
            out(Kind::RuleNotApplied, id, d);
        }
    }
    for a in tried {
        if matches!(a.result, ApiResult::Accepted { .. }) {
            let d = format!(
                "{} got 200 for {} from pid {}; rule {RULE_ID} answers this prompt",
                a.operator,
                a.answer.describe(),
                a.pid
            );
            out(Kind::OperatorOverRule, id, d);
        }
    }
}

/// 200s that did not reach the session, several 200s, refused or unrequested answers.
fn check_api(
    id: &Id,
    log: &PromptLog,
    rule: Option<&AnswerKey>,
    tried: &[&Attempt],
    counts: &mut Counts,
    out: &mut impl FnMut(Kind, &Id, String),
) {
    let accepted: Vec<_> = tried
        .iter()
        .filter(|a| matches!(a.result, ApiResult::Accepted { .. }))
        .collect();
    if accepted.len() > 1 {
        let who: Vec<String> = accepted
            .iter()
            .map(|a| format!("{} {}", a.operator, a.answer.describe()))
            .collect();
        out(Kind::DoubleAck, id, format!("200 to: {}", who.join(", ")));
    }
    for a in &accepted {
        if log.answers.iter().any(|got| got.key == a.answer) {
            continue;
        }
        if log.cancel.is_some() {
            counts.acked_then_withdrawn += 1;
        } else {
            let d = format!(
                "{} got 200 from pid {}; the session never received it",
                a.operator, a.pid
            );
            out(Kind::AckNotDelivered, id, d);
        }
    }
    let mut seen: Vec<&AnswerKey> = Vec::new();
    for got in &log.answers {
        if seen.contains(&&got.key) {
            continue;
        }
        seen.push(&got.key);
        if rule == Some(&got.key) {
            // The rule's own answer: no operator is behind it (check_rule judges it).
            continue;
        }
        let matching: Vec<_> = tried.iter().filter(|a| a.answer == got.key).collect();
        if matching.is_empty() {
            let d = format!("{} received; no operator sent it", got.key.describe());
            out(Kind::UnrequestedAnswer, id, d);
        } else if matching
            .iter()
            .all(|a| matches!(a.result, ApiResult::Refused { .. }))
        {
            let codes: Vec<String> = matching
                .iter()
                .map(|a| match &a.result {
                    ApiResult::Refused { status, code } => format!("{status} {code}"),
                    _ => String::new(),
                })
                .collect();
            let d = format!(
                "{} received although the API refused it ({})",
                got.key.describe(),
                codes.join(", ")
            );
            out(Kind::RefusedButDelivered, id, d);
        }
    }
}

/// The ledger row matches what the session acted on.
fn check_ledger(
    id: &Id,
    log: &PromptLog,
    rule: Option<&AnswerKey>,
    tried: &[&Attempt],
    rows: &[&LedgerRow],
    counts: &mut Counts,
    out: &mut impl FnMut(Kind, &Id, String),
) {
    if rows.len() > 1 {
        out(Kind::LedgerMismatch, id, format!("{} rows", rows.len()));
    }
    let row = rows.first();
    let decider = row.and_then(|row| wrong_decider(row, rule.is_some(), settled(log), tried));
    match (settled(log), row) {
        (Some(a), None) => {
            let d = format!("the session acted on {}; no row", a.key.describe());
            out(Kind::LedgerMissing, id, d);
        }
        (Some(a), Some(row)) => {
            let expected = match a.key {
                AnswerKey::Allow(_) => "allowed",
                AnswerKey::Deny(_) => "denied",
                AnswerKey::Other(_) => "?",
            };
            let mut wrong = Vec::new();
            if row.outcome != expected {
                wrong.push(format!("outcome {}", row.outcome));
            }
            if row.answer.as_ref() != Some(&a.key) {
                let recorded = row.answer.as_ref().map_or("none".into(), |k| k.describe());
                wrong.push(format!("answer {recorded}"));
            }
            wrong.extend(decider);
            counts.rows_without_delivery += u64::from(!row.delivered);
            if !wrong.is_empty() {
                let d = format!(
                    "the session acted on {}; the row has {}",
                    a.key.describe(),
                    wrong.join(", ")
                );
                out(Kind::LedgerMismatch, id, d);
            }
        }
        (None, None) if !log.answers.is_empty() || !tried.is_empty() => {
            out(
                Kind::LedgerMissing,
                id,
                "answered or asked about; no row".into(),
            );
        }
        (None, Some(row)) if log.cancel.is_some() && row.outcome == "pending" => {
            let d = "the session withdrew it; the row is still pending".to_owned();
            out(Kind::LedgerMismatch, id, d);
        }
        (None, Some(_)) => {
            if let Some(d) = decider {
                out(Kind::LedgerMismatch, id, d);
            }
        }
        (None, None) => {}
    }
}

/// What is wrong with who the row says decided, if anything: a prompt of the rule's
/// tool is decided by the rule; any other prompt by an operator, one who sent the
/// answer the session acted on when it acted on one. Rows without a decision
/// (pending, cancelled, expired) are not judged here.
fn wrong_decider(
    row: &LedgerRow,
    ruled: bool,
    settled: Option<&Answer>,
    tried: &[&Attempt],
) -> Option<String> {
    if !matches!(row.outcome.as_str(), "allowed" | "denied") {
        return None;
    }
    let by = row.decided_by.as_deref().unwrap_or("none");
    if ruled {
        let rule = rule_decider();
        return (by != rule).then(|| format!("decided_by {by} (not {rule})"));
    }
    if !OPERATORS.iter().any(|(name, _)| *name == by) {
        return Some(format!("decided_by {by} (not an operator)"));
    }
    let a = settled?;
    let senders: Vec<&str> = tried
        .iter()
        .filter(|t| t.answer == a.key)
        .map(|t| t.operator.as_str())
        .collect();
    // No sender at all is an unrequested answer (check_api), not the ledger's fault.
    (!senders.is_empty() && !senders.contains(&by))
        .then(|| format!("decided_by {by} (sent by {})", senders.join(", ")))
}

#[cfg(test)]
mod tests;
