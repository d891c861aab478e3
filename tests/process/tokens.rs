//! Token sources: `check-config` resolves every one and names each failure by its key
//! path, never printing a value; the start refuses an unset `token_env` with exit 2
//! (a restart cannot set it); a session's missing `token_file` is its last error, retried
//! until the file appears.

use std::time::Duration;

use crate::support::{self, Supervisor};

/// Printed by a token command; must never appear in any output.
const SECRET: &str = "sk-process-test-secret-4711";

/// Unset in the tests' environment (the harness clears nothing else; never set_var).
const UNSET_OPS: &str = "CCR_TEST_UNSET_OPERATOR_TOKEN";
const UNSET_SESSION: &str = "CCR_TEST_UNSET_SESSION_TOKEN";

/// `[api]` and `[ccr]` with one operator token from an unset variable, then `sessions`.
fn config(dir: &std::path::Path, sessions: &str) -> String {
    format!(
        "[api]\nbind = \"127.0.0.1:0\"\n\
         [[api.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken_env = \"{UNSET_OPS}\"\n\
         [ccr]\nbase_url = \"http://127.0.0.1:9\"\norganization_uuid = \"org-proc-1\"\n\
         [ledger]\npath = \"{}\"\n{sessions}",
        dir.join("ledger.db").display()
    )
}

#[actix_rt::test]
async fn check_config_resolves_every_token_source_and_never_prints_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sessions = format!(
        "[[sessions]]\nid = \"env\"\ntoken_env = \"{UNSET_SESSION}\"\n\
         [[sessions]]\nid = \"file\"\ntoken_file = \"{}\"\n\
         [[sessions]]\nid = \"failing\"\ntoken_command = \"echo {SECRET}; echo {SECRET} >&2; exit 3\"\n\
         [[sessions]]\nid = \"fine\"\ntoken_command = \"echo {SECRET}\"\n\
         [[sessions]]\nid = \"literal\"\ntoken = \"{SECRET}\"\n",
        dir.path().join("no-such-token").display()
    );
    let cfg = support::write_file(dir.path(), "config.toml", &config(dir.path(), &sessions));
    let (out, _) = support::run_to_exit(
        &["check-config", "--config", cfg.to_str().unwrap()],
        Duration::from_secs(10),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{}\n{stderr}", out.status);
    for needed in [
        format!("api.tokens[0].token_env: environment variable {UNSET_OPS} is not set"),
        format!("sessions[0].token_env: environment variable {UNSET_SESSION} is not set"),
        "sessions[1].token_file: cannot read ".to_owned(),
        "sessions[2].token_command: token command failed: exited with".to_owned(),
        "4 problem(s)".to_owned(),
    ] {
        assert!(stderr.contains(&needed), "{needed:?} not in:\n{stderr}");
    }
    assert!(
        !stderr.contains("sessions[3]"),
        "the good command passes: {stderr}"
    );
    assert!(
        !stderr.contains(SECRET) && !stdout.contains(SECRET),
        "a token value was printed:\n{stdout}\n{stderr}"
    );
    assert!(
        !dir.path().join("ledger.db").exists() && !dir.path().join("ledger.db.lock").exists(),
        "check-config touches nothing"
    );
}

#[actix_rt::test]
async fn check_config_fails_on_the_shipped_example_without_its_tokens() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/config.example.toml");
    let (out, _) = support::run_to_exit(
        &["check-config", "--config", example],
        Duration::from_secs(15),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}\n{stderr}", out.status);
    for key in [
        "api.tokens[1].token_env: environment variable CCR_OPS_ADMIN_TOKEN is not set",
        "api.tokens[2].token_env",
        "sessions[0].token_env: environment variable CCR_TOKEN_PROD_1 is not set",
        "sessions[1].token_file: cannot read /run/secrets/ccr-prod-2",
        "sessions[2].token_command: token command failed",
    ] {
        assert!(stderr.contains(key), "{key:?} not in:\n{stderr}");
    }
}

#[actix_rt::test]
async fn an_unset_token_env_stops_the_start_with_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (what, sessions) in [
        // The operator token alone (no sessions).
        ("operator", String::new()),
        (
            "session",
            format!("[[sessions]]\nid = \"env\"\ntoken_env = \"{UNSET_SESSION}\"\n"),
        ),
    ] {
        let mut toml = config(dir.path(), &sessions);
        if what == "session" {
            toml = toml.replace(
                &format!("token_env = \"{UNSET_OPS}\""),
                "token_env = \"PATH\"",
            );
        }
        let cfg = support::write_file(dir.path(), "config.toml", &toml);
        let (out, took) =
            support::run_to_exit(&["--config", cfg.to_str().unwrap()], Duration::from_secs(5))
                .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("{what}: {} after {took:?}", out.status);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: {}\n{stderr}",
            out.status
        );
        let key = if what == "operator" {
            format!("api.tokens[0].token_env: environment variable {UNSET_OPS} is not set")
        } else {
            format!("sessions[0].token_env: environment variable {UNSET_SESSION} is not set")
        };
        assert!(stderr.contains(&key), "{what}: {key:?} not in:\n{stderr}");
        assert!(stdout.is_empty(), "{what}: nothing started: {stdout}");
        assert!(
            !dir.path().join("ledger.db").exists(),
            "{what}: the ledger was not opened"
        );
    }
}

#[actix_rt::test]
async fn a_missing_token_file_is_the_sessions_last_error_and_heals() {
    let sim = support::start_sim(&["late"]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("late-token");
    let mut toml = support::config_toml(&sim.base_url(), &[], &dir.path().join("ledger.db"), "");
    toml.push_str(&format!(
        "\n[[sessions]]\nid = \"late\"\ntoken_file = \"{}\"\n",
        token.display()
    ));
    let cfg = support::write_file(dir.path(), "config.toml", &toml);
    // The service starts: the file may appear later (a mounted secret, a credential).
    let sup = Supervisor::spawn(&cfg).await;
    let http = support::http();
    let mut sse = support::open_sse(&http, &sup.api).await;
    let mut seen = vec![];
    let failing = sse
        .wait_for(&mut seen, |e| {
            e.event == "session_state"
                && e.data["session_id"] == "late"
                && e.data["last_error"]
                    .as_str()
                    .is_some_and(|m| m.contains("cannot read access token"))
        })
        .await;
    assert_ne!(failing.data["state"], "failed", "{:?}", failing.data);
    let (status, body) = support::get(&http, &format!("{}/v1/sessions/late", sup.api)).await;
    assert_eq!(status, 200, "{body}");
    let shown = body.to_string();
    assert!(
        shown.contains("cannot read access token") && shown.contains(&*token.to_string_lossy()),
        "its last error names the file: {body}"
    );
    // Retried: once the file is there the session connects.
    std::fs::write(&token, format!("{}\n", support::session_token("late"))).unwrap();
    sse.wait_connected(&mut seen, &["late"]).await;
}
