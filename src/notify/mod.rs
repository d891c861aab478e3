//! Notifications: tell webhooks and Slack about prompts left to a human, overdue and
//! expired prompts, and failed sessions (`[[notify]]`, docs/notify.md).
//!
//! Pure parts are plain functions: which sink wants a notice ([`select`]), what it is
//! ([`notice`]), the bytes sent ([`payload`]), the signature ([`sign`]), when to retry
//! ([`retry`]). The [`Notifier`] handle is what telemetry calls: it picks the sinks and
//! pushes into each one's bounded [`queue`] without ever blocking; each sink's own thread
//! ([`worker`]) does the network. So a dead or hanging receiver costs a session or the
//! registry nothing but a refused push, counted as dropped.

pub mod metrics;
pub mod notice;
pub mod payload;
pub mod queue;
pub mod resolve;
pub mod retry;
pub mod select;
pub mod sign;
pub mod worker;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

pub use metrics::{DropReason, NotifyMetrics, SinkMetrics};
pub use notice::Notice;
pub use resolve::{resolve, resolve_with, ResolvedSink};

use crate::config::NotifySinkConfig;
use crate::limits::repeat::session_warning;
use queue::{Job, QueueTx, Refused};

/// The base of console links (no trailing `/`): `[console] public_url`, or else the
/// operator API's address, known only once it is bound (so it is set after the sinks start).
#[derive(Debug, Clone, Default)]
pub struct LinkBase(Arc<std::sync::OnceLock<String>>);

impl LinkBase {
    /// A base fixed now.
    pub fn fixed(base: impl Into<String>) -> Self {
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(base.into());
        Self(Arc::new(cell))
    }

    /// Set it, unless it is already set.
    pub fn set(&self, base: impl Into<String>) {
        let _ = self.0.set(base.into());
    }

    /// The base (empty until set).
    pub fn get(&self) -> &str {
        self.0.get().map_or("", String::as_str)
    }
}

/// One sink as the notifier sees it: what it wants, where to push, what to count.
struct Sink {
    config: NotifySinkConfig,
    /// The URL and secret it was started with: a reload restarts it when they change.
    resolved: ResolvedSink,
    queue: QueueTx,
    metrics: SinkMetrics,
}

impl Sink {
    /// Whether `next` is this sink unchanged (see [`Settings`]).
    fn same(&self, next: &ResolvedSink) -> bool {
        Settings(&self.resolved) == Settings(next)
    }
}

/// A sink as a reload compares it: its entry's settings wherever the entry sits in the
/// file ([`NotifySinkConfig::same_settings`]), its URL and its secret.
struct Settings<'a>(&'a ResolvedSink);

impl PartialEq for Settings<'_> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0, other.0);
        a.config.same_settings(&b.config) && a.url == b.url && a.secret == b.secret
    }
}

/// What every clone of a [`Notifier`] shares: the sinks (replaced whole by a reload), the
/// link base, and the metric families once a sink exists.
#[derive(Default)]
struct Shared {
    sinks: parking_lot::RwLock<Arc<[Sink]>>,
    link_base: LinkBase,
    families: std::sync::OnceLock<NotifyMetrics>,
}

/// The handle telemetry offers notices to; cheap to clone, `Send + Sync`. Without sinks it
/// does nothing (and builds nothing). Clones share the sinks, so a reload that replaces
/// them ([`Notifier::install`]) reaches every holder.
#[derive(Clone, Default)]
pub struct Notifier {
    shared: Arc<Shared>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sinks = self.shared.sinks.read().clone();
        let names: Vec<&str> = sinks.iter().map(|s| s.config.name.as_str()).collect();
        f.debug_struct("Notifier").field("sinks", &names).finish()
    }
}

/// Sinks started for a reload but not yet in use ([`Notifier::prepare`]); dropping them
/// instead of installing stops the threads of the new ones.
pub struct PreparedSinks {
    sinks: Vec<Sink>,
    /// How they differ from the running sinks, by name.
    pub changes: ccr_protocol::reply::NameChanges,
}

impl Notifier {
    /// A notifier with no sink.
    pub fn none() -> Self {
        Self::default()
    }

    /// Start one delivery thread per sink; links point under `link_base` (see [`LinkBase`]).
    pub fn start(
        sinks: Vec<ResolvedSink>,
        link_base: LinkBase,
        metrics: &crate::metrics::Metrics,
    ) -> std::io::Result<Self> {
        let notifier = Self {
            shared: Arc::new(Shared {
                link_base,
                ..Shared::default()
            }),
        };
        let prepared = notifier.prepare(sinks, metrics)?;
        notifier.install(prepared);
        Ok(notifier)
    }

    /// Get `next` ready to replace the running sinks without touching them: an unchanged
    /// sink (same settings, URL and secret, wherever its entry sits) keeps its queue and
    /// thread; a new or changed one gets a thread of its own now, idle until
    /// [`Notifier::install`].
    pub fn prepare(
        &self,
        next: Vec<ResolvedSink>,
        metrics: &crate::metrics::Metrics,
    ) -> std::io::Result<PreparedSinks> {
        let running = self.shared.sinks.read().clone();
        let changes = crate::util::name_changes(
            running
                .iter()
                .map(|s| (s.config.name.as_str(), Settings(&s.resolved))),
            next.iter().map(|n| (n.config.name.as_str(), Settings(n))),
        );
        let mut out = Vec::with_capacity(next.len());
        for sink in next {
            if let Some(kept) = running.iter().find(|s| s.same(&sink)) {
                // Its new `key` (the entry's place in the file) is all that may differ.
                out.push(Sink {
                    config: sink.config.clone(),
                    resolved: sink,
                    queue: kept.queue.clone(),
                    metrics: kept.metrics.clone(),
                });
                continue;
            }
            let families = self
                .shared
                .families
                .get_or_init(|| NotifyMetrics::register(metrics));
            let d = &sink.config.delivery;
            let (tx, rx) = queue::queue(d.queue_events, d.queue_bytes);
            let sink_metrics = families.sink(&sink.config.name);
            let config = sink.config.clone();
            let resolved = sink.clone();
            let w = worker::Worker {
                post: worker::Http::new(&sink),
                sink,
                link_base: self.shared.link_base.clone(),
                metrics: sink_metrics.clone(),
            };
            std::thread::Builder::new()
                .name(format!("notify-{}", config.name))
                .spawn(move || w.run(rx))?;
            out.push(Sink {
                config,
                resolved,
                queue: tx,
                metrics: sink_metrics,
            });
        }
        Ok(PreparedSinks {
            sinks: out,
            changes,
        })
    }

    /// Use `prepared` from now on. A removed or replaced sink's thread delivers what it
    /// has queued already, then ends.
    pub fn install(&self, prepared: PreparedSinks) {
        *self.shared.sinks.write() = prepared.sinks.into();
    }

    /// Whether any sink is configured.
    pub fn is_active(&self) -> bool {
        !self.shared.sinks.read().is_empty()
    }

    /// Offer a notice to every sink that wants it. `build` runs only when a sink is
    /// configured; pushing never blocks: a full queue drops the notice (counted).
    pub fn offer(&self, build: impl FnOnce() -> Notice) {
        let sinks = self.shared.sinks.read().clone();
        if sinks.is_empty() {
            return;
        }
        let notice = Arc::new(build());
        let bytes = notice.approx_bytes();
        for sink in sinks.iter() {
            if !select::wants(&sink.config, &notice) {
                continue;
            }
            let job = Job {
                notice: notice.clone(),
                queued_at: Instant::now(),
                bytes,
            };
            if let Err(refused) = sink.queue.try_push(job) {
                let reason = match refused {
                    Refused::Full => DropReason::Overflow,
                    Refused::Closed => DropReason::Closed,
                };
                sink.metrics.dropped(reason);
                // Rate-limited: a flood of prompts against a stuck receiver logs a few lines.
                let why = format!("sink {}: {}", sink.config.name, reason.name());
                session_warning("notification dropped", &why);
            }
        }
    }
}

#[cfg(test)]
mod tests;
