//! Typed readers over the loose config tree, used by the loader and the per-section readers.
//!
//! Every reader records its own problem in [`Errors`] and falls back to the
//! default, so one pass reports every bad key at once. Readers never echo the
//! value of a secret key, and unknown keys are named without their value.

mod numbers;

use serde_json::{Map, Value};

pub(super) use super::error::Errors;

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
