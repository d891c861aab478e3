//! Constructors for the JSON frames the simulator sends (server side of PROTOCOL §2).

use serde_json::{json, Value};

/// Model name reported in `system/init` and `assistant` frames.
pub(crate) const MODEL: &str = "claude-sonnet-4-5";

/// Add `session_id` and a fresh `uuid` to an SDK message object when they are absent.
pub(crate) fn fill_sdk(mut frame: Value, session: &str) -> Value {
    if let Value::Object(map) = &mut frame {
        map.entry("session_id")
            .or_insert_with(|| Value::String(session.to_owned()));
        map.entry("uuid")
            .or_insert_with(|| Value::String(uuid::Uuid::new_v4().to_string()));
    }
    frame
}

/// `system` / `init` (session id filled in at send time).
pub(crate) fn system_init() -> Value {
    json!({
        "type":"system","subtype":"init","model":MODEL,"cwd":"/repo",
        "tools":["Bash","Edit","Read","Write","Glob","Grep","WebFetch"],
        "permissionMode":"default","apiKeySource":"none"
    })
}

/// `system` / `session_state_changed` with `idle`, `running` or `requires_action`.
pub(crate) fn state_changed(state: &str) -> Value {
    json!({"type":"system","subtype":"session_state_changed","state":state})
}

/// A `stream_event` wrapping one partial-output event.
pub(crate) fn stream_event(event: Value) -> Value {
    json!({"type":"stream_event","event":event,"parent_tool_use_id":null})
}

/// An `assistant` message with one text block.
pub(crate) fn assistant_text(text: &str) -> Value {
    assistant(json!([{"type":"text","text":text}]))
}

/// An `assistant` message with one tool_use block.
pub(crate) fn assistant_tool_use(tool_use_id: &str, tool_name: &str, input: &Value) -> Value {
    assistant(json!([{"type":"tool_use","id":tool_use_id,"name":tool_name,"input":input}]))
}

fn assistant(content: Value) -> Value {
    json!({
        "type":"assistant","parent_tool_use_id":null,
        "message":{"id":format!("msg_{}", uuid::Uuid::new_v4().simple()),"type":"message",
                   "role":"assistant","model":MODEL,"content":content,
                   "stop_reason":null,"usage":{"input_tokens":12,"output_tokens":34}}
    })
}

/// The `user` message carrying a tool result.
pub(crate) fn tool_result(tool_use_id: &str, content: &str, is_error: bool) -> Value {
    json!({
        "type":"user","parent_tool_use_id":null,
        "message":{"role":"user","content":[{
            "type":"tool_result","tool_use_id":tool_use_id,"content":content,"is_error":is_error
        }]}
    })
}

/// A `result` ending the turn successfully.
pub(crate) fn result_success() -> Value {
    result("success", false)
}

/// A `result` with this subtype (`success`, `error_during_execution`, ...).
pub(crate) fn result(subtype: &str, is_error: bool) -> Value {
    json!({
        "type":"result","subtype":subtype,"is_error":is_error,
        "duration_ms":1234,"duration_api_ms":987,"num_turns":2,
        "result": if is_error { "" } else { "Done." },
        "total_cost_usd":0.0123,
        "usage":{"input_tokens":120,"output_tokens":340}
    })
}

/// `keep_alive`.
pub(crate) fn keep_alive() -> Value {
    json!({"type":"keep_alive"})
}

/// The `request` object of a `can_use_tool` prompt.
pub(crate) fn can_use_tool(tool_name: &str, input: &Value, tool_use_id: &str) -> Value {
    json!({
        "subtype":"can_use_tool","tool_name":tool_name,"display_name":tool_name,
        "input":input,"tool_use_id":tool_use_id,
        "description":describe(tool_name, input),
        "permission_suggestions":[]
    })
}

/// A `control_request` frame around `request`.
pub(crate) fn control_request(request_id: &str, request: Value) -> Value {
    json!({"type":"control_request","request_id":request_id,"request":request})
}

/// `control_cancel_request` for one request id.
pub(crate) fn cancel_request(request_id: &str) -> Value {
    json!({"type":"control_cancel_request","request_id":request_id})
}

/// A `success` control response.
pub(crate) fn control_success(request_id: &str, response: Value) -> Value {
    json!({"type":"control_response","response":{
        "subtype":"success","request_id":request_id,"response":response}})
}

/// An `error` control response.
pub(crate) fn control_error(request_id: &str, error: &str) -> Value {
    json!({"type":"control_response","response":{
        "subtype":"error","request_id":request_id,"error":error}})
}

/// A valid `assistant` frame padded to about `bytes` bytes.
pub(crate) fn oversized(bytes: usize, session: &str) -> Value {
    let mut frame = fill_sdk(assistant_text(""), session);
    let overhead = frame.to_string().len();
    let pad = "x".repeat(bytes.saturating_sub(overhead));
    frame["message"]["content"][0]["text"] = Value::String(pad);
    frame
}

/// What the tool "printed" when allowed: plausible text derived from the input.
pub(crate) fn tool_output(tool_name: &str, input: &Value) -> String {
    let field = |k: &str| {
        input
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    match tool_name {
        "Bash" => format!("$ {}\nok (exit 0)", field("command")),
        "Edit" | "Write" => format!("The file {} has been updated.", field("file_path")),
        "Read" => format!("     1\t# contents of {}", field("file_path")),
        "WebFetch" => format!("Fetched {}: 3 entries.", field("url")),
        other => format!("{other} completed."),
    }
}

fn describe(tool_name: &str, input: &Value) -> String {
    match (tool_name, input.get("command").and_then(Value::as_str)) {
        ("Bash", Some(cmd)) => format!("Run `{cmd}`"),
        _ => format!("Use the {tool_name} tool"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_is_close_to_the_requested_size_and_valid() {
        for n in [1000, 100_000] {
            let text = oversized(n, "s").to_string();
            assert!(
                text.len() >= n && text.len() < n + 10,
                "{n}: {}",
                text.len()
            );
        }
    }

    #[test]
    fn fill_sdk_keeps_existing_ids() {
        let v = fill_sdk(json!({"type":"x","session_id":"keep"}), "s");
        assert_eq!(v["session_id"], "keep");
        assert!(v["uuid"].is_string());
        assert_eq!(fill_sdk(json!("str"), "s"), json!("str"));
    }
}
