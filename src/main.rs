//! `ccr-supervisor` binary: run the service (default), or the standalone simulator.

#[cfg(feature = "demo")]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
#[cfg(feature = "demo")]
use std::time::Duration;

use clap::{Parser, Subcommand};

#[cfg(feature = "demo")]
use ccr_sim as sim;
use ccr_supervisor::{app, telemetry};

/// The process allocator, tuned by `alloc::tune` first thing in `main`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--version`: the package version and the git commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CCR_GIT_COMMIT"), ")");

/// Supervise many remote Claude Code sessions and answer their permission prompts.
#[derive(Parser, Debug)]
#[command(name = "ccr-supervisor", version = VERSION, about)]
struct Cli {
    /// Config file (TOML); env `CCR_SUPERVISOR__SECTION__KEY` overrides keys.
    #[arg(long, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the supervisor (the default).
    Run,
    /// Validate the config file and print a summary, without starting anything.
    CheckConfig,
    /// Run a standalone CCR simulator with demo sessions `sim-1..sim-N`.
    #[cfg(feature = "demo")]
    Sim {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8701")]
        bind: SocketAddr,
        /// Number of demo sessions.
        #[arg(long, default_value_t = 4)]
        sessions: usize,
        /// Bearer token every session expects.
        #[arg(long, env = "CCR_SIM_TOKEN", default_value = "sim-token")]
        token: String,
        /// Pause between demo turns.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        turn_pause: Duration,
        /// Load mode for benchmarks instead of the demo: `idle`, `flood` or `roundtrip`
        /// (sessions `<id-prefix>1..N`, control API under `/load/`).
        #[arg(long)]
        load: Option<sim::load::LoadMode>,
        /// Load mode: total SDK frames (flood) or prompts (roundtrip) per second; 0 = unlimited (flood).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Load mode: bytes per flood SDK frame.
        #[arg(long, default_value_t = 800)]
        frame_bytes: usize,
        /// Load mode: session id prefix.
        #[arg(long, default_value = "sim-")]
        id_prefix: String,
        /// Load mode: server worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// The decision ledger's maintenance: `backup PATH` copies it while the service runs.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Operator client: list sessions and prompts, answer them, watch events.
    Ctl(Box<ccr_ctl::CtlArgs>),
    /// Print a shell completion script (`source <(ccr-supervisor completions bash)`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `ccr-supervisor manpage > ccr-supervisor.1`.
    Manpage,
    #[cfg(feature = "demo")]
    /// Benchmark the supervisor against a load-mode simulator (both spawned as processes).
    Bench(ccr_bench::BenchArgs),
    #[cfg(feature = "demo")]
    /// Chaos test: a fault-injecting CCR peer, random operators and `kill -9`
    /// restarts of this binary as the supervisor; checks no prompt is lost or answered twice.
    Chaos(ccr_chaos::ChaosArgs),
}

/// `ccr-supervisor ledger ...`.
#[derive(Subcommand, Debug)]
enum LedgerCommand {
    /// Copy the ledger (database and journal) into one consistent SQLite file at PATH,
    /// online: the service may keep running.
    Backup {
        /// Where the copy goes; an existing file is refused unless --force.
        path: PathBuf,
        /// Replace PATH if it exists.
        #[arg(long)]
        force: bool,
        /// The ledger database (default: `[ledger] path` of --config).
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    ccr_supervisor::alloc::tune();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        #[cfg(feature = "demo")]
        Command::Sim {
            bind,
            sessions,
            token,
            turn_pause,
            load,
            rate,
            frame_bytes,
            id_prefix,
            workers,
        } => {
            telemetry::init(&ccr_supervisor::config::LogConfig {
                format: ccr_supervisor::config::LogFormat::Pretty,
                level: if load.is_some() { "warn" } else { "info" }.into(),
            });
            let result = actix_rt::System::new().block_on(async move {
                match load {
                    Some(mode) => {
                        let opts = sim::load::LoadOptions {
                            mode,
                            sessions,
                            id_prefix,
                            token,
                            rate,
                            frame_bytes,
                            workers,
                        };
                        sim::load::run_load(bind, opts).await
                    }
                    None => sim::run_standalone(bind, sessions, token, turn_pause).await,
                }
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ccr-supervisor sim: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig => match app::check_config(&cli.config) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} sessions, API on {})",
                    cli.config.display(),
                    cfg.sessions.len(),
                    cfg.api.bind
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", cli.config.display());
                ExitCode::from(2)
            }
        },
        Command::Ledger(LedgerCommand::Backup {
            path,
            force,
            ledger,
        }) => match app::backup_ledger(&cli.config, ledger, &path, force) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ccr-supervisor ledger backup: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run => run(&cli.config),
        Command::Ctl(args) => ccr_ctl::run(*args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "ccr-supervisor", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Manpage => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ccr-supervisor manpage: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "demo")]
        Command::Bench(args) => ccr_bench::run(args),
        #[cfg(feature = "demo")]
        Command::Chaos(args) => ccr_chaos::main(args),
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let cfg = match app::load_config_to_run(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!(
                "ccr-supervisor: invalid configuration in {}:\n{e}",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    telemetry::init(&cfg.log);
    let result: anyhow::Result<()> = actix_rt::System::new().block_on(async move {
        let running = app::start_reloadable(cfg, path.to_owned()).await?;
        reload_on_sighup(running.reloader.clone());
        println!("ccr-supervisor: operator API on {}", running.api_url());
        wait_for_signal().await;
        let deadline = running.shutdown_timeout;
        running.shutdown(deadline).await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccr-supervisor: {e:#}");
            ExitCode::from(app::exit_status(&e))
        }
    }
}

/// `SIGHUP`: reload the config file ([`ccr_supervisor::reload`]: sessions, policy, operator
/// tokens and notification sinks, all or nothing); the reloader logs what changed or every
/// problem, and an invalid file changes nothing.
fn reload_on_sighup(reloader: Option<std::sync::Arc<ccr_supervisor::reload::Reloader>>) {
    use actix_rt::signal::unix::{signal, SignalKind};
    let Some(reloader) = reloader else { return };
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => hup,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; reload disabled");
            return;
        }
    };
    actix_rt::spawn(async move {
        while hup.recv().await.is_some() {
            // The outcome is logged by the reloader.
            let _ = reloader.run("SIGHUP").await;
        }
    });
}

async fn wait_for_signal() {
    use actix_rt::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = actix_rt::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = actix_rt::signal::ctrl_c().await;
        }
    }
}
