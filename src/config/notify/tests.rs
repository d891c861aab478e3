use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::config::{load_from_str, ConfigError, ConsoleConfig};

const BASE: &str = "[sim]\nembedded = true\n[api]\nauth = \"disabled\"\n";

fn load(extra: &str) -> Result<crate::config::Config, ConfigError> {
    load_from_str(&format!("{BASE}\n{extra}"), HashMap::new())
}

fn problems(extra: &str) -> Vec<(String, String)> {
    match load(extra) {
        Err(ConfigError::Invalid(list)) => list.into_iter().map(|e| (e.path, e.message)).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

const WEBHOOK: &str = r#"
[[notify]]
name = "ops"
kind = "webhook"
url = "https://hooks.example.com/ccr?token=s3cr3t-in-url"
secret_env = "OPS_SECRET"
events = ["permission_requested", "permission.overdue", "session_failed", "permission_expired"]
sessions = ["prod-*"]
labels = ["prod"]
tools = ["Bash"]
timeout = "2s"
max_attempts = 3
backoff_initial = "100ms"
backoff_max = "1s"
queue_events = 10
queue_bytes = 4096
"#;

#[test]
fn a_full_sink_is_read() {
    let c = load(WEBHOOK).unwrap();
    assert_eq!(c.notify.len(), 1);
    let s = &c.notify[0];
    assert_eq!((s.key.as_str(), s.name.as_str()), ("notify[0]", "ops"));
    assert_eq!(s.kind, SinkKind::Webhook);
    assert_eq!(s.secret, Some(SecretSource::Env("OPS_SECRET".into())));
    assert_eq!(s.events, NotifyEvent::ALL.to_vec());
    assert_eq!(s.selector.sessions, ["prod-*"]);
    assert_eq!(s.delivery.timeout, Duration::from_secs(2));
    assert_eq!(s.delivery.max_attempts, 3);
    assert_eq!(s.delivery.queue_bytes, 4096);
    assert_eq!(c.console, ConsoleConfig::default());
}

#[test]
fn no_sinks_by_default_and_console_defaults() {
    let c = load("").unwrap();
    assert!(c.notify.is_empty());
    assert_eq!(c.console.session_lifetime, Duration::from_secs(12 * 3600));
    assert_eq!(c.console.max_sessions, 1000);
    assert_eq!(
        c.console.link_base("127.0.0.1:8700".parse().unwrap()),
        "http://127.0.0.1:8700"
    );
    let c = load("[console]\npublic_url = \"https://ccr.example.com/base/\"\nsession_lifetime = \"30m\"\nmax_sessions = 5\n").unwrap();
    assert_eq!(
        c.console.link_base("127.0.0.1:1".parse().unwrap()),
        "https://ccr.example.com/base"
    );
    assert_eq!(c.console.session_lifetime, Duration::from_secs(1800));
    assert_eq!(c.console.max_sessions, 5);
}

#[test]
fn console_problems_have_their_paths() {
    let p = problems("[console]\npublic_url = \"ftp://x\"\nsession_lifetime = \"0s\"\nmax_sessions = 0\ncolour = 1\n");
    let paths: Vec<&str> = p.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "console.public_url",
            "console.session_lifetime",
            "console.max_sessions",
            "console.colour"
        ],
        "{p:?}"
    );
    let q = problems("[console]\npublic_url = \"https://x.example/?a=1\"\n");
    assert!(q[0].1.contains("no query"), "{q:?}");
}

#[test]
fn a_console_sign_in_lasts_at_most_a_year() {
    let year = load("[console]\nsession_lifetime = \"365days\"\n").unwrap();
    assert_eq!(
        year.console.session_lifetime,
        Duration::from_secs(365 * 86_400)
    );
    // Past what an Instant can hold: every sign-in would panic on `now + lifetime`.
    for lifetime in ["366days", "500000000000years"] {
        let p = problems(&format!("[console]\nsession_lifetime = \"{lifetime}\"\n"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "console.session_lifetime");
        assert!(p[0].1.starts_with("must be at most 365 days"), "{p:?}");
    }
}

#[test]
fn every_bad_key_is_reported_with_its_path_and_no_url() {
    let p = problems(
        r#"
[[notify]]
kind = "pager"
url = "not a url s3cr3t"
events = ["permission_granted"]
max_attempts = 0
backoff_initial = "2s"
backoff_max = "1s"
[[notify]]
name = "a"
kind = "slack"
url_env = "A"
secret_file = "/x"
events = []
[[notify]]
name = "a"
kind = "webhook"
url = "https://x.example/"
url_file = "/y"
events = ["session_failed", "session_failed"]
"#,
    );
    let paths: Vec<&str> = p.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "notify[0].name",
            "notify[0].kind",
            "notify[0].url",
            "notify[0].events[0]",
            "notify[0].max_attempts",
            "notify[0].backoff_max",
            "notify[1]",
            "notify[1].events",
            "notify[2].name",
            "notify[2]",
            "notify[2]",
            "notify[2].events[1]",
        ],
        "{p:?}"
    );
    assert!(p.iter().all(|(_, m)| !m.contains("s3cr3t")), "{p:?}");
    assert!(p[6].1.contains("slack sink is not signed"), "{p:?}");
    assert!(p[8].1.contains("duplicate name"), "{p:?}");
    assert!(p[9].1.contains("exactly one of url"), "{p:?}");
    assert!(p[10].1.contains("signing secret"), "{p:?}");
}

#[test]
fn debug_never_shows_a_url_or_a_secret() {
    let c = load(WEBHOOK).unwrap();
    let shown = format!("{:?}", c.notify);
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(!shown.contains("hooks.example.com"), "{shown}");
    assert!(shown.contains("<redacted url>"), "{shown}");
    let url = SinkUrl::parse("https://hooks.slack.com/services/T/B/XYZ").unwrap();
    assert_eq!(format!("{url:?} {url}"), "<redacted url> <redacted url>");
    assert!(SinkUrl::parse("file:///etc/passwd").is_err());
}
