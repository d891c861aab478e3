//! Child processes (the simulator and the supervisor), their open-files limit,
//! and what `/proc` says about them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::child::{self, StderrTail};

use super::stats::{parse_cpu_ticks, parse_thread_ticks};

/// Lines of a child's stderr kept for error reports.
const STDERR_TAIL: usize = 40;

/// A running child process.
pub struct Proc {
    name: &'static str,
    child: Child,
    /// Its process id.
    pub pid: u32,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: StderrTail,
}

/// The (soft, hard) open-files limit of this process.
pub fn nofile_limit() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (0, 0);
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// Start `exe args..` (after the `wrapper` command's words when there are any:
/// `valgrind --tool=callgrind ... exe args..`), with `env` added to its environment and
/// its open-files soft limit raised to the hard limit.
pub fn spawn(
    name: &'static str,
    wrapper: &[String],
    exe: &Path,
    args: &[String],
    env: &[(String, String)],
) -> anyhow::Result<Proc> {
    let mut cmd = match wrapper.split_first() {
        Some((program, words)) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    };
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: the closure only calls async-signal-safe libc functions.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let pid = child.id().ok_or_else(|| anyhow!("{name} has no pid"))?;
    let (tx, lines) = mpsc::unbounded_channel();
    let stdout = child.stdout.take().expect("piped");
    actix_rt::spawn(async move {
        let mut r = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = r.next_line().await {
            let _ = tx.send(line);
        }
    });
    let stderr = StderrTail::keep(child.stderr.take().expect("piped"), STDERR_TAIL);
    Ok(Proc {
        name,
        child,
        pid,
        lines,
        stderr,
    })
}

/// How waiting for a readiness line ended.
pub enum Ready {
    /// The line that matched.
    Line(String),
    /// The process exited first; its stderr tail.
    Exited(String),
}

impl Proc {
    /// Wait (at most `timeout`) for a stdout line containing `needle`.
    pub async fn wait_line(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<Ready> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                line = self.lines.recv() => match line {
                    Some(line) if line.contains(needle) => return Ok(Ready::Line(line)),
                    Some(_) => {}
                    None => {
                        let _ = self.child.wait().await;
                        // Let the stderr reader drain.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return Ok(Ready::Exited(self.stderr_tail()));
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    bail!("{} printed no {needle:?} within {timeout:?}; stderr:\n{}", self.name, self.stderr_tail())
                }
            }
        }
    }

    /// The last lines of its stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr.text()
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        child::vm_rss_kib(&status).ok_or_else(|| anyhow!("no VmRSS in /proc/{}/status", self.pid))
    }

    /// Peak resident set size since it started (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        child::vm_hwm_kib(&status).ok_or_else(|| anyhow!("no VmHWM in /proc/{}/status", self.pid))
    }

    /// User + system CPU time used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        let ticks = parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("bad /proc/{}/stat", self.pid))?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_micros(ticks * 1_000_000 / hz))
    }

    /// User + system CPU ticks of each of its threads by thread id, with the
    /// thread's name (`/proc/<pid>/task/<tid>/stat`).
    pub fn thread_ticks(&self) -> BTreeMap<u32, (String, u64)> {
        let mut out = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return out;
        };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            if let Some(named) = std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(parse_thread_ticks)
            {
                out.insert(tid, named);
            }
        }
        out
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        child::stop(&mut self.child, grace).await;
    }

    /// SIGKILL (no chance to release anything), and reap it.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// `nproc` and the CPU model name of this machine.
pub fn machine() -> (usize, String) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    (cpus, model)
}
