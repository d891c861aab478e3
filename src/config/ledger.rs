//! `[ledger]` section -> [`LedgerConfig`]: where the decision ledger lives (a SQLite file,
//! or a PostgreSQL database a cluster shares) and how long it keeps rows.

use std::path::PathBuf;
use std::time::Duration;

use super::ca::{self, CaFile};
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
    /// Where the rows live (`backend`, default `"sqlite"`): PostgreSQL's settings with `"postgres"`.
    pub backend: LedgerBackend,
}

/// Which database holds the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerBackend {
    /// `"sqlite"`: the file at `path`, owned by this one process.
    Sqlite,
    /// `"postgres"`: a database every instance of a cluster shares.
    Postgres(PostgresConfig),
}

/// `[ledger] backend = "postgres"`: how to reach the database. The URL is a credential: only
/// where it comes from is configured here, and it is read when the ledger opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `url_env` or `url_file` (exactly one): a `postgres://` URL or key-value connection string.
    pub url: PgUrlSource,
    /// Connections for reads and cluster work, beside the one that writes (`pool_size`, default 4).
    pub pool_size: usize,
    /// Longest one statement may run before PostgreSQL cancels it (`statement_timeout`, default 5 s).
    pub statement_timeout: Duration,
    /// The CAs trusted for the database's TLS certificate (`ca_file`, PEM), instead of the
    /// public web PKI's roots (the default). Whether TLS is used is the URL's `sslmode`.
    pub ca_file: Option<CaFile>,
}

/// Where the PostgreSQL connection URL is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgUrlSource {
    /// `url_env = "VAR"`: the variable's value.
    Env(String),
    /// `url_file = "path"`: the file's contents, trimmed.
    File(PathBuf),
}

/// The `[ledger]` keys only `backend = "postgres"` takes.
const POSTGRES_KEYS: [&str; 5] = [
    "url_env",
    "url_file",
    "pool_size",
    "statement_timeout",
    "ca_file",
];

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from("./data/ledger.db"),
            retain_days: 30,
            backend: LedgerBackend::Sqlite,
        }
    }
}

impl LedgerConfig {
    /// PostgreSQL's settings, when that is the backend.
    pub fn postgres(&self) -> Option<&PostgresConfig> {
        match &self.backend {
            LedgerBackend::Postgres(pg) => Some(pg),
            LedgerBackend::Sqlite => None,
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
    let backend = match t.string(errs, "backend").as_deref() {
        None | Some("sqlite") => {
            let given: Vec<&str> = POSTGRES_KEYS.into_iter().filter(|k| t.has(k)).collect();
            for key in given {
                let _ = t.raw(key);
                errs.push(t.key_path(key), "only taken with backend = \"postgres\"");
            }
            LedgerBackend::Sqlite
        }
        Some("postgres") => {
            postgres(&mut t, errs).map_or(LedgerBackend::Sqlite, LedgerBackend::Postgres)
        }
        Some(other) => {
            let message = format!("expected \"sqlite\" or \"postgres\", got {other:?}");
            errs.push(t.key_path("backend"), message);
            LedgerBackend::Sqlite
        }
    };
    t.finish(errs);
    LedgerConfig {
        enabled,
        path,
        retain_days,
        backend,
    }
}

/// The PostgreSQL keys: exactly one of `url_env` / `url_file`, the pool, the timeout and
/// the CAs of its TLS.
fn postgres(t: &mut Table, errs: &mut Errors) -> Option<PostgresConfig> {
    let pool_size = t.usize(errs, "pool_size", 4, 1..=64);
    let statement_timeout = t.positive_duration(errs, "statement_timeout", Duration::from_secs(5));
    let ca_file = ca::ca_file(t, errs);
    let env = t.string(errs, "url_env");
    let file = t.string(errs, "url_file");
    let url = match (env, file) {
        (Some(v), None) if !v.trim().is_empty() => PgUrlSource::Env(v),
        (None, Some(p)) if !p.trim().is_empty() && !p.contains('\0') => {
            PgUrlSource::File(PathBuf::from(p))
        }
        (Some(_), Some(_)) => {
            errs.push(t.path().to_owned(), "set only one of url_env, url_file");
            return None;
        }
        (None, None) => {
            let message = "backend = \"postgres\" needs url_env or url_file (the database URL is a credential: it is never written in the config)";
            errs.push(t.path().to_owned(), message);
            return None;
        }
        (Some(_), None) => {
            errs.push(t.key_path("url_env"), "must name an environment variable");
            return None;
        }
        (None, Some(_)) => {
            errs.push(t.key_path("url_file"), "must be a non-empty file path");
            return None;
        }
    };
    Some(PostgresConfig {
        url,
        pool_size,
        statement_timeout,
        ca_file,
    })
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

    #[test]
    fn postgres_takes_a_url_source_a_pool_and_a_timeout() {
        let c = load(
            "[ledger]\nbackend = \"postgres\"\nurl_env = \"CCR_PG_URL\"\n",
            &[("CCR_SUPERVISOR__LEDGER__POOL_SIZE", "9")],
        )
        .unwrap();
        let pg = c.postgres().unwrap();
        assert_eq!(pg.url, PgUrlSource::Env("CCR_PG_URL".into()));
        assert_eq!(pg.pool_size, 9);
        assert_eq!(pg.statement_timeout, Duration::from_secs(5));
        let c = load(
            "[ledger]\nbackend = \"postgres\"\nurl_file = \"/run/secrets/pg\"\nstatement_timeout = \"2s\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.postgres().unwrap().url,
            PgUrlSource::File("/run/secrets/pg".into())
        );
        assert_eq!(
            c.postgres().unwrap().statement_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(load("", &[]).unwrap().postgres(), None);
    }

    #[test]
    fn postgres_keys_are_checked_and_refused_for_sqlite() {
        let none = problems("[ledger]\nbackend = \"postgres\"\n");
        assert_eq!(none[0].0, "ledger");
        assert!(none[0].1.contains("url_env or url_file"), "{none:?}");
        let both =
            problems("[ledger]\nbackend = \"postgres\"\nurl_env = \"A\"\nurl_file = \"/b\"\n");
        assert!(both[0].1.contains("only one"), "{both:?}");
        let sqlite = problems("[ledger]\nurl_env = \"A\"\npool_size = 3\n");
        let paths: Vec<&str> = sqlite.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["ledger.url_env", "ledger.pool_size"], "{sqlite:?}");
        let bad = problems("[ledger]\nbackend = \"mysql\"\n");
        assert_eq!(bad[0].0, "ledger.backend");
        let pool = problems("[ledger]\nbackend = \"postgres\"\nurl_env = \"A\"\npool_size = 0\nstatement_timeout = \"0s\"\n");
        let paths: Vec<&str> = pool.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["ledger.pool_size", "ledger.statement_timeout"],
            "{pool:?}"
        );
    }
}
