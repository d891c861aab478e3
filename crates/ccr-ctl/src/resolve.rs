//! Request ids given as a unique prefix, as git takes commit ids: `ctl show s1 7f3`.
//!
//! An exact id always wins: `allow` / `deny` / `answer` send the id as given first, and
//! only when the server does not know it (`unknown_prompt`) read it as a prefix of the
//! session's pending prompts. So a full id of a prompt already answered still gets the
//! server's `already_answered` (409), even when it also begins a pending id.

use serde_json::Value;

use ccr_protocol::reply::PendingPrompt;

use super::client::{Client, CtlError};
use super::sanitize;

/// At most this many candidates are named in an ambiguity error.
const MAX_NAMED: usize = 10;

/// What a given request id means among a session's pending ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A pending prompt has exactly this id.
    Exact,
    /// The id begins exactly one pending id: this one.
    Prefix(String),
    /// The id begins several pending ids (sorted).
    Ambiguous(Vec<String>),
    /// No pending id is, or begins with, the given id.
    Unknown,
}

/// Read `given` against `pending` ids: exact, a unique prefix, ambiguous, or unknown.
pub fn resolve<'a>(given: &str, pending: impl IntoIterator<Item = &'a str>) -> Resolved {
    let mut matches: Vec<&str> = Vec::new();
    for id in pending {
        if id == given {
            return Resolved::Exact;
        }
        if id.starts_with(given) && !matches.contains(&id) {
            matches.push(id);
        }
    }
    match matches.len() {
        0 => Resolved::Unknown,
        1 => Resolved::Prefix(matches[0].to_owned()),
        _ => {
            let mut all: Vec<String> = matches.into_iter().map(str::to_owned).collect();
            all.sort();
            Resolved::Ambiguous(all)
        }
    }
}

/// The usage error (exit 2) for a prefix that begins several pending ids, naming them.
pub fn ambiguous(session: &str, given: &str, candidates: &[String]) -> CtlError {
    let mut named = candidates
        .iter()
        .take(MAX_NAMED)
        .map(|c| sanitize::clean(c).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    if candidates.len() > MAX_NAMED {
        named.push_str(&format!(", and {} more", candidates.len() - MAX_NAMED));
    }
    CtlError::Usage(format!(
        "request id {:?} is ambiguous in session {}: it begins {} pending prompts ({named}); give more of it",
        sanitize::clean(given),
        sanitize::clean(session),
        candidates.len()
    ))
}

/// The session's pending prompts and questions, raw (as the API sent them), oldest first.
pub fn pending_raw(client: &Client, session: Option<&str>) -> Result<Vec<Value>, CtlError> {
    let query: Vec<(&str, &str)> = session.iter().map(|s| ("session_id", *s)).collect();
    let mut all: Vec<Value> = Vec::new();
    for (path, key) in [
        ("/v1/permissions", "permissions"),
        ("/v1/questions", "questions"),
    ] {
        let body = client.get(path, &query)?;
        let mut v: Value = serde_json::from_str(&body)
            .map_err(|e| CtlError::Protocol(format!("the API answered with invalid JSON: {e}")))?;
        match v.get_mut(key).map(Value::take) {
            Some(Value::Array(items)) => {
                for item in items {
                    let dup = all.iter().any(|p| {
                        p["session_id"] == item["session_id"]
                            && p["request_id"] == item["request_id"]
                    });
                    if !dup {
                        all.push(item);
                    }
                }
            }
            _ => {
                return Err(CtlError::Protocol(format!(
                    "the API answered without a {key} list"
                )))
            }
        }
    }
    // RFC 3339 UTC with milliseconds sorts as text.
    all.sort_by(|a, b| {
        let at = |v: &Value| v["received_at"].as_str().unwrap_or("").to_owned();
        at(a).cmp(&at(b))
    });
    Ok(all)
}

/// A raw prompt typed after every string of it was sanitized (session text is untrusted).
pub fn typed(raw: &Value) -> Result<PendingPrompt, CtlError> {
    serde_json::from_value(sanitize::clean_value(raw))
        .map_err(|e| CtlError::Protocol(format!("the API answered with an unexpected prompt: {e}")))
}

/// The request ids of `prompts`.
pub fn ids(prompts: &[Value]) -> impl Iterator<Item = &str> {
    prompts.iter().filter_map(|p| p["request_id"].as_str())
}

/// The full id `request` stands for in `session` after the server said `unknown_prompt`:
/// `Ok(Some(full))` for a unique prefix, `Ok(None)` when nothing pending begins with it
/// (the server's error stands), a usage error when it is ambiguous.
pub fn after_unknown(
    client: &Client,
    session: &str,
    request: &str,
) -> Result<Option<String>, CtlError> {
    let Ok(pending) = pending_raw(client, Some(session)) else {
        return Ok(None);
    };
    match resolve(request, ids(&pending)) {
        Resolved::Prefix(full) => Ok(Some(full)),
        Resolved::Ambiguous(all) => Err(ambiguous(session, request, &all)),
        Resolved::Exact | Resolved::Unknown => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_ambiguous_unknown() {
        let ids = ["req-7f3a", "req-7f9c", "req-b21", "x"];
        assert_eq!(resolve("req-b21", ids), Resolved::Exact);
        assert_eq!(resolve("req-b", ids), Resolved::Prefix("req-b21".into()));
        assert_eq!(resolve("req-7f3", ids), Resolved::Prefix("req-7f3a".into()));
        assert_eq!(
            resolve("req-7f", ids),
            Resolved::Ambiguous(vec!["req-7f3a".into(), "req-7f9c".into()])
        );
        assert_eq!(resolve("nope", ids), Resolved::Unknown);
        assert_eq!(resolve("req-b21-longer", ids), Resolved::Unknown);
        // An exact id wins over the longer ids it begins.
        assert_eq!(resolve("r1", ["r10", "r1", "r11"]), Resolved::Exact);
        assert_eq!(resolve("r1", Vec::<&str>::new()), Resolved::Unknown);
        // The same id listed twice (a prompt and a question view) is one candidate.
        assert_eq!(resolve("a", ["ab", "ab"]), Resolved::Prefix("ab".into()));
    }

    #[test]
    fn ambiguity_is_a_usage_error_naming_the_candidates() {
        let all: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
        let e = ambiguous("s1", "r", &all[..2]);
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "request id \"r\" is ambiguous in session s1: it begins 2 pending prompts (r00, r01); give more of it"
        );
        let e = ambiguous("s1", "r", &all).to_string();
        assert!(e.contains("r09, and 2 more"), "{e}");
        let e = ambiguous("s\u{1b}[2J1", "r\u{1b}]52;c;eA==\u{7}", &all[..2]).to_string();
        assert!(!e.contains('\u{1b}'), "{e:?}");
    }
}
