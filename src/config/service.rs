//! The `[supervisor]`, `[log]` and `[sim]` sections: how the service itself runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::fields::{Errors, Table};
use super::{LogConfig, LogFormat, SimConfig, SupervisorConfig};

pub(super) fn supervisor(mut t: Table, errs: &mut Errors) -> SupervisorConfig {
    let s = SupervisorConfig {
        arbiters: t.usize(errs, "arbiters", 0, 0..=256),
        max_restarts: t.u32(errs, "max_restarts", 5, 0..=u32::MAX),
        restart_period: t.positive_duration(errs, "restart_period", Duration::from_secs(60)),
        restart_backoff_initial: t.positive_duration(
            errs,
            "restart_backoff_initial",
            Duration::from_millis(500),
        ),
        restart_backoff_max: t.duration(errs, "restart_backoff_max", Duration::from_secs(30)),
        resolved_prompts: t.usize(
            errs,
            "resolved_prompts",
            super::DEFAULT_RESOLVED_PROMPTS,
            1..=100_000_000,
        ),
        resolved_prompts_bytes: t.usize(
            errs,
            "resolved_prompts_bytes",
            super::DEFAULT_RESOLVED_PROMPTS_BYTES,
            1 << 20..=1 << 40,
        ),
    };
    if s.restart_backoff_max < s.restart_backoff_initial {
        errs.push(
            t.key_path("restart_backoff_max"),
            "must be >= supervisor.restart_backoff_initial",
        );
    }
    t.finish(errs);
    s
}

pub(super) fn log(mut t: Table, errs: &mut Errors) -> LogConfig {
    let format = match t.string(errs, "format") {
        None => LogFormat::Pretty,
        Some(f) if f.eq_ignore_ascii_case("pretty") => LogFormat::Pretty,
        Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
        Some(f) => {
            errs.push(
                t.key_path("format"),
                format!("expected \"pretty\" or \"json\", got {f:?}"),
            );
            LogFormat::Pretty
        }
    };
    let level = t.string(errs, "level").unwrap_or_else(|| "info".to_owned());
    if level.trim().is_empty() {
        errs.push(t.key_path("level"), "must not be empty");
    } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
        errs.push(
            t.key_path("level"),
            format!("invalid filter {level:?}: {e}"),
        );
    }
    t.finish(errs);
    LogConfig { format, level }
}

pub(super) fn sim(mut t: Table, errs: &mut Errors) -> SimConfig {
    let s = SimConfig {
        embedded: t.bool(errs, "embedded", false),
        bind: t.socket_addr(errs, "bind", SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
        turn_pause: t.duration(errs, "turn_pause", Duration::from_secs(5)),
    };
    t.finish(errs);
    s
}
