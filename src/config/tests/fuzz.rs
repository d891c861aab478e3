//! Property-based fuzzing of `POST /v1/sessions` bodies ([`session_from_json`]).
//!
//! Properties: no body panics; an accepted body has a plain id and exactly one token
//! source that is not a literal; no error ever repeats a secret value.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::session_from_json;
use crate::config::TokenSpec;
use ccr_protocol::fuzz::{config, json_value, nasty_string};

const SECRET: &str = "S3CRET-do-not-print";

/// A session body: the keys of a `[[sessions]]` entry with values of any shape; the
/// secret keys (`token`, `token_command`) sometimes hold a value marked [`SECRET`].
fn body() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "id",
        "labels",
        "token_env",
        "token_file",
        "viewer_only",
        "base_url",
        "",
    ]);
    let value = prop_oneof![
        3 => "[a-z0-9_.:-]{1,12}".prop_map(Value::from),
        2 => json_value(3),
        1 => Just(json!(["a", "b"])),
        1 => Just(json!(true)),
    ];
    let secret = prop_oneof![
        2 => Just(None),
        1 => Just(Some(Value::from(SECRET))),
        1 => nasty_string().prop_map(|s| Some(Value::from(format!("{SECRET}{s}")))),
        1 => json_value(2).prop_map(Some),
    ];
    (
        prop::collection::vec((keys, value), 0..6),
        secret.clone(),
        secret,
    )
        .prop_map(|(kv, token, command)| {
            let mut m: Map<String, Value> =
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(t) = token {
                m.insert("token".into(), t);
            }
            if let Some(c) = command {
                m.insert("token_command".into(), c);
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_session_bodies_never_panic(v in json_value(5)) {
        let _ = session_from_json(&v);
    }

    #[test]
    fn fuzz_session_bodies_accept_only_valid_and_never_echo_secrets(v in body()) {
        match session_from_json(&v) {
            Ok(spec) => {
                prop_assert!(v.get("token").is_none(), "{}", v);
                prop_assert!(!spec.id.is_empty() && spec.id.len() <= 128, "{}", v);
                prop_assert!(
                    spec.id.chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c)),
                    "{}", v
                );
                prop_assert!(!matches!(spec.token, TokenSpec::Literal(_)), "{}", v);
                let sources = ["token_env", "token_file", "token_command"]
                    .iter()
                    .filter(|k| v.get(**k).is_some())
                    .count();
                prop_assert_eq!(sources, 1, "{}", v);
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    let shown = e.to_string();
                    prop_assert!(!shown.contains(SECRET), "leaks a secret: {}", shown);
                }
            }
        }
    }
}
