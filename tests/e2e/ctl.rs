//! `ccr-supervisor ctl` end to end: the real binary against the real app and
//! simulator, asserting stdout, stderr and exit codes as operators' scripts see them.

mod audit;
mod bulk;
mod show;
mod watch;

use std::process::{Command, Stdio};

use crate::common::{wait_received, Harness, Sess};
use ccr_sim::SimEvent;
use serde_json::{json, Value};

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A `ctl` command line with `--url` and the harness's admin token in
/// `CCR_SUPERVISOR_TOKEN`, free of any ambient URL environment.
pub fn ctl_command(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccr-supervisor"));
    cmd.arg("ctl")
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("CCR_SUPERVISOR_URL")
        .env("CCR_SUPERVISOR_TOKEN", crate::common::ADMIN_TOKEN)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    cmd
}

/// Run `ccr-supervisor ctl --url URL ARGS..` off the runtime, so the app keeps serving meanwhile.
pub async fn ctl(url: &str, args: &[&str]) -> Out {
    let mut cmd = ctl_command(url, args);
    let out = actix_rt::task::spawn_blocking(move || cmd.output().expect("run ccr-supervisor"))
        .await
        .expect("join");
    Out {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

#[actix_rt::test]
async fn missing_or_weak_token_exits_1_with_the_api_code() {
    let h = started().await;
    let mut cmd = ctl_command(&h.api, &["sessions"]);
    cmd.env_remove("CCR_SUPERVISOR_TOKEN");
    let out = actix_rt::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: unauthorized: "));
    h.prompt("s1", "rq", "Bash", json!({"command":"ls"})).await;
    let out = ctl(
        &h.api,
        &["--token", crate::common::VIEWER_TOKEN, "allow", "s1", "rq"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("error: forbidden: "), "{out:?}");
    assert!(
        !out.stderr.contains(crate::common::VIEWER_TOKEN),
        "token never printed"
    );
    h.shutdown().await;
}

async fn started() -> Harness {
    let mut h = Harness::start(vec![Sess::new("s1")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.wait_state("s1", "connected").await;
    h
}

#[actix_rt::test]
async fn sessions_and_pending_tables_and_json() {
    let h = started().await;
    h.prompt(
        "s1",
        "req-tab",
        "Bash",
        json!({"command":"cargo test --all"}),
    )
    .await;

    let out = ctl(&h.api, &["sessions"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATE"),
        "{out:?}"
    );
    assert!(lines[0].contains("PENDING") && lines[0].contains("CONNECTED SINCE"));
    let row = lines.iter().find(|l| l.starts_with("s1 ")).expect("s1 row");
    assert!(row.contains("connected"), "{row}");
    assert_eq!(
        row.split_whitespace().nth(2),
        Some("1"),
        "one pending: {row}"
    );

    let out = ctl(&h.api, &["--json", "sessions"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).expect("--json is one JSON document");
    assert_eq!(v["sessions"][0]["id"], "s1");
    assert_eq!(v["sessions"][0]["state"], "connected");

    for args in [&["pending"][..], &["pending", "s1"]] {
        let out = ctl(&h.api, args).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.starts_with("SESSION"), "{out:?}");
        let row = out.stdout.lines().nth(1).expect("one prompt row");
        for part in ["s1", "req-tab", "Bash", "cargo test --all"] {
            assert!(row.contains(part), "{part} in {row}");
        }
    }
    // Global flags also work after the subcommand.
    let out = ctl(&h.api, &["pending", "--json"]).await;
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["permissions"][0]["request_id"], "req-tab");
    assert_eq!(v["permissions"][0]["input"]["command"], "cargo test --all");
    h.shutdown().await;
}

#[actix_rt::test]
async fn allow_answers_exactly_once_then_reports_already_answered() {
    let mut h = started().await;
    h.prompt("s1", "req-a", "Bash", json!({"command":"ls"}))
        .await;
    let out = ctl(&h.api, &["allow", "s1", "req-a"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "allowed req-a (sent)\n");
    let frame = wait_received(&mut h.sim_events, "s1", |f| {
        f["type"] == "control_response" && f["response"]["request_id"] == "req-a"
    })
    .await;
    assert_eq!(
        frame,
        crate::common::allow_frame("req-a", json!({"command":"ls"}))
    );

    let again = ctl(&h.api, &["allow", "s1", "req-a"]).await;
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stdout.is_empty(), "{again:?}");
    assert!(
        again.stderr.starts_with("error: already_answered: "),
        "{again:?}"
    );
    assert_eq!(h.answers("s1", "req-a").len(), 1);
    assert_eq!(h.get("/v1/permissions").await.1["permissions"], json!([]));
    h.shutdown().await;
}

#[actix_rt::test]
async fn allow_with_edited_input_and_rules() {
    let mut h = started().await;
    h.prompt("s1", "req-e", "Bash", json!({"command":"npm test"}))
        .await;
    let rules = r#"[{"type":"addRules","rules":[{"toolName":"Bash","ruleContent":"npm test:*"}],"behavior":"allow","destination":"session"}]"#;
    let out = ctl(
        &h.api,
        &[
            "--json",
            "allow",
            "s1",
            "req-e",
            "--input",
            r#"{"command":"npm test -- --ci"}"#,
            "--permissions",
            rules,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let receipt: Value = serde_json::from_str(&out.stdout).expect("json receipt");
    assert_eq!(
        (receipt["status"].as_str(), receipt["delivery"].as_str()),
        (Some("allowed"), Some("sent"))
    );
    let frame = wait_received(&mut h.sim_events, "s1", |f| {
        f["response"]["request_id"] == "req-e"
    })
    .await;
    let answer = &frame["response"]["response"];
    assert_eq!(
        answer["updatedInput"],
        json!({"command":"npm test -- --ci"})
    );
    assert_eq!(
        answer["updatedPermissions"],
        serde_json::from_str::<Value>(rules).unwrap()
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn deny_delivers_the_message_word_for_word() {
    let mut h = started().await;
    h.prompt("s1", "req-d", "Write", json!({"file_path":"/etc/passwd"}))
        .await;
    let message = "Not on a Friday — ask \"ops\" first; $HOME stays 'as is'.";
    let out = ctl(
        &h.api,
        &["deny", "s1", "req-d", "--message", message, "--interrupt"],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "denied req-d (sent)\n");
    let frame = wait_received(&mut h.sim_events, "s1", |f| {
        f["response"]["request_id"] == "req-d"
    })
    .await;
    assert_eq!(
        frame["response"]["response"],
        json!({"behavior":"deny","message":message,"interrupt":true,"toolUseID":"toolu_req-d",
            "decisionClassification":"user_reject"})
    );
    assert_eq!(h.answers("s1", "req-d").len(), 1);
    h.shutdown().await;
}

#[actix_rt::test]
async fn usage_errors_exit_2_and_send_nothing() {
    let h = started().await;
    h.prompt("s1", "req-u", "Bash", json!({"command":"ls"}))
        .await;
    let out = ctl(&h.api, &["allow", "s1", "req-u", "--input", "{bad"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.starts_with("error: --input is not valid JSON"),
        "{out:?}"
    );
    let out = ctl(&h.api, &["allow", "s1", "req-u", "--input", "[1]"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    // clap's own usage errors: missing argument, unknown command.
    assert_eq!(ctl(&h.api, &["allow", "s1"]).await.code, 2);
    assert_eq!(ctl(&h.api, &["approve"]).await.code, 2);
    assert!(h.answers("s1", "req-u").is_empty());
    let (_, pending) = h.get("/v1/permissions").await;
    assert_eq!(pending["permissions"][0]["request_id"], "req-u");
    h.shutdown().await;
}

#[actix_rt::test]
async fn api_errors_exit_1_with_code_and_message() {
    let h = started().await;
    for args in [
        &["allow", "nope", "r1"][..],
        &["pending", "nope"],
        &["interrupt", "nope"],
        &["send", "nope", "hi"],
    ] {
        let out = ctl(&h.api, args).await;
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert_eq!(
            out.stderr, "error: unknown_session: unknown session nope\n",
            "{args:?}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = ctl(&h.api, &["deny", "s1", "no-such-prompt"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("error: unknown_prompt: "), "{out:?}");
    // Not in a cluster (a SQLite ledger): the code says so, not a missing route.
    let out = ctl(&h.api, &["cluster"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .starts_with("error: cluster_off: clustering is off"),
        "{out:?}"
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn interrupt_and_send() {
    let mut h = started().await;
    let out = ctl(&h.api, &["interrupt", "s1"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with("interrupted s1 (request "),
        "{out:?}"
    );
    let sent = wait_received(&mut h.sim_events, "s1", |f| {
        f["request"]["subtype"] == "interrupt"
    })
    .await;
    assert_eq!(sent["request"], json!({"subtype":"interrupt"}));
    assert!(out.stdout.contains(sent["request_id"].as_str().unwrap()));

    let out = ctl(&h.api, &["send", "s1", "run the tests, then lint"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("sent to s1 (message "), "{out:?}");
    let posted = match h.wait_sim(|e| matches!(e, SimEvent::Posted { .. })).await {
        SimEvent::Posted { body, .. } => body,
        _ => unreachable!(),
    };
    assert_eq!(
        posted["events"][0]["message"],
        json!({"role":"user","content":"run the tests, then lint"})
    );
    assert!(out
        .stdout
        .contains(posted["events"][0]["uuid"].as_str().unwrap()));
    h.shutdown().await;
}

#[actix_rt::test]
async fn unreachable_url_exits_1_without_leaking_the_token() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = ctl(&url, &["--token", "s3cret-tok", "sessions"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .starts_with(&format!("error: cannot reach {url}/v1/sessions")),
        "{out:?}"
    );
    assert!(!out.stderr.contains("s3cret-tok"));
    let out = ctl(&url, &["watch"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("error: cannot reach"), "{out:?}");
}

#[actix_rt::test]
async fn audit_lists_an_allowed_prompt_and_exports_it() {
    // A ledger of its own: every test here uses session s1.
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = dir.path().join("ledger.db");
    let ledger = ledger.to_str().expect("utf-8 path");
    let mut h = Harness::start(
        vec![Sess::new("s1")],
        &[("CCR_SUPERVISOR__LEDGER__PATH", ledger)],
    )
    .await;
    h.wait_sim_connected("s1").await;
    h.wait_state("s1", "connected").await;
    h.prompt("s1", "req-audit", "Bash", json!({"command":"make deploy"}))
        .await;
    let (status, _) = h
        .decide("s1", "req-audit", json!({"behavior":"allow"}))
        .await;
    assert_eq!(status, 200);
    wait_received(&mut h.sim_events, "s1", |f| {
        f["response"]["request_id"] == "req-audit"
    })
    .await;

    let out = ctl(&h.api, &["audit", "--session", "s1"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("RECEIVED"), "{out:?}");
    let row = lines
        .iter()
        .find(|l| l.contains("req-audit"))
        .expect("the prompt is listed");
    for part in ["s1", "Bash", "make deploy", "allowed", "admin"] {
        assert!(row.contains(part), "{part} in {row}");
    }

    let out = ctl(&h.api, &["--json", "audit", "--session", "s1"]).await;
    let page: Value = serde_json::from_str(&out.stdout).expect("json page");
    let listed = page["rows"].as_array().expect("rows").len();
    assert!(listed >= 1, "{page}");

    let out = ctl(&h.api, &["audit", "--session", "s1", "--export", "jsonl"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let rows: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one parseable JSON object per line"))
        .collect();
    assert_eq!(rows.len(), listed, "{out:?}");
    let r = rows
        .iter()
        .find(|r| r["request_id"] == "req-audit")
        .expect("exported");
    assert_eq!(
        (
            &r["session_id"],
            &r["tool_name"],
            &r["outcome"],
            &r["decided_by"]
        ),
        (
            &json!("s1"),
            &json!("Bash"),
            &json!("allowed"),
            &json!("admin")
        )
    );
    assert_eq!(r["input"], json!({"command":"make deploy"}));
    h.shutdown().await;
}

#[actix_rt::test]
async fn session_text_reaches_the_terminal_without_escape_sequences() {
    let h = started().await;
    let hostile = "\u{1b}]52;c;cm0gLXJmIC8=\u{7}\u{1b}[2K\u{1b}[1Gls\u{9b}1A\u{202e}";
    h.prompt(
        "s1",
        "rq",
        "Bash",
        json!({ "command": format!("rm -rf / {hostile}") }),
    )
    .await;
    let out = ctl(&h.api, &["pending"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let row = out.stdout.lines().nth(1).unwrap_or_default().to_owned();
    assert!(row.ends_with("rm -rf / ls"), "{out:?}");
    let raw = ctl(&h.api, &["--json", "pending"]).await;
    for text in [&out.stdout, &raw.stdout] {
        assert!(
            text.chars().all(|c| c == '\n' || !c.is_control()) && !text.contains('\u{202e}'),
            "{text:?}"
        );
    }
    let v: Value = serde_json::from_str(&raw.stdout).expect("--json stays JSON");
    assert_eq!(
        v["permissions"][0]["input"]["command"],
        format!("rm -rf / {hostile}"),
        "--json keeps the value, only escaped"
    );
    h.shutdown().await;
}
