//! Child processes the benchmarks, the chaos run and the process tests start: a clean
//! environment, their stderr's last lines, a graceful stop, and their RSS (now and peak).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, ChildStderr};

/// Keep this process's configuration out of a child's environment: no
/// `CCR_SUPERVISOR*` overrides and no `RUST_LOG`, so the child runs on its own config.
pub fn clear_supervisor_env(cmd: &mut std::process::Command) {
    cmd.env_remove("RUST_LOG");
    for (key, _) in std::env::vars_os() {
        if key
            .to_str()
            .is_some_and(|k| k.to_ascii_uppercase().starts_with("CCR_SUPERVISOR"))
        {
            cmd.env_remove(key);
        }
    }
}

/// The last lines a child process wrote to `stderr` (for the message when it fails).
#[derive(Clone, Default)]
pub struct StderrTail(Rc<RefCell<VecDeque<String>>>);

impl StderrTail {
    /// Collect the last `keep` lines of `stderr` as they are written, on the current
    /// thread's runtime.
    pub fn keep(stderr: ChildStderr, keep: usize) -> Self {
        let tail = StderrTail::default();
        let sink = tail.0.clone();
        actix_rt::spawn(async move {
            let mut r = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = r.next_line().await {
                let mut t = sink.borrow_mut();
                if t.len() == keep {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        tail
    }

    /// The lines kept so far, joined by newlines.
    pub fn text(&self) -> String {
        self.0
            .borrow()
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// SIGTERM, then SIGKILL if `child` has not exited after `grace`; reaps it either way.
pub async fn stop(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child, which has a pid, so it is not reaped yet.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status_kib(status, "VmRSS:")
}

/// `VmHWM` (peak RSS since the process started) in KiB from the text of `/proc/<pid>/status`.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status_kib(status, "VmHWM:")
}

/// The KiB figure of the `/proc/<pid>/status` line that starts with `key` (`VmRSS:`).
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_proc_status() {
        let status = "Name:\tccr\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(vm_rss_kib(status), Some(12345));
        assert_eq!(vm_rss_kib("Name:\tx\nVmRSS:\t  123456 kB\n"), Some(123_456));
        assert_eq!(vm_rss_kib("Name: x\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_rss_kib(&own).unwrap() > 0);
    }

    #[test]
    fn peak_rss_is_read_from_proc_status() {
        let status = "Name:\tccr\nVmPeak:\t  9000 kB\nVmHWM:\t  20480 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(20480));
        assert_eq!(vm_rss_kib(status), Some(12345), "VmHWM is not VmRSS");
        assert_eq!(vm_hwm_kib("Name: x\nVmRSS:\t 1 kB\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_hwm_kib(&own).unwrap() >= vm_rss_kib(&own).unwrap());
    }

    #[actix_rt::test]
    async fn stop_ends_a_child_that_ignores_sigterm() {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "trap '' TERM; echo ready; exec sleep 30"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // SIGTERM only once the shell ignores it.
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(out.next_line().await.unwrap().as_deref(), Some("ready"));
        let grace = Duration::from_millis(200);
        let started = std::time::Instant::now();
        stop(&mut child, grace).await;
        let status = child.try_wait().unwrap().expect("reaped");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "killed after the grace"
        );
        assert!(started.elapsed() >= grace);
    }
}
