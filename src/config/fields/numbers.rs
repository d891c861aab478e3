//! [`Table`] readers of numbers, durations and socket addresses: values given as a
//! number or parsed from a string (how an environment override spells them).

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::Value;

use super::{describe, Errors, Table};

impl Table<'_> {
    /// An unsigned integer within `range`; numeric strings are accepted (env values).
    pub(in crate::config) fn uint(
        &mut self,
        errs: &mut Errors,
        key: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> u64 {
        let value = self.raw(key);
        let parsed = match value {
            None => return default,
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        let Some(n) = parsed else {
            let got = value.map(describe).unwrap_or_default();
            errs.push(
                self.key_path(key),
                format!("expected a non-negative integer, got {got}"),
            );
            return default;
        };
        if range.contains(&n) {
            return n;
        }
        let (lo, hi) = (range.start(), range.end());
        let message = if *hi >= u64::from(u32::MAX) {
            format!("must be at least {lo}, got {n}")
        } else {
            format!("must be between {lo} and {hi}, got {n}")
        };
        errs.push(self.key_path(key), message);
        default
    }

    /// A `u32` within `range` (see [`Table::uint`]).
    pub(in crate::config) fn u32(
        &mut self,
        errs: &mut Errors,
        key: &'static str,
        default: u32,
        range: RangeInclusive<u32>,
    ) -> u32 {
        let range = u64::from(*range.start())..=u64::from(*range.end());
        // In range of u32 by construction; the fallback is unreachable.
        u32::try_from(self.uint(errs, key, default.into(), range)).unwrap_or(default)
    }

    /// A `usize` within `range` (see [`Table::uint`]).
    pub(in crate::config) fn usize(
        &mut self,
        errs: &mut Errors,
        key: &'static str,
        default: usize,
        range: RangeInclusive<usize>,
    ) -> usize {
        let range = *range.start() as u64..=*range.end() as u64;
        usize::try_from(self.uint(errs, key, default as u64, range)).unwrap_or(default)
    }

    /// A float within `range`; integers and numeric strings are accepted.
    pub(in crate::config) fn float(
        &mut self,
        errs: &mut Errors,
        key: &'static str,
        default: f64,
        range: RangeInclusive<f64>,
    ) -> f64 {
        let value = self.raw(key);
        let parsed = match value {
            None => return default,
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match parsed {
            Some(x) if range.contains(&x) => x,
            Some(x) => {
                let (lo, hi) = (range.start(), range.end());
                errs.push(
                    self.key_path(key),
                    format!("must be between {lo} and {hi}, got {x}"),
                );
                default
            }
            None => {
                let got = value.map(describe).unwrap_or_default();
                errs.push(self.key_path(key), format!("expected a number, got {got}"));
                default
            }
        }
    }

    /// A humantime duration (`"2s"`, `"500ms"`, `"1m 30s"`); zero allowed.
    pub(in crate::config) fn duration(
        &mut self,
        errs: &mut Errors,
        key: &'static str,
        default: Duration,
    ) -> Duration {
        let value = self.raw(key);
        let parsed = match value {
            None => return default,
            Some(Value::String(s)) => humantime::parse_duration(s.trim()).ok(),
            Some(_) => None,
        };
        parsed.unwrap_or_else(|| {
            let got = value.map(describe).unwrap_or_default();
            errs.push(
                self.key_path(key),
                format!("expected a duration like \"30s\", got {got}"),
            );
            default
        })
    }

    /// Like [`Table::duration`], but zero is an error.
    pub(in crate::config) fn positive_duration(
        &mut self,
        errs: &mut Errors,
        key: &'static str,
        default: Duration,
    ) -> Duration {
        let before = errs.len();
        let d = self.duration(errs, key, default);
        if d.is_zero() && errs.len() == before {
            errs.push(self.key_path(key), "must be greater than 0");
            return default;
        }
        d
    }

    /// Like [`Table::duration`], within `range` (inclusive); outside it is an error.
    pub(in crate::config) fn duration_within(
        &mut self,
        errs: &mut Errors,
        key: &'static str,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Duration {
        let before = errs.len();
        let d = self.duration(errs, key, default);
        if errs.len() == before && !range.contains(&d) {
            let (lo, hi) = (range.start(), range.end());
            errs.push(
                self.key_path(key),
                format!(
                    "must be between {} and {}, got {}",
                    humantime::format_duration(*lo),
                    humantime::format_duration(*hi),
                    humantime::format_duration(d)
                ),
            );
            return default;
        }
        d
    }

    /// A socket address like `127.0.0.1:8700` (no host names: nothing is resolved).
    pub(in crate::config) fn socket_addr(
        &mut self,
        errs: &mut Errors,
        key: &'static str,
        default: SocketAddr,
    ) -> SocketAddr {
        let value = self.raw(key);
        let parsed = match value {
            None => return default,
            Some(Value::String(s)) => s.trim().parse::<SocketAddr>().ok(),
            Some(_) => None,
        };
        parsed.unwrap_or_else(|| {
            let got = value.map(describe).unwrap_or_default();
            errs.push(
                self.key_path(key),
                format!("expected a socket address like \"127.0.0.1:8700\", got {got}"),
            );
            default
        })
    }
}
