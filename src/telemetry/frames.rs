//! Inbound frames: each is counted once, in its session's [`FrameCounters`] and in
//! `ccr_supervisor_frames_in_total{kind}`, and the unusual ones are logged (and an
//! unreadable one published). Emitted by the session router.
//!
//! The hot path: every frame of every session goes through [`FrameReceived::emit`],
//! which inlines to the two increments it always was (no allocation, no lock).

use std::sync::Arc;

use tracing::{debug, warn};

use super::Publish;
use crate::events::Event;
use crate::metrics::{FrameCounter, FrameMetrics};
use ccr_protocol::session::FrameCounters;
use ccr_protocol::FrameError;

/// The log target these lines always had (for `RUST_LOG` filters and JSON logs' `target`).
const TARGET: &str = "ccr_supervisor::session::router";

/// The bucket a frame is counted in: a field of [`FrameCounters`] and a `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `control_request` (prompts and others).
    ControlRequest,
    /// `control_cancel_request`.
    ControlCancelRequest,
    /// `control_response`.
    ControlResponse,
    /// An SDK message.
    Sdk,
    /// `keep_alive`.
    KeepAlive,
    /// Skipped: not text, not JSON, no type.
    Invalid,
    /// Over `[ccr] max_frame_bytes`.
    Oversized,
    /// Nested too deep to parse or to re-emit.
    TooDeep,
    /// A user message already forwarded (same `uuid`).
    Duplicate,
}

impl FrameKind {
    /// Every kind, in `FrameCounters` order.
    pub const ALL: [FrameKind; 9] = [
        FrameKind::ControlRequest,
        FrameKind::ControlCancelRequest,
        FrameKind::ControlResponse,
        FrameKind::Sdk,
        FrameKind::KeepAlive,
        FrameKind::Invalid,
        FrameKind::Oversized,
        FrameKind::TooDeep,
        FrameKind::Duplicate,
    ];

    /// Its `kind` label in `ccr_supervisor_frames_in_total`.
    pub fn label(self) -> &'static str {
        match self {
            FrameKind::ControlRequest => "control_request",
            FrameKind::ControlCancelRequest => "control_cancel_request",
            FrameKind::ControlResponse => "control_response",
            FrameKind::Sdk => "sdk",
            FrameKind::KeepAlive => "keep_alive",
            FrameKind::Invalid => "invalid",
            FrameKind::Oversized => "oversized",
            FrameKind::TooDeep => "too_deep",
            FrameKind::Duplicate => "duplicate",
        }
    }

    /// One more frame of this kind, in the session's counters and the metric.
    #[inline]
    fn count(self, counters: &mut FrameCounters, metrics: &FrameMetrics) {
        let (n, metric): (&mut u64, &FrameCounter) = match self {
            FrameKind::ControlRequest => (&mut counters.control_request, &metrics.control_request),
            FrameKind::ControlCancelRequest => (
                &mut counters.control_cancel_request,
                &metrics.control_cancel_request,
            ),
            FrameKind::ControlResponse => {
                (&mut counters.control_response, &metrics.control_response)
            }
            FrameKind::Sdk => (&mut counters.sdk, &metrics.sdk),
            FrameKind::KeepAlive => (&mut counters.keep_alive, &metrics.keep_alive),
            FrameKind::Invalid => (&mut counters.invalid, &metrics.invalid),
            FrameKind::Oversized => (&mut counters.oversized, &metrics.oversized),
            FrameKind::TooDeep => (&mut counters.too_deep, &metrics.too_deep),
            FrameKind::Duplicate => (&mut counters.duplicate, &metrics.duplicate),
        };
        *n += 1;
        metric.inc();
    }
}

/// A frame was read and is routed as what it is (SDK message, control request,
/// cancel, response, keep-alive): counted, not logged.
#[derive(Debug, Clone, Copy)]
pub struct FrameReceived(pub FrameKind);

impl FrameReceived {
    /// Count it.
    #[inline]
    pub fn emit(self, counters: &mut FrameCounters, metrics: &FrameMetrics) {
        self.0.count(counters, metrics);
    }
}

/// A frame that is not text (binary, not UTF-8, a fragment out of order) was skipped.
#[derive(Debug, Clone, Copy)]
pub struct FrameSkipped<'a> {
    /// Why.
    pub reason: &'a str,
    /// Its bytes.
    pub len: usize,
}

impl FrameSkipped<'_> {
    /// Count it as invalid and warn.
    pub fn emit(self, counters: &mut FrameCounters, metrics: &FrameMetrics) {
        FrameKind::Invalid.count(counters, metrics);
        let FrameSkipped { reason, len } = self;
        warn!(target: TARGET, reason, len, "skipping inbound frame");
    }
}

/// A text frame that is not a frame at all (not JSON, no type) was skipped.
#[derive(Debug, Clone, Copy)]
pub struct FrameUnparseable<'a> {
    /// What `classify` said.
    pub error: &'a FrameError,
    /// Its bytes.
    pub len: usize,
}

impl FrameUnparseable<'_> {
    /// Count it as invalid and warn.
    pub fn emit(self, counters: &mut FrameCounters, metrics: &FrameMetrics) {
        FrameKind::Invalid.count(counters, metrics);
        let FrameUnparseable { error, len } = self;
        warn!(target: TARGET, %error, len, "skipping inbound frame");
    }
}

/// A user message whose `uuid` was already forwarded (the session's echo) was dropped.
#[derive(Debug, Clone, Copy)]
pub struct EchoDropped;

impl EchoDropped {
    /// Count it as a duplicate.
    pub fn emit(self, counters: &mut FrameCounters, metrics: &FrameMetrics) {
        FrameKind::Duplicate.count(counters, metrics);
        debug!(target: TARGET, "echoed user message dropped (uuid seen already)");
    }
}

/// An SDK message nested deeper than operators are sent: a notice goes instead.
#[derive(Debug, Clone, Copy)]
pub struct SdkMessageTooDeep<'a> {
    /// How deep it nests.
    pub depth: usize,
    /// Its bytes.
    pub len: usize,
    /// Its `type`.
    pub msg_type: &'a str,
}

impl SdkMessageTooDeep<'_> {
    /// Count it as too deep (it was counted as an SDK message too) and warn.
    pub fn emit(self, counters: &mut FrameCounters, metrics: &FrameMetrics) {
        FrameKind::TooDeep.count(counters, metrics);
        let SdkMessageTooDeep {
            depth,
            len,
            msg_type,
        } = self;
        warn!(target: TARGET, depth, len, msg_type = %msg_type, "SDK message too deep to re-emit; forwarding a notice instead");
    }
}

/// A frame the supervisor cannot read (too large, too deep, malformed) that may carry a
/// request: answered by what it is, never silently.
#[derive(Debug, Clone, Copy)]
pub struct UnreadableFrame<'a> {
    /// The session.
    pub session_id: &'a Arc<str>,
    /// Counted as: `Oversized`, `TooDeep` or `Invalid`.
    pub kind: FrameKind,
    /// Its bytes.
    pub len: usize,
    /// Its request id (empty when it has none).
    pub request_id: &'a str,
    /// Its `type` (`untyped` when it has none).
    pub msg_type: &'a str,
    /// What was done with it.
    pub what: &'a str,
    /// Why it could not be read.
    pub why: &'a str,
}

impl UnreadableFrame<'_> {
    /// Count it, warn, and publish an error event for the session.
    pub fn emit(
        self,
        counters: &mut FrameCounters,
        metrics: &FrameMetrics,
        mut publish: impl Publish,
    ) {
        let UnreadableFrame {
            session_id,
            kind,
            len,
            request_id,
            msg_type,
            what,
            why,
        } = self;
        kind.count(counters, metrics);
        warn!(
            target: TARGET,
            len,
            request_id, msg_type, "unreadable inbound frame ({what}): {why}"
        );
        let named = if request_id.is_empty() {
            String::new()
        } else {
            format!(" {request_id}")
        };
        publish.publish(Event::Error {
            session_id: session_id.clone(),
            message: format!("unreadable {msg_type} frame{named} ({what}): {why}"),
        });
    }
}
