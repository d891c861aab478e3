//! The TCP connector of the session client: `connect()` on its own thread, from the
//! `[ccr] source_addresses` in turn.
//!
//! Why a thread: a nonblocking `connect()` still runs the kernel's search for a free
//! ephemeral port inside the call, and towards one destination that search gets slow
//! once half the port range is in use (Linux tries the even ports first: about 14,000
//! of the 28,232 in 32768–60999; past them one call took 2–4 ms here, so 19,900
//! sessions spent over 15 s in `connect()`). Made inline, that stalls every other
//! session of the arbiter thread and their handshakes time out. Here the call is made
//! on the `ccr-connect` thread (a bounded queue in front of it); the session thread
//! only waits, asynchronously, for the socket to become writable.
//!
//! Why source addresses: the port search is per (source, destination) pair, so each
//! source address has a port range of its own towards the same endpoint. With
//! `IP_BIND_ADDRESS_NO_PORT` the port is still chosen at `connect()` (per pair), not at
//! `bind()` (which would need a port unique for the address alone).
//!
//! Names are resolved as awc does by default (actix-tls's resolver: off-thread, on
//! the runtime's blocking pool), before the address is handed to the thread.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, Resolver, ResolverService};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use tokio::sync::{mpsc, oneshot};

/// Connects waiting for the `ccr-connect` thread; a session beyond them waits
/// (asynchronously) for room.
const QUEUE: usize = 1024;

/// Connects made so far, process-wide: which source address the next one takes.
static TURN: AtomicUsize = AtomicUsize::new(0);

/// The source address of the `turn`-th connect to `dest`: the addresses of `dest`'s
/// family, in turn; `None` (the system picks) when there is none of that family.
pub fn pick_source(sources: &[IpAddr], turn: usize, dest: &SocketAddr) -> Option<IpAddr> {
    let same = |ip: &&IpAddr| ip.is_ipv4() == dest.is_ipv4();
    let n = sources.iter().filter(same).count();
    if n == 0 {
        return None;
    }
    sources.iter().filter(same).nth(turn % n).copied()
}

/// awc's TCP connector service (`awc::Connector::connector`): resolve, then connect on
/// the connect thread from the next source address.
#[derive(Clone)]
pub struct Dialer {
    resolver: ResolverService,
    sources: Arc<[IpAddr]>,
}

impl Dialer {
    /// A connector binding to `sources` in turn (none: the system picks, as before).
    pub fn new(sources: Arc<[IpAddr]>) -> Self {
        Self {
            resolver: Resolver::default().service(),
            sources,
        }
    }
}

impl Service<ConnectInfo<Uri>> for Dialer {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let resolved = self.resolver.call(req);
        let sources = self.sources.clone();
        Box::pin(async move {
            let req = resolved.await?;
            let addrs: Vec<SocketAddr> = req.addrs().collect();
            let mut last = None;
            for addr in addrs {
                let source = pick_source(&sources, TURN.fetch_add(1, Ordering::Relaxed), &addr);
                match connect(addr, source).await {
                    Ok(stream) => return Ok(Connection::new(req.request().clone(), stream)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.map_or(ConnectError::Unresolved, ConnectError::Io))
        })
    }
}

/// One `connect()` for the connect thread to start.
struct Job {
    addr: SocketAddr,
    source: Option<IpAddr>,
    reply: oneshot::Sender<io::Result<std::net::TcpStream>>,
}

/// The queue of the `ccr-connect` thread, started on first use.
fn queue() -> &'static mpsc::Sender<Job> {
    static QUEUE_TX: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE_TX.get_or_init(|| {
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("ccr-connect".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    let _ = job.reply.send(start_connect(job.addr, job.source));
                }
            })
            .expect("cannot start the ccr-connect thread");
        tx
    })
}

/// Connect to `addr` from `source`: the syscall on the connect thread, the wait for
/// the handshake here (asynchronously, on the caller's runtime).
async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let (reply, rx) = oneshot::channel();
    let gone = || io::Error::other("the ccr-connect thread is gone");
    queue()
        .send(Job {
            addr,
            source,
            reply,
        })
        .await
        .map_err(|_| gone())?;
    let socket = rx.await.map_err(|_| gone())??;
    let stream = TcpStream::from_std(socket)?;
    stream.writable().await?;
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    // Writable without an error can still mean "not connected" (as tokio checks).
    stream.peer_addr()?;
    Ok(stream)
}

/// A nonblocking socket with `connect()` started (or done: loopback often completes
/// inside the call).
fn start_connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<std::net::TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = source {
        if let Err(e) = bind_address_no_port(&socket) {
            // Still correct without it, only with fewer ports: one per address, not per pair.
            tracing::debug!(error = %e, "IP_BIND_ADDRESS_NO_PORT not set");
        }
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// `IP_BIND_ADDRESS_NO_PORT`: `bind()` takes the address only; the port is chosen at
/// `connect()`, unique per (source, destination) rather than per source.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn bind_address_no_port(_: &socket2::Socket) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests;
