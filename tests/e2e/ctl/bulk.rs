//! `ctl allow` / `ctl deny` of several prompts: `SESSION/REQUEST` pairs and `--all-pending`
//! (one `POST /v1/decisions`), per-item lines, exit 1 when any item was not answered.

use super::ctl;
use crate::common::{Harness, Sess};
use ccr_sim::SimEvent;
use serde_json::{json, Value};

async fn two_sessions() -> Harness {
    let mut h = Harness::start(vec![Sess::new("s1"), Sess::new("s2")], &[]).await;
    h.wait_sim_connected("s1").await;
    h.wait_sim_connected("s2").await;
    h
}

/// Answer a fresh prompt through the single route and wait until the simulator has it:
/// whatever was written to `session` before is in the simulator's log by then.
async fn barrier(h: &mut Harness, session: &str, request: &str) {
    h.prompt(session, request, "Bash", json!({"command":"true"}))
        .await;
    assert_eq!(
        h.decide(session, request, json!({"behavior":"deny"}))
            .await
            .0,
        200
    );
    let want = request.to_owned();
    h.wait_sim(|e| matches!(e, SimEvent::Answered { request_id, .. } if *request_id == want))
        .await;
}

#[actix_rt::test]
async fn pairs_are_answered_in_one_request_with_a_line_each() {
    let mut h = two_sessions().await;
    h.prompt("s1", "a", "Bash", json!({"command":"ls"})).await;
    h.prompt("s2", "b", "Bash", json!({"command":"ls"})).await;
    let out = ctl(&h.api, &["allow", "s1/a", "s2/b"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "allowed s1/a (sent)\nallowed s2/b (sent)\n");
    assert!(out.stderr.is_empty(), "{out:?}");

    // Again, with one new prompt: the new one is answered, the others fail, exit 1.
    h.prompt("s1", "c", "Bash", json!({"command":"ls"})).await;
    let out = ctl(
        &h.api,
        &["deny", "s1/a", "s1/c", "nope/x", "--message", "no more"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert!(
        lines[0].starts_with("failed s1/a: already_answered: "),
        "{out:?}"
    );
    assert_eq!(lines[1], "denied s1/c (sent)");
    assert!(
        lines[2].starts_with("failed nope/x: unknown_session: "),
        "{out:?}"
    );
    assert_eq!(
        out.stderr, "error: 2 of 3 prompts were not answered\n",
        "{out:?}"
    );
    barrier(&mut h, "s1", "z1").await;
    barrier(&mut h, "s2", "z2").await;
    assert_eq!(h.answers("s1", "a").len(), 1);
    assert_eq!(h.answers("s2", "b").len(), 1);
    let c = h.answers("s1", "c");
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["response"]["response"]["message"], "no more");
    h.shutdown().await;
}

#[actix_rt::test]
async fn all_pending_answers_what_the_filters_select() {
    let mut h = two_sessions().await;
    h.prompt("s1", "b1", "Bash", json!({"command":"ls"})).await;
    h.prompt("s1", "r1", "Read", json!({"file_path":"/x"}))
        .await;
    h.prompt("s2", "b2", "Bash", json!({"command":"ls"})).await;

    let out = ctl(
        &h.api,
        &[
            "allow",
            "--all-pending",
            "--tool",
            "Bash",
            "--session",
            "s1",
        ],
    )
    .await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "allowed s1/b1 (sent)\n"),
        "{out:?}"
    );

    let out = ctl(&h.api, &["--json", "deny", "--all-pending"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let body: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    let answered: Vec<(&str, &str, u64)> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["session_id"].as_str().unwrap(),
                r["request_id"].as_str().unwrap(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(answered, vec![("s1", "r1", 200), ("s2", "b2", 200)]);

    let out = ctl(&h.api, &["allow", "--all-pending"]).await;
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "", "nothing pending\n")
    );
    barrier(&mut h, "s1", "z1").await;
    barrier(&mut h, "s2", "z2").await;
    for (s, r) in [("s1", "b1"), ("s1", "r1"), ("s2", "b2")] {
        assert_eq!(h.answers(s, r).len(), 1, "{s}/{r}");
    }
    h.shutdown().await;
}

#[actix_rt::test]
async fn bulk_usage_errors_exit_2_and_send_nothing() {
    let h = two_sessions().await;
    h.prompt("s1", "u1", "Bash", json!({"command":"ls"})).await;
    for args in [
        &["allow"][..],
        &["allow", "s1"],
        &["allow", "s1/u1", "u2"],
        &["allow", "s1", "u1", "u2"],
        &["allow", "s1/u1", "--all-pending"],
        &["allow", "--tool", "Bash"],
        &["deny", "s1", "u1", "--tool", "Bash"],
        &["deny", "s1/u1", "s2/u2", "--session", "s1"],
        &["allow", "s1/u1", "s2/u2", "--input", r#"{"command":"ls"}"#],
        &["allow", "--all-pending", "--input", r#"{"command":"ls"}"#],
    ] {
        let out = ctl(&h.api, args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
    assert_eq!(
        h.get("/v1/permissions").await.1["permissions"][0]["request_id"],
        "u1"
    );
    assert!(h.answers("s1", "u1").is_empty());
    h.shutdown().await;
}
