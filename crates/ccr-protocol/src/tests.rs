//! Property-based fuzzing of inbound frame classification and the operator API bodies.
//!
//! Properties: nothing panics on any text or JSON; a frame built from typed parts
//! classifies back to exactly those parts; a decision body becomes exactly the
//! PermissionResult it asks for, and the frame sent carries exactly that.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::api::{Decider, DecisionBody, SendMessageBody, DEFAULT_DENY_MESSAGE};
use super::frame::{classify, ControlResponse, Inbound};
use super::outbound::{permission_response, DecisionClassification, PermissionResult};
use crate::fuzz::{config, deep_json_text, json_value, key, nasty_string};

/// A non-empty id, as a hostile session might send it (mapped, not filtered, so that
/// long runs never hit proptest's reject limit).
fn id() -> impl Strategy<Value = String> {
    nasty_string().prop_map(|s| if s.is_empty() { "r".into() } else { s })
}

/// A JSON object with arbitrary members (a tool input, a permission update).
fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), json_value(3)), 0..5)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

/// What an operator means to answer, built independently of the parser.
#[derive(Debug, Clone)]
enum Intent {
    Allow {
        input: Option<Value>,
        permissions: Option<Vec<Value>>,
        camel: bool,
    },
    Deny {
        message: Option<String>,
        interrupt: Option<bool>,
    },
}

fn intent() -> impl Strategy<Value = Intent> {
    prop_oneof![
        (
            prop::option::of(object()),
            prop::option::of(prop::collection::vec(object(), 0..3)),
            any::<bool>()
        )
            .prop_map(|(input, permissions, camel)| Intent::Allow {
                input,
                permissions,
                camel
            }),
        (
            prop::option::of(id().prop_map(|m| if m.trim().is_empty() {
                format!("m{m}")
            } else {
                m
            })),
            prop::option::of(any::<bool>())
        )
            .prop_map(|(message, interrupt)| Intent::Deny { message, interrupt }),
    ]
}

impl Intent {
    fn body(&self) -> Value {
        let mut b = Map::new();
        match self {
            Intent::Allow {
                input,
                permissions,
                camel,
            } => {
                b.insert("behavior".into(), "allow".into());
                let (i, p) = match camel {
                    true => ("updatedInput", "updatedPermissions"),
                    false => ("updated_input", "updated_permissions"),
                };
                if let Some(v) = input {
                    b.insert(i.into(), v.clone());
                }
                if let Some(v) = permissions {
                    b.insert(p.into(), Value::Array(v.clone()));
                }
            }
            Intent::Deny { message, interrupt } => {
                b.insert("behavior".into(), "deny".into());
                if let Some(m) = message {
                    b.insert("message".into(), m.clone().into());
                }
                if let Some(i) = interrupt {
                    b.insert("interrupt".into(), (*i).into());
                }
            }
        }
        Value::Object(b)
    }

    fn expected(
        &self,
        original: &Value,
        tool_use_id: Option<&str>,
        who: Decider,
    ) -> PermissionResult {
        let person = who == Decider::Operator;
        let tool_use_id = tool_use_id.map(str::to_owned);
        match self {
            Intent::Allow {
                input, permissions, ..
            } => {
                let permanent = permissions.as_ref().is_some_and(|p| !p.is_empty());
                PermissionResult::Allow {
                    updated_input: input.clone().unwrap_or_else(|| original.clone()),
                    updated_permissions: permissions.clone(),
                    tool_use_id,
                    decision_classification: person.then_some(match permanent {
                        true => DecisionClassification::UserPermanent,
                        false => DecisionClassification::UserTemporary,
                    }),
                }
            }
            Intent::Deny { message, interrupt } => PermissionResult::Deny {
                message: message
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DENY_MESSAGE.into()),
                interrupt: interrupt.unwrap_or(false),
                tool_use_id,
                decision_classification: person.then_some(DecisionClassification::UserReject),
            },
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_classify_never_panics_on_text(text in nasty_string()) {
        let _ = classify(&text);
    }

    #[test]
    fn fuzz_classify_never_panics_on_json(
        v in json_value(6),
        kind in prop::sample::select(vec![
            "control_request", "control_cancel_request", "control_response", "keep_alive", "x",
        ]),
        deep in deep_json_text(),
    ) {
        let _ = classify(&v.to_string());
        let _ = classify(&deep);
        if let Value::Object(mut m) = v {
            m.insert("type".into(), kind.into());
            let _ = classify(&Value::Object(m.clone()).to_string());
            m.insert("request".into(), json!({"subtype": "can_use_tool", "tool_name": "Bash"}));
            let _ = classify(&Value::Object(m).to_string());
        }
    }

    #[test]
    fn fuzz_prompt_classifies_back_to_its_parts(
        request_id in id(),
        tool_name in nasty_string(),
        tool_use_id in prop::option::of(nasty_string()),
        input in prop::option::of(json_value(4)),
        extra in prop::collection::vec((key(), json_value(3)), 0..4),
    ) {
        let mut request: Map<String, Value> = extra.into_iter().collect();
        request.insert("subtype".into(), "can_use_tool".into());
        request.insert("tool_name".into(), tool_name.clone().into());
        match &tool_use_id {
            Some(t) => request.insert("tool_use_id".into(), t.clone().into()),
            None => request.remove("tool_use_id"),
        };
        match &input {
            Some(i) => request.insert("input".into(), i.clone()),
            None => request.remove("input"),
        };
        let request = Value::Object(request);
        let text = json!({"type": "control_request", "request_id": request_id, "request": request})
            .to_string();
        let Ok(Inbound::PermissionPrompt(p)) = classify(&text) else {
            return Err(TestCaseError::fail(format!("not a prompt: {text}")));
        };
        prop_assert_eq!(&p.request_id, &request_id);
        prop_assert_eq!(&p.tool_name, &tool_name);
        prop_assert_eq!(&p.tool_use_id, &tool_use_id);
        prop_assert_eq!(&p.input, &input.unwrap_or_else(|| json!({})));
        prop_assert_eq!(&p.request, &request);
    }

    #[test]
    fn fuzz_other_frames_classify_back(
        request_id in id(),
        outcome in prop_oneof![json_value(3).prop_map(Ok), nasty_string().prop_map(Err)],
        kind in "[a-z_]{1,12}",
    ) {
        let cancel = json!({"type": "control_cancel_request", "request_id": request_id});
        prop_assert_eq!(
            classify(&cancel.to_string()),
            Ok(Inbound::Cancel { request_id: request_id.clone() })
        );
        let response = match &outcome {
            Ok(v) => json!({"subtype": "success", "request_id": request_id, "response": v}),
            Err(e) => json!({"subtype": "error", "request_id": request_id, "error": e}),
        };
        let text = json!({"type": "control_response", "response": response}).to_string();
        prop_assert_eq!(
            classify(&text),
            Ok(Inbound::ControlResponse(ControlResponse {
                request_id,
                outcome,
                pending: Default::default(),
            }))
        );
        let text = json!({"type": kind, "x": 1}).to_string();
        match classify(&text) {
            Ok(Inbound::Sdk(m)) => {
                prop_assert_eq!(m.msg_type.as_ref(), kind.as_str());
                prop_assert_eq!(&*m.raw, text.as_str());
            }
            Ok(Inbound::KeepAlive) => prop_assert_eq!(kind.as_str(), "keep_alive"),
            other => prop_assert!(kind.starts_with("control_"), "{:?}", other),
        }
    }

    #[test]
    fn fuzz_decision_bodies_never_panic(
        v in json_value(5),
        original in json_value(2),
        extra in prop::collection::vec((key(), json_value(2)), 0..4),
    ) {
        for body in [v.clone(), {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            m.insert("behavior".into(), v);
            Value::Object(m)
        }] {
            if let Ok(b) = serde_json::from_value::<DecisionBody>(body.clone()) {
                let _ = b.validate();
                let _ = b.into_result(&original, Some("t"), Decider::Operator);
            }
            let _ = serde_json::from_str::<DecisionBody>(&body.to_string());
            let _ = serde_json::from_value::<SendMessageBody>(body).map(|m| m.validate());
        }
    }

    #[test]
    fn fuzz_decision_body_is_exactly_the_intended_result(
        intent in intent(),
        original in object(),
        tool_use_id in prop::option::of(id()),
        operator in any::<bool>(),
        request_id in id(),
    ) {
        let who = if operator { Decider::Operator } else { Decider::Automatic };
        let body = intent.body();
        let parsed: DecisionBody = serde_json::from_str(&body.to_string())
            .map_err(|e| TestCaseError::fail(format!("{body}: {e}")))?;
        prop_assert_eq!(parsed.validate(), Ok(()));
        let result = parsed
            .into_result(&original, tool_use_id.as_deref(), who)
            .map_err(|e| TestCaseError::fail(format!("{body}: {e}")))?;
        prop_assert_eq!(&result, &intent.expected(&original, tool_use_id.as_deref(), who));
        // The frame the session reads carries exactly that result.
        let frame: Value = serde_json::from_str(&permission_response(&request_id, &result))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&frame["response"]["request_id"], &json!(request_id));
        let sent: PermissionResult = serde_json::from_value(frame["response"]["response"].clone())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&sent, &result);
        if let PermissionResult::Allow { updated_input, .. } = &result {
            prop_assert_eq!(&frame["response"]["response"]["updatedInput"], updated_input);
        }
    }

    #[test]
    fn fuzz_decision_body_refuses_unknown_and_misplaced_fields(
        intent in intent(),
        field in "[a-zA-Z_]{1,16}",
        value in json_value(2),
    ) {
        let known = [
            "behavior", "updated_input", "updatedInput", "updated_permissions",
            "updatedPermissions", "message", "interrupt",
        ];
        let mut body = intent.body();
        if !known.contains(&field.as_str()) {
            body[field.as_str()] = value.clone();
            prop_assert!(serde_json::from_value::<DecisionBody>(body.clone()).is_err(), "{}", body);
        }
        let mut body = intent.body();
        match intent {
            Intent::Allow { .. } => body["message"] = json!("x"),
            Intent::Deny { .. } => body["updatedInput"] = json!({}),
        }
        prop_assert!(serde_json::from_value::<DecisionBody>(body.clone()).is_err(), "{}", body);
    }

    #[test]
    fn fuzz_message_body_accepts_exactly_text_or_blocks(content in json_value(3)) {
        let parsed: SendMessageBody = serde_json::from_value(json!({ "content": content }))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = match &content {
            Value::String(s) => !s.is_empty(),
            Value::Array(b) => !b.is_empty() && b.iter().all(|b| b["type"].is_string()),
            _ => false,
        };
        prop_assert_eq!(parsed.validate().is_ok(), want);
    }
}

/// Found by the fuzz: without serde_json's `float_roundtrip`, a number needing 17 digits
/// came back one unit in the last place off, so `updatedInput` was not the input.
#[test]
fn floats_in_a_prompt_and_its_answer_survive_exactly() {
    for n in [
        "-1.1717793328041071e229",
        "-3.926445783659798e-279",
        "0.30000000000000004",
    ] {
        let text = format!(
            r#"{{"type":"control_request","request_id":"r","request":{{"subtype":"can_use_tool","tool_name":"T","input":{{"x":{n}}}}}}}"#
        );
        let Ok(Inbound::PermissionPrompt(p)) = classify(&text) else {
            panic!("not a prompt: {text}")
        };
        let want: f64 = n.parse().unwrap();
        assert_eq!(p.input["x"].as_f64(), Some(want), "{n}");
        let body: DecisionBody = serde_json::from_str(&format!(
            r#"{{"behavior":"allow","updated_input":{{"y":{n}}}}}"#
        ))
        .unwrap();
        let result = body.into_result(&p.input, None, Decider::Operator).unwrap();
        let frame: Value = serde_json::from_str(&permission_response("r", &result)).unwrap();
        assert_eq!(
            frame["response"]["response"]["updatedInput"]["y"].as_f64(),
            Some(want)
        );
    }
}
