//! The audit export (`/ui/audit/export.jsonl`) stays near its limit however large its rows
//! are, and its last line says where the next export resumes: no row lost, none twice.

use std::time::Duration;

use serde_json::{json, Value};

use super::sign_in;
use crate::common::{Harness, Sess, APPROVER_TOKEN};

/// The export's limit ("about 32 MiB", docs/console.md).
const LIMIT: usize = 32 << 20;

/// The export with `query`, as the signed-in `cookie`; its whole body.
async fn export(h: &Harness, cookie: &str, query: &str) -> String {
    let mut resp = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
        .get(format!("{}/ui/audit/export.jsonl?{query}", h.api))
        .insert_header(("cookie", format!("ccr_console={cookie}")))
        .send()
        .await
        .expect("GET the export");
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.body().limit(1 << 30).await.expect("the export's body");
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:.200}"))
}

#[actix_rt::test]
async fn a_large_export_stops_near_its_limit_and_resumes_where_it_stopped() {
    let mut h = Harness::start(
        vec![Sess::new("s1")],
        &[("CCR_SUPERVISOR__CCR__MAX_FRAME_BYTES", "4194304")],
    )
    .await;
    h.wait_sim_connected("s1").await;
    // 24 rows of about 2 MiB (the input, and the request that repeats it): 48 MiB in all,
    // fewer rows than one ledger page of the export.
    let content = "x".repeat(1 << 20);
    let ids: Vec<String> = (0..24).map(|i| format!("big-{i:02}")).collect();
    for id in &ids {
        let input = json!({"file_path": format!("/tmp/{id}"), "content": content});
        h.prompt("s1", id, "Write", input).await;
    }
    let (cookie, _) = sign_in(&h, APPROVER_TOKEN).await;

    let first = export(&h, &cookie, "session_id=s1").await;
    let lines: Vec<&str> = first.lines().collect();
    let row_bytes = lines[0].len() + 1;
    assert!(row_bytes > 2 << 20, "rows of 2 MiB: {row_bytes}");
    let last = parse(lines.last().expect("a line"));
    assert!(
        first.len() <= LIMIT + 1024,
        "{} bytes: past the limit by more than the last line",
        first.len()
    );
    assert!(
        first.len() + row_bytes > LIMIT,
        "{} bytes: another row would have fit",
        first.len()
    );
    assert_eq!(last["truncated"], true, "{last}");
    let cursor = last["next_cursor"].as_str().expect("a next_cursor");
    let rows: Vec<Value> = lines[..lines.len() - 1].iter().map(|l| parse(l)).collect();

    let rest = export(&h, &cookie, &format!("session_id=s1&cursor={cursor}")).await;
    let rest: Vec<Value> = rest.lines().map(parse).collect();
    assert!(
        rest.iter().all(|r| r.get("truncated").is_none()),
        "the rest fits"
    );

    // Newest first, every row exactly once across the two exports.
    let got: Vec<&str> = rows
        .iter()
        .chain(&rest)
        .map(|r| r["request_id"].as_str().expect("request_id"))
        .collect();
    let want: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(got, want);
    assert!(rows
        .iter()
        .all(|r| r["input"]["content"] == content.as_str()));
    h.shutdown().await;
}
