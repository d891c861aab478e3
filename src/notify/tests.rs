//! Unit tests of the notifier's pure parts, and of the delivery shell with a fake transport.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::notice::{summarize, Notice, INPUT_SUMMARY_CHARS};
use super::payload::{esc, prompt_link, slack_text, webhook};
use super::queue::{queue, Job, Refused};
use super::retry::{backoff, classify, Attempt, Transport, Verdict};
use super::select::{glob, wants};
use super::sign::{signature, verify};
use super::worker::{Post, Worker};
use super::*;
use crate::config::{
    load_from_str, NotifyDelivery, NotifyEvent, NotifySelector, NotifySinkConfig, Secret,
    SecretSource, SinkKind, SinkUrl, UrlSource,
};
use ccr_protocol::PermissionPrompt;

fn prompt(tool: &str, input: Value) -> PermissionPrompt {
    PermissionPrompt {
        raw: None,
        request_id: "req 1/a".into(),
        tool_name: tool.into(),
        tool_use_id: Some("toolu_1".into()),
        request: json!({"subtype": "can_use_tool", "tool_name": tool, "input": input.clone()}),
        input,
    }
}

fn notice(event: NotifyEvent, tool: &str, labels: &[&str]) -> Notice {
    let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
    let received = SystemTime::now() - Duration::from_secs(75);
    Notice::prompt(
        event,
        Arc::from("prod-1"),
        labels.into(),
        &prompt(tool, json!({"command": "rm -rf /tmp/x"})),
        received,
    )
}

fn sink(events: &[NotifyEvent], selector: NotifySelector) -> NotifySinkConfig {
    NotifySinkConfig {
        key: "notify[0]".into(),
        name: "ops".into(),
        kind: SinkKind::Webhook,
        url: UrlSource::Env("X".into()),
        secret: Some(SecretSource::Env("S".into())),
        events: events.to_vec(),
        selector,
        delivery: NotifyDelivery::default(),
    }
}

#[test]
fn a_sink_hears_only_its_events_and_selected_sessions_labels_and_tools() {
    let all = sink(&NotifyEvent::ALL, NotifySelector::default());
    let asked = notice(NotifyEvent::PermissionRequested, "Bash", &["prod"]);
    assert!(wants(&all, &asked));
    let only_failed = sink(&[NotifyEvent::SessionFailed], NotifySelector::default());
    assert!(!wants(&only_failed, &asked));

    let sel = |s: &[&str], l: &[&str], t: &[&str]| NotifySelector {
        sessions: s.iter().map(|x| x.to_string()).collect(),
        labels: l.iter().map(|x| x.to_string()).collect(),
        tools: t.iter().map(|x| x.to_string()).collect(),
    };
    let ev = &NotifyEvent::ALL;
    assert!(wants(&sink(ev, sel(&["prod-*"], &[], &[])), &asked));
    assert!(!wants(
        &sink(ev, sel(&["dev-*", "prod-2"], &[], &[])),
        &asked
    ));
    assert!(wants(&sink(ev, sel(&[], &["x", "prod"], &[])), &asked));
    assert!(!wants(&sink(ev, sel(&[], &["dev"], &[])), &asked));
    assert!(wants(&sink(ev, sel(&[], &[], &["Bash", "Edit"])), &asked));
    assert!(!wants(&sink(ev, sel(&[], &[], &["mcp__*"])), &asked));
    // A session failure has no tool: a tool list lets it through, the other lists still apply.
    let failed = Notice::session_failed(
        Arc::from("prod-1"),
        Arc::from(["prod".to_owned()]),
        "unauthorized".into(),
        None,
    );
    assert!(wants(
        &sink(ev, sel(&["prod-1"], &["prod"], &["Bash"])),
        &failed
    ));
    assert!(!wants(&sink(ev, sel(&["dev-1"], &[], &["Bash"])), &failed));
    assert!(glob("mcp__*", "mcp__github__x") && glob("*", "") && !glob("Bash", "Bash2"));
}

#[test]
fn the_input_summary_is_bounded_whatever_the_input() {
    assert_eq!(
        summarize("Bash", &json!({"command": "ls -la"}), 300),
        "ls -la"
    );
    let big = json!({"file_path": "/x", "content": "y".repeat(5_000_000)});
    let started = Instant::now();
    let s = summarize("Write", &big, INPUT_SUMMARY_CHARS);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.chars().count(), INPUT_SUMMARY_CHARS);
    assert!(
        s.starts_with("{\"content\":\"yyy") || s.starts_with("{\"file_path\""),
        "{s}"
    );
    assert!(s.ends_with('…'));
    assert_eq!(
        summarize("Bash", &json!({"command": "é".repeat(10)}), 5),
        "éééé…"
    );
    let small = json!({"a": [1, true, null, "x\"y"], "b": {"c": 2.5}});
    assert_eq!(summarize("Edit", &small, 300), small.to_string());
    let many = json!((0..1_000_000).collect::<Vec<u32>>());
    let started = Instant::now();
    assert_eq!(summarize("mcp__x__y", &many, 20), "[0,1,2,3,4,5,6,7,8,…");
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[test]
fn only_a_bash_command_is_shown_bare_any_other_input_whole() {
    let summary = |tool: &str, input: Value| {
        let p = prompt(tool, input);
        let n = Notice::prompt(
            NotifyEvent::PermissionRequested,
            Arc::from("prod-1"),
            Arc::from([]),
            &p,
            SystemTime::now(),
        );
        n.prompt.unwrap().input
    };
    assert_eq!(
        summary("Bash", json!({"command": "ls -la", "timeout": 5})),
        "ls -la"
    );
    // An MCP tool's `command` is one field among others: the namespace must show too.
    let exec = json!({"namespace": "prod", "command": "rm -rf /data"});
    assert_eq!(summary("mcp__k8s__exec", exec.clone()), exec.to_string());
    let not_text = json!({"command": ["rm", "-rf", "/"]});
    assert_eq!(summary("Bash", not_text.clone()), not_text.to_string());
}

#[test]
fn the_console_link_encodes_each_segment() {
    assert_eq!(
        prompt_link("https://c.example", "s/1 x", "req?#1"),
        "https://c.example/ui/prompts/s%2F1%20x/req%3F%231"
    );
}

#[test]
fn the_webhook_body_carries_the_event_and_its_link() {
    let n = notice(NotifyEvent::PermissionOverdue, "Bash", &["prod"]);
    let body: Value = serde_json::from_slice(&webhook(&n, "http://h:1")).unwrap();
    assert_eq!(body["type"], "permission.overdue");
    assert_eq!(body["session_id"], "prod-1");
    assert_eq!(body["labels"], json!(["prod"]));
    assert_eq!(body["request_id"], "req 1/a");
    assert_eq!(body["tool_name"], "Bash");
    assert_eq!(body["prompt_kind"], "can_use_tool");
    assert_eq!(body["input_summary"], "rm -rf /tmp/x");
    assert!(body["age_ms"].as_u64().unwrap() >= 75_000, "{body}");
    assert_eq!(body["link"], "http://h:1/ui/prompts/prod-1/req%201%2Fa");
    assert!(body.get("reason").is_none());
    let failed = Notice::session_failed(
        Arc::from("s"),
        Arc::from([]),
        "unauthorized".into(),
        Some("401".into()),
    );
    let body: Value = serde_json::from_slice(&webhook(&failed, "http://h:1")).unwrap();
    assert_eq!(body["type"], "session_failed");
    assert_eq!(
        (body["reason"].as_str(), body["detail"].as_str()),
        (Some("unauthorized"), Some("401"))
    );
    assert!(body.get("link").is_none() && body.get("request_id").is_none());
}

#[test]
fn the_slack_text_has_session_tool_input_age_and_link_escaped() {
    let n = Notice::prompt(
        NotifyEvent::PermissionRequested,
        Arc::from("s<1>"),
        Arc::from([]),
        &prompt("Bash", json!({"command": "echo <@here> & `x`"})),
        SystemTime::now() - Duration::from_secs(125),
    );
    let text = slack_text(&n, "https://c.example");
    assert!(text.contains("Permission requested"), "{text}");
    assert!(text.contains("`s&lt;1&gt;`"), "{text}");
    assert!(text.contains("*Tool:* `Bash`"), "{text}");
    assert!(text.contains("echo &lt;@here&gt; &amp; 'x'"), "{text}");
    assert!(text.contains("*Waiting:* 2m 5s"), "{text}");
    assert!(
        text.contains("<https://c.example/ui/prompts/s%3C1%3E/req%201%2Fa|Open in console>"),
        "{text}"
    );
    assert_eq!(esc("a<b>&"), "a&lt;b&gt;&amp;");
}

#[test]
fn a_signature_verifies_only_for_its_timestamp_body_and_secret() {
    let sig = signature(b"k", 1_700_000_000, b"{\"a\":1}");
    assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
    assert!(verify(b"k", 1_700_000_000, b"{\"a\":1}", &sig));
    assert!(!verify(b"k", 1_700_000_001, b"{\"a\":1}", &sig));
    assert!(!verify(b"k", 1_700_000_000, b"{\"a\":2}", &sig));
    assert!(!verify(b"other", 1_700_000_000, b"{\"a\":1}", &sig));
    assert!(!verify(b"k", 1_700_000_000, b"{\"a\":1}", "sha256=zz"));
    // Known answer: HMAC-SHA256("key", "1.body"), as `openssl dgst -sha256 -hmac key` gives.
    assert_eq!(
        signature(b"key", 1, b"body"),
        format!("sha256={}", {
            use hmac::{Hmac, Mac};
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(b"key").unwrap();
            m.update(b"1.body");
            hex::encode(m.finalize().into_bytes())
        })
    );
}

#[test]
fn only_5xx_and_transport_failures_are_retried() {
    assert_eq!(classify(Attempt::Status(200)), Verdict::Delivered);
    assert_eq!(classify(Attempt::Status(204)), Verdict::Delivered);
    assert_eq!(classify(Attempt::Status(503)), Verdict::Retry);
    assert_eq!(classify(Attempt::Status(500)), Verdict::Retry);
    assert_eq!(
        classify(Attempt::Transport(Transport::Timeout)),
        Verdict::Retry
    );
    assert_eq!(
        classify(Attempt::Transport(Transport::Connect)),
        Verdict::Retry
    );
    assert_eq!(
        classify(Attempt::Status(429)),
        Verdict::Retry,
        "rate limited"
    );
    assert_eq!(classify(Attempt::Status(408)), Verdict::Retry);
    assert_eq!(classify(Attempt::Status(400)), Verdict::GiveUp);
    assert_eq!(classify(Attempt::Status(404)), Verdict::GiveUp);
    assert_eq!(classify(Attempt::Status(301)), Verdict::GiveUp);
}

#[test]
fn backoff_doubles_is_capped_and_jittered_within_its_upper_half() {
    let d = NotifyDelivery {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        ..NotifyDelivery::default()
    };
    let ms = |retry, unit| backoff(&d, retry, unit).as_millis();
    assert_eq!((ms(1, 0.0), ms(1, 1.0)), (50, 100));
    assert_eq!((ms(2, 0.0), ms(3, 1.0)), (100, 400));
    assert_eq!((ms(5, 0.0), ms(5, 1.0)), (500, 1000));
    assert_eq!(ms(60, 1.0), 1000, "no overflow, never above the cap");
    for i in 0..100 {
        let b = backoff(&d, 4, f64::from(i) / 100.0);
        assert!(
            b >= Duration::from_millis(400) && b <= Duration::from_millis(800),
            "{b:?}"
        );
    }
}

fn job(n: &Arc<Notice>, bytes: usize) -> Job {
    Job {
        notice: n.clone(),
        queued_at: Instant::now(),
        bytes,
    }
}

#[test]
fn the_queue_is_bounded_by_count_and_by_bytes_and_never_blocks() {
    let n = Arc::new(notice(NotifyEvent::PermissionRequested, "Bash", &[]));
    let (tx, rx) = queue(2, 1000);
    assert_eq!(tx.try_push(job(&n, 100)), Ok(()));
    assert_eq!(tx.try_push(job(&n, 100)), Ok(()));
    assert_eq!(tx.try_push(job(&n, 100)), Err(Refused::Full), "count");
    assert_eq!(tx.bytes(), 200);
    rx.pop().unwrap();
    assert_eq!(tx.bytes(), 100);
    assert_eq!(tx.try_push(job(&n, 950)), Err(Refused::Full), "bytes");
    assert_eq!(tx.bytes(), 100, "a refused push gives its bytes back");
    assert_eq!(tx.try_push(job(&n, 900)), Ok(()));
    let (tx, rx) = queue(2, 1000);
    drop(rx);
    assert_eq!(tx.try_push(job(&n, 1)), Err(Refused::Closed));
    assert_eq!(tx.bytes(), 0);
}

/// A transport that answers from a script and records what it was sent.
struct Scripted {
    answers: VecDeque<Attempt>,
    sent: Vec<(HashMap<String, String>, Vec<u8>)>,
}

impl Post for &mut Scripted {
    fn post(&mut self, headers: &[(&str, String)], body: &[u8]) -> Attempt {
        let h = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.sent.push((h, body.to_vec()));
        self.answers.pop_front().unwrap_or(Attempt::Status(200))
    }
}

fn resolved(max_attempts: u32) -> ResolvedSink {
    let mut config = sink(&NotifyEvent::ALL, NotifySelector::default());
    config.delivery.max_attempts = max_attempts;
    config.delivery.backoff_initial = Duration::from_millis(1);
    config.delivery.backoff_max = Duration::from_millis(2);
    ResolvedSink {
        config,
        url: SinkUrl::parse("http://127.0.0.1:9/hook").unwrap(),
        secret: Some(Secret::new("whsec")),
    }
}

fn deliver(answers: Vec<Attempt>, max_attempts: u32) -> (Scripted, SinkMetrics) {
    let metrics = NotifyMetrics::register(&crate::metrics::Metrics::new()).sink("ops");
    let mut fake = Scripted {
        answers: answers.into(),
        sent: Vec::new(),
    };
    let mut w = Worker {
        sink: resolved(max_attempts),
        link_base: LinkBase::fixed("http://c"),
        metrics: metrics.clone(),
        post: &mut fake,
    };
    let n = Arc::new(notice(NotifyEvent::PermissionRequested, "Bash", &[]));
    w.deliver(job(&n, 10));
    (fake, metrics)
}

#[test]
fn the_worker_signs_each_attempt_and_retries_5xx_until_delivered() {
    let (fake, m) = deliver(
        vec![Attempt::Status(503), Attempt::Transport(Transport::Timeout)],
        5,
    );
    assert_eq!(fake.sent.len(), 3);
    assert_eq!((m.sent.get(), m.failed.get()), (1, 2));
    assert_eq!(m.dropped_count(DropReason::RetriesExhausted), 0);
    let ids: Vec<&String> = fake
        .sent
        .iter()
        .map(|(h, _)| &h["X-Ccr-Delivery"])
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one delivery id across retries"
    );
    for (h, body) in &fake.sent {
        let ts: u64 = h["X-Ccr-Timestamp"].parse().unwrap();
        assert!(verify(b"whsec", ts, body, &h["X-Ccr-Signature"]));
        assert_eq!(h["X-Ccr-Event"], "permission_requested");
    }
}

#[test]
fn the_worker_gives_up_on_4xx_at_once_and_after_the_last_attempt_otherwise() {
    let (fake, m) = deliver(vec![Attempt::Status(401), Attempt::Status(200)], 5);
    assert_eq!(fake.sent.len(), 1);
    assert_eq!((m.sent.get(), m.failed.get()), (0, 1));
    assert_eq!(m.dropped_count(DropReason::Rejected), 1);
    let (fake, m) = deliver(vec![Attempt::Status(502); 5], 3);
    assert_eq!(fake.sent.len(), 3);
    assert_eq!((m.sent.get(), m.failed.get()), (0, 3));
    assert_eq!(m.dropped_count(DropReason::RetriesExhausted), 1);
}

#[test]
fn a_notifier_without_sinks_builds_nothing() {
    let n = Notifier::none();
    n.offer(|| panic!("built without a sink"));
    assert!(!n.is_active());
}

#[test]
fn unset_variables_and_unreadable_files_are_config_problems_without_values() {
    let toml = r#"
[sim]
embedded = true
[api]
auth = "disabled"
[[notify]]
name = "a"
kind = "webhook"
url_env = "A_URL"
secret_env = "A_SECRET"
events = ["session_failed"]
[[notify]]
name = "b"
kind = "slack"
url_file = "/nonexistent/b-url"
events = ["session_failed"]
"#;
    let c = load_from_str(toml, HashMap::new()).unwrap();
    let env = |v: &str| match v {
        "A_URL" => Some("not-a-url-s3cr3t".to_owned()),
        _ => None,
    };
    let problems = resolve_with(&c.notify, env).unwrap_err();
    let got: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.path.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].0, "notify[0].url_env");
    assert!(got[0].1.starts_with("A_URL: not a valid URL"), "{got:?}");
    assert_eq!(
        got[1],
        (
            "notify[0].secret_env",
            "environment variable A_SECRET is not set"
        )
    );
    assert_eq!(got[2].0, "notify[1].url_file");
    assert!(!format!("{problems:?}").contains("s3cr3t"));
    let env = |v: &str| Some(format!("https://h.example/{v}"));
    let ok = resolve_with(&c.notify, env).unwrap_err();
    assert_eq!(ok.len(), 1, "only the file is missing: {ok:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("u");
    std::fs::write(&file, "https://hooks.slack.com/services/s3cr3t\n").unwrap();
    let toml = toml.replace("/nonexistent/b-url", file.to_str().unwrap());
    let c = load_from_str(&toml, HashMap::new()).unwrap();
    let sinks = resolve_with(&c.notify, |v| Some(format!("https://h.example/{v}"))).unwrap();
    assert_eq!(
        sinks[1].url.expose(),
        "https://hooks.slack.com/services/s3cr3t"
    );
    assert_eq!(
        sinks[0].secret.as_ref().unwrap().expose(),
        "https://h.example/A_SECRET"
    );
    let shown = format!("{sinks:?}");
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("h.example"),
        "{shown}"
    );
}

#[test]
fn a_sink_unchanged_but_for_its_position_keeps_running() {
    let named = |name: &str, index: usize| {
        let mut s = resolved(3);
        s.config.name = name.into();
        s.config.key = format!("notify[{index}]");
        s
    };
    let metrics = crate::metrics::Metrics::new();
    let notifier = Notifier::start(
        vec![named("first", 0), named("second", 1)],
        LinkBase::fixed("http://c"),
        &metrics,
    )
    .unwrap();
    // The first entry removed: the second is now notify[0], its settings the same.
    let prepared = notifier
        .prepare(vec![named("second", 0)], &metrics)
        .unwrap();
    assert_eq!(prepared.changes.removed, ["first"]);
    assert!(
        prepared.changes.changed.is_empty() && prepared.changes.added.is_empty(),
        "{:?}",
        prepared.changes
    );
    let running = notifier.shared.sinks.read().clone();
    assert!(
        prepared.sinks[0].queue.same_queue(&running[1].queue),
        "the running sink is kept, not restarted"
    );
}
