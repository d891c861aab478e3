use std::time::SystemTime;

use super::*;
use crate::events::tests::{ev, limits};

#[test]
fn sequence_is_global_and_json_carries_it() {
    let mut h = History::new(limits(10, 1 << 20));
    let a = h.push(ev("a", 1), SystemTime::UNIX_EPOCH);
    let b = h.push(ev("b", 1), SystemTime::UNIX_EPOCH);
    assert_eq!((a.seq, b.seq), (1, 2));
    let v: serde_json::Value = serde_json::from_str(&b.json()).unwrap();
    assert_eq!(v["seq"], 2);
    assert_eq!(v["type"], "error");
    assert_eq!(v["session_id"], "b");
    assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
}

#[test]
fn the_json_starts_with_its_sequence_number_whatever_its_digits() {
    let mut h = History::new(limits(10, 1 << 20));
    for seq in [9, 10, 99_999, u64::MAX - 1] {
        h.next_seq = seq;
        let env = h.push(ev("a", 3), SystemTime::UNIX_EPOCH);
        let json = env.json();
        assert!(
            json.starts_with(&format!("{{\"seq\":{seq},\"at\":")),
            "{json}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["seq"], seq);
    }
}

#[test]
fn backlog_filters_and_merges_in_order() {
    let mut h = History::new(limits(10, 1 << 20));
    for s in ["a", "b", "a", "b"] {
        h.push(ev(s, 1), SystemTime::UNIX_EPOCH);
    }
    let all: Vec<u64> = h.backlog(None, 1).events.iter().map(|e| e.seq).collect();
    assert_eq!(all, [2, 3, 4]);
    let a: Vec<u64> = h
        .backlog(Some("a"), 0)
        .events
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(a, [1, 3]);
    assert!(h.backlog(Some("zzz"), 0).events.is_empty());
}

#[test]
fn bounded_by_count_and_bytes_with_lagged_mark() {
    let mut h = History::new(limits(3, 1 << 20));
    for _ in 0..5 {
        h.push(ev("a", 1), SystemTime::UNIX_EPOCH);
    }
    let b = h.backlog(Some("a"), 0);
    assert_eq!(b.events.len(), 3);
    assert_eq!(b.lagged_from, Some(3), "1 and 2 were evicted");
    assert_eq!(
        h.backlog(Some("a"), 2).lagged_from,
        None,
        "nothing missed after 2"
    );
    let size = History::new(limits(1, 1 << 20))
        .push(ev("a", 100), SystemTime::UNIX_EPOCH)
        .retained_len();
    let mut h = History::new(limits(100, 3 * size));
    for _ in 0..5 {
        h.push(ev("a", 100), SystemTime::UNIX_EPOCH);
    }
    let kept = h.backlog(Some("a"), 0).events;
    assert!(kept.iter().map(|e| e.retained_len()).sum::<usize>() <= 3 * size);
    assert_eq!(kept.len(), 3);
}

#[test]
fn the_total_budget_evicts_the_globally_oldest_first() {
    let total = |h: &History| -> usize {
        h.slots
            .iter()
            .flatten()
            .flat_map(|s| s.kept.events.iter().map(|k| k.len))
            .sum()
    };
    let one = History::new(limits(100, 1 << 20)).push(ev("a", 100), SystemTime::UNIX_EPOCH);
    // Events grow by a byte with each digit of their seq: leave a little slack.
    let size = one.retained_len();
    let mut h = History::new(HistoryLimits {
        events: 100,
        bytes: 1 << 20,
        total_bytes: 4 * size + 16,
    });
    // a:1 b:2 a:3 b:4 fill the budget; c:5 and a:6 push out 1 and then 2.
    for s in ["a", "b", "a", "b", "c", "a"] {
        h.push(ev(s, 100), SystemTime::UNIX_EPOCH);
        assert!(h.total_bytes() <= 4 * size + 16);
        assert_eq!(h.total_bytes(), total(&h));
    }
    let seqs =
        |s: &str| -> Vec<u64> { h.backlog(Some(s), 0).events.iter().map(|e| e.seq).collect() };
    assert_eq!(seqs("a"), [3, 6]);
    assert_eq!(seqs("b"), [4]);
    assert_eq!(seqs("c"), [5]);
    assert_eq!(h.backlog(Some("a"), 0).lagged_from, Some(3));
    assert_eq!(h.backlog(Some("b"), 0).lagged_from, Some(4));
    assert_eq!(h.backlog(Some("c"), 0).lagged_from, None);

    // Per-session eviction leaves stale queue entries; the budget still holds and
    // still takes the oldest: b's 4 goes before c's 5.
    let mut h2 = History::new(HistoryLimits {
        events: 1,
        bytes: 1 << 20,
        total_bytes: 2 * size + 16,
    });
    for s in ["b", "c", "b", "b", "d"] {
        h2.push(ev(s, 100), SystemTime::UNIX_EPOCH);
        assert_eq!(h2.total_bytes(), total(&h2));
    }
    let all =
        |h: &History| -> Vec<u64> { h.backlog(None, 0).events.iter().map(|e| e.seq).collect() };
    assert_eq!(all(&h2), [4, 5]);
    // c was emptied by the budget: a resume of c is told it lagged.
    assert_eq!(h2.backlog(Some("c"), 0).lagged_from, Some(6));
    // An emptied session counts again with its next event.
    h2.push(ev("c", 100), SystemTime::UNIX_EPOCH);
    assert_eq!(all(&h2), [5, 6]);
    assert_eq!(h2.total_bytes(), total(&h2));

    // One event bigger than the whole budget is kept alone; forgetting frees it.
    h2.push(ev("e", 10 * size), SystemTime::UNIX_EPOCH);
    assert_eq!(all(&h2), [7]);
    h2.forget("e");
    assert_eq!(h2.total_bytes(), 0);
    h2.push(ev("f", 100), SystemTime::UNIX_EPOCH);
    h2.push(ev("e", 100), SystemTime::UNIX_EPOCH);
    h2.push(ev("g", 100), SystemTime::UNIX_EPOCH);
    assert_eq!(all(&h2), [9, 10]);
    assert_eq!(h2.total_bytes(), total(&h2));
}

#[test]
fn the_queue_of_retained_events_stays_bounded_and_in_step() {
    // Per-session limits drop events without the total budget: their queue
    // entries go stale and are swept, so the queue never grows without bound.
    let mut h = History::new(limits(2, 1 << 20));
    for n in 0..10_000 {
        h.push(
            ev(if n % 3 == 0 { "a" } else { "b" }, 10),
            SystemTime::UNIX_EPOCH,
        );
        assert!(
            h.order.len() <= 2 * h.retained + 1024 + 1,
            "{}",
            h.order.len()
        );
    }
    assert_eq!(h.retained, 4);
    let live = h
        .order
        .iter()
        .filter(|&&(seq, slot)| History::live(&h.slots, seq, slot))
        .count();
    assert_eq!(live, 4, "every retained event has its live entry");
    // A forgotten session's slot is reused, and the stale entries it left
    // in front never evict the new owner's events out of turn.
    let size = History::new(limits(10, 1 << 20))
        .push(ev("a", 10), SystemTime::UNIX_EPOCH)
        .retained_len();
    let mut h = History::new(HistoryLimits {
        events: 100,
        bytes: 1 << 20,
        total_bytes: 2 * size + 16,
    });
    let all =
        |h: &History| -> Vec<u64> { h.backlog(None, 0).events.iter().map(|e| e.seq).collect() };
    h.push(ev("a", 10), SystemTime::UNIX_EPOCH);
    h.push(ev("a", 10), SystemTime::UNIX_EPOCH);
    h.push(ev("d", 10), SystemTime::UNIX_EPOCH);
    assert_eq!(all(&h), [2, 3]);
    h.forget("a");
    h.push(ev("c", 10), SystemTime::UNIX_EPOCH);
    assert_eq!(h.slots.len(), 2, "c took a's slot");
    assert_eq!(all(&h), [3, 4]);
    // Over budget: a's stale entry for 2 is skipped, d's 3 is the oldest, not c's 4.
    h.push(ev("e", 10), SystemTime::UNIX_EPOCH);
    assert_eq!(all(&h), [4, 5]);
    assert_eq!(h.backlog(Some("d"), 0).lagged_from, Some(6));
    assert_eq!(h.retained, 2);
}

#[test]
fn a_resume_point_this_history_never_gave_replays_everything_with_a_mark() {
    let base = 1 << 40;
    let mut h = History::numbered_after(limits(10, 1 << 20), base);
    for s in ["a", "b", "a"] {
        h.push(ev(s, 1), SystemTime::UNIX_EPOCH);
    }
    let seqs = |b: &Backlog| b.events.iter().map(|e| e.seq).collect::<Vec<_>>();
    for ours in [0, base, base + 1, base + 3] {
        assert!(h.gave(ours), "{ours}");
        let b = h.backlog(None, ours);
        assert!(!b.unknown_point && b.lagged_from.is_none(), "{ours}");
    }
    assert_eq!(seqs(&h.backlog(None, base + 1)), [base + 2, base + 3]);
    // Another run's points: below this run's numbers (an earlier or another instance's,
    // a 1-based one), or past the newest event.
    for foreign in [1, 2, base - 1, base + 4, u64::MAX] {
        assert!(!h.gave(foreign), "{foreign}");
        let b = h.backlog(None, foreign);
        assert!(b.unknown_point, "{foreign}");
        assert_eq!(seqs(&b), [base + 1, base + 2, base + 3], "{foreign}");
        assert_eq!(b.lagged_from, Some(base + 1));
        let only_b = h.backlog(Some("b"), foreign);
        assert_eq!(
            (seqs(&only_b), only_b.lagged_from),
            (vec![base + 2], Some(base + 2))
        );
    }
    let quiet = h.backlog(Some("nobody"), 7);
    assert!(quiet.unknown_point && quiet.events.is_empty());
    assert_eq!(quiet.lagged_from, Some(base + 4), "the next event's number");
}
