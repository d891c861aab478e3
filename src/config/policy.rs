//! `[policy]` section and its `[[policy.rules]]` -> [`PolicyConfig`]: deadlines,
//! then each rule's id, action, tool pattern (as written), session selector and options.
//!
//! The tool pattern is kept as text: parsing it is the policy's business
//! (`policy::Policy::compile`), which reports its problems at `policy.rules[<n>].tool`.
//! So that they are reported in the same pass as config's own, the loader marks where
//! each pattern was read ([`Errors::defer`]) and, while the config has problems, keeps
//! every rule (a bad value replaced by a placeholder) so positions stay those of the file.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::fields::{array_of_tables, plain_id, Errors, Table};
pub use ccr_protocol::policy::RuleAction;

/// Default deny message when an ask deadline expires.
const DEFAULT_TIMEOUT_MESSAGE: &str = "No operator answered within the deadline";

/// `[policy]` section: rules that answer prompts without a human, and deadlines.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Deadline for unanswered prompts (`ask_timeout`); zero (the default) = none.
    pub ask_timeout: Duration,
    /// Deny message used when a deadline expires (`ask_timeout_message`).
    pub ask_timeout_message: String,
    /// Emit a `permission.overdue` reminder after this long (`remind_after`); zero = never.
    pub remind_after: Duration,
    /// `[[policy.rules]]`, in order; the first match wins, no match = ask.
    pub rules: Vec<RuleConfig>,
}

/// One `[[policy.rules]]` entry as configured; `policy::Rule` is it compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleConfig {
    /// Unique id (`id`, default `rule-<n>`), used in logs, counts and the API.
    pub id: String,
    /// What the rule does (`action`).
    pub action: RuleAction,
    /// Which tool uses it matches (`tool`), as written: `Bash(npm test:*)`, `Read(src/**)`.
    pub tool: String,
    /// Session ids or labels it applies to (`sessions`); `None` = every session.
    pub sessions: Option<Vec<String>>,
    /// Deny message (`message`, deny rules only); `None` = the default one.
    pub message: Option<String>,
    /// Only record what the rule would do, then ask a human (`dry_run`).
    pub dry_run: bool,
    /// Deadline for prompts this rule leaves to a human (`ask_timeout`); zero = none,
    /// `None` = the global one.
    pub ask_timeout: Option<Duration>,
}

impl RuleConfig {
    /// A rule with this id, action and tool pattern, and every option at its default.
    pub fn new(id: impl Into<String>, action: RuleAction, tool: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            action,
            tool: tool.into(),
            sessions: None,
            message: None,
            dry_run: false,
            ask_timeout: None,
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            ask_timeout: Duration::ZERO,
            ask_timeout_message: DEFAULT_TIMEOUT_MESSAGE.to_owned(),
            remind_after: Duration::ZERO,
            rules: Vec::new(),
        }
    }
}

/// Validate the `[policy]` table; rules with problems are reported (and kept with
/// placeholders, see the module doc).
pub(super) fn policy(mut t: Table, errs: &mut Errors) -> PolicyConfig {
    let d = PolicyConfig::default();
    let ask_timeout = t.duration(errs, "ask_timeout", d.ask_timeout);
    let ask_timeout_message = match t.string(errs, "ask_timeout_message") {
        Some(m) if m.trim().is_empty() => {
            errs.push(t.key_path("ask_timeout_message"), "must not be empty");
            d.ask_timeout_message
        }
        Some(m) => m,
        None => d.ask_timeout_message,
    };
    let remind_after = t.duration(errs, "remind_after", d.remind_after);
    let rules_path = t.key_path("rules");
    let rules = rules(t.raw("rules"), &rules_path, errs);
    t.finish(errs);
    PolicyConfig {
        ask_timeout,
        ask_timeout_message,
        remind_after,
        rules,
    }
}

fn rules(value: Option<&Value>, path: &str, errs: &mut Errors) -> Vec<RuleConfig> {
    let mut first_index: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, path, map) in array_of_tables(value, path, errs) {
        // An entry that is not a table (already reported) keeps its place.
        while out.len() < i {
            let n = out.len() + 1;
            out.push(RuleConfig::new(format!("rule-{n}"), RuleAction::Ask, ""));
        }
        let mut t = Table::new(&path, Some(map));
        let id = match t.string(errs, "id") {
            Some(id) => {
                if let Err(e) = check_id(&id) {
                    errs.push(t.key_path("id"), e);
                }
                id
            }
            None => format!("rule-{}", i + 1),
        };
        if let Some(first) = first_index.get(&id) {
            errs.push(
                t.key_path("id"),
                format!("duplicate id {id:?}, already used by policy.rules[{first}]"),
            );
        } else {
            first_index.insert(id.clone(), i);
        }
        let rule = rule(&mut t, errs, id);
        t.finish(errs);
        out.push(rule);
    }
    out
}

/// The keys of one rule after `id`. A missing or bad `action` or `tool` is reported and
/// replaced by a placeholder (`ask`, an empty pattern): the config is invalid anyway.
fn rule(t: &mut Table, errs: &mut Errors, id: String) -> RuleConfig {
    let action = match t.string(errs, "action").as_deref() {
        Some("allow") => Some(RuleAction::Allow),
        Some("deny") => Some(RuleAction::Deny),
        Some("ask") => Some(RuleAction::Ask),
        Some(other) => {
            let message = format!("expected \"allow\", \"deny\" or \"ask\", got {other:?}");
            errs.push(t.key_path("action"), message);
            None
        }
        None if !t.has("action") => {
            errs.push(
                t.key_path("action"),
                "required (\"allow\", \"deny\" or \"ask\")",
            );
            None
        }
        None => None, // Wrong type: already reported.
    };
    let tool = match t.string(errs, "tool") {
        Some(text) => {
            // Parsed by `Policy::compile`; its problems go here in the list.
            errs.defer(t.key_path("tool"));
            text
        }
        None if !t.has("tool") => {
            errs.push(t.key_path("tool"), "required (e.g. \"Bash(npm test:*)\")");
            String::new()
        }
        None => String::new(), // Wrong type: already reported.
    };
    let selected = t.strings(errs, "sessions");
    let sessions = t.has("sessions").then_some(selected);
    if let Some(Value::Array(items)) = t.raw("sessions") {
        if items.is_empty() {
            let message = "must not be empty (leave it out to select every session)";
            errs.push(t.key_path("sessions"), message);
        }
        for (j, item) in items.iter().enumerate() {
            if item.as_str().is_some_and(|s| s.trim().is_empty()) {
                let path = format!("{}[{j}]", t.key_path("sessions"));
                errs.push(path, "must not be empty");
            }
        }
    }
    let message = t.string(errs, "message");
    if let Some(m) = &message {
        if action.is_some_and(|a| a != RuleAction::Deny) {
            errs.push(t.key_path("message"), "only allowed with action = \"deny\"");
        } else if m.trim().is_empty() {
            errs.push(t.key_path("message"), "must not be empty");
        }
    }
    let dry_run = t.bool(errs, "dry_run", false);
    let has_timeout = t.has("ask_timeout");
    let ask_timeout = t.duration(errs, "ask_timeout", Duration::ZERO);
    RuleConfig {
        id,
        action: action.unwrap_or(RuleAction::Ask),
        tool,
        sessions,
        message,
        dry_run,
        ask_timeout: has_timeout.then_some(ask_timeout),
    }
}

/// Rule ids appear in logs, metrics and URLs: keep them plain.
fn check_id(id: &str) -> Result<(), String> {
    plain_id(id, 64, "must not be empty (leave it out for rule-<n>)")
}
