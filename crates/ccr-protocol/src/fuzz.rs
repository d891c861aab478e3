//! Shared support of the property-based fuzz tests (in each module's `tests`): the case
//! count and input strategies.
//!
//! Every fuzz property runs a small number of cases in the ordinary suite; set
//! `PROPTEST_CASES` to run many more (see CONTRIBUTING.md).

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Number, Value};

/// Run `default` cases, or `PROPTEST_CASES` when that is set (long runs by hand).
///
/// Failures are not persisted to files: a case found by a long run becomes a unit test.
pub fn config(default: u32) -> Config {
    let mut c = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default;
    }
    c
}

/// Strings biased towards what breaks parsers: shell and JSON syntax, controls, escapes.
pub fn nasty_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[ -~]{0,6}",
        2 => prop::collection::vec(any::<char>(), 0..4).prop_map(String::from_iter),
        3 => prop::sample::select(vec![
            ";", "&&", "||", "|", "|&", "&", "\n", "\r", "\t", "\0", " ", "'", "\"", "\\", "`",
            "$(", ")", "(", "${", "}", "{", "$'", "<(", ">(", ">", ">>", "<", "<<", "<<<", "#",
            "2>&1", "/dev/null", "=", "*", ":*", "\u{1b}[2J", "\u{1b}]52;c;", "\u{7}", "\u{9b}",
            "\u{a0}", "\u{202e}", "é", "𝄞", "{\"", "[", "]", ",", ":", "null",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// Arbitrary JSON values: every kind, nested up to `depth` levels, strings from [`nasty_string`].
pub fn json_value(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Object keys: mostly names a parser looks for, sometimes anything.
pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "type", "request_id", "request", "subtype", "tool_name", "input", "tool_use_id",
            "response", "error", "command", "behavior", "message", "interrupt", "updated_input",
            "updatedInput", "updated_permissions", "updatedPermissions", "content", "id", "url",
            "labels", "session_id", "token", "token_env", "requires_user_interaction",
            "matched_ask_rule", "decision_reason", "blocked_path",
        ])
        .prop_map(str::to_owned),
        1 => nasty_string(),
    ]
}

/// JSON text nested `depth` levels deep (arrays, objects or a mix), as sent by a hostile peer.
pub fn deep_json_text() -> impl Strategy<Value = String> {
    (1usize..4000, 0u8..3).prop_map(|(depth, shape)| {
        let (open, close) = match shape {
            0 => ("[", "]"),
            1 => ("{\"a\":", "}"),
            _ => ("[{\"type\":[", "]}]"),
        };
        format!("{}1{}", open.repeat(depth), close.repeat(depth))
    })
}
