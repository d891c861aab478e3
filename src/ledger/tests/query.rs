//! Ledger query tests: every filter, keyset paging under inserts, params, export.

use ccr_protocol::api::LedgerParams;
use ccr_protocol::reply::Outcome;
use std::collections::HashSet;

use super::*;
use super::{at, block_on, decision, prompt, temp_ledger};

/// 12 rows: sessions a/b, tools Bash/Edit, every outcome, two deciders, received at 1000..1011 s.
fn fixture() -> (tempfile::TempDir, Ledger) {
    let (dir, _cfg, ledger) = temp_ledger(Tuning::default());
    let outcomes = [
        None,
        Some(Outcome::Allowed),
        Some(Outcome::Denied),
        Some(Outcome::Cancelled),
        Some(Outcome::Expired),
        Some(Outcome::Allowed),
    ];
    for i in 0..12u64 {
        let session = if i % 2 == 0 { "a" } else { "b" };
        let tool = if i < 6 { "Bash" } else { "Edit" };
        let id = format!("r{i:02}");
        drop(ledger.record_prompt(prompt(session, &id, tool, at(1000 + i))));
        if let Some(o) = outcomes[i as usize % 6] {
            let by = match o {
                Outcome::Expired => "timeout",
                _ if i % 4 == 1 => "rule:7",
                _ => "alice",
            };
            drop(ledger.record_decision(decision(session, &id, o, by)));
        }
    }
    block_on(ledger.flush()).unwrap();
    (dir, ledger)
}

fn ids(ledger: &Ledger, q: LedgerQuery) -> Vec<String> {
    let page = block_on(ledger.query(q)).unwrap();
    page.rows.into_iter().map(|r| r.request_id).collect()
}

fn q() -> LedgerQuery {
    LedgerQuery::default()
}

#[test]
fn every_filter_narrows_and_filters_combine() {
    let (_dir, ledger) = fixture();
    let all = ids(&ledger, q());
    assert_eq!(all.len(), 12);
    assert_eq!(all[0], "r11", "newest first");
    let session = |s: &str| LedgerQuery {
        session_id: Some(s.into()),
        ..q()
    };
    assert_eq!(
        ids(&ledger, session("a")),
        ["r10", "r08", "r06", "r04", "r02", "r00"]
    );
    let tool = LedgerQuery {
        tool: Some("Edit".into()),
        ..q()
    };
    assert_eq!(
        ids(&ledger, tool),
        ["r11", "r10", "r09", "r08", "r07", "r06"]
    );
    let outcome = |o| LedgerQuery {
        outcome: Some(o),
        ..q()
    };
    assert_eq!(
        ids(&ledger, outcome(OutcomeFilter::Pending)),
        ["r06", "r00"]
    );
    assert_eq!(
        ids(&ledger, outcome(OutcomeFilter::Is(Outcome::Expired))),
        ["r10", "r04"]
    );
    let by = LedgerQuery {
        decided_by: Some("rule:7".into()),
        ..q()
    };
    assert_eq!(ids(&ledger, by), ["r09", "r05", "r01"]);
    let window = LedgerQuery {
        since: Some(at(1003)),
        until: Some(at(1006)),
        ..q()
    };
    assert_eq!(
        ids(&ledger, window),
        ["r05", "r04", "r03"],
        "since inclusive, until exclusive"
    );
    let combined = LedgerQuery {
        session_id: Some("b".into()),
        tool: Some("Bash".into()),
        outcome: Some(OutcomeFilter::Is(Outcome::Allowed)),
        decided_by: Some("rule:7".into()),
        since: Some(at(1000)),
        until: Some(at(2000)),
        ..q()
    };
    assert_eq!(ids(&ledger, combined), ["r05", "r01"]);
    assert!(ids(&ledger, session("nobody")).is_empty());
}

#[test]
fn keyset_pages_have_no_duplicates_or_gaps_while_inserting() {
    let (_dir, _cfg, ledger) = temp_ledger(Tuning::default());
    // Ties on received_at too: ten rows per second across three sessions.
    let mut expected = HashSet::new();
    for i in 0..250u64 {
        let (s, r) = (format!("s{}", i % 3), format!("r{i:03}"));
        drop(ledger.record_prompt(prompt(&s, &r, "Bash", at(1000 + i / 10))));
        expected.insert((s, r));
    }
    block_on(ledger.flush()).unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = block_on(ledger.query(LedgerQuery {
            limit: Some(40),
            cursor: cursor.take(),
            ..q()
        }))
        .unwrap();
        pages += 1;
        assert!(page.rows.len() <= 40);
        // Newer rows arrive between pages (as in a live service).
        for j in 0..5 {
            let r = format!("late{pages}-{j}");
            drop(ledger.record_prompt(prompt("s0", &r, "Bash", at(5000 + pages))));
        }
        block_on(ledger.flush()).unwrap();
        seen.extend(page.rows.into_iter().map(|r| (r.session_id, r.request_id)));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 7);
    assert_eq!(seen.len(), 250, "no duplicates");
    assert_eq!(
        seen.iter().cloned().collect::<HashSet<_>>(),
        expected,
        "no gaps"
    );
}

#[test]
fn paging_respects_filters_and_default_limit() {
    let (_dir, _cfg, ledger) = temp_ledger(Tuning::default());
    for i in 0..230u64 {
        let tool = if i % 2 == 0 { "Bash" } else { "Edit" };
        drop(ledger.record_prompt(prompt("s", &format!("r{i:03}"), tool, at(i))));
    }
    block_on(ledger.flush()).unwrap();
    let first = block_on(ledger.query(q())).unwrap();
    assert_eq!(first.rows.len(), DEFAULT_LIMIT);
    let filtered = LedgerQuery {
        tool: Some("Edit".into()),
        limit: Some(100),
        ..q()
    };
    let p1 = block_on(ledger.query(filtered.clone())).unwrap();
    let p2 = block_on(ledger.query(LedgerQuery {
        cursor: p1.next_cursor.clone(),
        ..filtered
    }))
    .unwrap();
    assert_eq!((p1.rows.len(), p2.rows.len()), (100, 15));
    assert_eq!(p2.next_cursor, None);
    assert!(p2.rows.iter().all(|r| r.tool_name == "Edit"));
}

#[test]
fn params_are_validated_with_the_parameter_named() {
    let parse = |f: fn(&mut LedgerParams)| {
        let mut p = LedgerParams::default();
        f(&mut p);
        LedgerQuery::try_from(p)
    };
    let bad = |f: fn(&mut LedgerParams)| match parse(f) {
        Err(LedgerError::BadQuery { param, .. }) => param,
        other => panic!("expected BadQuery, got {other:?}"),
    };
    assert_eq!(bad(|p| p.since = Some("yesterday".into())), "since");
    assert_eq!(
        bad(|p| p.until = Some("2026-13-01T00:00:00Z".into())),
        "until"
    );
    assert_eq!(bad(|p| p.limit = Some("0".into())), "limit");
    assert_eq!(bad(|p| p.limit = Some("1001".into())), "limit");
    assert_eq!(bad(|p| p.outcome = Some("maybe".into())), "outcome");
    assert_eq!(bad(|p| p.cursor = Some("zz".into())), "cursor");
    assert_eq!(bad(|p| p.cursor = Some("7b7d".into())), "cursor");
    let ok = parse(|p| {
        p.outcome = Some("pending".into());
        p.since = Some("1970-01-01T00:16:40Z".into());
        p.limit = Some("1000".into());
        p.tool = Some("Bash".into());
    })
    .unwrap();
    assert_eq!(ok.outcome, Some(OutcomeFilter::Pending));
    assert_eq!(ok.since, Some(at(1000)));
    assert_eq!(ok.limit, Some(1000));
    assert_eq!(ok.tool.as_deref(), Some("Bash"));
}

#[test]
fn export_streams_every_matching_row_and_stops_on_sink_errors() {
    let (_dir, _cfg, ledger) = temp_ledger(Tuning::default());
    for i in 0..1203u64 {
        let s = if i % 3 == 0 { "x" } else { "y" };
        drop(ledger.record_prompt(prompt(s, &format!("r{i:04}"), "Bash", at(i))));
    }
    block_on(ledger.flush()).unwrap();
    let mut lines = Vec::new();
    let filter = LedgerQuery {
        session_id: Some("x".into()),
        limit: Some(5), // ignored by exports
        ..q()
    };
    let n = ledger
        .export(&filter, |row| {
            lines.push(serde_json::to_string(&row).unwrap());
            Ok(())
        })
        .unwrap();
    assert_eq!((n, lines.len()), (401, 401));
    assert!(
        lines[0].contains("\"request_id\":\"r1200\"")
            && lines[0].contains("\"outcome\":\"pending\"")
    );
    assert!(lines[400].contains("\"request_id\":\"r0000\""));
    let mut calls = 0;
    let err = ledger
        .export(&q(), |_| {
            calls += 1;
            Err(std::io::ErrorKind::BrokenPipe.into())
        })
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::Export(_)) && calls == 1,
        "{err:?}"
    );
}
