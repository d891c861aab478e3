//! Typed readers over the loose config tree (validation helpers for `load.rs`).
//!
//! Every reader records its own problem in [`Errors`] and falls back to the
//! default, so one pass reports every bad key at once. Readers never echo the
//! value of a secret key, and unknown keys are named without their value.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde_json::{Map, Value};

use super::KeyError;

/// Collects every problem found while validating, in the order found.
pub(super) struct Errors {
    list: Vec<KeyError>,
    /// Dotted key path -> the environment variable that set it, to point at the culprit.
    from_env: HashMap<String, String>,
    /// Keys a layer above checks (a rule's tool pattern), with the place in `list` where
    /// their problems go: see [`Errors::into_vec_with`].
    deferred: HashMap<String, usize>,
}

impl Errors {
    /// An empty collector; `from_env` maps dotted paths to the env var that set them.
    pub(super) fn new(from_env: HashMap<String, String>) -> Self {
        Self {
            list: Vec::new(),
            from_env,
            deferred: HashMap::new(),
        }
    }

    /// Record one problem at `path`.
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let error = self.annotated(path.into(), message.into());
        self.list.push(error);
    }

    /// The problem, naming the environment variable that set its key, if one did.
    fn annotated(&self, path: String, mut message: String) -> KeyError {
        if let Some(var) = self.from_env.get(&path) {
            message.push_str(&format!(" (set by environment variable {var})"));
        }
        KeyError { path, message }
    }

    /// Note that the key at `path` is checked later, by a layer above config (the
    /// policy parses a rule's tool pattern): its problems belong here in the list.
    pub(super) fn defer(&mut self, path: impl Into<String>) {
        self.deferred.insert(path.into(), self.list.len());
    }

    /// Record problems found elsewhere (e.g. while reading the environment).
    pub(super) fn extend(&mut self, errors: Vec<KeyError>) {
        self.list.extend(errors);
    }

    /// How many problems so far.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Paths of the problems so far.
    pub(super) fn paths(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|e| e.path.as_str())
    }

    /// The problems, in the order found.
    pub(super) fn into_vec(self) -> Vec<KeyError> {
        self.list
    }

    /// The problems with `more` (found by a layer above) merged in: each where its key
    /// was deferred, else at the end, so the list keeps the file's order. One about a key
    /// at or under a key already reported is left out: that key was never read as it is.
    pub(super) fn into_vec_with(self, more: Vec<KeyError>) -> Vec<KeyError> {
        let mut extra: Vec<(usize, KeyError)> = more
            .into_iter()
            .filter(|e| !self.list.iter().any(|r| covers(&r.path, &e.path)))
            .map(|e| {
                let at = self.deferred.get(&e.path).copied();
                (
                    at.unwrap_or(self.list.len()),
                    self.annotated(e.path, e.message),
                )
            })
            .collect();
        extra.sort_by_key(|(at, _)| *at); // Stable: same place, given order.
        let mut extra = extra.into_iter().peekable();
        let mut out = Vec::with_capacity(self.list.len() + extra.len());
        for (i, error) in self.list.into_iter().enumerate() {
            while let Some((_, e)) = extra.next_if(|(at, _)| *at <= i) {
                out.push(e);
            }
            out.push(error);
        }
        out.extend(extra.map(|(_, e)| e));
        out
    }
}

/// Whether a problem reported at `reported` covers `path`: the same key or a table above it.
fn covers(reported: &str, path: &str) -> bool {
    path.strip_prefix(reported)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// One table of the tree (the root, a section or a session entry), read key by key.
///
/// Each reader marks its key as known; [`Table::finish`] then reports the rest as unknown.
pub(super) struct Table<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
    known: Vec<&'static str>,
}

impl<'a> Table<'a> {
    /// Wrap `map` (absent = all defaults), whose keys live under the dotted `path`.
    pub(super) fn new(path: impl Into<String>, map: Option<&'a Map<String, Value>>) -> Self {
        Self {
            path: path.into(),
            map,
            known: Vec::new(),
        }
    }

    /// The dotted path of this table itself (`sessions[2]`).
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// The dotted path of `key` in this table.
    pub(super) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Whether `key` is set (whatever its value).
    pub(super) fn has(&self, key: &str) -> bool {
        self.map.is_some_and(|m| m.contains_key(key))
    }

    /// The raw value of `key`, marking the key as known.
    pub(super) fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.map.and_then(|m| m.get(key))
    }

    /// The sub-table `key` (a section); a non-table is an error and reads as absent.
    pub(super) fn table(&mut self, errs: &mut Errors, key: &'static str) -> Table<'a> {
        let path = self.key_path(key);
        let map = match self.raw(key) {
            None => None,
            Some(Value::Object(map)) => Some(map),
            Some(other) => {
                errs.push(
                    &path,
                    format!("expected a table ([{key}]), got {}", describe(other)),
                );
                None
            }
        };
        Table::new(path, map)
    }

    /// An optional string.
    pub(super) fn string(&mut self, errs: &mut Errors, key: &'static str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                errs.push(
                    self.key_path(key),
                    format!("expected a string, got {}", describe(other)),
                );
                None
            }
        }
    }

    /// An optional string whose value must never appear in a message (tokens, commands).
    pub(super) fn secret(&mut self, errs: &mut Errors, key: &'static str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                errs.push(
                    self.key_path(key),
                    "expected a string (value not shown: secret)",
                );
                None
            }
        }
    }

    /// An optional array of strings.
    pub(super) fn strings(&mut self, errs: &mut Errors, key: &'static str) -> Vec<String> {
        let path = self.key_path(key);
        match self.raw(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        errs.push(
                            format!("{path}[{i}]"),
                            format!("expected a string, got {}", describe(other)),
                        );
                        None
                    }
                })
                .collect(),
            Some(other) => {
                errs.push(
                    path,
                    format!("expected an array of strings, got {}", describe(other)),
                );
                Vec::new()
            }
        }
    }

    /// Like [`Table::strings`], also accepting one comma-separated string (how an
    /// environment override spells a list).
    pub(super) fn strings_or_csv(&mut self, errs: &mut Errors, key: &'static str) -> Vec<String> {
        if let Some(Value::String(s)) = self.raw(key) {
            return s
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(str::to_owned)
                .collect();
        }
        self.strings(errs, key)
    }

    /// A boolean; the strings `true` / `false` (any case) are accepted too (env values).
    pub(super) fn bool(&mut self, errs: &mut Errors, key: &'static str, default: bool) -> bool {
        match self.raw(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(other) => {
                errs.push(
                    self.key_path(key),
                    format!("expected true or false, got {}", describe(other)),
                );
                default
            }
        }
    }

    /// An unsigned integer within `range`; numeric strings are accepted (env values).
    pub(super) fn uint(
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
    pub(super) fn u32(
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
    pub(super) fn usize(
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
    pub(super) fn float(
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
    pub(super) fn duration(
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
    pub(super) fn positive_duration(
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

    /// A socket address like `127.0.0.1:8700` (no host names: nothing is resolved).
    pub(super) fn socket_addr(
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

    /// Report every key that no reader asked for (typos), by name only.
    pub(super) fn finish(self, errs: &mut Errors) {
        let Some(map) = self.map else { return };
        for key in map.keys().filter(|k| !self.known.contains(&k.as_str())) {
            errs.push(
                self.key_path(key),
                format!("unknown key (expected one of: {})", self.known.join(", ")),
            );
        }
    }
}

/// A short, non-secret rendering of a value for "got ..." in messages.
/// The entries of an array of tables (`[[name]]`) at `path`, each with its
/// indexed path (`name[2]`); a wrong shape is reported and skipped.
pub(super) fn array_of_tables<'a>(
    value: Option<&'a Value>,
    path: &str,
    errs: &mut Errors,
) -> Vec<(usize, String, &'a Map<String, Value>)> {
    let items = match value {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            let got = describe(other);
            errs.push(
                path,
                format!("expected an array of tables ([[{path}]]), got {got}"),
            );
            return Vec::new();
        }
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            match item {
                Value::Object(map) => Some((i, item_path, map)),
                other => {
                    errs.push(
                        item_path,
                        format!("expected a table, got {}", describe(other)),
                    );
                    None
                }
            }
        })
        .collect()
}

/// An identifier that shows up in logs, URLs and metrics: non-empty (else
/// `empty_hint`), at most `max` characters, only letters, digits and `_ . : -`.
pub(super) fn plain_id(id: &str, max: usize, empty_hint: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(empty_hint.to_owned());
    }
    if id.len() > max {
        return Err(format!(
            "must be at most {max} characters, got {}",
            id.len()
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
    {
        return Err(format!(
            "may contain only letters, digits and _ . : -, got {id:?}"
        ));
    }
    Ok(())
}

pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() > 64 => {
            let head: String = s.chars().take(64).collect();
            format!("{head:?}...")
        }
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "a table".into(),
    }
}
