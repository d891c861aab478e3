//! `allow` / `deny` of several prompts: `SESSION/REQUEST` pairs, or `--all-pending`,
//! answered through `POST /v1/decisions` (at most 1000 items a request).

use std::collections::HashMap;
use std::io::Write;

use ccr_protocol::api::{BulkItem, RawDecision, MAX_BULK_DECISIONS};
use ccr_protocol::error::Code;
use ccr_protocol::reply::{BulkResults, PermissionList};
use serde_json::Value;

use super::client::{Client, CtlError};
use super::resolve::{self, Resolved};
use super::{render, sanitize};

/// Which prompts an `allow` / `deny` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// One prompt (`SESSION REQUEST`, or one `SESSION/REQUEST`): the single route, as ever.
    One(String, String),
    /// Several `SESSION/REQUEST` pairs: one bulk answer.
    Many(Vec<(String, String)>),
}

/// Read the positional arguments: `SESSION REQUEST`, or one or more `SESSION/REQUEST`
/// (split at the first `/`: session ids never contain one).
pub fn targets(args: &[String]) -> Result<Targets, CtlError> {
    if let [session, request] = args {
        if !session.contains('/') {
            return Ok(Targets::One(session.clone(), request.clone()));
        }
    }
    let mut pairs = args
        .iter()
        .map(|a| match a.split_once('/') {
            Some((s, r)) if !s.is_empty() && !r.is_empty() => Ok((s.to_owned(), r.to_owned())),
            _ => Err(CtlError::Usage(format!(
                "{a:?} is not SESSION/REQUEST (give SESSION REQUEST for one prompt, or SESSION/REQUEST pairs)"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    match pairs.len() {
        0 => Err(CtlError::Usage(
            "give SESSION REQUEST, SESSION/REQUEST pairs or --all-pending".into(),
        )),
        1 => {
            let (s, r) = pairs.remove(0);
            Ok(Targets::One(s, r))
        }
        _ => Ok(Targets::Many(pairs)),
    }
}

/// Every pending, answerable prompt (of `session`, of tool `tool`, when given), oldest first.
pub fn pending(
    client: &Client,
    session: Option<&str>,
    tool: Option<&str>,
) -> Result<Vec<(String, String)>, CtlError> {
    let query: Vec<(&str, &str)> = session.iter().map(|s| ("session_id", *s)).collect();
    let body = client.get("/v1/permissions", &query)?;
    let list: PermissionList = serde_json::from_str(&body).map_err(|e| {
        CtlError::Protocol(format!("the API answered with an unexpected body: {e}"))
    })?;
    Ok(list
        .permissions
        .into_iter()
        .filter(|p| p.answerable && tool.is_none_or(|t| p.tool_name == t))
        .map(|p| (p.session_id.to_string(), p.request_id))
        .collect())
}

/// POST every pair with `decision`, 1000 a request; the results in order, as the API sent them.
fn post_all(
    client: &Client,
    pairs: &[(String, String)],
    decision: &RawDecision,
) -> Result<Vec<Value>, CtlError> {
    let mut results: Vec<Value> = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(MAX_BULK_DECISIONS) {
        let items: Vec<BulkItem> = chunk
            .iter()
            .map(|(s, r)| BulkItem::new(s, r, decision.clone()))
            .collect();
        let body = client.post(
            "/v1/decisions",
            Some(&serde_json::json!({ "decisions": items })),
        )?;
        let mut v: Value = serde_json::from_str(&body)
            .map_err(|e| CtlError::Protocol(format!("the API answered with invalid JSON: {e}")))?;
        match v.get_mut("results").map(Value::take) {
            Some(Value::Array(chunk_results)) => results.extend(chunk_results),
            _ => {
                return Err(CtlError::Protocol(
                    "the API answered without a results list".into(),
                ))
            }
        }
    }
    Ok(results)
}

/// For each pair whose request id is not pending as such but begins exactly one pending id
/// of its session: its index and that id. A prefix that begins several is a usage error,
/// before anything is sent. Sessions whose list cannot be read resolve nothing.
pub fn prefixes(
    client: &Client,
    pairs: &[(String, String)],
) -> Result<Vec<(usize, String)>, CtlError> {
    let mut lists: HashMap<&str, Vec<Value>> = HashMap::new();
    let mut out = Vec::new();
    for (i, (session, request)) in pairs.iter().enumerate() {
        let list = lists
            .entry(session.as_str())
            .or_insert_with(|| resolve::pending_raw(client, Some(session)).unwrap_or_default());
        match resolve::resolve(request, resolve::ids(list)) {
            Resolved::Prefix(full) => out.push((i, full)),
            Resolved::Ambiguous(all) => return Err(resolve::ambiguous(session, request, &all)),
            Resolved::Exact | Resolved::Unknown => {}
        }
    }
    Ok(out)
}

/// Answer every pair with `decision`, 1000 a request; prints one line per item (or, with
/// `--json`, one `{"results":[..]}` document) and fails when any item was not answered.
/// Each id is sent as given first; one the server does not know (`unknown_prompt`) that
/// begins exactly one pending id of its session (see [`prefixes`]) is sent again as that id.
pub fn answer(
    client: &Client,
    json: bool,
    pairs: &[(String, String)],
    decision: &RawDecision,
    prefixes: &[(usize, String)],
) -> Result<(), CtlError> {
    let mut results = post_all(client, pairs, decision)?;
    let unknown = |v: &Value| v["error"]["code"] == Code::UnknownPrompt.name();
    let retry: Vec<(usize, String)> = prefixes
        .iter()
        .filter(|(i, _)| results.get(*i).is_some_and(unknown))
        .cloned()
        .collect();
    if !retry.is_empty() {
        let again: Vec<(String, String)> = retry
            .iter()
            .map(|(i, full)| (pairs[*i].0.clone(), full.clone()))
            .collect();
        for ((i, _), r) in retry.iter().zip(post_all(client, &again, decision)?) {
            results[*i] = r;
        }
    }
    let all = serde_json::json!({ "results": results });
    let typed: BulkResults = serde_json::from_value(sanitize::clean_value(&all)).map_err(|e| {
        CtlError::Protocol(format!("the API answered with an unexpected body: {e}"))
    })?;
    let text = if json {
        sanitize::escape_json(&all.to_string()).into_owned()
    } else {
        render::bulk(&typed)
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = writeln!(out, "{}", text.trim_end());
    let failed = typed.results.iter().filter(|r| !r.is_ok()).count();
    match failed {
        0 => Ok(()),
        _ => Err(CtlError::NotAllAnswered {
            failed,
            total: typed.results.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn pair(s: &str, r: &str) -> (String, String) {
        (s.into(), r.into())
    }

    #[test]
    fn one_pair_keeps_the_single_form_and_several_need_slashes() {
        assert_eq!(
            targets(&args(&["s1", "r1"])).unwrap(),
            Targets::One("s1".into(), "r1".into())
        );
        assert_eq!(
            targets(&args(&["s1", "r/1"])).unwrap(),
            Targets::One("s1".into(), "r/1".into())
        );
        assert_eq!(
            targets(&args(&["s1/r1"])).unwrap(),
            Targets::One("s1".into(), "r1".into())
        );
        assert_eq!(
            targets(&args(&["s1/r1", "s2/r/2"])).unwrap(),
            Targets::Many(vec![pair("s1", "r1"), pair("s2", "r/2")])
        );
        assert_eq!(
            targets(&args(&["s1/r1", "s1/r2", "s2/r3"])).unwrap(),
            Targets::Many(vec![pair("s1", "r1"), pair("s1", "r2"), pair("s2", "r3")])
        );
        for bad in [
            &["s1"][..],
            &["s1", "r1", "r2"],
            &["s1/r1", "r2"],
            &["/r1", "s1/r2"],
            &["s1/", "s2/r2"],
            &[],
        ] {
            let e = targets(&args(bad)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }
}
