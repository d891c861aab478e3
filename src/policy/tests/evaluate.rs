//! Unit tests of [`Policy::evaluate`]: ordering, selectors, dry runs, safety, deadlines.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;

fn rule(id: &str, action: RuleAction, tool: &str) -> RuleConfig {
    RuleConfig::new(id, action, tool)
}

fn policy(rules: Vec<RuleConfig>) -> Policy {
    compile(&PolicyConfig {
        rules,
        ..PolicyConfig::default()
    })
}

fn compile(cfg: &PolicyConfig) -> Policy {
    Policy::compile(cfg).unwrap_or_else(|e| panic!("valid rules: {e:?}"))
}

/// Evaluate a Bash prompt from session `s1` (label `team-a`) with extra request keys.
fn bash(p: &Policy, command: &str, extra: Value) -> Evaluation {
    let input = json!({ "command": command });
    let mut request = json!({ "subtype": "can_use_tool", "tool_name": "Bash", "input": input });
    if let (Some(req), Value::Object(extra)) = (request.as_object_mut(), extra) {
        req.extend(extra);
    }
    let labels = vec!["team-a".to_owned()];
    p.evaluate(&PromptContext {
        session_id: "s1",
        labels: &labels,
        tool_name: "Bash",
        input: &input,
        request: &request,
    })
}

fn deny(message: &str) -> Verdict {
    Verdict::Deny {
        message: message.into(),
    }
}

#[test]
fn no_rules_or_no_match_asks() {
    let ev = bash(&policy(vec![]), "ls", json!({}));
    assert_eq!(
        (ev.outcome, ev.rule_id, ev.dry_run),
        (Verdict::Ask, None, None)
    );
    assert_eq!(ev.reason, "no rule matched; asking a human");
    let ev = bash(
        &policy(vec![rule("r", RuleAction::Allow, "Read")]),
        "ls",
        json!({}),
    );
    assert_eq!(ev.outcome, Verdict::Ask);
}

#[test]
fn first_match_wins() {
    let deny_first = policy(vec![
        rule("no-rm", RuleAction::Deny, "Bash(rm:*)"),
        rule("any", RuleAction::Allow, "Bash"),
    ]);
    let ev = bash(&deny_first, "rm -rf x", json!({}));
    assert_eq!(ev.outcome, deny("Denied by policy rule no-rm"));
    assert_eq!(ev.rule_id.as_deref(), Some("no-rm"));
    assert_eq!(bash(&deny_first, "ls", json!({})).outcome, Verdict::Allow);

    let allow_first = policy(vec![
        rule("any", RuleAction::Allow, "Bash"),
        rule("no-rm", RuleAction::Deny, "Bash(rm:*)"),
    ]);
    let ev = bash(&allow_first, "rm -rf x", json!({}));
    assert_eq!(
        (ev.outcome, ev.rule_id.as_deref()),
        (Verdict::Allow, Some("any"))
    );

    let ask_first = policy(vec![
        rule("hold", RuleAction::Ask, "Bash(git push:*)"),
        rule("any", RuleAction::Allow, "Bash"),
    ]);
    let ev = bash(&ask_first, "git status && git push", json!({}));
    assert_eq!(
        (ev.outcome, ev.rule_id.as_deref()),
        (Verdict::Ask, Some("hold"))
    );
}

#[test]
fn deny_message_is_configurable() {
    let mut r = rule("r", RuleAction::Deny, "Bash");
    r.message = Some("no shell today".into());
    let ev = bash(&policy(vec![r]), "ls", json!({}));
    assert_eq!(ev.outcome, deny("no shell today"));
}

#[test]
fn session_selector_by_id_and_label() {
    let cases = [
        (vec!["s1"], true),
        (vec!["team-a"], true),
        (vec!["s2", "team-a"], true),
        (vec!["s2"], false),
        (vec!["team-b"], false),
        (vec!["S1"], false),
    ];
    for (sel, selected) in cases {
        let mut r = rule("r", RuleAction::Allow, "Bash");
        r.sessions = Some(sel.iter().map(|s| s.to_string()).collect());
        let want = if selected {
            Verdict::Allow
        } else {
            Verdict::Ask
        };
        assert_eq!(
            bash(&policy(vec![r]), "ls", json!({})).outcome,
            want,
            "{sel:?}"
        );
    }
}

#[test]
fn dry_run_asks_and_records_what_it_would_do() {
    for action in [RuleAction::Allow, RuleAction::Deny, RuleAction::Ask] {
        let mut r = rule("try", action, "Bash(npm test:*)");
        r.dry_run = true;
        let ev = bash(&policy(vec![r]), "npm test", json!({}));
        assert_eq!(ev.outcome, Verdict::Ask);
        assert_eq!(ev.rule_id.as_deref(), Some("try"));
        assert_eq!(ev.dry_run, Some(action));
        assert!(
            ev.reason.starts_with("dry run: rule try would"),
            "{}",
            ev.reason
        );
    }
}

#[test]
fn prompts_needing_a_person_are_never_auto_allowed() {
    let holds = [
        (
            json!({ "requires_user_interaction": true }),
            "requires user interaction",
        ),
        (
            json!({ "requires_user_interaction": "true" }),
            "requires user interaction",
        ),
        (
            json!({ "decision_reason": { "requires_user_interaction": true } }),
            "requires user interaction",
        ),
        (
            json!({ "decision_reason_type": "safetyCheck", "classifier_approvable": false }),
            "safety check",
        ),
        (
            json!({ "decision_reason": { "type": "safetyCheck", "classifier_approvable": false } }),
            "safety check",
        ),
        (
            json!({ "decision_reason_type": "safetyCheck",
                    "decision_reason": { "classifier_approvable": false } }),
            "safety check",
        ),
        (json!({ "blocked_path": "/etc/passwd" }), "blocked path"),
        (
            json!({ "matched_ask_rule": { "source": "localSettings", "tool_name": "Bash",
                                          "rule_content": "ls:*" } }),
            "matched_ask_rule",
        ),
        (
            json!({ "matched_ask_rule": { "source": "userSettings", "tool_name": "Bash" } }),
            "matched_ask_rule",
        ),
        (json!({ "matched_ask_rule": "garbled" }), "matched_ask_rule"),
        (
            json!({ "decision_reason": { "matched_ask_rule": { "source": "cliArg" } } }),
            "matched_ask_rule",
        ),
    ];
    let mut dry = rule("dry", RuleAction::Allow, "Bash");
    dry.dry_run = true;
    for (extra, why) in holds {
        for rules in [
            vec![rule("any", RuleAction::Allow, "Bash")],
            vec![dry.clone()],
            vec![rule("ls", RuleAction::Allow, "Bash(ls:*)")],
        ] {
            let ev = bash(&policy(rules), "ls", extra.clone());
            assert_eq!(
                (&ev.outcome, &ev.rule_id, ev.dry_run),
                (&Verdict::Ask, &None, None)
            );
            assert!(ev.reason.contains(why), "{extra}: {}", ev.reason);
            assert!(ev.reason.contains("would allow"), "{extra}: {}", ev.reason);
        }
        // Deny rules still deny, also after an allow rule that matched first.
        let p = policy(vec![
            rule("any", RuleAction::Allow, "Bash"),
            rule("no-ls", RuleAction::Deny, "Bash(ls)"),
        ]);
        let ev = bash(&p, "ls", extra.clone());
        assert_eq!(ev.outcome, deny("Denied by policy rule no-ls"), "{extra}");
        // With no rule at all the reason still says why.
        let ev = bash(&policy(vec![]), "ls", extra.clone());
        assert!(ev.reason.contains(why), "{}", ev.reason);
    }
}

#[test]
fn matched_ask_rule_reason_names_the_rule() {
    let allow = policy(vec![rule("tests", RuleAction::Allow, "Bash(npm test:*)")]);
    let extra = json!({ "matched_ask_rule": { "source": "localSettings", "tool_name": "Bash",
                                              "rule_content": "npm test:*" } });
    let ev = bash(&allow, "npm test", extra);
    assert_eq!(ev.outcome, Verdict::Ask);
    assert_eq!(
        ev.reason,
        "rule tests would allow, but matched_ask_rule is set: the user's ask rule \
         Bash(npm test:*) from localSettings matched, so a person must answer; asking a human"
    );
    let long = "x".repeat(10_000);
    let extra = json!({ "matched_ask_rule": { "source": long, "tool_name": long } });
    let ev = bash(&allow, "npm test", extra);
    assert!(ev.reason.len() < 400, "bounded: {}", ev.reason.len());
}

#[test]
fn near_miss_safety_flags_do_not_hold() {
    let allow = policy(vec![rule("any", RuleAction::Allow, "Bash")]);
    for extra in [
        json!({ "requires_user_interaction": false }),
        json!({ "decision_reason_type": "safetyCheck", "classifier_approvable": true }),
        json!({ "decision_reason_type": "safetyCheck" }),
        json!({ "decision_reason_type": "rule", "classifier_approvable": false }),
        json!({ "blocked_path": null }),
        json!({ "decision_reason": "safetyCheck" }),
        json!({ "matched_ask_rule": null }),
        json!({ "matched_ask_rule": false }),
    ] {
        assert_eq!(
            bash(&allow, "ls", extra.clone()).outcome,
            Verdict::Allow,
            "{extra}"
        );
    }
}

#[test]
fn ask_deadlines_and_reminders() {
    let secs = Duration::from_secs;
    let mut slow = rule("slow", RuleAction::Ask, "Bash(make:*)");
    slow.ask_timeout = Some(secs(30));
    let mut never = rule("never", RuleAction::Ask, "Bash(sleep:*)");
    never.ask_timeout = Some(Duration::ZERO);
    let cfg = PolicyConfig {
        ask_timeout: secs(10),
        remind_after: secs(5),
        rules: vec![slow, never, rule("ok", RuleAction::Allow, "Bash(ls)")],
        ..PolicyConfig::default()
    };
    let p = compile(&cfg);
    let deadline = |cmd| p.ask_timeout_for(&bash(&p, cmd, json!({})));
    assert_eq!(deadline("make all"), Some(secs(30)));
    assert_eq!(deadline("sleep 1"), None);
    assert_eq!(deadline("cargo build"), Some(secs(10)));
    assert_eq!(
        deadline("ls"),
        None,
        "only prompts left to a human have a deadline"
    );
    assert_eq!(p.remind_after(), Some(secs(5)));
    assert_eq!(
        p.ask_timeout_message(),
        "No operator answered within the deadline"
    );

    let off = Policy::default();
    assert_eq!(off.ask_timeout_for(&bash(&off, "ls", json!({}))), None);
    assert_eq!(off.remind_after(), None);
}

#[test]
fn evaluation_and_views_serialize_for_the_api() {
    let mut r = rule("no-rm", RuleAction::Deny, "Bash(rm:*)");
    r.sessions = Some(vec!["team-a".into()]);
    r.ask_timeout = Some(Duration::from_secs(90));
    let p = policy(vec![r, rule("rule-2", RuleAction::Allow, "Read(src/**)")]);
    let ev = bash(&p, "rm x", json!({}));
    assert_eq!(
        serde_json::to_value(&ev).unwrap(),
        json!({ "decision": "deny", "message": "Denied by policy rule no-rm",
                "rule_id": "no-rm", "dry_run": null, "reason": "rule no-rm denies Bash" })
    );
    let view = serde_json::to_value(p.view()).unwrap();
    assert_eq!(
        view,
        json!({
            "ask_timeout": null,
            "ask_timeout_message": "No operator answered within the deadline",
            "remind_after": null,
            "rules": [
                { "id": "no-rm", "action": "deny", "tool": "Bash(rm:*)", "sessions": ["team-a"],
                  "message": "Denied by policy rule no-rm", "dry_run": false, "ask_timeout": "1m 30s" },
                { "id": "rule-2", "action": "allow", "tool": "Read(src/**)", "sessions": null,
                  "message": null, "dry_run": false, "ask_timeout": null },
            ]
        })
    );
}

#[test]
fn context_from_a_parsed_prompt() {
    let prompt = ccr_protocol::frame::PermissionPrompt {
        raw: None,
        request_id: "req_1".into(),
        tool_name: "Read".into(),
        tool_use_id: None,
        input: json!({ "file_path": "src/main.rs" }),
        request: json!({ "subtype": "can_use_tool" }),
    };
    let labels = vec![];
    let p = policy(vec![rule("src", RuleAction::Allow, "Read(src/**)")]);
    let ev = p.evaluate(&PromptContext::new("s1", &labels, &prompt));
    assert_eq!(ev.outcome, Verdict::Allow);
    assert_eq!(p.rules().len(), 1);
    assert!(p.rule("src").is_some());
}
