//! The session's WebSocket after the handshake, re-framed with small buffers.
//!
//! awc hands back an actix-codec `Framed` that keeps an 8 KiB read buffer and
//! an 8 KiB write buffer for the life of the socket — most of what an idle
//! session costs. After the handshake we take the socket out, split it, and
//! frame each half with buffers that start small and grow only for the frames
//! that need it. Bytes that arrived together with the handshake response are
//! decoded first, so no early frame is delayed or lost.

use std::pin::Pin;

use actix_codec::{Decoder, Framed};
use awc::error::WsProtocolError;
use awc::ws::{Codec, Frame};
use awc::BoxedSocket;
use futures_util::stream::{self, Stream, StreamExt};
use tokio::io::{ReadHalf, WriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite};

/// Initial read buffer per session; grows for larger frames.
const READ_CAPACITY: usize = 512;

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
    let mut reader: FramedRead<ReadHalf<BoxedSocket>, Codec> =
        FramedRead::with_capacity(read, codec.clone(), READ_CAPACITY.max(leftover.len()));
    // A partial frame: the rest arrives with the next read.
    reader.read_buffer_mut().extend_from_slice(&leftover);
    let writer = FramedWrite::with_capacity(write, codec, 0);
    (writer, Box::pin(stream::iter(early).chain(reader)))
}
