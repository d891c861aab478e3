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

fn bulk(v: Value) -> Result<Vec<BulkAnswer>, String> {
    serde_json::from_value::<BulkDecisions>(v)
        .map_err(|e| e.to_string())?
        .validate()
        .map_err(|e| e.to_string())
}

#[test]
fn bulk_items_carry_the_single_answer_fields_in_order() {
    let items = bulk(json!({"decisions":[
        {"session_id":"s1","request_id":"r1","behavior":"allow","updatedInput":{"command":"ls"}},
        {"session_id":"s2","request_id":"r2","behavior":"deny","message":"no","interrupt":true},
    ]}))
    .unwrap();
    assert_eq!(
        items,
        vec![
            BulkAnswer {
                session_id: "s1".into(),
                request_id: "r1".into(),
                body: DecisionBody::Allow {
                    updated_input: Some(json!({"command":"ls"})),
                    updated_permissions: None
                },
            },
            BulkAnswer {
                session_id: "s2".into(),
                request_id: "r2".into(),
                body: DecisionBody::Deny {
                    message: Some("no".into()),
                    interrupt: Some(true)
                },
            },
        ]
    );
}

#[test]
fn bulk_bodies_are_as_strict_as_the_single_one() {
    let item = |extra: Value| {
        let mut i = json!({"session_id":"s1","request_id":"r1","behavior":"allow"});
        i.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({ "decisions": [i] })
    };
    let e = bulk(item(json!({"mesage":"x"}))).unwrap_err();
    assert!(e.contains("unknown field `mesage`"), "{e}");
    let e = bulk(json!({"decisions":[], "extra": 1})).unwrap_err();
    assert!(e.contains("unknown field `extra`"), "{e}");
    let e = bulk(json!({"decisions":[{"request_id":"r1","behavior":"allow"}]})).unwrap_err();
    assert!(e.contains("missing field `session_id`"), "{e}");
    let e = bulk(item(json!({"message":"x"}))).unwrap_err();
    assert_eq!(
        e,
        "decisions[0]: field `message` is not valid with behavior \"allow\""
    );
    let e = bulk(item(json!({"updated_input":[1]}))).unwrap_err();
    assert_eq!(e, "decisions[0]: updated_input must be a JSON object");
    let e = bulk(item(json!({"updatedInput":{},"updated_input":{}}))).unwrap_err();
    assert!(e.contains("duplicate field `updated_input`"), "{e}");
}

#[test]
fn bulk_counts_are_one_to_a_thousand() {
    let items = |n: usize| {
        let one = json!({"session_id":"s1","request_id":"r1","behavior":"deny"});
        json!({ "decisions": vec![one; n] })
    };
    assert_eq!(bulk(items(0)).unwrap_err(), "decisions must not be empty");
    assert_eq!(bulk(items(MAX_BULK_DECISIONS)).unwrap().len(), 1000);
    assert_eq!(
        bulk(items(MAX_BULK_DECISIONS + 1)).unwrap_err(),
        "at most 1000 decisions per request, got 1001"
    );
}

#[test]
fn a_bulk_item_serializes_as_the_client_sends_it() {
    let raw = RawDecision {
        behavior: Behavior::Deny,
        updated_input: None,
        updated_permissions: None,
        message: Some("no".into()),
        interrupt: Some(false),
    };
    let item = BulkItem::new("s1", "r/1", raw.clone());
    assert_eq!(
        serde_json::to_value(&item).unwrap(),
        json!({"session_id":"s1","request_id":"r/1","behavior":"deny","message":"no","interrupt":false})
    );
    assert_eq!(item.split(), ("s1".into(), "r/1".into(), raw));
}
