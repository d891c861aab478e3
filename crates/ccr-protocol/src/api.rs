//! Operator API request bodies (JSON over HTTP); the responses are in [`crate::reply`].

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
/// both spellings of one field is a `duplicate field` error. Clients (`ctl`) send it as it
/// serializes: snake_case, absent fields left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RawDecision {
    /// `allow` or `deny`.
    pub behavior: Behavior,
    /// Allow only: the edited tool input.
    #[serde(
        default,
        alias = "updatedInput",
        skip_serializing_if = "Option::is_none"
    )]
    pub updated_input: Option<Value>,
    /// Allow only: permission updates.
    #[serde(
        default,
        alias = "updatedPermissions",
        skip_serializing_if = "Option::is_none"
    )]
    pub updated_permissions: Option<Vec<Value>>,
    /// Deny only: what the model reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Deny only: also stop the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    /// Whether this allows the prompt's input as it came (an allow without
    /// `updated_input`); a deny keeps nothing.
    pub fn keeps_input(&self) -> bool {
        matches!(
            self,
            DecisionBody::Allow {
                updated_input: None,
                ..
            }
        )
    }

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

/// Most items one `POST /v1/decisions` may carry.
pub const MAX_BULK_DECISIONS: usize = 1000;

/// Body of `POST /v1/decisions`: several answers to permission prompts at once, each
/// answered on its own (1 to [`MAX_BULK_DECISIONS`] items).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BulkDecisions {
    /// The answers, in the order their results are listed.
    pub decisions: Vec<BulkItem>,
}

/// One item of [`BulkDecisions`]: which prompt, and the fields of the single answer
/// ([`RawDecision`]) beside them, parsed as strictly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BulkItem {
    /// Session id.
    pub session_id: String,
    /// Prompt (request) id.
    pub request_id: String,
    /// `allow` or `deny`.
    pub behavior: Behavior,
    /// Allow only: the edited tool input.
    #[serde(
        default,
        alias = "updatedInput",
        skip_serializing_if = "Option::is_none"
    )]
    pub updated_input: Option<Value>,
    /// Allow only: permission updates.
    #[serde(
        default,
        alias = "updatedPermissions",
        skip_serializing_if = "Option::is_none"
    )]
    pub updated_permissions: Option<Vec<Value>>,
    /// Deny only: what the model reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Deny only: also stop the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt: Option<bool>,
}

impl BulkItem {
    /// The item answering `request_id` of `session_id` with `decision`.
    pub fn new(session_id: &str, request_id: &str, decision: RawDecision) -> Self {
        Self {
            session_id: session_id.to_owned(),
            request_id: request_id.to_owned(),
            behavior: decision.behavior,
            updated_input: decision.updated_input,
            updated_permissions: decision.updated_permissions,
            message: decision.message,
            interrupt: decision.interrupt,
        }
    }

    /// The prompt's ids, and the answer as the single route takes it.
    pub fn split(self) -> (String, String, RawDecision) {
        let decision = RawDecision {
            behavior: self.behavior,
            updated_input: self.updated_input,
            updated_permissions: self.updated_permissions,
            message: self.message,
            interrupt: self.interrupt,
        };
        (self.session_id, self.request_id, decision)
    }
}

/// One checked item of a bulk answer: which prompt, and the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkAnswer {
    /// Session id.
    pub session_id: String,
    /// Prompt (request) id.
    pub request_id: String,
    /// The checked answer.
    pub body: DecisionBody,
}

/// Why a whole `POST /v1/decisions` body was refused (HTTP 400, nothing answered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulkError {
    /// `decisions` is empty.
    #[error("decisions must not be empty")]
    Empty,
    /// More than [`MAX_BULK_DECISIONS`] items.
    #[error("at most {max} decisions per request, got {0}", max = MAX_BULK_DECISIONS)]
    TooMany(usize),
    /// One item is not a valid answer, as the single route would refuse it.
    #[error("decisions[{index}]: {error}")]
    Item {
        /// Its position in `decisions`, from 0.
        index: usize,
        /// What is wrong with it.
        error: DecisionBodyError,
    },
}

impl BulkDecisions {
    /// Check the count and every item as the single route checks its body; the items in
    /// order, ready to answer.
    pub fn validate(self) -> Result<Vec<BulkAnswer>, BulkError> {
        match self.decisions.len() {
            0 => return Err(BulkError::Empty),
            n if n > MAX_BULK_DECISIONS => return Err(BulkError::TooMany(n)),
            _ => {}
        }
        self.decisions
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let fail = |error| BulkError::Item { index, error };
                let (session_id, request_id, decision) = item.split();
                let body = DecisionBody::try_from(decision).map_err(fail)?;
                body.validate().map_err(fail)?;
                Ok(BulkAnswer {
                    session_id,
                    request_id,
                    body,
                })
            })
            .collect()
    }
}

/// Body of `POST /v1/sessions/{id}/questions/{request_id}`: the answer to an `elicitation`
/// (the MCP `ElicitResult`) or to a `request_user_dialog` (the SDK's `UserDialogResult`),
/// sent to the session exactly in that shape.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "RawQuestionAnswer", into = "Value")]
pub enum QuestionAnswer {
    /// `{"action":"accept","content":{..}?}`: the user gave the requested input.
    Accept {
        /// The form's values, an object (absent for a URL elicitation).
        content: Option<Value>,
    },
    /// `{"action":"decline"}`: the user refused.
    Decline,
    /// `{"action":"cancel"}`: the user dismissed it without choosing.
    Cancel,
    /// `{"behavior":"completed","result":..}`: the dialog's result (shape per dialog kind).
    Completed {
        /// The result, as the dialog kind defines it.
        result: Value,
    },
    /// `{"behavior":"cancelled"}`: the dialog was dismissed (the CLI applies its default).
    Dismissed,
}

/// A question answer as sent, before its checks (unknown fields refused).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RawQuestionAnswer {
    /// Elicitation: `accept`, `decline` or `cancel`.
    #[serde(default)]
    pub action: Option<String>,
    /// Elicitation `accept`: the values.
    #[serde(default)]
    pub content: Option<Value>,
    /// Dialog: `completed` or `cancelled`.
    #[serde(default)]
    pub behavior: Option<String>,
    /// Dialog `completed`: the result.
    #[serde(default)]
    pub result: Option<Value>,
}

/// Why a question answer was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuestionAnswerError {
    /// Neither or both of `action` and `behavior`.
    #[error("give exactly one of `action` (an elicitation: accept, decline, cancel) or `behavior` (a dialog: completed, cancelled)")]
    Shape,
    /// An unknown value.
    #[error("unknown {field} {value:?}")]
    Unknown {
        /// `action` or `behavior`.
        field: &'static str,
        /// What was given.
        value: String,
    },
    /// A field that does not go with the answer.
    #[error("field `{0}` is not valid with this answer")]
    Misplaced(&'static str),
    /// `content` must be an object.
    #[error("content must be a JSON object")]
    ContentNotObject,
    /// `completed` needs a `result`.
    #[error("behavior \"completed\" needs a `result`")]
    MissingResult,
    /// The answer is for the other kind of question.
    #[error("this is {asked}: answer it with {expected}")]
    WrongKind {
        /// What was asked.
        asked: &'static str,
        /// The fields to use.
        expected: &'static str,
    },
}

impl TryFrom<RawQuestionAnswer> for QuestionAnswer {
    type Error = QuestionAnswerError;

    fn try_from(raw: RawQuestionAnswer) -> Result<Self, Self::Error> {
        use QuestionAnswerError::*;
        match (raw.action.as_deref(), raw.behavior.as_deref()) {
            (Some(action), None) => {
                if raw.result.is_some() {
                    return Err(Misplaced("result"));
                }
                if action != "accept" && raw.content.is_some() {
                    return Err(Misplaced("content"));
                }
                match action {
                    "accept" => match raw.content {
                        Some(c) if !c.is_object() => Err(ContentNotObject),
                        content => Ok(QuestionAnswer::Accept { content }),
                    },
                    "decline" => Ok(QuestionAnswer::Decline),
                    "cancel" => Ok(QuestionAnswer::Cancel),
                    other => Err(Unknown {
                        field: "action",
                        value: other.into(),
                    }),
                }
            }
            (None, Some(behavior)) => {
                if raw.content.is_some() {
                    return Err(Misplaced("content"));
                }
                match behavior {
                    "completed" => Ok(QuestionAnswer::Completed {
                        result: raw.result.ok_or(MissingResult)?,
                    }),
                    "cancelled" if raw.result.is_some() => Err(Misplaced("result")),
                    "cancelled" => Ok(QuestionAnswer::Dismissed),
                    other => Err(Unknown {
                        field: "behavior",
                        value: other.into(),
                    }),
                }
            }
            _ => Err(Shape),
        }
    }
}

impl From<QuestionAnswer> for Value {
    fn from(a: QuestionAnswer) -> Value {
        match a {
            QuestionAnswer::Accept { content: None } => serde_json::json!({"action": "accept"}),
            QuestionAnswer::Accept { content: Some(c) } => {
                serde_json::json!({"action": "accept", "content": c})
            }
            QuestionAnswer::Decline => serde_json::json!({"action": "decline"}),
            QuestionAnswer::Cancel => serde_json::json!({"action": "cancel"}),
            QuestionAnswer::Completed { result } => {
                serde_json::json!({"behavior": "completed", "result": result})
            }
            QuestionAnswer::Dismissed => serde_json::json!({"behavior": "cancelled"}),
        }
    }
}

impl QuestionAnswer {
    /// The word events and logs use (`accept`, `decline`, `cancel`, `completed`, `cancelled`).
    pub fn behavior(&self) -> &'static str {
        match self {
            QuestionAnswer::Accept { .. } => "accept",
            QuestionAnswer::Decline => "decline",
            QuestionAnswer::Cancel => "cancel",
            QuestionAnswer::Completed { .. } => "completed",
            QuestionAnswer::Dismissed => "cancelled",
        }
    }

    /// True for an answer that grants what was asked (recorded as `allowed`).
    pub fn grants(&self) -> bool {
        matches!(
            self,
            QuestionAnswer::Accept { .. } | QuestionAnswer::Completed { .. }
        )
    }

    /// Check the answer fits what was asked (an elicitation or a dialog).
    pub fn fits(&self, kind: super::frame::PromptKind) -> Result<(), QuestionAnswerError> {
        use super::frame::PromptKind;
        let elicitation = matches!(
            self,
            QuestionAnswer::Accept { .. } | QuestionAnswer::Decline | QuestionAnswer::Cancel
        );
        match (kind, elicitation) {
            (PromptKind::Elicitation, true) | (PromptKind::RequestUserDialog, false) => Ok(()),
            (PromptKind::Elicitation, false) => Err(QuestionAnswerError::WrongKind {
                asked: "an elicitation",
                expected: "`action`: accept, decline or cancel",
            }),
            (PromptKind::RequestUserDialog, true) => Err(QuestionAnswerError::WrongKind {
                asked: "a dialog",
                expected: "`behavior`: completed or cancelled",
            }),
            (PromptKind::CanUseTool, _) => Err(QuestionAnswerError::WrongKind {
                asked: "a permission prompt",
                expected: "POST /v1/sessions/{id}/permissions/{request_id}",
            }),
        }
    }
}

/// An answer to anything a session asks: a permission decision or a question's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerBody {
    /// For a `can_use_tool` prompt.
    Permission(DecisionBody),
    /// For an `elicitation` or a `request_user_dialog`.
    Question(QuestionAnswer),
}

/// Body of `POST /v1/sessions` as documented: the service reads it with the config's own
/// parser (the fields of `[[sessions]]` that the API accepts), and refuses `token_command`
/// and a literal `token`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddSessionBody {
    /// The CCR session id.
    pub id: String,
    /// Labels for policy selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Watch only: never interrupted or sent messages (its prompts are still answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer_only: Option<bool>,
    /// The environment variable holding its token (when `[api] runtime_token_sources` allows `env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// The file holding its token, inside `[api] runtime_token_dirs` (when sources allow `file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Its CCR API base, instead of `[ccr] base_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Its organization, instead of `[ccr] organization_uuid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_uuid: Option<String>,
}

/// Body of `POST /v1/sessions/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// Query of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only this session's events.
    pub session_id: Option<String>,
    /// Resume after this event sequence number.
    pub after: Option<u64>,
    /// Only events of these types, comma-separated (`permission_requested,permission_answered`);
    /// all types when absent. The console's live lists use it to skip SDK message traffic.
    pub types: Option<String>,
}

/// Query of `GET /v1/sessions/{id}/messages` (the transcript).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Events after this sequence number.
    pub after: Option<u64>,
    /// At most this many, 1..=1000 (default 100).
    pub limit: Option<usize>,
}

/// Query of `GET /v1/permissions` and `GET /v1/questions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct PendingQuery {
    /// Only this session's prompts.
    pub session_id: Option<String>,
}

/// Body of `POST /v1/sessions/{id}/interrupt`: optional (empty = all defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InterruptBody {
    /// Also cancel the user messages still queued.
    #[serde(default)]
    pub cancel_queued: bool,
}

/// Body of `POST /v1/admin/reload`: optional, empty or `{}` (no field is defined yet;
/// unknown ones are refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReloadBody {}

/// The raw query string of `GET /v1/audit`, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct LedgerParams {
    /// `session_id=`
    pub session_id: Option<String>,
    /// `tool=`
    pub tool: Option<String>,
    /// `outcome=allowed|denied|cancelled|expired|pending`
    pub outcome: Option<String>,
    /// `decided_by=`
    pub decided_by: Option<String>,
    /// `since=` RFC 3339, inclusive.
    pub since: Option<String>,
    /// `until=` RFC 3339, exclusive.
    pub until: Option<String>,
    /// `limit=` 1..=1000.
    pub limit: Option<String>,
    /// `cursor=` from a previous page.
    pub cursor: Option<String>,
}

/// How a decision reached the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Written to the live socket now.
    Sent,
    /// Session is not connected; delivered right after it reconnects.
    Queued,
}

#[cfg(test)]
mod tests;
