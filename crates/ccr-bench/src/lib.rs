//! `ccr-supervisor bench <scenario>`: start the load-mode simulator and the
//! supervisor as separate processes (this same binary), drive them over
//! loopback and measure the supervisor from outside through `/proc`.
//!
//! - `stats`: pure figures (percentiles, windows, `/proc` parsing, checks);
//! - `procs`: child processes and their limits;
//! - `http`: JSON calls, the SSE parser, subscriber and answerers;
//! - `readers`: thousands of event-stream readers on their own thread (`roundtrip --readers`);
//! - `harness`: starting both processes and waiting on them;
//! - `health`: `/healthz` latency sampled from its own thread (the join of `connect`);
//! - `scenarios`: `connect`, `flood`, `roundtrip`, `storm`;
//! - `failover`: `failover`, a cluster of supervisors on one PostgreSQL, one of them killed;
//! - `postgres`: the throwaway PostgreSQL of `--ledger postgres` and its lease table;
//! - `report`: the JSON summary, markdown table and SVG chart;
//! - `wakeups`: how late a sleeping thread wakes during a run (the machine's noise);
//! - [`child`]: child-process helpers shared with the chaos run and the process tests.

#![warn(missing_docs)]

pub mod child;
mod failover;
mod harness;
mod health;
mod http;
mod postgres;
mod procs;
mod readers;
mod report;
mod scenarios;
mod stats;
mod trust;
mod wakeups;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;

/// A benchmark scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Open N sessions, then hold them idle: time to connect (and `/healthz` latency
    /// meanwhile), RSS per session.
    Connect,
    /// N sessions stream SDK frames as fast as possible: frames/s, CPU per frame, loss.
    Flood,
    /// N sessions send prompts at --rate in total: answer latency percentiles.
    Roundtrip,
    /// N sessions dropped at once: time to reconnect, peak attempts per 100 ms.
    Storm,
    /// --instances supervisors share N sessions by leases on one PostgreSQL, prompts
    /// flowing; one is killed: time until its sessions are connected again, prompts lost
    /// and answered twice.
    Failover,
}

/// Which database holds the supervisor's decision ledger (`--ledger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LedgerKind {
    /// A SQLite file per run (the default config's ledger).
    Sqlite,
    /// A database on a throwaway PostgreSQL server started for the run; the supervisor
    /// runs as a cluster member (`[cluster]`), owning its sessions by leases.
    Postgres,
}

impl LedgerKind {
    /// The name used on the command line and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            LedgerKind::Sqlite => "sqlite",
            LedgerKind::Postgres => "postgres",
        }
    }
}

impl Scenario {
    /// The name used on the command line and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Connect => "connect",
            Scenario::Flood => "flood",
            Scenario::Roundtrip => "roundtrip",
            Scenario::Storm => "storm",
            Scenario::Failover => "failover",
        }
    }
}

/// `ccr-supervisor bench` options.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Which scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Number of sessions.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Seconds of the measured phase: idle hold (connect), flood, prompting
    /// (roundtrip), hold before the drop (storm), prompting before the kill and again
    /// once every session is back (failover). Default 2, 10, 10, 1, 5.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Also write `<scenario>.json`, `<scenario>.md` and `<scenario>.svg` here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// roundtrip: prompts/s over all sessions (default 2 per session); failover: the
    /// same (default 0.2 per session); flood: SDK frames/s over all sessions (default 0
    /// = as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// flood: bytes per SDK frame.
    #[arg(long, default_value_t = 800)]
    pub frame_bytes: usize,
    /// Simulator worker threads (default 2 for roundtrip, else 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub sim_workers: Option<u16>,
    /// roundtrip: attach this many event-stream readers (SSE, all sessions)
    /// before prompting, and answer through the API (`POST .../permissions/{rid}`)
    /// instead of a policy rule, timing each answer POST.
    #[arg(long, default_value_t = 0)]
    pub readers: usize,
    /// The supervisor's `[api] workers` (0 = one per core).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub api_workers: u16,
    /// Run the scenario this many times (fresh processes each time) and add
    /// `reps`: the median, min and max of every figure over the runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub reps: u32,
    /// Run the supervisor under this command (words split on whitespace), e.g.
    /// `'valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p'`; with
    /// callgrind the summary adds `supervisor_instructions`.
    #[arg(long)]
    pub supervisor_wrapper: Option<String>,
    /// Bind the supervisor's session sockets to 127.0.0.1..=127.0.0.N in turn
    /// (`[ccr] source_addresses`); 0 = not set (the system picks).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=254))]
    pub source_addresses: u8,
    /// The supervisor's ledger: a SQLite file, or a database on a throwaway PostgreSQL
    /// started for the run (needs Debian's `postgresql` package). Default sqlite;
    /// failover needs (and defaults to) postgres.
    #[arg(long, value_enum)]
    pub ledger: Option<LedgerKind>,
    /// With postgres: the server's `fsync` (and `full_page_writes`). On by default, as
    /// a production server runs; `false` measures without the disk's flushes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pg_fsync: bool,
    /// failover: supervisors in the cluster (2-16).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=16))]
    pub instances: u8,
    /// failover: instead of killing a member, stop PostgreSQL for this long (e.g. `30s`),
    /// then start it again; measured: sessions that reconnected (none should, within
    /// `lease_period` + `[cluster] outage_grace`), and the time until every lease is renewed.
    #[arg(long, value_parser = parse_outage)]
    pub outage: Option<std::time::Duration>,
    /// With postgres: the supervisors' `[cluster] lease_period` (1s-10m), e.g. `2s`.
    #[arg(long, default_value = "10s", value_parser = parse_lease_period)]
    pub lease_period: std::time::Duration,
}

/// `--outage`: a duration of at least a second and at most an hour.
fn parse_outage(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if !(1..=3600).contains(&d.as_secs()) {
        return Err("must be between 1s and 1h".into());
    }
    Ok(d)
}

/// `--lease-period`: a duration (`2s`, `500ms` is refused) within the config's bounds.
fn parse_lease_period(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if !(1..=600).contains(&d.as_secs()) || d.subsec_nanos() != 0 {
        return Err("must be whole seconds between 1s and 10m".into());
    }
    Ok(d)
}

impl BenchArgs {
    /// The words of `--supervisor-wrapper` (none without it).
    fn wrapper(&self) -> Vec<String> {
        self.supervisor_wrapper
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// The ledger of this run (failover's default is postgres).
    fn ledger(&self) -> LedgerKind {
        match (self.ledger, self.scenario) {
            (Some(l), _) => l,
            (None, Scenario::Failover) => LedgerKind::Postgres,
            (None, _) => LedgerKind::Sqlite,
        }
    }

    fn duration(&self) -> std::time::Duration {
        let default = match self.scenario {
            Scenario::Connect => 2.0,
            Scenario::Flood | Scenario::Roundtrip => 10.0,
            Scenario::Storm => 1.0,
            Scenario::Failover => 5.0,
        };
        std::time::Duration::from_secs_f64(self.duration.unwrap_or(default).max(0.0))
    }

    /// Extra `[api]` keys of the supervisor's config: its workers and, with
    /// readers, caps that let them all in.
    fn api_toml(&self) -> String {
        let mut toml = format!("workers = {}\n", self.api_workers);
        if self.readers > 0 {
            let streams = self.readers + 64;
            toml.push_str(&format!(
                "max_connections = {}\nmax_stream_subscribers = {streams}\n\
                 max_stream_subscribers_per_token = {streams}\n",
                streams + 1024
            ));
        }
        toml
    }

    /// Extra `[ccr]` keys of the supervisor's config: `source_addresses` when asked.
    fn ccr_toml(&self) -> String {
        if self.source_addresses == 0 {
            return String::new();
        }
        let list: Vec<String> = (1..=self.source_addresses)
            .map(|i| format!("\"127.0.0.{i}\""))
            .collect();
        format!("source_addresses = [{}]\n", list.join(", "))
    }

    /// Simulator worker threads. The round trip is timed by the simulator
    /// itself, so it gets two: on one thread, its 1,000 sessions' timers,
    /// writes and reads queue behind each other, and on this 2-vCPU box the
    /// supervisor's own prompt-to-answer time was also slower beside it (see
    /// docs/benchmarks.md). Elsewhere one keeps the simulator's CPU low.
    fn sim_workers(&self) -> usize {
        let default = match self.scenario {
            Scenario::Roundtrip | Scenario::Failover => 2,
            _ => 1,
        };
        self.sim_workers.map_or(default, usize::from)
    }
}

/// Run the scenario `--reps` times; with more than one run the summary is the
/// last run's plus `reps` (median and range of every figure).
async fn run_reps(args: BenchArgs) -> anyhow::Result<serde_json::Value> {
    let mut runs = Vec::new();
    for rep in 1..=args.reps {
        let summary = scenarios::run(args.clone()).await?;
        if args.reps > 1 {
            eprintln!(
                "ccr-supervisor bench: run {rep} of {}: {summary}",
                args.reps
            );
        }
        runs.push(summary);
    }
    let mut last = runs.pop().expect("at least one run");
    if args.reps > 1 {
        runs.push(last.clone());
        last["reps"] = trust::repeated(&runs);
    }
    Ok(last)
}

/// Run one scenario (`--reps` times); prints one JSON summary line on stdout.
pub fn run(args: BenchArgs) -> ExitCode {
    if args.sessions == 0 {
        eprintln!("ccr-supervisor bench: --sessions must be at least 1");
        return ExitCode::from(2);
    }
    if args.scenario == Scenario::Failover && args.ledger() != LedgerKind::Postgres {
        eprintln!("ccr-supervisor bench: failover needs --ledger postgres (sessions are shared by leases in PostgreSQL)");
        return ExitCode::from(2);
    }
    if args.outage.is_some() && args.scenario != Scenario::Failover {
        eprintln!("ccr-supervisor bench: --outage is a variant of failover only");
        return ExitCode::from(2);
    }
    let result = actix_rt::System::new().block_on(run_reps(args.clone()));
    match result {
        Ok(summary) => {
            println!("{summary}");
            if let Some(dir) = &args.out {
                if let Err(e) = report::write_all(dir, &summary) {
                    eprintln!(
                        "ccr-supervisor bench: cannot write reports to {}: {e:#}",
                        dir.display()
                    );
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ccr-supervisor bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn simulator_workers_default_per_scenario_and_are_validated() {
        assert_eq!(parse(&["roundtrip"]).unwrap().sim_workers(), 2);
        assert_eq!(parse(&["flood"]).unwrap().sim_workers(), 1);
        assert_eq!(parse(&["storm"]).unwrap().sim_workers(), 1);
        let one = parse(&["roundtrip", "--sim-workers", "1"]).unwrap();
        assert_eq!(one.sim_workers(), 1);
        assert!(parse(&["flood", "--sim-workers", "0"]).is_err());
        assert!(parse(&["flood", "--sim-workers", "65"]).is_err());
    }

    #[test]
    fn reps_and_the_supervisor_wrapper_are_parsed() {
        let plain = parse(&["flood"]).unwrap();
        assert_eq!(plain.reps, 1);
        assert!(plain.wrapper().is_empty());
        let w = parse(&[
            "roundtrip",
            "--reps",
            "3",
            "--supervisor-wrapper",
            "valgrind  --tool=callgrind --callgrind-out-file=/tmp/cg.%p",
        ])
        .unwrap();
        assert_eq!(w.reps, 3);
        assert_eq!(
            w.wrapper(),
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/tmp/cg.%p"
            ]
        );
        assert!(parse(&["flood", "--reps", "0"]).is_err());
    }

    #[test]
    fn ledger_instances_and_lease_period_are_parsed() {
        let plain = parse(&["roundtrip"]).unwrap();
        assert_eq!(plain.ledger(), LedgerKind::Sqlite);
        assert!(plain.pg_fsync);
        assert_eq!(plain.lease_period, std::time::Duration::from_secs(10));
        let pg = parse(&["roundtrip", "--ledger", "postgres", "--pg-fsync", "false"]).unwrap();
        assert_eq!(pg.ledger(), LedgerKind::Postgres);
        assert!(!pg.pg_fsync);
        let f = parse(&["failover", "--instances", "4", "--lease-period", "2s"]).unwrap();
        assert_eq!(f.ledger(), LedgerKind::Postgres, "failover's default");
        assert_eq!(f.instances, 4);
        assert_eq!(f.lease_period, std::time::Duration::from_secs(2));
        assert_eq!(f.duration(), std::time::Duration::from_secs(5));
        assert_eq!(f.sim_workers(), 2);
        assert!(parse(&["failover", "--instances", "1"]).is_err());
        let o = parse(&["failover", "--outage", "30s"]).unwrap();
        assert_eq!(o.outage, Some(std::time::Duration::from_secs(30)));
        assert!(parse(&["failover", "--outage", "0s"]).is_err());
        assert!(parse(&["failover", "--outage", "2h"]).is_err());
        assert!(parse(&["failover", "--lease-period", "500ms"]).is_err());
        assert!(parse(&["failover", "--lease-period", "11m"]).is_err());
        assert!(parse(&["roundtrip", "--ledger", "mysql"]).is_err());
    }

    #[test]
    fn source_addresses_go_into_the_generated_config() {
        assert_eq!(parse(&["connect"]).unwrap().ccr_toml(), "");
        let three = parse(&["connect", "--source-addresses", "3"]).unwrap();
        let ccr = three.ccr_toml();
        assert_eq!(
            ccr,
            "source_addresses = [\"127.0.0.1\", \"127.0.0.2\", \"127.0.0.3\"]\n"
        );
        let cfg = harness::supervisor_config(
            "127.0.0.1:1".parse().unwrap(),
            "http://127.0.0.1:2",
            1,
            false,
            "",
            &ccr,
        );
        let cfg = ccr_supervisor::config::load_from_str(&cfg, Default::default()).unwrap();
        assert_eq!(cfg.ccr.source_addresses.len(), 3);
        assert!(parse(&["connect", "--source-addresses", "255"]).is_err());
    }

    #[test]
    fn readers_raise_the_stream_caps_in_the_generated_config() {
        let plain = parse(&["roundtrip"]).unwrap();
        assert_eq!(plain.api_toml(), "workers = 0\n");
        let many = parse(&["roundtrip", "--readers", "10000", "--api-workers", "1"]).unwrap();
        let toml = many.api_toml();
        assert!(toml.contains("workers = 1\n"), "{toml}");
        assert!(toml.contains("max_stream_subscribers = 10064\n"), "{toml}");
        assert!(
            toml.contains("max_stream_subscribers_per_token = 10064\n"),
            "{toml}"
        );
        let cfg = harness::supervisor_config(
            "127.0.0.1:1".parse().unwrap(),
            "http://127.0.0.1:2",
            1,
            false,
            &toml,
            "",
        );
        let cfg = ccr_supervisor::config::load_from_str(&cfg, Default::default()).unwrap();
        assert_eq!(cfg.api.limits.max_connections, 11088);
        assert_eq!(cfg.api.limits.workers, 1);
    }
}
