//! `ctl policy` (the rules in order, with how often each matched) and `ctl evaluate`
//! (what the policy would do with a prompt, without one). Rendering is pure.

use serde_json::Value;

use ccr_protocol::policy::{EvaluateBody, Evaluation, PolicyReport, Verdict};

use super::client::CtlError;
use super::render::{dash, one_line, rendered, table, truncate};

/// Longest deny message in the rules table.
const MESSAGE_WIDTH: usize = 60;

/// The `policy` text from a `GET /v1/policy` body: deadlines, then the rules table.
pub fn policy_table(report: &PolicyReport) -> String {
    let p = &report.policy;
    let mut out = format!(
        "ask timeout: {}   remind after: {}\ntimeout message: {}\n",
        p.ask_timeout.as_deref().unwrap_or("off"),
        p.remind_after.as_deref().unwrap_or("off"),
        truncate(&one_line(&p.ask_timeout_message), 200)
    );
    if p.rules.is_empty() {
        out.push_str("no rules: every prompt waits for an operator");
        return out;
    }
    let mut t = table(&[
        "ID", "ACTION", "TOOL", "SESSIONS", "DRY RUN", "TIMEOUT", "HITS", "MESSAGE",
    ]);
    for r in &p.rules {
        t.add_row(vec![
            dash(Some(&r.id)),
            r.action.as_str().to_owned(),
            dash(Some(&r.tool)),
            r.sessions
                .as_ref()
                .map_or_else(|| "all".to_owned(), |s| s.join(",")),
            if r.dry_run { "yes" } else { "-" }.to_owned(),
            dash(r.ask_timeout.as_deref()),
            report.hits.get(&r.id).copied().unwrap_or(0).to_string(),
            dash(
                r.message
                    .as_deref()
                    .map(|m| truncate(&one_line(m), MESSAGE_WIDTH))
                    .as_deref(),
            ),
        ]);
    }
    out.push_str(&rendered(t));
    out
}

/// The `evaluate` text: the verdict, the rule that decided, and why.
pub fn evaluation(e: &Evaluation) -> String {
    let verdict = match &e.outcome {
        Verdict::Allow => "allow".to_owned(),
        Verdict::Deny { message } => format!("deny: {}", one_line(message)),
        Verdict::Ask => "ask (an operator decides)".to_owned(),
    };
    let rule = match (&e.rule_id, e.dry_run) {
        (Some(id), Some(would)) => format!("rule {id} (dry run: would {})", would.as_str()),
        (Some(id), None) => format!("rule {id}"),
        (None, _) => "no rule matched".to_owned(),
    };
    format!("{verdict}\n{rule}\nreason: {}", one_line(&e.reason))
}

/// The `POST /v1/policy/evaluate` body for `tool` with `--input` (a JSON object) and `--session`.
pub fn evaluate_body(
    tool: &str,
    input: Option<&str>,
    session: Option<&str>,
) -> Result<EvaluateBody, CtlError> {
    let input = match input {
        None => Value::Object(Default::default()),
        Some(raw) => {
            let v: Value = serde_json::from_str(raw)
                .map_err(|e| CtlError::Usage(format!("--input is not valid JSON: {e}")))?;
            if !v.is_object() {
                return Err(CtlError::Usage("--input must be a JSON object".into()));
            }
            v
        }
    };
    Ok(EvaluateBody {
        session_id: session.map(str::to_owned),
        labels: Vec::new(),
        tool_name: tool.to_owned(),
        input,
        request: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_table_lists_rules_in_order_with_hits() {
        let report: PolicyReport = serde_json::from_value(json!({
            "ask_timeout":"5m","ask_timeout_message":"timed out","remind_after":null,
            "rules":[
                {"id":"allow-ls","action":"allow","tool":"Bash(ls:*)","sessions":null,
                 "message":null,"dry_run":false,"ask_timeout":null},
                {"id":"no-rm","action":"deny","tool":"Bash(rm:*)","sessions":["demo-1","prod"],
                 "message":"no rm\nplease","dry_run":true,"ask_timeout":"0s"}],
            "hits":{"no-rm":3}}))
        .unwrap();
        let out = policy_table(&report);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ask timeout: 5m   remind after: off");
        assert_eq!(lines[1], "timeout message: timed out");
        assert!(
            lines[2].starts_with("ID") && lines[2].contains("HITS"),
            "{out}"
        );
        let cells = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[3]),
            ["allow-ls", "allow", "Bash(ls:*)", "all", "-", "-", "0", "-"]
        );
        assert_eq!(
            cells(lines[4]),
            [
                "no-rm",
                "deny",
                "Bash(rm:*)",
                "demo-1,prod",
                "yes",
                "0s",
                "3",
                "no",
                "rm⏎",
                "please"
            ]
        );
        let empty: PolicyReport = serde_json::from_value(json!({"ask_timeout":null,
            "ask_timeout_message":"x","remind_after":null,"rules":[],"hits":{}}))
        .unwrap();
        assert!(policy_table(&empty).ends_with("no rules: every prompt waits for an operator"));
    }

    #[test]
    fn evaluations_say_verdict_rule_and_reason() {
        let e: Evaluation = serde_json::from_value(json!({"decision":"deny","message":"no rm",
            "rule_id":"no-rm","dry_run":null,"reason":"rule no-rm matched Bash"}))
        .unwrap();
        assert_eq!(
            evaluation(&e),
            "deny: no rm\nrule no-rm\nreason: rule no-rm matched Bash"
        );
        let e: Evaluation = serde_json::from_value(json!({"decision":"ask","rule_id":"x",
            "dry_run":"allow","reason":"dry run"}))
        .unwrap();
        assert_eq!(
            evaluation(&e),
            "ask (an operator decides)\nrule x (dry run: would allow)\nreason: dry run"
        );
        let e: Evaluation = serde_json::from_value(
            json!({"decision":"ask","rule_id":null,"dry_run":null,"reason":"no rule"}),
        )
        .unwrap();
        assert!(evaluation(&e).contains("\nno rule matched\n"));
    }

    #[test]
    fn evaluate_bodies() {
        let b = evaluate_body("Bash", Some(r#"{"command":"ls"}"#), Some("s1")).unwrap();
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            json!({"session_id":"s1","labels":[],"tool_name":"Bash",
                "input":{"command":"ls"},"request":null})
        );
        assert_eq!(evaluate_body("Read", None, None).unwrap().input, json!({}));
        for bad in ["{", "[1]"] {
            assert_eq!(
                evaluate_body("Bash", Some(bad), None)
                    .unwrap_err()
                    .exit_code(),
                2
            );
        }
    }
}
