//! `ctl show`, request ids as a unique prefix, `policy`, `evaluate`, `health`, and `watch`
//! listing what is already pending: the real binary against the real app and simulator.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;

use serde_json::{json, Value};

use super::{ctl, ctl_command, started};
use crate::common::{wait_received, Harness, Sess, WAIT};

#[actix_rt::test]
async fn show_renders_an_edit_as_a_diff_from_a_prefix() {
    let h = started().await;
    let input = json!({"file_path":"/src/lib.rs",
        "old_string":"fn answer() -> u32 {\n    41\n}\n",
        "new_string":"fn answer() -> u32 {\n    42\n}\n"});
    h.prompt("s1", "req-edit-7f3a", "Edit", input.clone()).await;
    let out = ctl(&h.api, &["show", "s1", "req-edit-7f"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "PERMISSION s1 req-edit-7f3a Edit", "{out:?}");
    assert!(
        lines[1].starts_with("received ") && lines[1].contains("Z ("),
        "{out:?}"
    );
    let diff = [
        "file: /src/lib.rs",
        "@@ edit 1 of 1 @@",
        "  fn answer() -> u32 {",
        "-     41",
        "+     42",
        "  }",
    ];
    let at = lines
        .iter()
        .position(|l| *l == diff[0])
        .expect("the file line");
    assert_eq!(&lines[at..at + diff.len()], diff, "{out:?}");
    assert!(out.stdout.trim_end().ends_with(
        &format!("answer: ccr-supervisor ctl --url {} allow s1 req-edit-7f3a   (or: ccr-supervisor ctl --url {} deny s1 req-edit-7f3a)", h.api, h.api)
    ), "{out:?}");
    assert!(!out.stdout.contains('\u{1b}'), "no colour when not a TTY");

    let out = ctl(&h.api, &["--json", "show", "s1", "req-edit"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).expect("one JSON object");
    assert_eq!(v["request_id"], "req-edit-7f3a");
    assert_eq!(v["input"], input);

    let out = ctl(&h.api, &["show", "s1", "nope"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("error: unknown_prompt: "), "{out:?}");
    let out = ctl(&h.api, &["show", "nope", "r"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with("error: unknown_session: "),
        "{out:?}"
    );
    h.shutdown().await;
}

#[actix_rt::test]
async fn request_ids_resolve_as_unique_prefixes_and_exact_ids_win() {
    let mut h = started().await;
    for r in ["req-a1", "req-a2", "req-b1", "req-c1", "r1", "r10"] {
        h.prompt("s1", r, "Bash", json!({"command":format!("echo {r}")}))
            .await;
    }
    // Ambiguous: a usage error naming the candidates, nothing answered.
    for args in [
        &["deny", "s1", "req-a"][..],
        &["show", "s1", "req-a"],
        &["allow", "s1/req-b1", "s1/req-a"],
    ] {
        let out = ctl(&h.api, args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert_eq!(
            out.stderr,
            "error: request id \"req-a\" is ambiguous in session s1: it begins 2 pending prompts (req-a1, req-a2); give more of it\n",
            "{args:?}"
        );
    }
    for r in ["req-a1", "req-a2", "req-b1"] {
        assert!(h.answers("s1", r).is_empty(), "{r} not answered");
    }
    // A unique prefix answers the one prompt it begins.
    let out = ctl(&h.api, &["allow", "s1", "req-b"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "allowed req-b1 (sent)\n");
    wait_received(&mut h.sim_events, "s1", |f| {
        f["response"]["request_id"] == "req-b1"
    })
    .await;
    // The full id of an answered prompt is still the server's 409.
    let out = ctl(&h.api, &["allow", "s1", "req-b1"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with("error: already_answered: "),
        "{out:?}"
    );
    // An exact id wins over the longer ids it begins: r1, not r10.
    let out = ctl(&h.api, &["deny", "s1", "r1"]).await;
    assert_eq!(out.stdout, "denied r1 (sent)\n", "{out:?}");
    let out = ctl(&h.api, &["deny", "s1", "r1"]).await;
    assert!(
        out.stderr.starts_with("error: already_answered: "),
        "{out:?}"
    );
    assert!(h.answers("s1", "r10").is_empty());
    // Several at once: prefixes resolve per pair.
    let out = ctl(&h.api, &["deny", "s1/req-c", "s1/req-a1"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "denied s1/req-c1 (sent)\ndenied s1/req-a1 (sent)\n"
    );
    // Unknown: the server's own error.
    let out = ctl(&h.api, &["allow", "s1", "zzz"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("error: unknown_prompt: "), "{out:?}");
    h.shutdown().await;
}

const RULES: &str = r#"
[policy]
[[policy.rules]]
id = "no-rm"
action = "deny"
tool = "Bash(rm:*)"
message = "rm is not allowed here"
[[policy.rules]]
id = "reads"
action = "allow"
tool = "Read"
"#;

#[actix_rt::test]
async fn policy_evaluate_and_health() {
    let h = Harness::start_with(vec![Sess::new("s1")], &[], RULES).await;
    h.wait_state("s1", "connected").await;
    let out = ctl(
        &h.api,
        &["evaluate", "Bash", "--input", r#"{"command":"rm -rf /"}"#],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[..2],
        ["deny: rm is not allowed here", "rule no-rm"],
        "{out:?}"
    );
    assert!(lines[2].starts_with("reason: "), "{out:?}");
    let out = ctl(&h.api, &["evaluate", "WebFetch", "--session", "s1"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .starts_with("ask (an operator decides)\nno rule matched\n"),
        "{out:?}"
    );
    let out = ctl(&h.api, &["evaluate", "Bash", "--input", "[1]"]).await;
    assert_eq!(out.code, 2, "{out:?}");

    let out = ctl(&h.api, &["policy"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("ID"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{out:?}");
    assert_eq!(rows[0][..3], ["no-rm", "deny", "Bash(rm:*)"], "{out:?}");
    assert_eq!(rows[1][..3], ["reads", "allow", "Read"], "{out:?}");
    let v: Value =
        serde_json::from_str(&ctl(&h.api, &["--json", "policy"]).await.stdout).expect("json");
    assert_eq!(v["rules"][0]["id"], "no-rm");

    // No token needed.
    let mut cmd = ctl_command(&h.api, &["health"]);
    cmd.env_remove("CCR_SUPERVISOR_TOKEN");
    let out = actix_rt::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n");
    h.shutdown().await;
}

#[actix_rt::test]
async fn health_of_nothing_listening_exits_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = ctl(&format!("http://127.0.0.1:{port}"), &["health"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("error: cannot reach "), "{out:?}");
}

/// Lines of a child's stdout, read on a thread, received with a deadline.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[actix_rt::test]
async fn watch_lists_pending_prompts_first_then_streams_without_repeating_them() {
    let h = started().await;
    h.prompt("s1", "req-old-1", "Bash", json!({"command":"make one"}))
        .await;
    h.prompt("s1", "req-old-2", "Bash", json!({"command":"make two"}))
        .await;
    let mut child = ctl_command(&h.api, &["watch", "--prompts-only"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let rx = lines_of(child.stdout.take().unwrap());
    let next = move || rx.recv_timeout(WAIT).expect("a line in time");
    let (first, rx_next) = actix_rt::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(next());
        }
        (seen, next)
    })
    .await
    .unwrap();
    assert!(
        first[0].ends_with(" PERMISSION s1 req-old-1 Bash: make one"),
        "{first:?}"
    );
    assert!(first[1].starts_with("    answer: "), "{first:?}");
    assert!(
        first[2].ends_with(" PERMISSION s1 req-old-2 Bash: make two"),
        "{first:?}"
    );
    assert!(
        first[0].split(' ').next().unwrap().ends_with('Z'),
        "UTC: {first:?}"
    );
    h.prompt("s1", "req-new", "Bash", json!({"command":"make three"}))
        .await;
    let (status, _) = h
        .decide("s1", "req-old-1", json!({"behavior":"allow"}))
        .await;
    assert_eq!(status, 200);
    let later = actix_rt::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        loop {
            let l = rx_next();
            let done = l.contains("allowed req-old-1");
            seen.push(l);
            if done {
                return seen;
            }
        }
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let text = later.join("\n");
    assert!(
        text.contains(" PERMISSION s1 req-new Bash: make three"),
        "{text}"
    );
    assert!(!text.contains("req-old-2"), "listed once only: {text}");
    assert!(
        !text.contains(" sdk ") && !text.contains(" state "),
        "prompts only: {text}"
    );
    assert!(text.contains("delivered req-old-1"), "{text}");
    h.shutdown().await;
}
