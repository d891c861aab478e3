//! What a sink is told about ([`Notice`]): the happening, its session, and a bounded
//! summary of its prompt, built once on the caller's thread and shared by every sink.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::config::NotifyEvent;
use ccr_protocol::PermissionPrompt;

/// Most characters of a tool input kept in a notice (the console shows the whole input).
pub const INPUT_SUMMARY_CHARS: usize = 300;

/// One happening a sink may be told about.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Which happening.
    pub event: NotifyEvent,
    /// When it happened.
    pub at: SystemTime,
    /// The session.
    pub session_id: Arc<str>,
    /// The session's labels (for selectors; empty where unknown, e.g. a prompt restored
    /// after a restart).
    pub labels: Arc<[String]>,
    /// The prompt, for the `permission*` events.
    pub prompt: Option<PromptSummary>,
    /// Why, for `session_failed`.
    pub failure: Option<Failure>,
}

/// The prompt of a notice, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSummary {
    /// Prompt id.
    pub request_id: String,
    /// Tool name.
    pub tool_name: String,
    /// `can_use_tool`, `elicitation`, `request_user_dialog`.
    pub kind: &'static str,
    /// The tool input, at most [`INPUT_SUMMARY_CHARS`] characters (see [`summarize`]).
    pub input: String,
    /// When the prompt arrived.
    pub received_at: SystemTime,
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The state's `reason` (`unauthorized`, `not_found`, `restarts_exhausted`, ...).
    pub reason: String,
    /// The session's last error, if any.
    pub detail: Option<String>,
}

impl Notice {
    /// A notice about `prompt` of `session`, now.
    pub fn prompt(
        event: NotifyEvent,
        session_id: Arc<str>,
        labels: Arc<[String]>,
        prompt: &PermissionPrompt,
        received_at: SystemTime,
    ) -> Self {
        Self {
            event,
            at: SystemTime::now(),
            session_id,
            labels,
            prompt: Some(PromptSummary {
                request_id: prompt.request_id.clone(),
                tool_name: prompt.tool_name.clone(),
                kind: prompt.kind().as_str(),
                input: summarize(&prompt.tool_name, &prompt.input, INPUT_SUMMARY_CHARS),
                received_at,
            }),
            failure: None,
        }
    }

    /// A `session_failed` notice, now.
    pub fn session_failed(
        session_id: Arc<str>,
        labels: Arc<[String]>,
        reason: String,
        detail: Option<String>,
    ) -> Self {
        Self {
            event: NotifyEvent::SessionFailed,
            at: SystemTime::now(),
            session_id,
            labels,
            prompt: None,
            failure: Some(Failure { reason, detail }),
        }
    }

    /// How long the prompt has waited at [`Notice::at`] (zero without a prompt).
    pub fn age(&self) -> Duration {
        self.prompt
            .as_ref()
            .and_then(|p| self.at.duration_since(p.received_at).ok())
            .unwrap_or_default()
    }

    /// What the notice holds, roughly, in bytes: what a sink's `queue_bytes` counts.
    pub fn approx_bytes(&self) -> usize {
        let prompt = self.prompt.as_ref().map_or(0, |p| {
            p.request_id.len() + p.tool_name.len() + p.input.len() + 64
        });
        let failure = self.failure.as_ref().map_or(0, |f| {
            f.reason.len() + f.detail.as_ref().map_or(0, String::len)
        });
        let labels: usize = self.labels.iter().map(String::len).sum();
        128 + self.session_id.len() + labels + prompt + failure
    }
}

/// A tool input in at most `max` characters: a `Bash` command as it is, anything else as
/// compact JSON; longer is cut and ends with `…`. The cost is bounded by `max`, not by the
/// input (a `Write` prompt may carry megabytes in one string).
///
/// Only `Bash` is shown bare: another tool's `command` (an MCP tool's, say) is one field
/// among others that may matter as much (`{"namespace":"prod","command":...}`).
pub fn summarize(tool_name: &str, input: &Value, max: usize) -> String {
    if tool_name == "Bash" {
        if let Some(command) = input.get("command").and_then(Value::as_str) {
            return cut(command, max);
        }
    }
    let mut out = String::new();
    compact(input, &mut out, max.saturating_add(1), 0);
    cut(&out, max)
}

/// Deepest nesting written out; deeper values are shown as `…`.
const MAX_DEPTH: usize = 16;

/// Append `v` as compact JSON to `out` until `out` holds `budget` characters or more.
fn compact(v: &Value, out: &mut String, budget: usize, depth: usize) {
    let full = |out: &String| out.chars().count() >= budget;
    if full(out) {
        return;
    }
    match v {
        Value::String(s) => {
            // Only the part that can show is escaped: never the whole string.
            let room = budget.saturating_sub(out.chars().count());
            let head: String = s.chars().take(room).collect();
            out.push_str(&Value::String(head).to_string());
        }
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => out.push('…'),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if full(out) {
                    return;
                }
                if i > 0 {
                    out.push(',');
                }
                compact(item, out, budget, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if full(out) {
                    return;
                }
                if i > 0 {
                    out.push(',');
                }
                compact(&Value::String(key.clone()), out, budget, depth + 1);
                out.push(':');
                compact(item, out, budget, depth + 1);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `s` in at most `max` characters, `…` last when cut.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some(_) => {
            let keep: String = s.chars().take(max.saturating_sub(1)).collect();
            format!("{keep}…")
        }
    }
}
