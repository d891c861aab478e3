//! The session's WebSocket after the handshake, re-framed with adaptive buffers.
//!
//! awc hands back an actix-codec `Framed` that keeps an 8 KiB read buffer and
//! an 8 KiB write buffer for the life of the socket — most of what an idle
//! session costs. After the handshake we take the socket out and split it.
//! The write half's buffer grows only as frames need, and is let go once written ([`WsSink`]).
//! The read half ([`AdaptiveReader`]) holds no buffer at all while the socket
//! is idle, and while data keeps coming doubles its read size up to 32 KiB
//! ([`next_read_size`]), so idle sessions stay small and busy ones make one
//! read call per many frames. Bytes that arrived together with the handshake
//! response are decoded first.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::{Decoder, Framed};
use awc::error::WsProtocolError;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use bytes::BytesMut;
use futures_util::stream::{self, Stream, StreamExt};
use futures_util::Sink;
use tokio::io::{ReadHalf, WriteHalf};
use tokio_util::codec::FramedWrite;

/// Largest read size, reached while data keeps arriving. In the flood benchmark
/// (1,000 sessions streaming) 32 KiB reads made a sixth of the recv calls of
/// 8 KiB ones and cost ~8% less supervisor CPU per frame, for ~25 KiB more RSS per
/// streaming session (429 -> 454 MiB at peak); 64 KiB gained no more.
const MAX_READ: usize = 32 * 1024;
/// Read size after a quiet spell.
const QUIET_READ: usize = 1024;

/// The read size after a read of `n` bytes into `room` bytes of space, when
/// the last one was `want`: double it when the read filled its space (more is
/// waiting), halve it when it came back under half full, else keep it; always
/// within [`QUIET_READ`]..=[`MAX_READ`].
pub fn next_read_size(want: usize, n: usize, room: usize) -> usize {
    let next = if n >= room {
        want.saturating_mul(2)
    } else if n < room / 2 {
        want / 2
    } else {
        want
    };
    next.clamp(QUIET_READ, MAX_READ)
}

/// Inbound frames of one connection.
pub type WsStream = Pin<Box<dyn Stream<Item = Result<Frame, WsProtocolError>>>>;

/// Outbound side of one connection: WebSocket framing into a buffer that exists only
/// while frames wait to be written. Each flush that empties the buffer lets it go (one
/// allocation per burst of writes), so an idle session holds none: before, each kept the
/// capacity of the largest burst it ever wrote (its `initialize`, 119 bytes, at least).
pub struct WsSink(FramedWrite<WriteHalf<BoxedSocket>, Codec>);

impl Sink<Message> for WsSink {
    type Error = WsProtocolError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        Pin::new(&mut self.get_mut().0).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let framed = &mut self.get_mut().0;
        let flushed = Pin::new(&mut *framed).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            release_if_empty(framed.write_buffer_mut());
        }
        flushed
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}

/// Let `buf`'s memory go if it holds nothing; whether it held nothing.
fn release_if_empty(buf: &mut BytesMut) -> bool {
    let empty = buf.is_empty();
    if empty && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
    empty
}

/// Re-frame a connected socket with small buffers.
pub fn rebuffer(framed: Framed<BoxedSocket, Codec>) -> (WsSink, WsStream) {
    let parts = framed.into_parts();
    let mut codec = parts.codec;
    let mut leftover = parts.read_buf;
    let mut early = Vec::new();
    loop {
        match codec.decode(&mut leftover) {
            Ok(Some(frame)) => early.push(Ok(frame)),
            Ok(None) => break,
            Err(e) => {
                early.push(Err(e));
                break;
            }
        }
    }
    let (read, write) = tokio::io::split(parts.io);
    // A partial frame stays in the buffer: the rest arrives with the next read.
    let reader = AdaptiveReader {
        io: read,
        codec: codec.clone(),
        buf: leftover,
        want: QUIET_READ,
        done: false,
    };
    let writer = WsSink(FramedWrite::with_capacity(write, codec, 0));
    (writer, Box::pin(stream::iter(early).chain(reader)))
}

/// Decodes frames from the read half with a buffer that exists only while
/// data is flowing (see the module docs).
pub struct AdaptiveReader {
    io: ReadHalf<BoxedSocket>,
    codec: Codec,
    buf: BytesMut,
    /// Bytes to ask for in the next read ([`next_read_size`]).
    want: usize,
    done: bool,
}

impl Stream for AdaptiveReader {
    type Item = Result<Frame, WsProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if !this.buf.is_empty() {
                match this.codec.decode(&mut this.buf) {
                    Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                    Ok(None) => {}
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            if this.done {
                return Poll::Ready(None);
            }
            let want = this.want;
            if this.buf.capacity() - this.buf.len() < want / 2 {
                // Ask for `want` bytes in all, not `want` more: then the buffer
                // (whose frames are all handled by now) is reused in place
                // instead of regrown to twice its size around a partial frame.
                let len = this.buf.len();
                this.buf.reserve(want.saturating_sub(len).max(want / 2));
            }
            let room = this.buf.capacity() - this.buf.len();
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.buf) {
                Poll::Pending => {
                    // Idle: hold no memory until the socket is readable again.
                    if release_if_empty(&mut this.buf) {
                        this.want = QUIET_READ;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => this.done = true,
                Poll::Ready(Ok(n)) => this.want = next_read_size(want, n, room),
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(WsProtocolError::Io(e))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_read_doubles_the_next_up_to_the_maximum() {
        assert_eq!(next_read_size(QUIET_READ, 1024, 1024), 2 * QUIET_READ);
        assert_eq!(next_read_size(8192, 9000, 9000), 16384);
        assert_eq!(next_read_size(MAX_READ, MAX_READ, MAX_READ), MAX_READ);
        let mut want = QUIET_READ;
        let mut reads = 0;
        while want < MAX_READ {
            want = next_read_size(want, want, want);
            reads += 1;
        }
        assert_eq!(
            (want, reads),
            (MAX_READ, 5),
            "1 KiB to 32 KiB in five full reads"
        );
    }

    #[test]
    fn a_short_read_halves_the_next_down_to_the_minimum() {
        assert_eq!(next_read_size(16384, 100, 16384), 8192);
        assert_eq!(next_read_size(QUIET_READ, 10, 1024), QUIET_READ);
        assert_eq!(next_read_size(QUIET_READ, 0, 1024), QUIET_READ);
    }

    #[actix_rt::test]
    async fn the_write_buffer_is_let_go_once_its_frames_are_written() {
        use futures_util::SinkExt;
        use tokio::io::AsyncReadExt;

        let (ours, mut theirs) = tokio::io::duplex(4096);
        let socket: BoxedSocket = Box::new(ours);
        let (mut sink, _stream) = rebuffer(Framed::new(socket, Codec::new()));
        assert_eq!(sink.0.write_buffer().capacity(), 0, "none before a write");
        let text = "x".repeat(300);
        // Queued, not yet flushed: the buffer holds the frame.
        sink.feed(Message::Text(text.clone().into())).await.unwrap();
        assert!(sink.0.write_buffer().capacity() >= 300);
        sink.flush().await.unwrap();
        assert_eq!(sink.0.write_buffer().capacity(), 0, "let go once written");
        let mut got = vec![0u8; 4 + 300];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(
            &got[4..],
            text.as_bytes(),
            "the frame reached the peer whole"
        );
    }

    #[test]
    fn a_read_over_half_full_keeps_the_size() {
        assert_eq!(next_read_size(8192, 6000, 8192), 8192);
        assert_eq!(next_read_size(8192, 4096, 8192), 8192);
        assert_eq!(next_read_size(8192, 4095, 8192), 4096);
    }
}
