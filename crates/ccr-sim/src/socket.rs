//! Socket-level faults of the simulator: a reader that pauses (slow reads)
//! and an abortive close (TCP reset) of one accepted connection.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use futures_util::Stream;

/// Shared switch that holds back a connection's inbound stream while paused.
#[derive(Debug, Default)]
pub(crate) struct ReadGate {
    paused: AtomicBool,
    waker: AtomicWaker,
}

impl ReadGate {
    /// Pause or resume reading; resuming wakes the reader.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
        if !paused {
            self.waker.wake();
        }
    }
}

/// `inner`, except that nothing is read from it while the gate is paused.
///
/// Not polling the request payload makes actix-http stop reading the socket
/// once its small buffer is full, so the peer's frames pile up in the kernel
/// buffers, as with a real slow reader.
pub(crate) struct Gated<S> {
    inner: S,
    gate: Arc<ReadGate>,
}

impl<S> Gated<S> {
    /// Wrap `inner`.
    pub(crate) fn new(inner: S, gate: Arc<ReadGate>) -> Self {
        Gated { inner, gate }
    }
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.gate.paused.load(Ordering::SeqCst) {
            self.gate.waker.register(cx.waker());
            // Re-check: a resume between the load and the register must not be missed.
            if self.gate.paused.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// An accepted TCP connection: its descriptor and both addresses, captured at
/// accept time so that a later abort can check the descriptor still is that
/// connection (a closed descriptor number may have been reused meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketId {
    fd: RawFd,
    local: SocketAddr,
    peer: SocketAddr,
}

impl SocketId {
    /// Capture `stream`'s identity.
    pub(crate) fn of(stream: &tokio::net::TcpStream) -> Option<Self> {
        Some(SocketId {
            fd: stream.as_raw_fd(),
            local: stream.local_addr().ok()?,
            peer: stream.peer_addr().ok()?,
        })
    }

    /// Whether the descriptor still is this connection (its number may have been reused).
    fn is_current(&self) -> bool {
        let fd = Borrowed(self.fd);
        let sock = socket2::SockRef::from(&fd);
        sock.local_addr().ok().and_then(|a| a.as_socket()) == Some(self.local)
            && sock.peer_addr().ok().and_then(|a| a.as_socket()) == Some(self.peer)
    }

    /// Hang up (FIN both ways, what is queued is still sent) if the descriptor still is
    /// this connection; true if done. The server then sees the socket end and drops it.
    pub(crate) fn hang_up(&self) -> bool {
        if !self.is_current() {
            return false;
        }
        // SAFETY: `fd` is an open socket (its addresses were just read back from it).
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) == 0 }
    }

    /// Reset the connection (RST) if the descriptor still is this connection; true if done.
    ///
    /// `connect(fd, AF_UNSPEC)` makes Linux drop the connection at once with a
    /// reset, discarding what is queued either way, while the descriptor stays
    /// open and owned by the server (which then sees the socket fail and drops it).
    pub(crate) fn abort(&self) -> bool {
        if !self.is_current() {
            return false;
        }
        // SAFETY: `fd` is an open socket (its addresses were just read back from
        // it); a zeroed sockaddr with family AF_UNSPEC is a valid argument.
        let rc = unsafe {
            let mut addr: libc::sockaddr = std::mem::zeroed();
            addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
            libc::connect(
                self.fd,
                &addr,
                std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
            )
        };
        rc == 0
    }
}

/// A descriptor we do not own, for `socket2::SockRef`.
struct Borrowed(RawFd);

impl AsRawFd for Borrowed {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl std::os::fd::AsFd for Borrowed {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: only used while the simulator's connection (which owns the
        // descriptor) is alive, see `SocketId::abort`.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0) }
    }
}

/// `HttpServer::on_connect` hook: remember each accepted TCP connection's [`SocketId`].
pub(crate) fn remember_socket(conn: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    if let Some(id) = conn
        .downcast_ref::<actix_web::rt::net::TcpStream>()
        .and_then(SocketId::of)
    {
        data.insert(id);
    }
}
