//! `[api] runtime_token_sources` / `runtime_token_dirs`, and the check a session
//! added at run time (`POST /v1/sessions`) passes before anything is started.
//!
//! Trust model: an admin token may add sessions, but must not become a shell or a
//! file reader on this host. So `token_command` is for the config file only (never
//! allowed at run time, not even when listed), `token_env` and `token_file` only
//! when the operator allows them, and a runtime `token_file` only inside the
//! configured directories, checked on the resolved path at add time and at every
//! read ([`TokenSpec::ConfinedFile`]).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::fields::{describe, Errors, Table};
use super::{
    open_confined, session_from_json, KeyError, RuntimeTokenRules, RuntimeTokenSource, SessionSpec,
    TokenSpec,
};

/// Read `runtime_token_sources`, `runtime_token_dirs` and `runtime_base_urls` from the
/// `[api]` table (`[ccr] base_url` is added to the last once `[ccr]` is read).
pub(super) fn runtime_tokens(t: &mut Table, errs: &mut Errors) -> RuntimeTokenRules {
    let mut rules = RuntimeTokenRules::default();
    let path = t.key_path("runtime_token_sources");
    if let Some(items) = list(t.raw("runtime_token_sources"), &path, errs) {
        rules.sources.clear();
        for (item_path, item) in items {
            let source = match item.as_str() {
                "env" => RuntimeTokenSource::Env,
                "file" => RuntimeTokenSource::File,
                "command" => {
                    errs.push(
                        item_path,
                        "\"command\" is never allowed: token_command runs a shell command on this \
                         host, so only [[sessions]] in the config file may use it",
                    );
                    continue;
                }
                other => {
                    errs.push(
                        item_path,
                        format!("expected \"env\" or \"file\", got {other:?}"),
                    );
                    continue;
                }
            };
            if !rules.sources.contains(&source) {
                rules.sources.push(source);
            }
        }
    }
    let path = t.key_path("runtime_token_dirs");
    let before = errs.len();
    let mut dirs = Vec::new();
    for (item_path, item) in list(t.raw("runtime_token_dirs"), &path, errs).unwrap_or_default() {
        match check_dir(Path::new(&item)) {
            Ok(()) => dirs.push(PathBuf::from(item)),
            Err(e) => errs.push(item_path, e),
        }
    }
    if rules.allows(RuntimeTokenSource::File) && dirs.is_empty() && errs.len() == before {
        errs.push(
            path,
            "required when api.runtime_token_sources allows \"file\": \
             the directories a runtime token_file must be inside",
        );
    }
    rules.dirs = Arc::from(dirs);
    let path = t.key_path("runtime_base_urls");
    let mut base_urls = Vec::new();
    for (item_path, item) in list(t.raw("runtime_base_urls"), &path, errs).unwrap_or_default() {
        match super::ccr::base_url(&item) {
            Ok(url) if !base_urls.contains(&url) => base_urls.push(url),
            Ok(_) => {}
            Err(e) => errs.push(item_path, e),
        }
    }
    rules.base_urls = Arc::from(base_urls);
    rules
}

/// An array of strings, or (from an environment override) one comma-separated string;
/// each item with the path to report it at. `None` when the key is absent.
pub(super) fn list(
    value: Option<&Value>,
    path: &str,
    errs: &mut Errors,
) -> Option<Vec<(String, String)>> {
    match value? {
        Value::String(s) => Some(
            s.split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(|i| (path.to_owned(), i.to_owned()))
                .collect(),
        ),
        Value::Array(items) => Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(s) => Some((format!("{path}[{i}]"), s.clone())),
                    other => {
                        let got = describe(other);
                        errs.push(
                            format!("{path}[{i}]"),
                            format!("expected a string, got {got}"),
                        );
                        None
                    }
                })
                .collect(),
        ),
        other => {
            let got = describe(other);
            errs.push(path, format!("expected an array of strings, got {got}"));
            Some(Vec::new())
        }
    }
}

/// A `runtime_token_dirs` entry: absolute, without `..`, not the root directory.
fn check_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_absolute() {
        return Err(format!(
            "must be an absolute path, got {:?}",
            dir.display().to_string()
        ));
    }
    if dir.components().any(|c| c == Component::ParentDir) {
        return Err("must not contain \"..\"".into());
    }
    if dir.parent().is_none() {
        return Err("must not be the root directory: that would allow every file".into());
    }
    Ok(())
}

/// Validate a session given at run time (`POST /v1/sessions`): the keys of a
/// `[[sessions]]` entry, with the token source limited by `rules`. A refused source
/// is reported at its key without its value; a `token_file` comes back as a
/// [`TokenSpec::ConfinedFile`], checked again at every read.
pub fn runtime_session_from_json(
    value: &Value,
    rules: &RuntimeTokenRules,
) -> Result<Arc<SessionSpec>, Vec<KeyError>> {
    let refuse = |key: &str, message: String| KeyError {
        path: key.to_owned(),
        message,
    };
    let mut refused = Vec::new();
    if value.get("token_command").is_some() {
        refused.push(refuse(
            "token_command",
            "not accepted for sessions added at run time: it runs a shell command on this \
             host, so only [[sessions]] in the config file may use it"
                .into(),
        ));
    }
    for (key, source, name) in [
        ("token_env", RuntimeTokenSource::Env, "env"),
        ("token_file", RuntimeTokenSource::File, "file"),
    ] {
        if value.get(key).is_some() && !rules.allows(source) {
            refused.push(refuse(
                key,
                format!(
                    "not accepted for sessions added at run time: \
                     [api] runtime_token_sources does not allow \"{name}\""
                ),
            ));
        }
    }
    let spec = match session_from_json(value) {
        Ok(spec)
            if spec
                .base_url
                .as_ref()
                .is_some_and(|u| !rules.allows_base_url(u)) =>
        {
            refused.push(base_url_refused());
            return Err(refused);
        }
        Ok(spec) if refused.is_empty() => spec,
        Ok(_) => return Err(refused),
        Err(errors) => {
            refused.extend(errors);
            return Err(refused);
        }
    };
    let token = match &spec.token {
        TokenSpec::Env(_) => return Ok(spec),
        TokenSpec::File(path) => confined(path, &rules.dirs).map_err(|e| vec![e])?,
        // Refused above (command) or by `session_from_json` (literal); never started.
        TokenSpec::Literal(_)
        | TokenSpec::Command(_)
        | TokenSpec::ConfinedFile { .. }
        | TokenSpec::Refused(_) => {
            return Err(vec![refuse(
                "token",
                "this token source is not accepted for sessions added at run time".into(),
            )]);
        }
    };
    Ok(Arc::new(SessionSpec {
        token,
        ..(*spec).clone()
    }))
}

/// Why a runtime session's own `base_url` is refused (without echoing it).
fn base_url_refused() -> KeyError {
    KeyError {
        path: "base_url".into(),
        message: "not accepted for sessions added at run time: it is neither [ccr] base_url \
                  nor one of [api] runtime_base_urls (a session added over the API sends its \
                  token only to an endpoint the config file names)"
            .into(),
    }
}

/// How a session added at run time is stored for a cluster (`ccr_sessions.spec`): the
/// fields of `POST /v1/sessions` as JSON, the token as a reference (`token_env`, or the
/// `token_file` path), never a secret. `None` for a spec whose token source the API does
/// not accept (not one [`runtime_session_from_json`] returns), which is never stored.
pub fn stored_json(spec: &SessionSpec) -> Option<String> {
    let (token_env, token_file) = match &spec.token {
        TokenSpec::Env(var) => (Some(var.clone()), None),
        TokenSpec::ConfinedFile { path, .. } => (None, Some(path.to_str()?.to_owned())),
        _ => return None,
    };
    let body = ccr_protocol::api::AddSessionBody {
        id: spec.id.to_string(),
        labels: (!spec.labels.is_empty()).then(|| spec.labels.clone()),
        viewer_only: spec.viewer_only.then_some(true),
        token_env,
        token_file,
        base_url: spec.base_url.clone(),
        organization_uuid: spec.organization_uuid.clone(),
    };
    serde_json::to_string(&body).ok()
}

/// Session `id` as another instance stored it ([`stored_json`]), as this instance runs it.
/// Never fails: what this instance may not use becomes a [`TokenSpec::Refused`] token, so
/// the session shows why as its last error instead of connecting (a token source that
/// `rules` — this instance's `[api] runtime_token_sources` — does not allow, a stored
/// spec this build cannot read). A `token_file` is confined to this instance's
/// `runtime_token_dirs` and checked at every read; a variable or file missing here shows
/// up at connect, as for a configured session.
pub fn stored_session(id: &str, json: &str, rules: &RuntimeTokenRules) -> Arc<SessionSpec> {
    let refused = |why: String| {
        Arc::new(SessionSpec {
            id: Arc::from(id),
            labels: Vec::new(),
            token: TokenSpec::Refused(why),
            viewer_only: false,
            base_url: None,
            organization_uuid: None,
        })
    };
    let value: Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => return refused(format!("its stored spec is not JSON: {e}")),
    };
    if value.get("id").and_then(Value::as_str) != Some(id) {
        return refused("its stored spec names another session id".into());
    }
    let spec = match session_from_json(&value) {
        Ok(spec) => spec,
        Err(errors) => {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return refused(format!(
                "its stored spec is not valid for this build: {}",
                errors.join("; ")
            ));
        }
    };
    let not_allowed = |name: &str| {
        TokenSpec::Refused(format!(
            "[api] runtime_token_sources of this instance does not allow \"{name}\""
        ))
    };
    let token = match &spec.token {
        // Checked on every instance, as the token source is: each sends the token itself.
        _ if spec
            .base_url
            .as_ref()
            .is_some_and(|u| !rules.allows_base_url(u)) =>
        {
            TokenSpec::Refused(
                "its base_url is neither [ccr] base_url nor one of [api] runtime_base_urls \
                 of this instance"
                    .into(),
            )
        }
        TokenSpec::Env(var) if rules.allows(RuntimeTokenSource::Env) => TokenSpec::Env(var.clone()),
        TokenSpec::Env(_) => not_allowed("env"),
        TokenSpec::File(path) if rules.allows(RuntimeTokenSource::File) => {
            TokenSpec::ConfinedFile {
                path: path.clone(),
                dirs: rules.dirs.clone(),
            }
        }
        TokenSpec::File(_) => not_allowed("file"),
        _ => TokenSpec::Refused(
            "this token source is not accepted for sessions added at run time".into(),
        ),
    };
    Arc::new(SessionSpec {
        token,
        ..(*spec).clone()
    })
}

/// A runtime `token_file`: absolute, and an existing regular file inside `dirs` once
/// resolved. One message for every refusal, so the answer reveals nothing about
/// files outside the directories.
fn confined(path: &Path, dirs: &Arc<[PathBuf]>) -> Result<TokenSpec, KeyError> {
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let refused = || KeyError {
        path: "token_file".into(),
        message: format!(
            "must be the absolute path of an existing regular file inside one of \
             [api] runtime_token_dirs ({}), symlinks and \"..\" resolved",
            shown.join(", ")
        ),
    };
    if !path.is_absolute() {
        return Err(refused());
    }
    open_confined(path, dirs).map_err(|_| refused())?;
    Ok(TokenSpec::ConfinedFile {
        path: path.to_owned(),
        dirs: dirs.clone(),
    })
}
