use std::time::SystemTime;

use super::*;
use crate::events::tests::{ev, limits};
use crate::events::History;

#[test]
fn recent_reads_after_a_cursor_filters_and_reports_a_lag() {
    let mut h = History::new(limits(100, 1 << 20));
    let size = h.push(ev("a", 100), SystemTime::UNIX_EPOCH).retained_len();
    let mut r = Recent::new(4, usize::MAX);
    // A reader that has looked at nothing after seq 1 (and never reports progress).
    r.join(1);
    let mut evicted = Evicted::new();
    let seqs = |read: Read| match read {
        Read::Events(events, cursor) => (events.iter().map(|e| e.seq).collect::<Vec<_>>(), cursor),
        Read::Lagged(n) => panic!("lagged {n}"),
    };
    assert_eq!(seqs(r.read(0, None, 10)), (vec![], 0));
    for s in ["a", "b", "a", "b", "a", "b"] {
        r.push(&h.push(ev(s, 100), SystemTime::UNIX_EPOCH), &mut evicted);
    }
    // Seqs 2..=7 were pushed; 4 are kept.
    assert_eq!(evicted.len(), 2);
    assert_eq!(seqs(r.read(3, None, 10)), (vec![4, 5, 6, 7], 7));
    assert_eq!(seqs(r.read(5, None, 1)), (vec![6], 6));
    assert_eq!(seqs(r.read(3, Some("a"), 10)), (vec![4, 6], 7));
    assert_eq!(seqs(r.read(7, None, 10)), (vec![], 7));
    assert!(matches!(r.read(1, None, 10), Read::Lagged(2)));
    // A filtered reader looks at no more than 4 * max events per read.
    assert_eq!(seqs(r.read(3, Some("zzz"), 1)), (vec![], 7));

    // The byte bound, which always keeps the newest event.
    let mut r = Recent::new(100, 2 * size + 8);
    r.join(0);
    let three: Vec<u64> = (0..3)
        .map(|_| {
            let env = h.push(ev("a", 100), SystemTime::UNIX_EPOCH);
            r.push(&env, &mut evicted);
            env.seq
        })
        .collect();
    assert_eq!(seqs(r.read(three[0], None, 10)).0, three[1..]);
    assert!(matches!(r.read(three[0] - 1, None, 10), Read::Lagged(1)));
    let big = h.push(ev("a", 10 * size), SystemTime::UNIX_EPOCH);
    r.push(&big, &mut evicted);
    assert_eq!(
        seqs(r.read(big.seq - 1, None, 10)),
        (vec![big.seq], big.seq)
    );
    assert!(matches!(r.read(0, None, 10), Read::Lagged(_)));

    // After a gap the window starts over; a cursor from before the gap has lagged.
    let skipped = h.push(ev("a", 1), SystemTime::UNIX_EPOCH);
    let after = h.push(ev("a", 1), SystemTime::UNIX_EPOCH);
    r.push(&after, &mut evicted);
    assert_eq!(
        seqs(r.read(skipped.seq, None, 10)),
        (vec![after.seq], after.seq)
    );
    assert!(matches!(r.read(big.seq, None, 10), Read::Lagged(1)));
    r.clear(&mut evicted);
    assert_eq!(seqs(r.read(after.seq, None, 10)), (vec![], after.seq));
}

#[test]
fn the_window_keeps_only_what_some_reader_has_yet_to_look_at() {
    let mut h = History::new(limits(100, 1 << 20));
    let mut r = Recent::new(100, usize::MAX);
    let mut evicted = Evicted::new();
    let mut publish = |r: &mut Recent, evicted: &mut Evicted| {
        let env = h.push(ev("a", 10), SystemTime::UNIX_EPOCH);
        r.push(&env, evicted);
        env.seq
    };
    let kept = |r: &Recent| r.kept.events.iter().map(|k| k.seq).collect::<Vec<_>>();

    // Nobody reads: nothing is kept.
    publish(&mut r, &mut evicted);
    assert!(kept(&r).is_empty());

    let fast = r.join(1);
    let slow = r.join(1);
    for _ in 0..5 {
        publish(&mut r, &mut evicted);
    }
    assert_eq!(kept(&r), [2, 3, 4, 5, 6]);
    r.advance(fast, 6, &mut evicted);
    assert_eq!(
        kept(&r),
        [2, 3, 4, 5, 6],
        "the slow reader still needs them"
    );
    r.advance(slow, 3, &mut evicted);
    assert_eq!(kept(&r), [4, 5, 6]);
    assert_eq!(evicted.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    // The slow one leaves: the fast one has seen everything.
    r.leave(slow, &mut evicted);
    assert!(kept(&r).is_empty());
    let next = publish(&mut r, &mut evicted);
    assert_eq!(kept(&r), [next]);
    r.leave(fast, &mut evicted);
    assert!(kept(&r).is_empty());
    publish(&mut r, &mut evicted);
    assert!(kept(&r).is_empty());
}

#[test]
fn many_readers_at_one_cursor_hold_the_window_until_the_last_moves() {
    let mut h = History::new(limits(100, 1 << 20));
    let mut r = Recent::new(100, usize::MAX);
    let mut evicted = Evicted::new();
    let ids: Vec<u64> = (0..10_000).map(|_| r.join(0)).collect();
    for _ in 0..3 {
        r.push(&h.push(ev("a", 10), SystemTime::UNIX_EPOCH), &mut evicted);
    }
    assert_eq!(r.at.len(), 1, "one entry for 10,000 readers at one cursor");
    for &id in &ids[1..] {
        r.advance(id, 3, &mut evicted);
    }
    assert_eq!(r.len(), 3, "the first reader still needs all three");
    r.advance(ids[0], 2, &mut evicted);
    assert_eq!(r.len(), 1);
    // Unknown ids and repeated cursors change nothing.
    r.advance(u64::MAX, 0, &mut evicted);
    r.advance(ids[0], 2, &mut evicted);
    assert_eq!(r.len(), 1);
    r.leave(ids[0], &mut evicted);
    assert_eq!(r.len(), 0);
    assert_eq!(r.at.len(), 1);
    for &id in &ids[1..] {
        r.leave(id, &mut evicted);
    }
    assert!(r.at.is_empty() && r.cursors.is_empty());
    assert_eq!(evicted.len(), 3);
}
