//! `/healthz` latency sampled during a phase (the join), from a thread of its own so
//! the harness's event loop (polling the simulator) never delays a sample.
//!
//! Each sample is what a health checker sees: a new connection, `GET /healthz`,
//! the whole answer read; a sample that fails or takes longer than [`SAMPLE_TIMEOUT`]
//! counts as a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest wait for one answer.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running sampler; [`HealthProbe::finish`] stops it and returns what it saw.
pub struct HealthProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Samples>,
}

/// Latencies of the answered samples (µs) and the number that failed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Samples {
    /// Microseconds from connect to the end of each answer.
    pub latencies_us: Vec<u64>,
    /// Samples that got no `200` answer in time.
    pub failed: u64,
}

impl HealthProbe {
    /// Sample `GET /healthz` of the API at `addr` every `every` until finished.
    pub fn start(addr: SocketAddr, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-healthz".into())
            .spawn(move || {
                let mut samples = Samples::default();
                while !flag.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match sample(addr) {
                        Ok(()) => samples.latencies_us.push(t.elapsed().as_micros() as u64),
                        Err(_) => samples.failed += 1,
                    }
                    std::thread::sleep(every.saturating_sub(t.elapsed()));
                }
                samples
            })
            .expect("cannot start the healthz sampler");
        Self { stop, thread }
    }

    /// Stop sampling; everything sampled so far.
    pub fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// One `GET /healthz` on a new connection; `Err` unless the status is 200.
fn sample(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, SAMPLE_TIMEOUT)?;
    s.set_read_timeout(Some(SAMPLE_TIMEOUT))?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    if answer.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("not 200"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_a_server_and_counts_failures() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for (i, conn) in listener.incoming().take(2).enumerate() {
                let mut conn = conn.unwrap();
                let mut buf = [0u8; 512];
                let _ = conn.read(&mut buf);
                let status = if i == 0 { "200 OK" } else { "503 Busy" };
                let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            }
        });
        assert!(sample(addr).is_ok());
        assert!(sample(addr).is_err(), "a 503 is a failure");
        server.join().unwrap();
    }
}
