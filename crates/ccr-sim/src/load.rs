//! Load mode of the simulator: thousands of sessions `PREFIX1..PREFIXN`,
//! driven by a benchmark harness over a small control API.
//!
//! Unlike the scripted simulator (one actor and a shared, locked table per
//! session, every frame recorded), load mode keeps per-session state to a few
//! atomics and writes pre-rendered frames through a bounded channel, so it
//! sustains far more traffic than the supervisor under test and only ever
//! writes as fast as the peer reads (no unbounded buffering, in the process or
//! in the kernel: see `LOAD_SEND_BUFFER`).
//!
//! Control API (same listener, loopback use only):
//! - `GET  /load/stats`: counters (live, attempts, frames, prompts, answers);
//! - `POST /load/start`, `POST /load/stop`: start / stop generating traffic;
//! - `POST /load/drop?code=1001`: close every live socket with `code`, reset
//!   the attempt log, keep accepting;
//! - `GET  /load/sent`: SDK frames delivered per session (index 0 = `PREFIX1`);
//! - `GET  /load/attempts`: upgrade attempts since the last drop, in ms after it;
//! - `GET  /load/latency`: `[value_us, count]` pairs of the prompt round-trip histogram;
//! - `GET  /load/sessions`: per session, live connections and connections accepted.
//!
//! Prompts are booked per session (`load_book`), across its connections: an `initialize`
//! reply lists the session's unanswered prompts, as a current CLI does, so a prompt
//! whose connection died (its supervisor killed) is answered on the next one, once.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::watch;

use super::load_book::Book;
use super::load_conn;

/// What every session does once the harness says `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Hold the connection, answer pings.
    Idle,
    /// Stream SDK frames as fast as the peer reads them (or at `rate`).
    Flood,
    /// Send tool prompts at `rate` in total and time each answer.
    Roundtrip,
}

impl FromStr for LoadMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "idle" => Ok(LoadMode::Idle),
            "flood" => Ok(LoadMode::Flood),
            "roundtrip" => Ok(LoadMode::Roundtrip),
            other => Err(format!(
                "unknown load mode {other:?} (idle, flood, roundtrip)"
            )),
        }
    }
}

impl LoadMode {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LoadMode::Idle => "idle",
            LoadMode::Flood => "flood",
            LoadMode::Roundtrip => "roundtrip",
        }
    }
}

/// Settings of a load-mode simulator.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// What sessions do after `start`.
    pub mode: LoadMode,
    /// Number of sessions, `PREFIX1..=PREFIXN`.
    pub sessions: usize,
    /// Session id prefix.
    pub id_prefix: String,
    /// Bearer token every session expects.
    pub token: String,
    /// Total frames (flood) or prompts (roundtrip) per second over all sessions; 0 = unlimited (flood only).
    pub rate: f64,
    /// Size of each flood SDK frame in bytes.
    pub frame_bytes: usize,
    /// Server worker threads.
    pub workers: usize,
}

/// Counters and signals shared by every connection and the control routes.
pub(crate) struct LoadShared {
    pub(crate) opts: LoadOptions,
    pub(crate) live: AtomicUsize,
    pub(crate) attempts: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) accepted_since_mark: AtomicU64,
    pub(crate) rejected: AtomicU64,
    /// `(drop time, attempt offsets in ms)`.
    attempt_log: Mutex<(Instant, Vec<u32>)>,
    /// Next sequence number per session (survives reconnects).
    pub(crate) next_seq: Box<[AtomicU64]>,
    /// SDK frames handed to the socket per session.
    pub(crate) delivered: Box<[AtomicU64]>,
    /// Prompts per session, across its connections.
    pub(crate) books: Box<[Mutex<Book>]>,
    /// Live connections per session.
    pub(crate) live_per_session: Box<[AtomicU32]>,
    /// Connections accepted per session.
    pub(crate) accepted_per_session: Box<[AtomicU64]>,
    /// Connections accepted while the session already had a live one.
    pub(crate) doubled: AtomicU64,
    /// Prompts listed again in `initialize` replies.
    pub(crate) replayed: AtomicU64,
    pub(crate) sdk_enqueued: AtomicU64,
    pub(crate) sdk_delivered: AtomicU64,
    pub(crate) prompts_sent: AtomicU64,
    pub(crate) answered: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) unknown_answers: AtomicU64,
    pub(crate) outstanding: AtomicI64,
    pub(crate) latency: Mutex<Histogram<u64>>,
    /// Traffic generation on/off.
    pub(crate) running: watch::Sender<bool>,
    pub(crate) running_flag: AtomicBool,
    /// Bumped by `/load/drop`; the value is the close code to use.
    pub(crate) drop_signal: watch::Sender<(u64, u16)>,
}

impl LoadShared {
    fn new(opts: LoadOptions) -> Self {
        let counters = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        LoadShared {
            next_seq: counters(opts.sessions),
            delivered: counters(opts.sessions),
            books: (0..opts.sessions).map(|_| Mutex::default()).collect(),
            live_per_session: (0..opts.sessions).map(|_| AtomicU32::new(0)).collect(),
            accepted_per_session: counters(opts.sessions),
            doubled: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            opts,
            live: AtomicUsize::new(0),
            attempts: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            accepted_since_mark: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            attempt_log: Mutex::new((Instant::now(), Vec::new())),
            sdk_enqueued: AtomicU64::new(0),
            sdk_delivered: AtomicU64::new(0),
            prompts_sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unknown_answers: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            latency: Mutex::new(Histogram::new(3).expect("3 significant figures is valid")),
            running: watch::channel(false).0,
            running_flag: AtomicBool::new(false),
            drop_signal: watch::channel((0, 1001)).0,
        }
    }

    /// Index of session `id` (`PREFIXn` with 1 <= n <= sessions), if it is one of ours.
    pub(crate) fn index(&self, id: &str) -> Option<usize> {
        session_index(&self.opts.id_prefix, self.opts.sessions, id)
    }

    /// Record an upgrade attempt (time since the last drop).
    pub(crate) fn record_attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let mut log = self.attempt_log.lock();
        let ms = log.0.elapsed().as_millis().min(u32::MAX as u128) as u32;
        log.1.push(ms);
    }

    /// Record one prompt's round trip.
    pub(crate) fn record_latency(&self, rtt: Duration) {
        let us = (rtt.as_micros() as u64).max(1);
        let _ = self.latency.lock().record(us);
    }

    fn set_running(&self, on: bool) {
        self.running_flag.store(on, Ordering::SeqCst);
        self.running.send_replace(on);
    }

    fn stats(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "mode": self.opts.mode.name(),
            "sessions": self.opts.sessions,
            "running": self.running_flag.load(Ordering::Relaxed),
            "live": self.live.load(Ordering::Relaxed),
            "attempts": n(&self.attempts),
            "accepted": n(&self.accepted),
            "accepted_since_mark": n(&self.accepted_since_mark),
            "rejected": n(&self.rejected),
            "sdk_enqueued": n(&self.sdk_enqueued),
            "sdk_delivered": n(&self.sdk_delivered),
            "prompts_sent": n(&self.prompts_sent),
            "answered": n(&self.answered),
            "duplicates": n(&self.duplicates),
            "unknown_answers": n(&self.unknown_answers),
            "outstanding": self.outstanding.load(Ordering::Relaxed),
            "doubled": n(&self.doubled),
            "replayed": n(&self.replayed),
        })
    }
}

/// Index (0-based) of `id` = `prefix` + n, 1 <= n <= sessions.
pub(crate) fn session_index(prefix: &str, sessions: usize, id: &str) -> Option<usize> {
    let n: usize = id.strip_prefix(prefix)?.parse().ok()?;
    (1..=sessions).contains(&n).then(|| n - 1)
}

type Data = web::Data<LoadShared>;

async fn stats(shared: Data) -> HttpResponse {
    HttpResponse::Ok().json(shared.stats())
}

async fn start(shared: Data) -> HttpResponse {
    shared.set_running(true);
    HttpResponse::Ok().json(shared.stats())
}

async fn stop(shared: Data) -> HttpResponse {
    shared.set_running(false);
    HttpResponse::Ok().json(shared.stats())
}

#[derive(serde::Deserialize)]
struct DropQuery {
    code: Option<u16>,
}

async fn drop_all(shared: Data, q: web::Query<DropQuery>) -> HttpResponse {
    let code = q.code.unwrap_or(1001);
    {
        let mut log = shared.attempt_log.lock();
        *log = (Instant::now(), Vec::new());
        shared.accepted_since_mark.store(0, Ordering::SeqCst);
    }
    let live = shared.live.load(Ordering::Relaxed);
    shared.drop_signal.send_modify(|(epoch, c)| {
        *epoch += 1;
        *c = code;
    });
    HttpResponse::Ok().json(json!({"dropped": live, "code": code}))
}

async fn sent(shared: Data) -> HttpResponse {
    let delivered: Vec<u64> = shared
        .delivered
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    HttpResponse::Ok().json(json!({ "delivered": delivered }))
}

async fn attempts(shared: Data) -> HttpResponse {
    let ms = shared.attempt_log.lock().1.clone();
    HttpResponse::Ok().json(json!({ "since_mark_ms": ms }))
}

async fn latency(shared: Data) -> HttpResponse {
    let values: Vec<[u64; 2]> = shared
        .latency
        .lock()
        .iter_recorded()
        .map(|v| [v.value_iterated_to(), v.count_at_value()])
        .collect();
    HttpResponse::Ok().json(json!({ "values": values }))
}

async fn sessions(shared: Data) -> HttpResponse {
    let live: Vec<u32> = shared
        .live_per_session
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let accepted: Vec<u64> = shared
        .accepted_per_session
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    HttpResponse::Ok().json(json!({ "live": live, "accepted": accepted }))
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/v1/sessions/ws/{session_id}/subscribe",
        web::get().to(load_conn::subscribe),
    )
    .route("/load/stats", web::get().to(stats))
    .route("/load/start", web::post().to(start))
    .route("/load/stop", web::post().to(stop))
    .route("/load/drop", web::post().to(drop_all))
    .route("/load/sent", web::get().to(sent))
    .route("/load/attempts", web::get().to(attempts))
    .route("/load/latency", web::get().to(latency))
    .route("/load/sessions", web::get().to(sessions));
}

/// Kernel send buffer of each load connection. Left to autotuning, a flooding
/// connection's buffer grows to `tcp_wmem`'s maximum (4 MiB by default): 1,000
/// sessions queued ~1.2 GiB in the kernel, which put the whole host under TCP
/// memory pressure, so the kernel dropped packets and shrank windows on every
/// connection, the supervisor's event stream included. A remote session's send
/// buffer does not count against the supervisor host's memory, so the
/// simulator must not either. 256 KiB (the kernel doubles it for bookkeeping)
/// still keeps many frames in flight on loopback.
const LOAD_SEND_BUFFER: usize = 256 * 1024;

/// Bound an accepted connection's kernel send buffer (see [`LOAD_SEND_BUFFER`]).
fn bound_send_buffer(conn: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    let Some(stream) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else {
        return;
    };
    if let Err(err) = socket2::SockRef::from(stream).set_send_buffer_size(LOAD_SEND_BUFFER) {
        tracing::warn!(%err, "simulator: could not bound a connection's send buffer");
    }
}

/// Run a load-mode simulator until SIGINT/SIGTERM; prints its base URL on stdout first.
pub async fn run_load(bind: SocketAddr, opts: LoadOptions) -> std::io::Result<()> {
    let workers = opts.workers.max(1);
    let data = web::Data::new(LoadShared::new(opts));
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .workers(workers)
        .backlog(8192)
        .max_connections(1 << 20)
        .max_connection_rate(4096)
        .on_connect(bound_send_buffer)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(bind)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("simulator bound no address"))?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    println!("http://{addr}");
    use actix_rt::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = actix_rt::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    handle.stop(false).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_indexes() {
        assert_eq!(session_index("b-", 10, "b-1"), Some(0));
        assert_eq!(session_index("b-", 10, "b-10"), Some(9));
        assert_eq!(session_index("b-", 10, "b-11"), None);
        assert_eq!(session_index("b-", 10, "b-0"), None);
        assert_eq!(session_index("b-", 10, "x-1"), None);
        assert_eq!(session_index("b-", 10, "b-x"), None);
    }

    #[actix_rt::test]
    async fn accepted_connections_get_a_bounded_send_buffer() {
        let listener = actix_web::rt::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = actix_web::rt::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let size = || {
            socket2::SockRef::from(&accepted)
                .send_buffer_size()
                .unwrap()
        };
        let before = size();
        bound_send_buffer(&accepted, &mut actix_web::dev::Extensions::new());
        // Linux doubles the requested size for its own bookkeeping.
        assert_eq!(size(), 2 * LOAD_SEND_BUFFER, "was {before}");
        // Anything but a plain TCP stream is left alone.
        bound_send_buffer(&"not a socket", &mut actix_web::dev::Extensions::new());
    }

    #[test]
    fn modes_parse() {
        assert_eq!("flood".parse::<LoadMode>(), Ok(LoadMode::Flood));
        assert!("fast".parse::<LoadMode>().is_err());
        assert_eq!(LoadMode::Roundtrip.name(), "roundtrip");
    }
}
