//! Bodies the operator API answers with: sessions, pending prompts, decision receipts,
//! interrupt and message receipts, ledger pages. The service writes them and `ctl` reads
//! them; fields a newer server adds are ignored by an older reader.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::Delivery;
use crate::error::ErrorDetail;
use crate::session::SessionStatus;
use crate::PromptKind;

/// How a prompt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The tool may run.
    Allowed,
    /// The tool was refused.
    Denied,
    /// The session withdrew the prompt (also voids an answer not yet delivered).
    Cancelled,
    /// Nobody answered in time (`decided_by = "timeout"`).
    Expired,
}

impl Outcome {
    /// The stored / wire name (`allowed`, `denied`, `cancelled`, `expired`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Cancelled => "cancelled",
            Outcome::Expired => "expired",
        }
    }

    /// True when an answer must still reach the session (`allowed`, `denied`,
    /// and `expired`, which is a deny sent on the operator's behalf).
    pub fn needs_delivery(self) -> bool {
        matches!(self, Outcome::Allowed | Outcome::Denied | Outcome::Expired)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allowed" => Ok(Outcome::Allowed),
            "denied" => Ok(Outcome::Denied),
            "cancelled" => Ok(Outcome::Cancelled),
            "expired" => Ok(Outcome::Expired),
            other => Err(format!(
                "expected allowed, denied, cancelled or expired, got {other:?}"
            )),
        }
    }
}

/// The registry's acknowledgement of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionReceipt {
    /// Session id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub session_id: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// `allowed`, `denied` or `expired`.
    pub status: Outcome,
    /// Written now, or queued until the session reconnects.
    pub delivery: Delivery,
    /// Who decided.
    pub decided_by: String,
}

/// `POST /v1/decisions`: what happened to each item, in the order of the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkResults {
    /// One result per item.
    pub results: Vec<BulkResult>,
}

/// What happened to one item of a bulk answer: the receipt (status 200), or the error the
/// single route would have answered with its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkResult {
    /// Session id, as given.
    pub session_id: String,
    /// Prompt (request) id, as given.
    pub request_id: String,
    /// The HTTP status the single route would have answered.
    pub status: u16,
    /// The decision's receipt, when it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<DecisionReceipt>,
    /// Why it was not taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

impl BulkResult {
    /// True when the item's answer was taken.
    pub fn is_ok(&self) -> bool {
        self.receipt.is_some() && self.error.is_none()
    }
}

/// `GET /healthz`: the process answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz` (no token): ready or not, and why not; never a session id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadyState {
    /// True when the config is loaded, the API bound, the ledger writable and the
    /// supervisor running (answered with 200; 503 when false).
    pub ready: bool,
    /// What is not ready, one short sentence each; empty when ready.
    pub reasons: Vec<String>,
}

/// `GET /v1/health` (viewer): readiness, and which sessions are not connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// As `GET /readyz`'s `ready`.
    pub ready: bool,
    /// As `GET /readyz`'s `reasons`.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// How many sessions the supervisor runs.
    pub sessions: usize,
    /// The sessions whose state is not `connected`.
    pub not_connected: Vec<NotConnected>,
}

/// A session that is not connected, in [`Readiness`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotConnected {
    /// Session id.
    pub id: String,
    /// Its state's name (`connecting`, `reconnecting`, `failed`, ...).
    pub state: String,
}

/// `GET /v1/sessions/{id}/messages`: a page of the session's event history (the service
/// splices the stored events in as they are; see events.md for their shapes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TranscriptPage {
    /// Session id.
    pub session_id: String,
    /// The events, oldest first, each as the live stream sends it.
    pub messages: Vec<Value>,
    /// Pass as `after` for the next page.
    pub next_after: u64,
    /// Set when events after `after` were already evicted: the oldest kept sequence number.
    pub lagged_from: Option<u64>,
}

/// A pending prompt as shown to operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PendingPrompt {
    /// Session id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub session_id: Arc<str>,
    /// Prompt id.
    pub request_id: String,
    /// Tool name.
    pub tool_name: String,
    /// Tool-use id.
    pub tool_use_id: Option<String>,
    /// Tool input.
    pub input: Value,
    /// The raw request object, unknown fields included.
    pub request: Value,
    /// When it arrived.
    #[serde(with = "crate::time::as_rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub received_at: SystemTime,
    /// Age in milliseconds.
    pub age_ms: u64,
    /// False for a prompt restored from the ledger that its session has not re-sent or
    /// listed since the restart (it may no longer be waited on).
    pub confirmed: bool,
    /// `can_use_tool`, `elicitation` or `request_user_dialog`.
    pub kind: PromptKind,
    /// False for a dialog of a kind this supervisor does not render: shown, never answered.
    pub answerable: bool,
    /// In a cluster: the instance that owns the prompt's session (and delivers its answer),
    /// `null` while no instance holds it. Absent when the service is not clustered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `GET /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionList {
    /// Every session, in id order.
    pub sessions: Vec<SessionBody>,
}

/// One session with the registry's tallies (`GET /v1/sessions/{id}`, and each of the list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionBody {
    /// The supervisor's view of the session.
    #[serde(flatten)]
    pub view: SessionView,
    /// Prompts waiting for an answer.
    pub pending: usize,
    /// Answers decided but not yet written (the session is away).
    pub queued_decisions: usize,
    /// In a cluster: the instance that holds the session's lease and runs it (`null` while
    /// none does, and its state is then `disconnected`). A session owned elsewhere shows the
    /// state and last error its owner announced last, and the shared ledger's counts.
    /// Absent when the service is not clustered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Option<String>>,
}

/// `DELETE /v1/sessions/{id}`: the session that was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Removed {
    /// Its id.
    pub removed: String,
}

/// `GET /v1/permissions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PermissionList {
    /// Pending `can_use_tool` prompts: waited-on first, then oldest first.
    pub permissions: Vec<PendingPrompt>,
}

/// `GET /v1/questions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuestionList {
    /// Pending elicitations and dialogs, in the same order as permissions.
    pub questions: Vec<PendingPrompt>,
}

/// `GET /v1/cluster`: the live members of the cluster and the session leases each holds,
/// as the database shows them to the instance that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterStatus {
    /// The `[cluster] instance_id` of the instance that answered.
    pub instance_id: String,
    /// Members heard from recently (within three lease periods), by id.
    pub members: Vec<ClusterMemberStatus>,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterMemberStatus {
    /// Its `[cluster] instance_id`.
    pub instance_id: String,
    /// Its `[cluster] advertise_url`, when set.
    pub advertise_url: Option<String>,
    /// Since its last heartbeat, by the database's clock.
    pub heartbeat_age_ms: u64,
    /// Shutting down: handing its sessions over.
    pub draining: bool,
    /// The sessions whose lease it holds, by id.
    pub sessions: Vec<ClusterLease>,
}

/// A session lease a member holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterLease {
    /// The session.
    pub session_id: String,
    /// The lease's fencing epoch (grows by one at every claim of the session).
    pub epoch: i64,
    /// Since its holder claimed it, by the database's clock.
    pub lease_age_ms: u64,
}

/// One session as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    /// Session id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: Arc<str>,
    /// Labels from config.
    pub labels: Vec<String>,
    /// Watch-only session.
    pub viewer_only: bool,
    /// Actor incarnation (1 + restarts).
    pub incarnation: u64,
    /// State, last error, connected-since, counters.
    #[serde(flatten)]
    pub status: SessionStatus,
}

/// The session's answer to an interrupt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InterruptAnswer {
    /// Id of the interrupt request we sent.
    pub request_id: String,
    /// The `response` body of its `success` answer; `null` when the session sent none
    /// (CLI 2.1.197 answers an interrupt with no body at all).
    pub response: Value,
    /// Uuids of queued user messages that survive the interrupt (`response.still_queued`);
    /// `null` when the session did not say.
    pub still_queued: Option<Vec<String>>,
    /// Uuids of queued user messages the interrupt cancelled (`response.cancelled`, only
    /// with `cancel_queued`); `null` when the session did not say.
    pub cancelled: Option<Vec<String>>,
}

impl InterruptAnswer {
    /// The answer to interrupt `request_id`, with the lists read from `response`.
    pub fn new(request_id: String, response: Value) -> Self {
        let list = |key: &str| -> Option<Vec<String>> {
            response.get(key)?.as_array().map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
        };
        Self {
            still_queued: list("still_queued"),
            cancelled: list("cancelled"),
            request_id,
            response,
        }
    }
}

/// Receipt of a user message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SentMessage {
    /// The event uuid we generated.
    pub uuid: String,
    /// HTTP status of the events endpoint (200 or 201).
    pub status: u16,
}

/// One ledger row as `GET /v1/audit` shows it (fields added over time read as empty
/// when an older server leaves them out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerRow {
    /// The CCR session id.
    pub session_id: String,
    /// The session's id for the prompt.
    pub request_id: String,
    /// The tool-use block id.
    pub tool_use_id: Option<String>,
    /// Tool name.
    pub tool_name: String,
    /// The tool input.
    pub input: Value,
    /// The whole `request` object as received.
    pub request: Value,
    /// When the prompt arrived (RFC 3339).
    #[serde(with = "crate::time::as_rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub received_at: SystemTime,
    /// How it ended; serialized as `"pending"` while undecided.
    #[serde(with = "outcome_or_pending")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "pending"))]
    pub outcome: Option<Outcome>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When it was decided (RFC 3339).
    #[serde(default, with = "crate::time::opt_rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub decided_at: Option<SystemTime>,
    /// When the answer was first written to the session's socket (RFC 3339). Written, not
    /// read: a connection that dies right after may lose it, and the session's replay then
    /// gets it again (counted in `deliveries`).
    #[serde(default, with = "crate::time::opt_rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub delivered_at: Option<SystemTime>,
    /// How many times the answer was written to a socket: 1, plus one per resend after the
    /// session replayed the prompt on a new connection.
    #[serde(default)]
    pub deliveries: u64,
    /// When it was last written (RFC 3339).
    #[serde(default, with = "crate::time::opt_rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_delivered_at: Option<SystemTime>,
    /// The edited input, when the operator changed it.
    #[serde(default)]
    pub updated_input: Option<Value>,
    /// The frame sent.
    #[serde(default)]
    pub answer: Option<Value>,
    /// Why, when a policy rule or a deadline decided.
    #[serde(default)]
    pub reason: Option<String>,
    /// What was asked: `can_use_tool`, `elicitation` or `request_user_dialog` (the request's
    /// `subtype`).
    #[serde(default)]
    pub kind: String,
    /// The answer's `decisionClassification` (`user_temporary`, `user_permanent`,
    /// `user_reject`); `null` when no person decided or nothing was sent.
    #[serde(default)]
    pub classification: Option<String>,
}

/// `Option<Outcome>` as its name, `"pending"` for `None`.
mod outcome_or_pending {
    use super::Outcome;
    use serde::{Deserialize, Deserializer, Serializer};

    /// `None` as `"pending"`.
    pub fn serialize<S: Serializer>(o: &Option<Outcome>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(o.map_or("pending", Outcome::as_str))
    }

    /// `"pending"` and `null` read as `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Outcome>, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref() {
            None | Some("pending") => Ok(None),
            Some(other) => other.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// One page of ledger rows, newest first (`GET /v1/audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerPage {
    /// The rows.
    pub rows: Vec<LedgerRow>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Names added, removed and changed by a reload (sessions, operator tokens, sinks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NameChanges {
    /// New names.
    pub added: Vec<String>,
    /// Names gone.
    pub removed: Vec<String>,
    /// Names kept with another definition.
    pub changed: Vec<String>,
}

impl NameChanges {
    /// True when nothing was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What a reload changed in `[policy]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyChanges {
    /// Ids of new rules.
    pub rules_added: Vec<String>,
    /// Ids of rules gone (their hit counts with them).
    pub rules_removed: Vec<String>,
    /// Ids of rules kept with another definition (their hit counts start again at 0).
    pub rules_changed: Vec<String>,
    /// `[policy]` keys other than the rules that changed (`ask_timeout`, `remind_after`,
    /// `ask_timeout_message`), or `rules order` when only the order of the rules did.
    #[serde(default)]
    pub settings_changed: Vec<String>,
}

impl PolicyChanges {
    /// True when the policy is the same.
    pub fn is_empty(&self) -> bool {
        self.rules_added.is_empty()
            && self.rules_removed.is_empty()
            && self.rules_changed.is_empty()
            && self.settings_changed.is_empty()
    }
}

/// `POST /v1/admin/reload` (and the `SIGHUP` log line): what the reload applied, names only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReloadSummary {
    /// `[[sessions]]` by id, as the supervisor applied them.
    pub sessions: NameChanges,
    /// `[policy]` rules by id.
    pub policy: PolicyChanges,
    /// `[[api.tokens]]` by name (a changed secret or role is `changed`).
    pub tokens: NameChanges,
    /// `[[notify]]` sinks by name.
    pub notify: NameChanges,
    /// Keys that changed in the file but apply only at the next start (`api.bind`, ...).
    pub restart_needed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_ledger_row_reads_back_with_pending_as_none() {
        let text = json!({
            "session_id": "s1", "request_id": "r1", "tool_use_id": null, "tool_name": "Bash",
            "input": {"command": "ls"}, "request": {"subtype": "can_use_tool"},
            "received_at": "2026-11-24T01:02:03.456Z", "outcome": "pending",
            "decided_by": null, "decided_at": null, "delivered_at": null, "deliveries": 0,
            "last_delivered_at": null, "updated_input": null, "answer": null, "reason": null,
            "kind": "can_use_tool", "classification": null
        });
        let row: LedgerRow = serde_json::from_value(text.clone()).unwrap();
        assert_eq!(row.outcome, None);
        assert_eq!(serde_json::to_value(&row).unwrap(), text);
        let mut denied = text;
        denied["outcome"] = json!("denied");
        let row: LedgerRow = serde_json::from_value(denied).unwrap();
        assert_eq!(row.outcome, Some(Outcome::Denied));
    }

    #[test]
    fn a_receipt_round_trips_and_unknown_fields_are_ignored() {
        let r: DecisionReceipt = serde_json::from_value(json!({
            "session_id": "s1", "request_id": "r1", "status": "allowed", "delivery": "queued",
            "decided_by": "alice", "added_later": true
        }))
        .unwrap();
        assert_eq!(r.status, Outcome::Allowed);
        assert_eq!(r.delivery, Delivery::Queued);
        assert_eq!(serde_json::to_value(&r).unwrap()["status"], "allowed");
    }

    #[test]
    fn bulk_results_carry_a_receipt_or_an_error() {
        let text = json!({"results":[
            {"session_id":"s1","request_id":"r1","status":200,"receipt":{"session_id":"s1",
                "request_id":"r1","status":"denied","delivery":"sent","decided_by":"alice"}},
            {"session_id":"s1","request_id":"r2","status":409,
                "error":{"code":"already_answered","message":"prompt r2 was already answered"}}
        ]});
        let r: BulkResults = serde_json::from_value(text.clone()).unwrap();
        assert!(r.results[0].is_ok());
        assert!(!r.results[1].is_ok());
        assert_eq!(
            r.results[1].error.as_ref().unwrap().code,
            "already_answered"
        );
        assert_eq!(serde_json::to_value(&r).unwrap(), text);
    }
}
