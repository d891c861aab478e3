use super::*;
use serde_json::json;

mod questions;

fn body(v: Value) -> Result<DecisionBody, serde_json::Error> {
    serde_json::from_value(v)
}

#[test]
fn allow_defaults_to_original_input() {
    let b = body(json!({"behavior":"allow"})).unwrap();
    assert_eq!(
        b.into_result(&json!({"command":"ls"}), Some("toolu_1"), Decider::Operator)
            .unwrap(),
        PermissionResult::Allow {
            updated_input: json!({"command":"ls"}),
            updated_permissions: None,
            tool_use_id: Some("toolu_1".into()),
            decision_classification: Some(DecisionClassification::UserTemporary),
        }
    );
}

#[test]
fn camel_case_names_are_aliases_and_both_at_once_is_an_error() {
    for key in ["updatedInput", "updated_input"] {
        let b = body(json!({"behavior":"allow", key: {"command":"echo safe"}})).unwrap();
        assert_eq!(
            b,
            DecisionBody::Allow {
                updated_input: Some(json!({"command":"echo safe"})),
                updated_permissions: None
            },
            "{key}"
        );
    }
    let rule = json!({"type":"addRules","rules":[],"behavior":"allow","destination":"session"});
    let b = body(json!({"behavior":"allow","updatedPermissions":[rule.clone()]})).unwrap();
    assert_eq!(
        b.into_result(&json!({}), None, Decider::Operator).unwrap(),
        PermissionResult::Allow {
            updated_input: json!({}),
            updated_permissions: Some(vec![rule]),
            tool_use_id: None,
            decision_classification: Some(DecisionClassification::UserPermanent),
        }
    );
    let both = body(json!({"behavior":"allow","updatedInput":{},"updated_input":{}}))
        .unwrap_err()
        .to_string();
    assert!(both.contains("duplicate field `updated_input`"), "{both}");
}

#[test]
fn unknown_and_misplaced_fields_are_named() {
    let e = body(json!({"behavior":"deny","mesage":"x"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `mesage`"), "{e}");
    let e = body(json!({"behavior":"allow","updatedinput":{}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `updatedinput`"), "{e}");
    let e = body(json!({"behavior":"allow","message":"x"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`message`") && e.contains("allow"), "{e}");
    let e = body(json!({"behavior":"deny","updatedInput":{}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`updated_input`") && e.contains("deny"), "{e}");
}

#[test]
fn edited_input_and_bad_shapes() {
    let b = body(json!({"behavior":"allow","updated_input":{"command":"ls -la"}})).unwrap();
    assert!(matches!(
        b.into_result(&json!({}), None, Decider::Automatic).unwrap(),
        PermissionResult::Allow { updated_input, decision_classification: None, .. }
            if updated_input == json!({"command":"ls -la"})
    ));
    let b = body(json!({"behavior":"allow","updated_input":"rm -rf /"})).unwrap();
    assert_eq!(b.validate(), Err(DecisionBodyError::InputNotObject));
    let b = body(json!({"behavior":"deny","message":"  "})).unwrap();
    assert_eq!(b.validate(), Err(DecisionBodyError::EmptyMessage));
    assert!(body(json!({"behavior":"maybe"})).is_err());
    assert!(body(json!({"message":"x"})).is_err());
}

#[test]
fn deny_defaults_and_classification() {
    let b = body(json!({"behavior":"deny"})).unwrap();
    assert_eq!(
        b.clone()
            .into_result(&json!({}), None, Decider::Automatic)
            .unwrap(),
        PermissionResult::Deny {
            message: DEFAULT_DENY_MESSAGE.into(),
            interrupt: false,
            tool_use_id: None,
            decision_classification: None,
        }
    );
    assert!(matches!(
        b.into_result(&json!({}), Some("t"), Decider::Operator).unwrap(),
        PermissionResult::Deny {
            decision_classification: Some(DecisionClassification::UserReject),
            tool_use_id: Some(t),
            ..
        } if t == "t"
    ));
}

#[test]
fn message_content_validation() {
    let ok: SendMessageBody = serde_json::from_value(json!({"content":"hi"})).unwrap();
    assert!(ok.validate().is_ok());
    let ok: SendMessageBody =
        serde_json::from_value(json!({"content":[{"type":"text","text":"hi"}]})).unwrap();
    assert!(ok.validate().is_ok());
    for bad in [json!(""), json!([]), json!(5), json!([{"text":"x"}])] {
        let b: SendMessageBody = serde_json::from_value(json!({ "content": bad })).unwrap();
        assert!(b.validate().is_err());
    }
}
