//! Frames and bodies this client sends: permission answers, errors, interrupts, user messages.
//!
//! Every frame is serialized from a typed value: the real worker dies on a
//! single malformed line (PROTOCOL §5).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// The `PermissionResult` sent inside a `success` control response.
///
/// Field order and spelling follow the SDK's `PermissionResult` type: `toolUseID` echoes the
/// prompt's `tool_use_id`; `decisionClassification` says how a person decided (absent when a
/// rule, a deadline or a limit answered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "behavior", rename_all = "lowercase")]
pub enum PermissionResult {
    /// Run the tool with `updated_input` (always present: older CLIs reject an allow without it).
    Allow {
        /// The (possibly edited) tool input.
        #[serde(rename = "updatedInput")]
        updated_input: Value,
        /// Permission rule updates, passed through from the operator.
        #[serde(
            rename = "updatedPermissions",
            skip_serializing_if = "Option::is_none",
            default
        )]
        updated_permissions: Option<Vec<Value>>,
        /// The prompt's `tool_use_id`.
        #[serde(rename = "toolUseID", skip_serializing_if = "Option::is_none", default)]
        tool_use_id: Option<String>,
        /// How a person decided (`user_temporary` / `user_permanent`).
        #[serde(
            rename = "decisionClassification",
            skip_serializing_if = "Option::is_none",
            default
        )]
        decision_classification: Option<DecisionClassification>,
    },
    /// Refuse; `message` becomes the tool result the model reads.
    Deny {
        /// Text shown to the model word for word.
        message: String,
        /// Stop the whole turn as well.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        interrupt: bool,
        /// The prompt's `tool_use_id`.
        #[serde(rename = "toolUseID", skip_serializing_if = "Option::is_none", default)]
        tool_use_id: Option<String>,
        /// `user_reject` when a person denied.
        #[serde(
            rename = "decisionClassification",
            skip_serializing_if = "Option::is_none",
            default
        )]
        decision_classification: Option<DecisionClassification>,
    },
}

/// The SDK's `PermissionDecisionClassification`: how a person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionClassification {
    /// Allowed this once.
    UserTemporary,
    /// Allowed and added permission rules (`updatedPermissions`).
    UserPermanent,
    /// Denied.
    UserReject,
}

impl DecisionClassification {
    /// The wire name (`user_temporary`, `user_permanent`, `user_reject`).
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionClassification::UserTemporary => "user_temporary",
            DecisionClassification::UserPermanent => "user_permanent",
            DecisionClassification::UserReject => "user_reject",
        }
    }
}

impl PermissionResult {
    /// `"allow"` or `"deny"`, for logs and events.
    pub fn behavior(&self) -> &'static str {
        match self {
            PermissionResult::Allow { .. } => "allow",
            PermissionResult::Deny { .. } => "deny",
        }
    }
}

#[derive(Serialize)]
struct ControlResponseFrame<'a, R = PermissionResult> {
    #[serde(rename = "type")]
    kind: &'static str,
    response: ResponseBody<'a, R>,
}

#[derive(Serialize)]
#[serde(tag = "subtype", rename_all = "lowercase")]
enum ResponseBody<'a, R = PermissionResult> {
    Success {
        request_id: &'a str,
        response: &'a R,
    },
    Error {
        request_id: &'a str,
        error: &'a str,
    },
}

#[derive(Serialize)]
struct ControlRequestFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    request_id: &'a str,
    request: ClientRequest<'a>,
}

/// The `request` of a control request this client sends (`interrupt`, `initialize`).
#[derive(Serialize)]
struct ClientRequest<'a> {
    subtype: &'static str,
    /// `interrupt`: also cancel queued user messages.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cancel_queued: bool,
    /// `initialize`: the dialog kinds this client renders (none: it renders none).
    #[serde(
        rename = "supportedDialogKinds",
        skip_serializing_if = "<[_]>::is_empty"
    )]
    supported_dialog_kinds: &'a [String],
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs cannot fail: no maps with non-string keys.
    serde_json::to_string(value).expect("outbound frame serializes")
}

/// The answer to a permission prompt.
pub fn permission_response(request_id: &str, result: &PermissionResult) -> String {
    to_json(&ControlResponseFrame {
        kind: "control_response",
        response: ResponseBody::Success {
            request_id,
            response: result,
        },
    })
}

/// [`PermissionResult::Allow`] with its `updatedInput` as JSON text, in the same field order.
#[derive(Serialize)]
struct AllowAsAsked<'a> {
    behavior: &'static str,
    #[serde(rename = "updatedInput")]
    updated_input: &'a RawValue,
    #[serde(rename = "updatedPermissions", skip_serializing_if = "Option::is_none")]
    updated_permissions: Option<&'a Vec<Value>>,
    #[serde(rename = "toolUseID", skip_serializing_if = "Option::is_none")]
    tool_use_id: Option<&'a str>,
    #[serde(
        rename = "decisionClassification",
        skip_serializing_if = "Option::is_none"
    )]
    decision_classification: Option<DecisionClassification>,
}

/// [`permission_response`] for an allow of the prompt's input unedited, `input` being that
/// input's JSON text as the session sent it: written out as it came instead of serialized
/// again from its parsed value (the cost grows with the input: a file a `Write` carries).
/// A deny is answered as [`permission_response`] answers it; `result`'s own
/// `updated_input` is not read.
pub fn permission_response_as_asked(
    request_id: &str,
    result: &PermissionResult,
    input: &RawValue,
) -> String {
    let PermissionResult::Allow {
        updated_permissions,
        tool_use_id,
        decision_classification,
        ..
    } = result
    else {
        return permission_response(request_id, result);
    };
    to_json(&ControlResponseFrame {
        kind: "control_response",
        response: ResponseBody::Success {
            request_id,
            response: &AllowAsAsked {
                behavior: "allow",
                updated_input: input,
                updated_permissions: updated_permissions.as_ref(),
                tool_use_id: tool_use_id.as_deref(),
                decision_classification: *decision_classification,
            },
        },
    })
}

#[derive(Serialize)]
struct QuestionFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    response: QuestionBody<'a>,
}

#[derive(Serialize)]
struct QuestionBody<'a> {
    subtype: &'static str,
    request_id: &'a str,
    response: &'a Value,
}

/// The answer to an `elicitation` or a `request_user_dialog` (its `QuestionAnswer` shape),
/// in the same field order as every other `control_response` this client sends.
pub fn question_response(request_id: &str, answer: &Value) -> String {
    to_json(&QuestionFrame {
        kind: "control_response",
        response: QuestionBody {
            subtype: "success",
            request_id,
            response: answer,
        },
    })
}

/// The error answer to a control request this client does not handle.
pub fn error_response(request_id: &str, error: &str) -> String {
    to_json(&ControlResponseFrame::<PermissionResult> {
        kind: "control_response",
        response: ResponseBody::Error { request_id, error },
    })
}

/// An interrupt request for the running turn; `cancel_queued` also cancels the user
/// messages still queued (PROTOCOL §6; older CLIs ignore it).
pub fn interrupt_request(request_id: &str, cancel_queued: bool) -> String {
    to_json(&ControlRequestFrame {
        kind: "control_request",
        request_id,
        request: ClientRequest {
            subtype: "interrupt",
            cancel_queued,
            supported_dialog_kinds: &[],
        },
    })
}

/// The `initialize` request a joining client sends: its reply lists the requests the
/// session still waits on (PROTOCOL §6). Nothing else is asked or configured; dialog kinds
/// are declared only when the operator configured some.
pub fn initialize_request(request_id: &str, supported_dialog_kinds: &[String]) -> String {
    to_json(&ControlRequestFrame {
        kind: "control_request",
        request_id,
        request: ClientRequest {
            subtype: "initialize",
            cancel_queued: false,
            supported_dialog_kinds,
        },
    })
}

#[derive(Serialize)]
struct EventsBody<'a> {
    events: [UserEvent<'a>; 1],
}

#[derive(Serialize)]
struct UserEvent<'a> {
    uuid: &'a str,
    session_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    parent_tool_use_id: Option<()>,
    message: UserMessage<'a>,
}

#[derive(Serialize)]
struct UserMessage<'a> {
    role: &'static str,
    content: &'a Value,
}

/// The body of `POST /v1/sessions/{id}/events` carrying one user message.
pub fn user_message_events(uuid: &str, session_id: &str, content: &Value) -> String {
    to_json(&EventsBody {
        events: [UserEvent {
            uuid,
            session_id,
            kind: "user",
            parent_tool_use_id: None,
            message: UserMessage {
                role: "user",
                content,
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(s: String) -> Value {
        serde_json::from_str(&s).unwrap()
    }

    #[test]
    fn allow_matches_protocol_exactly() {
        let r = PermissionResult::Allow {
            updated_input: json!({"command":"npm test"}),
            updated_permissions: None,
            tool_use_id: None,
            decision_classification: None,
        };
        assert_eq!(
            parsed(permission_response("req_1", &r)),
            json!({"type":"control_response","response":{"subtype":"success","request_id":"req_1",
                "response":{"behavior":"allow","updatedInput":{"command":"npm test"}}}})
        );
        let r = PermissionResult::Allow {
            updated_input: json!({"command":"npm test"}),
            updated_permissions: None,
            tool_use_id: Some("toolu_1".into()),
            decision_classification: Some(DecisionClassification::UserTemporary),
        };
        assert_eq!(
            permission_response("req_1", &r),
            r#"{"type":"control_response","response":{"subtype":"success","request_id":"req_1","response":{"behavior":"allow","updatedInput":{"command":"npm test"},"toolUseID":"toolu_1","decisionClassification":"user_temporary"}}}"#,
            "the SDK's spelling, byte for byte"
        );
    }

    /// The same frame as from the parsed value, byte for byte, whatever else the allow
    /// carries; the input's text as it came (its key order, its spelling of numbers); a
    /// deny as ever.
    #[test]
    fn an_allow_as_asked_writes_the_input_text_as_it_came() {
        let rule = json!({"type":"addRules","rules":[],"behavior":"allow","destination":"session"});
        for (permissions, tool_use_id, classification) in [
            (None, None, None),
            (
                Some(vec![rule]),
                Some("toolu_1".to_owned()),
                Some(DecisionClassification::UserPermanent),
            ),
        ] {
            let r = PermissionResult::Allow {
                updated_input: json!({"command":"npm test","timeout":5}),
                updated_permissions: permissions,
                tool_use_id,
                decision_classification: classification,
            };
            let text: &RawValue =
                serde_json::from_str(r#"{"command":"npm test","timeout":5}"#).unwrap();
            assert_eq!(
                permission_response_as_asked("req_1", &r, text),
                permission_response("req_1", &r)
            );
        }
        let r = PermissionResult::Allow {
            updated_input: json!({"command":"ls"}),
            updated_permissions: None,
            tool_use_id: None,
            decision_classification: None,
        };
        let text: &RawValue = serde_json::from_str(r#"{"z":1e2, "command":"ls"}"#).unwrap();
        assert_eq!(
            permission_response_as_asked("r", &r, text),
            r#"{"type":"control_response","response":{"subtype":"success","request_id":"r","response":{"behavior":"allow","updatedInput":{"z":1e2, "command":"ls"}}}}"#
        );
        let deny = PermissionResult::Deny {
            message: "no".into(),
            interrupt: true,
            tool_use_id: None,
            decision_classification: None,
        };
        assert_eq!(
            permission_response_as_asked("r", &deny, text),
            permission_response("r", &deny)
        );
    }

    #[test]
    fn allow_passes_updated_permissions() {
        let rule = json!({"type":"addRules","rules":[{"toolName":"Bash","ruleContent":"npm test:*"}],"behavior":"allow","destination":"session"});
        let r = PermissionResult::Allow {
            updated_input: json!({}),
            updated_permissions: Some(vec![rule.clone()]),
            tool_use_id: None,
            decision_classification: Some(DecisionClassification::UserPermanent),
        };
        let inner = &parsed(permission_response("r", &r))["response"]["response"];
        assert_eq!(inner["updatedPermissions"], json!([rule]));
        assert_eq!(inner["decisionClassification"], "user_permanent");
    }

    #[test]
    fn deny_with_and_without_interrupt() {
        let r = PermissionResult::Deny {
            message: "not on a Friday".into(),
            interrupt: false,
            tool_use_id: None,
            decision_classification: None,
        };
        assert_eq!(
            parsed(permission_response("req_1", &r)),
            json!({"type":"control_response","response":{"subtype":"success","request_id":"req_1",
                "response":{"behavior":"deny","message":"not on a Friday"}}})
        );
        let r = PermissionResult::Deny {
            message: "stop".into(),
            interrupt: true,
            tool_use_id: Some("toolu_9".into()),
            decision_classification: Some(DecisionClassification::UserReject),
        };
        assert_eq!(
            parsed(permission_response("x", &r))["response"]["response"],
            json!({"behavior":"deny","message":"stop","interrupt":true,"toolUseID":"toolu_9",
                "decisionClassification":"user_reject"})
        );
    }

    #[test]
    fn error_and_interrupt_frames() {
        assert_eq!(
            parsed(error_response(
                "req_9",
                "Unsupported control request subtype: frobnicate"
            )),
            json!({"type":"control_response","response":{"subtype":"error","request_id":"req_9",
                "error":"Unsupported control request subtype: frobnicate"}})
        );
        assert_eq!(
            parsed(interrupt_request("u1", false)),
            json!({"type":"control_request","request_id":"u1","request":{"subtype":"interrupt"}})
        );
        assert_eq!(
            interrupt_request("u2", true),
            r#"{"type":"control_request","request_id":"u2","request":{"subtype":"interrupt","cancel_queued":true}}"#
        );
        assert_eq!(
            initialize_request("i1", &[]),
            r#"{"type":"control_request","request_id":"i1","request":{"subtype":"initialize"}}"#
        );
        assert_eq!(
            parsed(initialize_request(
                "i2",
                &["refusal_fallback_prompt".into()]
            )),
            json!({"type":"control_request","request_id":"i2","request":{"subtype":"initialize",
                "supportedDialogKinds":["refusal_fallback_prompt"]}})
        );
    }

    #[test]
    fn user_message_body() {
        assert_eq!(
            parsed(user_message_events("u", "s", &json!("run the tests"))),
            json!({"events":[{"uuid":"u","session_id":"s","type":"user","parent_tool_use_id":null,
                "message":{"role":"user","content":"run the tests"}}]})
        );
    }
}
