//! The `[api]` section: the operator API's address, buffers, timeouts, auth and limits.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::fields::{Errors, Table};
use super::{api_tokens, runtime};
use super::{ApiConfig, ApiLimits, MetricsAuth, TlsFiles, DEFAULT_HISTORY_TOTAL_BYTES};

/// Default of `[api] request_body_timeout`: generous for a JSON body of at most 1 MiB.
const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn api(mut t: Table, errs: &mut Errors) -> ApiConfig {
    let default_bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 8700));
    let auth_enabled = match t.string(errs, "auth").as_deref() {
        None | Some("enabled") => true,
        Some("disabled") => false,
        Some(other) => {
            errs.push(
                t.key_path("auth"),
                format!("expected \"enabled\" or \"disabled\", got {other:?}"),
            );
            true
        }
    };
    let metrics_auth = match t.string(errs, "metrics_auth").as_deref() {
        None | Some("viewer") => MetricsAuth::Viewer,
        Some("none") => MetricsAuth::None,
        Some(other) => {
            errs.push(
                t.key_path("metrics_auth"),
                format!("expected \"viewer\" or \"none\", got {other:?}"),
            );
            MetricsAuth::Viewer
        }
    };
    let tokens = api_tokens::api_tokens(t.raw("tokens"), errs);
    let runtime_tokens = runtime::runtime_tokens(&mut t, errs);
    let api = ApiConfig {
        bind: t.socket_addr(errs, "bind", default_bind),
        event_buffer: t.usize(errs, "event_buffer", 262_144, 1..=usize::MAX),
        history_events: t.usize(errs, "history_events", 1000, 1..=1_000_000),
        history_bytes: t.usize(errs, "history_bytes", 1 << 20, 1024..=1 << 30),
        history_total_bytes: t.usize(
            errs,
            "history_total_bytes",
            DEFAULT_HISTORY_TOTAL_BYTES,
            1024..=1 << 40,
        ),
        stream_heartbeat: t.positive_duration(errs, "stream_heartbeat", Duration::from_secs(15)),
        shutdown_timeout: t.positive_duration(errs, "shutdown_timeout", Duration::from_secs(10)),
        request_body_timeout: t.positive_duration(
            errs,
            "request_body_timeout",
            DEFAULT_REQUEST_BODY_TIMEOUT,
        ),
        auth_enabled,
        runtime_tokens,
        tokens,
        limits: api_limits(&mut t, errs),
        metrics_auth,
        tls: tls_files(&mut t, errs),
    };
    if api.auth_enabled
        && api.tokens.is_empty()
        && !errs_has(errs, "api.tokens")
        && !errs_has(errs, "api:")
    {
        errs.push(
            "api.tokens",
            "auth is enabled but no [[api.tokens]] are configured \
             (set [api] auth = \"disabled\" only for local development)",
        );
    }
    t.finish(errs);
    api
}

/// `tls_cert` and `tls_key`: both (TLS) or neither (plain HTTP). That the files are
/// readable PEM and the key matches is checked where they are loaded (`api::tls`).
fn tls_files(t: &mut Table, errs: &mut Errors) -> Option<TlsFiles> {
    fn path(t: &mut Table, errs: &mut Errors, key: &'static str) -> Option<std::path::PathBuf> {
        let value = t.string(errs, key)?;
        if value.trim().is_empty() {
            errs.push(t.key_path(key), "must not be empty (a PEM file's path)");
            return None;
        }
        Some(value.into())
    }
    let (had_cert, had_key) = (t.has("tls_cert"), t.has("tls_key"));
    let cert = path(t, errs, "tls_cert");
    let key = path(t, errs, "tls_key");
    match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (Some(_), None) if !had_key => {
            errs.push(
                t.key_path("tls_key"),
                "missing: api.tls_cert is set; set both tls_cert and tls_key, or neither",
            );
            None
        }
        (None, Some(_)) if !had_cert => {
            errs.push(
                t.key_path("tls_cert"),
                "missing: api.tls_key is set; set both tls_cert and tls_key, or neither",
            );
            None
        }
        _ => None,
    }
}

/// The `[api]` keys of [`ApiLimits`]; streams must leave connections for requests.
fn api_limits(t: &mut Table, errs: &mut Errors) -> ApiLimits {
    let d = ApiLimits::default();
    let limits = ApiLimits {
        workers: t.usize(errs, "workers", d.workers, 0..=256),
        max_connections: t.usize(errs, "max_connections", d.max_connections, 2..=10_000_000),
        max_stream_subscribers: t.usize(
            errs,
            "max_stream_subscribers",
            d.max_stream_subscribers,
            1..=10_000_000,
        ),
        max_stream_subscribers_per_token: t.usize(
            errs,
            "max_stream_subscribers_per_token",
            d.max_stream_subscribers_per_token,
            1..=10_000_000,
        ),
    };
    if limits.max_stream_subscribers >= limits.max_connections {
        errs.push(
            t.key_path("max_stream_subscribers"),
            format!(
                "must be below api.max_connections ({}): event streams would take every \
                 connection, and answers and /healthz could not connect",
                limits.max_connections
            ),
        );
    }
    limits
}

/// True when an error at `path` (or under it; `"api:"` means exactly `api`) was already reported.
fn errs_has(errs: &Errors, path: &str) -> bool {
    match path.strip_suffix(':') {
        Some(exact) => errs.paths().any(|p| p == exact),
        None => errs.paths().any(|p| p.starts_with(path)),
    }
}
