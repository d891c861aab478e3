//! The policy's wire shapes: a rule's action, what the policy does with a prompt
//! (`POST /v1/policy/evaluate`), and the rules as `GET /v1/policy` shows them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a rule does with the prompts it matches (`action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Answer allow at once.
    Allow,
    /// Answer deny at once, with the rule's message.
    Deny,
    /// Leave the prompt to a human (e.g. to stop a later allow rule).
    Ask,
}

impl RuleAction {
    /// The config spelling: `allow`, `deny` or `ask`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
            RuleAction::Ask => "ask",
        }
    }
}

/// What the policy does with one prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Verdict {
    /// Allow with the original input.
    Allow,
    /// Deny with this message.
    Deny {
        /// Sent to the session as the deny `message`.
        message: String,
    },
    /// Show the prompt to an operator.
    Ask,
}

/// The result of evaluating one prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evaluation {
    /// What to do with the prompt.
    #[serde(flatten)]
    pub outcome: Verdict,
    /// The rule that decided; `None` when no rule matched.
    pub rule_id: Option<String>,
    /// For a dry-run rule: what it would have done (the outcome is then Ask).
    pub dry_run: Option<RuleAction>,
    /// Why, for people: logs, the operator UI and the audit trail.
    pub reason: String,
}

/// `GET /v1/policy` body: global deadlines and the rules in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyView {
    /// Global ask deadline (`"30s"`), `None` when off.
    pub ask_timeout: Option<String>,
    /// Deny message used when a deadline expires.
    pub ask_timeout_message: String,
    /// Reminder delay, `None` when off.
    pub remind_after: Option<String>,
    /// The rules, in evaluation order.
    pub rules: Vec<RuleView>,
}

/// One rule as shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleView {
    /// Rule id.
    pub id: String,
    /// `allow`, `deny` or `ask`.
    pub action: RuleAction,
    /// The tool pattern as written.
    pub tool: String,
    /// Session ids / labels selected; `None` = every session.
    pub sessions: Option<Vec<String>>,
    /// The deny message it sends (deny rules only).
    pub message: Option<String>,
    /// Whether it only records what it would do.
    pub dry_run: bool,
    /// Its own ask deadline (`"30s"`, `"0s"` = none), `None` = the global one.
    pub ask_timeout: Option<String>,
}

/// Rules, deadlines and how often each rule matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyReport {
    /// The compiled policy.
    #[serde(flatten)]
    pub policy: PolicyView,
    /// Evaluations that matched each rule id (dry runs included).
    pub hits: HashMap<String, u64>,
}

/// Body of `POST /v1/policy/evaluate`: a prompt as a session would send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EvaluateBody {
    /// Evaluate as if from this session (its labels count for selectors).
    pub session_id: Option<String>,
    /// Extra labels (instead of, or besides, the session's).
    #[serde(default)]
    pub labels: Vec<String>,
    /// The tool.
    pub tool_name: String,
    /// Its input.
    #[serde(default)]
    pub input: Value,
    /// Other `can_use_tool` fields (`requires_user_interaction`, `blocked_path`, ...).
    #[serde(default)]
    pub request: Option<Value>,
}
