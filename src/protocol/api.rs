//! Operator API request and response bodies (JSON over HTTP).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::outbound::PermissionResult;

/// Default deny message when the operator gives none.
pub const DEFAULT_DENY_MESSAGE: &str = "Denied by operator";

/// Body of `POST /v1/sessions/{id}/permissions/{request_id}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "behavior", rename_all = "lowercase")]
pub enum DecisionBody {
    /// Allow, optionally with edited input and permission updates.
    Allow {
        /// Replacement tool input; the original `input` is sent when absent.
        #[serde(default)]
        updated_input: Option<Value>,
        /// Permission rule updates to pass through as `updatedPermissions`.
        #[serde(default)]
        updated_permissions: Option<Vec<Value>>,
    },
    /// Deny with a message for the model, optionally interrupting the turn.
    Deny {
        /// What the model reads as the tool result.
        #[serde(default)]
        message: Option<String>,
        /// Also stop the whole turn.
        #[serde(default)]
        interrupt: Option<bool>,
    },
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
}

impl DecisionBody {
    /// Validate and turn into the wire result, using `original_input` when not edited.
    pub fn into_result(
        self,
        original_input: &Value,
    ) -> Result<PermissionResult, DecisionBodyError> {
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
                Ok(PermissionResult::Allow {
                    updated_input,
                    updated_permissions,
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
                })
            }
        }
    }

    /// Check the body's shape without an original input at hand (API pre-validation).
    pub fn validate(&self) -> Result<(), DecisionBodyError> {
        self.clone().into_result(&Value::Null).map(|_| ())
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
            b.into_result(&json!({"command":"ls"})).unwrap(),
            PermissionResult::Allow {
                updated_input: json!({"command":"ls"}),
                updated_permissions: None
            }
        );
    }

    #[test]
    fn edited_input_and_bad_shapes() {
        let b = body(json!({"behavior":"allow","updated_input":{"command":"ls -la"}})).unwrap();
        assert!(matches!(
            b.into_result(&json!({})).unwrap(),
            PermissionResult::Allow { updated_input, .. } if updated_input == json!({"command":"ls -la"})
        ));
        let b = body(json!({"behavior":"allow","updated_input":"rm -rf /"})).unwrap();
        assert_eq!(b.validate(), Err(DecisionBodyError::InputNotObject));
        let b = body(json!({"behavior":"deny","message":"  "})).unwrap();
        assert_eq!(b.validate(), Err(DecisionBodyError::EmptyMessage));
        assert!(body(json!({"behavior":"maybe"})).is_err());
        assert!(body(json!({"message":"x"})).is_err());
    }

    #[test]
    fn deny_defaults() {
        let b = body(json!({"behavior":"deny"})).unwrap();
        assert_eq!(
            b.into_result(&json!({})).unwrap(),
            PermissionResult::Deny {
                message: DEFAULT_DENY_MESSAGE.into(),
                interrupt: false
            }
        );
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
