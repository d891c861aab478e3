//! `ctl audit` against a canned `GET /v1/audit` in the contract's shape: the
//! binary's query strings, table, `more:` hint, export paging and exit codes.
//! (The run against the real app is `audit_lists_an_allowed_prompt` in `ctl.rs`.)

use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use super::ctl;

/// A row as `crate::ledger::LedgerRow` serializes it.
fn row(request: &str, outcome: &str, decided_by: Value) -> Value {
    json!({"session_id":"s1","request_id":request,"tool_use_id":format!("toolu_{request}"),
        "tool_name":"Bash","input":{"command":format!("echo {request}")},
        "request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":format!("echo {request}")}},
        "received_at":"2026-11-24T01:02:03.456Z","outcome":outcome,"decided_by":decided_by,
        "decided_at":null,"delivered_at":null,"updated_input":null,"answer":null})
}

/// Query strings the canned endpoint was asked for.
type Seen = Arc<Mutex<Vec<String>>>;

/// Three rows over two pages (cursor `c1`); `tool=bad` is a 400 `invalid_query`.
async fn audit(req: HttpRequest, seen: web::Data<Seen>) -> HttpResponse {
    let q = req.query_string().to_owned();
    seen.lock().unwrap().push(q.clone());
    if q.contains("tool=bad") {
        return HttpResponse::BadRequest().json(
            json!({"error":{"code":"invalid_query","message":"invalid query parameter tool: bad"}}),
        );
    }
    let body = if q.contains("cursor=c1") {
        json!({"rows":[row("r1","pending",Value::Null)],"next_cursor":null})
    } else {
        json!({"rows":[row("r3","allowed",json!("admin")),row("r2","denied",json!("rule:no-rm"))],
               "next_cursor":"c1"})
    };
    HttpResponse::Ok().json(body)
}

async fn canned_server() -> (String, Seen, actix_web::dev::ServerHandle) {
    let seen: Seen = Arc::default();
    let data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/v1/audit", web::get().to(audit))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let url = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (url, seen, handle)
}

#[actix_rt::test]
async fn audit_table_sends_the_filters_and_hints_the_next_page() {
    let (url, seen, server) = canned_server().await;
    let out = ctl(
        &url,
        &[
            "audit",
            "--session",
            "s1",
            "--outcome",
            "allowed",
            "--since",
            "2026-11-24T00:00:00Z",
            "--limit",
            "2",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert!(lines[0].starts_with("RECEIVED") && lines[0].ends_with("DELIVERED"));
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "2026-11-24T01:02:03.456Z",
            "s1",
            "r3",
            "Bash",
            "echo",
            "r3",
            "allowed",
            "admin",
            "-"
        ]
    );
    assert!(lines[2].contains("denied") && lines[2].contains("rule:no-rm"));
    assert_eq!(
        out.stderr,
        format!(
            "more: ccr-supervisor ctl --url {url} audit --session s1 --outcome allowed \
             --since 2026-11-24T00:00:00Z --limit 2 --cursor c1\n"
        )
    );
    assert_eq!(
        seen.lock().unwrap().clone(),
        ["session_id=s1&outcome=allowed&since=2026-11-24T00%3A00%3A00Z&limit=2"]
    );

    // --json: the body verbatim, no hint; the last page has no hint either.
    let out = ctl(&url, &["audit", "--json"]).await;
    let v: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(v["next_cursor"], "c1");
    assert_eq!(out.stderr, "");
    let out = ctl(&url, &["audit", "--cursor", "c1"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.lines().nth(1).unwrap().contains("pending"));
    assert_eq!(out.stderr, "");
    server.stop(true).await;
}

#[actix_rt::test]
async fn audit_export_follows_every_page_one_json_line_per_row() {
    let (url, seen, server) = canned_server().await;
    let out = ctl(&url, &["audit", "--tool", "Bash", "--export", "jsonl"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stderr, "");
    let rows: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    assert_eq!(
        rows,
        [
            row("r3", "allowed", json!("admin")),
            row("r2", "denied", json!("rule:no-rm")),
            row("r1", "pending", Value::Null)
        ]
    );
    assert_eq!(
        seen.lock().unwrap().clone(),
        ["tool=Bash&limit=1000", "tool=Bash&limit=1000&cursor=c1"]
    );
    server.stop(true).await;
}

#[actix_rt::test]
async fn audit_usage_and_api_errors() {
    let (url, seen, server) = canned_server().await;
    for args in [
        &["audit", "--export", "csv"][..],
        &["audit", "--outcome", "approved"],
        &["audit", "--since", "last tuesday"],
        &["audit", "--limit", "0"],
    ] {
        let out = ctl(&url, args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stdout.is_empty());
    }
    assert!(seen.lock().unwrap().is_empty(), "usage errors send nothing");
    let out = ctl(&url, &["audit", "--tool", "bad"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stderr,
        "error: invalid_query: invalid query parameter tool: bad\n"
    );
    let out = ctl(&url, &["audit", "--tool", "bad", "--export", "jsonl"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (1, ""), "{out:?}");
    server.stop(true).await;
}
