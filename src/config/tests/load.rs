//! Unit tests of the loader (`load.rs`), kept in their own file for length.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::config::{Secret, TokenSpec};

/// Minimal valid non-demo `[ccr]` section.
const CCR: &str = "[ccr]\nbase_url = \"https://api.example.com/\"\norganization_uuid = \"org-1\"\n";

fn ok(toml: &str) -> Config {
    with_env(toml, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// Operator auth is on by default and needs tokens; these tests are about
/// other sections, so they switch it off unless a test sets it itself.
fn with_env(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !toml.contains("auth =") && !toml.contains("api = ") {
        env.entry("CCR_SUPERVISOR__API__AUTH".into())
            .or_insert_with(|| "disabled".into());
    }
    load_from_str(toml, env)
}

#[test]
fn operator_tokens_roles_and_sources() {
    let digest = "10a4c7c9fc5206d6f36dc6944a81bb6f4a3cb0e25014ae3b12e6c3e52712292a";
    let cfg = ok(&format!(
        "{CCR}[api]\nauth = \"enabled\"\n[[api.tokens]]\nname = \"ops\"\nrole = \"admin\"\nsha256 = \"{digest}\"\n\
         [[api.tokens]]\nname = \"ci\"\nrole = \"viewer\"\ntoken_env = \"CI_TOKEN\"\n"
    ));
    assert!(cfg.api.auth_enabled);
    assert_eq!(cfg.api.tokens.len(), 2);
    assert_eq!(cfg.api.tokens[0].role, crate::config::Role::Admin);
    assert!(
        !format!("{:?}", cfg.api).contains(digest),
        "digest redacted in Debug"
    );
    let bad = problems(&format!(
        "{CCR}[api]\nauth = \"enabled\"\n[[api.tokens]]\nname = \"x\"\nrole = \"root\"\ntoken = \"hunter2-secret\"\n\
         [[api.tokens]]\nname = \"x\"\nrole = \"viewer\"\nsha256 = \"zz\"\n"
    ));
    let text = bad.join("\n");
    for want in [
        "api.tokens[0].role",
        "api.tokens[0].token",
        "api.tokens[1].name",
        "api.tokens[1].sha256",
    ] {
        assert!(text.contains(want), "missing {want} in {text}");
    }
    assert!(!text.contains("hunter2"), "plaintext token echoed: {text}");
    let none = problems(&format!("{CCR}[api]\nauth = \"enabled\"\n"));
    assert!(none.iter().any(|p| p.starts_with("api.tokens")), "{none:?}");
    let off = ok(&format!("{CCR}[api]\nauth = \"disabled\"\n"));
    assert!(!off.api.auth_enabled);
}

#[test]
fn an_empty_operator_token_source_is_an_error_at_its_key() {
    for (key, value) in [("token_env", ""), ("token_file", ""), ("token_env", "  ")] {
        let p = problems(&format!(
            "{CCR}[api]\nauth = \"enabled\"\n\
             [[api.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken_env = \"OPS_TOKEN\"\n\
             [[api.tokens]]\nname = \"ci\"\nrole = \"viewer\"\n{key} = \"{value}\"\n"
        ));
        assert_eq!(p, [format!("api.tokens[1].{key}: must not be empty")]);
    }
}

#[test]
fn metrics_auth_is_viewer_unless_set_to_none() {
    use crate::config::MetricsAuth;
    assert_eq!(ok(CCR).api.metrics_auth, MetricsAuth::Viewer);
    let none = ok(&format!(
        "{CCR}[api]\nauth = \"disabled\"\nmetrics_auth = \"none\"\n"
    ));
    assert_eq!(none.api.metrics_auth, MetricsAuth::None);
    let viewer = ok(&format!(
        "{CCR}[api]\nauth = \"disabled\"\nmetrics_auth = \"viewer\"\n"
    ));
    assert_eq!(viewer.api.metrics_auth, MetricsAuth::Viewer);
    let bad = problems(&format!(
        "{CCR}[api]\nauth = \"disabled\"\nmetrics_auth = \"anyone\"\n"
    ));
    assert!(
        bad.iter()
            .any(|p| p.starts_with("api.metrics_auth") && p.contains("\"anyone\"")),
        "{bad:?}"
    );
}

/// The key errors of an invalid config, as `path: message` lines.
fn problems(toml: &str) -> Vec<String> {
    problems_env(toml, &[])
}

fn problems_env(toml: &str, env: &[(&str, &str)]) -> Vec<String> {
    match with_env(toml, env) {
        Err(ConfigError::Invalid(list)) => list.iter().map(ToString::to_string).collect(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn has(problems: &[String], needle: &str) -> bool {
    problems.iter().any(|p| p.contains(needle))
}

#[test]
fn empty_config_in_demo_mode_is_all_defaults() {
    let c = ok("[sim]\nembedded = true\n");
    assert_eq!(c.api.bind, "127.0.0.1:8700".parse().unwrap());
    assert_eq!(c.api.event_buffer, 262_144);
    assert_eq!(c.api.history_total_bytes, 48 << 20);
    assert_eq!(
        c.api.history_total_bytes,
        crate::config::DEFAULT_HISTORY_TOTAL_BYTES
    );
    assert_eq!(c.api.request_body_timeout, Duration::from_secs(10));
    assert_eq!(c.ccr.base_url, "");
    assert_eq!(c.ccr.organization_uuid, "");
    assert_eq!(c.ccr.anthropic_version, "2023-06-01");
    assert_eq!(c.ccr.anthropic_beta, "ccr-byoc-2025-07-29");
    assert_eq!(c.ccr.max_frame_bytes, 16 << 20);
    assert_eq!(c.ccr.ping_interval, Duration::from_secs(30));
    assert_eq!(c.ccr.pong_timeout, Duration::from_secs(10));
    assert_eq!(c.ccr.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.ccr.interrupt_timeout, Duration::from_secs(10));
    assert_eq!(c.ccr.send_timeout, Duration::from_secs(30));
    assert_eq!(c.ccr.token_command_timeout, Duration::from_secs(10));
    assert_eq!(c.reconnect, ReconnectConfig::default());
    let s = &c.supervisor;
    assert_eq!((s.arbiters, s.max_restarts), (0, 5));
    assert_eq!(s.restart_period, Duration::from_secs(60));
    assert_eq!(s.restart_backoff_initial, Duration::from_millis(500));
    assert_eq!(s.restart_backoff_max, Duration::from_secs(30));
    assert_eq!(
        c.log,
        LogConfig {
            format: LogFormat::Pretty,
            level: "info".into()
        }
    );
    assert!(c.sim.embedded);
    assert_eq!(c.sim.bind, "127.0.0.1:0".parse().unwrap());
    assert_eq!(c.sim.turn_pause, Duration::from_secs(5));
    assert!(c.sessions.is_empty());
}

#[test]
fn empty_config_without_sim_needs_base_url_and_org() {
    let p = problems("");
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(has(&p, "ccr.base_url: required"));
    assert!(has(&p, "ccr.organization_uuid: required"));
}

#[test]
fn every_key_is_parsed() {
    let c = ok(r#"
        [api]
        bind = "0.0.0.0:9000"
        event_buffer = 16
        history_total_bytes = 4096
        request_body_timeout = "2s"
        [ccr]
        base_url = "http://localhost:8080//"
        organization_uuid = "00000000-0000-4000-8000-000000000000"
        anthropic_version = "2024-01-01"
        anthropic_beta = "beta-x"
        max_frame_bytes = 2048
        ping_interval = "1m 30s"
        pong_timeout = "500ms"
        connect_timeout = "3s"
        interrupt_timeout = "4s"
        send_timeout = "5s"
        token_command_timeout = "6s"
        [reconnect]
        transient_delay = "0s"
        transient_attempts = 9
        not_found_delay = "3s"
        not_found_attempts = 1
        backoff_initial = "100ms"
        backoff_max = "2m"
        jitter = 0
        [supervisor]
        arbiters = 4
        max_restarts = 0
        restart_period = "10s"
        restart_backoff_initial = "1s"
        restart_backoff_max = "1s"
        [log]
        format = "json"
        level = "ccr_supervisor=debug,info"
        [sim]
        embedded = false
        bind = "[::1]:7000"
        turn_pause = "0s"
    "#);
    assert_eq!(c.api.bind, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(c.api.event_buffer, 16);
    assert_eq!(c.api.history_total_bytes, 4096);
    assert_eq!(c.api.request_body_timeout, Duration::from_secs(2));
    assert_eq!(c.ccr.base_url, "http://localhost:8080");
    assert_eq!(c.ccr.anthropic_version, "2024-01-01");
    assert_eq!(c.ccr.anthropic_beta, "beta-x");
    assert_eq!(c.ccr.max_frame_bytes, 2048);
    assert_eq!(c.ccr.ping_interval, Duration::from_secs(90));
    assert_eq!(c.ccr.pong_timeout, Duration::from_millis(500));
    assert_eq!(c.ccr.connect_timeout, Duration::from_secs(3));
    assert_eq!(c.ccr.interrupt_timeout, Duration::from_secs(4));
    assert_eq!(c.ccr.send_timeout, Duration::from_secs(5));
    assert_eq!(c.ccr.token_command_timeout, Duration::from_secs(6));
    let r = &c.reconnect;
    assert_eq!(
        (r.transient_delay, r.transient_attempts),
        (Duration::ZERO, 9)
    );
    assert_eq!(
        (r.not_found_delay, r.not_found_attempts),
        (Duration::from_secs(3), 1)
    );
    assert_eq!(
        (r.backoff_initial, r.backoff_max),
        (Duration::from_millis(100), Duration::from_secs(120))
    );
    assert_eq!(r.jitter, 0.0);
    let s = &c.supervisor;
    assert_eq!(
        (s.arbiters, s.max_restarts, s.restart_period),
        (4, 0, Duration::from_secs(10))
    );
    assert_eq!(
        (s.restart_backoff_initial, s.restart_backoff_max),
        (Duration::from_secs(1), Duration::from_secs(1))
    );
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "ccr_supervisor=debug,info");
    assert!(!c.sim.embedded);
    assert_eq!(c.sim.bind, "[::1]:7000".parse().unwrap());
    assert_eq!(c.sim.turn_pause, Duration::ZERO);
}

#[test]
fn env_overrides_nested_keys_as_strings() {
    let c = with_env(
        CCR,
        &[
            ("CCR_SUPERVISOR__CCR__PING_INTERVAL", "5s"),
            ("CCR_SUPERVISOR__API__BIND", "127.0.0.1:9100"),
            ("CCR_SUPERVISOR__RECONNECT__TRANSIENT_ATTEMPTS", "7"),
            ("CCR_SUPERVISOR__RECONNECT__JITTER", "0.25"),
            ("CCR_SUPERVISOR__SIM__EMBEDDED", "TRUE"),
            ("CCR_SUPERVISOR_CONFIG", "not ours: single separator"),
            ("PATH", "/usr/bin"),
        ],
    )
    .unwrap();
    assert_eq!(c.ccr.ping_interval, Duration::from_secs(5));
    assert_eq!(c.api.bind, "127.0.0.1:9100".parse().unwrap());
    assert_eq!(c.reconnect.transient_attempts, 7);
    assert_eq!(c.reconnect.jitter, 0.25);
    assert!(c.sim.embedded);
    // The file's value is kept where env says nothing.
    assert_eq!(c.ccr.base_url, "https://api.example.com");
}

#[test]
fn env_values_are_never_reparsed_and_errors_name_the_variable() {
    let toml = format!("{CCR}[[sessions]]\nid = \"s\"\ntoken = \"x\"\n");
    // `try_parsing` would have turned this into 7.
    let c = with_env(&toml, &[("CCR_SUPERVISOR__CCR__ORGANIZATION_UUID", "007")]).unwrap();
    assert_eq!(c.ccr.organization_uuid, "007");
    let p = problems_env(CCR, &[("CCR_SUPERVISOR__CCR__PING_INTERVAL", "soon")]);
    assert_eq!(
        p,
        [
            "ccr.ping_interval: expected a duration like \"30s\", got \"soon\" \
          (set by environment variable CCR_SUPERVISOR__CCR__PING_INTERVAL)"
        ]
    );
    let p = problems_env(CCR, &[("CCR_SUPERVISOR__CCR__PING_INTREVAL", "5s")]);
    assert!(has(&p, "ccr.ping_intreval: unknown key"), "{p:?}");
}

#[test]
fn several_bad_keys_are_all_reported_with_paths() {
    let toml = r#"
        [api]
        bind = "localhost:80"
        event_buffer = 0
        history_total_bytes = 10
        [ccr]
        base_url = "ftp://x"
        ping_interval = "soon"
        max_frame_bytes = 10
        [reconnect]
        backoff_initial = "10s"
        backoff_max = "1s"
        jitter = 1.5
        transient_attempts = -1
        [supervisor]
        arbiters = 1000
        [log]
        format = "xml"
        level = ""
        [sim]
        embedded = "maybe"
        [[sessions]]
        id = "a"
        token_env = "A"
        [[sessions]]
        id = "bad id"
        [[sessions]]
        id = "c"
        token_env = ""
    "#;
    let err = load_from_str(toml, HashMap::new()).unwrap_err();
    let text = err.to_string();
    let expected = [
        "api.bind: expected a socket address like \"127.0.0.1:8700\", got \"localhost:80\"",
        "api.event_buffer: must be at least 1, got 0",
        "api.history_total_bytes: must be at least 1024, got 10",
        "ccr.base_url: must start with http:// or https://",
        "ccr.max_frame_bytes: must be between 1024 and 67108864, got 10",
        "ccr.ping_interval: expected a duration like \"30s\", got \"soon\"",
        "reconnect.transient_attempts: expected a non-negative integer, got -1",
        "reconnect.jitter: must be between 0 and 1, got 1.5",
        "reconnect.backoff_max: must be >= reconnect.backoff_initial",
        "supervisor.arbiters: must be between 0 and 256, got 1000",
        "log.format: expected \"pretty\" or \"json\", got \"xml\"",
        "log.level: must not be empty",
        "sim.embedded: expected true or false, got \"maybe\"",
        "sessions[1].id: may contain only letters, digits",
        "sessions[1]: set exactly one of token, token_env, token_file, token_command (found: none)",
        "sessions[2].token_env: must not be empty",
        "ccr.organization_uuid: required unless [sim] embedded = true",
        "api.tokens: auth is enabled but no [[api.tokens]] are configured",
    ];
    for e in expected {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(e)),
            "missing {e:?} in:\n{text}"
        );
    }
    // One header line, then exactly one line per problem.
    assert_eq!(text.lines().count(), expected.len() + 1, "{text}");
    assert!(text.starts_with(&format!(
        "invalid configuration ({} problem(s)):",
        expected.len()
    )));
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    let toml = format!(
        "unknown_top = 1\n[API]\nbind = \"1.2.3.4:5\"\n[api]\nbnd = \"x\"\n{CCR}pingInterval = \"1s\"\n\
         [[sessions]]\nid = \"s\"\ntoken_env = \"T\"\ntokn = \"sekret-typo\"\n"
    );
    let p = problems(&toml);
    for key in [
        "unknown_top",
        "API",
        "api.bnd",
        "ccr.pingInterval",
        "sessions[0].tokn",
    ] {
        assert!(
            has(&p, &format!("{key}: unknown key (expected one of: ")),
            "{key} in {p:?}"
        );
    }
    assert_eq!(p.len(), 5, "{p:?}");
    assert!(!p.concat().contains("sekret-typo"));
}

#[test]
fn wrongly_shaped_sections_are_errors() {
    let p = problems(&format!("api = 3\nsessions = \"x\"\n{CCR}"));
    assert!(has(&p, "api: expected a table ([api]), got 3"), "{p:?}");
    assert!(
        has(
            &p,
            "sessions: expected an array of tables ([[sessions]]), got \"x\""
        ),
        "{p:?}"
    );
    let p = problems(&format!("sessions = [1]\n{CCR}"));
    assert!(has(&p, "sessions[0]: expected a table, got 1"), "{p:?}");
}

#[test]
fn each_token_source_maps_to_its_kind() {
    let toml = format!(
        "{CCR}[[sessions]]\nid = \"lit\"\ntoken = \"007\"\nlabels = [\"a\", \"b\"]\nviewer_only = true\n\
         [[sessions]]\nid = \"env\"\ntoken_env = \"MY_TOKEN\"\n\
         [[sessions]]\nid = \"file\"\ntoken_file = \"/run/secrets/tok\"\n\
         [[sessions]]\nid = \"cmd:1.x_y-z\"\ntoken_command = \"pass show ccr\"\n"
    );
    let c = ok(&toml);
    let tokens: Vec<&TokenSpec> = c.sessions.iter().map(|s| &s.token).collect();
    assert_eq!(
        tokens,
        [
            &TokenSpec::Literal(Secret::new("007")),
            &TokenSpec::Env("MY_TOKEN".into()),
            &TokenSpec::File("/run/secrets/tok".into()),
            &TokenSpec::Command("pass show ccr".into()),
        ]
    );
    assert_eq!(&*c.sessions[0].id, "lit");
    assert_eq!(c.sessions[0].labels, ["a", "b"]);
    assert!(c.sessions[0].viewer_only);
    assert!(c.sessions[1].labels.is_empty() && !c.sessions[1].viewer_only);
    assert_eq!(&*c.sessions[3].id, "cmd:1.x_y-z");
}

#[test]
fn token_source_must_be_exactly_one() {
    let toml = format!(
        "{CCR}[[sessions]]\nid = \"none\"\n\
         [[sessions]]\nid = \"two\"\ntoken = \"sekret-two\"\ntoken_env = \"T\"\n\
         [[sessions]]\nid = \"all\"\ntoken = \"sekret-all\"\ntoken_env = \"T\"\ntoken_file = \"f\"\ntoken_command = \"c\"\n"
    );
    let p = problems(&format!("{toml}[[sessions]]\nid = \"typed\"\ntoken = 5\n"));
    assert_eq!(
        p,
        [
            "sessions[0]: set exactly one of token, token_env, token_file, token_command (found: none)",
            "sessions[1]: set exactly one of token, token_env, token_file, token_command (found: token, token_env)",
            "sessions[2]: set exactly one of token, token_env, token_file, token_command \
             (found: token, token_env, token_file, token_command)",
            "sessions[3].token: expected a string (value not shown: secret)",
        ]
    );
}

#[test]
fn duplicate_ids_name_both_indices() {
    let entry = |id: &str| format!("[[sessions]]\nid = \"{id}\"\ntoken_env = \"T\"\n");
    let toml = format!("{CCR}{}{}{}", entry("a"), entry("b"), entry("a"));
    let p = problems(&toml);
    assert_eq!(
        p,
        ["sessions[2].id: duplicate id \"a\", already used by sessions[0]"]
    );
    let long = "x".repeat(129);
    let p = problems(&format!("{CCR}{}{}", entry(""), entry(&long)));
    assert!(has(&p, "sessions[0].id: required"), "{p:?}");
    assert!(
        has(
            &p,
            "sessions[1].id: must be at most 128 characters, got 129"
        ),
        "{p:?}"
    );
}

#[test]
fn literal_token_never_leaks() {
    const SECRET: &str = "sk-ant-sekret-4242";
    let bad = [
        // Valid token, other keys wrong: the token must not be echoed anywhere.
        format!("[[sessions]]\nid = \"s\"\ntoken = \"{SECRET}\"\ntoken_env = \"T\"\nviewer_only = 3\n"),
        format!("[[sessions]]\nid = \"s\"\ntoken = [\"{SECRET}\"]\n"),
        format!("[[sessions]]\nid = \"s\"\ntoken_command = 1\ntoken_env = \"X\"\nsecret_typo = \"{SECRET}\"\n"),
        // Broken TOML on the token's own line.
        format!("[[sessions]]\nid = \"s\"\ntoken = \"{SECRET}\n"),
        format!("[[sessions]]\nid = \"s\"\ntoken = \"{SECRET}\"\ntoken = \"{SECRET}\"\n"),
    ];
    for toml in &bad {
        let err = load_from_str(toml, HashMap::new()).unwrap_err();
        assert!(!err.to_string().contains(SECRET), "{err}");
        assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
    }
    let env = [("CCR_SUPERVISOR__SIM__EMBEDDED", SECRET)];
    let err = with_env(
        &format!("[[sessions]]\nid = \"s\"\ntoken = \"{SECRET}\"\n"),
        &env,
    )
    .unwrap_err();
    assert!(err.to_string().contains("sim.embedded"), "{err}");
    let c = ok(&format!(
        "[sim]\nembedded = true\n[[sessions]]\nid = \"s\"\ntoken = \"{SECRET}\"\n"
    ));
    assert!(!format!("{c:?}").contains(SECRET));
    assert!(!format!("{c:#?}").contains(SECRET));
}

#[test]
fn toml_syntax_error_is_parse() {
    let err = load_from_str("[api\nbind = 1", HashMap::new()).unwrap_err();
    assert!(matches!(err, ConfigError::Parse(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("line 1, column 5") && !text.contains('|'),
        "{text}"
    );
}

#[test]
fn missing_file_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let err = load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
}

#[test]
fn file_on_disk_loads_and_parse_errors_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[sim]\nembedded = true\n[api]\nauth = \"disabled\"\n",
    )
    .unwrap();
    assert!(load(&path).unwrap().sim.embedded);
    std::fs::write(&path, "[sim\n").unwrap();
    let err = load(&path).unwrap_err();
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
}

#[test]
fn shipped_config_toml_loads_cleanly() {
    let c = ok(include_str!("../../../config.toml"));
    assert!(c.sim.embedded);
    assert_eq!(c.api.bind, "127.0.0.1:8700".parse().unwrap());
    assert_eq!(
        c.ccr.organization_uuid,
        "00000000-0000-4000-8000-000000000000"
    );
    let ids: Vec<&str> = c.sessions.iter().map(|s| &*s.id).collect();
    assert_eq!(ids, ["demo-1", "demo-2", "demo-3", "demo-4"]);
    assert_eq!(c.sessions.iter().filter(|s| s.viewer_only).count(), 1);
    assert!(c
        .sessions
        .iter()
        .all(|s| matches!(s.token, TokenSpec::Literal(_))));
    assert!(c.sessions.iter().any(|s| !s.labels.is_empty()));
    // Every documented default matches the loader's defaults.
    assert_eq!(c.reconnect, ReconnectConfig::default());
}

#[test]
fn api_limits_default_parse_and_streams_must_leave_connections() {
    let d = ok("[sim]\nembedded = true\n").api.limits;
    assert_eq!(d, crate::config::ApiLimits::default());
    assert_eq!((d.workers, d.max_connections), (0, 4096));
    assert_eq!(
        (d.max_stream_subscribers, d.max_stream_subscribers_per_token),
        (1024, 256)
    );
    let c = ok(&format!(
        "{CCR}[api]\nworkers = 3\nmax_connections = 100\nmax_stream_subscribers = 50\n\
         max_stream_subscribers_per_token = 5\n"
    ));
    assert_eq!(c.api.limits.workers, 3);
    assert_eq!(c.api.limits.worker_count(), 3);
    assert_eq!(c.api.limits.max_connections, 100);
    assert_eq!(c.api.limits.max_stream_subscribers, 50);
    assert_eq!(c.api.limits.max_stream_subscribers_per_token, 5);
    let bad = problems(&format!(
        "{CCR}[api]\nmax_connections = 100\nmax_stream_subscribers = 100\n\
         max_stream_subscribers_per_token = 0\nworkers = 1000\n"
    ));
    assert!(
        has(
            &bad,
            "api.max_stream_subscribers: must be below api.max_connections (100)"
        ),
        "{bad:?}"
    );
    assert!(
        has(
            &bad,
            "api.max_stream_subscribers_per_token: must be between 1"
        ),
        "{bad:?}"
    );
    assert!(
        has(&bad, "api.workers: must be between 0 and 256"),
        "{bad:?}"
    );
    let env = with_env(CCR, &[("CCR_SUPERVISOR__API__MAX_STREAM_SUBSCRIBERS", "7")]).unwrap();
    assert_eq!(env.api.limits.max_stream_subscribers, 7);
}

#[test]
fn tls_files_are_both_or_neither() {
    assert_eq!(ok(CCR).api.tls, None);
    let both = ok(&format!(
        "{CCR}[api]\nauth = \"disabled\"\ntls_cert = \"/etc/c.pem\"\ntls_key = \"/etc/k.pem\"\n"
    ));
    assert_eq!(
        both.api.tls,
        Some(crate::config::TlsFiles {
            cert: "/etc/c.pem".into(),
            key: "/etc/k.pem".into()
        })
    );
    let cert_only = problems(&format!(
        "{CCR}[api]\nauth = \"disabled\"\ntls_cert = \"/etc/c.pem\"\n"
    ));
    assert!(
        cert_only
            .iter()
            .any(|p| p.starts_with("api.tls_key: missing")),
        "{cert_only:?}"
    );
    let key_only = problems(&format!(
        "{CCR}[api]\nauth = \"disabled\"\ntls_key = \"/etc/k.pem\"\n"
    ));
    assert!(
        key_only
            .iter()
            .any(|p| p.starts_with("api.tls_cert: missing")),
        "{key_only:?}"
    );
    let empty = problems(&format!(
        "{CCR}[api]\nauth = \"disabled\"\ntls_cert = \"\"\ntls_key = \"/etc/k.pem\"\n"
    ));
    assert_eq!(empty.len(), 1, "{empty:?}");
    assert!(
        empty[0].starts_with("api.tls_cert: must not be empty"),
        "{empty:?}"
    );
}

#[test]
fn sessions_may_override_the_endpoint_checked_as_ccr_is() {
    let c = ok(&format!(
        "{CCR}[[sessions]]\nid = \"a\"\ntoken_env = \"T\"\nbase_url = \"http://127.0.0.1:9001/\"\n\
         organization_uuid = \"org-2\"\n[[sessions]]\nid = \"b\"\ntoken_env = \"T\"\n"
    ));
    let (a, b) = (&c.sessions[0], &c.sessions[1]);
    assert_eq!(
        a.base_url.as_deref(),
        Some("http://127.0.0.1:9001"),
        "slash trimmed"
    );
    assert_eq!(a.base_url(&c.ccr.base_url), "http://127.0.0.1:9001");
    assert_eq!(a.organization_uuid(&c.ccr.organization_uuid), "org-2");
    assert_eq!(
        (b.base_url.as_deref(), b.organization_uuid.as_deref()),
        (None, None)
    );
    assert_eq!(b.base_url(&c.ccr.base_url), "https://api.example.com");
    assert_eq!(b.organization_uuid(&c.ccr.organization_uuid), "org-1");
    let p = problems(&format!(
        "{CCR}[[sessions]]\nid = \"a\"\ntoken_env = \"T\"\nbase_url = \"ftp://x\"\n\
         organization_uuid = \"org 2\"\n[[sessions]]\nid = \"b\"\ntoken_env = \"T\"\nbase_url = 7\n\
         [[sessions]]\nid = \"c\"\ntoken_env = \"T\"\nbase_urls = \"http://x\"\n\
         [[sessions]]\nid = \"d\"\ntoken_env = \"T\"\nbase_url = \"\"\norganization_uuid = \"\"\n"
    ));
    assert!(
        has(
            &p,
            "sessions[0].base_url: must start with http:// or https://"
        ),
        "{p:?}"
    );
    assert!(
        has(
            &p,
            "sessions[0].organization_uuid: may contain only letters, digits and -"
        ),
        "{p:?}"
    );
    assert!(has(&p, "sessions[1].base_url: expected a string"), "{p:?}");
    assert!(has(&p, "sessions[2].base_urls: unknown key"), "{p:?}");
    for key in ["base_url", "organization_uuid"] {
        assert!(
            has(&p, &format!("sessions[3].{key}: must not be empty")),
            "{p:?}"
        );
    }
}

#[test]
fn source_addresses_are_ips_from_a_list_or_the_environment() {
    let c = ok(CCR);
    assert!(
        c.ccr.source_addresses.is_empty(),
        "default: the system picks"
    );
    let c = ok(&format!(
        "{CCR}source_addresses = [\"127.0.0.2\", \"::1\"]\n"
    ));
    let want: Vec<std::net::IpAddr> = vec!["127.0.0.2".parse().unwrap(), "::1".parse().unwrap()];
    assert_eq!(c.ccr.source_addresses, want);
    let c = with_env(
        CCR,
        &[("CCR_SUPERVISOR__CCR__SOURCE_ADDRESSES", "127.0.0.2, ::1")],
    )
    .unwrap();
    assert_eq!(c.ccr.source_addresses, want);
    let p = problems(&format!(
        "{CCR}source_addresses = [\"127.0.0.2\", \"localhost\", \"0.0.0.0\", \"127.0.0.2\", 3]\n"
    ));
    assert!(
        has(&p, "ccr.source_addresses[1]: expected an IP address"),
        "{p:?}"
    );
    assert!(
        has(&p, "ccr.source_addresses[2]: \"0.0.0.0\" cannot be"),
        "{p:?}"
    );
    assert!(
        has(&p, "ccr.source_addresses[3]: \"127.0.0.2\" is listed twice"),
        "{p:?}"
    );
    assert!(
        has(&p, "ccr.source_addresses[4]: expected a string"),
        "{p:?}"
    );
}
