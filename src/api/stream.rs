//! The live operator event stream: `GET /v1/events` as Server-Sent Events or a
//! WebSocket, resumable with `?after=SEQ` (SSE: `Last-Event-ID`), plus the
//! transcript pages of `GET /v1/sessions/{id}/messages`.
//!
//! Both transports read the same item stream: history after the resume point,
//! then live events, heartbeats, and a final `lagged` notice when a slow
//! reader overflows its bounded queue (the reader is then dropped, so it can
//! never slow a session down).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytes::Bytes;
use futures_util::stream::{self, Stream};

use super::auth::Viewer;
use super::fanout::Waiter;
use super::lookup::lookup;
use super::{ApiError, ApiState};
use crate::events::{Envelope, EventBus, Read, ReaderGuard};
use crate::limits::streams::StreamPermit;
use crate::telemetry::streams::StreamReaderDropped;
use ccr_protocol::api::{EventsQuery, PageQuery};
use ccr_protocol::event::Lagged;

/// What a stream reader receives next.
#[derive(Debug, Clone)]
pub enum Item {
    /// An event (sequence number, type, JSON).
    Event(Arc<Envelope>),
    /// The reader missed events: this JSON explains, and says where to resume.
    Lagged(String),
    /// Nothing happened for a while.
    Heartbeat,
}

/// Most items in one batch: one SSE write (in chunks of at most
/// [`SSE_CHUNK_BYTES`]) or one run of WebSocket frames.
const BATCH: usize = 256;

/// How long a batch that is not yet full waits for more events after its
/// first one. The reader sleeps instead of being woken by every event (a
/// cross-thread wake-up per event cost the publishing session more than the
/// event itself), so under load a reader wakes about once per millisecond.
const LINGER: Duration = Duration::from_millis(1);

/// One event-stream reader: its resume backlog, its cursor into the bus's
/// window of recent events, and its heartbeat.
struct ReaderState {
    bus: EventBus,
    backlog: VecDeque<Arc<Envelope>>,
    pending_lag: Option<String>,
    /// The last sequence number looked at in the live window.
    cursor: u64,
    filter: Option<Arc<str>>,
    drops: prometheus_client::metrics::counter::Counter,
    heartbeat: tokio::time::Interval,
    closed: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// The last sequence number delivered.
    last_seq: u64,
    done: bool,
    reader: ReaderGuard,
    /// Wakes this reader after a publish, in its worker thread's turn.
    waiter: Waiter,
}

impl ReaderState {
    /// A reader of `bus` (one session's events or all), resuming after `after`.
    fn new(
        bus: &EventBus,
        filter: Option<Arc<str>>,
        after: Option<u64>,
        heartbeat: Duration,
        drops: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        let sub = bus.subscribe_from(filter.as_deref(), after);
        let pending_lag = sub
            .lagged_from
            .map(|from| Lagged::HistoryEvicted { resume_from: from }.to_json());
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ReaderState {
            bus: bus.clone(),
            backlog: sub.backlog.into(),
            pending_lag,
            cursor: sub.cursor,
            filter,
            drops,
            heartbeat: tick,
            closed: Box::pin(bus.closed()),
            last_seq: after.unwrap_or(0),
            done: false,
            reader: sub.reader,
            waiter: Waiter::join(bus),
        }
    }

    /// The reader fell out of the window: the final `lagged` notice (the stream then ends).
    fn lagged(&mut self, missed: u64) -> Item {
        self.done = true;
        let resume_after = self.last_seq;
        StreamReaderDropped {
            missed,
            resume_after,
        }
        .emit(&self.drops);
        Item::Lagged(
            Lagged::SlowReader {
                missed,
                resume_after,
            }
            .to_json(),
        )
    }

    /// Move ready live events into `batch` until it is full or none is ready.
    /// A lag ends the batch with the final `lagged` notice.
    fn drain(&mut self, batch: &mut Vec<Item>) {
        while batch.len() < BATCH && !self.done {
            let max = BATCH - batch.len();
            match self
                .bus
                .read(&self.reader, self.cursor, self.filter.as_deref(), max)
            {
                Read::Events(events, cursor) => {
                    let caught_up = cursor == self.cursor;
                    self.cursor = cursor;
                    if let Some(last) = events.last() {
                        self.last_seq = last.seq;
                    }
                    batch.extend(events.into_iter().map(Item::Event));
                    if caught_up {
                        return;
                    }
                }
                Read::Lagged(missed) => batch.push(self.lagged(missed)),
            }
        }
    }

    /// The next batch: the resume notice and backlog first, then live events
    /// (waiting for the first one, then lingering for more), or a heartbeat.
    /// `None` once the stream is over (shutdown, or after a live `lagged`).
    async fn next_batch(&mut self) -> Option<Vec<Item>> {
        if self.done {
            return None;
        }
        let mut batch = Vec::new();
        batch.extend(self.pending_lag.take().map(Item::Lagged));
        while batch.len() < BATCH {
            let Some(env) = self.backlog.pop_front() else {
                break;
            };
            self.last_seq = env.seq;
            batch.push(Item::Event(env));
        }
        if !batch.is_empty() {
            return Some(batch);
        }
        while batch.is_empty() && !self.done {
            // Armed before looking, so a publish in between still wakes this reader.
            self.waiter.arm();
            self.drain(&mut batch);
            if !batch.is_empty() || self.done {
                break;
            }
            tokio::select! {
                _ = &mut self.closed => self.done = true,
                _ = self.heartbeat.tick() => return Some(vec![Item::Heartbeat]),
                _ = self.waiter.next() => {}
            }
        }
        if batch.len() < BATCH && !self.done {
            tokio::time::sleep(LINGER).await;
            self.drain(&mut batch);
        }
        (!batch.is_empty()).then_some(batch)
    }
}

/// The item stream of one reader, in batches of the items that were ready
/// together; ends on shutdown or after a live `lagged`. It holds the reader's
/// `permit` (its place under the stream caps) until it ends or is dropped.
pub fn batches(
    bus: &EventBus,
    filter: Option<Arc<str>>,
    after: Option<u64>,
    heartbeat: Duration,
    drops: prometheus_client::metrics::counter::Counter,
    permit: StreamPermit,
) -> impl Stream<Item = Vec<Item>> {
    let state = ReaderState::new(bus, filter, after, heartbeat, drops);
    stream::unfold((state, permit), |(mut st, permit)| async move {
        let batch = st.next_batch().await?;
        Some((batch, (st, permit)))
    })
}

/// Append the SSE framing of `item` to `out` (multi-line JSON becomes several `data:` lines).
fn push_sse(out: &mut String, item: &Item) {
    // The pieces are JSON, where a line break can only be whitespace between
    // tokens: each one (CR or LF) starts a new `data:` line, which readers join
    // back with LF. Most JSON has none, and the envelope knows whether it has.
    fn data(out: &mut String, parts: &[&str], line_breaks: bool) {
        out.push_str("data: ");
        for part in parts {
            let mut from = 0;
            if line_breaks {
                for at in memchr::memchr2_iter(b'\r', b'\n', part.as_bytes()) {
                    out.push_str(&part[from..at]);
                    out.push_str("\ndata: ");
                    from = at + 1;
                }
            }
            out.push_str(&part[from..]);
        }
        out.push_str("\n\n");
    }
    match item {
        Item::Event(env) => {
            out.push_str("id: ");
            out.push_str(itoa::Buffer::new().format(env.seq));
            out.push_str("\nevent: ");
            out.push_str(env.event.kind());
            out.push('\n');
            data(out, &env.json_parts(), env.has_line_breaks());
        }
        Item::Lagged(json) => {
            out.push_str("event: lagged\n");
            // Built by serde_json's compact writer: no raw line breaks.
            data(out, &[json], false);
        }
        Item::Heartbeat => out.push_str(": keep-alive\n\n"),
    }
}

/// Largest SSE body chunk, unless one event alone is bigger. actix-http keeps
/// polling a streaming body until 32 KiB is buffered, copies each chunk into its
/// write buffer, and after a flush replaces a write buffer that grew past 128 KiB
/// with a fresh 8 KiB one. Chunks this small keep that buffer under the limit (one
/// allocation reused, not regrown per chunk), and since [`SseChunks`] frames each
/// chunk only when the body asks for it, the chunk is still in cache when it is
/// copied: a whole batch framed up front (~280 KiB at 256 events of 1 KiB) was not.
const SSE_CHUNK_BYTES: usize = 16 * 1024;

/// About how many bytes `push_sse` writes for `item` (exact unless the JSON has line breaks).
fn framed_len(item: &Item) -> usize {
    match item {
        Item::Event(env) => env.json_len() + 48,
        Item::Lagged(json) => json.len() + 24,
        Item::Heartbeat => 16,
    }
}

/// SSE framing of the items that were ready together, in order, as chunks of
/// at most [`SSE_CHUNK_BYTES`] (an item is never split across chunks), each
/// framed when it is asked for.
struct SseChunks {
    items: std::vec::IntoIter<Item>,
}

impl SseChunks {
    fn new(items: Vec<Item>) -> Self {
        Self {
            items: items.into_iter(),
        }
    }
}

impl Iterator for SseChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let first = self.items.next()?;
        let mut size = framed_len(&first);
        let more = self
            .items
            .as_slice()
            .iter()
            .map(framed_len)
            .take_while(|&len| {
                let fits = size + len <= SSE_CHUNK_BYTES;
                size += if fits { len } else { 0 };
                fits
            })
            .count();
        let mut out = String::with_capacity(size);
        push_sse(&mut out, &first);
        for item in self.items.by_ref().take(more) {
            push_sse(&mut out, &item);
        }
        Some(Bytes::from(out))
    }
}

/// `GET /v1/events`: WebSocket when upgraded, otherwise Server-Sent Events.
/// Each reader counts under `[api] max_stream_subscribers` (in total) and
/// `max_stream_subscribers_per_token` (per token name); beyond, 503 `too_many_streams`.
pub async fn events(
    who: Viewer,
    state: web::Data<ApiState>,
    req: HttpRequest,
    query: web::Query<EventsQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let EventsQuery { session_id, after } = query.into_inner();
    if let Some(id) = &session_id {
        lookup(&state, id).await?;
    }
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = after.or(last_event_id);
    let filter = session_id.map(|s| Arc::from(s.as_str()));
    let heartbeat = state.stream_heartbeat;
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        let reader = EventSocket {
            heartbeat,
            last_pong: Instant::now(),
        };
        let mut resp =
            ws::handshake(&req).map_err(|_| ApiError::NotAcceptable("bad websocket handshake"))?;
        let permit = state.streams.enter(who.0.name.clone())?;
        let batches = batches(
            &state.bus,
            filter,
            after,
            heartbeat,
            state.metrics.stream_drops.clone(),
            permit,
        );
        let items = stream::StreamExt::flat_map(batches, stream::iter);
        let body = ws::WebsocketContext::with_factory(payload, move |ctx| {
            ctx.add_stream(items);
            reader
        });
        return Ok(resp.streaming(body));
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    if !(accept.contains("text/event-stream") || accept.contains("*/*")) {
        return Err(ApiError::NotAcceptable(
            "use a WebSocket upgrade or Accept: text/event-stream",
        ));
    }
    let permit = state.streams.enter(who.0.name.clone())?;
    let drops = state.metrics.stream_drops.clone();
    let batches = batches(&state.bus, filter, after, heartbeat, drops, permit);
    let body = stream::StreamExt::flat_map(batches, |batch| {
        stream::iter(SseChunks::new(batch).map(Ok::<_, std::convert::Infallible>))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// WebSocket reader of the event stream, with its own ping/pong heartbeat
/// (actix-web-actors has no IO timeout of its own).
struct EventSocket {
    heartbeat: Duration,
    last_pong: Instant,
}

impl Actor for EventSocket {
    type Context = ws::WebsocketContext<Self>;
}

impl StreamHandler<Item> for EventSocket {
    fn handle(&mut self, item: Item, ctx: &mut Self::Context) {
        match item {
            Item::Event(env) => ctx.text(env.json()),
            Item::Lagged(json) => ctx.text(json),
            Item::Heartbeat => {
                if self.last_pong.elapsed() > self.heartbeat * 2 {
                    ctx.stop();
                    return;
                }
                ctx.ping(b"");
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // Shutdown, or dropped after `lagged`: close cleanly.
        ctx.close(Some(ws::CloseCode::Away.into()));
        ctx.stop();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for EventSocket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match msg {
            Ok(ws::Message::Ping(p)) => {
                self.last_pong = Instant::now();
                ctx.pong(&p);
            }
            Ok(ws::Message::Pong(_)) => self.last_pong = Instant::now(),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(_) => {} // readers do not send anything meaningful
            Err(_) => ctx.stop(),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// `GET /v1/sessions/{id}/messages?after=&limit=`: a page of the session's event history.
pub async fn transcript(
    _who: Viewer,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    lookup(&state, &id).await?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::InvalidQuery("limit must be 1..=1000".into()));
    }
    let after = query.after.unwrap_or(0);
    let page = state.bus.page(&id, after, limit);
    let next_after = page.events.last().map_or(after, |e| e.seq);
    // Events are already JSON: splice them in instead of re-serializing.
    let mut body = String::from("{\"session_id\":");
    body.push_str(&serde_json::to_string(&id).unwrap_or_default());
    body.push_str(",\"messages\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.extend(e.json_parts());
    }
    body.push_str(&format!(
        "],\"next_after\":{next_after},\"lagged_from\":{}}}",
        page.lagged_from
            .map_or("null".to_owned(), |s| s.to_string())
    ));
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{BusLimits, Event};

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
}
