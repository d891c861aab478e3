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
//! Why every socket gets the system's port range as its own (`IP_LOCAL_PORT_RANGE`,
//! Linux 6.3 and later): the even-ports-first search is what gets slow. Towards one
//! destination the kernel continues its search where the last one stopped, so it finds a
//! free port at once, until the even ports run out; from then on every `connect()` walks
//! all of them before it tries an odd one. A socket with a range of its own is searched
//! over every port in it, in one pass: 19,900 blocking connects to one listener took
//! 1.3 s instead of 15.9 s here (docs/benchmarks.md, "Joins"). The range is the
//! system's (`ip_local_port_range`), so no port outside it is ever taken; the odd ports
//! that Linux otherwise leaves to `bind()` with port 0 are used by these connects too.
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
    if let Some(range) = system_port_range() {
        if let Err(e) = set_local_port_range(&socket, range) {
            // Still correct without it: the port search is only slower past half the range.
            tracing::debug!(error = %e, "IP_LOCAL_PORT_RANGE not set");
        }
    }
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
fn bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return set_ip_option(socket, libc::IP_BIND_ADDRESS_NO_PORT, 1 as libc::c_int);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = socket;
        Ok(())
    }
}

/// The system's ephemeral port range (`net.ipv4.ip_local_port_range`), read once;
/// `None` where it cannot be read (then sockets keep the system's default search).
fn system_port_range() -> Option<(u16, u16)> {
    static RANGE: OnceLock<Option<(u16, u16)>> = OnceLock::new();
    *RANGE.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| parse_port_range(&text))
    })
}

/// `ip_local_port_range`'s text (`"32768\t60999\n"`) as `(low, high)`.
fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut ports = text.split_whitespace().map(str::parse::<u16>);
    match (ports.next(), ports.next(), ports.next()) {
        (Some(Ok(low)), Some(Ok(high)), None) if 0 < low && low <= high => Some((low, high)),
        _ => None,
    }
}

/// `IP_LOCAL_PORT_RANGE` of `<linux/in.h>` (Linux 6.3; not in the libc crate yet).
#[cfg(any(target_os = "linux", target_os = "android"))]
const IP_LOCAL_PORT_RANGE: libc::c_int = 51;

/// Give `socket` the port range `(low, high)` of its own, so that `connect()` searches
/// every port of it in one pass (see the module docs).
fn set_local_port_range(socket: &socket2::Socket, (low, high): (u16, u16)) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return set_ip_option(
        socket,
        IP_LOCAL_PORT_RANGE,
        u32::from(high) << 16 | u32::from(low),
    );
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (socket, low, high);
        Ok(())
    }
}

/// `setsockopt(IPPROTO_IP, name, &value)` (options socket2 does not offer).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_ip_option<T: Copy>(socket: &socket2::Socket, name: libc::c_int, value: T) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads `size_of::<T>()` bytes from a live `T`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            name,
            (&value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests;
