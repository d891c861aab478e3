//! The internal event bus: typed events from sessions and the registry.
//!
//! A bounded `tokio::sync::broadcast` channel: publishers never wait, and a
//! subscriber that falls behind gets `Lagged` instead of slowing anyone down.
//! The operator event stream (WebSocket/SSE) and tests subscribe here.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::protocol::api::Delivery;
use crate::session::SessionState;

/// One notable thing that happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A session changed state.
    SessionState {
        /// Session id.
        session_id: Arc<str>,
        /// New state.
        #[serde(flatten)]
        state: SessionState,
        /// Last error, if any.
        last_error: Option<String>,
    },
    /// An SDK message arrived (raw JSON text, forwarded unchanged).
    SdkMessage {
        /// Session id.
        session_id: Arc<str>,
        /// Its `type`.
        msg_type: String,
        /// The frame as received.
        #[serde(serialize_with = "raw_json")]
        message: Arc<str>,
    },
    /// A new permission prompt is pending.
    PermissionRequested {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
        /// Tool name.
        tool_name: String,
        /// Tool-use id.
        tool_use_id: Option<String>,
        /// The raw request object.
        request: Value,
    },
    /// A prompt was answered.
    PermissionAnswered {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
        /// `allow` or `deny`.
        behavior: &'static str,
        /// Who decided.
        decided_by: String,
        /// Sent now or queued for reconnect.
        delivery: Delivery,
    },
    /// A queued answer was written after the session reconnected.
    PermissionDelivered {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
    },
    /// The session withdrew a prompt.
    PermissionCancelled {
        /// Session id.
        session_id: Arc<str>,
        /// Prompt id.
        request_id: String,
        /// Tool-use id, if known.
        tool_use_id: Option<String>,
    },
    /// Something went wrong that an operator should see.
    Error {
        /// Session id.
        session_id: Arc<str>,
        /// What happened.
        message: String,
    },
}

fn raw_json<S: serde::Serializer>(raw: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    let raw =
        serde_json::value::RawValue::from_string(raw.to_string()).map_err(S::Error::custom)?;
    raw.serialize(s)
}

impl Event {
    /// The session this event belongs to.
    pub fn session_id(&self) -> &str {
        match self {
            Event::SessionState { session_id, .. }
            | Event::SdkMessage { session_id, .. }
            | Event::PermissionRequested { session_id, .. }
            | Event::PermissionAnswered { session_id, .. }
            | Event::PermissionDelivered { session_id, .. }
            | Event::PermissionCancelled { session_id, .. }
            | Event::Error { session_id, .. } => session_id,
        }
    }
}

/// An event with the time it was published.
#[derive(Debug, Clone, Serialize)]
pub struct Stamped {
    /// Publication time.
    #[serde(with = "crate::util::as_rfc3339")]
    pub at: SystemTime,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// Cloneable publishing side of the bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Stamped>>,
}

impl EventBus {
    /// A bus whose subscribers may lag by at most `capacity` events.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Publish; never blocks, and is free when nobody listens.
    pub fn publish(&self, event: Event) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let _ = self.tx.send(Arc::new(Stamped {
            at: SystemTime::now(),
            event,
        }));
    }

    /// A new subscriber that sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stamped>> {
        self.tx.subscribe()
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
    fn slow_subscriber_lags_instead_of_blocking() {
        let bus = EventBus::new(2);
        let mut rx = bus.subscribe();
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
    }
}
