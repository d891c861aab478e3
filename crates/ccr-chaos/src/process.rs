//! The supervisor under test as a real child process: its generated config,
//! how to launch it (one process, or one instance of a cluster: the same config
//! plus its own environment), start-up (it prints its API URL), `kill -9`,
//! `SIGSTOP`/`SIGCONT`, a clean stop, and its RSS.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use ccr_bench::child::{self, StderrTail};

/// What the supervisor prints on stdout once its API listens.
const READY: &str = "ccr-supervisor: operator API on ";
/// Lines of the child's stderr kept for failure reports.
const STDERR_TAIL: usize = 60;

/// Token every chaos session expects from the supervisor.
pub const SESSION_TOKEN: &str = "chaos-session-token";
/// Viewer token (reads the pending list and the ledger).
pub const VIEWER: (&str, &str) = ("chaos-viewer", "chaos-viewer-token");
/// The operators' (name, token) pairs; the name is recorded as `decided_by`.
pub const OPERATORS: [(&str, &str); 2] =
    [("op-a", "chaos-op-a-token"), ("op-b", "chaos-op-b-token")];

/// Id of the `[policy]` rule that allows every prompt of [`RULE_TOOL`] on arrival.
pub const RULE_ID: &str = "chaos-reads";
/// The tool [`RULE_ID`] allows (any input): its prompts are answered by the rule, not by operators.
pub const RULE_TOOL: &str = "Read";
/// What the ledger records as `decided_by` for the rule's answers.
pub fn rule_decider() -> String {
    format!("rule:{RULE_ID}")
}

/// Id of chaos session `n` (1-based).
pub fn session_id(n: usize) -> String {
    format!("chaos-{n}")
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The supervisor's config: API on 127.0.0.1:0, the peer at `base_url`, fast
/// pings and reconnects (so faults are noticed within seconds), 4001 never
/// fatal (the peer's "not found for a while" must not end a session), the
/// ledger at `ledger`, warnings only, and one policy rule ([`RULE_ID`]) allowing
/// every [`RULE_TOOL`] prompt, so part of the prompts is answered by the rule.
pub fn config_toml(base_url: &str, sessions: usize, ledger: &Path) -> String {
    let mut toml = format!(
        "[api]\nbind = \"127.0.0.1:0\"\nshutdown_timeout = \"5s\"\n\n\
         [[api.tokens]]\nname = \"{}\"\nrole = \"viewer\"\nsha256 = \"{}\"\n\n",
        VIEWER.0,
        sha256_hex(VIEWER.1)
    );
    for (name, token) in OPERATORS {
        toml.push_str(&format!(
            "[[api.tokens]]\nname = \"{name}\"\nrole = \"approver\"\nsha256 = \"{}\"\n\n",
            sha256_hex(token)
        ));
    }
    toml.push_str(&format!(
        "[ccr]\nbase_url = \"{base_url}\"\norganization_uuid = \"org-chaos\"\n\
         ping_interval = \"1s\"\npong_timeout = \"2s\"\nconnect_timeout = \"5s\"\n\n\
         [reconnect]\ntransient_delay = \"50ms\"\nnot_found_delay = \"30ms\"\n\
         not_found_attempts = 1000000\nbackoff_initial = \"20ms\"\nbackoff_max = \"500ms\"\n\n\
         [ledger]\npath = \"{}\"\n\n[log]\nlevel = \"warn\"\n\n\
         [policy]\n\n[[policy.rules]]\nid = \"{RULE_ID}\"\naction = \"allow\"\ntool = \"{RULE_TOOL}\"\n",
        ledger.display()
    ));
    for n in 1..=sessions {
        toml.push_str(&format!(
            "\n[[sessions]]\nid = \"{}\"\ntoken = \"{SESSION_TOKEN}\"\n",
            session_id(n)
        ));
    }
    toml
}

/// How to start one supervisor process: the binary, the config, and the
/// environment it gets besides (a cluster instance's identity and ledger).
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `ccr-supervisor` binary.
    pub exe: PathBuf,
    /// Its `--config`.
    pub config: PathBuf,
    /// Extra environment (after every inherited `CCR_SUPERVISOR*` variable is removed).
    pub env: Vec<(String, String)>,
}

impl Launch {
    /// Start it and wait (at most `timeout`) until its API is up.
    pub async fn spawn(&self, timeout: Duration) -> anyhow::Result<SupervisorProc> {
        SupervisorProc::spawn_with_env(&self.exe, &self.config, &self.env, timeout).await
    }
}

/// A running supervisor child (SIGKILLed if dropped).
pub struct SupervisorProc {
    child: Child,
    /// Process id.
    pub pid: u32,
    /// `http://127.0.0.1:PORT` of its API.
    pub api: String,
    stderr: StderrTail,
}

impl SupervisorProc {
    /// Start `exe --config config` and wait (at most `timeout`) until its API is up.
    pub async fn spawn(exe: &Path, config: &Path, timeout: Duration) -> anyhow::Result<Self> {
        Self::spawn_with_env(exe, config, &[], timeout).await
    }

    /// [`SupervisorProc::spawn`] with `env` added to the child's environment.
    pub async fn spawn_with_env(
        exe: &Path,
        config: &Path,
        env: &[(String, String)],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(exe);
        cmd.arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        child::clear_supervisor_env(cmd.as_std_mut());
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("supervisor has no pid"))?;
        let stderr = StderrTail::keep(child.stderr.take().expect("piped"), STDERR_TAIL);
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix(READY) {
                    return Some(url.trim().to_owned());
                }
            }
            None
        };
        let api = match tokio::time::timeout(timeout, ready).await {
            Ok(Some(api)) => api,
            Ok(None) => bail!(
                "supervisor exited before its API was up; stderr:\n{}",
                stderr.text()
            ),
            Err(_) => bail!(
                "supervisor API not up within {timeout:?}; stderr:\n{}",
                stderr.text()
            ),
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        actix_rt::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(SupervisorProc {
            child,
            pid,
            api,
            stderr,
        })
    }

    /// `kill -9`.
    pub fn kill9(&self) {
        self.signal(libc::SIGKILL);
    }

    /// Send `signal` (`SIGSTOP`, `SIGCONT`, `SIGTERM`, ...).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child, not yet reaped (reaping happens in `wait`).
        unsafe {
            libc::kill(self.pid as libc::pid_t, signal);
        }
    }

    /// Wait for the process to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// The exit status if it already exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        // A stopped process holds SIGTERM until it is continued.
        self.signal(libc::SIGCONT);
        child::stop(&mut self.child, grace).await;
    }

    /// SIGTERM, and wait for the exit (SIGKILL after `grace`): its exit status when it
    /// exited by itself in time, `None` when it had to be killed.
    pub async fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            return status.ok();
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        None
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        child::vm_rss_kib(&status)
    }

    /// The last lines of its stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr.text()
    }
}

/// A fresh private directory for the run's config and ledger, removed on drop.
pub fn run_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("ccr-chaos-")
        .tempdir()
        .context("cannot create a temporary directory")
}

/// Write the config into `dir`; returns its path.
pub fn write_config(dir: &Path, base_url: &str, sessions: usize) -> anyhow::Result<PathBuf> {
    let path = dir.join("config.toml");
    let toml = config_toml(base_url, sessions, &dir.join("ledger.db"));
    std::fs::write(&path, toml).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_config_is_valid() {
        let dir = run_dir().unwrap();
        let path = write_config(dir.path(), "http://127.0.0.1:9", 3).unwrap();
        let cfg = ccr_supervisor::config::load(&path).expect("valid config");
        assert_eq!(cfg.sessions.len(), 3);
        assert_eq!(&*cfg.sessions[2].id, "chaos-3");
        assert_eq!(cfg.reconnect.not_found_attempts, 1_000_000);
        let rules = &cfg.policy.rules;
        assert_eq!(rules.len(), 1);
        assert_eq!(
            (rules[0].id.as_str(), rules[0].tool.as_str()),
            (RULE_ID, RULE_TOOL)
        );
    }
}
