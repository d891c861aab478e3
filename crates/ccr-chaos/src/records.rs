//! What a chaos run records: the peer's wire log, every operator API call,
//! every `kill -9`, every injected fault, and the ledger rows read at the end.
//! Plain data; [`super::check`] judges it.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

use ccr_sim::WireRecord;

/// Everything a run recorded, in the form the checker reads.
#[derive(Debug)]
pub struct Records {
    /// When the run started (times are shown relative to it).
    pub start: Instant,
    /// The simulator's wire log, in its order.
    pub wire: Vec<WireRecord>,
    /// Wire records the simulator dropped because its log was full (must be 0).
    pub wire_overflowed: u64,
    /// Every operator answer attempt.
    pub attempts: Vec<Attempt>,
    /// The prompts the policy rule answers on arrival, by (session, request id):
    /// the input each was emitted with (the rule allows it unchanged).
    pub rule_prompts: BTreeMap<(String, String), Value>,
    /// Every `kill -9` of the supervisor (in a cluster also every `SIGSTOP` and `SIGTERM`).
    pub kills: Vec<Kill>,
    /// Every fault the peer injected.
    pub faults: Vec<Fault>,
    /// The ledger rows read after the drain (`GET /v1/audit`; in a cluster, `ccr_prompts`).
    pub ledger: Vec<LedgerRow>,
    /// Supervisor processes that exited without being killed by the run.
    pub crashes: Vec<String>,
}

/// The content of an answer: what the operator chose, and what the session acts on.
#[derive(Clone, Debug, PartialEq)]
pub enum AnswerKey {
    /// Allow with this (possibly edited) tool input.
    Allow(Value),
    /// Deny with this message.
    Deny(String),
    /// Anything else (an `error` answer, a malformed result).
    Other(Value),
}

impl AnswerKey {
    /// The key of a `PermissionResult` object (`{"behavior":"allow","updatedInput":..}`).
    pub fn from_result(result: &Value) -> Self {
        match result.get("behavior").and_then(Value::as_str) {
            Some("allow") => match result.get("updatedInput") {
                Some(input) => AnswerKey::Allow(input.clone()),
                None => AnswerKey::Other(result.clone()),
            },
            Some("deny") => match result.get("message").and_then(Value::as_str) {
                Some(m) => AnswerKey::Deny(m.to_owned()),
                None => AnswerKey::Other(result.clone()),
            },
            _ => AnswerKey::Other(result.clone()),
        }
    }

    /// The key of a `control_response`'s `response` body (`subtype`, `request_id`, `response`).
    pub fn from_body(body: &Value) -> Self {
        match (
            body.get("subtype").and_then(Value::as_str),
            body.get("response"),
        ) {
            (Some("success"), Some(result)) => Self::from_result(result),
            _ => AnswerKey::Other(body.clone()),
        }
    }

    /// `"allow"`, `"deny"` or `"other"`.
    pub fn behavior(&self) -> &'static str {
        match self {
            AnswerKey::Allow(_) => "allow",
            AnswerKey::Deny(_) => "deny",
            AnswerKey::Other(_) => "other",
        }
    }

    /// A short human form: `allow(as asked)`, `allow(edit op-a#3)`, `deny("...")`.
    pub fn describe(&self) -> String {
        match self {
            AnswerKey::Allow(input) => match input.get(EDIT_FIELD).and_then(Value::as_str) {
                Some(mark) => format!("allow(edit {mark})"),
                None => "allow(as asked)".to_owned(),
            },
            AnswerKey::Deny(m) => format!("deny({m:?})"),
            AnswerKey::Other(v) => {
                let mut s = v.to_string();
                s.truncate(80);
                format!("other({s})")
            }
        }
    }
}

/// The input field an operator's edit adds (its value names the operator and attempt).
pub const EDIT_FIELD: &str = "chaos_edit";

/// How the API answered one attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiResult {
    /// 200: the API says the decision took effect.
    Accepted {
        /// `sent` or `queued`.
        delivery: String,
    },
    /// Any other HTTP status, with the error code of the body.
    Refused {
        /// HTTP status.
        status: u16,
        /// `error.code` (or empty).
        code: String,
    },
    /// No HTTP answer (the process was killed, connection refused, timeout): outcome unknown.
    Failed(String),
}

/// One `POST /v1/sessions/{id}/permissions/{request_id}`.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// Token name (recorded by the supervisor as `decided_by`).
    pub operator: String,
    /// Session id.
    pub session: String,
    /// Prompt id.
    pub request_id: String,
    /// What was answered.
    pub answer: AnswerKey,
    /// Which supervisor process was asked (its pid).
    pub pid: u32,
    /// Its cluster instance id (empty for a single supervisor).
    pub instance: String,
    /// The process whose `GET /v1/permissions` listed the prompt: (pid, instance id).
    pub listed_by: (u32, String),
    /// When the request was sent.
    pub sent_at: Instant,
    /// When the response (or the failure) came back.
    pub done_at: Instant,
    /// The result.
    pub result: ApiResult,
}

/// One signal the run sent a supervisor process to end or freeze it.
#[derive(Clone, Debug)]
pub struct Kill {
    /// When the signal was sent.
    pub at: Instant,
    /// The process.
    pub pid: u32,
    /// Its cluster instance id (`inst-0`, ...); empty for a single supervisor.
    pub instance: String,
    /// What was done to it.
    pub how: Signal,
}

/// What the run did to a supervisor process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `kill -9`.
    Kill9,
    /// `SIGTERM`: a graceful stop (then restarted).
    Term,
    /// `SIGSTOP`, then `SIGCONT` after this long (past its lease period).
    Stop(std::time::Duration),
}

impl Signal {
    /// `kill -9`, `SIGTERM`, `SIGSTOP 2.3s`.
    pub fn describe(self) -> String {
        match self {
            Signal::Kill9 => "kill -9".to_owned(),
            Signal::Term => "SIGTERM".to_owned(),
            Signal::Stop(d) => format!("SIGSTOP {:.1}s", d.as_secs_f64()),
        }
    }
}

/// One fault the peer injected.
#[derive(Clone, Debug)]
pub struct Fault {
    /// When.
    pub at: Instant,
    /// Session id.
    pub session: String,
    /// What (e.g. `reset`, `close 1001`, `pause 1.2s`, `4001 x2`, `garbage binary`).
    pub kind: String,
}

/// The ledger's row for one prompt (the fields the checker compares).
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerRow {
    /// Session id.
    pub session: String,
    /// Prompt id.
    pub request_id: String,
    /// `allowed`, `denied`, `cancelled`, `expired` or `pending`.
    pub outcome: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// The recorded answer's key, if an answer frame is recorded.
    pub answer: Option<AnswerKey>,
    /// `delivered_at` is set.
    pub delivered: bool,
}

impl LedgerRow {
    /// Parse one row of `GET /v1/audit`.
    pub fn from_api(row: &Value) -> Option<Self> {
        let s = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(LedgerRow {
            session: s("session_id")?,
            request_id: s("request_id")?,
            outcome: s("outcome")?,
            decided_by: s("decided_by"),
            answer: row
                .get("answer")
                .and_then(|a| a.get("response"))
                .map(AnswerKey::from_body),
            delivered: row.get("delivered_at").is_some_and(|d| !d.is_null()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answer_keys_from_results_bodies_and_ledger_rows() {
        let allow = json!({"behavior":"allow","updatedInput":{"command":"ls"},"toolUseID":"t"});
        assert_eq!(
            AnswerKey::from_result(&allow),
            AnswerKey::Allow(json!({"command":"ls"}))
        );
        let body = json!({"subtype":"success","request_id":"r","response":{"behavior":"deny","message":"no"}});
        assert_eq!(AnswerKey::from_body(&body), AnswerKey::Deny("no".into()));
        let err = json!({"subtype":"error","request_id":"r","error":"x"});
        assert_eq!(AnswerKey::from_body(&err).behavior(), "other");
        let edited = AnswerKey::Allow(json!({"command":"ls", EDIT_FIELD: "op-a#3"}));
        assert_eq!(edited.describe(), "allow(edit op-a#3)");

        let row = json!({"session_id":"s","request_id":"r","outcome":"denied","decided_by":"op-a",
            "delivered_at":"2026-01-01T00:00:00Z",
            "answer":{"type":"control_response","response":body}});
        let row = LedgerRow::from_api(&row).unwrap();
        assert_eq!(row.answer, Some(AnswerKey::Deny("no".into())));
        assert!(row.delivered);
        let pending = json!({"session_id":"s","request_id":"r","outcome":"pending","answer":null,"delivered_at":null});
        let pending = LedgerRow::from_api(&pending).unwrap();
        assert_eq!((pending.answer, pending.delivered), (None, false));
    }
}
