//! Policy rules that answer permission prompts without a human: pure matching,
//! no async, no actix. The caller (the registry) performs what [`Evaluation`] says.
//!
//! Rules are ordered and the first match wins; when none matches, a human is
//! asked. Two safety nets sit under every rule:
//! - a prompt that says a person must decide (`requires_user_interaction`, a
//!   `matched_ask_rule`, an unapprovable `safetyCheck`, a `blocked_path`) is
//!   never auto-allowed; deny rules still deny it;
//! - an allow rule must be sure (every command of a compound shell line, no
//!   path it cannot place), while deny and ask rules match whenever they might.
//!
//! A dry-run rule is still "the first match": the prompt goes to a human and the
//! evaluation records what the rule would have done, so it can be counted.
//!
//! [`Policy::compile`] turns the `[policy]` section as configured ([`PolicyConfig`],
//! plain data) into a `Policy`, parsing every rule's tool pattern and reporting each
//! bad one at its key path.

mod pattern;
mod safety;
mod shell;

use std::time::Duration;

use serde_json::Value;

use self::pattern::Mode;
pub use self::pattern::{RuleError, ToolPattern};
use crate::config::KeyError;
pub use crate::config::{PolicyConfig, RuleConfig};
use ccr_protocol::frame::PermissionPrompt;
pub use ccr_protocol::policy::{Evaluation, PolicyView, RuleAction, RuleView, Verdict};

/// One `[[policy.rules]]` entry, compiled: its tool pattern parsed.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id (`id`, default `rule-<n>`), used in logs, counts and the API.
    pub id: String,
    /// What the rule does (`action`).
    pub action: RuleAction,
    /// Which tool uses it matches (`tool`).
    pub tool: ToolPattern,
    /// Session ids or labels it applies to (`sessions`); `None` = every session.
    pub sessions: Option<Vec<String>>,
    /// Deny message as configured (`message`); `None` = the default one.
    pub message: Option<String>,
    /// Only record what the rule would do, then ask a human (`dry_run`).
    pub dry_run: bool,
    /// Deadline for prompts this rule leaves to a human (`ask_timeout`); zero = none.
    pub ask_timeout: Option<Duration>,
}

impl Rule {
    /// Compile a configured rule: parse its tool pattern.
    pub fn compile(cfg: &RuleConfig) -> Result<Self, RuleError> {
        Ok(Self {
            id: cfg.id.clone(),
            action: cfg.action,
            tool: ToolPattern::parse(&cfg.tool)?,
            sessions: cfg.sessions.clone(),
            message: cfg.message.clone(),
            dry_run: cfg.dry_run,
            ask_timeout: cfg.ask_timeout,
        })
    }

    /// Whether the rule applies to a session with this id and these labels.
    pub fn selects(&self, session_id: &str, labels: &[String]) -> bool {
        self.sessions.as_ref().is_none_or(|sel| {
            sel.iter()
                .any(|s| s == session_id || labels.iter().any(|l| l == s))
        })
    }

    /// The message a deny by this rule carries.
    pub fn deny_message(&self) -> String {
        self.message
            .clone()
            .unwrap_or_else(|| format!("Denied by policy rule {}", self.id))
    }
}

/// Everything [`Policy::evaluate`] looks at for one prompt.
#[derive(Debug, Clone, Copy)]
pub struct PromptContext<'a> {
    /// The session the prompt came from.
    pub session_id: &'a str,
    /// That session's configured labels.
    pub labels: &'a [String],
    /// `tool_name` of the prompt.
    pub tool_name: &'a str,
    /// `input` of the prompt.
    pub input: &'a Value,
    /// The whole raw `request` object (safety flags live here).
    pub request: &'a Value,
}

impl<'a> PromptContext<'a> {
    /// The context of a parsed prompt from session `session_id`.
    pub fn new(session_id: &'a str, labels: &'a [String], prompt: &'a PermissionPrompt) -> Self {
        Self {
            session_id,
            labels,
            tool_name: &prompt.tool_name,
            input: &prompt.input,
            request: &prompt.request,
        }
    }
}

/// The compiled `[policy]` section.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    ask_timeout: Duration,
    ask_timeout_message: String,
    remind_after: Duration,
}

impl Default for Policy {
    /// No rules, no deadlines: every prompt goes to a human.
    fn default() -> Self {
        Self::with_rules(&PolicyConfig::default(), Vec::new())
    }
}

impl Policy {
    /// Compile the `[policy]` section: parse every rule's tool pattern. On failure, every
    /// bad rule is reported, at `policy.rules[<n>].tool` with the pattern's problem.
    pub fn compile(cfg: &PolicyConfig) -> Result<Self, Vec<KeyError>> {
        let mut rules = Vec::with_capacity(cfg.rules.len());
        let mut errors = Vec::new();
        for (i, rule) in cfg.rules.iter().enumerate() {
            match Rule::compile(rule) {
                Ok(rule) => rules.push(rule),
                Err(e) => errors.push(KeyError {
                    path: format!("policy.rules[{i}].tool"),
                    message: e.to_string(),
                }),
            }
        }
        if errors.is_empty() {
            Ok(Self::with_rules(cfg, rules))
        } else {
            Err(errors)
        }
    }

    /// The policy of `cfg`'s deadlines with these (compiled) rules.
    fn with_rules(cfg: &PolicyConfig, rules: Vec<Rule>) -> Self {
        Self {
            rules,
            ask_timeout: cfg.ask_timeout,
            ask_timeout_message: cfg.ask_timeout_message.clone(),
            remind_after: cfg.remind_after,
        }
    }

    /// The rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Decide one prompt: the first matching rule wins, otherwise ask a human.
    pub fn evaluate(&self, ctx: &PromptContext<'_>) -> Evaluation {
        let hold = safety::hold_reason(ctx.request);
        let mut held_allow = None;
        for rule in self
            .rules
            .iter()
            .filter(|r| r.selects(ctx.session_id, ctx.labels))
        {
            let mode = match rule.action {
                RuleAction::Allow => Mode::Allow,
                RuleAction::Deny | RuleAction::Ask => Mode::Restrict,
            };
            if !rule.tool.matches(ctx.tool_name, ctx.input, mode) {
                continue;
            }
            if rule.action == RuleAction::Allow && hold.is_some() {
                // Keep looking: a later deny rule must still deny.
                held_allow.get_or_insert(rule.id.as_str());
                continue;
            }
            return rule_verdict(rule, ctx.tool_name);
        }
        let reason = match (hold, held_allow) {
            (Some(why), Some(id)) => format!("rule {id} would allow, but {why}; asking a human"),
            (Some(why), None) => format!("no rule matched and {why}; asking a human"),
            (None, _) => "no rule matched; asking a human".to_owned(),
        };
        Evaluation {
            outcome: Verdict::Ask,
            rule_id: None,
            dry_run: None,
            reason,
        }
    }

    /// Deadline for a prompt left to a human: the deciding rule's, else the global one.
    ///
    /// `None` when `ev` is not Ask or the deadline is off (`"0s"`).
    pub fn ask_timeout_for(&self, ev: &Evaluation) -> Option<Duration> {
        if ev.outcome != Verdict::Ask {
            return None;
        }
        let own = ev
            .rule_id
            .as_deref()
            .and_then(|id| self.rule(id))
            .and_then(|r| r.ask_timeout);
        Some(own.unwrap_or(self.ask_timeout)).filter(|d| !d.is_zero())
    }

    /// The deny message sent when an ask deadline expires.
    pub fn ask_timeout_message(&self) -> &str {
        &self.ask_timeout_message
    }

    /// When to emit a `permission.overdue` reminder; `None` = never.
    pub fn remind_after(&self) -> Option<Duration> {
        Some(self.remind_after).filter(|d| !d.is_zero())
    }

    /// The policy as shown by `GET /v1/policy` (hit counts are added by the caller).
    pub fn view(&self) -> PolicyView {
        let text = |d: Duration| (!d.is_zero()).then(|| humantime::format_duration(d).to_string());
        PolicyView {
            ask_timeout: text(self.ask_timeout),
            ask_timeout_message: self.ask_timeout_message.clone(),
            remind_after: text(self.remind_after),
            rules: self.rules.iter().map(RuleView::from).collect(),
        }
    }
}

fn rule_verdict(rule: &Rule, tool: &str) -> Evaluation {
    let id = &rule.id;
    let (outcome, dry_run, reason) = match (rule.dry_run, rule.action) {
        (true, action) => (
            Verdict::Ask,
            Some(action),
            format!(
                "dry run: rule {id} would {} {tool}; asking a human",
                action.as_str()
            ),
        ),
        (false, RuleAction::Allow) => (Verdict::Allow, None, format!("rule {id} allows {tool}")),
        (false, RuleAction::Deny) => (
            Verdict::Deny {
                message: rule.deny_message(),
            },
            None,
            format!("rule {id} denies {tool}"),
        ),
        (false, RuleAction::Ask) => (Verdict::Ask, None, format!("rule {id} asks a human")),
    };
    Evaluation {
        outcome,
        rule_id: Some(id.clone()),
        dry_run,
        reason,
    }
}

impl From<&Rule> for RuleView {
    fn from(r: &Rule) -> Self {
        Self {
            id: r.id.clone(),
            action: r.action,
            tool: r.tool.as_str().to_owned(),
            sessions: r.sessions.clone(),
            message: (r.action == RuleAction::Deny).then(|| r.deny_message()),
            dry_run: r.dry_run,
            ask_timeout: r
                .ask_timeout
                .map(|d| humantime::format_duration(d).to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
