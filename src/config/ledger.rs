//! `[ledger]` section -> [`LedgerConfig`]: where the decision ledger lives and how long it keeps rows.

use std::path::PathBuf;
use std::time::Duration;

use super::fields::{Errors, Table};

/// Longest accepted retention (`retain_days`), about 100 years.
const MAX_RETAIN_DAYS: u32 = 36_500;

/// `[ledger]` section: the durable decision ledger (the `ledger` module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Record prompts and decisions (`enabled`, default true).
    pub enabled: bool,
    /// SQLite file, relative to the working directory; parent dirs are created (`path`, default `./data/ledger.db`).
    pub path: PathBuf,
    /// Prune finished rows received more than this many days ago; 0 keeps them forever (`retain_days`, default 30).
    pub retain_days: u32,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from("./data/ledger.db"),
            retain_days: 30,
        }
    }
}

impl LedgerConfig {
    /// How long finished rows are kept; `None` = forever.
    pub fn retention(&self) -> Option<Duration> {
        (self.retain_days > 0).then(|| Duration::from_secs(u64::from(self.retain_days) * 86_400))
    }
}

/// Validate the `[ledger]` table.
pub(super) fn ledger(mut t: Table, errs: &mut Errors) -> LedgerConfig {
    let d = LedgerConfig::default();
    let enabled = t.bool(errs, "enabled", d.enabled);
    let path = match t.string(errs, "path") {
        None => d.path,
        Some(p) if p.trim().is_empty() || p.contains('\0') => {
            errs.push(t.key_path("path"), "must be a non-empty file path");
            d.path
        }
        Some(p) => PathBuf::from(p),
    };
    let retain_days = t.u32(errs, "retain_days", d.retain_days, 0..=MAX_RETAIN_DAYS);
    t.finish(errs);
    LedgerConfig {
        enabled,
        path,
        retain_days,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{load_from_str, ConfigError};

    const BASE: &str = "[sim]\nembedded = true\n[api]\nauth = \"disabled\"\n";

    fn load(extra: &str, env: &[(&str, &str)]) -> Result<LedgerConfig, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_from_str(&format!("{extra}\n{BASE}"), env).map(|c| c.ledger)
    }

    fn problems(extra: &str) -> Vec<(String, String)> {
        match load(extra, &[]) {
            Err(ConfigError::Invalid(list)) => {
                list.into_iter().map(|e| (e.path, e.message)).collect()
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_when_section_absent() {
        let c = load("", &[]).unwrap();
        assert_eq!(c, LedgerConfig::default());
        assert_eq!(c.retention(), Some(Duration::from_secs(30 * 86_400)));
    }

    #[test]
    fn reads_every_key_and_env_overrides() {
        let c = load(
            "[ledger]\nenabled = false\npath = \"/tmp/x/l.db\"\nretain_days = 0\n",
            &[("CCR_SUPERVISOR__LEDGER__RETAIN_DAYS", "7")],
        )
        .unwrap();
        assert!(!c.enabled);
        assert_eq!(c.path, PathBuf::from("/tmp/x/l.db"));
        assert_eq!(c.retain_days, 7);
        let forever = load("[ledger]\nretain_days = 0\n", &[]).unwrap();
        assert_eq!(forever.retention(), None);
    }

    #[test]
    fn reports_every_bad_key_with_its_path() {
        let p =
            problems("[ledger]\nenabled = \"maybe\"\npath = \"\"\nretain_days = -1\nretain = 3\n");
        let paths: Vec<&str> = p.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "ledger.enabled",
                "ledger.path",
                "ledger.retain_days",
                "ledger.retain"
            ],
            "{p:?}"
        );
        assert!(p[3].1.contains("unknown key"), "{p:?}");
        let too_long = problems("[ledger]\nretain_days = 99999\n");
        assert!(
            too_long[0].1.contains("between 0 and 36500"),
            "{too_long:?}"
        );
        let not_table = problems("ledger = 3\n");
        assert_eq!(not_table[0].0, "ledger");
    }
}
