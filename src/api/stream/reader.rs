//! One reader of the event stream: its resume backlog, then live events from the bus's
//! window in batches, heartbeats, and the final `lagged` notice.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, Stream};

use super::Item;
use crate::api::fanout::Waiter;
use crate::events::{Envelope, EventBus, Read, ReaderGuard};
use crate::limits::streams::StreamPermit;
use crate::telemetry::streams::StreamReaderDropped;
use ccr_protocol::event::Lagged;

/// Most items in one batch: one SSE write (in chunks of at most
/// [`SSE_CHUNK_BYTES`]) or one run of WebSocket frames.
pub(super) const BATCH: usize = 256;

/// How long a batch that is not yet full waits for more events after its
/// first one. The reader sleeps instead of being woken by every event (a
/// cross-thread wake-up per event cost the publishing session more than the
/// event itself), so under load a reader wakes about once per millisecond.
const LINGER: Duration = Duration::from_millis(1);

/// One event-stream reader: its resume backlog, its cursor into the bus's
/// window of recent events, and its heartbeat.
pub(super) struct ReaderState {
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
    pub(super) fn new(
        bus: &EventBus,
        filter: Option<Arc<str>>,
        after: Option<u64>,
        heartbeat: Duration,
        drops: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        let sub = bus.subscribe_from(filter.as_deref(), after);
        let pending_lag = sub.lagged_from.map(|from| {
            if sub.unknown_point {
                Lagged::ResumePointUnknown { resume_from: from }
            } else {
                Lagged::HistoryEvicted { resume_from: from }
            }
            .to_json()
        });
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
            // A foreign resume point is replaced by the point before what is replayed, so
            // that a reader dropped before it got anything resumes here as one of ours.
            last_seq: match (sub.unknown_point, sub.lagged_from) {
                (true, Some(from)) => from - 1,
                _ => after.unwrap_or(0),
            },
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
    pub(super) async fn next_batch(&mut self) -> Option<Vec<Item>> {
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
