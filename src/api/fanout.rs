//! Wakes the event-stream readers of one API worker thread after a publish, a
//! slice at a time, yielding between slices.
//!
//! Readers that find nothing new wait for the next publish. Woken all at once
//! (one `Notify::notify_waiters` for every reader of the process), thousands of
//! them queued on the worker before anything else, and a request arriving on
//! the same thread (an answer, `/healthz`) waited behind every one of them:
//! with 10,000 readers an answer took hundreds of milliseconds. Here one pump
//! task per worker thread waits for publishes and wakes its thread's readers
//! [`SLICE`] at a time, so a request waits behind one slice at most.
//!
//! A reader arms the pump ([`Waiter::arm`]) before it looks for events, as it
//! armed its own wait before: the pump then waits for the next publish, and a
//! publish after the arming wakes every reader that goes on to wait. Once a
//! publish fired it, the pump stays unarmed until a reader arms it again, so
//! while every reader is busy (a flood) publishing wakes nobody.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::events::EventBus;

/// Readers woken before the pump yields to the rest of the thread.
pub const SLICE: usize = 64;

/// One reader's place in the queue of waiters.
#[derive(Default)]
struct Slot {
    waker: RefCell<Option<Waker>>,
    /// In the pump's list now (each reader is in it at most once).
    queued: Cell<bool>,
    /// Woken by the pump since it last waited.
    fired: Cell<bool>,
}

/// A wait for the bus's next publish.
type Published = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The pump and waiters of one bus on one thread.
struct Fanout {
    bus: EventBus,
    waiters: RefCell<Vec<Rc<Slot>>>,
    readers: Cell<usize>,
    pumping: Cell<bool>,
    /// The pump's wait for the next publish, once a reader armed it.
    armed: RefCell<Option<Published>>,
    /// Wakes the pump when a reader arms it.
    pump: RefCell<Option<Waker>>,
}

thread_local! {
    static FANOUTS: RefCell<Vec<Rc<Fanout>>> = const { RefCell::new(Vec::new()) };
}

/// A reader's handle: wait for the next publish; counts the reader while it lives.
pub struct Waiter {
    fan: Rc<Fanout>,
    slot: Rc<Slot>,
}

impl Waiter {
    /// Join the fan-out of `bus` on this thread (starting its pump if needed).
    /// Must run on an actix / tokio `LocalSet` thread (an API worker).
    pub fn join(bus: &EventBus) -> Self {
        let fan = FANOUTS.with(|all| {
            let mut all = all.borrow_mut();
            all.retain(|f| f.pumping.get() || f.readers.get() > 0);
            match all.iter().find(|f| f.bus.same(bus)) {
                Some(f) => f.clone(),
                None => {
                    let f = Rc::new(Fanout {
                        bus: bus.clone(),
                        waiters: RefCell::default(),
                        readers: Cell::new(0),
                        pumping: Cell::new(false),
                        armed: RefCell::new(None),
                        pump: RefCell::new(None),
                    });
                    all.push(f.clone());
                    f
                }
            }
        });
        fan.readers.set(fan.readers.get() + 1);
        if !fan.pumping.get() {
            fan.pumping.set(true);
            actix_rt::spawn(pump(fan.clone()));
        }
        Self {
            fan,
            slot: Rc::default(),
        }
    }

    /// Call before looking for events: a publish from now on wakes this reader
    /// once it waits with [`Waiter::next`].
    pub fn arm(&self) {
        let mut armed = self.fan.armed.borrow_mut();
        if armed.is_none() {
            *armed = Some(Box::pin(self.fan.bus.published()));
            if let Some(pump) = self.fan.pump.borrow_mut().take() {
                pump.wake();
            }
        }
    }

    /// Resolves once the pump has seen a publish after this wait began (or a
    /// spurious earlier one: callers look for events again either way).
    pub fn next(&self) -> impl Future<Output = ()> + '_ {
        Next { waiter: self }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.fan.readers.set(self.fan.readers.get() - 1);
    }
}

struct Next<'a> {
    waiter: &'a Waiter,
}

impl Future for Next<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Waiter { fan, slot } = self.waiter;
        if slot.fired.replace(false) {
            return Poll::Ready(());
        }
        *slot.waker.borrow_mut() = Some(cx.waker().clone());
        if !slot.queued.replace(true) {
            fan.waiters.borrow_mut().push(slot.clone());
        }
        Poll::Pending
    }
}

/// Resolves with `true` on shutdown, or `false` once the armed wait saw a
/// publish (disarming it); while unarmed, waits for a reader to arm it.
fn published_or_closed<'a>(
    fan: &'a Fanout,
    closed: &'a mut Published,
) -> impl Future<Output = bool> + 'a {
    let mut closed = closed.as_mut();
    std::future::poll_fn(move |cx| {
        if closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        let mut armed = fan.armed.borrow_mut();
        match armed.as_mut() {
            Some(wait) => match wait.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    *armed = None;
                    Poll::Ready(false)
                }
                Poll::Pending => Poll::Pending,
            },
            None => {
                *fan.pump.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
}

/// Wait for a publish (or shutdown), then wake the waiters a slice at a time.
/// Ends once no reader is left on this thread, or the bus is closed.
async fn pump(fan: Rc<Fanout>) {
    let mut closed: Published = Box::pin(fan.bus.closed());
    loop {
        let shutdown = published_or_closed(&fan, &mut closed).await;
        // Readers woken below arm the pump again before they look for events,
        // so a publish during this wake-up is not missed.
        let woken = std::mem::take(&mut *fan.waiters.borrow_mut());
        for slice in woken.chunks(SLICE) {
            for slot in slice {
                slot.queued.set(false);
                slot.fired.set(true);
                if let Some(w) = slot.waker.borrow_mut().take() {
                    w.wake();
                }
            }
            if !shutdown {
                tokio::task::yield_now().await;
            }
        }
        if shutdown || fan.readers.get() == 0 {
            fan.pumping.set(false);
            fan.armed.borrow_mut().take();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{BusLimits, Event};
    use futures_util::FutureExt;

    fn publish(bus: &EventBus) {
        bus.publish(Event::Error {
            session_id: "s".into(),
            message: "m".into(),
        });
    }

    #[actix_rt::test]
    async fn waiters_wake_after_a_publish_in_slices_and_the_pump_stops_without_readers() {
        let bus = EventBus::new(BusLimits::default());
        let readers: Vec<Waiter> = (0..3 * SLICE).map(|_| Waiter::join(&bus)).collect();
        let fan = readers[0].fan.clone();
        assert!(fan.pumping.get());
        assert!(fan.armed.borrow().is_none(), "nobody armed it yet");
        readers.iter().for_each(Waiter::arm);
        let mut waits: Vec<_> = readers.iter().map(|r| Box::pin(r.next())).collect();
        for w in &mut waits {
            assert!(w.as_mut().now_or_never().is_none(), "nothing published yet");
        }
        assert_eq!(fan.waiters.borrow().len(), 3 * SLICE);
        // Polling again does not queue a reader twice.
        assert!(waits[0].as_mut().now_or_never().is_none());
        assert_eq!(fan.waiters.borrow().len(), 3 * SLICE);

        publish(&bus);
        // The pump runs when this task yields; it wakes one slice, then yields itself.
        tokio::task::yield_now().await;
        waits.retain_mut(|w| w.as_mut().now_or_never().is_none());
        let ready = 3 * SLICE - waits.len();
        assert!(
            ready == SLICE,
            "{ready} woken before the pump yielded: not sliced"
        );
        for w in waits {
            tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("every waiter is woken");
        }
        assert!(
            fan.armed.borrow().is_none(),
            "fired, and nobody armed it again"
        );
        drop(readers);
        let last = Waiter::join(&bus);
        last.arm();
        drop(last);
        publish(&bus);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!fan.pumping.get(), "no reader left: the pump ended");
        // A new reader starts a new pump.
        let again = Waiter::join(&bus);
        assert!(again.fan.pumping.get());
        again.arm();
        let wait = again.next();
        publish(&bus);
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("woken");
    }

    #[actix_rt::test]
    async fn a_publish_before_the_first_wait_is_not_missed_and_close_wakes_everyone() {
        let bus = EventBus::new(BusLimits::default());
        let reader = Waiter::join(&bus);
        reader.arm();
        // Published after arming (the reader would look for events now) but before
        // the pump first ran, and before the reader waits.
        publish(&bus);
        let wait = reader.next();
        tokio::pin!(wait);
        assert!(wait.as_mut().now_or_never().is_none(), "registered");
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("the publish before the pump's first run wakes it");
        reader.arm();
        let wait = reader.next();
        bus.close();
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("shutdown wakes waiters");
    }
}
