use super::*;
use crate::frame::PromptKind;
use serde_json::json;

fn parse(v: Value) -> Result<QuestionAnswer, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[test]
fn answers_round_trip_to_the_sdk_shapes() {
    for shape in [
        json!({"action":"accept","content":{"name":"Ada","n":1}}),
        json!({"action":"accept"}),
        json!({"action":"decline"}),
        json!({"action":"cancel"}),
        json!({"behavior":"completed","result":{"choice":"retry"}}),
        json!({"behavior":"cancelled"}),
    ] {
        let a = parse(shape.clone()).unwrap();
        assert_eq!(Value::from(a), shape);
    }
}

#[test]
fn bad_answers_are_named() {
    for (bad, says) in [
        (
            json!({"action":"accept","contnet":{}}),
            "unknown field `contnet`",
        ),
        (json!({"action":"maybe"}), "unknown action"),
        (json!({"action":"decline","content":{}}), "`content`"),
        (json!({"action":"accept","content":"x"}), "object"),
        (json!({"behavior":"completed"}), "needs a `result`"),
        (json!({"behavior":"cancelled","result":1}), "`result`"),
        (
            json!({"action":"accept","behavior":"completed"}),
            "exactly one",
        ),
        (json!({}), "exactly one"),
    ] {
        let e = parse(bad.clone()).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn an_answer_must_fit_what_was_asked() {
    let accept = QuestionAnswer::Accept { content: None };
    assert!(accept.fits(PromptKind::Elicitation).is_ok());
    assert!(accept.fits(PromptKind::RequestUserDialog).is_err());
    assert!(QuestionAnswer::Dismissed
        .fits(PromptKind::RequestUserDialog)
        .is_ok());
    assert!(QuestionAnswer::Decline
        .fits(PromptKind::CanUseTool)
        .is_err());
}
