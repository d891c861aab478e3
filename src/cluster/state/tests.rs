use super::*;

fn note(session: &str, state: SessionState) -> StateNote {
    StateNote {
        from: "inst-1".into(),
        session: Arc::from(session),
        epoch: 7,
        state,
        last_error: None,
    }
}

fn s(id: &str) -> Arc<str> {
    Arc::from(id)
}

#[test]
fn a_note_and_a_resync_request_come_back_as_sent() {
    for state in [
        SessionState::Connected,
        SessionState::Reconnecting {
            attempt: 2,
            delay_ms: 500,
        },
        SessionState::Failed {
            reason: "unauthorized".into(),
            detail: "401 from CCR".into(),
        },
    ] {
        let mut n = note("s1", state);
        n.last_error = Some("handshake: 401".into());
        assert_eq!(decode(&encode_state(&n)).unwrap(), Heard::State(n));
    }
    let resync = decode(&encode_resync("inst-2")).unwrap();
    assert_eq!(
        resync,
        Heard::Resync {
            from: "inst-2".into()
        }
    );
    assert_eq!(resync.from(), "inst-2");
}

#[test]
fn the_payload_is_small_json_naming_the_owner_session_epoch_and_state() {
    let payload = encode_state(&note("s1", SessionState::Connected));
    let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"kind": "state", "from": "inst-1", "session": "s1", "epoch": 7,
            "state": {"state": "connected"}, "last_error": null})
    );
}

#[test]
fn long_errors_are_shortened_until_the_payload_fits() {
    let mut n = note(
        &"s".repeat(128),
        SessionState::Failed {
            reason: "r".repeat(5000),
            detail: "d".repeat(100_000),
        },
    );
    n.from = "i".repeat(64);
    n.last_error = Some("é".repeat(50_000));
    let payload = encode_state(&n);
    assert!(payload.len() <= MAX_PAYLOAD, "{}", payload.len());
    let Heard::State(back) = decode(&payload).unwrap() else {
        panic!("a state")
    };
    assert_eq!(back.session, n.session, "ids are kept whole");
    assert!(back.last_error.unwrap().ends_with('…'));
    // Control characters escape to six bytes each: shortened further, still fits.
    n.last_error = Some("\u{1}".repeat(10_000));
    n.state = SessionState::Failed {
        reason: "\u{2}".repeat(10_000),
        detail: "\u{3}".repeat(10_000),
    };
    let payload = encode_state(&n);
    assert!(payload.len() <= MAX_PAYLOAD, "{}", payload.len());
    assert!(decode(&payload).is_ok());
}

#[test]
fn unknown_fields_oversized_and_foreign_payloads_are_refused() {
    let with_extra = r#"{"kind":"resync","from":"a","extra":1}"#;
    assert!(matches!(decode(with_extra), Err(DecodeError::Json(_))));
    let unknown_kind = r#"{"kind":"gossip","from":"a"}"#;
    assert!(matches!(decode(unknown_kind), Err(DecodeError::Json(_))));
    assert!(matches!(decode("s1\nr1"), Err(DecodeError::Json(_))));
    let big = format!(
        r#"{{"kind":"resync","from":"{}"}}"#,
        "a".repeat(MAX_PAYLOAD)
    );
    assert!(matches!(decode(&big), Err(DecodeError::TooLarge(_))));
}

#[test]
fn clipping_cuts_at_a_character_boundary() {
    assert_eq!(clip("abc", 3), "abc");
    assert_eq!(clip("abcdefgh", 6), "abc…");
    assert_eq!(clip("ééééé", 7), "éé…");
    assert_eq!(clip("abcdef", 2), "");
}

#[test]
fn only_the_latest_state_of_a_session_waits_in_its_first_place() {
    let mut q = Queue::new(10, 1000);
    assert_eq!(q.push(&s("a"), "a1".into()), Pushed::Queued);
    assert_eq!(q.push(&s("b"), "b1".into()), Pushed::Queued);
    assert_eq!(q.push(&s("a"), "a2".into()), Pushed::Replaced);
    assert_eq!(q.len(), 2);
    assert_eq!(
        q.take(10, 1000),
        vec![(s("a"), "a2".to_owned()), (s("b"), "b1".to_owned())]
    );
    assert!(q.is_empty());
    assert!(!q.take_overflowed());
}

#[test]
fn a_batch_is_bounded_by_count_and_bytes_but_takes_at_least_one() {
    let mut q = Queue::new(10, 10_000);
    for id in ["a", "b", "c", "d"] {
        q.push(&s(id), id.repeat(100));
    }
    assert_eq!(q.take(3, 10_000).len(), 3);
    assert_eq!(q.take(3, 10_000).len(), 1);
    for id in ["a", "b", "c"] {
        q.push(&s(id), id.repeat(100));
    }
    assert_eq!(q.take(10, 150).len(), 1, "two would pass 150 bytes");
    assert_eq!(q.take(10, 10).len(), 1, "one even when it alone is larger");
    assert_eq!(q.take(10, 250).len(), 1);
    assert!(q.take(10, 10).is_empty());
}

#[test]
fn past_its_bounds_the_queue_drops_and_says_so_once() {
    let mut q = Queue::new(2, 1000);
    q.push(&s("a"), "a".into());
    q.push(&s("b"), "b".into());
    assert_eq!(q.push(&s("c"), "c".into()), Pushed::Dropped, "count");
    assert_eq!(
        q.push(&s("a"), "a2".into()),
        Pushed::Replaced,
        "a queued session is still replaced"
    );
    assert!(q.take_overflowed());
    assert!(!q.take_overflowed(), "reported once");
    let mut q = Queue::new(10, 10);
    q.push(&s("a"), "a".repeat(6));
    assert_eq!(q.push(&s("b"), "b".repeat(6)), Pushed::Dropped, "bytes");
    assert_eq!(q.push(&s("a"), "a".repeat(11)), Pushed::Dropped);
    assert!(q.is_empty(), "a's older state is not left behind: {q:?}");
    assert!(q.take_overflowed());
}

#[test]
fn what_could_not_be_sent_goes_back_first_unless_a_newer_state_came() {
    let mut q = Queue::new(10, 1000);
    q.push(&s("a"), "a1".into());
    q.push(&s("b"), "b1".into());
    q.push(&s("c"), "c1".into());
    let batch = q.take(2, 1000);
    q.push(&s("b"), "b2".into());
    q.requeue(batch);
    assert_eq!(
        q.take(10, 1000),
        vec![
            (s("a"), "a1".to_owned()),
            (s("c"), "c1".to_owned()),
            (s("b"), "b2".to_owned())
        ]
    );
}

#[actix_rt::test]
async fn the_outbox_wakes_its_sender_for_a_push_made_before_it_waited() {
    let outbox = StateOutbox::new();
    outbox.push(&note("a", SessionState::Connecting));
    outbox.push(&note("a", SessionState::Connected));
    tokio::time::timeout(std::time::Duration::from_secs(5), outbox.wait())
        .await
        .expect("woken");
    let batch = outbox.take(10, 10_000);
    assert_eq!(batch.len(), 1, "coalesced");
    let Heard::State(n) = decode(&batch[0].1).unwrap() else {
        panic!("a state")
    };
    assert_eq!(n.state, SessionState::Connected);
    let waiting = tokio::spawn({
        let outbox = outbox.clone();
        async move { outbox.wait().await }
    });
    outbox.push(&note("b", SessionState::Connecting));
    tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("woken")
        .expect("joined");
}
