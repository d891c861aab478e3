//! The internal event bus: typed events from sessions and the registry.
//!
//! Publishers never wait. The operator event stream (WebSocket/SSE) reads the
//! most recent events with a cursor of its own ([`EventBus::read`]); a reader
//! whose next event was already dropped from that bounded window has lagged
//! (and the stream ends with a `lagged` notice) instead of slowing anyone
//! down. The transcript API pages the per-session history; tests and other
//! in-process observers can also take a broadcast receiver.

mod hub;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch, Notify};

pub use hub::{Backlog, Envelope, History, HistoryLimits, Read, Recent};

pub use ccr_protocol::event::Event;

/// Bounds of the bus: how far live readers may fall behind, and the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusLimits {
    /// How many events a live reader may fall behind before it is dropped as
    /// lagged (it may also fall behind by at most `history.total_bytes` of JSON).
    pub subscriber_buffer: usize,
    /// History bounds, per session and in total (for resume and transcripts).
    pub history: HistoryLimits,
}

impl Default for BusLimits {
    fn default() -> Self {
        Self {
            subscriber_buffer: 262_144,
            history: HistoryLimits {
                events: 1000,
                bytes: 1 << 20,
                total_bytes: 256 << 20,
            },
        }
    }
}

/// Most events a broadcast receiver may fall behind.
const OBSERVER_BUFFER: usize = 4096;

/// What the hub lock guards: the histories and the live readers' window.
struct Log {
    history: History,
    recent: Recent,
}

struct Hub {
    log: Mutex<Log>,
    tx: broadcast::Sender<Arc<Envelope>>,
    closed: watch::Sender<bool>,
    /// Wakes readers that found nothing new; notified only while `waiting > 0`.
    wake: Arc<Notify>,
    waiting: AtomicUsize,
    /// Live cursor readers (for `/healthz`).
    readers: AtomicUsize,
}

/// Cloneable handle to the event hub: publish, subscribe (live or resuming), page history.
///
/// Publishing stamps the event with the next sequence number, keeps it in the
/// session's bounded history and in the readers' bounded window (and sends it
/// to any broadcast receivers), all under one short lock so that every reader
/// sees one total order.
#[derive(Clone)]
pub struct EventBus {
    hub: Arc<Hub>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.subscribers())
            .finish()
    }
}

/// A resuming subscription: history first, then live events read with [`EventBus::read`].
#[derive(Debug)]
pub struct Subscription {
    /// Retained events after the requested point, oldest first.
    pub backlog: Vec<Arc<Envelope>>,
    /// Set when part of the requested range was evicted: resume point available.
    pub lagged_from: Option<u64>,
    /// The cursor for live events: everything after it was published after the backlog was taken.
    pub cursor: u64,
    /// Counts this reader in [`EventBus::subscribers`] while it lives.
    pub reader: ReaderGuard,
}

/// One live cursor reader, counted and known to the window of recent events
/// until it is dropped.
#[derive(Debug)]
pub struct ReaderGuard {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut evicted = Vec::new();
        self.hub.log.lock().recent.leave(self.id, &mut evicted);
        self.hub.readers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

/// Keeps a reader counted in `waiting` until its wait ends.
struct Waiting(Arc<Hub>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EventBus {
    /// A bus with these bounds.
    pub fn new(limits: BusLimits) -> Self {
        // In-process observers only (the event stream reads `recent`): the channel's
        // slots are allocated up front, so a large `event_buffer` is not copied here.
        let (tx, _) = broadcast::channel(limits.subscriber_buffer.clamp(1, OBSERVER_BUFFER));
        let recent = Recent::new(limits.subscriber_buffer, limits.history.total_bytes);
        Self {
            hub: Arc::new(Hub {
                log: Mutex::new(Log {
                    history: History::new(limits.history),
                    recent,
                }),
                tx,
                closed: watch::channel(false).0,
                wake: Arc::new(Notify::new()),
                waiting: AtomicUsize::new(0),
                readers: AtomicUsize::new(0),
            }),
        }
    }

    /// Publish; never blocks on readers.
    pub fn publish(&self, event: Event) {
        // Serialize before taking the lock; inside it only the sequence number is stamped.
        let prepared = hub::Prepared::new(event, SystemTime::now());
        let mut evicted = Vec::new();
        {
            let mut log = self.hub.log.lock();
            let env = log.history.stamp(prepared, &mut evicted);
            log.recent.push(&env, &mut evicted);
            // Err only means no broadcast receiver exists.
            let _ = self.hub.tx.send(env);
        }
        // Freed outside the lock.
        drop(evicted);
        // Readers that found nothing are woken; busy ones are not (they read on their own).
        if self.hub.waiting.load(Ordering::SeqCst) > 0 {
            self.hub.wake.notify_waiters();
        }
    }

    /// A broadcast receiver of live events from now on (for in-process observers and
    /// tests), lagging after `min(event_buffer, 4096)` events.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.hub.tx.subscribe()
    }

    /// History after `after` (of one session or all), then a cursor for live
    /// events with [`EventBus::read`], with no gap.
    pub fn subscribe_from(&self, session: Option<&str>, after: Option<u64>) -> Subscription {
        let mut log = self.hub.log.lock();
        let cursor = log.history.next_seq() - 1;
        let reader = ReaderGuard {
            hub: self.hub.clone(),
            id: log.recent.join(cursor),
        };
        self.hub.readers.fetch_add(1, Ordering::Relaxed);
        let b = after.map(|after| log.history.backlog(session, after));
        let b = b.unwrap_or_default();
        Subscription {
            backlog: b.events,
            lagged_from: b.lagged_from,
            cursor,
            reader,
        }
    }

    /// Up to `max` live events after `cursor` (of one session, or all) for
    /// `reader`, or how many it missed because they already left the bounded
    /// window. What no reader needs any more leaves the window (and is freed
    /// here, on the reader's thread, rather than by a publishing session).
    pub fn read(
        &self,
        reader: &ReaderGuard,
        cursor: u64,
        session: Option<&str>,
        max: usize,
    ) -> Read {
        let mut evicted = Vec::new();
        let mut log = self.hub.log.lock();
        let read = log.recent.read(cursor, session, max);
        if let Read::Events(_, passed) = &read {
            log.recent.advance(reader.id, *passed, &mut evicted);
        }
        drop(log);
        read
    }

    /// Resolves after the next publish. Create it, then look for events with
    /// [`EventBus::read`], then await it: an event published in between still
    /// wakes it.
    pub fn published(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.hub.waiting.fetch_add(1, Ordering::SeqCst);
        let waiting = Waiting(self.hub.clone());
        let notified = self.hub.wake.clone().notified_owned();
        async move {
            notified.await;
            drop(waiting);
        }
    }

    /// Up to `limit` events of `session` after `after`, oldest first.
    pub fn page(&self, session: &str, after: u64, limit: usize) -> Backlog {
        let mut b = self.hub.log.lock().history.backlog(Some(session), after);
        b.events.truncate(limit);
        b
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.hub.log.lock().history.next_seq()
    }

    /// Drop a removed session's history.
    pub fn forget(&self, session: &str) {
        self.hub.log.lock().history.forget(session);
    }

    /// Number of live subscribers: event-stream readers and broadcast receivers.
    pub fn subscribers(&self) -> usize {
        self.hub.readers.load(Ordering::Relaxed) + self.hub.tx.receiver_count()
    }

    /// Whether `other` is a handle to the same bus.
    pub fn same(&self, other: &EventBus) -> bool {
        Arc::ptr_eq(&self.hub, &other.hub)
    }

    /// Tell every stream to end (shutdown).
    pub fn close(&self) {
        self.hub.closed.send_replace(true);
    }

    /// Resolves once [`EventBus::close`] was called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.hub.closed.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_message_is_embedded_as_json_not_a_string() {
        let e = Event::SdkMessage {
            session_id: "s".into(),
            msg_type: "assistant".into(),
            message: r#"{"type":"assistant","x":1}"#.into(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["message"]["x"], 1);
        assert_eq!(v["type"], "sdk_message");
    }

    #[test]
    fn overdue_event_type_is_spelled_as_the_contract_says() {
        let e = Event::PermissionOverdue {
            session_id: "s".into(),
            request_id: "r".into(),
            waiting_ms: 5,
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap()["type"],
            "permission.overdue"
        );
        assert_eq!(e.kind(), "permission.overdue");
    }

    #[test]
    fn slow_subscriber_lags_instead_of_blocking() {
        let bus = EventBus::new(BusLimits {
            subscriber_buffer: 2,
            ..BusLimits::default()
        });
        let mut rx = bus.subscribe();
        let sub = bus.subscribe_from(None, None);
        assert_eq!(bus.subscribers(), 2);
        for _ in 0..5 {
            bus.publish(Event::Error {
                session_id: "s".into(),
                message: "m".into(),
            });
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(3))
        ));
        let read = |cursor| bus.read(&sub.reader, cursor, None, 10);
        assert!(matches!(read(sub.cursor), Read::Lagged(3)));
        assert!(matches!(read(3), Read::Events(e, 5) if e.len() == 2));
        // Read up to the newest event: the window no longer holds any.
        let window = |bus: &EventBus| bus.hub.log.lock().recent.len();
        assert_eq!(window(&bus), 0);
        bus.publish(Event::Error {
            session_id: "s".into(),
            message: "m".into(),
        });
        assert_eq!(window(&bus), 1);
        drop(sub);
        assert_eq!(bus.subscribers(), 1);
        // With no reader the window holds nothing.
        assert_eq!(window(&bus), 0);
        bus.publish(Event::Error {
            session_id: "s".into(),
            message: "m".into(),
        });
        assert_eq!(window(&bus), 0);
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_a_publish_even_one_before_it_waits() {
        let bus = EventBus::new(BusLimits::default());
        let published = bus.published();
        // Published after the waiter was made but before it is awaited: not lost.
        bus.publish(Event::Error {
            session_id: "s".into(),
            message: "m".into(),
        });
        published.await;
        assert_eq!(bus.hub.waiting.load(Ordering::SeqCst), 0);
        // A waiter that is dropped unresolved stops counting too.
        drop(bus.published());
        assert_eq!(bus.hub.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn resume_has_no_gap_between_history_and_live() {
        let bus = EventBus::new(BusLimits::default());
        let err = |m: &str| Event::Error {
            session_id: "s".into(),
            message: m.into(),
        };
        bus.publish(err("one"));
        bus.publish(err("two"));
        let sub = bus.subscribe_from(Some("s"), Some(1));
        bus.publish(err("three"));
        let seqs: Vec<u64> = sub.backlog.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2]);
        assert!(matches!(bus.read(&sub.reader, sub.cursor, Some("s"), 10),
            Read::Events(e, 3) if e.len() == 1 && e[0].seq == 3));
        assert_eq!(bus.page("s", 0, 2).events.len(), 2);
    }
}
