//! Logging setup: `tracing` to stderr, human-readable or JSON lines.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Directives added to any filter, `RUST_LOG` included: the HTTP client of notifications
/// logs the receiver's host at debug and its whole URL at trace, and a webhook URL is a
/// credential (a Slack URL is the only one it has).
const QUIET: [&str; 2] = ["ureq=off", "ureq_proto=off"];

/// Install the global subscriber. `RUST_LOG`, when set, overrides `[log] level`.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = QUIET.iter().fold(filter, |f, d| match d.parse() {
        Ok(d) => f.add_directive(d),
        Err(_) => f,
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match cfg.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}
