//! Property-based fuzzing of WebSocket message reassembly (`assembly.rs`).
//!
//! Properties: any fragmentation of a message reassembles to exactly the message;
//! a text message over the limit is always reported oversized with its whole length
//! scanned (never kept), whatever its fragments; any order of calls never panics and
//! never leaks a fragment into the next message.

use bytes::Bytes;
use proptest::prelude::*;

use super::assembly::{Assembled, Reassembler};
use ccr_protocol::fuzz::config;

/// A message and the cut points that fragment it (at least two fragments).
fn fragmented() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    prop::collection::vec(any::<u8>(), 0..300).prop_flat_map(|msg| {
        let len = msg.len();
        (
            Just(msg),
            prop::collection::vec(0..=len, 1..8).prop_map(|mut cuts| {
                cuts.sort_unstable();
                cuts
            }),
        )
    })
}

/// Feed `msg` cut at `cuts` (first fragment, then continuations, the last one final).
fn feed(r: &mut Reassembler, msg: &[u8], cuts: &[usize], binary: bool) -> Vec<Assembled> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(msg.len());
    let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &msg[w[0]..w[1]]).collect();
    let mut out = vec![r.first(pieces[0], binary)];
    for (i, piece) in pieces[1..].iter().enumerate() {
        out.push(r.next(piece, i == pieces.len() - 2));
    }
    out
}

/// What reassembling `msg` must give under `limit`: the text, "binary frame", or an
/// oversized report that scanned every byte (described as a string to compare).
fn expected(msg: &[u8], limit: usize, binary: bool) -> String {
    if binary {
        "skip: binary frame".into()
    } else if msg.len() > limit {
        format!("oversized: {} bytes", msg.len())
    } else {
        format!("text: {:?}", msg)
    }
}

fn described(a: &Assembled) -> String {
    match a {
        Assembled::Text(b) => format!("text: {:?}", b.as_ref()),
        Assembled::Oversized(head) => format!("oversized: {} bytes", head.bytes),
        Assembled::Skip(reason) => format!("skip: {reason}"),
        Assembled::Partial => "partial".into(),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Whole(Vec<u8>),
    First(Vec<u8>, bool),
    Next(Vec<u8>, bool),
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    let data = || prop::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        data().prop_map(Op::Whole),
        (data(), any::<bool>()).prop_map(|(d, b)| Op::First(d, b)),
        (data(), any::<bool>()).prop_map(|(d, l)| Op::Next(d, l)),
        Just(Op::Reset),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_any_fragmentation_is_the_whole_message(
        (msg, cuts) in fragmented(),
        limit in 0usize..400,
        binary in any::<bool>(),
    ) {
        let mut r = Reassembler::new(limit);
        let out = feed(&mut r, &msg, &cuts, binary);
        let (last, partial) = out.split_last().expect("two fragments at least");
        prop_assert!(partial.iter().all(|a| *a == Assembled::Partial), "{:?}", out);
        prop_assert_eq!(described(last), expected(&msg, limit, binary));
        // Unfragmented, the same limit holds.
        let whole = r.whole_text(Bytes::from(msg.clone()));
        prop_assert_eq!(described(&whole), expected(&msg, limit, false));
    }

    #[test]
    fn fuzz_any_call_order_never_panics_or_leaks(
        ops in prop::collection::vec(op(), 0..30),
        limit in 0usize..100,
        (msg, cuts) in fragmented(),
    ) {
        let mut r = Reassembler::new(limit);
        for op in ops {
            let _ = match op {
                Op::Whole(d) => r.whole_text(Bytes::from(d)),
                Op::First(d, b) => r.first(&d, b),
                Op::Next(d, l) => r.next(&d, l),
                Op::Reset => { r.reset(); Assembled::Partial }
            };
        }
        // Whatever came before, a new fragmented message is assembled on its own.
        let out = feed(&mut r, &msg, &cuts, false);
        prop_assert_eq!(out.last().map(described), Some(expected(&msg, limit, false)));
    }
}
