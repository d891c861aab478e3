//! Starting the simulator and the supervisor as processes, and waiting on them.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;

use super::http::{self, get_json, post_json};
use super::postgres::{self, Pg};
use super::procs::{self, Proc, Ready};
use super::readers::Readers;
use super::stats::SessionsView;
use super::trust;
use super::{BenchArgs, LedgerKind};
use ccr_sim::load::LoadMode;

/// Bearer token of every bench session.
pub const TOKEN: &str = "bench-token";
/// Session ids are `b-1..b-N`.
pub const PREFIX: &str = "b-";
/// Open files a process needs besides its sockets.
const FD_HEADROOM: u64 = 512;

/// The supervisor's generated config: N sessions on the simulator, API on
/// `api` (plus the `[api]` keys in `api_extra` and the `[ccr]` keys in `ccr_extra`).
pub fn supervisor_config(
    api: SocketAddr,
    sim_url: &str,
    sessions: usize,
    policy: bool,
    api_extra: &str,
    ccr_extra: &str,
) -> String {
    let mut s = format!(
        "[api]\nbind = \"{api}\"\n# Loopback benchmark: no operator tokens needed.\nauth = \"disabled\"\n{api_extra}\n[ccr]\nbase_url = \"{sim_url}\"\n\
         organization_uuid = \"00000000-0000-4000-8000-000000000000\"\n{ccr_extra}\n\
         [reconnect]\n\n[supervisor]\narbiters = 0\n\n[log]\nlevel = \"warn\"\n\n\
         [sim]\nembedded = false\n\n"
    );
    if policy {
        s.push_str("[[policy.rules]]\naction = \"allow\"\ntool = \"Bash\"\n\n");
    }
    for n in 1..=sessions {
        let _ = write!(
            s,
            "[[sessions]]\nid = \"{PREFIX}{n}\"\ntoken = \"{TOKEN}\"\n\n"
        );
    }
    s
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?)
}

/// How starting the supervisor went.
pub enum Started {
    /// It listens; time from spawn until it printed its API address.
    Ready(Duration),
    /// It exited at start; its stderr.
    Exited(String),
}

/// Both processes and the harness's HTTP client.
pub struct Harness {
    /// Client for every call.
    pub client: awc::Client,
    sim: Proc,
    /// The simulator's base URL.
    pub sim_url: String,
    sup: Option<Proc>,
    /// The supervisor's API base URL.
    pub api: String,
    /// When the supervisor was spawned.
    pub spawned_at: Instant,
    /// Remarks for the summary.
    pub notes: Vec<String>,
    /// The supervisor's config and ledger (removed with the harness).
    dir: tempfile::TempDir,
    exe: PathBuf,
    api_toml: String,
    /// Extra `[ccr]` keys (`--source-addresses`).
    ccr_toml: String,
    /// Event-stream readers kept open until the supervisor is stopped.
    pub readers: Option<Readers>,
    /// The words the supervisor runs under (`--supervisor-wrapper`), none by default.
    wrapper: Vec<String>,
    /// Instructions of the last supervisor stopped, when it ran under callgrind.
    pub supervisor_instructions: Option<u64>,
    /// The run's PostgreSQL (`--ledger postgres`); dropped (stopped) after the processes.
    pub pg: Option<Pg>,
    /// `[cluster] lease_period` with postgres.
    lease_period: Duration,
}

impl Harness {
    /// Start the simulator in `mode` for the bench's sessions.
    pub async fn start(args: &BenchArgs, mode: LoadMode, rate: f64) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let mut notes = Vec::new();
        // Before anything is timed: initdb and the server's start take a second or two.
        let pg = match args.ledger() {
            LedgerKind::Sqlite => None,
            LedgerKind::Postgres => Some(Pg::start(args.pg_fsync)?),
        };
        let (_, hard) = procs::nofile_limit();
        let need = (args.sessions + args.readers) as u64 + FD_HEADROOM;
        if hard < need {
            notes.push(format!(
                "open-files hard limit {hard} is below the {need} the supervisor needs for {} sessions and {} readers",
                args.sessions, args.readers
            ));
        }
        let sim_args: Vec<String> = [
            "sim",
            "--bind",
            "127.0.0.1:0",
            "--load",
            mode.name(),
            "--sessions",
            &args.sessions.to_string(),
            "--id-prefix",
            PREFIX,
            "--token",
            TOKEN,
            "--rate",
            &rate.to_string(),
            "--frame-bytes",
            &args.frame_bytes.to_string(),
            "--workers",
            &args.sim_workers().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut sim = procs::spawn("simulator", &[], &exe, &sim_args, &[])?;
        let sim_url = match sim.wait_line("http://", Duration::from_secs(20)).await? {
            Ready::Line(l) => l.trim().to_owned(),
            Ready::Exited(err) => bail!("simulator exited at start:\n{err}"),
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("ccr-bench-{}-", args.scenario.name()))
            .tempdir()
            .context("cannot make a directory for the supervisor's config and ledger")?;
        Ok(Harness {
            client: http::client(),
            sim,
            sim_url,
            sup: None,
            api: String::new(),
            spawned_at: Instant::now(),
            notes,
            dir,
            exe,
            api_toml: args.api_toml(),
            ccr_toml: args.ccr_toml(),
            readers: None,
            wrapper: args.wrapper(),
            supervisor_instructions: None,
            pg,
            lease_period: args.lease_period,
        })
    }

    /// The supervisor's config file.
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// The directory of this run's ledger (database and journal).
    fn ledger_dir(&self) -> PathBuf {
        self.dir.path().join("ledger")
    }

    /// Write the supervisor's config with `sessions` sessions (and the allow rule when
    /// `policy`), its API on `addr`, and its ledger: a fresh SQLite file, or the run's
    /// PostgreSQL database (whose URL goes in the environment: see [`Self::env`]).
    fn write_config(&self, addr: SocketAddr, sessions: usize, policy: bool) -> anyhow::Result<()> {
        let mut toml = supervisor_config(
            addr,
            &self.sim_url,
            sessions,
            policy,
            &self.api_toml,
            &self.ccr_toml,
        );
        if self.pg.is_some() {
            toml.push_str(&postgres::config_toml(self.lease_period));
        } else {
            // The ledger stays on (it is part of what is measured), in a fresh file per run.
            let ledger_dir = self.ledger_dir();
            let _ = std::fs::remove_dir_all(&ledger_dir);
            std::fs::create_dir(&ledger_dir)
                .with_context(|| format!("cannot make {}", ledger_dir.display()))?;
            toml.push_str(&format!(
                "\n[ledger]\npath = {:?}\n",
                ledger_dir.join("ledger.db").display().to_string()
            ));
        }
        let config_path = self.config_path();
        std::fs::write(&config_path, toml)
            .with_context(|| format!("cannot write {}", config_path.display()))
    }

    /// The supervisor's environment: the database URL with postgres (and `extra`).
    fn env(&self, extra: &[(&str, String)]) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .pg
            .iter()
            .map(|pg| (postgres::URL_ENV.to_owned(), pg.url().to_owned()))
            .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        env
    }

    /// Start the supervisor with `sessions` sessions (and the allow rule when `policy`).
    pub async fn start_supervisor(
        &mut self,
        sessions: usize,
        policy: bool,
    ) -> anyhow::Result<Started> {
        let addr = free_port()?;
        self.write_config(addr, sessions, policy)?;
        let args = vec![
            "--config".to_owned(),
            self.config_path().display().to_string(),
        ];
        let env = self.env(&[]);
        self.spawned_at = Instant::now();
        let mut sup = procs::spawn("supervisor", &self.wrapper, &self.exe, &args, &env)?;
        let ready = sup.wait_line("operator API on", self.slow(60)).await?;
        match ready {
            Ready::Line(_) => {
                let took = self.spawned_at.elapsed();
                self.api = format!("http://{addr}");
                self.sup = Some(sup);
                Ok(Started::Ready(took))
            }
            Ready::Exited(err) => Ok(Started::Exited(err)),
        }
    }

    /// Write the config every cluster member shares (`sessions` sessions, the allow
    /// rule when `policy`); each member's API address and instance id come from its
    /// environment. Call before [`Self::start_member`].
    pub fn write_member_config(&mut self, sessions: usize, policy: bool) -> anyhow::Result<()> {
        // Overridden per member by CCR_SUPERVISOR__API__BIND.
        self.write_config(free_port()?, sessions, policy)?;
        self.spawned_at = Instant::now();
        Ok(())
    }

    /// Start cluster member `instance_id` on the shared config; the member and its API
    /// base URL once it listens.
    pub async fn start_member(&self, instance_id: &str) -> anyhow::Result<(Proc, String)> {
        let addr = free_port()?;
        let args = vec![
            "--config".to_owned(),
            self.config_path().display().to_string(),
        ];
        let env = self.env(&[
            ("CCR_SUPERVISOR__API__BIND", addr.to_string()),
            (
                "CCR_SUPERVISOR__CLUSTER__INSTANCE_ID",
                instance_id.to_owned(),
            ),
        ]);
        let mut sup = procs::spawn("supervisor", &self.wrapper, &self.exe, &args, &env)?;
        match sup.wait_line("operator API on", self.slow(60)).await? {
            Ready::Line(_) => Ok((sup, format!("http://{addr}"))),
            Ready::Exited(err) => bail!("cluster member {instance_id} exited at start:\n{err}"),
        }
    }

    /// `secs`, or ten times that when the supervisor runs under a wrapper (valgrind
    /// runs it 20-50 times slower).
    fn slow(&self, secs: u64) -> Duration {
        Duration::from_secs(if self.wrapper.is_empty() {
            secs
        } else {
            secs * 10
        })
    }

    /// The running supervisor.
    pub fn sup(&self) -> anyhow::Result<&Proc> {
        self.sup
            .as_ref()
            .ok_or_else(|| anyhow!("supervisor not running"))
    }

    /// Stop the supervisor (to start another one); how long it took to exit after SIGTERM.
    pub async fn stop_supervisor(&mut self) -> Option<Duration> {
        let sup = self.sup.take()?;
        let pid = sup.pid;
        let t = Instant::now();
        sup.stop(self.slow(15)).await;
        let took = t.elapsed();
        if let Some(file) = trust::callgrind_out_file(&self.wrapper, pid) {
            self.supervisor_instructions = trust::callgrind_instructions(&file);
            if self.supervisor_instructions.is_none() {
                self.notes
                    .push(format!("no callgrind output found at {}", file.display()));
            }
        }
        Some(took)
    }

    /// `GET /load/stats` of the simulator.
    pub async fn sim_stats(&self) -> anyhow::Result<Value> {
        get_json(&self.client, &format!("{}/load/stats", self.sim_url)).await
    }

    /// `GET /load/<what>` of the simulator.
    pub async fn sim_get(&self, what: &str) -> anyhow::Result<Value> {
        get_json(&self.client, &format!("{}/load/{what}", self.sim_url)).await
    }

    /// `POST /load/<what>` to the simulator.
    pub async fn sim_post(&self, what: &str) -> anyhow::Result<Value> {
        let (status, body) =
            post_json(&self.client, &format!("{}/load/{what}", self.sim_url), None).await?;
        if status != 200 {
            bail!("simulator answered {status} to POST /load/{what}");
        }
        Ok(body)
    }

    /// Sample the simulator's stats every `every` until `done` holds; each sample
    /// is passed to `sample` with its time. Returns the time `done` first held.
    pub async fn wait_sim(
        &self,
        from: Instant,
        timeout: Duration,
        every: Duration,
        mut sample: impl FnMut(Duration, &Value),
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Duration> {
        loop {
            let stats = self.sim_stats().await?;
            let at = from.elapsed();
            sample(at, &stats);
            if done(&stats) {
                return Ok(at);
            }
            if at > timeout {
                bail!("timed out after {timeout:?}; simulator stats: {stats}");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Poll `GET /v1/sessions` until `n` sessions are connected.
    pub async fn wait_api_connected(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<SessionsView> {
        let start = Instant::now();
        loop {
            let view = http::sessions(&self.client, &self.api).await?;
            if view.connected >= n {
                return Ok(view);
            }
            if start.elapsed() > timeout {
                bail!(
                    "only {} of {n} sessions connected after {timeout:?}",
                    view.connected
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stop both processes (the supervisor first, with any attached readers
    /// still open) and remove the generated config and ledger; returns the supervisor's stop time.
    pub async fn shutdown(mut self) -> Option<Duration> {
        let stopped = self.stop_supervisor().await;
        drop(self.readers.take());
        self.sim.stop(Duration::from_secs(5)).await;
        // PostgreSQL last (dropping it stops it): the supervisors wrote to it to the end.
        drop(self.pg.take());
        stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn generated_config_is_valid() {
        let addr: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        let toml = supervisor_config(addr, "http://127.0.0.1:1234", 3, false, "workers = 2\n", "");
        let cfg = ccr_supervisor::config::load_from_str(&toml, HashMap::new()).unwrap();
        assert_eq!(cfg.sessions.len(), 3);
        assert_eq!(&*cfg.sessions[2].id, "b-3");
        assert_eq!(cfg.api.bind, addr);
        assert!(!cfg.sim.embedded);
        assert_eq!(cfg.api.limits.workers, 2);
    }

    #[test]
    fn policy_rule_is_emitted() {
        let addr: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        let toml = supervisor_config(addr, "http://x", 1, true, "", "");
        assert!(toml.contains("[[policy.rules]]\naction = \"allow\"\ntool = \"Bash\""));
    }
}
