//! Property-based fuzzing of the API's query strings and the policy evaluate body.
//!
//! Properties: no query string or body panics the parsers; unknown fields and
//! parameters are refused; a valid audit query is accepted as given.

use actix_web::web::Query;
use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::ledger::LedgerQuery;
use ccr_protocol::api::LedgerParams;
use ccr_protocol::api::PendingQuery;
use ccr_protocol::api::{EventsQuery, PageQuery};
use ccr_protocol::fuzz::{config, json_value, key, nasty_string};
use ccr_protocol::policy::EvaluateBody;

/// A query string: known and unknown names, values raw or percent-encoded.
fn query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        3 => prop::sample::select(vec![
            "session_id", "tool", "outcome", "decided_by", "since", "until", "limit", "cursor",
            "after",
        ])
        .prop_map(str::to_owned),
        1 => nasty_string(),
    ];
    let value = prop_oneof![
        nasty_string().prop_map(|v| {
            percent_encoding::utf8_percent_encode(&v, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        }),
        nasty_string(),
        "[0-9]{1,25}",
        Just("2026-01-31T09:00:00Z".to_owned()),
        Just("%ZZ%".to_owned()),
    ];
    prop::collection::vec((name, value), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_query_strings_never_panic(q in query()) {
        if let Ok(p) = Query::<LedgerParams>::from_query(&q) {
            let _ = LedgerQuery::try_from(p.into_inner());
        }
        let _ = Query::<EventsQuery>::from_query(&q);
        let _ = Query::<PageQuery>::from_query(&q);
        let _ = Query::<PendingQuery>::from_query(&q);
    }

    #[test]
    fn fuzz_unknown_query_parameters_are_refused(name in "[a-z_]{1,12}", v in "[a-z0-9]{0,8}") {
        let q = format!("{name}={v}");
        let audit = ["session_id", "tool", "outcome", "decided_by", "since", "until", "limit", "cursor"];
        prop_assert_eq!(Query::<LedgerParams>::from_query(&q).is_ok(), audit.contains(&name.as_str()));
        let ok = Query::<PendingQuery>::from_query(&q).is_ok();
        prop_assert_eq!(ok, name == "session_id");
    }

    #[test]
    fn fuzz_valid_audit_queries_are_accepted(
        limit in 1usize..=1000,
        session in "[a-zA-Z0-9_.:-]{1,20}",
        outcome in prop::sample::select(vec!["allowed", "denied", "cancelled", "expired", "pending"]),
        secs in 0u64..4_000_000_000,
    ) {
        let at = humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        let q = format!("session_id={session}&outcome={outcome}&limit={limit}&since={at}");
        let p = Query::<LedgerParams>::from_query(&q).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = LedgerQuery::try_from(p.into_inner()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.limit, Some(limit));
        prop_assert_eq!(parsed.session_id.as_deref(), Some(session.as_str()));
        prop_assert_eq!(parsed.since, Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)));
    }

    #[test]
    fn fuzz_evaluate_bodies_never_panic_and_refuse_unknown_fields(
        v in json_value(5),
        fields in prop::collection::vec((key(), json_value(3)), 0..6),
    ) {
        let _ = serde_json::from_value::<EvaluateBody>(v);
        let known = ["session_id", "labels", "tool_name", "input", "request"];
        let body = Value::Object(fields.into_iter().collect::<Map<_, _>>());
        let parsed = serde_json::from_value::<EvaluateBody>(body.clone());
        let unknown = body.as_object().is_some_and(|m| m.keys().any(|k| !known.contains(&k.as_str())));
        if unknown {
            prop_assert!(parsed.is_err(), "{}", body);
        }
    }
}
