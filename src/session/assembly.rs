//! Reassembly of fragmented WebSocket text messages, with the frame-size limit (pure).
//!
//! Oversized messages are skipped, not fatal: the codec's own limit is set far
//! higher (a codec overflow would break the stream), and this limit decides.

use bytes::{Bytes, BytesMut};

/// Outcome of feeding one (possibly partial) frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// A complete text message.
    Text(Bytes),
    /// A complete message that must be skipped, with the reason.
    Skip(&'static str),
    /// More fragments are needed.
    Partial,
}

/// Collects continuation fragments up to `limit` bytes.
#[derive(Debug)]
pub struct Reassembler {
    limit: usize,
    buf: Option<BytesMut>,
    binary: bool,
    oversized: bool,
}

/// The codec's hard cap: far above the skip limit so that oversized frames are skipped, not fatal.
pub fn codec_limit(limit: usize) -> usize {
    limit.saturating_mul(16).max(64 << 20)
}

impl Reassembler {
    /// A reassembler that skips messages over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            buf: None,
            binary: false,
            oversized: false,
        }
    }

    /// Drop any partial message (the connection ended).
    pub fn reset(&mut self) {
        self.buf = None;
        self.binary = false;
        self.oversized = false;
    }

    /// A whole, unfragmented text frame.
    pub fn whole_text(&mut self, data: Bytes) -> Assembled {
        if self.buf.is_some() {
            self.reset();
            return Assembled::Skip("text frame interrupted a fragmented message");
        }
        if data.len() > self.limit {
            return Assembled::Skip("oversized frame");
        }
        Assembled::Text(data)
    }

    /// The first fragment of a message.
    pub fn first(&mut self, data: &[u8], binary: bool) -> Assembled {
        self.reset();
        self.binary = binary;
        self.oversized = data.len() > self.limit;
        let mut buf = BytesMut::new();
        if !self.oversized {
            buf.extend_from_slice(data);
        }
        self.buf = Some(buf);
        Assembled::Partial
    }

    /// A middle (`last == false`) or final fragment.
    pub fn next(&mut self, data: &[u8], last: bool) -> Assembled {
        let Some(buf) = self.buf.as_mut() else {
            return Assembled::Skip("continuation without a first fragment");
        };
        if !self.oversized {
            if buf.len() + data.len() > self.limit {
                self.oversized = true;
                *buf = BytesMut::new();
            } else {
                buf.extend_from_slice(data);
            }
        }
        if !last {
            return Assembled::Partial;
        }
        let buf = self.buf.take().unwrap_or_default();
        let (binary, oversized) = (self.binary, self.oversized);
        self.reset();
        if oversized {
            Assembled::Skip("oversized frame")
        } else if binary {
            Assembled::Skip("binary frame")
        } else {
            Assembled::Text(buf.freeze())
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
        assert_eq!(
            r.whole_text(Bytes::from_static(b"abcde")),
            Assembled::Skip("oversized frame")
        );
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
        assert_eq!(r.next(b"efg", true), Assembled::Skip("oversized frame"));
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
    fn codec_limit_is_far_above() {
        assert_eq!(codec_limit(1 << 20), 64 << 20);
        assert_eq!(codec_limit(8 << 20), 128 << 20);
    }
}
