//! Deterministic per-session scenarios: the steps and ready-made realistic turns.

use std::time::Duration;

use serde_json::{json, Value};

use super::frames;

/// A scenario played by one session; its position survives reconnects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Script(pub Vec<Step>);

/// One step of a [`Script`].
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Send this frame verbatim.
    Send(Value),
    /// Send an SDK message, filling in `session_id` and a fresh `uuid` when absent.
    Sdk(Value),
    /// Send a `can_use_tool` prompt and block until it is answered, cancelled or interrupted.
    Prompt {
        /// Fixed request id (tool_use_id becomes `toolu_<request_id>`).
        request_id: String,
        /// Tool name.
        tool_name: String,
        /// Tool input.
        input: Value,
    },
    /// Like [`Step::Prompt`] with a fresh UUID request id generated at send time.
    PromptFresh {
        /// Tool name.
        tool_name: String,
        /// Tool input.
        input: Value,
    },
    /// Realistic tool use: `assistant` tool_use, `requires_action`, then the prompt; blocks like a prompt.
    ///
    /// A `deny` with `interrupt: true` ends the turn (tool result, `result`
    /// `error_during_execution`, skip past [`Step::TurnEnd`]); an interrupt skips there too.
    ToolUse {
        /// Fixed request id, or `None` for a fresh UUID per run.
        request_id: Option<String>,
        /// Tool name.
        tool_name: String,
        /// Tool input.
        input: Value,
    },
    /// Send `running` and the `user` tool_result for the last finished prompt (deny message word for word).
    ToolResult,
    /// Marks the end of a turn: where an interrupted turn resumes.
    TurnEnd,
    /// Send `control_cancel_request` for this request id and stop tracking it.
    Cancel(String),
    /// Block until a user message is POSTed to `/events` (messages posted earlier count).
    WaitUserMessage,
    /// Wait this long (demo pacing).
    Pause(Duration),
    /// Close the connection with this code.
    Close(u16),
    /// Drop the connection without a close frame.
    Drop,
    /// Send this raw text (need not be JSON).
    Garbage(String),
    /// Send a valid SDK `assistant` frame of about this many bytes.
    Oversized(usize),
    /// Send a binary frame.
    Binary(Vec<u8>),
    /// Jump back to step 0.
    Repeat,
}

impl Script {
    /// A script that sends nothing.
    pub fn empty() -> Self {
        Script(Vec::new())
    }

    /// A script from these steps.
    pub fn new(steps: Vec<Step>) -> Self {
        Script(steps)
    }

    /// Append one step.
    pub fn then(mut self, step: Step) -> Self {
        self.0.push(step);
        self
    }

    /// Append several steps.
    pub fn then_all(mut self, steps: impl IntoIterator<Item = Step>) -> Self {
        self.0.extend(steps);
        self
    }

    /// A script of one realistic turn using `tool_name` with `input` (fixed `request_id`, or fresh if `None`).
    pub fn one_turn(prompt: &str, tool_name: &str, input: Value, request_id: Option<&str>) -> Self {
        Script(Self::turn(prompt, tool_name, input, request_id))
    }

    /// The steps of one realistic turn (PROTOCOL §5), ending with [`Step::TurnEnd`].
    ///
    /// `system/init`, `running`, `assistant` text, a few `stream_event`s, the
    /// tool use with its prompt, the tool result, closing `assistant` text,
    /// `result` success and `idle`.
    pub fn turn(
        prompt: &str,
        tool_name: &str,
        input: Value,
        request_id: Option<&str>,
    ) -> Vec<Step> {
        let intro = format!("I'll take care of that: {prompt}");
        vec![
            Step::Sdk(frames::system_init()),
            Step::Sdk(frames::state_changed("running")),
            Step::Sdk(frames::stream_event(json!({"type":"message_start"}))),
            Step::Sdk(frames::stream_event(json!({
                "type":"content_block_delta","index":0,
                "delta":{"type":"text_delta","text":intro}
            }))),
            Step::Sdk(frames::stream_event(
                json!({"type":"content_block_stop","index":0}),
            )),
            Step::Sdk(frames::assistant_text(&intro)),
            Step::ToolUse {
                request_id: request_id.map(str::to_owned),
                tool_name: tool_name.into(),
                input,
            },
            Step::ToolResult,
            Step::Sdk(frames::stream_event(json!({"type":"message_start"}))),
            Step::Sdk(frames::assistant_text("Done. Anything else?")),
            Step::Sdk(frames::result_success()),
            Step::Sdk(frames::state_changed("idle")),
            Step::TurnEnd,
        ]
    }

    /// The endless demo: turns with varied tools, `turn_pause` between them, an occasional keep-alive.
    pub fn demo(turn_pause: Duration) -> Self {
        let turns = [
            (
                "run the test suite",
                "Bash",
                json!({"command":"npm test","description":"Run tests"}),
            ),
            (
                "build the crate",
                "Bash",
                json!({"command":"cargo build","description":"Build"}),
            ),
            (
                "fix the typo in the README",
                "Edit",
                json!({"file_path":"/repo/README.md","old_string":"teh","new_string":"the"}),
            ),
            (
                "look at the config",
                "Read",
                json!({"file_path":"/repo/config.toml"}),
            ),
            (
                "check the changelog online",
                "WebFetch",
                json!({"url":"https://example.com/CHANGELOG","prompt":"List the latest changes"}),
            ),
        ];
        let mut steps = Vec::new();
        for (i, (prompt, tool, input)) in turns.into_iter().enumerate() {
            steps.extend(Self::turn(prompt, tool, input, None));
            if i % 2 == 1 {
                steps.push(Step::Send(frames::keep_alive()));
            }
            steps.push(Step::Pause(turn_pause));
        }
        steps.push(Step::Repeat);
        Script(steps)
    }
}

impl From<Vec<Step>> for Script {
    fn from(steps: Vec<Step>) -> Self {
        Script(steps)
    }
}

/// Index just after the next [`Step::TurnEnd`] at or after `from`, or `from + 1` when there is none.
pub(crate) fn after_turn_end(steps: &[Step], from: usize) -> usize {
    steps
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, s)| matches!(s, Step::TurnEnd))
        .map_or(from + 1, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_turn_end_skips_to_the_next_turn() {
        let steps = Script::turn("p", "Bash", json!({}), Some("r")).into_iter();
        let mut steps: Vec<Step> = steps.chain([Step::Send(json!({"type":"next"}))]).collect();
        let tool_use = steps
            .iter()
            .position(|s| matches!(s, Step::ToolUse { .. }))
            .unwrap();
        assert_eq!(after_turn_end(&steps, tool_use), steps.len() - 1);
        steps.pop();
        steps.pop();
        assert_eq!(
            after_turn_end(&steps, tool_use),
            tool_use + 1,
            "no TurnEnd: next step"
        );
    }

    #[test]
    fn demo_has_five_fresh_tool_uses_and_loops() {
        let demo = Script::demo(Duration::from_millis(5));
        let uses: Vec<_> = demo
            .0
            .iter()
            .filter_map(|s| match s {
                Step::ToolUse {
                    request_id: None,
                    tool_name,
                    ..
                } => Some(tool_name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(uses, ["Bash", "Bash", "Edit", "Read", "WebFetch"]);
        assert_eq!(demo.0.last(), Some(&Step::Repeat));
        assert!(demo.0.contains(&Step::Send(frames::keep_alive())));
    }
}
