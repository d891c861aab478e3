//! Start-up failures: an invalid config exits 2 naming every bad key; an
//! unwritable ledger is a clear, quick error.

use std::time::Duration;

use crate::support;

/// A config with six bad keys in five sections (a value that is not an
/// address, a value out of range, an unknown key, a policy rule whose tool
/// pattern the policy cannot compile, and a notification sink whose URL variable
/// is unset and whose secret file is missing).
const BAD: &str = r#"
[api]
bind = "not-an-address"
auth = "disabled"

[ccr]
base_url = "http://127.0.0.1:9"
organization_uuid = "org-proc-1"

[reconnect]
jitter = 7.5

[log]
colour = "always"

[[policy.rules]]
action = "allow"
tool = "Bash()"

[[notify]]
name = "hook"
kind = "webhook"
url_env = "CCR_TEST_NOTIFY_URL_NEVER_SET"
secret_file = "/nonexistent/ccr-notify-secret"
events = ["session_failed"]
"#;

const BAD_KEYS: [&str; 6] = [
    "api.bind",
    "reconnect.jitter",
    "log.colour",
    "policy.rules[0].tool: Bash() has an empty argument",
    "notify[0].url_env: environment variable CCR_TEST_NOTIFY_URL_NEVER_SET is not set",
    "notify[0].secret_file: cannot read /nonexistent/ccr-notify-secret",
];

#[actix_rt::test]
async fn invalid_config_exits_2_naming_every_bad_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = support::write_file(dir.path(), "bad.toml", BAD);
    let bad = bad.to_str().unwrap();
    for args in [vec!["--config", bad], vec!["check-config", "--config", bad]] {
        let (out, took) = support::run_to_exit(&args, Duration::from_secs(10)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}\n{stderr}",
            out.status
        );
        for key in BAD_KEYS {
            assert!(
                stderr.contains(key),
                "{args:?}: {key} not named in:\n{stderr}"
            );
        }
        assert!(
            out.stdout.is_empty(),
            "{args:?}: nothing started: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        eprintln!("{args:?}: exit 2 after {took:?}");
    }

    let good = support::config_toml(
        "http://127.0.0.1:9",
        &["a1", "a2"],
        &dir.path().join("ledger.db"),
        "",
    );
    let good = support::write_file(dir.path(), "good.toml", &good);
    let (out, _) = support::run_to_exit(
        &["check-config", "--config", good.to_str().unwrap()],
        Duration::from_secs(10),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok (2 sessions"), "{stdout}");
    assert!(
        !dir.path().join("ledger.db").exists(),
        "check-config touches nothing"
    );
}

#[actix_rt::test]
async fn unwritable_ledger_path_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    support::write_file(dir.path(), "file.txt", "a regular file, not a directory\n");
    let ledger = dir.path().join("file.txt").join("ledger.db");
    // No sessions: nothing connects anywhere; the ledger is opened before the API binds.
    let cfg = support::config_toml("http://127.0.0.1:9", &[], &ledger, "");
    let cfg = support::write_file(dir.path(), "config.toml", &cfg);
    let (out, took) =
        support::run_to_exit(&["--config", cfg.to_str().unwrap()], Duration::from_secs(5)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("ledger error after {took:?}: {}", out.status);
    assert!(!out.status.success(), "{}\n{stderr}", out.status);
    assert!(
        out.status.code().is_some(),
        "exited, not killed: {}",
        out.status
    );
    assert!(
        stderr.contains(&ledger.display().to_string()),
        "the message names {}:\n{stderr}",
        ledger.display()
    );
    assert!(
        !stdout.contains("operator API on"),
        "the API never came up: {stdout}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}
