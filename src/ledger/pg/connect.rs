//! How the service reaches PostgreSQL: the URL read from where the config says (a secret:
//! never kept, logged or shown), and every connection (the writer's, the read pool's, the
//! cluster's lease loop, `LISTEN` and status) made the same way, with TLS as the URL's
//! `sslmode` asks:
//!
//! - `disable`: no TLS.
//! - `prefer` (the default): TLS when the server offers it and its certificate verifies;
//!   when the TLS handshake fails, the connection is made again without TLS, as libpq's
//!   `prefer` does (and a warning is logged). It protects against eavesdropping, not
//!   against a server in the middle: that is `require`.
//! - `require`: TLS or nothing; the certificate must chain to a trusted CA
//!   (`[ledger] ca_file`, else the public web PKI's roots) and name the URL's host
//!   (libpq calls this `verify-full`).
//!
//! An error names the database by its hosts and ports and the URL by where it came from,
//! never by its text.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PgUrlSource, PostgresConfig};
use crate::limits::repeat::{Emit, RepeatLimiter};

/// How long opening waits for the database before the service refuses to start.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often at most the `sslmode=prefer` fallback is logged (every connection may take it).
const FALLBACK_LOG_EVERY: Duration = Duration::from_secs(600);

/// A connection to the database, driven by whoever holds it (`LISTEN` reads its messages).
pub type PgConnection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// How to reach the database: the parsed connection settings (the URL itself is not kept),
/// the TLS client and how errors name the database.
pub struct PgTarget {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// `PostgreSQL at HOST:PORT (url_env VAR)`: the database in an error.
    place: String,
    /// How often the `prefer` fallback was logged.
    fallback_log: Mutex<RepeatLimiter>,
}

impl PgTarget {
    /// Read the URL from where `pg` says and parse it, with the statement timeout and an
    /// application name set, and the TLS client `pg.ca_file` asks for. Errors name the
    /// source, never the URL.
    pub fn from_config(pg: &PostgresConfig) -> Result<PgTarget, String> {
        let (text, from) = match &pg.url {
            PgUrlSource::Env(var) => (
                std::env::var(var).map_err(|_| format!("url_env: {var} is not set"))?,
                format!("url_env {var}"),
            ),
            PgUrlSource::File(path) => (
                std::fs::read_to_string(path)
                    .map_err(|e| format!("url_file {}: {e}", path.display()))?,
                format!("url_file {}", path.display()),
            ),
        };
        let mut config: tokio_postgres::Config =
            text.trim().parse().map_err(|e| parse_problem(&from, &e))?;
        let timeout_ms = pg.statement_timeout.as_millis().max(1);
        config
            .options(format!("-c statement_timeout={timeout_ms}"))
            .application_name("ccr-supervisor")
            .connect_timeout(CONNECT_TIMEOUT);
        let tls = MakeRustlsConnect::new(crate::config::client_config(pg.ca_file.as_ref(), &[]));
        Ok(PgTarget {
            place: format!("PostgreSQL at {} ({from})", hosts(&config)),
            config,
            tls,
            fallback_log: Mutex::new(RepeatLimiter::new(FALLBACK_LOG_EVERY, 1, 1)),
        })
    }

    /// The connection settings (the read pool's manager keeps them).
    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The database in words, for an error: `PostgreSQL at HOST:PORT (url_env VAR)`.
    pub fn place(&self) -> &str {
        &self.place
    }

    /// A failure to connect as one line: where, what, and a hint for a certificate.
    pub fn failure(&self, e: &tokio_postgres::Error) -> String {
        let hint = if certificate_problem(e) {
            " (is the CA that signed the database's certificate in [ledger] ca_file?)"
        } else {
            ""
        };
        format!("{}: {}{hint}", self.place, describe(e))
    }

    /// One connection, as `sslmode` says (see the module doc); the caller drives it.
    pub async fn open(&self) -> Result<(Client, PgConnection), tokio_postgres::Error> {
        match self.config.connect(self.tls.clone()).await {
            Err(e) if self.config.get_ssl_mode() == SslMode::Prefer && tls_failed(&e) => {
                let now = Instant::now();
                if let Emit::Log { suppressed } = self.fallback_log.lock().check("fallback", now) {
                    tracing::warn!(
                        database = %self.place,
                        error = %describe(&e),
                        suppressed,
                        "TLS to the database failed; connected without TLS, as sslmode=prefer allows (sslmode=require refuses instead)"
                    );
                }
                let mut plain = self.config.clone();
                plain.ssl_mode(SslMode::Disable);
                plain.connect(self.tls.clone()).await
            }
            other => other,
        }
    }
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgTarget(<redacted>)")
    }
}

/// One connection to `target`, its connection task spawned on the current runtime.
pub async fn connect(target: &PgTarget) -> Result<Client, String> {
    let (client, connection) = target.open().await.map_err(|e| target.failure(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %describe(&e), "ledger database connection ended");
        }
    });
    Ok(client)
}

/// The read pool's connections, made as every other ([`PgTarget::open`]).
pub(super) struct PoolConnect(pub(super) Arc<PgTarget>);

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(
        &self,
        _config: &tokio_postgres::Config,
    ) -> Pin<
        Box<
            dyn Future<
                    Output = Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
                > + Send
                + '_,
        >,
    > {
        Box::pin(async move {
            let (client, connection) = self.0.open().await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %describe(&e), "ledger database connection ended");
                }
            });
            Ok((client, task))
        })
    }
}

/// A database error as one line: PostgreSQL's own message when it sent one (it never
/// contains the password), else the client's with its causes (a socket's or TLS's error:
/// neither carries the URL).
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Every cause of `e`, the errors an `io::Error` wraps included.
fn causes<'a>(e: &'a tokio_postgres::Error) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = e.source();
    while let Some(c) = next {
        out.push(c);
        match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => {
                out.push(inner);
                next = inner.source();
            }
            None => next = c.source(),
        }
    }
    out
}

/// The TLS handshake (or TLS on the connection) failed: rustls said why.
fn tls_failed(e: &tokio_postgres::Error) -> bool {
    causes(e)
        .iter()
        .any(|c| c.downcast_ref::<rustls::Error>().is_some())
}

/// The server's certificate was refused (not trusted, not for this host, expired, ...).
fn certificate_problem(e: &tokio_postgres::Error) -> bool {
    causes(e).iter().any(|c| {
        matches!(
            c.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        )
    })
}

/// Why the URL did not parse, naming where it came from and never its text: the option
/// at fault only when it is `sslmode` (its values are known words, not secrets).
fn parse_problem(from: &str, e: &tokio_postgres::Error) -> String {
    let sslmode = e
        .source()
        .is_some_and(|c| c.to_string() == "invalid value for option `sslmode`");
    if sslmode {
        format!(
            "{from}: sslmode must be disable, prefer or require (verify-ca and verify-full \
             are libpq's; here require always verifies the certificate and the host name)"
        )
    } else {
        format!("{from}: not a PostgreSQL URL or connection string (value not shown: secret)")
    }
}

/// The hosts and ports of `config`, as `host:port,host:port` (a socket directory as its path).
fn hosts(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let mut names: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if names.is_empty() {
        names = config
            .get_hostaddrs()
            .iter()
            .map(ToString::to_string)
            .collect();
    }
    if names.is_empty() {
        return "(no host)".to_owned();
    }
    names
        .iter()
        .enumerate()
        .map(|(i, name)| format!("{name}:{}", port(i)))
        .collect::<Vec<_>>()
        .join(",")
}
