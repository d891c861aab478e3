//! What the logs of the shipped demo look like to a log shipper: one flat JSON object a
//! line (top-level `message`, no Rust `Debug` leaking into values), an access line per API
//! request with the caller's `X-Request-Id`, and no ERROR in a clean shutdown.

use serde_json::Value;

use crate::common::sse::SseReader;
use crate::support::{self, Supervisor};

/// The repository's `config.toml` (the embedded demo) with the API on a free port, the
/// ledger in `dir`, and JSON logs.
fn demo_config(dir: &std::path::Path) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
        .expect("config.toml");
    let toml = shipped
        .replace("bind = \"127.0.0.1:8700\"", "bind = \"127.0.0.1:0\"")
        .replace("format = \"pretty\"", "format = \"json\"")
        .replace(
            "# path = \"./data/ledger.db\"",
            &format!("path = \"{}\"", dir.join("ledger.db").display()),
        );
    assert!(toml.contains("127.0.0.1:0") && toml.contains("\"json\""));
    support::write_file(dir, "config.toml", &toml)
}

#[actix_rt::test]
async fn json_logs_are_flat_carry_request_ids_and_a_clean_shutdown_has_no_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = demo_config(dir.path());
    let mut sup = Supervisor::spawn(&cfg).await;
    let http = awc::Client::default();
    // A demo prompt waiting for a person: the stream's prompts (from its history on),
    // the first that the API lists as pending (a demo rule may have answered others).
    let resp = http
        .get(format!(
            "{}/v1/events?after=0&types=permission_requested",
            sup.api
        ))
        .insert_header(("authorization", "Bearer demo-viewer-token"))
        .send()
        .await
        .expect("event stream");
    let mut events = SseReader::new(resp);
    let prompt = loop {
        let event = events
            .next(support::WAIT)
            .await
            .expect("a demo prompt within the wait");
        let mut resp = http
            .get(format!("{}/v1/permissions", sup.api))
            .insert_header(("authorization", "Bearer demo-approver-token"))
            .insert_header(("x-request-id", "poll-1"))
            .send()
            .await
            .expect("GET /v1/permissions");
        assert_eq!(resp.headers().get("x-request-id").unwrap(), "poll-1");
        let body: Value = resp.json().limit(16 << 20).await.expect("JSON");
        let listed = body["permissions"].as_array().cloned().unwrap_or_default();
        if let Some(p) = listed
            .into_iter()
            .find(|p| p["request_id"] == event.data["request_id"])
        {
            break p;
        }
    };
    let (sid, rid) = (
        prompt["session_id"].as_str().unwrap().to_owned(),
        prompt["request_id"].as_str().unwrap().to_owned(),
    );
    let resp = http
        .post(format!("{}/v1/sessions/{sid}/permissions/{rid}", sup.api))
        .insert_header(("authorization", "Bearer demo-approver-token"))
        .insert_header(("x-request-id", "answer-42"))
        .send_json(&serde_json::json!({"behavior": "allow"}))
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "answer-42");
    // A request without an id gets one.
    let resp = http
        .get(format!("{}/healthz", sup.api))
        .send()
        .await
        .expect("healthz");
    assert_eq!(resp.headers().get("x-request-id").unwrap().len(), 32);

    sup.signal(libc::SIGTERM);
    let status = sup.wait_exit(std::time::Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    let stderr = sup.stderr_all().await;

    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 10, "{stderr}");
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line[key].is_string(), "no top-level {key}: {line}");
        }
        for nested in ["fields", "span", "spans"] {
            assert!(line.get(nested).is_none(), "nested {nested}: {line}");
        }
        assert_ne!(line["level"], "ERROR", "an ERROR in a clean run: {line}");
    }
    assert!(
        !stderr.contains("Some("),
        "Debug formatting in a value:\n{stderr}"
    );
    // Span fields come out flat, once.
    assert!(
        lines
            .iter()
            .any(|l| l["session_id"] == sid.as_str() && l["request_id"] == rid.as_str()),
        "no line names the prompt's session_id and request_id at the top level"
    );
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "ccr_supervisor::access")
        .collect();
    let answer = access
        .iter()
        .find(|l| l["http_request_id"] == "answer-42")
        .expect("an access line for the answer");
    assert_eq!(
        answer["route"],
        "/v1/sessions/{id}/permissions/{request_id}"
    );
    assert_eq!(answer["method"], "POST");
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["token"], "demo-approver");
    assert!(answer["latency_ms"].as_f64().is_some());
    assert!(
        !stderr.contains("demo-approver-token"),
        "a token in the log"
    );
}
