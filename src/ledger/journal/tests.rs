use super::*;
use crate::ledger::writer::PromptRow;

fn prompt(request_id: &str) -> Write {
    Write::Prompt(PromptRow {
        session_id: "s".into(),
        request_id: request_id.into(),
        tool_use_id: None,
        tool_name: "Bash".into(),
        input: "{}".into(),
        request: "{}".into(),
        received_at: 1,
    })
}

fn ids(records: &[(u64, Write)]) -> Vec<(u64, String)> {
    records
        .iter()
        .map(|(seq, w)| match w {
            Write::Prompt(p) => (*seq, p.request_id.clone()),
            _ => (*seq, String::new()),
        })
        .collect()
}

#[test]
fn records_round_trip_in_order() {
    let mut buf = Vec::new();
    for (seq, id) in [(7, "a"), (8, "b"), (9, "c")] {
        encode(seq, &prompt(id), &mut buf).unwrap();
    }
    let (records, bad) = decode(&buf);
    assert_eq!(bad, None);
    assert_eq!(
        ids(&records),
        [(7, "a".into()), (8, "b".into()), (9, "c".into())]
    );
}

fn decision() -> Write {
    Write::Decision(crate::ledger::writer::DecisionRow {
        session_id: "s".into(),
        request_id: "r\"1".into(),
        outcome: ccr_protocol::reply::Outcome::Allowed,
        decided_by: "rule:allow-bash".into(),
        decided_at: -3,
        updated_input: None,
        answer: Some(r#"{"type":"control_response","note":"a \"quoted\" line\n"}"#.into()),
        reason: Some("matched".into()),
    })
}

/// A record as builds before postcard wrote it: the write's JSON.
fn legacy_record(seq: u64, write: &Write) -> Vec<u8> {
    let payload = serde_json::to_vec(write).unwrap();
    let mut rec = (payload.len() as u32).to_le_bytes().to_vec();
    rec.extend_from_slice(&[0; 4]);
    rec.extend_from_slice(&seq.to_le_bytes());
    rec.extend_from_slice(&payload);
    let crc = crc32fast::hash(&rec[8..]);
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
    rec
}

#[test]
fn every_field_survives_and_older_json_records_still_read() {
    let mut buf = legacy_record(1, &decision());
    encode(2, &decision(), &mut buf).unwrap();
    encode(
        3,
        &Write::Delivered {
            session_id: "s".into(),
            request_id: "r".into(),
            at: 9,
        },
        &mut buf,
    )
    .unwrap();
    let (records, bad) = decode(&buf);
    assert_eq!(bad, None);
    let shown: Vec<String> = records.iter().map(|r| format!("{r:?}")).collect();
    assert_eq!(shown[0], format!("{:?}", (1, decision())));
    assert_eq!(shown[1], format!("{:?}", (2, decision())));
    assert!(
        shown[2].contains("Delivered") && shown[2].contains("at: 9"),
        "{}",
        shown[2]
    );
    // The JSON it carries is copied as it is, not escaped again.
    let text = String::from_utf8_lossy(&buf);
    assert!(text.contains(r#""note":"a \"quoted\" line\n""#), "{text}");
}

#[test]
fn a_payload_in_no_known_encoding_is_an_undecodable_tail() {
    let (mut buf, whole) = two_records();
    for first in [0u8, 2, b'['] {
        let mut rec = legacy_record(3, &prompt("c"));
        rec[HEADER] = first;
        let crc = crc32fast::hash(&rec[8..]);
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        let mut all = buf.clone();
        all.extend_from_slice(&rec);
        let (records, bad) = decode(&all);
        assert_eq!(records.len(), 2);
        assert_eq!(
            bad.unwrap().reason,
            "undecodable record",
            "first byte {first}"
        );
    }
    // Trailing bytes after a postcard write are not a write either.
    buf.truncate(whole);
    let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) + 1;
    buf[0..4].copy_from_slice(&len.to_le_bytes());
    buf.push(0);
    let crc = crc32fast::hash(&buf[8..]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decode(&buf).1.unwrap().reason, "undecodable record");
}

/// Records 1 ("a") and 2 ("b"), and where the second one starts.
fn two_records() -> (Vec<u8>, usize) {
    let mut buf = Vec::new();
    encode(1, &prompt("a"), &mut buf).unwrap();
    let whole = buf.len();
    encode(2, &prompt("b"), &mut buf).unwrap();
    (buf, whole)
}

#[test]
fn a_torn_last_record_is_reported_and_the_rest_kept() {
    let (buf, whole) = two_records();
    for cut in [whole + 3, whole + HEADER, buf.len() - 1] {
        let (records, bad) = decode(&buf[..cut]);
        assert_eq!(ids(&records), [(1, "a".into())], "cut at {cut}");
        let bad = bad.expect("a tail");
        assert_eq!((bad.offset, bad.bytes), (whole, cut - whole));
        assert_eq!(bad.reason, "torn record");
    }
}

#[test]
fn a_flipped_byte_fails_the_checksum() {
    let (mut buf, whole) = two_records();
    let last = buf.len() - 2;
    buf[last] ^= 0x20;
    let (records, bad) = decode(&buf);
    assert_eq!(records.len(), 1);
    assert_eq!(bad.unwrap().reason, "checksum mismatch");
    // A flipped sequence number is caught too.
    buf[whole + 8] ^= 1;
    assert_eq!(decode(&buf).1.unwrap().offset, whole);
}

#[test]
fn full_segments_are_handed_on_and_the_last_is_removed_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let mut journal = Journal::create(&db, 1, 20).unwrap();
    let mut full = Vec::new();
    for seq in 1..=4 {
        let mut buf = Vec::new();
        encode(seq, &prompt(&seq.to_string()), &mut buf).unwrap();
        assert!(buf.len() > 20, "each record fills a segment");
        journal.append(&buf, seq).unwrap();
        full.extend(journal.take_full());
    }
    let firsts =
        |db: &Path| -> Vec<u64> { segments(db).unwrap().into_iter().map(|(f, _)| f).collect() };
    // The journal deletes no full segment itself: they are handed on, oldest first.
    assert_eq!(firsts(&db), [1, 2, 3, 4]);
    assert_eq!(full, [1, 2, 3].map(|first| segment_path(&db, first)));
    // Not all applied: the current segment stays for replay.
    journal.close(3);
    assert_eq!(firsts(&db), [1, 2, 3, 4]);
    let mut journal = Journal::create(&db, 5, 20).unwrap();
    let mut buf = Vec::new();
    encode(5, &prompt("5"), &mut buf).unwrap();
    journal.append(&buf, 5).unwrap();
    journal.append(&buf, 6).unwrap();
    // A full segment never handed on keeps the current one for replay too.
    journal.close(6);
    assert_eq!(firsts(&db), [1, 2, 3, 4, 5, 6]);
    let journal = Journal::create(&db, 7, 20).unwrap();
    journal.close(7);
    assert_eq!(
        firsts(&db),
        [1, 2, 3, 4, 5, 6],
        "an empty segment is removed at close"
    );
    let mut journal = Journal::create(&db, 7, 20).unwrap();
    journal.append(&buf, 7).unwrap();
    journal.close(7);
    assert_eq!(
        firsts(&db),
        [1, 2, 3, 4, 5, 6],
        "the applied current segment is removed at close"
    );
}

#[test]
fn appends_through_moving_windows_survive_a_crash_and_read_to_a_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let mut journal = Journal::create(&db, 1, 64 << 20).unwrap();
    // Over 2 MiB of records: three reservation steps and windows, records straddling
    // the boundaries, one record larger than a window.
    let big = Write::Prompt(PromptRow {
        input: "x".repeat(STEP as usize + 10),
        ..match prompt("big") {
            Write::Prompt(p) => p,
            _ => unreachable!(),
        }
    });
    let mut expected = Vec::new();
    let mut buf = Vec::new();
    for seq in 1..=40_000u64 {
        let write = if seq == 2500 {
            &big
        } else {
            &prompt(&seq.to_string())
        };
        buf.clear();
        encode(seq, write, &mut buf).unwrap();
        journal.append(&buf, seq).unwrap();
        expected.push(seq);
    }
    let len = journal.len;
    assert!(len > 2 * STEP, "{len} bytes appended");
    // Dropped, not closed, as after `kill -9`: every record is in the file, and the space
    // reserved past them reads as the clean end.
    drop(journal);
    let file = std::fs::read(segment_path(&db, 1)).unwrap();
    assert!(file.len() as u64 > len, "space is reserved ahead");
    assert_eq!(file.len() as u64 % STEP, 0);
    let (records, bad) = decode(&file);
    assert_eq!(bad, None);
    assert_eq!(
        records.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        expected
    );
    assert!(matches!(&records[2499].1, Write::Prompt(p) if p.input.len() == STEP as usize + 10));
    // Bytes after the zeros are not a clean end.
    let mut spoiled = file.clone();
    *spoiled.last_mut().unwrap() = 1;
    let (records, bad) = decode(&spoiled);
    assert_eq!(records.len(), 40_000);
    assert_eq!(bad.unwrap().offset as u64, len);
}

#[test]
fn a_full_segment_keeps_only_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let mut journal = Journal::create(&db, 1, 1).unwrap();
    let mut sizes = Vec::new();
    for seq in 1..=3 {
        let mut buf = Vec::new();
        encode(seq, &prompt("r"), &mut buf).unwrap();
        journal.append(&buf, seq).unwrap();
        sizes.push(buf.len() as u64);
    }
    let full: Vec<PathBuf> = journal.take_full().collect();
    assert!(!full.is_empty());
    let kept = std::fs::metadata(&full[0]).unwrap().len();
    assert_eq!(kept, sizes[0], "one record, no reserved space");
    // Left for replay at close: cut back to its records too.
    journal.close(0);
    let (_, last) = segments(&db).unwrap().pop().unwrap();
    assert!(std::fs::metadata(last).unwrap().len() < STEP);
}

#[test]
fn a_segment_opened_again_is_appended_after_its_records_not_its_reserved_space() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let record = |seq: u64| {
        let mut buf = Vec::new();
        encode(seq, &prompt(&seq.to_string()), &mut buf).unwrap();
        buf
    };
    let mut journal = Journal::create(&db, 1, 1 << 20).unwrap();
    journal.append(&record(1), 1).unwrap();
    drop(journal);
    let mut journal = Journal::create(&db, 1, 1 << 20).unwrap();
    journal.append(&record(2), 2).unwrap();
    drop(journal);
    let (records, bad) = decode(&std::fs::read(segment_path(&db, 1)).unwrap());
    assert_eq!(bad, None);
    assert_eq!(records.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
}
