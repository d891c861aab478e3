//! `[[api.tokens]]` entries -> [`ApiTokenSpec`]s: name, role, and exactly one secret source.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;

use super::fields::{array_of_tables, Errors, Table};
use crate::config::{ApiTokenSource, ApiTokenSpec, Role};

/// The mutually exclusive secret keys of a token entry (never a plaintext token).
const SECRET_KEYS: [&str; 3] = ["sha256", "token_env", "token_file"];

/// Validate the `api.tokens` array; entries with problems are reported and left out.
pub(super) fn api_tokens(value: Option<&Value>, errs: &mut Errors) -> Vec<ApiTokenSpec> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut specs = Vec::new();
    for (i, path, map) in array_of_tables(value, "api.tokens", errs) {
        let before = errs.len();
        let mut t = Table::new(&path, Some(map));
        let name = t.string(errs, "name").unwrap_or_default();
        if name.trim().is_empty() {
            errs.push(t.key_path("name"), "required (shown as who decided)");
        } else if let Some(first) = names.get(&name) {
            errs.push(
                t.key_path("name"),
                format!("duplicate name {name:?}, already used by api.tokens[{first}]"),
            );
        } else {
            names.insert(name.clone(), i);
        }
        let role = match t.string(errs, "role").as_deref() {
            Some("viewer") => Some(Role::Viewer),
            Some("approver") => Some(Role::Approver),
            Some("admin") => Some(Role::Admin),
            Some(other) => {
                errs.push(
                    t.key_path("role"),
                    format!("expected \"viewer\", \"approver\" or \"admin\", got {other:?}"),
                );
                None
            }
            None => {
                errs.push(t.key_path("role"), "required: viewer, approver or admin");
                None
            }
        };
        if t.has("token") {
            errs.push(
                t.key_path("token"),
                "plaintext tokens are not accepted here: give sha256, token_env or token_file",
            );
            let _ = t.raw("token");
        }
        let source = secret_source(&mut t, errs);
        t.finish(errs);
        if let (Some(role), Some(source), true) = (role, source, errs.len() == before) {
            specs.push(ApiTokenSpec { name, role, source });
        }
    }
    specs
}

fn secret_source(t: &mut Table, errs: &mut Errors) -> Option<ApiTokenSource> {
    let present: Vec<&str> = SECRET_KEYS.iter().copied().filter(|k| t.has(k)).collect();
    if present.len() != 1 {
        errs.push(
            t.path().to_owned(),
            format!(
                "set exactly one of sha256, token_env, token_file (found {})",
                if present.is_empty() {
                    "none".to_owned()
                } else {
                    present.join(", ")
                }
            ),
        );
        for k in present {
            let _ = t.raw(k);
        }
        return None;
    }
    match present[0] {
        "sha256" => {
            let hex_digest = t.string(errs, "sha256")?;
            let mut digest = [0u8; 32];
            match hex::decode_to_slice(hex_digest.trim(), &mut digest) {
                Ok(()) => Some(ApiTokenSource::Sha256(digest)),
                Err(_) => {
                    errs.push(
                        t.key_path("sha256"),
                        "expected 64 hex characters (sha256 of the token, e.g. `printf %s TOKEN | sha256sum`)",
                    );
                    None
                }
            }
        }
        "token_env" => non_empty(t, errs, "token_env").map(ApiTokenSource::Env),
        _ => non_empty(t, errs, "token_file").map(|p| ApiTokenSource::File(PathBuf::from(p))),
    }
}

/// The string at `key`; an empty one is an error at its path, never a token left out
/// without a word (the config would load with one operator fewer).
fn non_empty(t: &mut Table, errs: &mut Errors, key: &'static str) -> Option<String> {
    let value = t.string(errs, key)?;
    if value.trim().is_empty() {
        errs.push(t.key_path(key), "must not be empty");
        return None;
    }
    Some(value)
}
