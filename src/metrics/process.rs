//! The standard `process_*` metrics (CPU time, memory, open descriptors, start time),
//! read from `/proc/self` at each scrape. Linux only: elsewhere they are absent.
//!
//! A small parser rather than the `procfs` crate: five figures of two files are all we
//! need, and the parsing is pure and tested here.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// The figures of `/proc/self/stat` the metrics need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// User CPU time, clock ticks.
    pub utime: u64,
    /// System CPU time, clock ticks.
    pub stime: u64,
    /// Threads.
    pub threads: u64,
    /// Start, clock ticks after boot.
    pub starttime: u64,
    /// Virtual memory size, bytes.
    pub vsize: u64,
    /// Resident set size, pages.
    pub rss: u64,
}

/// Parse `/proc/<pid>/stat` (proc(5)); `None` when it is not that shape.
pub fn parse_stat(text: &str) -> Option<Stat> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses:
    // fields 3.. follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n (1-based, proc(5)) is fields[n - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        threads: field(20)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss: field(24)?,
    })
}

/// The `process_*` figures of one scrape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// Start time, seconds since the epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft open-files limit.
    pub max_fds: u64,
}

/// Combine the parsed files with the clock tick rate and the page size.
pub fn figures(
    stat: Stat,
    btime: u64,
    ticks_per_second: u64,
    page_size: u64,
    open_fds: u64,
    max_fds: u64,
) -> Figures {
    let tps = ticks_per_second.max(1) as f64;
    Figures {
        cpu_seconds: (stat.utime + stat.stime) as f64 / tps,
        resident_bytes: stat.rss.saturating_mul(page_size),
        virtual_bytes: stat.vsize,
        threads: stat.threads,
        start_time_seconds: btime as f64 + stat.starttime as f64 / tps,
        open_fds,
        max_fds,
    }
}

/// When the machine booted, seconds since the epoch: the wall clock minus the time since
/// boot (`CLOCK_BOOTTIME`, which counts suspended time as `/proc/<pid>/stat` does).
#[cfg(target_os = "linux")]
fn boot_time() -> Option<u64> {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer for clock_gettime.
        (unsafe { libc::clock_gettime(clock, &mut ts) } == 0)
            .then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
    };
    let since_boot = now(libc::CLOCK_BOOTTIME)?;
    let wall = now(libc::CLOCK_REALTIME)?;
    Some((wall - since_boot).round().max(0.0) as u64)
}

/// This process's figures now; `None` when `/proc` cannot be read (not Linux).
#[cfg(target_os = "linux")]
pub fn read() -> Option<Figures> {
    let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    // The boot time from the clocks, not /proc/stat: under systemd's ProcSubset=pid only
    // /proc/<pid> is visible.
    let btime = boot_time()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    // SAFETY: sysconf and getrlimit only read process state; `lim` is a valid out-pointer.
    let (ticks, page, max_fds) = unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur
        } else {
            0
        };
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
            max,
        )
    };
    Some(figures(
        stat,
        btime,
        u64::try_from(ticks).ok()?,
        u64::try_from(page).ok()?,
        // The directory listing held one descriptor of its own.
        open_fds.saturating_sub(1),
        max_fds,
    ))
}

/// This process's figures now; `None` when `/proc` cannot be read (not Linux).
#[cfg(not(target_os = "linux"))]
pub fn read() -> Option<Figures> {
    None
}

/// Encodes the `process_*` families at each scrape (register it without a prefix).
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(f) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(f.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent.",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, Option<Unit>, ConstGauge<f64>); 6] = [
            (
                "process_resident_memory",
                "Resident memory size.",
                Some(Unit::Bytes),
                ConstGauge::new(f.resident_bytes as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size.",
                Some(Unit::Bytes),
                ConstGauge::new(f.virtual_bytes as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch.",
                Some(Unit::Seconds),
                ConstGauge::new(f.start_time_seconds),
            ),
            (
                "process_open_fds",
                "Open file descriptors.",
                None,
                ConstGauge::new(f.open_fds as f64),
            ),
            (
                "process_max_fds",
                "The soft limit of open file descriptors.",
                None,
                ConstGauge::new(f.max_fds as f64),
            ),
            (
                "process_threads",
                "Threads of the process.",
                None,
                ConstGauge::new(f.threads as f64),
            ),
        ];
        for (name, help, unit, gauge) in gauges {
            gauge.encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (ccr (sup) er) S 1 4242 4242 0 -1 4194560 2515 0 0 0 \
        250 70 0 0 20 0 9 0 123456 987654321 3000 18446744073709551615 1 1 0 0 0 0 0 \
        4096 17664 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_follow_the_last_parenthesis() {
        assert_eq!(
            parse_stat(STAT),
            Some(Stat {
                utime: 250,
                stime: 70,
                threads: 9,
                starttime: 123456,
                vsize: 987654321,
                rss: 3000,
            })
        );
        assert_eq!(parse_stat("12 (x) S 1 2"), None, "too short");
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_boot_time_from_the_clocks_is_the_kernels() {
        let kernel: u64 = std::fs::read_to_string("/proc/stat")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
            .expect("btime in /proc/stat");
        let ours = boot_time().expect("clocks readable");
        assert!(ours.abs_diff(kernel) <= 2, "{ours} vs {kernel}");
    }

    #[test]
    fn figures_are_in_seconds_and_bytes() {
        let stat = parse_stat(STAT).unwrap();
        let f = figures(stat, 1_700_000_000, 100, 4096, 12, 1024);
        assert_eq!(f.cpu_seconds, 3.2);
        assert_eq!(f.resident_bytes, 3000 * 4096);
        assert_eq!(f.virtual_bytes, 987654321);
        assert_eq!(f.start_time_seconds, 1_700_000_000.0 + 1234.56);
        assert_eq!((f.open_fds, f.max_fds, f.threads), (12, 1024, 9));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_figures() {
        let f = read().expect("/proc/self is readable");
        assert!(f.resident_bytes > 0 && f.open_fds > 0 && f.max_fds >= f.open_fds);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(f.start_time_seconds <= now + 1.0 && f.start_time_seconds > now - 86_400.0 * 365.0);
    }
}
