//! Unit tests of `runtime.rs`: the `[api]` keys and the runtime session check.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use super::*;
use crate::config::{load_from_str, Config, ConfigError};

fn load(api: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let toml = format!("[api]\nauth = \"disabled\"\n{api}\n[sim]\nembedded = true\n");
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_from_str(&toml, env)
}

fn problems(api: &str, env: &[(&str, &str)]) -> Vec<String> {
    match load(api, env) {
        Err(ConfigError::Invalid(list)) => list.iter().map(ToString::to_string).collect(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn rules(api: &str, env: &[(&str, &str)]) -> RuntimeTokenRules {
    load(api, env)
        .unwrap_or_else(|e| panic!("{e}"))
        .api
        .runtime_tokens
}

#[test]
fn default_allows_env_only() {
    let r = rules("", &[]);
    assert_eq!(r.sources, [RuntimeTokenSource::Env]);
    assert!(r.dirs.is_empty());
    assert!(!r.allows(RuntimeTokenSource::File));
}

#[test]
fn sources_and_dirs_from_file_or_environment() {
    let r = rules(
        "runtime_token_sources = [\"file\", \"env\", \"file\"]\nruntime_token_dirs = [\"/srv/tok\"]",
        &[],
    );
    assert_eq!(
        r.sources,
        [RuntimeTokenSource::File, RuntimeTokenSource::Env]
    );
    assert_eq!(&*r.dirs, [PathBuf::from("/srv/tok")]);
    let r = rules(
        "",
        &[
            ("CCR_SUPERVISOR__API__RUNTIME_TOKEN_SOURCES", "file"),
            ("CCR_SUPERVISOR__API__RUNTIME_TOKEN_DIRS", "/a, /b/c"),
        ],
    );
    assert_eq!(r.sources, [RuntimeTokenSource::File]);
    assert_eq!(&*r.dirs, [PathBuf::from("/a"), PathBuf::from("/b/c")]);
    // An empty list allows no runtime session at all.
    assert!(rules("runtime_token_sources = []", &[]).sources.is_empty());
}

#[test]
fn command_is_refused_at_validation_with_a_clear_message() {
    let p = problems("runtime_token_sources = [\"env\", \"command\"]", &[]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("api.runtime_token_sources[1]: \"command\" is never allowed"),
        "{p:?}"
    );
    assert!(p[0].contains("shell command"), "{p:?}");
    let p = problems(
        "",
        &[("CCR_SUPERVISOR__API__RUNTIME_TOKEN_SOURCES", "env,command")],
    );
    assert!(
        p[0].contains("CCR_SUPERVISOR__API__RUNTIME_TOKEN_SOURCES"),
        "{p:?}"
    );
    let p = problems(
        "runtime_token_sources = [\"Env\", 3]\nruntime_token_dirs = \"\"",
        &[],
    );
    assert!(
        p.iter()
            .any(|e| e.contains("expected \"env\" or \"file\", got \"Env\"")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|e| e.contains("[1]: expected a string, got 3")),
        "{p:?}"
    );
}

#[test]
fn dirs_must_be_absolute_plain_and_not_root_and_are_needed_for_file() {
    let p = problems(
        "runtime_token_dirs = [\"rel/dir\", \"/a/../etc\", \"/\", \"\"]",
        &[],
    );
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p[0].contains("[0]: must be an absolute path"), "{p:?}");
    assert!(p[1].contains("[1]: must not contain \"..\""), "{p:?}");
    assert!(
        p[2].contains("[2]: must not be the root directory"),
        "{p:?}"
    );
    assert!(p[3].contains("[3]: must be an absolute path"), "{p:?}");
    let p = problems("runtime_token_sources = [\"file\"]", &[]);
    assert_eq!(
        p,
        [
            "api.runtime_token_dirs: required when api.runtime_token_sources allows \"file\": \
          the directories a runtime token_file must be inside"
        ]
    );
}

fn messages(r: Result<Arc<SessionSpec>, Vec<KeyError>>) -> Vec<String> {
    r.expect_err("refused")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn runtime_sessions_use_only_allowed_sources_and_never_echo_values() {
    let env_only = RuntimeTokenRules::default();
    let spec = runtime_session_from_json(&json!({"id":"a","token_env":"TOK"}), &env_only).unwrap();
    assert_eq!(spec.token, TokenSpec::Env("TOK".into()));
    let m = messages(runtime_session_from_json(
        &json!({"id":"a","token_command":"printf sk-secret-cmd"}),
        &env_only,
    ));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].starts_with("token_command: not accepted"), "{m:?}");
    let m = messages(runtime_session_from_json(
        &json!({"id":"a","token_file":"/etc/sk-secret-path"}),
        &env_only,
    ));
    assert!(
        m[0].starts_with("token_file: not accepted") && m[0].contains("\"file\""),
        "{m:?}"
    );
    let file_only = RuntimeTokenRules {
        sources: vec![RuntimeTokenSource::File],
        dirs: Arc::from(vec![PathBuf::from("/nonexistent-dir")]),
        ..Default::default()
    };
    let m = messages(runtime_session_from_json(
        &json!({"id":"a","token_env":"SK_SECRET_VAR"}),
        &file_only,
    ));
    assert!(
        m[0].starts_with("token_env: not accepted") && m[0].contains("\"env\""),
        "{m:?}"
    );
    let m = messages(runtime_session_from_json(
        &json!({"id":"","token":"sk-secret-lit","token_command":"sk-secret-cmd"}),
        &env_only,
    ));
    assert!(m.len() >= 3, "every problem at once: {m:?}");
    for m in m {
        assert!(!m.contains("sk-secret"), "{m}");
    }
}

#[test]
fn runtime_token_file_is_confined_and_checked_again_at_every_read() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("tok");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a"), "in\n").unwrap();
    std::fs::write(base.path().join("out"), "sk-secret-out").unwrap();
    std::os::unix::fs::symlink(base.path().join("out"), dir.join("ln")).unwrap();
    let rules = RuntimeTokenRules {
        sources: vec![RuntimeTokenSource::File],
        dirs: Arc::from(vec![dir.clone()]),
        ..Default::default()
    };
    let body = |p: &Path| json!({"id":"a","token_file": p.display().to_string()});
    let spec = runtime_session_from_json(&body(&dir.join("a")), &rules).unwrap();
    assert!(
        matches!(&spec.token, TokenSpec::ConfinedFile { path, dirs }
            if *path == dir.join("a") && **dirs == [dir.clone()]),
        "{:?}",
        spec.token
    );
    for escape in [
        dir.join("ln"),
        dir.join("..").join("out"),
        dir.join("none"),
        dir.clone(),
    ] {
        let m = messages(runtime_session_from_json(&body(&escape), &rules));
        assert!(
            m[0].starts_with("token_file: must be the absolute path"),
            "{m:?}"
        );
        assert!(
            m[0].contains(&dir.display().to_string()),
            "names the dirs: {m:?}"
        );
    }
}

#[test]
fn a_runtime_session_names_only_an_endpoint_the_config_file_names() {
    // An admin could otherwise have this host send the value of any of its environment
    // variables (a webhook secret, another operator's token) to a server of their choosing.
    let body = |url: &str| json!({"id":"a","token_env":"SK_SECRET_VAR","base_url": url});
    let m = messages(runtime_session_from_json(
        &body("http://127.0.0.1:9"),
        &RuntimeTokenRules::default(),
    ));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("base_url: not accepted") && m[0].contains("runtime_base_urls"),
        "{m:?}"
    );
    assert!(
        !m[0].contains("127.0.0.1") && !m[0].contains("SK_SECRET"),
        "{m:?}"
    );
    // Listed (normalized like base_url), or the shared [ccr] base_url: accepted.
    let toml = "[api]\nauth = \"disabled\"\nruntime_base_urls = [\"https://eu.example.com/\", \"https://eu.example.com\"]\n\
                [ccr]\nbase_url = \"https://ccr.example.com\"\norganization_uuid = \"o\"\n";
    let rules = load_from_str(toml, HashMap::new())
        .unwrap()
        .api
        .runtime_tokens;
    assert_eq!(
        *rules.base_urls,
        ["https://eu.example.com", "https://ccr.example.com"]
    );
    for url in ["https://eu.example.com", "https://ccr.example.com/"] {
        let spec = runtime_session_from_json(&body(url), &rules).unwrap();
        assert_eq!(spec.base_url.as_deref(), Some(url.trim_end_matches('/')));
    }
    let m = messages(runtime_session_from_json(
        &body("https://evil.example.com"),
        &rules,
    ));
    assert!(m[0].starts_with("base_url: not accepted"), "{m:?}");
    // From the environment, comma-separated; each entry checked.
    let m = problems(
        "",
        &[(
            "CCR_SUPERVISOR__API__RUNTIME_BASE_URLS",
            "https://a.example.com, ftp://b",
        )],
    );
    assert!(
        m.iter()
            .any(|m| m.starts_with("api.runtime_base_urls: must start with http")),
        "{m:?}"
    );
    // Stored by another instance: this instance's own list decides; the token is never read.
    let json = r#"{"id":"a","token_env":"SK_SECRET_VAR","base_url":"https://evil.example.com"}"#;
    let spec = stored_session("a", json, &rules);
    assert!(
        matches!(&spec.token, TokenSpec::Refused(why) if why.contains("runtime_base_urls")),
        "{:?}",
        spec.token
    );
    let json = r#"{"id":"a","token_env":"T","base_url":"https://eu.example.com"}"#;
    assert_eq!(
        stored_session("a", json, &rules).token,
        TokenSpec::Env("T".into())
    );
}

#[test]
fn runtime_sessions_may_override_the_endpoint_and_unknown_keys_stay_errors() {
    let rules = RuntimeTokenRules {
        base_urls: Arc::from(vec!["https://eu.example.com".to_owned()]),
        ..Default::default()
    };
    let spec = runtime_session_from_json(
        &json!({"id":"a","token_env":"T","base_url":"https://eu.example.com/","organization_uuid":"org-2"}),
        &rules,
    )
    .unwrap();
    assert_eq!(spec.base_url.as_deref(), Some("https://eu.example.com"));
    assert_eq!(spec.organization_uuid.as_deref(), Some("org-2"));
    let m = messages(runtime_session_from_json(
        &json!({"id":"a","token_env":"T","base_url":"eu.example.com","organization":"x"}),
        &rules,
    ));
    assert!(
        m.iter()
            .any(|m| m.starts_with("base_url: must start with http")),
        "{m:?}"
    );
    assert!(
        m.iter().any(|m| m.starts_with("organization: unknown key")),
        "{m:?}"
    );
}
