//! Prompts that no rule may auto-allow: the session itself says a person must decide
//! (`requires_user_interaction`, a user's own ask rule in `matched_ask_rule`, an
//! unapprovable safety check, a blocked path).

use serde_json::Value;

use ccr_protocol::frame::MatchedAskRule;

/// Longest part of a matched ask rule quoted in a reason (the text is the session's).
const RULE_PART_MAX: usize = 100;

/// Why `request` (the raw `can_use_tool` object) must go to a human, if it must.
///
/// Each key is looked up on the request and, failing that, inside a
/// `decision_reason` object, since CLI versions differ in where they put it.
pub(crate) fn hold_reason(request: &Value) -> Option<String> {
    if lookup(request, "requires_user_interaction").is_some_and(is_true) {
        return Some("the prompt requires user interaction".into());
    }
    if let Some(rule) = lookup(request, "matched_ask_rule").and_then(MatchedAskRule::from_field) {
        return Some(format!(
            "matched_ask_rule is set: the user's ask rule {} matched, so a person must answer",
            describe(&rule)
        ));
    }
    let reason_type = lookup(request, "decision_reason_type").or_else(|| {
        request
            .get("decision_reason")
            .and_then(|d| d.as_object())
            .and_then(|d| d.get("type"))
    });
    let safety_check = reason_type.and_then(Value::as_str) == Some("safetyCheck");
    if safety_check && lookup(request, "classifier_approvable").is_some_and(is_false) {
        return Some("the prompt is a safety check the classifier may not approve".into());
    }
    if request.get("blocked_path").is_some_and(|v| !v.is_null()) {
        return Some("the command writes to a blocked path (blocked_path is set)".into());
    }
    None
}

fn lookup<'a>(request: &'a Value, key: &str) -> Option<&'a Value> {
    request.get(key).filter(|v| !v.is_null()).or_else(|| {
        request
            .get("decision_reason")
            .and_then(Value::as_object)
            .and_then(|d| d.get(key))
    })
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

fn is_false(v: &Value) -> bool {
    v.as_bool() == Some(false) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("false"))
}

/// `Bash(npm test:*) from localSettings`, each part cut to [`RULE_PART_MAX`] characters.
fn describe(rule: &MatchedAskRule<'_>) -> String {
    let cut = |s: &str| -> String {
        match s.char_indices().nth(RULE_PART_MAX) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s.to_owned(),
        }
    };
    let mut text = cut(rule.tool_name.unwrap_or("(unnamed tool)"));
    if let Some(content) = rule.rule_content {
        text.push_str(&format!("({})", cut(content)));
    }
    if let Some(source) = rule.source {
        text.push_str(&format!(" from {}", cut(source)));
    }
    text
}
