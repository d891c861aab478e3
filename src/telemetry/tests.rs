//! Unit tests of the telemetry events: each `emit` bumps its metric (read back from the
//! rendered `/metrics` text) and its session counter, publishes its bus event
//! (received from a subscribed `EventBus`), and logs its line under its old target.

use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast;

use super::frames::*;
use super::ledger::LedgerWriteFailed;
use super::permissions::*;
use super::prompts::*;
use super::sessions::*;
use super::streams::StreamReaderDropped;
use crate::events::{BusLimits, Envelope, EventBus};
use crate::metrics::{Format, Metrics, Snapshot};
use ccr_protocol::api::Delivery;
use ccr_protocol::metrics::sample;
use ccr_protocol::reply::Outcome;
use ccr_protocol::session::{FrameCounters, SessionState};

/// The value of `series` in the metrics' `/metrics` text.
fn metric(m: &Metrics, series: &str) -> f64 {
    let text = m.render(&Snapshot::default(), Format::OpenMetrics);
    sample(&text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// The next bus event as its wire JSON.
fn next(rx: &mut broadcast::Receiver<Arc<Envelope>>) -> serde_json::Value {
    let env = rx.try_recv().expect("an event was published");
    serde_json::to_value(&env.event).unwrap()
}

/// A bus and a receiver of everything published on it from now on.
fn bus() -> (EventBus, broadcast::Receiver<Arc<Envelope>>) {
    let bus = EventBus::new(BusLimits::default());
    let rx = bus.subscribe();
    (bus, rx)
}

/// Everything `f` logs (at any level, on this thread), one line per event.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let out = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .without_time()
        .with_writer(move || out.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buf.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn every_frame_kind_is_counted_once_in_its_own_bucket() {
    for kind in FrameKind::ALL {
        let (m, mut counters) = (Metrics::new(), FrameCounters::default());
        let log = logged(|| FrameReceived(kind).emit(&mut counters, &m.frames));
        assert_eq!(log, "", "routine frames are not logged");
        // The session's counter fields are named as the metric's labels.
        let fields = serde_json::to_value(counters).unwrap();
        for other in FrameKind::ALL {
            let want = if other == kind { 1.0 } else { 0.0 };
            let series = format!(
                "ccr_supervisor_frames_in_total{{kind=\"{}\"}}",
                other.label()
            );
            assert_eq!(metric(&m, &series), want, "{kind:?}: {series}");
            assert_eq!(fields[other.label()], want as u64, "{kind:?}: {fields}");
        }
    }
}

#[test]
fn skipped_unparseable_echoed_and_too_deep_frames_are_counted_and_logged() {
    let (m, mut c) = (Metrics::new(), FrameCounters::default());
    let log = logged(|| {
        let reason = "binary frame";
        FrameSkipped { reason, len: 3 }.emit(&mut c, &m.frames);
        let error = &ccr_protocol::classify("{").unwrap_err();
        FrameUnparseable { error, len: 1 }.emit(&mut c, &m.frames);
        EchoDropped.emit(&mut c, &m.frames);
        let msg_type = "assistant";
        SdkMessageTooDeep {
            depth: 200,
            len: 400,
            msg_type,
        }
        .emit(&mut c, &m.frames);
    });
    assert_eq!((c.invalid, c.duplicate, c.too_deep), (2, 1, 1));
    let frames = |kind: &str| {
        metric(
            &m,
            &format!("ccr_supervisor_frames_in_total{{kind=\"{kind}\"}}"),
        )
    };
    assert_eq!(
        (frames("invalid"), frames("duplicate"), frames("too_deep")),
        (2.0, 1.0, 1.0)
    );
    let target = "ccr_supervisor::session::router: ";
    assert_logged(
        &log,
        &[
            "WARN ccr_supervisor::session::router: skipping inbound frame reason=\"binary frame\" len=3",
            "skipping inbound frame error=frame is not valid JSON",
            "DEBUG ccr_supervisor::session::router: echoed user message dropped (uuid seen already)",
            "SDK message too deep to re-emit; forwarding a notice instead depth=200 len=400 msg_type=assistant",
        ],
    );
    assert_eq!(log.matches(target).count(), 4, "{log}");
}

#[test]
fn an_unreadable_frame_is_counted_logged_and_published_in_one_call() {
    let (m, mut c) = (Metrics::new(), FrameCounters::default());
    let (bus, mut rx) = bus();
    let session_id = &Arc::from("s1");
    let log = logged(|| {
        UnreadableFrame {
            session_id,
            kind: FrameKind::Oversized,
            len: 10,
            request_id: "r1",
            msg_type: "control_request",
            what: "prompt denied",
            why: "too big",
        }
        .emit(&mut c, &m.frames, &bus)
    });
    assert_eq!(c.oversized, 1);
    let series = "ccr_supervisor_frames_in_total{kind=\"oversized\"}";
    assert_eq!(metric(&m, series), 1.0);
    assert!(
        log.contains("WARN ccr_supervisor::session::router: unreadable inbound frame (prompt denied): too big len=10 request_id=\"r1\" msg_type=\"control_request\""),
        "{log}"
    );
    assert_eq!(
        next(&mut rx),
        json!({"type": "error", "session_id": "s1",
            "message": "unreadable control_request frame r1 (prompt denied): too big"})
    );
    // Without a request id the message names none.
    let unnamed = UnreadableFrame {
        request_id: "",
        msg_type: "untyped",
        kind: FrameKind::Invalid,
        session_id,
        len: 1,
        what: "skipped",
        why: "x",
    };
    unnamed.emit(&mut c, &m.frames, &bus);
    assert_eq!(c.invalid, 1);
    assert_eq!(
        next(&mut rx)["message"],
        "unreadable untyped frame (skipped): x"
    );
}

#[test]
fn a_state_change_is_logged_and_published() {
    let (bus, mut rx) = bus();
    let log = logged(|| {
        SessionStateChanged {
            session_id: Arc::from("s1"),
            state: SessionState::Connected,
            last_error: Some("before".into()),
            labels: Arc::from([]),
        }
        .emit(&bus)
    });
    assert!(
        log.contains("INFO ccr_supervisor::session::actor: session state state=\"connected\""),
        "{log}"
    );
    assert_eq!(
        next(&mut rx),
        json!({"type": "session_state", "session_id": "s1", "state": "connected",
            "last_error": "before"})
    );
}

#[test]
fn an_ended_connection_warns_and_publishes_its_error() {
    let (bus, mut rx) = bus();
    // Unique: identical warnings are rate-limited process-wide.
    let error = &format!("connect failed: {}", uuid::Uuid::new_v4());
    let session_id = &Arc::from("s1");
    let log = logged(|| ConnectionEnded { session_id, error }.emit(&bus));
    assert!(log.contains("WARN"), "{log}");
    assert!(
        log.contains(&format!("connection ended error={error}")),
        "{log}"
    );
    assert_eq!(
        next(&mut rx),
        json!({"type": "error", "session_id": "s1", "message": error})
    );
}

#[test]
fn reconnects_and_watchdog_drops_are_counted() {
    let (m, mut reconnects) = (Metrics::new(), 0);
    ReconnectScheduled.emit(&mut reconnects, &m);
    ReconnectScheduled.emit(&mut reconnects, &m);
    WatchdogFired.emit(&m);
    assert_eq!(reconnects, 2);
    assert_eq!(metric(&m, "ccr_supervisor_reconnects_total"), 2.0);
    assert_eq!(metric(&m, "ccr_supervisor_watchdog_reconnects_total"), 1.0);
}

#[test]
fn a_restart_is_counted_and_published_and_giving_up_is_published() {
    let (m, (bus, mut rx)) = (Metrics::new(), bus());
    let restarting = SessionState::Restarting {
        restart: 1,
        delay_ms: 100,
    };
    RestartScheduled {
        session_id: Arc::from("s1"),
        state: restarting,
        last_error: Some("session actor panicked: boom".into()),
    }
    .emit(&m, &bus);
    assert_eq!(metric(&m, "ccr_supervisor_restarts_total"), 1.0);
    let event = next(&mut rx);
    assert_eq!(
        (&event["type"], &event["state"]),
        (&json!("session_state"), &json!("restarting"))
    );
    assert_eq!(event["last_error"], "session actor panicked: boom");
    budget_exhausted().emit(&bus);
    assert_eq!(next(&mut rx)["reason"], "restart_budget_exhausted");
    assert_eq!(
        metric(&m, "ccr_supervisor_restarts_total"),
        1.0,
        "not a restart"
    );
}

#[test]
fn decisions_latency_and_the_memory_of_finished_prompts_are_measured() {
    let (m, (bus, mut rx)) = (Metrics::new(), bus());
    for _ in 0..2 {
        PromptCancelled {
            session: Arc::from("s1"),
            request_id: "r1".into(),
            tool_use_id: None,
            by: Canceller::SessionRemoved,
        }
        .emit(&m, &bus);
    }
    AnswerDelivered {
        session: Arc::from("s1"),
        request_id: "r1".into(),
        conn: 1,
        latency: Some(Duration::from_millis(2)),
        source: "rule",
    }
    .emit(&m, &bus);
    ResolvedMemorySized {
        records: 3,
        bytes: 300,
    }
    .emit(&m);
    let decisions =
        "ccr_supervisor_decisions_total{outcome=\"cancelled\",source=\"session_removed\"}";
    assert_eq!(metric(&m, decisions), 2.0);
    assert_eq!(
        metric(
            &m,
            "ccr_supervisor_decision_latency_seconds_count{source=\"rule\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "ccr_supervisor_decision_latency_seconds_sum{source=\"rule\"}"
        ),
        0.002
    );
    assert_eq!(metric(&m, "ccr_supervisor_resolved_prompts"), 3.0);
    assert_eq!(metric(&m, "ccr_supervisor_resolved_prompts_bytes"), 300.0);
    let kinds: Vec<_> = (0..3).map(|_| next(&mut rx)["type"].clone()).collect();
    assert_eq!(
        kinds,
        [
            "permission_cancelled",
            "permission_cancelled",
            "permission_delivered"
        ]
    );
}

/// A prompt as a session sends it.
fn prompt() -> Arc<ccr_protocol::PermissionPrompt> {
    Arc::new(ccr_protocol::PermissionPrompt {
        raw: None,
        request_id: "r1".into(),
        tool_name: "Bash".into(),
        tool_use_id: Some("toolu_1".into()),
        input: json!({"command": "ls"}),
        request: json!({"subtype": "can_use_tool", "tool_name": "Bash"}),
    })
}

#[test]
fn a_prompt_shown_restored_confirmed_or_unconfirmed_is_logged_and_published() {
    let (m, (bus, mut rx)) = (Metrics::new(), bus());
    let session: Arc<str> = Arc::from("s1");
    let log = logged(|| {
        Happening::Shown(PromptShown {
            session: session.clone(),
            request_id: "r1".into(),
            prompt: prompt(),
            asks_human: None,
        })
        .emit(&m, &bus);
        Happening::Restored(PromptRestored {
            session: session.clone(),
            request_id: "r1".into(),
            prompt: prompt(),
            confirmed: false,
        })
        .emit(&m, &bus);
        Happening::Confirmed(PromptConfirmed {
            session: session.clone(),
            request_id: "r1".into(),
        })
        .emit(&m, &bus);
        Happening::Unconfirmed(PromptsUnconfirmed {
            session: session.clone(),
            request_ids: vec!["r1".into(), "r2".into()],
        })
        .emit(&m, &bus);
    });
    assert_logged(
        &log,
        &[
            "INFO ccr_supervisor::registry::core::arrival: permission requested tool=Bash",
            "INFO ccr_supervisor::registry::core::arrival: restored prompt re-sent by the session: confirmed",
            "INFO ccr_supervisor::registry::core: pending prompts the session neither re-sent nor listed are unconfirmed session_id=s1 count=2",
        ],
    );
    assert_eq!(log.lines().count(), 3, "a restore is not logged: {log}");
    assert_eq!(
        next(&mut rx),
        json!({"type": "permission_requested", "session_id": "s1", "request_id": "r1",
            "tool_name": "Bash", "tool_use_id": "toolu_1", "confirmed": true,
            "kind": "can_use_tool",
            "request": {"subtype": "can_use_tool", "tool_name": "Bash"}})
    );
    let restored = next(&mut rx);
    assert_eq!(
        (&restored["type"], &restored["confirmed"]),
        (&json!("permission_requested"), &json!(false))
    );
    assert_eq!(
        next(&mut rx),
        json!({"type": "permission_confirmed", "session_id": "s1", "request_id": "r1"})
    );
    for id in ["r1", "r2"] {
        assert_eq!(
            next(&mut rx),
            json!({"type": "permission_unconfirmed", "session_id": "s1", "request_id": id})
        );
    }
    assert!(rx.try_recv().is_err(), "nothing else");
}

#[test]
fn an_answer_is_logged_counted_and_published_in_one_call() {
    let (m, (bus, mut rx)) = (Metrics::new(), bus());
    let log = logged(|| {
        Happening::Answered(PromptAnswered {
            session: Arc::from("s1"),
            request_id: "r1".into(),
            behavior: "deny",
            decided_by: "rule:bash".into(),
            delivery: Delivery::Queued,
            reason: Some("no shell".into()),
            outcome: Outcome::Denied,
            source: "rule",
        })
        .emit(&m, &bus)
    });
    assert!(
        log.contains("INFO ccr_supervisor::registry::core::answer: permission answered behavior=\"deny\" decided_by=rule:bash reason=\"no shell\""),
        "{log}"
    );
    let series = "ccr_supervisor_decisions_total{outcome=\"denied\",source=\"rule\"}";
    assert_eq!(metric(&m, series), 1.0);
    assert_eq!(
        next(&mut rx),
        json!({"type": "permission_answered", "session_id": "s1", "request_id": "r1",
            "behavior": "deny", "decided_by": "rule:bash", "delivery": "queued",
            "reason": "no shell"})
    );
}

#[test]
fn delivered_overdue_expired_and_cancelled_prompts_are_logged_and_published() {
    let (m, (bus, mut rx)) = (Metrics::new(), bus());
    let session: Arc<str> = Arc::from("s1");
    let log = logged(|| {
        AnswerDelivered {
            session: session.clone(),
            request_id: "r1".into(),
            conn: 4,
            latency: None,
            source: "operator",
        }
        .emit(&m, &bus);
        PromptOverdue {
            session: session.clone(),
            request_id: "r2".into(),
            waiting: Duration::from_millis(1500),
            prompt: prompt(),
            origin: origin(),
        }
        .emit(&bus);
        PromptExpired {
            session: session.clone(),
            request_id: "r2".into(),
            prompt: prompt(),
            origin: origin(),
        }
        .emit(&bus);
        PromptCancelled {
            session: session.clone(),
            request_id: "r3".into(),
            tool_use_id: Some("toolu_3".into()),
            by: Canceller::Session { was_pending: true },
        }
        .emit(&m, &bus);
    });
    assert_logged(
        &log,
        &[
            "DEBUG ccr_supervisor::registry::core::answer: answer written conn=4",
            "WARN ccr_supervisor::registry::core::rules: permission overdue waiting_ms=1500",
            "INFO ccr_supervisor::registry::core: permission cancelled by the session was_pending=true",
        ],
    );
    assert_eq!(log.lines().count(), 3, "an expiry is not logged: {log}");
    assert_eq!(
        metric(
            &m,
            "ccr_supervisor_decision_latency_seconds_count{source=\"operator\"}"
        ),
        0.0,
        "no latency without an arrival time"
    );
    let series = "ccr_supervisor_decisions_total{outcome=\"cancelled\",source=\"session\"}";
    assert_eq!(metric(&m, series), 1.0);
    assert_eq!(
        next(&mut rx),
        json!({"type": "permission_delivered", "session_id": "s1", "request_id": "r1"})
    );
    assert_eq!(
        next(&mut rx),
        json!({"type": "permission.overdue", "session_id": "s1", "request_id": "r2",
            "waiting_ms": 1500})
    );
    assert_eq!(
        next(&mut rx),
        json!({"type": "permission_expired", "session_id": "s1", "request_id": "r2"})
    );
    assert_eq!(
        next(&mut rx),
        json!({"type": "permission_cancelled", "session_id": "s1", "request_id": "r3",
            "tool_use_id": "toolu_3"})
    );
}

#[test]
fn a_failed_prompt_record_is_loud_and_shown_to_operators() {
    let (m, (bus, mut rx)) = (Metrics::new(), bus());
    let log = logged(|| {
        Happening::RecordFailed(PromptRecordFailed {
            session: Arc::from("s1"),
            what: "record decision",
            error: "decision ledger storage error: disk full".into(),
        })
        .emit(&m, &bus)
    });
    assert!(
        log.contains("ERROR ccr_supervisor::registry::core: LEDGER WRITE FAILED: cannot record decision; continuing without a durable record session_id=s1 error=decision ledger storage error: disk full"),
        "{log}"
    );
    assert_eq!(
        next(&mut rx),
        json!({"type": "error", "session_id": "s1",
            "message": "ledger: cannot record decision: decision ledger storage error: disk full"})
    );
}

#[test]
fn what_the_core_only_notices_is_logged_under_its_old_target_and_nothing_else() {
    use super::diagnostics::*;
    let (m, (bus, mut rx)) = (Metrics::new(), bus());
    // The process's own figures (CPU time, memory) move by themselves.
    let counted = |m: &Metrics| {
        let text = m.render(&Snapshot::default(), Format::OpenMetrics);
        let ours = text.lines().filter(|l| !l.contains("process_"));
        ours.collect::<Vec<_>>().join("\n")
    };
    let before = counted(&m);
    let log = logged(|| {
        for h in [
            Happening::ReplayIgnored(ReplayIgnored),
            Happening::CancelIgnored(CancelIgnored),
            Happening::WriteRetrying(WriteRetrying { conn: 1, next: 2 }),
            Happening::Queued(AnswerQueued { conn: 2 }),
            Happening::DecisionRefused(DecisionRefused {
                error: "no pending request r9 for session s1".into(),
            }),
            Happening::DryRunMatched(DryRunMatched {
                session: Arc::from("s1"),
                request_id: "p1".into(),
                rule: "bash".into(),
                would: "deny",
                reason: "matched rule bash".into(),
            }),
            Happening::ReadBackFailed(AnswerReadBackFailed {
                read: "Ok(Pending)".into(),
            }),
            Happening::Held(PromptHeld { lapsed: true }),
            Happening::Held(PromptHeld { lapsed: false }),
        ] {
            h.emit(&m, &bus);
        }
    });
    assert_logged(
        &log,
        &[
            "DEBUG ccr_supervisor::registry::core::arrival: replayed prompt ignored",
            "DEBUG ccr_supervisor::registry::core: cancel for an unknown or resolved prompt ignored",
            "DEBUG ccr_supervisor::registry::core::answer: write failed; retrying on the newer connection conn=1 next=2",
            "INFO ccr_supervisor::registry::core::answer: session not connected; answer queued for reconnect conn=2",
            "WARN ccr_supervisor::registry::core::answer: decision refused; nothing sent error=no pending request r9 for session s1",
            "INFO ccr_supervisor::registry::core::rules: dry-run rule matched; asking a human session_id=s1 request_id=\"p1\" rule=bash would=\"deny\" reason=matched rule bash",
            "ERROR ccr_supervisor::registry::core::arrival: cannot read back an answer to resend other=Ok(Pending)",
            "INFO ccr_supervisor::registry::core::arrival: prompt not shown: the session's lease has lapsed here; recorded and shown once it is renewed",
            "WARN ccr_supervisor::registry::core::arrival: prompt not shown: the session's lease is not held here; its next owner records it from the session's replay",
        ],
    );
    assert_eq!(log.lines().count(), 9, "one line each: {log}");
    assert!(rx.try_recv().is_err(), "nothing published");
    assert_eq!(counted(&m), before, "nothing counted");
}

#[test]
fn ledger_write_failures_are_counted_and_logged_by_kind() {
    let errors = AtomicU64::new(0);
    // Any error will do (the ledger's own sits above telemetry in the crate's order).
    let full = std::io::Error::other("decision ledger storage error: disk full");
    let log = logged(|| {
        let error = &full;
        let what = "record_decision";
        LedgerWriteFailed {
            what,
            error,
            refused: false,
        }
        .emit(&errors);
        LedgerWriteFailed {
            what,
            error,
            refused: true,
        }
        .emit(&errors);
        let what = "delivery time";
        LedgerWriteRetrying { what, error }.emit();
        let attempt = 15;
        LedgerWriteStillFailing {
            what,
            error,
            attempt,
        }
        .emit();
    });
    assert_eq!(errors.into_inner(), 2);
    let err = &full.to_string();
    for line in [
        format!("ERROR ccr_supervisor::ledger::writer: DECISION LEDGER WRITE FAILED: not recorded err={err} what=\"record_decision\""),
        format!("WARN ccr_supervisor::ledger::writer: decision ledger refused a write err={err} what=\"record_decision\""),
        format!("ERROR ccr_supervisor::registry::perform: LEDGER WRITE FAILED: delivery time; retrying in the background error={err}"),
        format!("ERROR ccr_supervisor::registry::perform: LEDGER WRITE STILL FAILING: delivery time; retrying error={err} attempt=15"),
    ] {
        assert!(log.contains(&line), "{line:?} in:\n{log}");
    }
}

#[test]
fn an_ended_session_actor_is_logged_by_what_the_supervisor_decided() {
    let (bus, mut rx) = bus();
    let log = logged(|| {
        SessionCrashed {
            cause: "session actor panicked: boom",
        }
        .emit();
        budget_exhausted().emit(&bus);
        SessionEnded { state: "closed" }.emit();
        SessionRespawned.emit();
    });
    assert_logged(
        &log,
        &[
            "ERROR ccr_supervisor::supervisor::slot: session crashed cause=session actor panicked: boom",
            "WARN ccr_supervisor::supervisor::slot: restart budget exhausted; session failed",
            "INFO ccr_supervisor::supervisor::slot: session ended; not restarting state=\"closed\"",
            "INFO ccr_supervisor::supervisor::slot: session spec changed; starting it again",
        ],
    );
    assert_eq!(next(&mut rx)["reason"], "restart_budget_exhausted");
    assert!(rx.try_recv().is_err(), "only giving up is published");
}

#[test]
fn a_slow_stream_reader_dropped_is_counted_and_logged() {
    let m = Metrics::new();
    let log = logged(|| {
        StreamReaderDropped {
            missed: 6,
            resume_after: 41,
        }
        .emit(&m.stream_drops)
    });
    assert_eq!(metric(&m, "ccr_supervisor_event_stream_drops_total"), 1.0);
    assert!(
        log.contains("INFO ccr_supervisor::api::stream: event-stream reader too slow; dropped with a lagged notice missed=6 resume_after=41"),
        "{log}"
    );
}

/// Every line of `lines` is in the captured `log`.
fn assert_logged(log: &str, lines: &[&str]) {
    for line in lines {
        assert!(log.contains(line), "{line:?} in:\n{log}");
    }
}

/// Session s1 out of restarts.
fn budget_exhausted() -> RestartsExhausted {
    RestartsExhausted {
        session_id: Arc::from("s1"),
        state: SessionState::Failed {
            reason: "restart_budget_exhausted".into(),
            detail: "d".into(),
        },
        last_error: None,
        labels: Arc::from([]),
    }
}

/// Where a test prompt came from.
fn origin() -> PromptOrigin {
    PromptOrigin {
        labels: Arc::from([]),
        received_at: std::time::SystemTime::now(),
    }
}
