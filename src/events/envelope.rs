//! One published event as readers get it: sequence number, time, the event and its
//! JSON, serialized once for every reader ([`Prepared`] outside the hub lock, stamped
//! with its sequence number under it). The bytes are built by [`super::encode`].

use std::time::SystemTime;

use arrayvec::ArrayString;

use super::encode::{self, Head, SEQ_ROOM};
use super::Event;

/// One published event: sequence number, time, the event and its JSON.
#[derive(Debug)]
pub struct Envelope {
    /// Strictly increasing across the process.
    pub seq: u64,
    /// Publication time.
    pub at: SystemTime,
    /// The event.
    pub event: Event,
    /// `{"seq":N,`
    seq_key: ArrayString<SEQ_ROOM>,
    /// `"at":..,"type":..,...`, serialized once for every reader (see [`Prepared`]).
    /// For an SDK message it stops at `"message":` and the frame itself is shared
    /// with the event.
    head: Head,
    /// The JSON has a raw CR or LF (only an SDK frame can: everything else is compact serde output).
    line_breaks: bool,
}

impl Envelope {
    /// The JSON in pieces, to be written one after the other: `{"seq":N,`, the
    /// head, and for an SDK message the frame exactly as received (shared, not
    /// copied) and `}`.
    pub fn json_parts(&self) -> [&str; 4] {
        let head = self.head.as_str();
        match &self.event {
            Event::SdkMessage { message, .. } => [&self.seq_key, head, message, "}"],
            _ => [&self.seq_key, head, "", ""],
        }
    }

    /// Whether the JSON has a raw CR or LF (whitespace between tokens of an SDK
    /// frame), which a line-based framing such as SSE must split on.
    pub fn has_line_breaks(&self) -> bool {
        self.line_breaks
    }

    /// Length of the JSON in bytes.
    pub fn json_len(&self) -> usize {
        self.json_parts().iter().map(|p| p.len()).sum()
    }

    /// Bytes a retained envelope holds: its JSON, plus a prompt's request kept beside it
    /// (an SDK frame is shared with the JSON, not held twice). History bounds count this,
    /// so `history_total_bytes` bounds memory, not just the JSON served.
    pub fn retained_len(&self) -> usize {
        let extra = match &self.event {
            Event::PermissionRequested { request, .. } => request.get().len(),
            _ => 0,
        };
        self.json_len() + extra
    }

    /// `{"seq":..,"at":..,"type":..,...}` in one piece (a copy).
    pub fn json(&self) -> String {
        self.json_parts().concat()
    }
}

/// An event serialized up to its sequence number, built outside the hub lock.
#[derive(Debug)]
pub struct Prepared {
    event: Event,
    at: SystemTime,
    /// `"at":"..",<the event's own fields>}`; for an SDK message it stops at
    /// `"message":`, the frame is not copied.
    head: Head,
    line_breaks: bool,
}

impl Prepared {
    /// Serialize `event` (published at `at`) except for its sequence number.
    pub fn new(event: Event, at: SystemTime) -> Self {
        let head = encode::envelope_head(at, &event);
        let line_breaks = encode::has_line_breaks(&event);
        Self {
            event,
            at,
            head,
            line_breaks,
        }
    }

    /// The envelope with sequence number `seq`. Cheap: the JSON was built by
    /// [`Prepared::new`] up to `{"seq":N,`, which is all that is formatted here.
    pub(super) fn stamp(self, seq: u64) -> Envelope {
        let Prepared {
            event,
            at,
            head,
            line_breaks,
        } = self;
        Envelope {
            seq,
            at,
            event,
            seq_key: encode::seq_key(seq),
            head,
            line_breaks,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::encode::HEAD_INLINE;
    use crate::events::tests::limits;
    use crate::events::History;

    #[test]
    fn sdk_message_envelope_is_spliced_and_equals_the_serde_form() {
        let mut h = History::new(limits(10, 1 << 20));
        let raw =
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi \"there\""}]}}"#;
        let event = Event::SdkMessage {
            session_id: Arc::from("s\"1"),
            msg_type: "assistant".into(),
            message: Arc::from(raw),
        };
        let via_serde: serde_json::Value = serde_json::to_value(&event).unwrap();
        let env = h.push(event, SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(&env.json()).unwrap();
        assert_eq!(v["seq"], 1);
        assert_eq!(v["type"], via_serde["type"]);
        assert_eq!(v["session_id"], via_serde["session_id"]);
        assert_eq!(v["msg_type"], via_serde["msg_type"]);
        assert_eq!(v["message"], via_serde["message"]);
    }

    #[test]
    fn a_head_too_long_to_keep_inline_moves_to_the_heap_intact() {
        let mut h = History::new(limits(10, 1 << 20));
        for id in ["s".repeat(40), "\"".repeat(HEAD_INLINE)] {
            let env = h.push(
                Event::SdkMessage {
                    session_id: Arc::from(id.as_str()),
                    msg_type: "assistant".into(),
                    message: Arc::from(r#"{"type":"assistant"}"#),
                },
                SystemTime::UNIX_EPOCH,
            );
            let inline = matches!(env.head, Head::Inline(_));
            assert_eq!(inline, id.len() == 40, "{} bytes of id", id.len());
            let v: serde_json::Value = serde_json::from_str(&env.json()).unwrap();
            assert_eq!(v["session_id"], id.as_str());
            assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
            assert_eq!(env.json_len(), env.json().len());
        }
    }
}
