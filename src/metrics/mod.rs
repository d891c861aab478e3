//! Prometheus / OpenMetrics metrics (prometheus-client). Counters are updated
//! where things happen (cheap atomic increments on pre-created handles);
//! gauges that describe current state are filled in at scrape time, and the
//! `process_*` families are read from `/proc` then ([`process`]). Rendered as
//! OpenMetrics or as the Prometheus text format ([`text`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

pub mod process;
pub mod text;

pub use text::Format;

/// Label set with one `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

/// Label set of the session-state gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

/// Label set of decisions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    outcome: String,
    source: String,
}

/// Label set of `build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// Label set of the decision latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// The git commit the binary was built from (`CCR_GIT_COMMIT` at build time), or `unknown`.
pub const GIT_COMMIT: &str = match option_env!("CCR_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// `decision_latency_seconds` by `source`, each with buckets that fit it: a rule or a
/// limit answers in microseconds, a person or the ask deadline in seconds to hours.
///
/// A hand-made family: prometheus-client's `Family` builds every series alike.
#[derive(Debug, Clone)]
pub struct DecisionLatency {
    /// One histogram per label value, in [`DecisionLatency::SOURCES`] order.
    series: [(&'static str, Histogram); 4],
}

/// Buckets of automatic answers (`rule`, `limit`): 25 µs doubling to about 13 s.
fn automatic_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_025, 2.0, 20)
}

/// Buckets of answers by a person or the deadline (`operator`, `timeout`): 5 ms (an
/// answering script) to 8 h.
const HUMAN_BUCKETS: [f64; 19] = [
    0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
    3600.0, 7200.0, 14400.0, 28800.0,
];

impl Default for DecisionLatency {
    fn default() -> Self {
        let human = || Histogram::new(HUMAN_BUCKETS);
        DecisionLatency {
            series: [
                ("rule", Histogram::new(automatic_buckets())),
                ("limit", Histogram::new(automatic_buckets())),
                ("operator", human()),
                ("timeout", human()),
            ],
        }
    }
}

impl DecisionLatency {
    /// The label values, every one exported from the start.
    pub const SOURCES: [&'static str; 4] = ["rule", "limit", "operator", "timeout"];

    /// Observe one answer of `source` (`rule`, `limit`, `operator`, `timeout`; anything
    /// else counts as `operator`).
    pub fn observe(&self, source: &str, seconds: f64) {
        let index = Self::SOURCES.iter().position(|s| *s == source).unwrap_or(2);
        self.series[index].1.observe(seconds);
    }
}

impl EncodeMetric for DecisionLatency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (source, h) in &self.series {
            h.encode(encoder.encode_family(&SourceLabel { source })?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Shards of a [`Sharded`] counter: more than the threads that count frames.
const SHARDS: usize = 8;

/// One shard on its own cache line (two, for the adjacent-line prefetcher).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// A counter's value split over per-thread shards and summed when read, for
/// counters that every session arbiter bumps once per frame: with one shared
/// atomic, arbiters on different cores take turns owning its cache line (two
/// threads counting flat out on the 2-vCPU bench box: ~9.5 ns per increment
/// shared, ~2 ns sharded). The default single arbiter of a 2-core box gains nothing.
#[derive(Debug, Default)]
pub struct Sharded([Shard; SHARDS]);

impl Sharded {
    fn mine(&self) -> &AtomicU64 {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
        }
        &self.0[SHARD.with(|s| *s)].0
    }
}

impl prometheus_client::metrics::counter::Atomic<u64> for Sharded {
    fn inc(&self) -> u64 {
        self.inc_by(1)
    }

    /// Returns this thread's shard's previous value, not the counter's.
    fn inc_by(&self, v: u64) -> u64 {
        self.mine().fetch_add(v, Ordering::Relaxed)
    }

    fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// A counter bumped on every inbound frame.
pub type FrameCounter = Counter<u64, Sharded>;

/// Inbound frame counters by bucket, created once so the hot path never allocates.
#[derive(Clone, Debug)]
pub struct FrameMetrics {
    /// `control_request`.
    pub control_request: FrameCounter,
    /// `control_cancel_request`.
    pub control_cancel_request: FrameCounter,
    /// `control_response`.
    pub control_response: FrameCounter,
    /// SDK messages.
    pub sdk: FrameCounter,
    /// `keep_alive`.
    pub keep_alive: FrameCounter,
    /// Skipped frames.
    pub invalid: FrameCounter,
    /// Frames over `[ccr] max_frame_bytes` (prompts among them answered with the limit deny).
    pub oversized: FrameCounter,
    /// Frames nested too deep to parse or to re-emit (prompts among them answered with a deny).
    pub too_deep: FrameCounter,
    /// Repeats of a user message already forwarded (same `uuid`), dropped.
    pub duplicate: FrameCounter,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// The unprefixed `process_*` families.
    process: Registry,
    /// Frames in by kind.
    pub frames: FrameMetrics,
    /// Reconnect attempts scheduled.
    pub reconnects: Counter,
    /// Connections dropped by the response watchdog (silence after a request).
    pub watchdog_reconnects: Counter,
    /// Session actor restarts after a crash.
    pub restarts: Counter,
    decisions: Family<DecisionLabels, Counter>,
    /// Seconds from a prompt's arrival to its answer being written, by source.
    pub decision_latency: DecisionLatency,
    /// Event-stream readers dropped for being too slow.
    pub stream_drops: Counter,
    sessions: Family<State, Gauge>,
    prompts_pending: Gauge,
    oldest_prompt_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    stream_subscribers: Gauge,
    ledger_write_errors: Counter,
    resolved_prompts: Gauge,
    resolved_prompts_bytes: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Session states, all exported every scrape (0 when none).
pub const STATES: [&str; 6] = [
    "connecting",
    "connected",
    "reconnecting",
    "restarting",
    "disconnected",
    "failed",
];

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Arc<Self> {
        let mut r = Registry::with_prefix("ccr_supervisor");
        let frames_family = Family::<Kind, FrameCounter>::default();
        r.register("frames_in", "Inbound frames by kind", frames_family.clone());
        let kind = |k: &str| {
            frames_family
                .get_or_create(&Kind { kind: k.to_owned() })
                .clone()
        };
        let frames = FrameMetrics {
            control_request: kind("control_request"),
            control_cancel_request: kind("control_cancel_request"),
            control_response: kind("control_response"),
            sdk: kind("sdk"),
            keep_alive: kind("keep_alive"),
            invalid: kind("invalid"),
            oversized: kind("oversized"),
            too_deep: kind("too_deep"),
            duplicate: kind("duplicate"),
        };
        let m = Metrics {
            frames,
            reconnects: Counter::default(),
            watchdog_reconnects: Counter::default(),
            restarts: Counter::default(),
            decisions: Family::default(),
            decision_latency: DecisionLatency::default(),
            stream_drops: Counter::default(),
            sessions: Family::default(),
            prompts_pending: Gauge::default(),
            oldest_prompt_age: Gauge::default(),
            stream_subscribers: Gauge::default(),
            ledger_write_errors: Counter::default(),
            resolved_prompts: Gauge::default(),
            resolved_prompts_bytes: Gauge::default(),
            registry: Mutex::new(Registry::default()),
            process: {
                let mut p = Registry::default();
                p.register_collector(Box::new(process::ProcessCollector));
                p
            },
        };
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: GIT_COMMIT,
            })
            .set(1);
        r.register(
            "build_info",
            "The running build: version and git commit (always 1)",
            build,
        );
        r.register("reconnects", "Reconnect attempts", m.reconnects.clone());
        r.register(
            "restarts",
            "Session actor restarts after a crash",
            m.restarts.clone(),
        );
        r.register(
            "decisions",
            "Answers by outcome and source (operator, rule, timeout, session)",
            m.decisions.clone(),
        );
        r.register_with_unit(
            "decision_latency",
            "From prompt received to answer written, by who answered",
            Unit::Seconds,
            m.decision_latency.clone(),
        );
        r.register(
            "event_stream_drops",
            "Event-stream readers dropped as lagged",
            m.stream_drops.clone(),
        );
        r.register("sessions", "Sessions by state", m.sessions.clone());
        r.register(
            "prompts_pending",
            "Prompts waiting for an answer",
            m.prompts_pending.clone(),
        );
        r.register_with_unit(
            "prompt_oldest_age",
            "Age of the oldest pending prompt",
            Unit::Seconds,
            m.oldest_prompt_age.clone(),
        );
        r.register(
            "event_stream_subscribers",
            "Live event-stream readers",
            m.stream_subscribers.clone(),
        );
        r.register(
            "ledger_write_errors",
            "Failed ledger writes since start",
            m.ledger_write_errors.clone(),
        );
        r.register(
            "watchdog_reconnects",
            "Connections dropped because nothing arrived within [ccr] response_watchdog after a request",
            m.watchdog_reconnects.clone(),
        );
        r.register(
            "resolved_prompts",
            "Finished prompts remembered to match replays (bounded by [supervisor] resolved_prompts)",
            m.resolved_prompts.clone(),
        );
        r.register_with_unit(
            "resolved_prompts",
            "Bytes charged for remembered finished prompts (bounded by [supervisor] resolved_prompts_bytes)",
            Unit::Bytes,
            m.resolved_prompts_bytes.clone(),
        );
        *m.registry.lock() = r;
        Arc::new(m)
    }

    /// Size of the registry's memory of finished prompts.
    pub fn set_resolved(&self, records: usize, bytes: usize) {
        self.resolved_prompts.set(records as i64);
        self.resolved_prompts_bytes.set(bytes as i64);
    }

    /// Register the decision ledger's latency histograms (only when the ledger is on).
    pub fn register_ledger(&self, h: LedgerHistograms) {
        let mut r = self.registry.lock();
        r.register_with_unit(
            "ledger_queue_wait",
            "Time the oldest job of each ledger applier batch waited for it",
            Unit::Seconds,
            h.queue_wait,
        );
        r.register_with_unit(
            "ledger_commit",
            "Time each ledger write took to become durable (its journal append)",
            Unit::Seconds,
            h.commit,
        );
        r.register_with_unit(
            "ledger_apply",
            "Time the ledger applier spent on each SQLite transaction",
            Unit::Seconds,
            h.apply,
        );
    }

    /// Register the cluster's lease figures (only when clustering is on): the lease loop
    /// updates them, a scrape reads them.
    pub fn register_cluster(&self, stats: &ClusterStats) {
        let mut r = self.registry.lock();
        r.register(
            "cluster_leases_held",
            "Session leases this instance holds",
            stats.leases_held.clone(),
        );
        r.register(
            "cluster_leases_lapsed",
            "Leases held whose renewal is overdue (the database unreachable): their sessions stay connected but send nothing, for up to [cluster] outage_grace",
            stats.leases_lapsed.clone(),
        );
        r.register(
            "cluster_takeovers",
            "Sessions claimed here whose lease another instance held before",
            stats.takeovers.clone(),
        );
        r.register(
            "cluster_lease_renewals_failed",
            "Lease renewal rounds that failed (the database unreachable or refusing)",
            stats.renewals_failed.clone(),
        );
        r.register(
            "cluster_members",
            "Live cluster members, this one included, as the last lease round read them",
            stats.members.clone(),
        );
        r.register(
            "cluster_listen_reconnects",
            "Times the decision notifications' LISTEN connection was re-established",
            stats.listen_reconnects.clone(),
        );
    }

    /// Register metrics a module keeps itself (the notifier's per-sink families).
    pub fn register_more(&self, register: impl FnOnce(&mut Registry)) {
        register(&mut self.registry.lock());
    }

    /// Count one answer.
    pub fn decision(&self, outcome: &str, source: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                outcome: outcome.to_owned(),
                source: source.to_owned(),
            })
            .inc();
    }

    /// Fill the state gauges and render every family in `format`.
    pub fn render(&self, snapshot: &Snapshot, format: Format) -> String {
        for state in STATES {
            let n = snapshot
                .sessions_by_state
                .iter()
                .filter(|s| s.as_str() == state)
                .count();
            self.sessions
                .get_or_create(&State {
                    state: state.to_owned(),
                })
                .set(n as i64);
        }
        self.prompts_pending.set(snapshot.prompts_pending as i64);
        self.oldest_prompt_age.set(snapshot.oldest_prompt_age_secs);
        self.stream_subscribers
            .set(snapshot.stream_subscribers as i64);
        // The ledger counts its failures itself: the counter follows it (never down).
        self.ledger_write_errors
            .inner()
            .fetch_max(snapshot.ledger_write_errors, Ordering::Relaxed);
        let mut out = String::new();
        // Encoding into a String cannot fail.
        {
            use prometheus_client::encoding::text::{encode_eof, encode_registry};
            let _ = encode_registry(&mut out, &self.registry.lock());
            let _ = encode_registry(&mut out, &self.process);
            let _ = encode_eof(&mut out);
        }
        match format {
            Format::OpenMetrics => out,
            Format::Text => text::openmetrics_to_text(&out),
        }
    }
}

/// The ledger's latency histograms (shared handles; the ledger observes them). Defined
/// here, not in the ledger, so that metrics depend on nothing of the service's.
#[derive(Debug, Clone)]
pub struct LedgerHistograms {
    /// Seconds the oldest job of each applier batch waited for it.
    pub queue_wait: Histogram,
    /// Seconds each write took to become durable (its journal append).
    pub commit: Histogram,
    /// Seconds the applier spent on each SQLite transaction.
    pub apply: Histogram,
}

/// The cluster's lease figures (shared handles; the lease loop updates them). Defined
/// here, not in the cluster, so that metrics depend on nothing of the service's.
#[derive(Debug, Clone, Default)]
pub struct ClusterStats {
    /// Leases held now.
    pub leases_held: Gauge,
    /// Of those, leases whose local deadline passed without a renewal: kept, silent, for
    /// up to `[cluster] outage_grace` while the database cannot be reached.
    pub leases_lapsed: Gauge,
    /// Claims of a session whose lease another instance held before.
    pub takeovers: Counter,
    /// Renewal rounds that failed.
    pub renewals_failed: Counter,
    /// Live members (this one included) in the last snapshot.
    pub members: Gauge,
    /// LISTEN re-established after its connection dropped: notifications may have been
    /// missed meanwhile, so whoever relies on them re-checks when this grows.
    pub listen_reconnects: Counter,
}

/// Current-state figures gathered by the `/metrics` handler.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// One state name per session.
    pub sessions_by_state: Vec<String>,
    /// Pending prompts.
    pub prompts_pending: usize,
    /// Age of the oldest pending prompt, seconds.
    pub oldest_prompt_age_secs: f64,
    /// Live event-stream readers.
    pub stream_subscribers: usize,
    /// Failed ledger writes.
    pub ledger_write_errors: u64,
}

#[cfg(test)]
mod tests;
