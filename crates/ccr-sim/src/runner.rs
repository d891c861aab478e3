//! Plays a session's script while one of its connections is live.
//!
//! [`plan`] is the pure part: given the entry (under the lock) it advances the
//! position and says what to send and whether to continue, wait or sleep.
//! [`run`] is the thin async shell, spawned inside the connection actor so it
//! dies with the connection; the position stays in the entry for the next one.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use serde_json::Value;

use super::conn::{Out, WsConn};
use super::frames;
use super::script::{after_turn_end, Step};
use super::state::{Current, Entry, Finished, Outcome, Shared};

/// What the runner does after sending `out`.
#[derive(Debug, PartialEq)]
pub(crate) enum Then {
    /// Plan the next step at once.
    Continue,
    /// Wait for a state change.
    Wait,
    /// Sleep, then continue.
    Sleep(Duration),
    /// This connection is no longer the live one, or the script closed it.
    Exit,
}

/// One planning result.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) out: Vec<Out>,
    pub(crate) then: Then,
}

impl Plan {
    fn new(out: Vec<Out>, then: Then) -> Self {
        Plan { out, then }
    }
}

fn text(v: Value) -> Out {
    Out::Text(v.to_string())
}

/// Advance the script of `e` by at most one step on behalf of connection `conn_id`.
pub(crate) fn plan(e: &mut Entry, session: &str, conn_id: u64) -> Plan {
    if !e.is_live(conn_id) {
        return Plan::new(Vec::new(), Then::Exit);
    }
    let script = e.script.clone();
    let pos = e.run.pos;
    let Some(step) = script.get(pos) else {
        return Plan::new(Vec::new(), Then::Wait);
    };
    let sdk = |v: &Value| text(frames::fill_sdk(v.clone(), session));
    let mut advance = |then: Then, out: Vec<Out>| {
        e.run.pos = pos + 1;
        Plan::new(out, then)
    };
    match step {
        Step::Send(v) => advance(Then::Continue, vec![text(v.clone())]),
        Step::Sdk(v) => advance(Then::Continue, vec![sdk(v)]),
        Step::Garbage(s) => advance(Then::Continue, vec![Out::Text(s.clone())]),
        Step::Binary(b) => advance(Then::Continue, vec![Out::Binary(b.clone().into())]),
        Step::Oversized(n) => advance(Then::Continue, vec![text(frames::oversized(*n, session))]),
        Step::TurnEnd => advance(Then::Continue, Vec::new()),
        Step::Pause(d) => advance(Then::Sleep(*d), Vec::new()),
        Step::Close(code) => advance(Then::Exit, vec![Out::Close(*code)]),
        Step::Drop => advance(Then::Exit, vec![Out::Drop]),
        Step::Cancel(id) => {
            e.settle(id, Outcome::Cancelled);
            e.run.pos = pos + 1;
            Plan::new(vec![text(frames::cancel_request(id))], Then::Continue)
        }
        Step::WaitUserMessage => {
            if e.run.user_msgs > e.run.consumed {
                e.run.consumed += 1;
                if !e.queued.is_empty() {
                    e.queued.remove(0);
                }
                e.run.pos = pos + 1;
                Plan::new(Vec::new(), Then::Continue)
            } else {
                Plan::new(Vec::new(), Then::Wait)
            }
        }
        Step::Repeat => {
            e.run.pos = 0;
            // A script without blocking steps would otherwise spin.
            Plan::new(Vec::new(), Then::Sleep(Duration::from_millis(1)))
        }
        Step::ToolResult => {
            e.run.pos = pos + 1;
            let Some(last) = e.run.last.take() else {
                return Plan::new(Vec::new(), Then::Continue);
            };
            let out = vec![
                sdk(&frames::state_changed("running")),
                sdk(&tool_result_frame(&last)),
            ];
            Plan::new(out, Then::Continue)
        }
        Step::Prompt {
            request_id,
            tool_name,
            input,
        } => prompt_step(e, session, Some(request_id), tool_name, input, false),
        Step::PromptFresh { tool_name, input } => {
            prompt_step(e, session, None, tool_name, input, false)
        }
        Step::ToolUse {
            request_id,
            tool_name,
            input,
        } => prompt_step(e, session, request_id.as_ref(), tool_name, input, true),
    }
}

fn prompt_step(
    e: &mut Entry,
    session: &str,
    fixed_id: Option<&String>,
    tool_name: &str,
    input: &Value,
    realistic: bool,
) -> Plan {
    let pos = e.run.pos;
    if let Some(cur) = e.run.current.as_mut().filter(|c| c.pos == pos) {
        return match cur.outcome.take() {
            None => Plan::new(Vec::new(), Then::Wait),
            Some(outcome) => {
                let cur = e.run.current.take().expect("checked above");
                finish_prompt(e, session, cur, outcome)
            }
        };
    }
    let request_id = fixed_id
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let tool_use_id = format!("toolu_{request_id}");
    let mut out = Vec::new();
    if realistic {
        let tool_use = frames::assistant_tool_use(&tool_use_id, tool_name, input);
        out.push(text(frames::fill_sdk(tool_use, session)));
        let waiting = frames::state_changed("requires_action");
        out.push(text(frames::fill_sdk(waiting, session)));
    }
    let request = frames::can_use_tool(tool_name, input, &tool_use_id);
    let frame = frames::control_request(&request_id, request).to_string();
    e.track(&request_id, frame.clone());
    out.push(Out::Text(frame));
    e.run.current = Some(Current {
        pos,
        request_id,
        tool_name: tool_name.to_owned(),
        input: input.clone(),
        tool_use_id,
        realistic,
        outcome: None,
    });
    Plan::new(out, Then::Wait)
}

fn finish_prompt(e: &mut Entry, session: &str, cur: Current, outcome: Outcome) -> Plan {
    let pos = e.run.pos;
    let deny_interrupt = match &outcome {
        Outcome::Answered(r) => {
            r.get("behavior").and_then(Value::as_str) == Some("deny")
                && r.get("interrupt").and_then(Value::as_bool) == Some(true)
        }
        _ => false,
    };
    let finished = Finished {
        tool_name: cur.tool_name,
        input: cur.input,
        tool_use_id: cur.tool_use_id,
        outcome,
    };
    if finished.outcome == Outcome::Interrupted {
        e.run.pos = after_turn_end(&e.script, pos);
        return Plan::new(Vec::new(), Then::Continue);
    }
    if cur.realistic && deny_interrupt {
        e.run.pos = after_turn_end(&e.script, pos);
        let out = vec![
            text(frames::fill_sdk(tool_result_frame(&finished), session)),
            text(frames::fill_sdk(
                frames::result("error_during_execution", true),
                session,
            )),
        ];
        return Plan::new(out, Then::Continue);
    }
    e.run.last = Some(finished);
    e.run.pos = pos + 1;
    Plan::new(Vec::new(), Then::Continue)
}

/// The `user` tool_result for a finished prompt: deny message word for word.
fn tool_result_frame(f: &Finished) -> Value {
    let (content, is_error) = match &f.outcome {
        Outcome::Answered(r) if r.get("behavior").and_then(Value::as_str) == Some("allow") => {
            let input = r.get("updatedInput").unwrap_or(&f.input);
            (frames::tool_output(&f.tool_name, input), false)
        }
        Outcome::Answered(r) => {
            let msg = r.get("message").and_then(Value::as_str).unwrap_or("");
            (msg.to_owned(), true)
        }
        Outcome::Failed(msg) => (format!("Permission check failed: {msg}"), true),
        Outcome::Cancelled => ("The permission request was cancelled.".to_owned(), true),
        Outcome::Interrupted => ("Interrupted by user".to_owned(), true),
    };
    frames::tool_result(&f.tool_use_id, &content, is_error)
}

/// Play the script of `session` for connection `conn_id` until it is no longer live.
pub(crate) async fn run(shared: Arc<Shared>, session: String, conn_id: u64, addr: Addr<WsConn>) {
    let Some(mut wake) = shared.read(&session, |e| e.wake.subscribe()) else {
        return;
    };
    loop {
        wake.borrow_and_update();
        let plan = shared.with_entry(&session, |e| plan(e, &session, conn_id));
        for out in plan.out {
            addr.do_send(out);
        }
        match plan.then {
            Then::Continue => {}
            Then::Wait => {
                if wake.changed().await.is_err() {
                    return;
                }
            }
            Then::Sleep(d) => tokio::time::sleep(d).await,
            Then::Exit => return,
        }
    }
}
