//! `ccr-supervisor chaos`: the long run, with this same binary as the supervisor.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;

use super::{run, ChaosOptions};

/// Which settings to start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// The test suite's run: 40 sessions, 50 s, frequent faults and kills.
    Short,
    /// A long run: fewer faults per session, a kill every 20-60 s, progress lines.
    Long,
}

/// `ccr-supervisor chaos` options.
#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Starting settings; the flags below override them.
    #[arg(long, value_enum, default_value = "long")]
    pub preset: Preset,
    /// Number of sessions (default 300 for long, 40 for short).
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Length of the chaos phase, e.g. `30m` (default 30m for long, 50s for short).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// The seed of all randomness (default: env CHAOS_SEED, else random; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The supervisor binary to run and kill (default: this binary).
    #[arg(long)]
    pub exe: Option<PathBuf>,
    /// Never `kill -9` the supervisor (a soak: one process for the whole run, its RSS
    /// sampled throughout).
    #[arg(long)]
    pub no_kill: bool,
    /// Supervisor processes. 1: one supervisor on a SQLite ledger. More: a cluster
    /// sharing the sessions by leases on a throwaway PostgreSQL (needs PostgreSQL
    /// installed), its instances killed, frozen and stopped in turn.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub instances: u16,
    /// `[cluster] lease_period` of a cluster's instances, e.g. `2s` (default 1s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lease_period: Option<Duration>,
}

/// Run it; exit 0 when no invariant broke, 1 when one did or the run failed, 2 on bad arguments.
pub fn main(args: ChaosArgs) -> ExitCode {
    let seed = match args.seed.map_or_else(super::seed_from_env, Ok) {
        Ok(seed) => seed,
        Err(e) => {
            eprintln!("ccr-supervisor chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    let exe = match args.exe.map_or_else(std::env::current_exe, Ok) {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("ccr-supervisor chaos: cannot find this binary: {e}");
            return ExitCode::from(2);
        }
    };
    let mut opts = match args.preset {
        Preset::Short => ChaosOptions::short(exe, seed),
        Preset::Long => ChaosOptions::long(exe, 300, Duration::from_secs(30 * 60), seed),
    };
    opts = opts.in_cluster(usize::from(args.instances));
    if let Some(p) = args.lease_period {
        opts.cluster.lease_period = p;
    }
    if let Some(n) = args.sessions {
        opts.sessions = n;
    }
    if let Some(d) = args.duration {
        opts.duration = d;
    }
    if args.no_kill {
        // The first kill would come after the chaos phase, when none are made.
        let never = opts.duration.saturating_mul(2) + Duration::from_secs(3600);
        opts.kill_every = (never, never);
    }
    let fleet = match opts.instances {
        1 => "one supervisor".to_owned(),
        n => format!(
            "{n} instances on PostgreSQL, lease period {:?},",
            opts.cluster.lease_period
        ),
    };
    eprintln!(
        "chaos: seed {seed}, {} sessions, {:?} of chaos, {fleet} binary {}",
        opts.sessions,
        opts.duration,
        opts.exe.display()
    );
    match actix_rt::System::new().block_on(run(opts)) {
        Ok(outcome) => {
            println!("{}", outcome.report());
            if outcome.passed() {
                ExitCode::SUCCESS
            } else {
                eprintln!("chaos: FAILED (seed {seed})");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("chaos: the run failed (seed {seed}): {e:#}");
            ExitCode::FAILURE
        }
    }
}
