//! The `[ccr]` and `[reconnect]` sections: how to reach the CCR endpoint, and how to
//! reconnect to it.

use std::net::IpAddr;
use std::time::Duration;

use super::fields::{Errors, Table};
use super::{CcrConfig, ReconnectConfig};

pub(super) fn ccr(mut t: Table, errs: &mut Errors) -> CcrConfig {
    let base_url = endpoint_base_url(&mut t, errs).unwrap_or_default();
    let organization_uuid = endpoint_organization_uuid(&mut t, errs).unwrap_or_default();
    let source_addresses = source_addresses(&mut t, errs);
    let mut header = |t: &mut Table, key, default: &str| {
        let value = t.string(errs, key).unwrap_or_else(|| default.to_owned());
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
            errs.push(
                t.key_path(key),
                "must be non-empty printable ASCII without spaces",
            );
        }
        value
    };
    let anthropic_version = header(&mut t, "anthropic_version", "2023-06-01");
    let anthropic_beta = header(&mut t, "anthropic_beta", "ccr-byoc-2025-07-29");
    let secs = Duration::from_secs;
    let ccr = CcrConfig {
        base_url,
        organization_uuid,
        source_addresses,
        anthropic_version,
        anthropic_beta,
        max_frame_bytes: t.usize(
            errs,
            "max_frame_bytes",
            super::DEFAULT_MAX_FRAME_BYTES,
            1 << 10..=super::MAX_MAX_FRAME_BYTES,
        ),
        ping_interval: t.positive_duration(errs, "ping_interval", secs(30)),
        pong_timeout: t.positive_duration(errs, "pong_timeout", secs(10)),
        connect_timeout: t.positive_duration(errs, "connect_timeout", secs(10)),
        interrupt_timeout: t.positive_duration(errs, "interrupt_timeout", secs(10)),
        send_timeout: t.positive_duration(errs, "send_timeout", secs(30)),
        token_command_timeout: t.positive_duration(errs, "token_command_timeout", secs(10)),
        initialize_on_connect: t.bool(errs, "initialize_on_connect", true),
        initialize_timeout: t.positive_duration(errs, "initialize_timeout", secs(10)),
        response_watchdog: t.duration(errs, "response_watchdog", secs(60)),
        supported_dialog_kinds: t.strings_or_csv(errs, "supported_dialog_kinds"),
    };
    for kind in &ccr.supported_dialog_kinds {
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            errs.push(
                t.key_path("supported_dialog_kinds"),
                format!("{kind:?}: a dialog kind is letters, digits and _"),
            );
        }
    }
    t.finish(errs);
    ccr
}

/// The `base_url` key of `t` (`[ccr]` or a `[[sessions]]` entry), checked by
/// [`base_url`]; absent or empty is `None`. A bad value is reported and kept, so
/// "required" is not reported too.
pub(super) fn endpoint_base_url(t: &mut Table, errs: &mut Errors) -> Option<String> {
    let raw = t.string(errs, "base_url").filter(|s| !s.is_empty())?;
    Some(base_url(&raw).unwrap_or_else(|e| {
        errs.push(t.key_path("base_url"), e);
        raw
    }))
}

/// The `organization_uuid` key of `t` (`[ccr]` or a `[[sessions]]` entry): letters,
/// digits and `-` only.
pub(super) fn endpoint_organization_uuid(t: &mut Table, errs: &mut Errors) -> Option<String> {
    let value = t.string(errs, "organization_uuid")?;
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        errs.push(
            t.key_path("organization_uuid"),
            "may contain only letters, digits and -",
        );
    }
    Some(value)
}

/// `source_addresses`: local IP addresses to bind outgoing sockets to (an array,
/// or one comma-separated string from the environment); each must parse as an IP.
fn source_addresses(t: &mut Table, errs: &mut Errors) -> Vec<IpAddr> {
    let path = t.key_path("source_addresses");
    let listed = super::runtime::list(t.raw("source_addresses"), &path, errs);
    let mut out = Vec::new();
    for (item_path, raw) in listed.unwrap_or_default() {
        match raw.trim().parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => errs.push(
                item_path,
                format!("{raw:?} cannot be a source address (unspecified or multicast)"),
            ),
            Ok(ip) if out.contains(&ip) => errs.push(item_path, format!("{raw:?} is listed twice")),
            Ok(ip) => out.push(ip),
            Err(_) => errs.push(
                item_path,
                format!("expected an IP address (like 127.0.0.2 or ::1), got {raw:?}"),
            ),
        }
    }
    out
}

/// `http(s)://host...` with trailing slashes stripped.
pub(super) fn base_url(raw: &str) -> Result<String, String> {
    let url = raw.trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        None => Err(format!("must start with http:// or https://, got {raw:?}")),
        Some("") => Err(format!("has no host, got {raw:?}")),
        Some(r) if r.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(format!("must not contain whitespace, got {raw:?}"))
        }
        Some(_) => Ok(url.to_owned()),
    }
}

pub(super) fn reconnect(mut t: Table, errs: &mut Errors) -> ReconnectConfig {
    let d = ReconnectConfig::default();
    let r = ReconnectConfig {
        transient_delay: t.duration(errs, "transient_delay", d.transient_delay),
        transient_attempts: t.u32(
            errs,
            "transient_attempts",
            d.transient_attempts,
            0..=u32::MAX,
        ),
        not_found_delay: t.duration(errs, "not_found_delay", d.not_found_delay),
        not_found_attempts: t.u32(
            errs,
            "not_found_attempts",
            d.not_found_attempts,
            0..=u32::MAX,
        ),
        // Exponential backoff from zero would stay at zero: a reconnect storm.
        backoff_initial: t.positive_duration(errs, "backoff_initial", d.backoff_initial),
        backoff_max: t.duration(errs, "backoff_max", d.backoff_max),
        jitter: t.float(errs, "jitter", d.jitter, 0.0..=1.0),
    };
    if r.backoff_max < r.backoff_initial {
        errs.push(
            t.key_path("backoff_max"),
            "must be >= reconnect.backoff_initial",
        );
    }
    t.finish(errs);
    r
}
