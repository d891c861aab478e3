use super::*;
use serde_json::json;

#[test]
fn can_use_tool_keeps_raw_request_and_unknown_fields() {
    let text = r#"{"type":"control_request","request_id":"req_1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"npm test"},"tool_use_id":"toolu_1","future_field":[1,2]}}"#;
    let Inbound::PermissionPrompt(p) = classify(text).unwrap() else {
        panic!("not a prompt")
    };
    assert_eq!(p.request_id, "req_1");
    assert_eq!(p.tool_name, "Bash");
    assert_eq!(p.tool_use_id.as_deref(), Some("toolu_1"));
    assert_eq!(p.input, json!({"command":"npm test"}));
    assert_eq!(p.request["future_field"], json!([1, 2]));
    assert!(!p.requires_user_interaction());
    assert_eq!(p.matched_ask_rule(), None);
}

#[test]
fn matched_ask_rule_is_read_and_a_garbled_one_still_counts() {
    let prompt = |rule: Value| {
        let text = json!({"type":"control_request","request_id":"r","request":{
            "subtype":"can_use_tool","tool_name":"Bash","input":{},"matched_ask_rule":rule}});
        match classify(&text.to_string()).unwrap() {
            Inbound::PermissionPrompt(p) => p,
            other => panic!("{other:?}"),
        }
    };
    let p =
        prompt(json!({"source":"localSettings","tool_name":"Bash","rule_content":"npm test:*"}));
    assert_eq!(
        p.matched_ask_rule(),
        Some(MatchedAskRule {
            source: Some("localSettings"),
            tool_name: Some("Bash"),
            rule_content: Some("npm test:*"),
        })
    );
    let p = prompt(json!({"source":"userSettings","tool_name":"mcp__x"}));
    assert_eq!(p.matched_ask_rule().and_then(|r| r.rule_content), None);
    assert!(p.matched_ask_rule().is_some());
    for garbled in [json!("yes"), json!(true), json!([]), json!({}), json!(1)] {
        let p = prompt(garbled.clone());
        let rule = p.matched_ask_rule();
        assert!(rule.is_some_and(|r| r.source.is_none()), "{garbled}");
    }
    for absent in [Value::Null, json!(false)] {
        assert_eq!(prompt(absent.clone()).matched_ask_rule(), None, "{absent}");
    }
}

#[test]
fn unsupported_subtype_gets_exact_error_text() {
    let text =
        r#"{"type":"control_request","request_id":"req_9","request":{"subtype":"frobnicate"}}"#;
    assert_eq!(
        classify(text).unwrap(),
        Inbound::UnsupportedRequest {
            request_id: "req_9".into(),
            error: "Unsupported control request subtype: frobnicate".into()
        }
    );
}

#[test]
fn prompt_without_tool_name_is_answered_not_dropped() {
    let text =
        r#"{"type":"control_request","request_id":"r","request":{"subtype":"can_use_tool"}}"#;
    assert!(matches!(
        classify(text).unwrap(),
        Inbound::UnsupportedRequest { .. }
    ));
}

#[test]
fn cancel_response_keepalive_and_sdk() {
    assert_eq!(
        classify(r#"{"type":"control_cancel_request","request_id":"req_1"}"#).unwrap(),
        Inbound::Cancel {
            request_id: "req_1".into()
        }
    );
    assert_eq!(
        classify(r#"{"type":"keep_alive"}"#).unwrap(),
        Inbound::KeepAlive
    );
    let ok = classify(r#"{"type":"control_response","response":{"subtype":"success","request_id":"i1","response":{"still_queued":[]}}}"#).unwrap();
    assert_eq!(
        ok,
        Inbound::ControlResponse(ControlResponse {
            request_id: "i1".into(),
            outcome: Ok(json!({"still_queued":[]})),
            pending: PendingLists::default(),
        })
    );
    let err = classify(r#"{"type":"control_response","response":{"subtype":"error","request_id":"i2","error":"nope"}}"#).unwrap();
    assert_eq!(
        err,
        Inbound::ControlResponse(ControlResponse {
            request_id: "i2".into(),
            outcome: Err("nope".into()),
            pending: PendingLists::default(),
        })
    );
    let text = r#"{"type":"brand_new_type","x":{"y":1}}"#;
    let Inbound::Sdk(m) = classify(text).unwrap() else {
        panic!()
    };
    assert_eq!(m.msg_type, "brand_new_type");
    assert_eq!(&*m.raw, text, "forwarded byte for byte");
    let Inbound::Sdk(m) = classify(r#"{"type":"stream_event"}"#).unwrap() else {
        panic!()
    };
    assert!(
        matches!(m.msg_type, Cow::Borrowed("stream_event")),
        "usual types are not allocated per frame"
    );
}

#[test]
fn an_unreadable_prompt_is_denied_and_other_requests_answered_by_kind() {
    use crate::scan::HeadScanner;
    let text = br#"{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool","tool_name":"Write","tool_use_id":"t1","input":{}}}"#;
    let Unreadable::Prompt { prompt, message } = unreadable(
        &HeadScanner::scan(text),
        "3000000 bytes, over the limit of 1024",
    ) else {
        panic!("not a prompt")
    };
    assert_eq!(
        (
            prompt.request_id.as_str(),
            prompt.tool_name.as_str(),
            prompt.tool_use_id.as_deref()
        ),
        ("r1", "Write", Some("t1"))
    );
    assert_eq!(prompt.request["unreadable"]["bytes"], json!(text.len()));
    assert!(message.contains("over the limit of 1024"), "{message}");
    let head = |subtype: &str| {
        HeadScanner::scan(
            format!(r#"{{"type":"control_request","request_id":"x","request":{{"subtype":"{subtype}"}}}}"#)
                .as_bytes(),
        )
    };
    assert_eq!(
        unreadable(&head("request_user_dialog"), "w"),
        Unreadable::Unanswered {
            request_id: "x".into()
        }
    );
    assert!(matches!(
        unreadable(&head("mcp_message"), "w"),
        Unreadable::Error { .. }
    ));
    assert_eq!(
        unreadable(&HeadScanner::scan(br#"{"type":"assistant"}"#), "w"),
        Unreadable::Skip
    );
    assert_eq!(
        unreadable(
            &HeadScanner::scan(br#"{"type":"control_request","request_id":5}"#),
            "w"
        ),
        Unreadable::Skip
    );
}

#[test]
fn an_initialize_reply_carries_its_pending_lists_absent_or_empty() {
    let prompt = json!({"type":"control_request","request_id":"p1",
        "request":{"subtype":"can_use_tool","tool_name":"Bash","input":{}}});
    let text = json!({"type":"control_response","response":{"subtype":"success",
        "request_id":"i1","response":{"commands":[]},
        "pending_permission_requests":[prompt],"pending_user_dialog_requests":[]}})
    .to_string();
    let Inbound::ControlResponse(r) = classify(&text).unwrap() else {
        panic!()
    };
    assert_eq!(r.pending.permission.as_deref(), Some(&[prompt.clone()][..]));
    assert_eq!(r.pending.user_dialog.as_deref(), Some(&[][..]));
    assert_eq!(r.pending.elicitation, None, "absent, not empty");
    assert!(!r.pending.is_absent());
    assert_eq!(r.pending.all().collect::<Vec<_>>(), [prompt]);
    let old = r#"{"type":"control_response","response":{"subtype":"success","request_id":"i1"}}"#;
    let Inbound::ControlResponse(r) = classify(old).unwrap() else {
        panic!()
    };
    assert!(r.pending.is_absent(), "an older CLI");
    assert_eq!(
        r.outcome,
        Ok(Value::Null),
        "an interrupt answered with no body"
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for (text, want_json_err) in [
        ("not json", true),
        ("{\"type\":", true),
        ("{}", false),
        ("[1,2]", false),
        ("{\"type\":5}", false),
        ("\"type\"", false),
    ] {
        let err = classify(text).unwrap_err();
        assert_eq!(
            matches!(err, FrameError::InvalidJson(_)),
            want_json_err,
            "{text}: {err}"
        );
    }
    assert!(matches!(
        classify(r#"{"type":"control_cancel_request"}"#),
        Err(FrameError::Malformed { .. })
    ));
    assert!(matches!(
        classify(r#"{"type":"control_request","request":{}}"#),
        Err(FrameError::Malformed { .. })
    ));
}

#[test]
fn the_request_and_input_text_are_kept_as_sent_for_the_event_and_the_ledger() {
    // Spaces, key order and number spelling as a session may send them: kept, not
    // re-serialized (a `Value` would sort the keys and drop the spaces).
    let request = r#"{ "tool_name": "Bash", "subtype": "can_use_tool",
        "input": { "command": "ls \"a b\"", "timeout": 1.50 }, "tool_use_id": "t1" }"#;
    let frame = format!(r#"{{"type":"control_request","request_id":"r1","request":{request}}}"#);
    let Ok(Inbound::PermissionPrompt(p)) = classify(&frame) else {
        panic!("not a prompt")
    };
    let raw = p.raw.as_ref().expect("read from a frame");
    assert_eq!(raw.request().get(), request);
    assert_eq!(
        raw.input(),
        Some(r#"{ "command": "ls \"a b\"", "timeout": 1.50 }"#)
    );
    assert_eq!(
        serde_json::from_str::<Value>(raw.input().unwrap()).unwrap(),
        p.input
    );
    let event = crate::event::Event::permission_requested(&"s".into(), "r1", &p, true);
    let text = serde_json::to_string(&event).unwrap();
    assert!(text.contains(request), "{text}");

    // No input: none to copy (the ledger serializes the empty object `input` is then).
    let frame = r#"{"type":"control_request","request_id":"r2","request":{"subtype":"can_use_tool","tool_name":"X"}}"#;
    let Ok(Inbound::PermissionPrompt(p)) = classify(frame) else {
        panic!("not a prompt")
    };
    assert_eq!(p.raw.as_ref().unwrap().input(), None);
    assert_eq!(p.input, json!({}));
}
