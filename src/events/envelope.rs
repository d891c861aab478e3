//! One published event as readers get it: sequence number, the event and its JSON,
//! serialized once for every reader ([`Prepared`] outside the hub lock, stamped with its
//! sequence number under it). The bytes are built by [`super::encode`].
//!
//! Compact, since history keeps hundreds of thousands of these: an SDK frame is held
//! once (shared by the event and its JSON), and the rest of the JSON is one allocation
//! of its own size; `{"seq":N,` in front of it is formatted where it is written out.

use std::mem::size_of;
use std::time::SystemTime;

use arrayvec::ArrayString;

use super::encode::{self, SEQ_KEY_MAX};
use super::retained::Kept;
use super::Event;

/// One published event: sequence number, the event and its JSON.
#[derive(Debug)]
pub struct Envelope {
    /// Strictly increasing across the process.
    pub seq: u64,
    /// The event.
    pub event: Event,
    /// `"at":..,"type":..,...` (the JSON after `{"seq":N,`), serialized once for every
    /// reader. For an SDK message it stops at `"message":` and the frame itself is
    /// shared with the event.
    json: Box<str>,
    /// The JSON has a raw CR or LF (only an SDK frame can: everything else is compact serde output).
    line_breaks: bool,
}

/// Bytes a retained event holds besides its JSON: the envelope and the reference
/// counts of its allocation and the frame's, and its entries in the history's queues.
/// Allocator rounding and queue slack are not counted (about a tenth more, measured).
pub const EVENT_OVERHEAD: usize = size_of::<Envelope>()
    + 2 * 2 * size_of::<usize>()
    + size_of::<Kept>()
    + size_of::<(u64, usize)>();

/// An envelope's JSON in pieces ([`Envelope::json_parts`]).
#[derive(Debug)]
pub struct JsonParts<'a> {
    seq_key: ArrayString<SEQ_KEY_MAX>,
    rest: [&'a str; 3],
}

impl JsonParts<'_> {
    /// The pieces, to be written one after the other: `{"seq":N,`, the head, and for
    /// an SDK message the frame exactly as received (shared, not copied) and `}`.
    pub fn pieces(&self) -> [&str; 4] {
        let [head, frame, end] = self.rest;
        [&self.seq_key, head, frame, end]
    }

    /// The sequence number, in decimal (as the JSON has it).
    pub fn seq(&self) -> &str {
        encode::seq_of_key(&self.seq_key)
    }
}

impl Envelope {
    /// The JSON in pieces (see [`JsonParts::pieces`]).
    pub fn json_parts(&self) -> JsonParts<'_> {
        let head = &*self.json;
        let rest = match &self.event {
            Event::SdkMessage { message, .. } => [head, message, "}"],
            _ => [head, "", ""],
        };
        JsonParts {
            seq_key: encode::seq_key(self.seq),
            rest,
        }
    }

    /// Whether the JSON has a raw CR or LF (whitespace between tokens of an SDK
    /// frame), which a line-based framing such as SSE must split on.
    pub fn has_line_breaks(&self) -> bool {
        self.line_breaks
    }

    /// Length of the JSON in bytes (counted, not formatted).
    pub fn json_len(&self) -> usize {
        let frame = match &self.event {
            Event::SdkMessage { message, .. } => message.len() + 1,
            _ => 0,
        };
        encode::seq_key_len(self.seq) + self.json.len() + frame
    }

    /// Bytes a retained envelope holds: its JSON (an SDK frame shared with the event
    /// counts once), the event's own strings (for events other than SDK messages, at
    /// most their JSON again: a prompt's request is kept beside its JSON), and
    /// [`EVENT_OVERHEAD`]. History bounds count this, so `history_total_bytes`
    /// bounds memory, not just the JSON served.
    pub fn retained_len(&self) -> usize {
        let own = match &self.event {
            Event::SdkMessage { message, .. } => message.len(),
            _ => self.json.len(),
        };
        self.json.len() + own + EVENT_OVERHEAD
    }

    /// `{"seq":..,"at":..,"type":..,...}` in one piece (a copy).
    pub fn json(&self) -> String {
        self.json_parts().pieces().concat()
    }
}

/// An event serialized up to its sequence number, built outside the hub lock.
#[derive(Debug)]
pub struct Prepared {
    event: Event,
    /// `"at":"..",<the event's own fields>}`; for an SDK message it stops at
    /// `"message":`, the frame is not copied.
    json: Box<str>,
    line_breaks: bool,
}

impl Prepared {
    /// Serialize `event` (published at `at`) except for its sequence number.
    pub fn new(event: Event, at: SystemTime) -> Self {
        let json = encode::envelope_head(at, &event);
        let line_breaks = encode::has_line_breaks(&event);
        Self {
            event,
            json,
            line_breaks,
        }
    }

    /// The envelope with sequence number `seq`: nothing is formatted here (under the
    /// hub lock); `{"seq":N,` is written where the JSON is written out.
    pub(super) fn stamp(self, seq: u64) -> Envelope {
        let Prepared {
            event,
            json,
            line_breaks,
        } = self;
        Envelope {
            seq,
            event,
            json,
            line_breaks,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
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
    fn the_length_and_the_number_are_the_written_json_s_whatever_the_digits() {
        for seq in [1, 9, 10, 99, 1 << 40, u64::MAX - 2] {
            let mut h = History::numbered_after(limits(10, 1 << 20), seq - 1);
            for event in [
                Event::SdkMessage {
                    session_id: Arc::from("s"),
                    msg_type: "assistant".into(),
                    message: Arc::from(r#"{"type":"assistant"}"#),
                },
                Event::Error {
                    session_id: "s".into(),
                    message: "m".into(),
                },
            ] {
                let env = h.push(event, SystemTime::UNIX_EPOCH);
                assert_eq!(env.json_len(), env.json().len(), "{seq}");
                assert_eq!(env.json_parts().seq(), env.seq.to_string());
                assert_eq!(crate::events::digits(env.seq), env.seq.to_string().len());
            }
        }
    }

    #[test]
    fn any_head_is_kept_whole_and_counted() {
        let mut h = History::new(limits(10, 1 << 20));
        let frame = r#"{"type":"assistant"}"#;
        for id in ["s".repeat(40), "\"".repeat(300), String::new()] {
            let env = h.push(
                Event::SdkMessage {
                    session_id: Arc::from(id.as_str()),
                    msg_type: "assistant".into(),
                    message: Arc::from(frame),
                },
                SystemTime::UNIX_EPOCH,
            );
            let v: serde_json::Value = serde_json::from_str(&env.json()).unwrap();
            assert_eq!(v["session_id"], id.as_str());
            assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
            assert_eq!(env.json_len(), env.json().len());
            // The frame once, the rest of the JSON, the fixed overhead.
            assert_eq!(
                env.retained_len(),
                env.json.len() + frame.len() + EVENT_OVERHEAD
            );
        }
        // Other events: their own strings are counted again (at most their JSON).
        let env = h.push(crate::events::tests::ev("a", 500), SystemTime::UNIX_EPOCH);
        assert!(env.retained_len() >= 2 * 500 + EVENT_OVERHEAD);
        // docs/events.md ("What history costs") quotes this figure: keep them in step.
        #[cfg(target_pointer_width = "64")]
        assert_eq!(EVENT_OVERHEAD, 216);
    }
}
