//! Operator API request and response bodies (JSON over HTTP).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::outbound::{DecisionClassification, PermissionResult};

/// Default deny message when the operator gives none.
pub const DEFAULT_DENY_MESSAGE: &str = "Denied by operator";

/// Body of `POST /v1/sessions/{id}/permissions/{request_id}`.
///
/// Parsed strictly (see [`RawDecision`]): an unknown field is an error naming it, so a
/// misspelled `updatedInput` can never fall back to running the original input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawDecision")]
pub enum DecisionBody {
    /// Allow, optionally with edited input and permission updates.
    Allow {
        /// Replacement tool input; the original `input` is sent when absent.
        updated_input: Option<Value>,
        /// Permission rule updates to pass through as `updatedPermissions`.
        updated_permissions: Option<Vec<Value>>,
    },
    /// Deny with a message for the model, optionally interrupting the turn.
    Deny {
        /// What the model reads as the tool result.
        message: Option<String>,
        /// Also stop the whole turn.
        interrupt: Option<bool>,
    },
}

/// Whether to allow or deny, the one required field of a decision body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// Run the tool.
    Allow,
    /// Refuse it.
    Deny,
}

/// The decision body as sent, before the per-behavior checks of [`DecisionBody`].
///
/// Unknown fields are refused (`deny_unknown_fields`, so the error names the field), and
/// the protocol's own camelCase spellings are accepted beside the snake_case ones; sending
/// both spellings of one field is a `duplicate field` error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecision {
    /// `allow` or `deny`.
    pub behavior: Behavior,
    /// Allow only: the edited tool input.
    #[serde(default, alias = "updatedInput")]
    pub updated_input: Option<Value>,
    /// Allow only: permission updates.
    #[serde(default, alias = "updatedPermissions")]
    pub updated_permissions: Option<Vec<Value>>,
    /// Deny only: what the model reads.
    #[serde(default)]
    pub message: Option<String>,
    /// Deny only: also stop the turn.
    #[serde(default)]
    pub interrupt: Option<bool>,
}

impl TryFrom<RawDecision> for DecisionBody {
    type Error = DecisionBodyError;

    fn try_from(raw: RawDecision) -> Result<Self, Self::Error> {
        let misplaced = |field: &'static str, behavior: &'static str| {
            Err(DecisionBodyError::Misplaced { field, behavior })
        };
        match raw.behavior {
            Behavior::Allow => {
                if raw.message.is_some() {
                    return misplaced("message", "allow");
                }
                if raw.interrupt.is_some() {
                    return misplaced("interrupt", "allow");
                }
                Ok(DecisionBody::Allow {
                    updated_input: raw.updated_input,
                    updated_permissions: raw.updated_permissions,
                })
            }
            Behavior::Deny => {
                if raw.updated_input.is_some() {
                    return misplaced("updated_input", "deny");
                }
                if raw.updated_permissions.is_some() {
                    return misplaced("updated_permissions", "deny");
                }
                Ok(DecisionBody::Deny {
                    message: raw.message,
                    interrupt: raw.interrupt,
                })
            }
        }
    }
}

/// Why a decision body was rejected (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionBodyError {
    /// `updated_input` must be a JSON object, like every tool input.
    #[error("updated_input must be a JSON object")]
    InputNotObject,
    /// `updated_permissions` entries must be objects.
    #[error("updated_permissions must be an array of objects")]
    PermissionsNotObjects,
    /// An empty deny message would reach the model as an empty tool result.
    #[error("message must not be empty")]
    EmptyMessage,
    /// A field of the other behavior (`message` on an allow, `updated_input` on a deny).
    #[error("field `{field}` is not valid with behavior \"{behavior}\"")]
    Misplaced {
        /// The field.
        field: &'static str,
        /// The behavior it does not belong to.
        behavior: &'static str,
    },
}

/// Who made a decision, which sets its `decisionClassification` (PROTOCOL §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decider {
    /// A person, through the API: classified `user_temporary`, `user_permanent` or `user_reject`.
    Operator,
    /// A policy rule, a deadline or a limit: no classification is sent.
    Automatic,
}

impl DecisionBody {
    /// Validate and turn into the wire result for the prompt with `original_input` and
    /// `tool_use_id`, using the original input when not edited.
    pub fn into_result(
        self,
        original_input: &Value,
        tool_use_id: Option<&str>,
        decider: Decider,
    ) -> Result<PermissionResult, DecisionBodyError> {
        let tool_use_id = tool_use_id.map(str::to_owned);
        let operator = decider == Decider::Operator;
        match self {
            DecisionBody::Allow {
                updated_input,
                updated_permissions,
            } => {
                let updated_input = match updated_input {
                    None => original_input.clone(),
                    Some(v @ Value::Object(_)) => v,
                    Some(_) => return Err(DecisionBodyError::InputNotObject),
                };
                if let Some(perms) = &updated_permissions {
                    if !perms.iter().all(Value::is_object) {
                        return Err(DecisionBodyError::PermissionsNotObjects);
                    }
                }
                let permanent = updated_permissions.as_ref().is_some_and(|p| !p.is_empty());
                let decision_classification = operator.then_some(if permanent {
                    DecisionClassification::UserPermanent
                } else {
                    DecisionClassification::UserTemporary
                });
                Ok(PermissionResult::Allow {
                    updated_input,
                    updated_permissions,
                    tool_use_id,
                    decision_classification,
                })
            }
            DecisionBody::Deny { message, interrupt } => {
                let message = message.unwrap_or_else(|| DEFAULT_DENY_MESSAGE.to_owned());
                if message.trim().is_empty() {
                    return Err(DecisionBodyError::EmptyMessage);
                }
                Ok(PermissionResult::Deny {
                    message,
                    interrupt: interrupt.unwrap_or(false),
                    tool_use_id,
                    decision_classification: operator.then_some(DecisionClassification::UserReject),
                })
            }
        }
    }

    /// Check the body's shape without an original input at hand (API pre-validation).
    pub fn validate(&self) -> Result<(), DecisionBodyError> {
        self.clone()
            .into_result(&Value::Null, None, Decider::Operator)
            .map(|_| ())
    }
}

/// Body of `POST /v1/sessions/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessageBody {
    /// A string, or an array of content blocks.
    pub content: Value,
}

/// Why a message body was rejected (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendMessageError {
    /// Neither a non-empty string nor a non-empty array of content-block objects.
    #[error("content must be a non-empty string or a non-empty array of content blocks")]
    BadContent,
}

impl SendMessageBody {
    /// Check `content` is text or content blocks.
    pub fn validate(&self) -> Result<(), SendMessageError> {
        match &self.content {
            Value::String(s) if !s.is_empty() => Ok(()),
            Value::Array(blocks)
                if !blocks.is_empty()
                    && blocks
                        .iter()
                        .all(|b| b.get("type").and_then(Value::as_str).is_some()) =>
            {
                Ok(())
            }
            _ => Err(SendMessageError::BadContent),
        }
    }
}

/// How a decision reached the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Written to the live socket now.
    Sent,
    /// Session is not connected; delivered right after it reconnects.
    Queued,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Result<DecisionBody, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn allow_defaults_to_original_input() {
        let b = body(json!({"behavior":"allow"})).unwrap();
        assert_eq!(
            b.into_result(&json!({"command":"ls"}), Some("toolu_1"), Decider::Operator)
                .unwrap(),
            PermissionResult::Allow {
                updated_input: json!({"command":"ls"}),
                updated_permissions: None,
                tool_use_id: Some("toolu_1".into()),
                decision_classification: Some(DecisionClassification::UserTemporary),
            }
        );
    }

    #[test]
    fn camel_case_names_are_aliases_and_both_at_once_is_an_error() {
        for key in ["updatedInput", "updated_input"] {
            let b = body(json!({"behavior":"allow", key: {"command":"echo safe"}})).unwrap();
            assert_eq!(
                b,
                DecisionBody::Allow {
                    updated_input: Some(json!({"command":"echo safe"})),
                    updated_permissions: None
                },
                "{key}"
            );
        }
        let rule = json!({"type":"addRules","rules":[],"behavior":"allow","destination":"session"});
        let b = body(json!({"behavior":"allow","updatedPermissions":[rule.clone()]})).unwrap();
        assert_eq!(
            b.into_result(&json!({}), None, Decider::Operator).unwrap(),
            PermissionResult::Allow {
                updated_input: json!({}),
                updated_permissions: Some(vec![rule]),
                tool_use_id: None,
                decision_classification: Some(DecisionClassification::UserPermanent),
            }
        );
        let both = body(json!({"behavior":"allow","updatedInput":{},"updated_input":{}}))
            .unwrap_err()
            .to_string();
        assert!(both.contains("duplicate field `updated_input`"), "{both}");
    }

    #[test]
    fn unknown_and_misplaced_fields_are_named() {
        let e = body(json!({"behavior":"deny","mesage":"x"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `mesage`"), "{e}");
        let e = body(json!({"behavior":"allow","updatedinput":{}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `updatedinput`"), "{e}");
        let e = body(json!({"behavior":"allow","message":"x"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`message`") && e.contains("allow"), "{e}");
        let e = body(json!({"behavior":"deny","updatedInput":{}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`updated_input`") && e.contains("deny"), "{e}");
    }

    #[test]
    fn edited_input_and_bad_shapes() {
        let b = body(json!({"behavior":"allow","updated_input":{"command":"ls -la"}})).unwrap();
        assert!(matches!(
            b.into_result(&json!({}), None, Decider::Automatic).unwrap(),
            PermissionResult::Allow { updated_input, decision_classification: None, .. }
                if updated_input == json!({"command":"ls -la"})
        ));
        let b = body(json!({"behavior":"allow","updated_input":"rm -rf /"})).unwrap();
        assert_eq!(b.validate(), Err(DecisionBodyError::InputNotObject));
        let b = body(json!({"behavior":"deny","message":"  "})).unwrap();
        assert_eq!(b.validate(), Err(DecisionBodyError::EmptyMessage));
        assert!(body(json!({"behavior":"maybe"})).is_err());
        assert!(body(json!({"message":"x"})).is_err());
    }

    #[test]
    fn deny_defaults_and_classification() {
        let b = body(json!({"behavior":"deny"})).unwrap();
        assert_eq!(
            b.clone()
                .into_result(&json!({}), None, Decider::Automatic)
                .unwrap(),
            PermissionResult::Deny {
                message: DEFAULT_DENY_MESSAGE.into(),
                interrupt: false,
                tool_use_id: None,
                decision_classification: None,
            }
        );
        assert!(matches!(
            b.into_result(&json!({}), Some("t"), Decider::Operator).unwrap(),
            PermissionResult::Deny {
                decision_classification: Some(DecisionClassification::UserReject),
                tool_use_id: Some(t),
                ..
            } if t == "t"
        ));
    }

    #[test]
    fn message_content_validation() {
        let ok: SendMessageBody = serde_json::from_value(json!({"content":"hi"})).unwrap();
        assert!(ok.validate().is_ok());
        let ok: SendMessageBody =
            serde_json::from_value(json!({"content":[{"type":"text","text":"hi"}]})).unwrap();
        assert!(ok.validate().is_ok());
        for bad in [json!(""), json!([]), json!(5), json!([{"text":"x"}])] {
            let b: SendMessageBody = serde_json::from_value(json!({ "content": bad })).unwrap();
            assert!(b.validate().is_err());
        }
    }
}
