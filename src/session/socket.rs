//! The session's WebSocket after the handshake, re-framed with adaptive buffers.
//!
//! awc hands back an actix-codec `Framed` that keeps an 8 KiB read buffer and
//! an 8 KiB write buffer for the life of the socket — most of what an idle
//! session costs. After the handshake we take the socket out and split it.
//! The write half starts with an empty buffer that grows only as frames need.
//! The read half ([`AdaptiveReader`]) holds no buffer at all while the socket
//! is idle and reads 8 KiB at a time while data keeps coming, so idle sessions
//! stay small and busy ones make one read call per many frames. Bytes that
//! arrived together with the handshake response are decoded first.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::{Decoder, Framed};
use awc::error::WsProtocolError;
use awc::ws::{Codec, Frame};
use awc::BoxedSocket;
use bytes::BytesMut;
use futures_util::stream::{self, Stream, StreamExt};
use tokio::io::{ReadHalf, WriteHalf};
use tokio_util::codec::FramedWrite;

/// Read size while data keeps arriving.
const BUSY_READ: usize = 8 * 1024;
/// Read size after a quiet spell.
const QUIET_READ: usize = 1024;

/// Inbound frames of one connection.
pub type WsStream = Pin<Box<dyn Stream<Item = Result<Frame, WsProtocolError>>>>;

/// Outbound side of one connection.
pub type WsSink = FramedWrite<WriteHalf<BoxedSocket>, Codec>;

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
        busy: false,
        done: false,
    };
    let writer = FramedWrite::with_capacity(write, codec, 0);
    (writer, Box::pin(stream::iter(early).chain(reader)))
}

/// Decodes frames from the read half with a buffer that exists only while
/// data is flowing (see the module docs).
pub struct AdaptiveReader {
    io: ReadHalf<BoxedSocket>,
    codec: Codec,
    buf: BytesMut,
    /// The last read filled the space it was given: expect more.
    busy: bool,
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
            let want = if this.busy { BUSY_READ } else { QUIET_READ };
            if this.buf.capacity() - this.buf.len() < want / 2 {
                this.buf.reserve(want);
            }
            let room = this.buf.capacity() - this.buf.len();
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.buf) {
                Poll::Pending => {
                    if this.buf.is_empty() {
                        // Idle: hold no memory until the socket is readable again.
                        this.buf = BytesMut::new();
                        this.busy = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => this.done = true,
                Poll::Ready(Ok(n)) => this.busy = n == room,
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(WsProtocolError::Io(e))));
                }
            }
        }
    }
}
