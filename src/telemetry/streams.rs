//! The operator event stream: a reader dropped for being too slow. Emitted by the
//! stream's reader (`GET /v1/events`, SSE or WebSocket).

use prometheus_client::metrics::counter::Counter;
use tracing::info;

/// The log target of the event stream's lines.
const STREAM: &str = "ccr_supervisor::api::stream";

/// An event-stream reader fell out of the bus's window of recent events: it got a final
/// `lagged` notice and its stream ends (it may resume after `resume_after`).
#[derive(Debug, Clone, Copy)]
pub struct StreamReaderDropped {
    /// Events it missed.
    pub missed: u64,
    /// The last sequence number it was sent.
    pub resume_after: u64,
}

impl StreamReaderDropped {
    /// Count it in `ccr_supervisor_event_stream_drops` (`drops`, the reader's handle on
    /// it) and log it.
    pub fn emit(self, drops: &Counter) {
        drops.inc();
        let StreamReaderDropped {
            missed,
            resume_after,
        } = self;
        info!(
            target: STREAM,
            missed, resume_after, "event-stream reader too slow; dropped with a lagged notice"
        );
    }
}
