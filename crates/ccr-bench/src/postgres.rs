//! `--ledger postgres`: a throwaway PostgreSQL server for the run (`ccr-pgtest`), the
//! supervisor's config for it, and what its lease table says about who owns what.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ccr_pgtest::{PgServer, PgTestError};

/// The variable that carries the database URL to the supervisors (`[ledger] url_env`):
/// the URL is a credential and never goes into the config file.
pub const URL_ENV: &str = "CCR_BENCH_LEDGER_URL";

/// The bench server's `shared_buffers`: PostgreSQL's own default, the least a production
/// server has. (ccr-pgtest gives its test servers 32 MB, many run at once; with that, the
/// writer's backend evicted dirty pages itself within seconds of a roundtrip run: 8,000
/// pages in 10 s, docs/benchmarks.md.)
pub const SHARED_BUFFERS: &str = "128MB";

/// Statements that leave the new server's WAL as a server that has been running has it:
/// about 110 MB of WAL written and checkpointed, whose segment files PostgreSQL then
/// recycles. A new server otherwise creates (zero-fills and syncs) a 16 MB segment file
/// every few seconds of a roundtrip run, inside a commit of the ledger's writer: p99 of
/// `bench roundtrip --ledger postgres` 42–63 ms cold against 15–17 ms warmed
/// (docs/benchmarks.md).
const WARM_WAL: [&str; 3] = [
    "CREATE TABLE ccr_bench_warm_wal AS SELECT repeat('x', 1000) AS x \
     FROM generate_series(1, 100000)",
    "DROP TABLE ccr_bench_warm_wal",
    "CHECKPOINT",
];

/// The database of a run on its own server (stopped and removed when dropped).
pub struct Pg {
    server: PgServer,
    database: String,
    url: String,
}

impl Pg {
    /// Start a server and create the run's database; `fsync` (and `full_page_writes`)
    /// as asked: ccr-pgtest turns them off for tests, a production server has them on.
    /// `shared_buffers` is PostgreSQL's own default, [`SHARED_BUFFERS`].
    pub fn start(fsync: bool) -> anyhow::Result<Pg> {
        let mut server = PgServer::start().map_err(|e| match e {
            PgTestError::NotInstalled(detail) => anyhow::anyhow!(
                "bench --ledger postgres needs PostgreSQL's initdb (Debian package postgresql): {detail}"
            ),
            other => anyhow::Error::new(other).context("cannot start PostgreSQL for the bench"),
        })?;
        // One statement a call: psql -c runs its statements in one transaction, which
        // ALTER SYSTEM refuses. shared_buffers takes a restart, which applies all three.
        let mut settings = vec![format!(
            "ALTER SYSTEM SET shared_buffers = '{SHARED_BUFFERS}'"
        )];
        if fsync {
            settings.push("ALTER SYSTEM SET fsync = on".into());
            settings.push("ALTER SYSTEM SET full_page_writes = on".into());
        }
        for sql in &settings {
            server
                .psql("postgres", sql)
                .with_context(|| format!("cannot configure PostgreSQL for the bench: {sql}"))?;
        }
        server
            .restart()
            .context("cannot restart PostgreSQL with the bench's settings")?;
        let want = [
            ("shared_buffers", SHARED_BUFFERS),
            ("fsync", if fsync { "on" } else { "off" }),
        ];
        for (name, value) in want {
            let got = server.psql("postgres", &format!("SHOW {name}"))?;
            if got.trim() != value {
                bail!("PostgreSQL runs with {name} = {}, not {value}", got.trim());
            }
        }
        for sql in WARM_WAL {
            server
                .psql("postgres", sql)
                .with_context(|| format!("cannot warm PostgreSQL's WAL for the bench: {sql}"))?;
        }
        let url = server
            .unique_database("ccr_bench")
            .context("cannot create the bench database")?;
        let database = url.rsplit('/').next().unwrap_or_default().to_owned();
        Ok(Pg {
            server,
            database,
            url,
        })
    }

    /// Stop the server (`pg_ctl stop -m fast`): an outage, until [`Pg::resume`].
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.server.stop().context("cannot stop PostgreSQL")
    }

    /// Start the stopped server again: same data, same port.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.server
            .resume()
            .context("cannot start PostgreSQL again")
    }

    /// The database's URL (for [`URL_ENV`] only).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's setting `name` (`SHOW`).
    pub fn setting(&self, name: &str) -> anyhow::Result<String> {
        Ok(self
            .server
            .psql(&self.database, &format!("SHOW {name}"))?
            .trim()
            .to_owned())
    }

    /// Live leases (not expired by the database's clock) per owner.
    pub fn owners(&self) -> anyhow::Result<BTreeMap<String, usize>> {
        let text = self.server.psql(
            &self.database,
            "SELECT owner, count(*) FROM ccr_leases WHERE expires_at > now() GROUP BY owner",
        )?;
        Ok(owner_counts(&text))
    }

    /// The sessions `owner` holds a live lease on.
    pub fn owned_by(&self, owner: &str) -> anyhow::Result<Vec<String>> {
        // Instance ids are the harness's own (`bench-N`): safe to quote.
        let text = self.server.psql(
            &self.database,
            &format!(
                "SELECT session_id FROM ccr_leases WHERE owner = '{owner}' AND expires_at > now()"
            ),
        )?;
        Ok(text.lines().map(str::to_owned).collect())
    }
}

/// `owner|count` lines (psql `-tA`) as a map.
pub fn owner_counts(text: &str) -> BTreeMap<String, usize> {
    text.lines()
        .filter_map(|l| {
            let (owner, n) = l.split_once('|')?;
            Some((owner.to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}

/// The `[ledger]` and `[cluster]` sections of a supervisor on the bench's PostgreSQL.
pub fn config_toml(lease_period: Duration) -> String {
    format!(
        "\n[ledger]\nbackend = \"postgres\"\nurl_env = \"{URL_ENV}\"\n\n\
         [cluster]\nlease_period = \"{}s\"\n",
        lease_period.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_counts_are_read_from_psql_lines() {
        let m = owner_counts("bench-1|1000\nbench-2|999\n\nbad\nbench-3|x\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m["bench-1"], 1000);
        assert_eq!(m["bench-2"], 999);
    }

    #[test]
    fn the_config_names_the_url_variable_not_the_url() {
        let toml = config_toml(Duration::from_secs(2));
        assert!(
            toml.contains("url_env = \"CCR_BENCH_LEDGER_URL\""),
            "{toml}"
        );
        assert!(!toml.contains("postgres://"), "{toml}");
        let base = crate::harness::supervisor_config(
            "127.0.0.1:1".parse().unwrap(),
            "http://127.0.0.1:2",
            2,
            true,
            "",
            "",
        );
        let cfg =
            ccr_supervisor::config::load_from_str(&format!("{base}{toml}"), Default::default())
                .unwrap();
        assert!(cfg.ledger.postgres().is_some());
        assert_eq!(cfg.cluster.lease_period, Duration::from_secs(2));
    }
}
