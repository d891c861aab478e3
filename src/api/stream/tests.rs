//! The reader's batching and lag notice, and the SSE framing's chunks and line breaks.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::reader::{ReaderState, BATCH};
use super::sse::{SseChunks, SSE_CHUNK_BYTES};
use super::*;
use crate::events::{BusLimits, Event, EventBus};

/// All chunks of `items`, joined.
fn framed(items: &[Item]) -> String {
    let bytes: Vec<u8> = SseChunks::new(items.to_vec()).collect::<Vec<_>>().concat();
    String::from_utf8(bytes).unwrap()
}

fn error(bus: &EventBus, session: &str) {
    bus.publish(Event::Error {
        session_id: session.into(),
        message: "m".into(),
    });
}

fn seqs(batch: &[Item]) -> Vec<u64> {
    batch
        .iter()
        .map(|i| match i {
            Item::Event(env) => env.seq,
            other => panic!("not an event: {other:?}"),
        })
        .collect()
}

fn reader(bus: &EventBus, filter: Option<&str>, after: Option<u64>) -> ReaderState {
    let hour = Duration::from_secs(3600);
    ReaderState::new(bus, filter.map(Arc::from), after, hour, Default::default())
}

#[actix_rt::test]
async fn a_reader_takes_what_is_ready_in_capped_batches_in_order() {
    let bus = EventBus::new(BusLimits::default());
    error(&bus, "a");
    let mut st = reader(&bus, None, Some(0));
    for n in 0..BATCH + 43 {
        error(&bus, if n % 2 == 0 { "a" } else { "b" });
    }
    let backlog = st.next_batch().await.unwrap();
    assert_eq!(seqs(&backlog), [1], "the backlog goes out first, alone");
    let first = st.next_batch().await.unwrap();
    let second = st.next_batch().await.unwrap();
    assert_eq!(first.len(), BATCH);
    let all: Vec<u64> = seqs(&first).into_iter().chain(seqs(&second)).collect();
    assert_eq!(all, (2..=BATCH as u64 + 44).collect::<Vec<_>>());

    // A filtered reader skips other sessions' events.
    let mut only_b = reader(&bus, Some("b"), Some(0));
    let b = only_b.next_batch().await.unwrap();
    assert!(b.len() > 100);
    assert!(b
        .iter()
        .all(|i| matches!(i, Item::Event(e) if e.event.session_id() == "b")));
}

#[actix_rt::test]
async fn after_the_first_live_event_a_reader_lingers_for_more() {
    let bus = EventBus::new(BusLimits::default());
    let mut st = reader(&bus, None, None);
    let next = st.next_batch();
    tokio::pin!(next);
    assert!(
        futures_util::FutureExt::now_or_never(next.as_mut()).is_none(),
        "nothing yet"
    );
    error(&bus, "a");
    assert!(
        futures_util::FutureExt::now_or_never(next.as_mut()).is_none(),
        "has one, lingers"
    );
    error(&bus, "a");
    error(&bus, "b");
    assert_eq!(seqs(&next.await.unwrap()), [1, 2, 3], "one batch");
}

#[actix_rt::test]
async fn a_lagging_reader_gets_a_final_lagged_notice() {
    let bus = EventBus::new(BusLimits {
        subscriber_buffer: 4,
        ..BusLimits::default()
    });
    let mut st = reader(&bus, None, None);
    for _ in 0..10 {
        error(&bus, "a");
    }
    let batch = st.next_batch().await.unwrap();
    let [Item::Lagged(json)] = &batch[..] else {
        panic!("{batch:?}");
    };
    let lag: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(lag["reason"], "slow_reader");
    assert_eq!(lag["missed"], 6);
    assert!(st.next_batch().await.is_none(), "the stream ends");
}

#[test]
fn sse_chunks_stay_under_the_cap_keep_order_and_never_split_an_event() {
    let bus = EventBus::new(BusLimits::default());
    let mut rx = bus.subscribe();
    let frame = |n: usize, len: usize| {
        format!(
            "{{\"type\":\"assistant\",\"n\":{n},\"pad\":\"{}\"}}",
            "x".repeat(len)
        )
    };
    // 200 events of about 1 KiB, one of 100 KiB in the middle, then a heartbeat.
    for n in 0..200 {
        let len = if n == 120 { 100 * 1024 } else { 1000 };
        bus.publish(Event::SdkMessage {
            session_id: "s".into(),
            msg_type: "assistant".into(),
            message: frame(n, len).into(),
        });
    }
    let mut items: Vec<Item> = (0..200)
        .map(|_| Item::Event(rx.try_recv().unwrap()))
        .collect();
    items.push(Item::Heartbeat);

    let chunks: Vec<Bytes> = SseChunks::new(items.clone()).collect();
    let one_by_one: String = items
        .iter()
        .map(|i| framed(std::slice::from_ref(i)))
        .collect();
    assert_eq!(framed(&items), one_by_one, "same bytes, same order");
    assert!(chunks.len() >= 4, "{} chunks", chunks.len());
    for chunk in &chunks {
        let text = std::str::from_utf8(chunk).unwrap();
        assert!(text.ends_with("\n\n"), "a chunk ends on an event boundary");
        let big = text.contains(&"x".repeat(100 * 1024));
        if big {
            assert_eq!(
                text.matches("\nid: ").count() + 1,
                1,
                "the big event is alone"
            );
        } else {
            assert!(chunk.len() <= SSE_CHUNK_BYTES, "{} bytes", chunk.len());
        }
    }
    assert!(SseChunks::new(Vec::new()).next().is_none());
}

#[test]
fn sse_framing_splits_multiline_data() {
    let bus = EventBus::new(BusLimits::default());
    let mut rx = bus.subscribe();
    bus.publish(Event::SdkMessage {
        session_id: "s".into(),
        msg_type: "assistant".into(),
        message: "{\"type\":\"assistant\",\n\"x\":1}".into(),
    });
    let env = rx.try_recv().unwrap();
    let frame = framed(&[Item::Event(env)]);
    assert!(
        frame.starts_with("id: 1\nevent: sdk_message\ndata: {"),
        "{frame}"
    );
    assert!(frame.contains("\ndata: \"x\":1}}\n\n"), "{frame}");
    assert_eq!(framed(&[Item::Heartbeat]), ": keep-alive\n\n");
}

#[test]
fn sse_framing_breaks_lines_at_cr_too_and_rejoins_to_the_same_json() {
    let bus = EventBus::new(BusLimits::default());
    let mut rx = bus.subscribe();
    let raw = "{\"type\":\"assistant\",\r\n\"a\":1,\r\"b\":\"x\"}";
    bus.publish(Event::SdkMessage {
        session_id: "s".into(),
        msg_type: "assistant".into(),
        message: raw.into(),
    });
    let env = rx.try_recv().unwrap();
    let frame = framed(&[Item::Event(env.clone())]);
    assert!(
        !frame.contains('\r'),
        "a bare CR would end an SSE line: {frame:?}"
    );
    let data: Vec<&str> = frame
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.len(), 4, "{frame:?}");
    let rejoined: serde_json::Value = serde_json::from_str(&data.join("\n")).unwrap();
    let whole: serde_json::Value = serde_json::from_str(&env.json()).unwrap();
    assert_eq!(rejoined, whole);
    assert_eq!(whole["message"]["b"], "x");
    assert_eq!(env.json_len(), env.json().len());
}

#[actix_rt::test]
async fn a_foreign_resume_point_gets_a_notice_then_everything_retained_then_live_events() {
    let base = 1 << 40;
    let bus = EventBus::new(BusLimits {
        seq_base: base,
        ..BusLimits::default()
    });
    error(&bus, "a");
    error(&bus, "b");
    // A point another instance gave (numbered from its own base), then a 1-based one.
    for foreign in [crate::events::random_seq_base() | (1 << 51), 5] {
        let mut st = reader(&bus, None, Some(foreign));
        let first = st.next_batch().await.unwrap();
        let [Item::Lagged(json), rest @ ..] = &first[..] else {
            panic!("{first:?}");
        };
        let lag: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(lag["reason"], "resume_point_unknown", "{lag}");
        assert_eq!(lag["resume_from"], base + 1);
        let mut got: Vec<u64> = seqs(rest);
        if got.is_empty() {
            got = seqs(&st.next_batch().await.unwrap());
        }
        assert_eq!(got, [base + 1, base + 2], "everything retained");
    }
    let mut st = reader(&bus, None, Some(base + 1));
    assert_eq!(
        seqs(&st.next_batch().await.unwrap()),
        [base + 2],
        "one of ours"
    );
}
