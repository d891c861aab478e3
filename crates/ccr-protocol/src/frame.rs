//! Inbound frame classification: the four buckets of PROTOCOL §2 plus keep-alive.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// One inbound text frame, routed to its bucket.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// `control_request` / `can_use_tool`: a permission prompt.
    PermissionPrompt(PermissionPrompt),
    /// A `control_request` we do not handle; must be answered with `error` at once.
    UnsupportedRequest {
        /// Id to echo in the error response.
        request_id: String,
        /// The exact error text to send back.
        error: String,
    },
    /// `control_cancel_request`: the session withdrew one of its prompts.
    Cancel {
        /// Id of the withdrawn request.
        request_id: String,
    },
    /// `control_response`: an answer to a request this client sent.
    ControlResponse(ControlResponse),
    /// `keep_alive`: ignored.
    KeepAlive,
    /// Everything else: the ordinary session stream, forwarded unchanged.
    Sdk(SdkMessage),
}

/// A `can_use_tool` permission prompt, with the raw request kept verbatim.
#[derive(Debug, Clone)]
pub struct PermissionPrompt {
    /// The session's id for this prompt (echoed in the answer).
    pub request_id: String,
    /// Tool the agent wants to run (`Bash`, `Edit`, `mcp__x__y`, ...).
    pub tool_name: String,
    /// The tool-use block id, reported with cancellations.
    pub tool_use_id: Option<String>,
    /// Tool input; sent back as `updatedInput` when the operator does not edit it.
    pub input: Value,
    /// The whole `request` object as received, unknown fields included.
    pub request: Value,
    /// `request`'s JSON text exactly as the frame carried it (and its `input`'s text),
    /// when the prompt was read from a frame: the event, the ledger row and the answer
    /// copy it instead of serializing the values again. `None` for a prompt built here;
    /// then they serialize `request` and `input`.
    pub raw: Option<RawRequest>,
}

/// Equal when the parsed fields are: [`PermissionPrompt::raw`] is a copy of what they
/// hold, in the sender's own spelling.
impl PartialEq for PermissionPrompt {
    fn eq(&self, other: &Self) -> bool {
        self.request_id == other.request_id
            && self.tool_name == other.tool_name
            && self.tool_use_id == other.tool_use_id
            && self.input == other.input
            && self.request == other.request
    }
}

/// A prompt's `request` object as JSON text, exactly as received, and the part of it that
/// is the prompt's `input`. Shared (cloning is a reference count).
#[derive(Clone)]
pub struct RawRequest {
    text: Arc<RawValue>,
    /// A copy of `input`'s text in `text`: a raw value of its own, so an answer writes it
    /// out without checking it as JSON again (costs as much as serializing it).
    input: Option<Arc<RawValue>>,
}

impl RawRequest {
    /// The `request` object's JSON text.
    pub fn request(&self) -> &Arc<RawValue> {
        &self.text
    }

    /// The JSON text of the prompt's `input`, when the request carried one.
    pub fn input(&self) -> Option<&str> {
        self.input_json().map(RawValue::get)
    }

    /// [`RawRequest::input`] as a raw JSON value, to be written out as it came (an answer
    /// that allows the input unedited).
    pub fn input_json(&self) -> Option<&RawValue> {
        self.input.as_deref()
    }

    /// `request` and its `input` (read from it) as text.
    fn new(request: &RawValue, input: Option<&RawValue>) -> Self {
        RawRequest {
            text: Arc::from(request.to_owned()),
            input: input.map(|input| Arc::from(input.to_owned())),
        }
    }
}

impl std::fmt::Debug for RawRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRequest")
            .field("bytes", &self.text.get().len())
            .field("input_bytes", &self.input().map(str::len))
            .finish()
    }
}

/// What a stored request asks: a permission prompt, or a question that is not one
/// (PROTOCOL §6), read from the request's `subtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PromptKind {
    /// `can_use_tool`: may the agent run this tool?
    CanUseTool,
    /// `elicitation`: an MCP server asks the user for input (answered `accept` / `decline` / `cancel`).
    Elicitation,
    /// `request_user_dialog`: a dialog of `dialog_kind` (answered `completed` / `cancelled`,
    /// and only when this supervisor declared the kind).
    RequestUserDialog,
}

impl PromptKind {
    /// The `subtype` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptKind::CanUseTool => "can_use_tool",
            PromptKind::Elicitation => "elicitation",
            PromptKind::RequestUserDialog => "request_user_dialog",
        }
    }
}

impl PermissionPrompt {
    /// What this request asks (from the stored request's `subtype`).
    pub fn kind(&self) -> PromptKind {
        match self.request.get("subtype").and_then(Value::as_str) {
            Some("elicitation") => PromptKind::Elicitation,
            Some("request_user_dialog") => PromptKind::RequestUserDialog,
            _ => PromptKind::CanUseTool,
        }
    }

    /// A dialog's `dialog_kind` (the `tool_name` it is listed under).
    pub fn dialog_kind(&self) -> Option<&str> {
        (self.kind() == PromptKind::RequestUserDialog).then_some(self.tool_name.as_str())
    }

    /// True when the prompt says a person must answer (`requires_user_interaction`).
    pub fn requires_user_interaction(&self) -> bool {
        self.request
            .get("requires_user_interaction")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The user's own ask rule that forced this prompt (`matched_ask_rule`), if any.
    pub fn matched_ask_rule(&self) -> Option<MatchedAskRule<'_>> {
        self.request
            .get("matched_ask_rule")
            .and_then(MatchedAskRule::from_field)
    }
}

/// `matched_ask_rule {source, tool_name, rule_content?}` of a `can_use_tool` request
/// (PROTOCOL §6): a user-configured ask rule forced the prompt, so a person must answer.
///
/// The parts are as the session sent them (render-unsafe text) and may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchedAskRule<'a> {
    /// Where the rule is configured (`userSettings`, `localSettings`, ...).
    pub source: Option<&'a str>,
    /// The tool the rule names (an MCP tool may be named differently from `tool_name`).
    pub tool_name: Option<&'a str>,
    /// The rule's argument (`npm test:*`), when it has one.
    pub rule_content: Option<&'a str>,
}

impl<'a> MatchedAskRule<'a> {
    /// Read the field's value: `None` only when it is `null` or `false`. Any other shape
    /// still counts as a matched rule (with its parts missing): a garbled flag must not
    /// turn a person's prompt into an automatic one.
    pub fn from_field(value: &'a Value) -> Option<Self> {
        if value.is_null() || value.as_bool() == Some(false) {
            return None;
        }
        let part = |key: &str| value.get(key).and_then(Value::as_str);
        Some(Self {
            source: part("source"),
            tool_name: part("tool_name"),
            rule_content: part("rule_content"),
        })
    }
}

/// An answer to a control request this client sent (e.g. an interrupt).
#[derive(Debug, Clone, PartialEq)]
pub struct ControlResponse {
    /// Id of the request being answered.
    pub request_id: String,
    /// `Ok(response body)` for `success` (`Null` when it has none, as older CLIs answer an
    /// interrupt), `Err(message)` for `error`.
    pub outcome: Result<Value, String>,
    /// What an `initialize` reply lists as still waited on (PROTOCOL §6); each list is
    /// `None` when absent — an older CLI, not "nothing pending".
    pub pending: PendingLists,
}

/// The `pending_*_requests` lists of a control response, each entry a whole
/// `control_request` frame as the session sent it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PendingLists {
    /// `can_use_tool` prompts the CLI still waits on.
    #[serde(default, rename = "pending_permission_requests")]
    pub permission: Option<Vec<Value>>,
    /// `request_user_dialog` requests not yet resolved.
    #[serde(default, rename = "pending_user_dialog_requests")]
    pub user_dialog: Option<Vec<Value>>,
    /// `elicitation` requests not yet answered or withdrawn.
    #[serde(default, rename = "pending_elicitation_requests")]
    pub elicitation: Option<Vec<Value>>,
}

impl PendingLists {
    /// True when the reply carried no list at all (an older CLI).
    pub fn is_absent(&self) -> bool {
        self.permission.is_none() && self.user_dialog.is_none() && self.elicitation.is_none()
    }

    /// Every listed request, prompts first.
    pub fn all(self) -> impl Iterator<Item = Value> {
        [self.permission, self.elicitation, self.user_dialog]
            .into_iter()
            .flatten()
            .flatten()
    }
}

/// An SDK stream message, kept as the exact text received.
#[derive(Debug, Clone, PartialEq)]
pub struct SdkMessage {
    /// Its `type` (`assistant`, `system`, `result`, or anything newer); the
    /// common ones are not allocated per frame.
    pub msg_type: Cow<'static, str>,
    /// The frame exactly as received, for forwarding unchanged.
    pub raw: Arc<str>,
}

/// What to do with a `control_request` that cannot be parsed (too large, too deep or
/// malformed), from what [`HeadScanner`](super::scan::HeadScanner) found in it: a prompt
/// nobody answers is a session that hangs.
#[derive(Debug, Clone, PartialEq)]
pub enum Unreadable {
    /// Not a `control_request` with a string `request_id`: nothing can be answered.
    Skip,
    /// A `can_use_tool` prompt (or one whose subtype could not be found): denied with
    /// `message`. The prompt keeps what was found; `request` says why it was refused.
    Prompt {
        /// The prompt as far as it could be read (`input` is `{}`).
        prompt: PermissionPrompt,
        /// The deny message (what the model reads).
        message: String,
    },
    /// Another subtype: answered at once with this error.
    Error {
        /// Id to echo.
        request_id: String,
        /// The error text.
        error: String,
    },
    /// A `request_user_dialog`: a host must never answer a dialog it cannot render (PROTOCOL §6).
    Unanswered {
        /// Its id.
        request_id: String,
    },
}

/// Decide what to answer for an unreadable frame whose head is `head`; `why` says in a few
/// words what was wrong (it becomes part of the deny message and of the stored `request`).
pub fn unreadable(head: &super::scan::ScannedHead, why: &str) -> Unreadable {
    let (Some("control_request"), Some(request_id)) =
        (head.msg_type.as_deref(), head.request_id.clone())
    else {
        return Unreadable::Skip;
    };
    match head.subtype.as_deref() {
        None | Some("can_use_tool") => {
            let tool_name = head.tool_name.clone().unwrap_or_else(|| "unknown".into());
            let message = format!(
                "The permission request for {tool_name} was not shown to anyone: {why}. \
                 It is denied; retry with a smaller or simpler input."
            );
            let request = serde_json::json!({
                "subtype": head.subtype.as_deref().unwrap_or("can_use_tool"),
                "tool_name": tool_name,
                "tool_use_id": head.tool_use_id,
                "unreadable": {"reason": why, "bytes": head.bytes},
            });
            Unreadable::Prompt {
                prompt: PermissionPrompt {
                    raw: None,
                    request_id,
                    tool_name,
                    tool_use_id: head.tool_use_id.clone(),
                    input: Value::Object(Default::default()),
                    request,
                },
                message,
            }
        }
        Some("request_user_dialog") => Unreadable::Unanswered { request_id },
        Some("elicitation") => Unreadable::Prompt {
            prompt: PermissionPrompt {
                raw: None,
                request_id,
                tool_name: "mcp".into(),
                tool_use_id: None,
                input: Value::Object(Default::default()),
                request: serde_json::json!({
                    "subtype": "elicitation",
                    "unreadable": {"reason": why, "bytes": head.bytes},
                }),
            },
            message: format!("declined: {why}"),
        },
        Some(subtype) => Unreadable::Error {
            request_id,
            error: format!("Unreadable control request ({subtype}): {why}"),
        },
    }
}

/// Why a frame was skipped. Frames with these errors are logged, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The text is not JSON at all.
    #[error("frame is not valid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON, but not an object with a string `type`.
    #[error("frame has no string `type` field")]
    MissingType,
    /// A control frame whose shape is wrong and that cannot be answered.
    #[error("malformed {kind} frame: {detail}")]
    Malformed {
        /// Which frame type.
        kind: &'static str,
        /// What was wrong.
        detail: String,
    },
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    /// A `control_request`'s parts, as text: read in the same pass as `type` (absent from
    /// SDK messages, so they cost those nothing).
    #[serde(borrow, default)]
    request_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    request: Option<&'a RawValue>,
}

/// The `input` of a `can_use_tool` request, as text (everything else skipped).
#[derive(Deserialize)]
struct RequestInput<'a> {
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CancelFrame {
    request_id: Option<Value>,
}

#[derive(Deserialize)]
struct ControlResponseFrame {
    response: Option<ControlResponseBody>,
}

#[derive(Deserialize)]
struct ControlResponseBody {
    subtype: Option<String>,
    request_id: Option<Value>,
    response: Option<Value>,
    error: Option<Value>,
    #[serde(flatten)]
    pending: PendingLists,
}

/// Classify one inbound text frame into its bucket.
///
/// The common case (an SDK message) costs a single parse that only
/// materialises the `type` string. A `control_request`'s parts are kept as text by the
/// same pass, and only its `request` is parsed again; other control frames are parsed a
/// second time into their typed shape.
pub fn classify(text: &str) -> Result<Inbound, FrameError> {
    let head: Head<'_> = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => FrameError::MissingType,
        _ => FrameError::InvalidJson(e.to_string()),
    })?;
    match head.kind.as_ref() {
        "control_request" => classify_control_request(head),
        "control_cancel_request" => {
            let frame: CancelFrame = parse(text, "control_cancel_request")?;
            let request_id = string_id(frame.request_id, "control_cancel_request")?;
            Ok(Inbound::Cancel { request_id })
        }
        "control_response" => classify_control_response(text),
        "keep_alive" => Ok(Inbound::KeepAlive),
        other => Ok(Inbound::Sdk(SdkMessage {
            msg_type: known_type(other),
            raw: Arc::from(text),
        })),
    }
}

/// `kind` as a static string when it is one of the SDK's usual message types.
fn known_type(kind: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 5] = ["assistant", "stream_event", "user", "result", "system"];
    match KNOWN.iter().find(|k| **k == kind) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(kind.to_owned()),
    }
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str, kind: &'static str) -> Result<T, FrameError> {
    serde_json::from_str(text).map_err(|e| FrameError::Malformed {
        kind,
        detail: e.to_string(),
    })
}

fn string_id(id: Option<Value>, kind: &'static str) -> Result<String, FrameError> {
    match id {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(FrameError::Malformed {
            kind,
            detail: "missing or non-string request_id".into(),
        }),
    }
}

fn classify_control_request(head: Head<'_>) -> Result<Inbound, FrameError> {
    const KIND: &str = "control_request";
    let request_id = head
        .request_id
        .and_then(|id| serde_json::from_str(id.get()).ok());
    let request_id = string_id(request_id, KIND)?;
    let parsed = head
        .request
        .map(|raw| (raw, serde_json::from_str::<Value>(raw.get())));
    let (raw, request) = match parsed {
        Some((raw, Ok(Value::Object(map)))) => (raw, Value::Object(map)),
        Some((_, Err(e))) => {
            return Err(FrameError::Malformed {
                kind: KIND,
                detail: e.to_string(),
            })
        }
        _ => {
            return Ok(Inbound::UnsupportedRequest {
                request_id,
                error: "Invalid control request: missing request object".into(),
            })
        }
    };
    let subtype = request.get("subtype").and_then(Value::as_str).unwrap_or("");
    match subtype {
        "can_use_tool" => {}
        // Questions that are not permission prompts are stored and answered like them
        // (PROTOCOL §6): never with an error, which the session would discard.
        "elicitation" | "request_user_dialog" => {
            let raw = RawRequest::new(raw, None);
            return Ok(question(request_id, request, raw));
        }
        _ => {
            return Ok(Inbound::UnsupportedRequest {
                request_id,
                error: format!("Unsupported control request subtype: {subtype}"),
            })
        }
    }
    let Some(tool_name) = request.get("tool_name").and_then(Value::as_str) else {
        return Ok(Inbound::UnsupportedRequest {
            request_id,
            error: "Invalid can_use_tool request: missing tool_name".into(),
        });
    };
    let tool_name = tool_name.to_owned();
    let tool_use_id = request
        .get("tool_use_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let input = request
        .get("input")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    // The request parsed above, so this scan of it cannot fail; without it the ledger
    // and the answer serialize `input` instead.
    let raw_input = serde_json::from_str::<RequestInput<'_>>(raw.get())
        .ok()
        .and_then(|r| r.input);
    Ok(Inbound::PermissionPrompt(PermissionPrompt {
        request_id,
        tool_name,
        tool_use_id,
        input,
        request,
        raw: Some(RawRequest::new(raw, raw_input)),
    }))
}

/// An `elicitation` or `request_user_dialog` as a stored prompt: listed under the MCP
/// server's name or the dialog kind, with the dialog's `payload` as its input.
fn question(request_id: String, request: Value, raw: RawRequest) -> Inbound {
    let text = |key: &str| request.get(key).and_then(Value::as_str).map(str::to_owned);
    let dialog = request.get("subtype").and_then(Value::as_str) == Some("request_user_dialog");
    let (tool_name, input) = if dialog {
        let payload = request
            .get("payload")
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        (
            text("dialog_kind").unwrap_or_else(|| "unknown".into()),
            payload,
        )
    } else {
        let name = text("mcp_server_name").unwrap_or_else(|| "mcp".into());
        (name, Value::Object(Default::default()))
    };
    Inbound::PermissionPrompt(PermissionPrompt {
        request_id,
        tool_name,
        tool_use_id: text("tool_use_id"),
        input,
        request,
        raw: Some(raw),
    })
}

fn classify_control_response(text: &str) -> Result<Inbound, FrameError> {
    const KIND: &str = "control_response";
    let frame: ControlResponseFrame = parse(text, KIND)?;
    let body = frame.response.ok_or_else(|| FrameError::Malformed {
        kind: KIND,
        detail: "missing response object".into(),
    })?;
    let request_id = string_id(body.request_id, KIND)?;
    let outcome = match body.subtype.as_deref() {
        Some("success") => Ok(body.response.unwrap_or(Value::Null)),
        Some("error") => Err(match body.error {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => "error without message".into(),
        }),
        other => {
            return Err(FrameError::Malformed {
                kind: KIND,
                detail: format!("unknown response subtype {other:?}"),
            })
        }
    };
    Ok(Inbound::ControlResponse(ControlResponse {
        request_id,
        outcome,
        pending: body.pending,
    }))
}

#[cfg(test)]
mod tests;
