//! The events the supervisor publishes to operators (live stream, history, transcripts).

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::api::Delivery;
use crate::session::SessionState;

/// One notable thing that happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A session changed state.
    SessionState {
        /// Session id.
        session_id: Arc<str>,
        /// New state.
        #[serde(flatten)]
        state: SessionState,
        /// Last error, if any.
        last_error: Option<String>,
    },
    /// An SDK message arrived (raw JSON text, forwarded unchanged).
    SdkMessage {
        /// Session id.
        session_id: Arc<str>,
        /// Its `type`.
        msg_type: std::borrow::Cow<'static, str>,
        /// The frame as received.
        #[serde(serialize_with = "raw_json")]
        message: Arc<str>,
    },
    /// A new permission prompt is pending.
    PermissionRequested {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
        /// Tool name.
        tool_name: String,
        /// Tool-use id.
        tool_use_id: Option<String>,
        /// The raw request object, as JSON text: the history keeps this event long after the
        /// prompt is answered, and text costs a fraction of a parsed tree (see
        /// the service's event history).
        #[serde(serialize_with = "raw_json_value")]
        request: std::sync::Arc<serde_json::value::RawValue>,
        /// False for a prompt restored from the ledger after a restart that the session has
        /// not re-sent or listed yet (it may no longer be waited on); see `permission_confirmed`.
        confirmed: bool,
        /// `can_use_tool`, or a question: `elicitation` / `request_user_dialog`.
        kind: crate::PromptKind,
    },
    /// A restored (or unconfirmed) prompt was re-sent or listed by its session: it is waited on.
    PermissionConfirmed {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
    },
    /// After a reconnect, the session's `initialize` reply did not list this pending prompt
    /// and it was not re-sent: it may no longer be waited on (still answerable; an answer
    /// is written only if the session sends it again).
    PermissionUnconfirmed {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
    },
    /// A prompt was answered.
    PermissionAnswered {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
        /// `allow` or `deny`.
        behavior: &'static str,
        /// Who decided.
        decided_by: String,
        /// Sent now or queued for reconnect.
        delivery: Delivery,
        /// Why, when a rule or a deadline decided.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A prompt has waited longer than `[policy] remind_after`. Its type is
    /// spelled `permission.overdue`, as the policy contract names it.
    #[serde(rename = "permission.overdue")]
    PermissionOverdue {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
        /// How long it has waited.
        waiting_ms: u64,
    },
    /// A prompt reached its ask deadline and is being denied (`decided_by = "timeout"`).
    PermissionExpired {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
    },
    /// The answer was written to the session's socket: at once, after a reconnect, or on a
    /// newer connection after a failed write (once per answer).
    PermissionDelivered {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
    },
    /// The session withdrew a prompt.
    PermissionCancelled {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
        /// Tool-use id, if known.
        tool_use_id: Option<String>,
    },
    /// Something went wrong that an operator should see.
    Error {
        /// Session id.
        session_id: Arc<str>,
        /// What happened.
        message: String,
    },
}

fn raw_json_value<S: serde::Serializer>(
    raw: &std::sync::Arc<serde_json::value::RawValue>,
    s: S,
) -> Result<S::Ok, S::Error> {
    raw.serialize(s)
}

/// The request of a prompt as the raw JSON an event carries.
fn raw_request(request: &Value) -> std::sync::Arc<serde_json::value::RawValue> {
    // Serializing a `Value` cannot fail (string keys only); an empty object if it somehow did.
    serde_json::value::to_raw_value(request)
        .unwrap_or_else(|_| {
            serde_json::value::RawValue::from_string("{}".into()).expect("valid JSON")
        })
        .into()
}

fn raw_json<S: serde::Serializer>(raw: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    let raw =
        serde_json::value::RawValue::from_string(raw.to_string()).map_err(S::Error::custom)?;
    raw.serialize(s)
}

impl Event {
    /// `permission_requested` for this pending prompt.
    pub fn permission_requested(
        session_id: &Arc<str>,
        request_id: &str,
        prompt: &crate::PermissionPrompt,
        confirmed: bool,
    ) -> Self {
        Event::PermissionRequested {
            session_id: session_id.clone(),
            request_id: request_id.to_owned(),
            tool_name: prompt.tool_name.clone(),
            tool_use_id: prompt.tool_use_id.clone(),
            request: match &prompt.raw {
                Some(raw) => raw.request().clone(),
                None => raw_request(&prompt.request),
            },
            confirmed,
            kind: prompt.kind(),
        }
    }

    /// Every `type` tag [`Event::kind`] can give, for clients that filter by type.
    pub const KINDS: &'static [&'static str] = &[
        "session_state",
        "sdk_message",
        "permission_requested",
        "permission_confirmed",
        "permission_unconfirmed",
        "permission_answered",
        "permission_delivered",
        "permission_cancelled",
        "permission.overdue",
        "permission_expired",
        "error",
    ];

    /// The `type` tag of this event (`session_state`, `permission_requested`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SessionState { .. } => "session_state",
            Event::SdkMessage { .. } => "sdk_message",
            Event::PermissionRequested { .. } => "permission_requested",
            Event::PermissionConfirmed { .. } => "permission_confirmed",
            Event::PermissionUnconfirmed { .. } => "permission_unconfirmed",
            Event::PermissionAnswered { .. } => "permission_answered",
            Event::PermissionDelivered { .. } => "permission_delivered",
            Event::PermissionCancelled { .. } => "permission_cancelled",
            Event::PermissionOverdue { .. } => "permission.overdue",
            Event::PermissionExpired { .. } => "permission_expired",
            Event::Error { .. } => "error",
        }
    }

    /// The session this event belongs to.
    pub fn session_id(&self) -> &str {
        match self {
            Event::SessionState { session_id, .. }
            | Event::SdkMessage { session_id, .. }
            | Event::PermissionRequested { session_id, .. }
            | Event::PermissionConfirmed { session_id, .. }
            | Event::PermissionUnconfirmed { session_id, .. }
            | Event::PermissionAnswered { session_id, .. }
            | Event::PermissionDelivered { session_id, .. }
            | Event::PermissionCancelled { session_id, .. }
            | Event::PermissionOverdue { session_id, .. }
            | Event::PermissionExpired { session_id, .. }
            | Event::Error { session_id, .. } => session_id,
        }
    }
}

/// The last notice of an event stream whose reader fell behind: `{"type":"lagged",..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Lagged {
    /// The events after the reader's resume point were already dropped from the history.
    HistoryEvicted {
        /// The oldest sequence number still kept.
        resume_from: u64,
    },
    /// The reader's resume point was not given by this stream (another instance's, or
    /// the stream's before a restart): everything retained follows, so some events may be
    /// ones the reader already has, and what was published in between elsewhere may be
    /// missing.
    ResumePointUnknown {
        /// The oldest sequence number still kept (the first event that follows).
        resume_from: u64,
    },
    /// The reader read too slowly and was dropped.
    SlowReader {
        /// Events it missed.
        missed: u64,
        /// Resume after this sequence number (the last one it got).
        resume_after: u64,
    },
}

impl Lagged {
    /// The notice as the stream sends it (`type` first, then `reason`).
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Notice<'a> {
            r#type: &'static str,
            #[serde(flatten)]
            lagged: &'a Lagged,
        }
        serde_json::to_string(&Notice {
            r#type: "lagged",
            lagged: self,
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Lagged;

    #[test]
    fn lagged_notices_keep_their_shape() {
        assert_eq!(
            Lagged::HistoryEvicted { resume_from: 7 }.to_json(),
            r#"{"type":"lagged","reason":"history_evicted","resume_from":7}"#
        );
        assert_eq!(
            Lagged::ResumePointUnknown { resume_from: 8 }.to_json(),
            r#"{"type":"lagged","reason":"resume_point_unknown","resume_from":8}"#
        );
        assert_eq!(
            Lagged::SlowReader {
                missed: 3,
                resume_after: 9
            }
            .to_json(),
            r#"{"type":"lagged","reason":"slow_reader","missed":3,"resume_after":9}"#
        );
    }
}
