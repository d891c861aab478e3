//! Observable session state and counters, as reported to the supervisor and the API.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Lifecycle state of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    /// First connection attempt (or an attempt after a restart) in progress.
    Connecting,
    /// The socket is open.
    Connected,
    /// Dropped; waiting `delay_ms` before attempt number `attempt`.
    Reconnecting {
        /// 1-based attempt number since the last good connection.
        attempt: u32,
        /// Delay before that attempt.
        delay_ms: u64,
    },
    /// The actor crashed and will be restarted after `delay_ms`.
    Restarting {
        /// How many restarts so far in this session's life.
        restart: u32,
        /// Delay before the restart.
        delay_ms: u64,
    },
    /// Closed on purpose by us (shutdown or removal).
    Disconnected,
    /// Will not be reconnected or restarted without operator action.
    Failed {
        /// Stable reason code: `unauthorized`, `session_not_found`, `restart_budget_exhausted`.
        reason: String,
        /// Human-readable detail.
        detail: String,
    },
}

impl SessionState {
    /// Short name of the state (`connected`, `failed`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            SessionState::Connecting => "connecting",
            SessionState::Connected => "connected",
            SessionState::Reconnecting { .. } => "reconnecting",
            SessionState::Restarting { .. } => "restarting",
            SessionState::Disconnected => "disconnected",
            SessionState::Failed { .. } => "failed",
        }
    }

    /// True for states that the supervisor must not restart out of.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            SessionState::Failed { .. } | SessionState::Disconnected
        )
    }
}

/// Inbound frames counted by bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FrameCounters {
    /// `control_request` frames (prompts and others).
    pub control_request: u64,
    /// `control_cancel_request` frames.
    pub control_cancel_request: u64,
    /// `control_response` frames.
    pub control_response: u64,
    /// SDK stream messages.
    pub sdk: u64,
    /// `keep_alive` frames.
    pub keep_alive: u64,
    /// Frames skipped: invalid JSON, no type, binary.
    pub invalid: u64,
    /// Frames over `[ccr] max_frame_bytes`; a prompt among them is answered with the limit deny.
    pub oversized: u64,
    /// Frames nested too deep to parse (a prompt among them is denied) or to re-emit (an SDK
    /// message is replaced by a notice).
    pub too_deep: u64,
    /// Repeats of a user message already forwarded (same `uuid`), dropped.
    pub duplicate: u64,
}

/// Per-session counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counters {
    /// Frames in, by kind.
    pub frames_in: FrameCounters,
    /// Distinct permission prompts received (replays not counted).
    pub prompts: u64,
    /// Permission answers written to the socket.
    pub decisions: u64,
    /// Reconnect attempts.
    pub reconnects: u64,
    /// Actor restarts after a crash (kept by the supervisor).
    pub restarts: u64,
}

impl Counters {
    /// Field-wise sum, used to carry counts across actor incarnations.
    pub fn add(&self, other: &Counters) -> Counters {
        let (a, b) = (&self.frames_in, &other.frames_in);
        Counters {
            frames_in: FrameCounters {
                control_request: a.control_request + b.control_request,
                control_cancel_request: a.control_cancel_request + b.control_cancel_request,
                control_response: a.control_response + b.control_response,
                sdk: a.sdk + b.sdk,
                keep_alive: a.keep_alive + b.keep_alive,
                invalid: a.invalid + b.invalid,
                oversized: a.oversized + b.oversized,
                too_deep: a.too_deep + b.too_deep,
                duplicate: a.duplicate + b.duplicate,
            },
            prompts: self.prompts + other.prompts,
            decisions: self.decisions + other.decisions,
            reconnects: self.reconnects + other.reconnects,
            restarts: self.restarts + other.restarts,
        }
    }
}

/// A point-in-time report of one session actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionStatus {
    /// Current state.
    #[serde(flatten)]
    pub state: SessionState,
    /// Last error seen (connect failure, close reason, ...), if any.
    pub last_error: Option<String>,
    /// When the current connection opened.
    #[serde(with = "crate::time::opt_rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub connected_since: Option<SystemTime>,
    /// Counters of this incarnation.
    pub counters: Counters,
    /// How the last `initialize` went: `listed`, `unlisted` (an older CLI), `failed`,
    /// `sent`, `not_sent`.
    pub initialize: InitializeState,
}

impl SessionStatus {
    /// The status of a session that has not reported yet.
    pub fn initial() -> Self {
        Self {
            state: SessionState::Connecting,
            last_error: None,
            connected_since: None,
            counters: Counters::default(),
            initialize: InitializeState::NotSent,
        }
    }
}

/// How the last `initialize` went (also shown in the session's status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InitializeState {
    /// Not sent (off, or not connected yet).
    NotSent,
    /// Sent, no reply yet.
    Sent,
    /// Answered with the pending lists.
    Listed,
    /// Answered without lists (an older CLI): replays alone tell what is pending.
    Unlisted,
    /// Answered with an error, or not within `[ccr] initialize_timeout`: replays alone.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_serializes_flat_with_details() {
        let s = SessionState::Reconnecting {
            attempt: 3,
            delay_ms: 2000,
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"state":"reconnecting","attempt":3,"delay_ms":2000})
        );
        assert_eq!(s.name(), "reconnecting");
        assert!(!s.is_final());
        assert!(SessionState::Failed {
            reason: "x".into(),
            detail: "y".into()
        }
        .is_final());
    }

    #[test]
    fn counters_add() {
        let mut a = Counters::default();
        a.frames_in.sdk = 2;
        a.prompts = 1;
        let mut b = Counters::default();
        b.frames_in.sdk = 3;
        b.restarts = 1;
        let c = a.add(&b);
        assert_eq!(c.frames_in.sdk, 5);
        assert_eq!(c.prompts, 1);
        assert_eq!(c.restarts, 1);
    }
}
