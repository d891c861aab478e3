//! `[[sessions]]` entries -> [`SessionSpec`]s: id rules, labels, exactly one token source,
//! and optional overrides of the `[ccr]` endpoint (`base_url`, `organization_uuid`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::ccr;
use super::fields::{array_of_tables, plain_id, Errors, Table};
use super::{Secret, SessionSpec, TokenSpec};

/// The four mutually exclusive token keys of a session entry.
const TOKEN_KEYS: [&str; 4] = ["token", "token_env", "token_file", "token_command"];

/// Validate the `sessions` array; entries with problems are reported and left out.
pub(super) fn sessions(value: Option<&Value>, errs: &mut Errors) -> Vec<Arc<SessionSpec>> {
    let mut first_index: HashMap<String, usize> = HashMap::new();
    let mut specs = Vec::new();
    for (i, path, map) in array_of_tables(value, "sessions", errs) {
        let before = errs.len();
        let mut t = Table::new(&path, Some(map));
        let id = t.string(errs, "id").unwrap_or_default();
        if let Err(e) = check_id(&id) {
            errs.push(t.key_path("id"), e);
        } else if let Some(first) = first_index.get(&id) {
            errs.push(
                t.key_path("id"),
                format!("duplicate id {id:?}, already used by sessions[{first}]"),
            );
        } else {
            first_index.insert(id.clone(), i);
        }
        let labels = t.strings(errs, "labels");
        for (j, label) in labels.iter().enumerate() {
            if label.trim().is_empty() {
                errs.push(format!("{path}.labels[{j}]"), "must not be empty");
            }
        }
        let token = token_source(&mut t, errs);
        let viewer_only = t.bool(errs, "viewer_only", false);
        // Overrides of the shared `[ccr]` endpoint, checked exactly as those are.
        let base_url = ccr::endpoint_base_url(&mut t, errs);
        let organization_uuid = ccr::endpoint_organization_uuid(&mut t, errs);
        for key in ["base_url", "organization_uuid"] {
            if map.get(key).and_then(Value::as_str) == Some("") {
                errs.push(
                    t.key_path(key),
                    "must not be empty (leave it out to use the [ccr] value)",
                );
            }
        }
        t.finish(errs);
        if let (Some(token), true) = (token, errs.len() == before) {
            specs.push(Arc::new(SessionSpec {
                id: id.into(),
                labels,
                token,
                viewer_only,
                base_url,
                organization_uuid,
            }));
        }
    }
    specs
}

fn check_id(id: &str) -> Result<(), String> {
    plain_id(id, 128, "required (a non-empty session id)")
}

/// Exactly one of `token`, `token_env`, `token_file`, `token_command`.
fn token_source(t: &mut Table, errs: &mut Errors) -> Option<TokenSpec> {
    let literal = t.secret(errs, "token");
    let env = t.string(errs, "token_env");
    let file = t.string(errs, "token_file");
    let command = t.secret(errs, "token_command");
    // Presence, not validity, counts: a mistyped value is reported once, by its reader.
    let set: Vec<&str> = TOKEN_KEYS.into_iter().filter(|k| t.has(k)).collect();
    if set.len() != 1 {
        let found = if set.is_empty() {
            "none".to_owned()
        } else {
            set.join(", ")
        };
        let keys = TOKEN_KEYS.join(", ");
        errs.push(
            t.path(),
            format!("set exactly one of {keys} (found: {found})"),
        );
        return None;
    }
    let key = set[0];
    if [&literal, &env, &file, &command]
        .iter()
        .all(|v| v.is_none())
    {
        return None; // The one key set has the wrong type: already reported.
    }
    let empty = [&literal, &env, &file, &command]
        .into_iter()
        .flatten()
        .any(|v| v.trim().is_empty());
    if empty {
        errs.push(t.key_path(key), "must not be empty");
        return None;
    }
    if env.as_ref().is_some_and(|v| v.contains(['=', '\0'])) {
        errs.push(t.key_path(key), "is not a valid environment variable name");
        return None;
    }
    match (literal, env, file, command) {
        (Some(s), ..) => Some(TokenSpec::Literal(Secret::new(s))),
        (_, Some(var), ..) => Some(TokenSpec::Env(var)),
        (_, _, Some(path), _) => Some(TokenSpec::File(PathBuf::from(path))),
        (.., Some(cmd)) => Some(TokenSpec::Command(cmd)),
        _ => None,
    }
}
