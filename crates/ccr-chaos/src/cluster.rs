//! The cluster run's shared parts: a throwaway PostgreSQL (`ccr-pgtest`) with one database
//! for the run, each instance's environment (PostgreSQL backend, instance id, a short lease
//! period, a fixed API port and that port as its advertise URL), and the reads made straight
//! from the database: the ledger (`ccr_prompts`) for the checker, and the live leases for the
//! takeover figures.
//!
//! Why fixed ports: `advertise_url` is read from the config at start-up, before the API has
//! bound, so an instance cannot advertise a port the OS picks. Each instance gets a port that
//! was free when the run started, below the kernel's ephemeral range (so no outgoing
//! connection takes it while the instance is down), and keeps it across restarts.

use std::net::TcpListener;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ccr_pgtest::{PgServer, PgTestError};
use rand::Rng;

use super::records::{AnswerKey, LedgerRow};

/// The environment variable each instance reads its ledger URL from (`[ledger] url_env`).
const URL_VAR: &str = "CCR_CHAOS_LEDGER_URL";

/// Name of cluster instance `i` (0-based): `inst-0`, `inst-1`, ...
pub fn instance_id(i: usize) -> String {
    format!("inst-{i}")
}

/// The environment of instance `i`: PostgreSQL ledger at `url`, its id, `lease_period`, the
/// API on `127.0.0.1:port`, advertised as such.
pub fn instance_env(
    i: usize,
    port: u16,
    url: &str,
    lease_period: Duration,
) -> Vec<(String, String)> {
    let api = format!("127.0.0.1:{port}");
    [
        ("CCR_SUPERVISOR__LEDGER__BACKEND", "postgres".to_owned()),
        ("CCR_SUPERVISOR__LEDGER__URL_ENV", URL_VAR.to_owned()),
        (URL_VAR, url.to_owned()),
        ("CCR_SUPERVISOR__CLUSTER__INSTANCE_ID", instance_id(i)),
        (
            "CCR_SUPERVISOR__CLUSTER__LEASE_PERIOD",
            format!("{}ms", lease_period.as_millis()),
        ),
        (
            "CCR_SUPERVISOR__CLUSTER__ADVERTISE_URL",
            format!("http://{api}"),
        ),
        ("CCR_SUPERVISOR__API__BIND", api),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `n` distinct ports of 127.0.0.1, each free when asked, below the ephemeral range.
pub fn api_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (lo, hi) = (10_000u16, ephemeral_low.max(10_001));
    let mut rng = rand::thread_rng();
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    for _ in 0..n * 200 {
        if ports.len() == n {
            break;
        }
        let port = rng.gen_range(lo..hi);
        if !ports.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    if ports.len() < n {
        bail!("cannot find {n} free ports on 127.0.0.1 between {lo} and {hi}");
    }
    Ok(ports)
}

/// The PostgreSQL server of a run: started for it, or the test binary's shared one.
enum Server {
    Own(PgServer),
    Shared(&'static PgServer),
}

/// The run's database on a throwaway PostgreSQL server, and a connection to it.
pub struct Database {
    server: Server,
    /// `postgres://...` of the run's database.
    pub url: String,
    client: tokio_postgres::Client,
}

impl Database {
    /// A fresh database on `shared`, or on a server started for the run (a clear error when
    /// PostgreSQL is not installed); connected. Must run inside the run's actix System.
    pub async fn open(shared: Option<&'static PgServer>) -> anyhow::Result<Database> {
        let server = match shared {
            Some(s) => Server::Shared(s),
            None => Server::Own(PgServer::start().map_err(|e| match e {
                PgTestError::NotInstalled(_) => {
                    anyhow::anyhow!("a cluster run (--instances > 1) needs PostgreSQL: {e}")
                }
                e => anyhow::anyhow!("cannot start a throwaway PostgreSQL: {e}"),
            })?),
        };
        let pg = match &server {
            Server::Own(s) => s,
            Server::Shared(s) => *s,
        };
        let url = pg
            .unique_database("chaos")
            .context("cannot create the run's database")?;
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        actix_rt::spawn(async move {
            let _ = connection.await;
        });
        Ok(Database {
            server,
            url,
            client,
        })
    }

    /// The server's log (for a failed run's report).
    pub fn server_log(&self) -> String {
        match &self.server {
            Server::Own(s) => s.log(),
            Server::Shared(s) => s.log(),
        }
    }

    /// Every row of `ccr_prompts`, in the form the checker compares (as `GET /v1/audit` gives it).
    pub async fn ledger(&self) -> anyhow::Result<Vec<LedgerRow>> {
        let rows = self
            .client
            .query(
                "SELECT session_id, request_id, COALESCE(outcome, 'pending'), decided_by, \
                 answer, delivered_at IS NOT NULL \
                 FROM ccr_prompts ORDER BY received_at, session_id, request_id",
                &[],
            )
            .await
            .context("cannot read ccr_prompts")?;
        rows.iter()
            .map(|row| {
                let answer: Option<String> = row.get(4);
                let answer = match answer {
                    None => None,
                    Some(text) => {
                        let frame: serde_json::Value = serde_json::from_str(&text)
                            .with_context(|| format!("unreadable answer frame {text:?}"))?;
                        frame.get("response").map(AnswerKey::from_body)
                    }
                };
                Ok(LedgerRow {
                    session: row.get(0),
                    request_id: row.get(1),
                    outcome: row.get(2),
                    decided_by: row.get(3),
                    answer,
                    delivered: row.get(5),
                })
            })
            .collect()
    }

    /// Sessions under a live lease held by anyone but `instance`.
    pub async fn leased_elsewhere(&self, instance: &str) -> anyhow::Result<usize> {
        let row = self
            .client
            .query_one(
                "SELECT count(*) FROM ccr_leases WHERE expires_at > now() AND owner <> $1",
                &[&instance],
            )
            .await
            .context("cannot read ccr_leases")?;
        Ok(row.get::<_, i64>(0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_below_the_ephemeral_range() {
        let ports = api_ports(5).unwrap();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 5);
        assert!(ports.iter().all(|p| *p >= 10_000));
    }

    #[test]
    fn an_instance_advertises_the_port_it_binds() {
        let env = instance_env(2, 12345, "postgres://x", Duration::from_secs(1));
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("CCR_SUPERVISOR__CLUSTER__INSTANCE_ID"), Some("inst-2"));
        assert_eq!(get("CCR_SUPERVISOR__API__BIND"), Some("127.0.0.1:12345"));
        assert_eq!(
            get("CCR_SUPERVISOR__CLUSTER__ADVERTISE_URL"),
            Some("http://127.0.0.1:12345")
        );
        assert_eq!(get(URL_VAR), Some("postgres://x"));
        assert_eq!(get("CCR_SUPERVISOR__CLUSTER__LEASE_PERIOD"), Some("1000ms"));
    }
}
