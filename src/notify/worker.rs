//! The delivery thread of one sink (the thin shell): pop a notice, build its body, post it,
//! and retry, give up or count it as [`super::retry`] decides.
//!
//! Why a blocking client on a thread of its own per sink: delivery must never slow a session
//! or the registry, and an actix arbiter shared with them is exactly where a slow receiver
//! could. A dedicated thread owns its HTTP client (no `!Send` awc client to keep per arbiter,
//! no pool limit shared with session sockets), backs off with a plain sleep, and a hanging
//! receiver stalls only its own sink, bounded by `timeout` per attempt. `ureq` (3, already
//! the workspace's client for `ctl`) keeps that to a few lines. Sinks are few, so are threads.

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use tracing::{debug, warn};

use super::metrics::{DropReason, SinkMetrics};
use super::payload;
use super::queue::{Job, QueueRx};
use super::resolve::ResolvedSink;
use super::retry::{self, Attempt, Transport, Verdict};
use super::sign::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::config::SinkKind;

/// Sends one request; the real one is [`Http`], tests may fake it.
pub trait Post {
    /// POST `body` with `headers` to the sink's URL, within the sink's `timeout`.
    fn post(&mut self, headers: &[(&str, String)], body: &[u8]) -> Attempt;
}

/// [`Post`] over HTTP with `ureq`.
pub struct Http {
    agent: ureq::Agent,
    url: crate::config::SinkUrl,
}

impl Http {
    /// A client for `sink` (no redirects followed: a 3xx is a misconfigured URL).
    pub fn new(sink: &ResolvedSink) -> Self {
        let timeout = sink.config.delivery.timeout;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(concat!("ccr-supervisor/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            agent,
            url: sink.url.clone(),
        }
    }
}

impl Post for Http {
    fn post(&mut self, headers: &[(&str, String)], body: &[u8]) -> Attempt {
        let mut req = self.agent.post(self.url.expose());
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        match req.send(body) {
            Ok(mut resp) => {
                // Read (a little of) the answer so the connection can be reused.
                let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
                Attempt::Status(resp.status().as_u16())
            }
            Err(e) => Attempt::Transport(match e {
                ureq::Error::Timeout(_) => Transport::Timeout,
                ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => Transport::Connect,
                ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Transport::Connect
                }
                ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                    Transport::Timeout
                }
                _ => Transport::Other,
            }),
        }
    }
}

/// Everything a sink's thread needs besides its queue.
pub struct Worker<P> {
    /// The sink (name, kind, secret, delivery settings).
    pub sink: ResolvedSink,
    /// Base of console links.
    pub link_base: super::LinkBase,
    /// Its metric handles.
    pub metrics: SinkMetrics,
    /// How it posts.
    pub post: P,
}

impl<P: Post> Worker<P> {
    /// Deliver every job until the queue's pushing ends are all gone.
    pub fn run(mut self, queue: QueueRx) {
        crate::util::background_thread_priority();
        while let Some(job) = queue.pop() {
            self.deliver(job);
        }
        debug!(sink = %self.sink.config.name, "notification sink stopped");
    }

    /// Try one job until it is delivered, refused, or out of attempts.
    pub fn deliver(&mut self, job: Job) {
        let name = &self.sink.config.name;
        let kind = self.sink.config.kind;
        let delivery = &self.sink.config.delivery;
        let body = payload::body(kind, &job.notice, self.link_base.get());
        let id = uuid::Uuid::new_v4().to_string();
        let event = job.notice.event.name();
        for attempt in 1..=delivery.max_attempts {
            let mut headers = vec![
                ("Content-Type", "application/json".to_owned()),
                ("X-Ccr-Event", event.to_owned()),
                ("X-Ccr-Delivery", id.clone()),
            ];
            if let (SinkKind::Webhook, Some(secret)) = (kind, &self.sink.secret) {
                // Signed at each attempt: a retry carries a fresh timestamp.
                let ts = unix_now();
                headers.push((TIMESTAMP_HEADER, ts.to_string()));
                let sig = sign::signature(secret.expose().as_bytes(), ts, &body);
                headers.push((SIGNATURE_HEADER, sig));
            }
            let result = self.post.post(&headers, &body);
            match retry::classify(result) {
                Verdict::Delivered => {
                    self.metrics.sent.inc();
                    self.metrics
                        .latency
                        .observe(job.queued_at.elapsed().as_secs_f64());
                    debug!(sink = %name, event, attempt, "notification delivered");
                    return;
                }
                Verdict::GiveUp => {
                    self.metrics.failed.inc();
                    self.metrics.dropped(DropReason::Rejected);
                    warn!(sink = %name, event, attempt, outcome = %describe(result), "notification refused by its receiver; not retried");
                    return;
                }
                Verdict::Retry => {
                    self.metrics.failed.inc();
                    if attempt == delivery.max_attempts {
                        break;
                    }
                    let pause = retry::backoff(delivery, attempt, rand::thread_rng().gen());
                    debug!(sink = %name, event, attempt, outcome = %describe(result), ?pause, "notification attempt failed; retrying");
                    thread::sleep(pause);
                }
            }
        }
        self.metrics.dropped(DropReason::RetriesExhausted);
        warn!(sink = %name, event, attempts = delivery.max_attempts, "notification dropped: every attempt failed");
    }
}

/// An attempt's result for a log line: the status or the kind of failure, never the URL.
fn describe(a: Attempt) -> String {
    match a {
        Attempt::Status(s) => format!("HTTP {s}"),
        Attempt::Transport(t) => t.name().to_owned(),
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}
