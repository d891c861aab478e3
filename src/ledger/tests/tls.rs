//! The PostgreSQL ledger over TLS, against a real server serving a certificate of a CA made
//! here: `sslmode=require` with `[ledger] ca_file` records and reads over TLS; without the
//! CA (the public roots only) it refuses to start, naming the database and the certificate
//! problem, never the password; `sslmode=disable` and `prefer` behave as documented; a
//! certificate rotated to an unknown CA fails `/readyz`'s check the same way.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ccr_pgtest::{PgServer, ServerTls};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use super::*;
use crate::config::{CaFile, LedgerBackend, PgUrlSource, PostgresConfig};

/// The password in every URL here: the server trusts any (`trust`), so it must never show.
const SECRET: &str = "hunter2-tls-sekret";

/// A CA made for the test, which signs server certificates.
struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    /// A server certificate for 127.0.0.1 signed by this CA.
    fn server(&self) -> ServerTls {
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        ServerTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// This CA as a `ca_file` written in `dir`.
    fn ca_file(&self, dir: &Path) -> CaFile {
        let path = dir.join("db-ca.pem");
        std::fs::write(&path, self.cert.pem()).unwrap();
        CaFile::read(&path).unwrap()
    }
}

/// One TLS server for the tests that do not change it, with its CA and a directory for
/// files; `None` when PostgreSQL is not installed (and not required).
fn shared_tls() -> Option<&'static (TestCa, PgServer, PathBuf)> {
    static SERVER: OnceLock<Option<(TestCa, PgServer, PathBuf)>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let ca = TestCa::new("ccr-supervisor test database CA");
            let server = ccr_pgtest::require_own_with_tls(&ca.server())?;
            let dir = tempfile::tempdir().unwrap().keep();
            Some((ca, server, dir))
        })
        .as_ref()
}

/// A ledger config reading `url` from a variable of its own, trusting `ca`.
fn config(var: &str, url: &str, ca: Option<CaFile>) -> LedgerConfig {
    // Each test sets its own variable once, before any ledger reads it.
    std::env::set_var(var, url);
    LedgerConfig {
        retain_days: 0,
        backend: LedgerBackend::Postgres(PostgresConfig {
            url: PgUrlSource::Env(var.into()),
            pool_size: 2,
            statement_timeout: Duration::from_secs(5),
            ca_file: ca,
        }),
        ..LedgerConfig::default()
    }
}

/// `postgres://postgres:SECRET@127.0.0.1:PORT/DB?sslmode=MODE` for a new database.
fn url(server: &PgServer, name: &str, sslmode: Option<&str>) -> (String, String) {
    let plain = server.unique_database(name).unwrap();
    let db = plain.rsplit('/').next().unwrap().to_owned();
    let with_password = plain.replacen("postgres@", &format!("postgres:{SECRET}@"), 1);
    let url = match sslmode {
        Some(mode) => format!("{with_password}?sslmode={mode}"),
        None => with_password,
    };
    (db, url)
}

/// A prompt recorded and read back, through the writer's and a pooled connection.
fn records_and_reads(ledger: &Ledger, request: &str) {
    block_on(ledger.record_prompt(prompt("s-tls", request, "Bash", at(1)))).unwrap();
    let stored = block_on(ledger.lookup("s-tls", request)).unwrap();
    assert!(matches!(stored, Stored::Pending), "{stored:?}");
    block_on(ledger.postgres().unwrap().ping()).unwrap();
}

/// How many of the service's connections to `db` use TLS, and how many do not.
fn service_connections(server: &PgServer, db: &str) -> (u32, u32) {
    let out = server
        .psql(
            db,
            &format!(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'ccr-supervisor' AND a.datname = '{db}'"
            ),
        )
        .unwrap();
    let (tls, plain) = out.trim().split_once('|').unwrap();
    (tls.parse().unwrap(), plain.parse().unwrap())
}

#[test]
fn sslmode_require_with_the_ca_file_records_and_reads_over_tls() {
    let Some((ca, server, dir)) = shared_tls() else {
        return;
    };
    let (db, url) = url(server, "tls_require", Some("require"));
    let cfg = config("CCR_TEST_PG_TLS_REQUIRE", &url, Some(ca.ca_file(dir)));
    let ledger = Ledger::open(&cfg).unwrap();
    records_and_reads(&ledger, "over-tls");
    let (tls, plain) = service_connections(server, &db);
    assert!(
        tls >= 2,
        "the writer's and a pooled connection: {tls} over TLS"
    );
    assert_eq!(plain, 0, "none without TLS");
}

#[test]
fn sslmode_require_without_the_ca_refuses_naming_the_database_and_the_certificate() {
    let Some((_, server, _)) = shared_tls() else {
        return;
    };
    let var = "CCR_TEST_PG_TLS_NO_CA";
    let (_, url) = url(server, "tls_no_ca", Some("require"));
    // The public roots only: the test CA is not among them.
    let err = Ledger::open(&config(var, &url, None))
        .err()
        .expect("an unknown CA is refused");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(SECRET), "{text}");
    let place = format!("PostgreSQL at 127.0.0.1:{} (url_env {var})", server.port());
    assert!(text.contains(&place), "names the database: {text}");
    assert!(
        text.contains("UnknownIssuer"),
        "the certificate problem: {text}"
    );
    assert!(text.contains("[ledger] ca_file"), "where to fix it: {text}");
    // A start-up error worth retrying (the database may be fixed), not a bad URL.
    assert!(matches!(err, LedgerError::Open { .. }), "{err:?}");
}

#[test]
fn sslmode_disable_connects_without_tls_to_a_server_that_offers_it() {
    let Some((_, server, _)) = shared_tls() else {
        return;
    };
    let (db, url) = url(server, "tls_disable", Some("disable"));
    let ledger = Ledger::open(&config("CCR_TEST_PG_TLS_DISABLE", &url, None)).unwrap();
    records_and_reads(&ledger, "plain");
    let (tls, plain) = service_connections(server, &db);
    assert_eq!(tls, 0);
    assert!(plain >= 2, "{plain}");
}

/// `prefer` (also when the URL says nothing): TLS when the certificate verifies; without
/// TLS when it does not, as libpq's `prefer`.
#[test]
fn sslmode_prefer_uses_tls_when_trusted_and_falls_back_to_plain_when_not() {
    let Some((ca, server, dir)) = shared_tls() else {
        return;
    };
    let (db, url_trusted) = url(server, "tls_prefer", Some("prefer"));
    let ledger = Ledger::open(&config(
        "CCR_TEST_PG_TLS_PREFER",
        &url_trusted,
        Some(ca.ca_file(dir)),
    ))
    .unwrap();
    records_and_reads(&ledger, "preferred");
    assert_eq!(service_connections(server, &db).1, 0, "all over TLS");

    let (db, url_default) = url(server, "tls_default", None);
    let ledger = Ledger::open(&config("CCR_TEST_PG_TLS_DEFAULT", &url_default, None)).unwrap();
    records_and_reads(&ledger, "fell-back");
    let (tls, plain) = service_connections(server, &db);
    assert_eq!(tls, 0, "the CA is not trusted: no TLS");
    assert!(plain >= 2, "{plain}");
}

#[test]
fn libpq_s_verify_modes_are_refused_by_name_without_the_url() {
    let var = "CCR_TEST_PG_TLS_VERIFY_FULL";
    let url = format!("postgres://u:{SECRET}@127.0.0.1:1/db?sslmode=verify-full");
    let err = Ledger::open(&config(var, &url, None))
        .err()
        .expect("not a mode tokio-postgres knows");
    let text = format!("{err} {err:?}");
    assert!(matches!(err, LedgerError::BadUrl(_)), "exit 2: {err:?}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains(var), "{text}");
    assert!(
        text.contains("sslmode must be disable, prefer or require"),
        "{text}"
    );
}

/// The database's certificate replaced by one of a CA the ledger does not trust: new
/// connections fail, and `/readyz`'s check (`ping`, a pooled connection) says why, naming
/// the database and the certificate, never the password; the writer's connection made
/// before goes on.
#[test]
fn a_certificate_rotated_to_an_unknown_ca_fails_the_readiness_check_without_the_password() {
    let ca = TestCa::new("ccr-supervisor test database CA");
    let Some(mut server) = ccr_pgtest::require_own_with_tls(&ca.server()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let var = "CCR_TEST_PG_TLS_ROTATED";
    let (_, url) = url(&server, "tls_rotated", Some("require"));
    let ledger = Ledger::open(&config(var, &url, Some(ca.ca_file(dir.path())))).unwrap();
    block_on(ledger.record_prompt(prompt("s-tls", "before", "Bash", at(1)))).unwrap();

    server
        .set_tls(&TestCa::new("another CA, not trusted").server())
        .unwrap();
    // The reload is asynchronous: poll until new connections get the new certificate.
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        match block_on(ledger.postgres().unwrap().ping()) {
            Err(e) => break e,
            Ok(()) => {
                assert!(
                    Instant::now() < deadline,
                    "still trusted after the rotation"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    // What `/readyz` shows: "ledger not writable: cannot reach PostgreSQL: {err}".
    let readyz = format!("{err} {err:?}");
    assert!(!readyz.contains(SECRET), "{readyz}");
    assert!(
        readyz.contains(&format!("127.0.0.1:{} (url_env {var})", server.port())),
        "{readyz}"
    );
    assert!(readyz.contains("UnknownIssuer"), "{readyz}");
    block_on(ledger.record_prompt(prompt("s-tls", "after", "Bash", at(2)))).unwrap();
}

/// A Unix-socket host (a directory) is no TLS host name: with the default `prefer` the
/// client gets past choosing TLS and asks the socket for it (PostgreSQL answers `N` there),
/// instead of refusing the path as a host name before a byte is sent.
#[test]
fn a_unix_socket_host_is_not_refused_as_a_tls_host_name() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let listener =
        std::os::unix::net::UnixListener::bind(dir.path().join(".s.PGSQL.5432")).unwrap();
    // The first message PostgreSQL's side would read: an SSLRequest is 8 bytes, length 8
    // and the code 80877103; answered `N` (no TLS on a socket), then the test is over.
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut first = [0u8; 8];
        conn.read_exact(&mut first).unwrap();
        conn.write_all(b"N").unwrap();
        first
    });
    let var = "CCR_TEST_PG_UNIX_SOCKET";
    let url = format!(
        "host={} user=ccr password={SECRET} dbname=ccr connect_timeout=2",
        dir.path().display()
    );
    let err = Ledger::open(&config(var, &url, None))
        .err()
        .expect("the socket ends the conversation");
    let first = server.join().unwrap();
    assert_eq!(first, [0, 0, 0, 8, 4, 210, 22, 47], "an SSLRequest");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(
        text.contains(&format!("PostgreSQL at {}:5432", dir.path().display())),
        "{text}"
    );
    assert!(!text.contains("dns") && !text.contains("TLS"), "{text}");
}

/// A role with a password (SCRAM-SHA-256, PostgreSQL's default) over TLS authenticates
/// with channel binding (SCRAM-SHA-256-PLUS: `channel_binding=require` refuses anything
/// less), as a production database asks.
#[test]
fn a_password_over_tls_authenticates_with_scram_channel_binding() {
    let Some((ca, server, dir)) = shared_tls() else {
        return;
    };
    let (db, _) = url(server, "tls_scram", None);
    server
        .psql(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256'; \
                 CREATE ROLE ccr_scram LOGIN PASSWORD '{SECRET}'; \
                 GRANT ALL ON DATABASE {db} TO ccr_scram; \
                 ALTER DATABASE {db} OWNER TO ccr_scram"
            ),
        )
        .unwrap();
    // Ahead of initdb's `trust` lines: this role must give its password, over TLS.
    let hba = server.data_dir().join("pg_hba.conf");
    let before = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("hostssl all ccr_scram 127.0.0.1/32 scram-sha-256\nhost all ccr_scram 127.0.0.1/32 reject\n{before}"),
    )
    .unwrap();
    server.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    let url = format!(
        "postgres://ccr_scram:{SECRET}@127.0.0.1:{}/{db}?sslmode=require&channel_binding=require",
        server.port()
    );
    let cfg = config("CCR_TEST_PG_TLS_SCRAM", &url, Some(ca.ca_file(dir)));
    // The reload is asynchronous: until it is in force, `trust` lets the role in without
    // a password exchange, which `channel_binding=require` refuses.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ledger = loop {
        match Ledger::open(&cfg) {
            Ok(l) => break l,
            Err(e) => {
                assert!(!e.to_string().contains(SECRET), "{e}");
                assert!(Instant::now() < deadline, "never authenticated: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    records_and_reads(&ledger, "scram");
    let (tls, plain) = service_connections(server, &db);
    assert!(tls >= 2 && plain == 0, "{tls} over TLS, {plain} not");
}
