//! Unit tests of `ctl audit`: argument parsing, query strings, the table, the hint, and paging.

use super::*;
use clap::Parser;
use serde_json::json;

/// Just enough of a command line to parse `AuditArgs` the way `ctl audit` does.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    audit: AuditArgs,
}

fn parse(args: &[&str]) -> Result<AuditArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("audit").chain(args.iter().copied())).map(|c| c.audit)
}

fn row(session: &str, request: &str, outcome: Value, decided_by: Value) -> Value {
    json!({"session_id":session,"request_id":request,"tool_use_id":"toolu_1","tool_name":"Bash",
        "input":{"command":"npm test\n-- --ci"},"request":{"subtype":"can_use_tool"},
        "received_at":"2026-11-24T01:02:03.456Z","outcome":outcome,"decided_by":decided_by,
        "decided_at":null,"delivered_at":null,"updated_input":null,"answer":null})
}

#[test]
fn arguments_map_to_query_parameters() {
    let a = parse(&[
        "--session",
        "s1",
        "--tool",
        "Bash",
        "--outcome",
        "pending",
        "--decided-by",
        "rule:tests",
        "--since",
        "2026-01-31T09:00:00Z",
        "--until",
        " 2026-02-01T00:00:00.5Z",
        "--limit",
        "5",
        "--cursor",
        "abc",
    ])
    .unwrap();
    let q = a.query(a.cursor.as_deref(), a.limit);
    let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        q,
        [
            ("session_id", "s1"),
            ("tool", "Bash"),
            ("outcome", "pending"),
            ("decided_by", "rule:tests"),
            ("since", "2026-01-31T09:00:00Z"),
            ("until", "2026-02-01T00:00:00.5Z"),
            ("limit", "5"),
            ("cursor", "abc"),
        ]
    );
    assert!(parse(&[]).unwrap().query(None, None).is_empty());
    assert_eq!(
        parse(&["--export", "jsonl"]).unwrap().export,
        Some(ExportFormat::Jsonl)
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["--outcome", "approved"][..],
        &["--since", "yesterday"],
        &["--until", "2026-13-01T00:00:00Z"],
        // The server's parser takes UTC only; the client checks with the same one.
        &["--since", "2026-01-31T09:00:00+01:00"],
        &["--limit", "0"],
        &["--limit", "1001"],
        &["--export", "csv"],
        &["--export", "jsonl", "--limit", "10"],
    ] {
        let e = parse(args).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
    }
}

#[test]
fn table_shows_every_column_and_pending() {
    let body = json!({"rows":[
        row("s1", "r2", json!("allowed"), json!("admin")),
        row("s1", "r1", Value::Null, Value::Null),
        row("s2", "r0", json!("pending"), Value::Null),
    ],"next_cursor":null});
    let mut r = body["rows"][0].clone();
    r["delivered_at"] = json!("2026-11-24T01:02:04.000Z");
    let body = json!({"rows":[r, body["rows"][1], body["rows"][2]], "next_cursor": null});
    let out = table(&page(body));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let header: Vec<&str> = lines[0].split("  ").filter(|c| !c.is_empty()).collect();
    assert_eq!(
        header,
        [
            "RECEIVED",
            "SESSION",
            "REQUEST",
            "TOOL",
            "INPUT",
            "OUTCOME",
            "DECIDED BY",
            "DELIVERED"
        ]
    );
    for part in [
        "2026-11-24T01:02:03.456Z",
        "s1",
        "r2",
        "Bash",
        "npm test⏎ -- --ci",
        "allowed",
        "admin",
        "2026-11-24T01:02:04.000Z",
    ] {
        assert!(lines[1].contains(part), "{part} in {}", lines[1]);
    }
    // Pending: null and "pending" both read as pending; no decider, not delivered.
    for line in &lines[2..] {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cells[cells.len() - 3..], ["pending", "-", "-"], "{line}");
    }
    assert_eq!(
        table(&page(json!({"rows":[], "next_cursor": null}))),
        "no audit rows match"
    );
}

#[test]
fn more_hint_repeats_the_filters_quoted() {
    let a = parse(&["--session", "s 1", "--outcome", "denied", "--limit", "20"]).unwrap();
    assert_eq!(
        a.more_hint("ccr-supervisor ctl", "6162"),
        "more: ccr-supervisor ctl audit --session 's 1' --outcome denied --limit 20 --cursor 6162"
    );
    assert_eq!(
        AuditArgs::default().more_hint("ccr-supervisor ctl --url http://h:1", "c"),
        "more: ccr-supervisor ctl --url http://h:1 audit --cursor c"
    );
}

/// A fake API: page bodies by the cursor asked for, recording every cursor.
fn pages(
    bodies: Vec<(Option<&'static str>, Value)>,
) -> impl FnMut(Option<&str>) -> Result<String, CtlError> {
    move |cursor| {
        bodies
            .iter()
            .find(|(c, _)| *c == cursor)
            .map(|(_, b)| b.to_string())
            .ok_or_else(|| CtlError::Protocol(format!("unexpected cursor {cursor:?}")))
    }
}

#[test]
fn export_follows_the_cursor_to_the_end_one_line_per_row() {
    let asked = std::cell::RefCell::new(vec![]);
    let mut fake = pages(vec![
        (
            None,
            json!({"rows":[row("s1","r3",json!("allowed"),json!("admin")),
                           row("s1","r2",json!("denied"),json!("rule:x"))],"next_cursor":"c1"}),
        ),
        (
            Some("c1"),
            json!({"rows":[row("s1","r1",Value::Null,Value::Null)],"next_cursor":"c2"}),
        ),
        (Some("c2"), json!({"rows":[],"next_cursor":null})),
    ]);
    let mut out = Vec::new();
    let n = export_jsonl(
        |c| {
            asked.borrow_mut().push(c.map(str::to_owned));
            fake(c)
        },
        None,
        &mut out,
    )
    .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        *asked.borrow(),
        [None, Some("c1".to_owned()), Some("c2".to_owned())]
    );
    let text = String::from_utf8(out).unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("each line is JSON"))
        .map(|v| v["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["r3", "r2", "r1"]);
    assert!(text.ends_with('\n'));
}

#[test]
fn export_starts_at_the_given_cursor_and_keeps_rows_verbatim() {
    // A pretty-printed row still comes out on one line; a compact one byte for byte.
    let compact = r#"{"session_id":"s1","request_id":"r9","z_first":1,"a_last":2}"#;
    let body = format!(
        "{{\"rows\":[{compact},\n  {{\n    \"request_id\": \"r8\"\n  }}\n],\"next_cursor\":null}}"
    );
    let mut out = Vec::new();
    let n = export_jsonl(
        |c| {
            assert_eq!(c, Some("start"));
            Ok(body.clone())
        },
        Some("start"),
        &mut out,
    )
    .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{compact}\n{{\"request_id\":\"r8\"}}\n")
    );
}

#[test]
fn export_fails_on_a_cursor_loop_bad_page_or_api_error() {
    let looping = pages(vec![
        (None, json!({"rows":[],"next_cursor":"c1"})),
        (Some("c1"), json!({"rows":[],"next_cursor":"c1"})),
    ]);
    let e = export_jsonl(looping, None, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("cursor c1 twice"), "{e}");
    assert_eq!(e.exit_code(), 1);

    let e = export_jsonl(
        |_| Ok(r#"{"permissions":[]}"#.into()),
        None,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("invalid audit page"), "{e}");

    let e = export_jsonl(
        |_| {
            Err(CtlError::from_response(
                400,
                r#"{"error":{"code":"invalid_query","message":"bad"}}"#,
            ))
        },
        None,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "invalid_query: bad");
}

/// A writer whose reader went away (`| head -1`) after `left` lines.
struct ClosedAfter {
    left: usize,
}

impl Write for ClosedAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.left -= buf.iter().filter(|b| **b == b'\n').count();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn export_stops_quietly_when_the_reader_goes_away() {
    let mut fetched = 0;
    let body = json!({"rows":[row("s1","r2",Value::Null,Value::Null),
                              row("s1","r1",Value::Null,Value::Null)],"next_cursor":"more"});
    let n = export_jsonl(
        |_| {
            fetched += 1;
            Ok(body.to_string())
        },
        None,
        &mut ClosedAfter { left: 1 },
    )
    .unwrap();
    assert_eq!(
        (n, fetched),
        (1, 1),
        "no further page after the pipe closed"
    );
}

#[test]
fn table_and_export_keep_terminal_escapes_out() {
    let h = "\u{1b}]8;;https://x\u{1b}\\\u{9b}2J\u{7}\u{202e}";
    let mut r = row(h, h, json!("denied"), json!(h));
    r["tool_name"] = json!(h);
    r["input"] = json!({ "command": h });
    let out = table(&page(json!({ "rows": [r.clone()], "next_cursor": null })));
    assert!(
        out.chars().all(|c| c == '\n' || !c.is_control()) && !out.contains('\u{202e}'),
        "{out:?}"
    );
    let body = json!({ "rows": [r.clone()], "next_cursor": null }).to_string();
    let mut out = Vec::new();
    export_jsonl(|_| Ok(body.clone()), None, &mut out).unwrap();
    let line = String::from_utf8(out).unwrap();
    assert!(
        line.trim_end()
            .chars()
            .all(|c| !c.is_control() && c != '\u{202e}'),
        "{line:?}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(line.trim_end()).unwrap(),
        r,
        "same value"
    );
}

/// A page as `ctl` reads it: every string sanitized, then typed.
fn page(body: Value) -> LedgerPage {
    serde_json::from_value(crate::sanitize::clean_value(&body)).expect("a ledger page")
}
