//! The internal event bus: typed events from sessions and the registry.
//!
//! Publishers never wait. The operator event stream (WebSocket/SSE) reads the
//! most recent events with a cursor of its own ([`EventBus::read`]); a reader
//! whose next event was already dropped from that bounded window has lagged
//! (and the stream ends with a `lagged` notice) instead of slowing anyone
//! down. The transcript API pages the per-session history; tests and other
//! in-process observers can also take a broadcast receiver.
//!
//! The hub's lock guards three pure structures, one file each: the per-session
//! [`History`] (sequence numbers, bounded retention), the readers' [`Recent`] window,
//! and the [`Envelope`] each event is published in, whose JSON is built by `encode`
//! (bytes only; this file does the locking and waking).

mod encode;
mod envelope;
mod history;
mod recent;
mod retained;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch, Notify};

pub(crate) use encode::digits;
pub use envelope::{Envelope, JsonParts};
pub use history::{Backlog, History, HistoryLimits};
pub use recent::{Read, Recent};

pub use ccr_protocol::event::Event;

/// Bounds of the bus: how far live readers may fall behind, and the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusLimits {
    /// How many events a live reader may fall behind before it is dropped as
    /// lagged (it may also fall behind by at most `history.total_bytes` of JSON).
    pub subscriber_buffer: usize,
    /// History bounds, per session and in total (for resume and transcripts).
    pub history: HistoryLimits,
    /// The events are numbered from `seq_base + 1` ([`random_seq_base`] in the service).
    pub seq_base: u64,
}

/// A base for a run's sequence numbers, at random in `[2^32, 2^52)`: two runs (instances
/// of a cluster, or one instance before and after a restart) practically never number
/// events alike, so a resume point one of them gave is known as foreign by the others
/// (`History::gave`), and every number stays exact in a JSON reader's 53-bit float.
pub fn random_seq_base() -> u64 {
    rand::random::<u64>() % ((1 << 52) - (1 << 32)) + (1 << 32)
}

impl Default for BusLimits {
    fn default() -> Self {
        Self {
            subscriber_buffer: 262_144,
            history: HistoryLimits {
                events: 1000,
                bytes: 1 << 20,
                total_bytes: crate::config::DEFAULT_HISTORY_TOTAL_BYTES,
            },
            seq_base: 0,
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
    /// The requested point was not this bus's: the backlog is everything retained.
    pub unknown_point: bool,
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
        let mut evicted = retained::Evicted::new();
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
                    history: History::numbered_after(limits.history, limits.seq_base),
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
        let prepared = envelope::Prepared::new(event, SystemTime::now());
        let mut evicted = retained::Evicted::new();
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
            unknown_point: b.unknown_point,
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
        let mut evicted = retained::Evicted::new();
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
mod tests;
