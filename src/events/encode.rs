//! An envelope's JSON, built as text (pure: no lock, no I/O; the hub only stamps and
//! shares what is built here, the event stream only writes it out).
//!
//! The pieces: `{"seq":N,` ([`seq_key`], formatted from the envelope's number where it is
//! written out, so nothing is formatted under the hub lock) and the head after it
//! ([`envelope_head`]: `"at":"..",<the event's own fields>}`, or for an SDK message
//! everything up to `"message":`, after which the frame itself is written as received,
//! never copied). The head is one allocation of its own size, kept as long as the event is.
//!
//! Maintained crates do the encoding: serde_json serializes every event but an SDK
//! message's head and escapes any string that needs it, humantime formats the time,
//! itoa the sequence number. What is written by hand is only what makes the hot path
//! (every SDK message of every session) cheaper, as measured (release build, best of 15
//! runs of 10^6 on a shared 2-core x86-64 machine; a throwaway harness, not kept):
//!
//! - the time is formatted once per millisecond per thread ([`push_rfc3339_millis`]):
//!   24 ns per event in a burst of 100 events per millisecond, against 46 ns for
//!   humantime every time (80 ns against 51 ns when every event has a millisecond of
//!   its own, a rate at which the cost does not matter);
//! - a session id or message type that needs no escaping (all of them in practice) is
//!   quoted as is ([`push_json_str`]): 47 ns for a 36-byte id and a 9-byte type, against
//!   58 ns through `serde_json::to_string` (which also allocates twice per event) and
//!   50 ns through `serde_json::to_writer` into a reused buffer plus a UTF-8 check.

use std::time::SystemTime;

use arrayvec::ArrayString;

use super::Event;

/// `{"seq":`, and the most bytes `{"seq":N,` takes (the most digits a `u64` has).
const SEQ_KEY: &str = "{\"seq\":";
pub(super) const SEQ_KEY_MAX: usize = SEQ_KEY.len() + 20 + 1;

/// Digits of `n` in decimal.
pub(crate) fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// How long [`seq_key`] of `seq` is, without formatting it.
pub(super) fn seq_key_len(seq: u64) -> usize {
    SEQ_KEY.len() + digits(seq) + 1
}

/// The number in a [`seq_key`]: `N` of `{"seq":N,`.
pub(super) fn seq_of_key(key: &str) -> &str {
    key.get(SEQ_KEY.len()..key.len().saturating_sub(1))
        .unwrap_or_default()
}

/// `{"seq":N,`: the start of every envelope's JSON, formatted where it is written out
/// (an `itoa` of the number: cheaper than keeping it, measured in docs/benchmarks.md).
pub(super) fn seq_key(seq: u64) -> ArrayString<SEQ_KEY_MAX> {
    let mut key = ArrayString::new();
    // `{"seq":` and at most 20 digits and a comma always fit.
    for piece in [SEQ_KEY, itoa::Buffer::new().format(seq), ","] {
        let _ = key.try_push_str(piece);
    }
    key
}

/// Whether `event`'s JSON will have a raw CR or LF: only what it carries as the session
/// sent it can, an SDK frame or a prompt's request (everything else is compact serde
/// output). Checked once, while the text is still in this thread's cache.
pub(super) fn has_line_breaks(event: &Event) -> bool {
    let text = match event {
        Event::SdkMessage { message, .. } => message.as_bytes(),
        Event::PermissionRequested { request, .. } => request.get().as_bytes(),
        _ => return false,
    };
    memchr::memchr2(b'\r', b'\n', text).is_some()
}

/// The envelope JSON after `{"seq":N,` ([`seq_key`]): `"at":"..",<the event's own
/// fields>}`, stopping at `"message":` for an SDK message. Sized to fit: it is kept as
/// long as the event.
pub(super) fn envelope_head(at: SystemTime, event: &Event) -> Box<str> {
    const AT: usize = "\"at\":\"\"".len() + "2026-01-31T09:00:00.123Z".len();
    if let Event::SdkMessage {
        session_id,
        msg_type,
        ..
    } = event
    {
        // The hot path: the frame was fully parsed (validated) when it was
        // classified, so it is spliced in as is instead of being parsed again.
        const KEYS: &str = ",\"type\":\"sdk_message\",\"session_id\":,\"msg_type\":,\"message\":";
        let cap = AT + KEYS.len() + session_id.len() + msg_type.len() + 4;
        let mut out = String::with_capacity(cap);
        push_time(&mut out, at);
        out.push_str(",\"type\":\"sdk_message\",\"session_id\":");
        push_json_str(&mut out, session_id);
        out.push_str(",\"msg_type\":");
        push_json_str(&mut out, msg_type);
        out.push_str(",\"message\":");
        return out.into_boxed_str();
    }
    // Serializing an `Event` cannot fail: string keys only, raw JSON validated on entry.
    let body = serde_json::to_string(event).unwrap_or_else(|e| {
        serde_json::json!({"type": "error", "message": format!("unserializable event: {e}")})
            .to_string()
    });
    let rest = body.strip_prefix('{').unwrap_or("}");
    let sep = if rest.starts_with('}') { "" } else { "," };
    let mut out = String::with_capacity(AT + sep.len() + rest.len());
    push_time(&mut out, at);
    out.push_str(sep);
    out.push_str(rest);
    out.into_boxed_str()
}

/// `"at":".."`.
fn push_time(out: &mut String, at: SystemTime) {
    out.push_str("\"at\":\"");
    push_rfc3339_millis(out, at);
    out.push('"');
}

/// Append `at` in RFC 3339 with milliseconds (humantime's); formatted once per
/// millisecond per thread, since a busy session publishes many events in the same one
/// (about half the cost in a burst: see the module docs).
fn push_rfc3339_millis(out: &mut String, at: SystemTime) {
    use std::cell::RefCell;
    use std::fmt::Write as _;
    thread_local! {
        static LAST: RefCell<(Option<u128>, String)> = const { RefCell::new((None, String::new())) };
    }
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis());
    LAST.with_borrow_mut(|(last_ms, text)| {
        if ms.is_none() || *last_ms != ms {
            text.clear();
            let _ = write!(text, "{}", humantime::format_rfc3339_millis(at));
            *last_ms = ms;
        }
        out.push_str(text);
    });
}

/// Append `v` as a JSON string literal, escaped exactly as serde_json escapes it (by
/// serde_json, when it needs escaping at all).
fn push_json_str(out: &mut String, v: &str) {
    // Session ids and message types almost never need escaping: copy those as
    // they are (this runs for every frame of every session; faster than serde_json
    // and allocation-free: see the module docs).
    if !v.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push('"');
        out.push_str(v);
        out.push('"');
        return;
    }
    // Serializing a str cannot fail.
    out.push_str(&serde_json::to_string(v).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::tests::{ev, limits};
    use crate::events::{Envelope, History};

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for v in [
            "b-1",
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "nl\n",
            "\u{1}",
            "é✓",
            "\u{7f}",
        ] {
            let mut out = String::from("x");
            push_json_str(&mut out, v);
            assert_eq!(
                out.as_str()[1..],
                serde_json::to_string(v).unwrap(),
                "{v:?}"
            );
        }
    }

    #[test]
    fn the_seq_key_is_the_json_s_start_for_any_number() {
        for seq in [0, 1, 42, u64::MAX] {
            let key = seq_key(seq);
            assert_eq!(key.as_str(), format!("{{\"seq\":{seq},"));
        }
        assert_eq!(
            seq_key(u64::MAX).len(),
            SEQ_KEY_MAX,
            "the key's capacity fits the longest"
        );
    }

    #[test]
    fn each_event_gets_its_own_millisecond() {
        let mut h = History::new(limits(10, 1 << 20));
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let t1 = t0 + std::time::Duration::from_millis(1);
        let at = |env: Arc<Envelope>| {
            let v: serde_json::Value = serde_json::from_str(&env.json()).unwrap();
            v["at"].as_str().unwrap().to_owned()
        };
        assert_eq!(at(h.push(ev("a", 1), t0)), "2023-11-14T22:13:20.123Z");
        assert_eq!(at(h.push(ev("a", 1), t0)), "2023-11-14T22:13:20.123Z");
        assert_eq!(at(h.push(ev("a", 1), t1)), "2023-11-14T22:13:20.124Z");
        assert_eq!(at(h.push(ev("a", 1), t0)), "2023-11-14T22:13:20.123Z");
    }
}
