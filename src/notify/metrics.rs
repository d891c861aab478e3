//! The notifier's metrics, per sink (label `sink` = the sink's `name`, never its URL):
//! `notify_sent_total`, `notify_failed_total` (attempts), `notify_dropped_total{reason}`
//! and `notify_latency_seconds`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Unit;

use crate::metrics::Metrics;

/// Why a notification was dropped (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The sink's queue was full (`queue_events` or `queue_bytes`).
    Overflow,
    /// The receiver refused it (4xx, 3xx): not retried.
    Rejected,
    /// Every attempt failed (5xx, timeouts, connection errors).
    RetriesExhausted,
    /// The sink's thread had ended (shutting down).
    Closed,
}

impl DropReason {
    /// Every reason, each exported from the start (0 until it happens).
    pub const ALL: [DropReason; 4] = [
        DropReason::Overflow,
        DropReason::Rejected,
        DropReason::RetriesExhausted,
        DropReason::Closed,
    ];

    /// Its label value.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Overflow => "overflow",
            DropReason::Rejected => "rejected",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Closed => "closed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    sink: String,
    reason: &'static str,
}

/// The metric families of every sink, registered once per process start.
pub struct NotifyMetrics {
    sent: Family<SinkLabel, Counter>,
    failed: Family<SinkLabel, Counter>,
    dropped: Family<DropLabels, Counter>,
    latency: Family<SinkLabel, Histogram, fn() -> Histogram>,
}

/// A latency histogram: buckets from 1 ms, doubling, 20 (to about 9 minutes).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

impl NotifyMetrics {
    /// Create the families and register them with `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self {
            sent: Family::default(),
            failed: Family::default(),
            dropped: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        metrics.register_more(|r| {
            r.register("notify_sent", "Notifications delivered, per sink", m.sent.clone());
            r.register(
                "notify_failed",
                "Notification attempts that failed (each retry counts), per sink",
                m.failed.clone(),
            );
            r.register(
                "notify_dropped",
                "Notifications given up, per sink and reason",
                m.dropped.clone(),
            );
            r.register_with_unit(
                "notify_latency",
                "From a notification's happening to its delivery (queue and retries included), per sink",
                Unit::Seconds,
                m.latency.clone(),
            );
        });
        m
    }

    /// The handles of sink `name`, every series created (at 0).
    pub fn sink(&self, name: &str) -> SinkMetrics {
        let label = SinkLabel {
            sink: name.to_owned(),
        };
        let dropped = DropReason::ALL.map(|reason| {
            self.dropped
                .get_or_create(&DropLabels {
                    sink: name.to_owned(),
                    reason: reason.name(),
                })
                .clone()
        });
        SinkMetrics {
            sent: self.sent.get_or_create(&label).clone(),
            failed: self.failed.get_or_create(&label).clone(),
            dropped,
            latency: self.latency.get_or_create(&label).clone(),
        }
    }
}

/// One sink's metric handles (cheap atomic updates).
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    /// Delivered.
    pub sent: Counter,
    /// Failed attempts.
    pub failed: Counter,
    dropped: [Counter; 4],
    /// Happening to delivery, seconds.
    pub latency: Histogram,
}

impl SinkMetrics {
    /// Count one notification dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) {
        self.dropped[reason as usize].inc();
    }

    /// How many were dropped for `reason`.
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].get()
    }
}
