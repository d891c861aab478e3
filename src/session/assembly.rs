//! Reassembly of fragmented WebSocket text messages, with the frame-size limit (pure).
//!
//! Oversized messages are not fatal: the codec's own limit is set far higher (a
//! codec overflow would break the stream), and this limit decides. An oversized
//! message is never kept whole: it is scanned as it arrives ([`HeadScanner`]) so
//! that a prompt in it can still be answered.

use actix_http::ws::Item;
use bytes::{Bytes, BytesMut};

use ccr_protocol::scan::{HeadScanner, ScannedHead};

/// Outcome of feeding one (possibly partial) frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// A complete text message.
    Text(Bytes),
    /// A complete message that must be skipped, with the reason.
    Skip(&'static str),
    /// A complete text message over the limit: what a constant-memory scan found in it.
    Oversized(ScannedHead),
    /// More fragments are needed.
    Partial,
}

/// Collects continuation fragments up to `limit` bytes.
#[derive(Debug)]
pub struct Reassembler {
    limit: usize,
    /// The fragmented message in progress (boxed: every session holds a reassembler, few
    /// ever see a fragmented message).
    partial: Option<Box<Partial>>,
}

/// A fragmented message in progress.
#[derive(Debug)]
struct Partial {
    buf: BytesMut,
    binary: bool,
    /// Set once the message is over the limit: it is scanned, not kept.
    oversized: Option<HeadScanner>,
}

impl Partial {
    /// The message went over the limit: scan what was kept, keep nothing from now on.
    fn oversize(&mut self, kept: &[u8]) {
        let mut scanner = HeadScanner::new();
        scanner.feed(kept);
        self.oversized = Some(scanner);
    }
}

/// The codec's hard cap: far above the limit so that oversized frames are answered, not fatal
/// (a frame over this cap is a protocol error that ends the connection).
pub fn codec_limit(limit: usize) -> usize {
    limit.saturating_mul(4).max(64 << 20)
}

impl Reassembler {
    /// A reassembler that skips messages over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            partial: None,
        }
    }

    /// Drop any partial message (the connection ended).
    pub fn reset(&mut self) {
        self.partial = None;
    }

    /// A whole, unfragmented text frame.
    pub fn whole_text(&mut self, data: Bytes) -> Assembled {
        if self.partial.take().is_some() {
            return Assembled::Skip("text frame interrupted a fragmented message");
        }
        if data.len() > self.limit {
            return Assembled::Oversized(HeadScanner::scan(&data));
        }
        Assembled::Text(data)
    }

    /// Feed one continuation item of a fragmented message.
    pub fn continuation(&mut self, item: Item) -> Assembled {
        match item {
            Item::FirstText(d) => self.first(&d, false),
            Item::FirstBinary(d) => self.first(&d, true),
            Item::Continue(d) => self.next(&d, false),
            Item::Last(d) => self.next(&d, true),
        }
    }

    /// The first fragment of a message.
    pub fn first(&mut self, data: &[u8], binary: bool) -> Assembled {
        let mut partial = Partial {
            buf: BytesMut::new(),
            binary,
            oversized: None,
        };
        if data.len() > self.limit {
            partial.oversize(data);
        } else {
            partial.buf.extend_from_slice(data);
        }
        self.partial = Some(Box::new(partial));
        Assembled::Partial
    }

    /// A middle (`last == false`) or final fragment.
    pub fn next(&mut self, data: &[u8], last: bool) -> Assembled {
        let Some(mut partial) = self.partial.take() else {
            return Assembled::Skip("continuation without a first fragment");
        };
        if partial.oversized.is_none() && partial.buf.len() + data.len() > self.limit {
            let kept = std::mem::take(&mut partial.buf);
            partial.oversize(&kept);
        }
        match partial.oversized.as_mut() {
            Some(scanner) => scanner.feed(data),
            None => partial.buf.extend_from_slice(data),
        }
        if !last {
            self.partial = Some(partial);
            return Assembled::Partial;
        }
        match partial.oversized {
            _ if partial.binary => Assembled::Skip("binary frame"),
            Some(scanner) => Assembled::Oversized(scanner.finish()),
            None => Assembled::Text(partial.buf.freeze()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_frames_and_limit() {
        let mut r = Reassembler::new(4);
        assert_eq!(
            r.whole_text(Bytes::from_static(b"abcd")),
            Assembled::Text(Bytes::from_static(b"abcd"))
        );
        let Assembled::Oversized(head) = r.whole_text(Bytes::from_static(b"abcde")) else {
            panic!("not oversized")
        };
        assert_eq!(head.bytes, 5);
    }

    #[test]
    fn fragments_join_and_oversize_is_skipped() {
        let mut r = Reassembler::new(6);
        assert_eq!(r.first(b"ab", false), Assembled::Partial);
        assert_eq!(r.next(b"cd", false), Assembled::Partial);
        assert_eq!(
            r.next(b"ef", true),
            Assembled::Text(Bytes::from_static(b"abcdef"))
        );
        r.first(b"abcd", false);
        let Assembled::Oversized(head) = r.next(b"efg", true) else {
            panic!("not oversized")
        };
        assert_eq!(head.bytes, 7, "every byte scanned, none kept");
        // and the next message is fine again
        r.first(b"x", false);
        assert_eq!(
            r.next(b"y", true),
            Assembled::Text(Bytes::from_static(b"xy"))
        );
        r.first(b"x", true);
        assert_eq!(r.next(b"y", true), Assembled::Skip("binary frame"));
        assert_eq!(
            r.next(b"y", true),
            Assembled::Skip("continuation without a first fragment")
        );
    }

    #[test]
    fn an_oversized_prompt_in_fragments_keeps_its_ids() {
        let text = br#"{"type":"control_request","request_id":"big","request":{"subtype":"can_use_tool","tool_name":"Write","input":{"content":"0123456789"}}}"#;
        let mut r = Reassembler::new(40);
        let mut chunks = text.chunks(7);
        assert_eq!(r.first(chunks.next().unwrap(), false), Assembled::Partial);
        let mut out = Assembled::Partial;
        let rest: Vec<_> = chunks.collect();
        for (i, c) in rest.iter().enumerate() {
            out = r.next(c, i + 1 == rest.len());
        }
        let Assembled::Oversized(head) = out else {
            panic!("not oversized: {out:?}")
        };
        assert_eq!(head.request_id.as_deref(), Some("big"));
        assert_eq!(head.tool_name.as_deref(), Some("Write"));
        assert_eq!(head.bytes, text.len());
        let mut r = Reassembler::new(40);
        r.first(&text[..50], false);
        let Assembled::Oversized(head) = r.next(&text[50..], true) else {
            panic!()
        };
        assert_eq!(
            head.request_id.as_deref(),
            Some("big"),
            "first fragment alone over the limit"
        );
    }

    #[test]
    fn codec_limit_is_far_above() {
        assert_eq!(codec_limit(1 << 20), 64 << 20);
        assert_eq!(codec_limit(32 << 20), 128 << 20);
    }
}
